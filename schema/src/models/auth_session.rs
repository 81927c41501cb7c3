//! A signed-in browser session. Only the hash of its cookie token is stored.

use diesel::prelude::*;

use crate::Conn;
use crate::models::user::User;
use crate::schema::{auth_sessions, users};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = auth_sessions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AuthSession {
    pub id: i64,
    pub user_id: i64,
    /// SHA-256 of the cookie token, hex.
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = auth_sessions)]
pub struct NewAuthSession<'a> {
    pub user_id: i64,
    pub token_hash: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewAuthSession<'_>) -> QueryResult<AuthSession> {
    diesel::insert_into(auth_sessions::table)
        .values(new)
        .returning(auth_sessions::all_columns)
        .get_result(conn)
}

/// The session and its user, if the token is known, not revoked and not expired at `now`.
pub fn find_active(
    conn: &mut Conn,
    token_hash: &str,
    now: i64,
) -> QueryResult<Option<(AuthSession, User)>> {
    auth_sessions::table
        .inner_join(users::table)
        .filter(auth_sessions::token_hash.eq(token_hash))
        .filter(auth_sessions::revoked_at.is_null())
        .filter(auth_sessions::expires_at.gt(now))
        .select((AuthSession::as_select(), User::as_select()))
        .first(conn)
        .optional()
}

/// Whether session `id` is still usable at `now` (for long-lived websockets).
pub fn is_active(conn: &mut Conn, id: i64, now: i64) -> QueryResult<bool> {
    let found: Option<i64> = auth_sessions::table
        .find(id)
        .filter(auth_sessions::revoked_at.is_null())
        .filter(auth_sessions::expires_at.gt(now))
        .select(auth_sessions::id)
        .first(conn)
        .optional()?;
    Ok(found.is_some())
}

pub fn revoke(conn: &mut Conn, id: i64, now: i64) -> QueryResult<usize> {
    diesel::update(
        auth_sessions::table
            .find(id)
            .filter(auth_sessions::revoked_at.is_null()),
    )
    .set(auth_sessions::revoked_at.eq(now))
    .execute(conn)
}

/// Revokes every session of `user_id`; returns how many were active.
pub fn revoke_all(conn: &mut Conn, user_id: i64, now: i64) -> QueryResult<usize> {
    diesel::update(
        auth_sessions::table
            .filter(auth_sessions::user_id.eq(user_id))
            .filter(auth_sessions::revoked_at.is_null()),
    )
    .set(auth_sessions::revoked_at.eq(now))
    .execute(conn)
}
