//! Someone's attendance in a session: the role they joined with, when they joined and left.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::participants;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = participants, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Participant {
    pub id: i64,
    pub session_id: i64,
    pub user_id: i64,
    /// `host`, `co_host`, `speaker` or `viewer` at join time.
    pub role: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    /// How long this visit was the active speaker, in milliseconds (recorded when it ends).
    pub talk_ms: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = participants)]
pub struct NewParticipant<'a> {
    pub session_id: i64,
    pub user_id: i64,
    pub role: &'a str,
    pub joined_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewParticipant<'_>) -> QueryResult<Participant> {
    diesel::insert_into(participants::table)
        .values(new)
        .returning(participants::all_columns)
        .get_result(conn)
}

pub fn list_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<Participant>> {
    participants::table
        .filter(participants::session_id.eq(session_id))
        .order(participants::id.asc())
        .select(Participant::as_select())
        .load(conn)
}

/// Records that the participant left at `now` (unless already recorded).
pub fn mark_left(conn: &mut Conn, id: i64, now: i64) -> QueryResult<usize> {
    record_departure(conn, id, now, 0)
}

/// Records that the participant's visit ended at `now`, with its talk time (unless its end was
/// recorded already).
pub fn record_departure(conn: &mut Conn, id: i64, now: i64, talk_ms: i64) -> QueryResult<usize> {
    diesel::update(
        participants::table
            .filter(participants::id.eq(id))
            .filter(participants::left_at.is_null()),
    )
    .set((
        participants::left_at.eq(Some(now)),
        participants::talk_ms.eq(talk_ms),
    ))
    .execute(conn)
}

/// Closes every visit of the session still open (the session ended) at `now`.
pub fn close_open(conn: &mut Conn, session_id: i64, now: i64) -> QueryResult<usize> {
    diesel::update(
        participants::table
            .filter(participants::session_id.eq(session_id))
            .filter(participants::left_at.is_null()),
    )
    .set(participants::left_at.eq(Some(now)))
    .execute(conn)
}

/// A visit with who made it, for the attendance report.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub participant: Participant,
    pub display_name: String,
    pub email: Option<String>,
}

/// Every visit of a session with its user, by user then join time.
pub fn visits(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<Visit>> {
    use crate::schema::users;
    let rows: Vec<(Participant, String, Option<String>)> = participants::table
        .inner_join(users::table)
        .filter(participants::session_id.eq(session_id))
        .order((
            participants::user_id.asc(),
            participants::joined_at.asc(),
            participants::id.asc(),
        ))
        .select((Participant::as_select(), users::display_name, users::email))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(participant, display_name, email)| Visit {
            participant,
            display_name,
            email,
        })
        .collect())
}
