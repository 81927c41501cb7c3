DROP INDEX question_votes_question;
DROP TABLE poll_votes;
DROP TABLE poll_ballots;
CREATE TABLE poll_votes (
    poll_id BIGINT NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    option_index INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);
ALTER TABLE polls DROP COLUMN results_shared;
ALTER TABLE polls DROP COLUMN multiple_choice;
ALTER TABLE questions DROP COLUMN answer;
ALTER TABLE questions DROP COLUMN anonymous;
