//! One live occurrence of a class: scheduled, then live, then ended.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::class_sessions;

/// `scheduled` -> `live` -> `ended`; a scheduled session may also be ended without going live.
pub const SCHEDULED: &str = "scheduled";
pub const LIVE: &str = "live";
pub const ENDED: &str = "ended";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = class_sessions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ClassSession {
    pub id: i64,
    pub class_id: i64,
    pub scheduled_start: i64,
    pub scheduled_end: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// `scheduled`, `live` or `ended`.
    pub state: String,
    pub created_at: i64,
    /// No new participants but hosts and co-hosts (while live).
    pub locked: bool,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = class_sessions)]
pub struct NewClassSession<'a> {
    pub class_id: i64,
    pub scheduled_start: i64,
    pub scheduled_end: Option<i64>,
    pub state: &'a str,
    pub created_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewClassSession<'_>) -> QueryResult<ClassSession> {
    diesel::insert_into(class_sessions::table)
        .values(new)
        .returning(class_sessions::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<ClassSession>> {
    class_sessions::table
        .find(id)
        .select(ClassSession::as_select())
        .first(conn)
        .optional()
}

/// Sessions of a class by scheduled start.
pub fn list_for_class(conn: &mut Conn, class_id: i64) -> QueryResult<Vec<ClassSession>> {
    class_sessions::table
        .filter(class_sessions::class_id.eq(class_id))
        .order((
            class_sessions::scheduled_start.asc(),
            class_sessions::id.asc(),
        ))
        .select(ClassSession::as_select())
        .load(conn)
}

/// Whether another session of the class is live now.
pub fn live_in_class(conn: &mut Conn, class_id: i64) -> QueryResult<Option<ClassSession>> {
    class_sessions::table
        .filter(
            class_sessions::class_id
                .eq(class_id)
                .and(class_sessions::state.eq(LIVE)),
        )
        .select(ClassSession::as_select())
        .first(conn)
        .optional()
}

/// `scheduled` -> `live` at `now`. `None` when the session was not in `scheduled` (a concurrent
/// start, or already ended): the conditional update makes the transition happen once.
pub fn start(conn: &mut Conn, id: i64, now: i64) -> QueryResult<Option<ClassSession>> {
    diesel::update(
        class_sessions::table
            .find(id)
            .filter(class_sessions::state.eq(SCHEDULED)),
    )
    .set((
        class_sessions::state.eq(LIVE),
        class_sessions::started_at.eq(now),
    ))
    .returning(class_sessions::all_columns)
    .get_result(conn)
    .optional()
}

/// `scheduled` or `live` -> `ended` at `now`; `None` when it had already ended.
pub fn end(conn: &mut Conn, id: i64, now: i64) -> QueryResult<Option<ClassSession>> {
    diesel::update(
        class_sessions::table
            .find(id)
            .filter(class_sessions::state.ne(ENDED)),
    )
    .set((
        class_sessions::state.eq(ENDED),
        class_sessions::ended_at.eq(now),
    ))
    .returning(class_sessions::all_columns)
    .get_result(conn)
    .optional()
}

/// Locks (no new participants but hosts and co-hosts) or opens a session.
pub fn set_locked(conn: &mut Conn, id: i64, locked: bool) -> QueryResult<usize> {
    diesel::update(class_sessions::table.find(id))
        .set(class_sessions::locked.eq(locked))
        .execute(conn)
}
