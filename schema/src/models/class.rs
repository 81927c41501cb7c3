//! A class: a course with an owner (its host), a title, a visibility and sessions.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::{class_members, class_roles, classes};

/// Listed for everyone; anyone signed in may open it and join its sessions.
pub const PUBLIC: &str = "public";
/// Not listed for others; anyone signed in who has the link may open it and join. The default.
pub const UNLISTED: &str = "unlisted";
/// Only the owner, users with a role in it and invited members (`class_member`) may see it.
pub const INVITE_ONLY: &str = "invite_only";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = classes, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Class {
    pub id: i64,
    /// The user who hosts it.
    pub owner_id: i64,
    pub title: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// `public`, `unlisted` or `invite_only`.
    pub visibility: String,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = classes)]
pub struct NewClass<'a> {
    pub owner_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    /// [`PUBLIC`], [`UNLISTED`] or [`INVITE_ONLY`].
    pub visibility: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = classes)]
pub struct ClassChanges<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub visibility: Option<&'a str>,
    pub updated_at: Option<i64>,
}

pub fn create(conn: &mut Conn, new: &NewClass<'_>) -> QueryResult<Class> {
    diesel::insert_into(classes::table)
        .values(new)
        .returning(classes::all_columns)
        .get_result(conn)
}

pub fn find(conn: &mut Conn, id: i64) -> QueryResult<Option<Class>> {
    classes::table
        .find(id)
        .select(Class::as_select())
        .first(conn)
        .optional()
}

pub fn update(conn: &mut Conn, id: i64, changes: &ClassChanges<'_>) -> QueryResult<Class> {
    diesel::update(classes::table.find(id))
        .set(changes)
        .returning(classes::all_columns)
        .get_result(conn)
}

/// Deletes the class with its sessions, roles and everything recorded in them.
pub fn delete(conn: &mut Conn, id: i64) -> QueryResult<bool> {
    Ok(diesel::delete(classes::table.find(id)).execute(conn)? == 1)
}

/// Which classes to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Classes the user may see in a list: public ones, and those they own, have a role in or
    /// are invited to.
    Visible(i64),
    /// Classes the user owns, has a role in or is invited to.
    MemberOf(i64),
}

/// Up to `limit` classes, newest first, with ids below `before` (the cursor) when given.
pub fn list(
    conn: &mut Conn,
    filter: Filter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Class>> {
    let mut query = classes::table
        .select(Class::as_select())
        .order(classes::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(classes::id.lt(before));
    }
    let (Filter::Visible(user_id) | Filter::MemberOf(user_id)) = filter;
    let with_role = class_roles::table
        .filter(class_roles::user_id.eq(user_id))
        .select(class_roles::class_id);
    let invited = class_members::table
        .filter(class_members::user_id.eq(user_id))
        .select(class_members::class_id);
    let member = classes::owner_id
        .eq(user_id)
        .or(classes::id.eq_any(with_role))
        .or(classes::id.eq_any(invited));
    query = match filter {
        Filter::Visible(_) => query.filter(classes::visibility.eq(PUBLIC).or(member)),
        Filter::MemberOf(_) => query.filter(member),
    };
    query.load(conn)
}
