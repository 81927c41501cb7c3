DROP INDEX class_roles_user;
DROP TABLE class_members;
ALTER TABLE classes DROP COLUMN visibility;
