-- At most one recording of a session is being recorded at a time (a second start is a conflict,
-- whichever node it reaches).
CREATE UNIQUE INDEX recordings_one_active ON recordings(session_id) WHERE state = 'recording';
