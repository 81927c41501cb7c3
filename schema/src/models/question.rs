//! A question asked in a session's Q&A: `open`, then `answered` (in text, or live when `answer`
//! is empty) or `dismissed`; moderators may reopen it.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::{question_votes, questions, users};

pub const OPEN: &str = "open";
pub const ANSWERED: &str = "answered";
pub const DISMISSED: &str = "dismissed";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = questions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Question {
    pub id: i64,
    pub session_id: i64,
    pub user_id: i64,
    pub body: String,
    /// `open`, `answered` or `dismissed`.
    pub state: String,
    pub created_at: i64,
    pub answered_at: Option<i64>,
    /// The asker's name is hidden from other attendees (not from hosts and co-hosts).
    pub anonymous: bool,
    /// The written answer; `None` with state `answered` means answered live.
    pub answer: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = questions)]
pub struct NewQuestion<'a> {
    pub session_id: i64,
    pub user_id: i64,
    pub body: &'a str,
    pub state: &'a str,
    pub created_at: i64,
    pub anonymous: bool,
}

/// A question with what the Q&A list shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionRow {
    pub question: Question,
    /// The asker's display name.
    pub asker_name: String,
    /// Who upvoted it (user ids, in the order they did).
    pub voters: Vec<i64>,
}

pub fn create(conn: &mut Conn, new: &NewQuestion<'_>) -> QueryResult<Question> {
    diesel::insert_into(questions::table)
        .values(new)
        .returning(questions::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<Question>> {
    questions::table
        .find(id)
        .select(Question::as_select())
        .first(conn)
        .optional()
}

/// Sets the state (and answer); `answered_at` is set when it becomes answered, cleared otherwise.
pub fn set_state(
    conn: &mut Conn,
    id: i64,
    state: &str,
    answer: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    let answered_at = (state == ANSWERED).then_some(now);
    diesel::update(questions::table.find(id))
        .set((
            questions::state.eq(state),
            questions::answer.eq(answer),
            questions::answered_at.eq(answered_at),
        ))
        .execute(conn)
}

/// Adds the user's upvote. The primary key allows one per person: a second one fails with a
/// unique violation.
pub fn upvote(conn: &mut Conn, question_id: i64, user_id: i64, now: i64) -> QueryResult<()> {
    diesel::insert_into(question_votes::table)
        .values((
            question_votes::question_id.eq(question_id),
            question_votes::user_id.eq(user_id),
            question_votes::created_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// Takes the user's upvote back; returns whether there was one.
pub fn withdraw_upvote(conn: &mut Conn, question_id: i64, user_id: i64) -> QueryResult<bool> {
    let n = diesel::delete(
        question_votes::table
            .filter(question_votes::question_id.eq(question_id))
            .filter(question_votes::user_id.eq(user_id)),
    )
    .execute(conn)?;
    Ok(n > 0)
}

fn rows(conn: &mut Conn, list: Vec<(Question, String)>) -> QueryResult<Vec<QuestionRow>> {
    let ids: Vec<i64> = list.iter().map(|(q, _)| q.id).collect();
    let votes: Vec<(i64, i64)> = question_votes::table
        .filter(question_votes::question_id.eq_any(&ids))
        .order((
            question_votes::created_at.asc(),
            question_votes::user_id.asc(),
        ))
        .select((question_votes::question_id, question_votes::user_id))
        .load(conn)?;
    Ok(list
        .into_iter()
        .map(|(question, asker_name)| {
            let voters = votes
                .iter()
                .filter(|(q, _)| *q == question.id)
                .map(|(_, u)| *u)
                .collect();
            QuestionRow {
                question,
                asker_name,
                voters,
            }
        })
        .collect())
}

/// One question with its asker's name and voters.
pub fn row(conn: &mut Conn, id: i64) -> QueryResult<Option<QuestionRow>> {
    let found: Vec<(Question, String)> = questions::table
        .inner_join(users::table)
        .filter(questions::id.eq(id))
        .select((Question::as_select(), users::display_name))
        .load(conn)?;
    Ok(rows(conn, found)?.pop())
}

/// Every question of a session, oldest first.
pub fn list_for_session(conn: &mut Conn, session_id: i64) -> QueryResult<Vec<QuestionRow>> {
    let found: Vec<(Question, String)> = questions::table
        .inner_join(users::table)
        .filter(questions::session_id.eq(session_id))
        .order(questions::id.asc())
        .select((Question::as_select(), users::display_name))
        .load(conn)?;
    rows(conn, found)
}
