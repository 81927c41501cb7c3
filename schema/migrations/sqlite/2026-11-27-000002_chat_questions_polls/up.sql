-- Chat, Q&A and polls as the classroom uses them.
--
-- Questions: asked anonymously (to other attendees; hosts and co-hosts still see who asked),
-- answered in text (`answer`) or marked answered live (`answer` NULL with state 'answered').
-- One upvote per person and question stays the primary key of question_votes.
ALTER TABLE questions ADD COLUMN anonymous BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE questions ADD COLUMN answer TEXT;

-- Polls: single or multiple choice; results shown to everyone once shared.
ALTER TABLE polls ADD COLUMN multiple_choice BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE polls ADD COLUMN results_shared BOOLEAN NOT NULL DEFAULT 0;

-- One ballot per person and poll (the database enforces voting once); a ballot's chosen options
-- are its votes. The old one-row-per-vote table was never written: it is replaced.
DROP TABLE poll_votes;
CREATE TABLE poll_ballots (
    poll_id BIGINT NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);
CREATE TABLE poll_votes (
    poll_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    option_index INTEGER NOT NULL,
    PRIMARY KEY (poll_id, user_id, option_index),
    FOREIGN KEY (poll_id, user_id) REFERENCES poll_ballots(poll_id, user_id) ON DELETE CASCADE
);

-- The Q&A list counts votes per question.
CREATE INDEX question_votes_question ON question_votes(question_id);
