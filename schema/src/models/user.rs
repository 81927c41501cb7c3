//! A person with an account.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::users;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct User {
    pub id: i64,
    /// Lower-cased; `None` for an OIDC account whose provider shared no email.
    pub email: Option<String>,
    /// Whether an identity provider vouched for the email.
    pub email_verified: bool,
    pub display_name: String,
    /// Argon2id PHC string; `None` for accounts that only sign in through a provider.
    pub password_hash: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: Option<&'a str>,
    pub email_verified: bool,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub created_at: i64,
}

pub fn create(conn: &mut Conn, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(users::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_email(conn: &mut Conn, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn mark_email_verified(conn: &mut Conn, id: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::email_verified.eq(true))
        .execute(conn)
}
