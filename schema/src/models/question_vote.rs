//! One user's upvote of a question (at most one per user and question: the primary key).
//! Written and counted through [`super::question`].

use diesel::prelude::*;

use crate::schema::question_votes;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = question_votes, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct QuestionVote {
    pub question_id: i64,
    pub user_id: i64,
    pub created_at: i64,
}
