//! Who may do what in a class: the roles table of the design, in one place.
//!
//! Every resolver asks [`allowed`] with the caller's [`Role`] in the class; nothing else decides
//! permissions. The UI may hide what this refuses, never the other way round.

use std::fmt;

use schema::Conn;
use schema::models::{class::Class, class_role};

/// A caller's role in one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum Role {
    /// The class's owner: teaches and controls everything.
    Host,
    /// Helps moderate.
    CoHost,
    /// On stage: may publish.
    Speaker,
    /// Any other signed-in user: watches, chats, asks.
    Viewer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Host => "host",
            Role::CoHost => "co-host",
            Role::Speaker => "speaker",
            Role::Viewer => "viewer",
        })
    }
}

/// Something a caller may try to do in a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the class, its sessions and recordings; follow session state.
    View,
    /// Change title or description; delete the class.
    EditClass,
    /// Add sessions to the class.
    ScheduleSession,
    /// Take a scheduled session live.
    StartSession,
    /// End a session.
    EndSession,
    /// Make someone a co-host, or take that role away.
    ManageCoHosts,
    /// Invite someone to stage as a standing speaker, or demote them.
    ManageSpeakers,
    /// See who holds which role.
    ViewRoles,
    /// Send camera, microphone or screen in a live session.
    Publish,
}

/// The roles table (shared/DESIGN.md, "Roles").
pub fn allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match action {
        View => true,
        EditClass | ScheduleSession | StartSession | EndSession | ManageCoHosts => {
            role == Role::Host
        }
        ManageSpeakers | ViewRoles => matches!(role, Role::Host | Role::CoHost),
        Publish => matches!(role, Role::Host | Role::CoHost | Role::Speaker),
    }
}

/// The role of `user_id` in `class`.
pub fn role_in(conn: &mut Conn, class: &Class, user_id: i64) -> diesel::QueryResult<Role> {
    if class.owner_id == user_id {
        return Ok(Role::Host);
    }
    Ok(
        match class_role::find(conn, class.id, user_id)?.map(|r| r.role) {
            Some(r) if r == class_role::CO_HOST => Role::CoHost,
            Some(r) if r == class_role::SPEAKER => Role::Speaker,
            _ => Role::Viewer,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_design() {
        use Action::*;
        let table: &[(Action, [bool; 4])] = &[
            // (action, [host, co-host, speaker, viewer])
            (View, [true, true, true, true]),
            (EditClass, [true, false, false, false]),
            (ScheduleSession, [true, false, false, false]),
            (StartSession, [true, false, false, false]),
            (EndSession, [true, false, false, false]),
            (ManageCoHosts, [true, false, false, false]),
            (ManageSpeakers, [true, true, false, false]),
            (ViewRoles, [true, true, false, false]),
        ];
        for (action, expected) in table {
            for (role, want) in [Role::Host, Role::CoHost, Role::Speaker, Role::Viewer]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(allowed(role, *action), *want, "{role} {action:?}");
            }
        }
    }
}
