-- Moderation and attendance of live sessions.
-- A locked session admits no new participant but hosts and co-hosts.
ALTER TABLE class_sessions ADD COLUMN locked BOOLEAN NOT NULL DEFAULT 0;

-- How long each visit (a participants row: joined_at .. left_at) was the active speaker.
ALTER TABLE participants ADD COLUMN talk_ms BIGINT NOT NULL DEFAULT 0;

-- Users a host or co-host removed from a session: they cannot join it again.
CREATE TABLE session_removals (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    session_id BIGINT NOT NULL REFERENCES class_sessions(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    removed_by BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    removed_at BIGINT NOT NULL,
    UNIQUE (session_id, user_id)
);
