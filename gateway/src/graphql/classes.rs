//! Classes, their sessions and roles: queries, mutations and the session-state subscription.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ID, InputObject, Object, Result, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use schema::models::{
    class, class_member, class_role, class_session, participant, recording, user,
};
use schema::{Conn, TxError};

use super::errors::{self, ApiError};
use super::types::{
    ClassView, ClassVisibility, RecordingView, SessionState, SessionStateChange, SessionView, time,
};
use super::{caller, load, require_user, state, transaction};
use crate::auth::{self, Scope};
use crate::roles::{self, Action, Role};

/// Longest class title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest class description, in characters.
pub const MAX_DESCRIPTION: usize = 5000;
/// Most classes one page returns.
pub const MAX_PAGE: i32 = 100;

/// A change of session state, broadcast to subscribers.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub session_id: i64,
    pub class_id: i64,
    pub state: SessionState,
    pub at: i64,
}

#[derive(Default)]
pub struct ClassQuery;

#[derive(Default)]
pub struct ClassMutation;

#[derive(Default)]
pub struct ClassSubscription;

#[derive(InputObject)]
pub struct CreateClassInput {
    pub title: String,
    #[graphql(default)]
    pub description: String,
    /// Who may see the class; by default anyone with the link.
    #[graphql(default)]
    pub visibility: ClassVisibility,
}

#[derive(InputObject)]
pub struct UpdateClassInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<ClassVisibility>,
}

#[derive(InputObject)]
pub struct ScheduleSessionInput {
    pub class_id: ID,
    /// When it is planned to start.
    pub start: DateTime<Utc>,
    /// When it is planned to end; after `start`.
    pub end: Option<DateTime<Utc>>,
}

/// A role the host (or a co-host, for speakers) can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum AssignableRole {
    CoHost,
    Speaker,
}

/// The class and the caller's role in it; `None` (NOT_FOUND) when it does not exist or the caller
/// may not see it (see [`roles::access`]).
pub(super) fn class_and_role(
    c: &mut Conn,
    class_id: i64,
    user_id: i64,
) -> diesel::QueryResult<Option<(class::Class, Role)>> {
    let Some(found) = class::find(c, class_id)? else {
        return Ok(None);
    };
    Ok(roles::access(c, &found, user_id)?.map(|role| (found, role)))
}

/// The session and the caller's role in its class; `None` (NOT_FOUND) when it does not exist or
/// the caller may not see its class.
pub(super) fn session_and_role(
    c: &mut Conn,
    session_id: i64,
    user_id: i64,
) -> diesel::QueryResult<Option<(class_session::ClassSession, Role)>> {
    let Some(session) = class_session::find(c, session_id)? else {
        return Ok(None);
    };
    Ok(class_and_role(c, session.class_id, user_id)?.map(|(_, role)| (session, role)))
}

/// Fails unless `role` allows `action`.
fn require(role: Role, action: Action) -> Result<(), TxError<ApiError>> {
    if roles::allowed(role, action) {
        Ok(())
    } else {
        Err(TxError::Abort(ApiError::Forbidden(format!(
            "a {role} may not do this"
        ))))
    }
}

fn abort(e: ApiError) -> TxError<ApiError> {
    TxError::Abort(e)
}

#[Object]
impl ClassQuery {
    /// Classes the caller may see, newest first: public ones and those they host, have a role in
    /// or are invited to (unlisted classes of others are reached by their link only). `mine`: only
    /// classes the caller hosts, has a role in or is invited to.
    async fn classes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        #[graphql(default = false)] mine: bool,
    ) -> Result<Connection<String, ClassView, EmptyFields, EmptyFields>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(ApiError::bad_input("first", format!("must be 1 to {MAX_PAGE}")).into());
        }
        let before = match &after {
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ApiError::bad_input("after", "not a cursor from this API"))?,
            ),
            None => None,
        };
        let filter = if mine {
            class::Filter::MemberOf(user_id)
        } else {
            class::Filter::Visible(user_id)
        };
        let limit = i64::from(first);
        let mut rows = load(ctx, move |c| class::list(c, filter, before, limit + 1)).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(first as usize);
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|c| Edge::new(c.id.to_string(), ClassView(c))),
        );
        Ok(connection)
    }

    /// One class (NOT_FOUND for an invite-only class the caller is not invited to).
    async fn class(&self, ctx: &Context<'_>, id: ID) -> Result<ClassView> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let class_id = errors::parse_id("id", &id)?;
        let (found, _) = load(ctx, move |c| class_and_role(c, class_id, user_id))
            .await?
            .ok_or(ApiError::NotFound("class"))?;
        Ok(ClassView(found))
    }

    /// One session (NOT_FOUND when its class is invite-only and the caller is not invited).
    async fn session(&self, ctx: &Context<'_>, id: ID) -> Result<SessionView> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let session_id = errors::parse_id("id", &id)?;
        let (found, _) = load(ctx, move |c| session_and_role(c, session_id, user_id))
            .await?
            .ok_or(ApiError::NotFound("session"))?;
        Ok(SessionView(found))
    }

    /// Recordings of a session.
    async fn recordings(&self, ctx: &Context<'_>, session_id: ID) -> Result<Vec<RecordingView>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let id = errors::parse_id("sessionId", &session_id)?;
        let rows = load(ctx, move |c| {
            Ok(match session_and_role(c, id, user_id)? {
                Some(_) => Some(recording::list_for_session(c, id)?),
                None => None,
            })
        })
        .await?
        .ok_or(ApiError::NotFound("session"))?;
        Ok(rows.into_iter().map(RecordingView::from).collect())
    }
}

#[Object]
impl ClassMutation {
    /// Creates a class hosted by the caller.
    async fn create_class(&self, ctx: &Context<'_>, input: CreateClassInput) -> Result<ClassView> {
        let owner_id = require_user(ctx, Scope::Write)?.id;
        let title = errors::text("input.title", &input.title, 1, MAX_TITLE)?;
        let description =
            errors::text("input.description", &input.description, 0, MAX_DESCRIPTION)?;
        let visibility = input.visibility.as_db();
        let now = schema::now_ms();
        let created = load(ctx, move |c| {
            class::create(
                c,
                &class::NewClass {
                    owner_id,
                    title: &title,
                    description: &description,
                    visibility,
                    created_at: now,
                    updated_at: now,
                },
            )
        })
        .await?;
        Ok(ClassView(created))
    }

    /// Changes a class's title, description or visibility (host only).
    async fn update_class(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateClassInput,
    ) -> Result<ClassView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("id", &id)?;
        let title = input
            .title
            .as_deref()
            .map(|t| errors::text("input.title", t, 1, MAX_TITLE))
            .transpose()?;
        let description = input
            .description
            .as_deref()
            .map(|d| errors::text("input.description", d, 0, MAX_DESCRIPTION))
            .transpose()?;
        let visibility = input.visibility.map(ClassVisibility::as_db);
        let now = schema::now_ms();
        let updated = transaction(ctx, move |c| {
            let (_, role) = class_and_role(c, class_id, user_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(role, Action::EditClass)?;
            let changes = class::ClassChanges {
                title: title.as_deref(),
                description: description.as_deref(),
                visibility,
                updated_at: Some(now),
            };
            Ok(class::update(c, class_id, &changes)?)
        })
        .await?;
        Ok(ClassView(updated))
    }

    /// Deletes a class with its sessions and records (host only; not while a session is live).
    async fn delete_class(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("id", &id)?;
        transaction(ctx, move |c| {
            let (_, role) = class_and_role(c, class_id, user_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(role, Action::EditClass)?;
            if class_session::live_in_class(c, class_id)?.is_some() {
                return Err(abort(ApiError::Conflict(
                    "a session of this class is live: end it first".into(),
                )));
            }
            Ok(class::delete(c, class_id)?)
        })
        .await?;
        Ok(true)
    }

    /// Schedules a session of a class (host only).
    async fn schedule_session(
        &self,
        ctx: &Context<'_>,
        input: ScheduleSessionInput,
    ) -> Result<SessionView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("input.classId", &input.class_id)?;
        let start = input.start.timestamp_millis();
        let end = input.end.map(|e| e.timestamp_millis());
        if end.is_some_and(|e| e <= start) {
            return Err(ApiError::bad_input("input.end", "must be after input.start").into());
        }
        let now = schema::now_ms();
        let created = transaction(ctx, move |c| {
            let (_, role) = class_and_role(c, class_id, user_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(role, Action::ScheduleSession)?;
            Ok(class_session::create(
                c,
                &class_session::NewClassSession {
                    class_id,
                    scheduled_start: start,
                    scheduled_end: end,
                    state: class_session::SCHEDULED,
                    created_at: now,
                },
            )?)
        })
        .await?;
        Ok(SessionView(created))
    }

    /// Takes a scheduled session live (host only; one live session per class).
    async fn start_session(&self, ctx: &Context<'_>, id: ID) -> Result<SessionView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let session_id = errors::parse_id("id", &id)?;
        let now = schema::now_ms();
        let started = transaction(ctx, move |c| {
            let (session, role) = session_and_role(c, session_id, user_id)?
                .ok_or_else(|| abort(ApiError::NotFound("session")))?;
            require(role, Action::StartSession)?;
            if let Some(live) = class_session::live_in_class(c, session.class_id)? {
                return Err(abort(ApiError::Conflict(format!(
                    "session {} of this class is already live",
                    live.id
                ))));
            }
            class_session::start(c, session_id, now)?.ok_or_else(|| {
                abort(ApiError::Conflict(format!(
                    "the session is {}, not scheduled",
                    session.state
                )))
            })
        })
        .await?;
        publish(ctx, &started);
        Ok(SessionView(started))
    }

    /// Ends a session (host only).
    async fn end_session(&self, ctx: &Context<'_>, id: ID) -> Result<SessionView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let session_id = errors::parse_id("id", &id)?;
        let now = schema::now_ms();
        let ended = transaction(ctx, move |c| {
            let (_, role) = session_and_role(c, session_id, user_id)?
                .ok_or_else(|| abort(ApiError::NotFound("session")))?;
            require(role, Action::EndSession)?;
            class_session::end(c, session_id, now)?
                .ok_or_else(|| abort(ApiError::Conflict("the session has already ended".into())))
        })
        .await?;
        publish(ctx, &ended);
        // Its recording ends with it (the file is finalised and stored in the background).
        state(ctx).recordings.stop(ended.id, false).await;
        // Everyone in it is told and disconnected; their visits end.
        let departed = state(ctx).live.end(ended.id);
        super::stage::record_departures(state(ctx), departed).await;
        let sid = ended.id;
        // Visits the hub no longer held (dropped connections) end with the session too.
        load(ctx, move |c| participant::close_open(c, sid, now)).await?;
        Ok(SessionView(ended))
    }

    /// Gives a user a standing role in a class: co-host (host only) or speaker (host or co-host).
    /// The user is named by `userId` or by the `email` of their account (one of the two). When
    /// they are in the class's live session, their right to publish follows at once and everyone
    /// gets `ParticipantRoleChanged`.
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        class_id: ID,
        user_id: Option<ID>,
        email: Option<String>,
        role: AssignableRole,
    ) -> Result<bool> {
        let caller_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("classId", &class_id)?;
        let (target, field) = match (user_id, email) {
            (Some(id), None) => (Target::Id(errors::parse_id("userId", &id)?), "userId"),
            (None, Some(email)) => (Target::Email(errors::email("email", &email)?), "email"),
            (None, None) => {
                return Err(ApiError::bad_input("userId", "give userId or email").into());
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_input("email", "give userId or email, not both").into());
            }
        };
        let now = schema::now_ms();
        let change = transaction(ctx, move |c| {
            let (found, caller_role) = class_and_role(c, class_id, caller_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            let needed = match role {
                AssignableRole::CoHost => Action::ManageCoHosts,
                AssignableRole::Speaker => Action::ManageSpeakers,
            };
            require(caller_role, needed)?;
            let target = match target {
                Target::Id(id) => user::find(c, id)?,
                Target::Email(email) => user::find_by_email(c, &email)?,
            }
            .ok_or_else(|| abort(ApiError::NotFound("user")))?
            .id;
            if found.owner_id == target {
                return Err(abort(ApiError::bad_input(
                    field,
                    "the host already has every right in the class",
                )));
            }
            // A co-host may not demote a co-host by making them a speaker.
            if roles::role_in(c, &found, target)? == Role::CoHost
                && !roles::allowed(caller_role, Action::ManageCoHosts)
            {
                return Err(abort(ApiError::Forbidden(format!(
                    "a {caller_role} may not change a co-host's role"
                ))));
            }
            let role = match role {
                AssignableRole::CoHost => class_role::CO_HOST,
                AssignableRole::Speaker => class_role::SPEAKER,
            };
            class_role::assign(
                c,
                &class_role::NewClassRole {
                    class_id,
                    user_id: target,
                    role,
                    created_at: now,
                },
            )?;
            Ok(role_change(c, &found, target)?)
        })
        .await?;
        apply_role_change(ctx, change);
        Ok(true)
    }

    /// Takes a user's standing role away: a co-host's (host only) or a speaker's (host or co-host).
    /// In the class's live session they become a viewer at once: what they publish is
    /// unpublished for everyone, and everyone gets `ParticipantRoleChanged`.
    async fn remove_role(&self, ctx: &Context<'_>, class_id: ID, user_id: ID) -> Result<bool> {
        let caller_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("classId", &class_id)?;
        let target = errors::parse_id("userId", &user_id)?;
        let change = transaction(ctx, move |c| {
            let (found, caller_role) = class_and_role(c, class_id, caller_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(caller_role, Action::ManageSpeakers)?;
            match roles::role_in(c, &found, target)? {
                Role::CoHost => require(caller_role, Action::ManageCoHosts)?,
                Role::Speaker => {}
                Role::Host | Role::Viewer => return Err(abort(ApiError::NotFound("role"))),
            }
            class_role::remove(c, class_id, target)?;
            Ok(role_change(c, &found, target)?)
        })
        .await?;
        apply_role_change(ctx, change);
        Ok(true)
    }

    /// Invites the user with this email (an existing account) to a class, so that they see it
    /// even when it is invite-only (host or co-host). Inviting someone again changes nothing.
    async fn invite_to_class(
        &self,
        ctx: &Context<'_>,
        class_id: ID,
        email: String,
    ) -> Result<bool> {
        let caller_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("classId", &class_id)?;
        let email = errors::email("email", &email)?;
        let now = schema::now_ms();
        transaction(ctx, move |c| {
            let (found, caller_role) = class_and_role(c, class_id, caller_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(caller_role, Action::ManageMembers)?;
            let invited =
                user::find_by_email(c, &email)?.ok_or_else(|| abort(ApiError::NotFound("user")))?;
            if found.owner_id == invited.id {
                return Err(abort(ApiError::bad_input(
                    "email",
                    "the host already has every right in the class",
                )));
            }
            class_member::invite(
                c,
                &class_member::NewClassMember {
                    class_id,
                    user_id: invited.id,
                    created_at: now,
                },
            )?;
            Ok(())
        })
        .await?;
        Ok(true)
    }

    /// Takes an invitation back: an invite-only class is hidden from the user again, and they
    /// cannot join its sessions (host or co-host). A role in the class is `removeRole`'s.
    async fn remove_from_class(
        &self,
        ctx: &Context<'_>,
        class_id: ID,
        user_id: ID,
    ) -> Result<bool> {
        let caller_id = require_user(ctx, Scope::Write)?.id;
        let class_id = errors::parse_id("classId", &class_id)?;
        let target = errors::parse_id("userId", &user_id)?;
        transaction(ctx, move |c| {
            let (_, caller_role) = class_and_role(c, class_id, caller_id)?
                .ok_or_else(|| abort(ApiError::NotFound("class")))?;
            require(caller_role, Action::ManageMembers)?;
            if !class_member::remove(c, class_id, target)? {
                return Err(abort(ApiError::NotFound("member")));
            }
            Ok(())
        })
        .await?;
        Ok(true)
    }
}

/// Who a role is given to.
enum Target {
    Id(i64),
    Email(String),
}

/// A role that changed in a class with a live session: (session, user, new role).
type RoleChange = Option<(i64, i64, Role)>;

/// The user's role in `class` now, if the class has a live session (read in the transaction
/// that changed it).
fn role_change(
    c: &mut Conn,
    class: &class::Class,
    user_id: i64,
) -> diesel::QueryResult<RoleChange> {
    let Some(live) = class_session::live_in_class(c, class.id)? else {
        return Ok(None);
    };
    Ok(Some((live.id, user_id, roles::role_in(c, class, user_id)?)))
}

/// A changed role reaches the live session: the participant's role and right to publish.
fn apply_role_change(ctx: &Context<'_>, change: RoleChange) {
    if let Some((session_id, user_id, role)) = change {
        state(ctx).live.set_role(session_id, user_id, role);
    }
}

fn publish(ctx: &Context<'_>, session: &class_session::ClassSession) {
    let event = SessionEvent {
        session_id: session.id,
        class_id: session.class_id,
        state: SessionState::parse(&session.state),
        at: session
            .ended_at
            .or(session.started_at)
            .unwrap_or_else(schema::now_ms),
    };
    // No receiver means nobody is subscribed.
    let _ = state(ctx).session_events.send(event);
}

#[Subscription]
impl ClassSubscription {
    /// The state of one session now, then every change (scheduled -> live -> ended). Ends with
    /// UNAUTHENTICATED when the caller's session or token is revoked.
    async fn session_state_changed(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> Result<impl Stream<Item = Result<SessionStateChange>>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let id = errors::parse_id("sessionId", &session_id)?;
        let caller = caller(ctx).clone();
        let state = state(ctx).clone();
        // Subscribe before checking, so no change between the check and the subscription is lost.
        let events = state.session_events.subscribe();
        let revocations = state.revocations.subscribe();
        let now = schema::now_ms();
        let still_valid = match caller.session_id() {
            Some(sid) => state
                .db
                .interact(move |c| schema::models::auth_session::is_active(c, sid, now))
                .await
                .map_err(ApiError::from)?,
            None => true,
        };
        if !still_valid {
            return Err(ApiError::Unauthenticated.into());
        }
        let (current, _) = state
            .db
            .interact(move |c| session_and_role(c, id, user_id))
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("session"))?;
        // The current state first, so a client never misses the state it subscribed in.
        let first = SessionStateChange {
            session_id: ID::from(current.id.to_string()),
            class_id: ID::from(current.class_id.to_string()),
            state: SessionState::parse(&current.state),
            at: time(
                current
                    .ended_at
                    .or(current.started_at)
                    .unwrap_or(current.created_at),
            ),
        };
        Ok(
            futures_util::stream::once(async move { Ok(first) }).chain(session_stream(
                id,
                caller,
                events,
                revocations,
            )),
        )
    }
}

/// Events of session `id`, until the caller's credential is revoked (then one error, then the end).
fn session_stream(
    id: i64,
    caller: auth::Caller,
    events: tokio::sync::broadcast::Receiver<SessionEvent>,
    revocations: tokio::sync::broadcast::Receiver<auth::Revoked>,
) -> impl Stream<Item = Result<SessionStateChange>> {
    futures_util::stream::unfold(Some((events, revocations, caller)), move |st| async move {
        let (mut events, mut revocations, caller) = st?;
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) if e.session_id == id => {
                        let change = SessionStateChange {
                            session_id: ID::from(e.session_id.to_string()),
                            class_id: ID::from(e.class_id.to_string()),
                            state: e.state,
                            at: time(e.at),
                        };
                        return Some((Ok(change), Some((events, revocations, caller))));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                r = revocations.recv() => match r {
                    Ok(r) if auth::ends(&caller, r) => {
                        return Some((Err(ApiError::Unauthenticated.into()), None));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    })
}
