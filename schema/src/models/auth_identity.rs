//! A link between a user and an account at an external identity provider (OIDC).

use diesel::prelude::*;

use crate::Conn;
use crate::schema::auth_identities;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = auth_identities, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AuthIdentity {
    pub id: i64,
    pub user_id: i64,
    /// Provider name from the configuration.
    pub provider: String,
    /// The provider's stable subject identifier (`sub`).
    pub subject: String,
    pub email: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = auth_identities)]
pub struct NewAuthIdentity<'a> {
    pub user_id: i64,
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub created_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewAuthIdentity<'_>) -> QueryResult<AuthIdentity> {
    diesel::insert_into(auth_identities::table)
        .values(new)
        .returning(auth_identities::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, provider: &str, subject: &str) -> QueryResult<Option<AuthIdentity>> {
    auth_identities::table
        .filter(
            auth_identities::provider
                .eq(provider)
                .and(auth_identities::subject.eq(subject)),
        )
        .select(AuthIdentity::as_select())
        .first(conn)
        .optional()
}
