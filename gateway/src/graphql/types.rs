//! GraphQL output types: views over schema rows, resolving their relations on demand.

use async_graphql::{ComplexObject, Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};

use schema::models::{
    api_token::ApiToken,
    class::Class,
    class_session::ClassSession,
    recording::{self, Recording},
    user::User,
};

use super::errors::ApiError;
use super::{caller, load, require_user, state};
use crate::auth::Scope;
use crate::roles::{self, Action, Role};

/// Unix milliseconds to a UTC time.
pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A user as others see them; `email` only for the user themselves.
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct UserView {
    pub id: ID,
    pub display_name: String,
    /// Only visible to the user themselves.
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl UserView {
    pub fn of(user: &User, viewer_id: Option<i64>) -> UserView {
        UserView {
            id: ID::from(user.id.to_string()),
            display_name: user.display_name.clone(),
            email: if viewer_id == Some(user.id) {
                user.email.clone()
            } else {
                None
            },
            created_at: time(user.created_at),
        }
    }
}

/// Who may see a class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, async_graphql::Enum)]
pub enum ClassVisibility {
    /// Listed for everyone; anyone signed in may open it and join its sessions.
    Public,
    /// Not listed for others; anyone signed in who has the link may open it and join.
    #[default]
    Unlisted,
    /// Only the host, co-hosts, speakers and invited members see it; to anyone else it does not
    /// exist.
    InviteOnly,
}

impl ClassVisibility {
    /// The value stored in `classes.visibility`.
    pub fn as_db(self) -> &'static str {
        match self {
            ClassVisibility::Public => schema::models::class::PUBLIC,
            ClassVisibility::Unlisted => schema::models::class::UNLISTED,
            ClassVisibility::InviteOnly => schema::models::class::INVITE_ONLY,
        }
    }

    /// From the stored value; anything unknown is treated as the most private.
    pub fn from_db(s: &str) -> ClassVisibility {
        match s {
            schema::models::class::PUBLIC => ClassVisibility::Public,
            schema::models::class::UNLISTED => ClassVisibility::Unlisted,
            _ => ClassVisibility::InviteOnly,
        }
    }
}

/// A class.
pub struct ClassView(pub Class);

#[Object(name = "Class")]
impl ClassView {
    async fn id(&self) -> ID {
        ID::from(self.0.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Who may see it.
    async fn visibility(&self) -> ClassVisibility {
        ClassVisibility::from_db(&self.0.visibility)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        time(self.0.updated_at)
    }
    /// The host.
    async fn owner(&self, ctx: &Context<'_>) -> Result<UserView> {
        let owner_id = self.0.owner_id;
        let owner = load(ctx, move |c| schema::models::user::find(c, owner_id))
            .await?
            .ok_or(ApiError::Internal)?;
        Ok(UserView::of(&owner, caller(ctx).user().map(|u| u.id)))
    }
    /// The caller's role in this class.
    async fn my_role(&self, ctx: &Context<'_>) -> Result<Role> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let class = self.0.clone();
        Ok(load(ctx, move |c| roles::role_in(c, &class, user_id)).await?)
    }
    /// Sessions, by scheduled start.
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<SessionView>> {
        let class_id = self.0.id;
        let sessions = load(ctx, move |c| {
            schema::models::class_session::list_for_class(c, class_id)
        })
        .await?;
        Ok(sessions.into_iter().map(SessionView).collect())
    }
    /// Co-hosts and speakers. Visible to the host and co-hosts.
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<RoleAssignment>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let class = self.0.clone();
        let viewer = caller(ctx).user().map(|u| u.id);
        let rows = load(ctx, move |c| {
            let role = roles::role_in(c, &class, user_id)?;
            if !roles::allowed(role, Action::ViewRoles) {
                return Ok(None);
            }
            let mut out = Vec::new();
            for r in schema::models::class_role::list_for_class(c, class.id)? {
                if let Some(u) = schema::models::user::find(c, r.user_id)? {
                    out.push((u, r.role));
                }
            }
            Ok(Some(out))
        })
        .await?
        .ok_or_else(|| ApiError::Forbidden("only the host and co-hosts see roles".into()))?;
        Ok(rows
            .into_iter()
            .map(|(u, r)| RoleAssignment {
                user: UserView::of(&u, viewer),
                role: if r == schema::models::class_role::CO_HOST {
                    Role::CoHost
                } else {
                    Role::Speaker
                },
            })
            .collect())
    }
    /// Users invited to the class (`inviteToClass`), in the order they were invited. Visible to
    /// the host and co-hosts.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<UserView>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let class = self.0.clone();
        let rows = load(ctx, move |c| {
            let role = roles::role_in(c, &class, user_id)?;
            if !roles::allowed(role, Action::ManageMembers) {
                return Ok(None);
            }
            let mut out = Vec::new();
            for m in schema::models::class_member::list_for_class(c, class.id)? {
                if let Some(u) = schema::models::user::find(c, m.user_id)? {
                    out.push(u);
                }
            }
            Ok(Some(out))
        })
        .await?
        .ok_or_else(|| ApiError::Forbidden("only the host and co-hosts see members".into()))?;
        Ok(rows
            .iter()
            .map(|u| UserView::of(u, Some(user_id)))
            .collect())
    }
}

/// A user's standing role in a class.
#[derive(SimpleObject)]
pub struct RoleAssignment {
    pub user: UserView,
    pub role: Role,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum SessionState {
    Scheduled,
    Live,
    Ended,
}

impl SessionState {
    pub fn parse(s: &str) -> SessionState {
        match s {
            "live" => SessionState::Live,
            "ended" => SessionState::Ended,
            _ => SessionState::Scheduled,
        }
    }
}

/// One occurrence of a class.
pub struct SessionView(pub ClassSession);

#[Object(name = "ClassSession")]
impl SessionView {
    async fn id(&self) -> ID {
        ID::from(self.0.id.to_string())
    }
    async fn class(&self, ctx: &Context<'_>) -> Result<ClassView> {
        let class_id = self.0.class_id;
        let class = load(ctx, move |c| schema::models::class::find(c, class_id))
            .await?
            .ok_or(ApiError::Internal)?;
        Ok(ClassView(class))
    }
    async fn state(&self) -> SessionState {
        SessionState::parse(&self.0.state)
    }
    async fn scheduled_start(&self) -> DateTime<Utc> {
        time(self.0.scheduled_start)
    }
    async fn scheduled_end(&self) -> Option<DateTime<Utc>> {
        self.0.scheduled_end.map(time)
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at.map(time)
    }
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at.map(time)
    }
    async fn recordings(&self, ctx: &Context<'_>) -> Result<Vec<RecordingView>> {
        let id = self.0.id;
        let rows = load(ctx, move |c| {
            schema::models::recording::list_for_session(c, id)
        })
        .await?;
        Ok(rows.into_iter().map(RecordingView::from).collect())
    }
}

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum RecordingState {
    Recording,
    Uploading,
    Ready,
    Failed,
}

/// The recording of a session.
#[derive(Clone)]
pub struct RecordingView(pub Recording);

impl From<Recording> for RecordingView {
    fn from(r: Recording) -> RecordingView {
        RecordingView(r)
    }
}

#[Object(name = "Recording")]
impl RecordingView {
    async fn id(&self) -> ID {
        ID::from(self.0.id.to_string())
    }
    async fn session_id(&self) -> ID {
        ID::from(self.0.session_id.to_string())
    }
    /// The class of its session.
    async fn class_id(&self, ctx: &Context<'_>) -> Result<ID> {
        Ok(ID::from(self.session(ctx).await?.0.to_string()))
    }
    /// The class's title and the day of the session, to show the recording by.
    async fn session_title(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(self.session(ctx).await?.1)
    }
    async fn state(&self) -> RecordingState {
        match self.0.state.as_str() {
            recording::RECORDING => RecordingState::Recording,
            recording::UPLOADING => RecordingState::Uploading,
            recording::READY => RecordingState::Ready,
            _ => RecordingState::Failed,
        }
    }
    /// When recording started.
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        time(self.0.updated_at)
    }
    /// Known once it stopped.
    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }
    /// Known once stored.
    async fn size_bytes(&self) -> Option<i64> {
        self.0.size_bytes
    }
    /// While `UPLOADING`: bytes stored so far (of `uploadTotalBytes`).
    async fn uploaded_bytes(&self, ctx: &Context<'_>) -> Option<i64> {
        let (done, _) = state(ctx).recordings.progress(self.0.id)?;
        i64::try_from(done).ok()
    }
    /// While `UPLOADING`: the size of the file being stored.
    async fn upload_total_bytes(&self, ctx: &Context<'_>) -> Option<i64> {
        let (_, total) = state(ctx).recordings.progress(self.0.id)?;
        i64::try_from(total).ok()
    }
    /// Why it failed, when it did.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// When `READY`: where it plays from. Signed, and it expires (after `recording.url_ttl_seconds`);
    /// the file is WebM (VP8 and Opus) and the URL answers HTTP Range requests (seeking).
    async fn playback_url(&self, ctx: &Context<'_>) -> Option<String> {
        state(ctx)
            .recordings
            .playback_url(&self.0, crate::recording::unix_now())
    }
}

impl RecordingView {
    /// The class id and the title of the recording's session (loaded once per field).
    async fn session(&self, ctx: &Context<'_>) -> Result<(i64, String)> {
        let sid = self.0.session_id;
        let found = load(ctx, move |c| {
            let Some(session) = schema::models::class_session::find(c, sid)? else {
                return Ok(None);
            };
            let class = schema::models::class::find(c, session.class_id)?;
            Ok(class.map(|class| (session, class)))
        })
        .await?
        .ok_or(super::errors::ApiError::NotFound("session"))?;
        let (session, class) = found;
        let day = time(session.started_at.unwrap_or(session.scheduled_start)).format("%Y-%m-%d");
        Ok((class.id, format!("{} — {day}", class.title)))
    }
}

/// An API token (never its secret).
#[derive(SimpleObject)]
#[graphql(name = "ApiToken", complex)]
pub struct ApiTokenView {
    pub id: ID,
    pub name: String,
    #[graphql(skip)]
    pub scopes_text: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[ComplexObject]
impl ApiTokenView {
    async fn scopes(&self) -> Vec<Scope> {
        Scope::parse_list(&self.scopes_text)
    }
}

impl From<ApiToken> for ApiTokenView {
    fn from(t: ApiToken) -> ApiTokenView {
        ApiTokenView {
            id: ID::from(t.id.to_string()),
            name: t.name,
            scopes_text: t.scopes,
            created_at: time(t.created_at),
            last_used_at: t.last_used_at.map(time),
        }
    }
}

/// A new API token with its secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedApiToken {
    pub token: ApiTokenView,
    /// Send as `Authorization: Bearer <secret>`. Not stored: copy it now.
    pub secret: String,
}

/// A sign-in option shown by the app.
#[derive(SimpleObject)]
pub struct AuthProvider {
    /// Name in the configuration.
    pub name: String,
    pub display_name: String,
    /// Open this URL (a browser navigation) to sign in with the provider.
    pub start_url: String,
}

/// The state of a session changed.
#[derive(SimpleObject, Clone)]
pub struct SessionStateChange {
    pub session_id: ID,
    pub class_id: ID,
    pub state: SessionState,
    pub at: DateTime<Utc>,
}
