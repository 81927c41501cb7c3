DROP TABLE session_removals;
ALTER TABLE participants DROP COLUMN talk_ms;
ALTER TABLE class_sessions DROP COLUMN locked;
