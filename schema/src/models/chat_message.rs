//! A chat message in a session. Written by the interaction features; kept here with its table.

use diesel::prelude::*;

use crate::schema::chat_messages;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = chat_messages, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ChatMessage {
    pub id: i64,
    pub session_id: i64,
    pub user_id: i64,
    pub body: String,
    pub created_at: i64,
    /// Set when a moderator removed it.
    pub deleted_at: Option<i64>,
}
