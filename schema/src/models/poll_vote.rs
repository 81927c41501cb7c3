//! A user's ballot in a poll (one per user and poll: the primary key of `poll_ballots`) and the
//! options it chose (`poll_votes`). Written and counted through [`super::poll`].

use diesel::prelude::*;

use crate::schema::{poll_ballots, poll_votes};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = poll_ballots, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct PollBallot {
    pub poll_id: i64,
    pub user_id: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = poll_votes, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct PollVote {
    pub poll_id: i64,
    pub user_id: i64,
    pub option_index: i32,
}
