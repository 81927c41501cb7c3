//! A user invited to a class: an invite-only class is visible to its owner, users with a role in
//! it and its members. Membership gives no role: a member is a viewer.

use diesel::prelude::*;

use crate::Conn;
use crate::schema::class_members;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = class_members, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ClassMember {
    pub id: i64,
    pub class_id: i64,
    pub user_id: i64,
    /// When they were invited.
    pub created_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = class_members)]
pub struct NewClassMember {
    pub class_id: i64,
    pub user_id: i64,
    pub created_at: i64,
}

/// Makes `user_id` a member of the class; returns `false` when they already were (nothing
/// changes). Two concurrent invitations of the same user: one of them fails with a unique
/// violation.
pub fn invite(conn: &mut Conn, new: &NewClassMember) -> QueryResult<bool> {
    if is_member(conn, new.class_id, new.user_id)? {
        return Ok(false);
    }
    diesel::insert_into(class_members::table)
        .values(new)
        .execute(conn)?;
    Ok(true)
}

/// Removes the membership; returns whether there was one.
pub fn remove(conn: &mut Conn, class_id: i64, user_id: i64) -> QueryResult<bool> {
    let n = diesel::delete(
        class_members::table.filter(
            class_members::class_id
                .eq(class_id)
                .and(class_members::user_id.eq(user_id)),
        ),
    )
    .execute(conn)?;
    Ok(n > 0)
}

pub fn is_member(conn: &mut Conn, class_id: i64, user_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        class_members::table.filter(
            class_members::class_id
                .eq(class_id)
                .and(class_members::user_id.eq(user_id)),
        ),
    ))
    .get_result(conn)
}

/// Members of a class, in the order they were invited.
pub fn list_for_class(conn: &mut Conn, class_id: i64) -> QueryResult<Vec<ClassMember>> {
    class_members::table
        .filter(class_members::class_id.eq(class_id))
        .order(class_members::id.asc())
        .select(ClassMember::as_select())
        .load(conn)
}
