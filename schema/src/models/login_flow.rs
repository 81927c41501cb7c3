//! An OIDC sign-in in progress: what the callback needs to finish it (PKCE verifier, nonce).

use diesel::prelude::*;

use crate::Conn;
use crate::schema::login_flows;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = login_flows, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct LoginFlow {
    /// The OAuth2 `state` sent to the provider; the key.
    pub state: String,
    pub provider: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// App path to return to after signing in.
    pub return_to: String,
    pub expires_at: i64,
}

pub fn create(conn: &mut Conn, flow: &LoginFlow) -> QueryResult<usize> {
    diesel::insert_into(login_flows::table)
        .values(flow)
        .execute(conn)
}

/// Removes and returns the flow for `state` if it has not expired at `now`. A state works once.
/// Also deletes expired flows.
pub fn take(conn: &mut Conn, state: &str, now: i64) -> QueryResult<Option<LoginFlow>> {
    diesel::delete(login_flows::table.filter(login_flows::expires_at.le(now))).execute(conn)?;
    let flow = login_flows::table
        .find(state)
        .select(LoginFlow::as_select())
        .first(conn)
        .optional()?;
    if flow.is_some() {
        diesel::delete(login_flows::table.find(state)).execute(conn)?;
    }
    Ok(flow)
}
