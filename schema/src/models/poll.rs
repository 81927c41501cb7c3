//! A poll in a session: a question with options (a JSON array of strings), single or multiple
//! choice, `open` then `closed`; its results are shown to everyone once shared.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::{poll_ballots, poll_votes, polls};

pub const OPEN: &str = "open";
pub const CLOSED: &str = "closed";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = polls, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Poll {
    pub id: i64,
    pub session_id: i64,
    pub created_by: i64,
    pub question: String,
    /// A JSON array of the options' texts.
    pub options: String,
    /// `open` or `closed`.
    pub state: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    /// Several options may be chosen.
    pub multiple_choice: bool,
    /// Everyone sees the results (hosts and co-hosts always do).
    pub results_shared: bool,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = polls)]
pub struct NewPoll<'a> {
    pub session_id: i64,
    pub created_by: i64,
    pub question: &'a str,
    pub options: &'a str,
    pub state: &'a str,
    pub created_at: i64,
    pub multiple_choice: bool,
}

/// A poll with its ballots: (voter, chosen option indexes), in the order they voted.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRow {
    pub poll: Poll,
    pub ballots: Vec<(i64, Vec<i32>)>,
}

pub fn create(conn: &mut Conn, new: &NewPoll<'_>) -> QueryResult<Poll> {
    diesel::insert_into(polls::table)
        .values(new)
        .returning(polls::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<Poll>> {
    polls::table
        .find(id)
        .select(Poll::as_select())
        .first(conn)
        .optional()
}

/// Closes an open poll; returns whether it was open.
pub fn close(conn: &mut Conn, id: i64, now: i64) -> QueryResult<bool> {
    let n = diesel::update(polls::table.find(id).filter(polls::state.eq(OPEN)))
        .set((polls::state.eq(CLOSED), polls::closed_at.eq(Some(now))))
        .execute(conn)?;
    Ok(n > 0)
}

pub fn set_shared(conn: &mut Conn, id: i64, shared: bool) -> QueryResult<usize> {
    diesel::update(polls::table.find(id))
        .set(polls::results_shared.eq(shared))
        .execute(conn)
}

/// Records a user's ballot: one per person and poll (the ballot's primary key; a second one fails
/// with a unique violation), with its chosen options. Run it in a transaction.
pub fn vote(
    conn: &mut Conn,
    poll_id: i64,
    user_id: i64,
    options: &[i32],
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(poll_ballots::table)
        .values((
            poll_ballots::poll_id.eq(poll_id),
            poll_ballots::user_id.eq(user_id),
            poll_ballots::created_at.eq(now),
        ))
        .execute(conn)?;
    // One statement per option (at most a few): batch inserts differ between the backends.
    for option in options {
        diesel::insert_into(poll_votes::table)
            .values((
                poll_votes::poll_id.eq(poll_id),
                poll_votes::user_id.eq(user_id),
                poll_votes::option_index.eq(*option),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Whether the user has voted in the poll.
pub fn has_voted(conn: &mut Conn, poll_id: i64, user_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        poll_ballots::table
            .filter(poll_ballots::poll_id.eq(poll_id))
            .filter(poll_ballots::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

fn rows(conn: &mut Conn, list: Vec<Poll>) -> QueryResult<Vec<PollRow>> {
    let ids: Vec<i64> = list.iter().map(|p| p.id).collect();
    let ballots: Vec<(i64, i64)> = poll_ballots::table
        .filter(poll_ballots::poll_id.eq_any(&ids))
        .order((poll_ballots::created_at.asc(), poll_ballots::user_id.asc()))
        .select((poll_ballots::poll_id, poll_ballots::user_id))
        .load(conn)?;
    let votes: Vec<(i64, i64, i32)> = poll_votes::table
        .filter(poll_votes::poll_id.eq_any(&ids))
        .order(poll_votes::option_index.asc())
        .select((
            poll_votes::poll_id,
            poll_votes::user_id,
            poll_votes::option_index,
        ))
        .load(conn)?;
    Ok(list
        .into_iter()
        .map(|poll| {
            let ballots = ballots
                .iter()
                .filter(|(p, _)| *p == poll.id)
                .map(|(_, u)| {
                    let chosen = votes
                        .iter()
                        .filter(|(p, v, _)| *p == poll.id && v == u)
                        .map(|(_, _, o)| *o)
                        .collect();
                    (*u, chosen)
                })
                .collect();
            PollRow { poll, ballots }
        })
        .collect())
}

/// One poll with its ballots.
pub fn row(conn: &mut Conn, id: i64) -> QueryResult<Option<PollRow>> {
    let found = find(conn, id)?.into_iter().collect();
    Ok(rows(conn, found)?.pop())
}

/// Every poll of a session, oldest first.
pub fn list_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<PollRow>> {
    let found = polls::table
        .filter(polls::session_id.eq(session_id))
        .order(polls::id.asc())
        .select(Poll::as_select())
        .load(conn)?;
    rows(conn, found)
}
