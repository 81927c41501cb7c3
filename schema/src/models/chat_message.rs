//! A chat message in a session. A moderator's delete keeps the row (`deleted_at`) and hides it
//! from the history.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::{chat_messages, users};

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

#[derive(Debug, Insertable)]
#[diesel(table_name = chat_messages)]
pub struct NewChatMessage<'a> {
    pub session_id: i64,
    pub user_id: i64,
    pub body: &'a str,
    pub created_at: i64,
}

/// Stores a message; it is committed when this returns outside a transaction.
pub fn create(conn: &mut Conn, new: &NewChatMessage<'_>) -> QueryResult<ChatMessage> {
    diesel::insert_into(chat_messages::table)
        .values(new)
        .returning(chat_messages::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<ChatMessage>> {
    chat_messages::table
        .find(id)
        .select(ChatMessage::as_select())
        .first(conn)
        .optional()
}

/// Marks a message removed at `now`; returns whether it was shown until now.
pub fn delete(conn: &mut Conn, id: i64, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        chat_messages::table
            .filter(chat_messages::id.eq(id))
            .filter(chat_messages::deleted_at.is_null()),
    )
    .set(chat_messages::deleted_at.eq(Some(now)))
    .execute(conn)?;
    Ok(n > 0)
}

/// Up to `limit` shown messages of a session older than message `before` (all when `None`),
/// newest first, each with its author's display name.
pub fn page(
    conn: &mut Conn,
    session_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<(ChatMessage, String)>> {
    let mut query = chat_messages::table
        .inner_join(users::table)
        .filter(chat_messages::session_id.eq(session_id))
        .filter(chat_messages::deleted_at.is_null())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(chat_messages::id.lt(before));
    }
    query
        .order(chat_messages::id.desc())
        .limit(limit)
        .select((ChatMessage::as_select(), users::display_name))
        .load(conn)
}
