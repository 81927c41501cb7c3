//! A user's standing role in a class other than its owner's: co-host or speaker. Everyone else who
//! joins is a viewer.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::class_roles;

pub const CO_HOST: &str = "co_host";
pub const SPEAKER: &str = "speaker";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = class_roles, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ClassRole {
    pub id: i64,
    pub class_id: i64,
    pub user_id: i64,
    /// `co_host` or `speaker`.
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = class_roles)]
pub struct NewClassRole<'a> {
    pub class_id: i64,
    pub user_id: i64,
    pub role: &'a str,
    pub created_at: i64,
}

/// The role of `user_id` in `class_id`, if any.
pub fn find(conn: &mut Conn, class_id: i64, user_id: i64) -> QueryResult<Option<ClassRole>> {
    class_roles::table
        .filter(
            class_roles::class_id
                .eq(class_id)
                .and(class_roles::user_id.eq(user_id)),
        )
        .select(ClassRole::as_select())
        .first(conn)
        .optional()
}

/// Gives `user_id` the role, replacing any role they had in the class.
pub fn assign(conn: &mut Conn, new: &NewClassRole<'_>) -> QueryResult<ClassRole> {
    diesel::delete(
        class_roles::table.filter(
            class_roles::class_id
                .eq(new.class_id)
                .and(class_roles::user_id.eq(new.user_id)),
        ),
    )
    .execute(conn)?;
    diesel::insert_into(class_roles::table)
        .values(new)
        .returning(class_roles::all_columns)
        .get_result(conn)
}

/// Removes the role; returns whether there was one.
pub fn remove(conn: &mut Conn, class_id: i64, user_id: i64) -> QueryResult<bool> {
    let n = diesel::delete(
        class_roles::table.filter(
            class_roles::class_id
                .eq(class_id)
                .and(class_roles::user_id.eq(user_id)),
        ),
    )
    .execute(conn)?;
    Ok(n > 0)
}

pub fn list_for_class(conn: &mut Conn, class_id: i64) -> QueryResult<Vec<ClassRole>> {
    class_roles::table
        .filter(class_roles::class_id.eq(class_id))
        .order(class_roles::id.asc())
        .select(ClassRole::as_select())
        .load(conn)
}
