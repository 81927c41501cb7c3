//! The recording of a session: one mixed video file in object storage.
//!
//! Its life: `recording` (being written on a media node) -> `uploading` (the file is final and
//! is being stored) -> `ready` (playable), or `failed` with the error. At most one recording of
//! a session is `recording` at a time (a unique index says so, whichever node writes it).

use diesel::prelude::*;

use crate::Conn;
use crate::schema::{class_sessions, recordings};

pub const RECORDING: &str = "recording";
pub const UPLOADING: &str = "uploading";
pub const READY: &str = "ready";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = recordings, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Recording {
    pub id: i64,
    pub session_id: i64,
    /// `recording`, `uploading`, `ready` or `failed`.
    pub state: String,
    /// Key in the object store once uploaded.
    pub object_key: Option<String>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = recordings)]
pub struct NewRecording<'a> {
    pub session_id: i64,
    pub state: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewRecording<'_>) -> QueryResult<Recording> {
    diesel::insert_into(recordings::table)
        .values(new)
        .returning(recordings::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<Recording>> {
    recordings::table
        .find(id)
        .select(Recording::as_select())
        .first(conn)
        .optional()
}

pub fn list_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<Recording>> {
    recordings::table
        .filter(recordings::session_id.eq(session_id))
        .order(recordings::id.asc())
        .select(Recording::as_select())
        .load(conn)
}

/// Every recording of a class's sessions, newest first.
pub fn list_for_class(conn: &mut Conn, class_id: i64) -> QueryResult<Vec<Recording>> {
    recordings::table
        .inner_join(class_sessions::table)
        .filter(class_sessions::class_id.eq(class_id))
        .order(recordings::id.desc())
        .select(Recording::as_select())
        .load(conn)
}

/// The recording of the session being recorded now, if any.
pub fn active_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Option<Recording>> {
    recordings::table
        .filter(recordings::session_id.eq(session_id))
        .filter(recordings::state.eq(RECORDING))
        .select(Recording::as_select())
        .first(conn)
        .optional()
}

/// The file is final: `recording` -> `uploading`, with its duration when known (a recording
/// recovered after a crash keeps the one given then). `None` when it was not `recording`.
pub fn finish(
    conn: &mut Conn,
    id: i64,
    duration_ms: Option<i64>,
    now: i64,
) -> QueryResult<Option<Recording>> {
    let row = find(conn, id)?;
    let Some(row) = row.filter(|r| r.state == RECORDING) else {
        return Ok(None);
    };
    diesel::update(recordings::table.find(id))
        .set((
            recordings::state.eq(UPLOADING),
            recordings::duration_ms.eq(duration_ms.or(row.duration_ms)),
            recordings::updated_at.eq(now),
        ))
        .returning(recordings::all_columns)
        .get_result(conn)
        .optional()
}

/// Stored and verified: `ready`, with where and how big.
pub fn ready(
    conn: &mut Conn,
    id: i64,
    object_key: &str,
    size_bytes: i64,
    now: i64,
) -> QueryResult<Option<Recording>> {
    diesel::update(
        recordings::table
            .find(id)
            .filter(recordings::state.ne(READY)),
    )
    .set((
        recordings::state.eq(READY),
        recordings::object_key.eq(Some(object_key)),
        recordings::size_bytes.eq(Some(size_bytes)),
        recordings::error.eq(None::<String>),
        recordings::updated_at.eq(now),
    ))
    .returning(recordings::all_columns)
    .get_result(conn)
    .optional()
}

/// It failed for good: `failed`, with why.
pub fn fail(conn: &mut Conn, id: i64, error: &str, now: i64) -> QueryResult<Option<Recording>> {
    diesel::update(
        recordings::table
            .find(id)
            .filter(recordings::state.ne(READY)),
    )
    .set((
        recordings::state.eq(FAILED),
        recordings::error.eq(Some(error)),
        recordings::updated_at.eq(now),
    ))
    .returning(recordings::all_columns)
    .get_result(conn)
    .optional()
}
