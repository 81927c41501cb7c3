//! A raised hand: `raised`, then `invited` (on stage), `lowered` by its owner, or `dismissed`.

use diesel::prelude::*;

use crate::schema::hand_raises;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = hand_raises, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct HandRaise {
    pub id: i64,
    pub session_id: i64,
    pub user_id: i64,
    pub state: String,
    pub raised_at: i64,
    pub resolved_at: Option<i64>,
}
