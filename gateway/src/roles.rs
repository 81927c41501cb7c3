//! Who may do what in a class: the roles table of the design, in one place.
//!
//! Every resolver asks [`allowed`] with the caller's [`Role`] in the class; nothing else decides
//! permissions. Before that, whoever reads a class (or a session of it) by id gets the role from
//! [`access`], which also decides whether the caller may know the class exists (its visibility):
//! when not, the answer is NOT_FOUND, never FORBIDDEN. The UI may hide what this refuses, never the
//! other way round.

use std::fmt;

use schema::Conn;
use schema::models::{
    class::{self, Class},
    class_member, class_role,
};

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
    /// See the class, its sessions and recordings; follow session state; join a live session.
    /// (Whether the caller may know the class at all is [`access`]'s to say.)
    View,
    /// Change title, description or visibility; delete the class.
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
    /// Invite users to the class (an invite-only class is visible to them), or remove them;
    /// see who is invited.
    ManageMembers,
    /// See who holds which role.
    ViewRoles,
    /// Send camera, microphone or screen in a live session.
    Publish,
    /// Chat, ask questions, upvote them and vote in polls in a live session.
    Participate,
    /// Delete chat messages; answer, dismiss and reopen questions; see who asked anonymously.
    ModerateInteraction,
    /// Create polls, see their results while they run, close them and share the results.
    ManagePolls,
    /// Raise or lower one's own hand in a live session.
    RaiseHand,
    /// In a live session: dismiss hands, invite to stage and send back, mute someone, remove
    /// someone, lock the session. Only on participants of a lower role ([`outranks`]).
    Moderate,
    /// See a session's attendance (GraphQL report and CSV).
    ViewAttendance,
    /// Start and stop recording a live session.
    Record,
}

/// The roles table (shared/DESIGN.md, "Roles").
pub fn allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match action {
        View => true,
        EditClass | ScheduleSession | StartSession | EndSession | ManageCoHosts | Record => {
            role == Role::Host
        }
        ManageSpeakers | ManageMembers | ViewRoles | Moderate | ViewAttendance => {
            matches!(role, Role::Host | Role::CoHost)
        }
        Publish => matches!(role, Role::Host | Role::CoHost | Role::Speaker),
        Participate => true,
        ModerateInteraction | ManagePolls => matches!(role, Role::Host | Role::CoHost),
        RaiseHand => true,
    }
}

/// Whether a moderator of role `actor` may act on a participant of role `target`: only on a
/// lower role (a co-host on speakers and viewers, the host on everyone else; nobody on the host).
pub fn outranks(actor: Role, target: Role) -> bool {
    fn rank(r: Role) -> u8 {
        match r {
            Role::Host => 3,
            Role::CoHost => 2,
            Role::Speaker => 1,
            Role::Viewer => 0,
        }
    }
    rank(actor) > rank(target)
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

/// The role of `user_id` in `class` when they may see it, `None` when they may not know it exists.
///
/// Public and unlisted classes are open to anyone signed in (an unlisted one is only not listed);
/// an invite-only class to its host, users with a role in it and invited members.
pub fn access(conn: &mut Conn, class: &Class, user_id: i64) -> diesel::QueryResult<Option<Role>> {
    let role = role_in(conn, class, user_id)?;
    let visible = role != Role::Viewer
        || class.visibility != class::INVITE_ONLY
        || class_member::is_member(conn, class.id, user_id)?;
    Ok(visible.then_some(role))
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
            (ManageMembers, [true, true, false, false]),
            (ViewRoles, [true, true, false, false]),
            (Participate, [true, true, true, true]),
            (ModerateInteraction, [true, true, false, false]),
            (ManagePolls, [true, true, false, false]),
            (Publish, [true, true, true, false]),
            (RaiseHand, [true, true, true, true]),
            (Moderate, [true, true, false, false]),
            (ViewAttendance, [true, true, false, false]),
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

    #[test]
    fn moderators_act_only_on_lower_roles() {
        use Role::*;
        assert!(outranks(Host, CoHost) && outranks(Host, Speaker) && outranks(Host, Viewer));
        assert!(outranks(CoHost, Speaker) && outranks(CoHost, Viewer));
        assert!(!outranks(CoHost, CoHost) && !outranks(CoHost, Host) && !outranks(Host, Host));
        assert!(!allowed(Speaker, Action::Moderate));
    }
}
