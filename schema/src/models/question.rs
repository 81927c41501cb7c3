//! A question asked in a session's Q&A: `open`, then `answered` or `dismissed`.

use diesel::prelude::*;

use crate::schema::questions;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = questions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Question {
    pub id: i64,
    pub session_id: i64,
    pub user_id: i64,
    pub body: String,
    pub state: String,
    pub created_at: i64,
    pub answered_at: Option<i64>,
}
