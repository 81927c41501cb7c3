DROP INDEX recordings_one_active;
