//! Users removed from a live session by a host or co-host: they cannot join it again.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::session_removals;

#[derive(Debug, Insertable)]
#[diesel(table_name = session_removals)]
pub struct NewSessionRemoval {
    pub session_id: i64,
    pub user_id: i64,
    pub removed_by: i64,
    pub removed_at: i64,
}

/// Records a removal; a second one of the same user changes nothing (false).
pub fn create(conn: &mut Conn, new: &NewSessionRemoval) -> QueryResult<bool> {
    if exists(conn, new.session_id, new.user_id)? {
        return Ok(false);
    }
    match diesel::insert_into(session_removals::table)
        .values(new)
        .execute(conn)
    {
        Ok(_) => Ok(true),
        // Removed at the same moment by another moderator.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the user was removed from the session.
pub fn exists(conn: &mut Conn, session_id: i64, user_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        session_removals::table
            .filter(session_removals::session_id.eq(session_id))
            .filter(session_removals::user_id.eq(user_id)),
    ))
    .get_result(conn)
}
