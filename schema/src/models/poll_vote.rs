//! One user's vote in a poll (at most one per user and poll).

use diesel::prelude::*;

use crate::schema::poll_votes;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = poll_votes, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct PollVote {
    pub poll_id: i64,
    pub user_id: i64,
    pub option_index: i32,
    pub created_at: i64,
}
