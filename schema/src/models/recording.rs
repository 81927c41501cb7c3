//! The recording of a session: one mixed video file in object storage.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::recordings;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
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

pub fn list_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<Recording>> {
    recordings::table
        .filter(recordings::session_id.eq(session_id))
        .order(recordings::id.asc())
        .select(Recording::as_select())
        .load(conn)
}
