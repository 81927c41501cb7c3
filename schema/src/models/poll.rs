//! A poll in a session: a question with options (a JSON array of strings), `open` then `closed`.

use diesel::prelude::*;

use crate::schema::polls;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = polls, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Poll {
    pub id: i64,
    pub session_id: i64,
    pub created_by: i64,
    pub question: String,
    pub options: String,
    pub state: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}
