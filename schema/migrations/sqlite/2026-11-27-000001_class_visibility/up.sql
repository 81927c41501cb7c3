-- Who may see a class: 'public' (listed for everyone), 'unlisted' (anyone with the link; the
-- default, also for classes made before this) or 'invite_only' (the host, users with a role and
-- invited members). Invited members are kept in class_members.

ALTER TABLE classes ADD COLUMN visibility TEXT NOT NULL DEFAULT 'unlisted'
    CHECK (visibility IN ('public', 'unlisted', 'invite_only'));

CREATE TABLE class_members (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    class_id BIGINT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    UNIQUE (class_id, user_id)
);

-- A user's class list looks up their invitations and roles by user.
CREATE INDEX class_members_user ON class_members(user_id);
CREATE INDEX class_roles_user ON class_roles(user_id);
