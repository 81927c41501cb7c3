//! Recording a live session and watching it afterwards: start and stop (host only), the
//! recordings of a class, one recording with its playback URL, and the replay of the session's
//! chat and questions beside it.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use schema::models::{chat_message, class_session, question, recording};

use super::classes::{class_and_role, session_and_role};
use super::errors::{self, ApiError};
use super::types::RecordingView;
use super::{load, require_user, state};
use crate::auth::Scope;
use crate::recording::StartFailed;
use crate::roles::{self, Action, Role};

/// Most chat lines and questions a replay returns of each (the oldest ones).
pub const MAX_REPLAY: i64 = 10_000;

#[derive(Default)]
pub struct RecordingQuery;

#[derive(Default)]
pub struct RecordingMutation;

/// A chat message of a recorded session, placed on the recording's timeline.
#[derive(SimpleObject)]
pub struct ReplayChatLine {
    pub id: ID,
    pub author: String,
    pub body: String,
    /// Milliseconds from the start of the recording (negative: before it started).
    pub offset_ms: i64,
}

/// A question of a recorded session, placed where it was asked.
#[derive(SimpleObject)]
pub struct ReplayQuestion {
    pub id: ID,
    pub body: String,
    /// Who asked; `null` when they asked anonymously (hosts and co-hosts still see the name).
    pub author: Option<String>,
    pub votes: i32,
    /// `open`, `answered` or `dismissed` (as the session left it).
    pub state: String,
    pub answer: Option<String>,
    /// Milliseconds from the start of the recording to when it was asked.
    pub offset_ms: i64,
    /// Milliseconds from the start of the recording to when it was answered, if it was.
    pub answered_offset_ms: Option<i64>,
}

/// What happened beside the video: the chat and the questions, in order.
#[derive(SimpleObject)]
pub struct Replay {
    pub chat: Vec<ReplayChatLine>,
    pub questions: Vec<ReplayQuestion>,
}

/// The recording and the caller's role in its class; `None` when it does not exist or the
/// caller may not see its class.
fn recording_and_role(
    c: &mut schema::Conn,
    recording_id: i64,
    user_id: i64,
) -> diesel::QueryResult<Option<(recording::Recording, Role)>> {
    let Some(r) = recording::find(c, recording_id)? else {
        return Ok(None);
    };
    Ok(session_and_role(c, r.session_id, user_id)?.map(|(_, role)| (r, role)))
}

#[Object]
impl RecordingQuery {
    /// One recording (`null` when there is none, or its class is not visible to the caller).
    async fn recording(&self, ctx: &Context<'_>, id: ID) -> Result<Option<RecordingView>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let id = errors::parse_id("id", &id)?;
        let found = load(ctx, move |c| recording_and_role(c, id, user_id)).await?;
        Ok(found.map(|(r, _)| RecordingView(r)))
    }

    /// The recordings of a class's sessions, newest first.
    async fn class_recordings(
        &self,
        ctx: &Context<'_>,
        class_id: ID,
    ) -> Result<Vec<RecordingView>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let class_id = errors::parse_id("classId", &class_id)?;
        let rows = load(ctx, move |c| {
            Ok(match class_and_role(c, class_id, user_id)? {
                Some(_) => Some(recording::list_for_class(c, class_id)?),
                None => None,
            })
        })
        .await?
        .ok_or(ApiError::NotFound("class"))?;
        Ok(rows.into_iter().map(RecordingView).collect())
    }

    /// The chat and questions of a recording's session on the recording's timeline (deleted
    /// messages left out), for a replay beside the video.
    async fn recording_replay(&self, ctx: &Context<'_>, recording_id: ID) -> Result<Replay> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let id = errors::parse_id("recordingId", &recording_id)?;
        let (r, role) = load(ctx, move |c| recording_and_role(c, id, user_id))
            .await?
            .ok_or(ApiError::NotFound("recording"))?;
        let sid = r.session_id;
        let (mut lines, questions) = load(ctx, move |c| {
            Ok((
                chat_message::page(c, sid, None, MAX_REPLAY)?,
                question::list_for_session(c, sid)?,
            ))
        })
        .await?;
        lines.reverse();
        let (start, duration) = (r.created_at, r.duration_ms);
        let offset = |at: i64| timeline_offset(at, start, duration);
        let moderates = roles::allowed(role, Action::ModerateInteraction);
        Ok(Replay {
            chat: lines
                .into_iter()
                .map(|(m, author)| ReplayChatLine {
                    id: ID::from(m.id.to_string()),
                    author,
                    body: m.body,
                    offset_ms: offset(m.created_at),
                })
                .collect(),
            questions: questions
                .into_iter()
                .take(MAX_REPLAY as usize)
                .map(|row| {
                    let q = row.question;
                    let named = !q.anonymous || moderates || q.user_id == user_id;
                    ReplayQuestion {
                        id: ID::from(q.id.to_string()),
                        body: q.body,
                        author: named.then_some(row.asker_name),
                        votes: i32::try_from(row.voters.len()).unwrap_or(i32::MAX),
                        state: q.state,
                        answer: q.answer,
                        offset_ms: offset(q.created_at),
                        answered_offset_ms: q.answered_at.map(offset),
                    }
                })
                .collect(),
        })
    }
}

#[Object]
impl RecordingMutation {
    /// Starts recording a live session (host only): everyone on stage composited into one
    /// video with all sound mixed. Everyone in the session gets `RecordingChanged`. `CONFLICT`
    /// when it is being recorded already or is not live.
    async fn start_recording(&self, ctx: &Context<'_>, session_id: ID) -> Result<RecordingView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let sid = errors::parse_id("sessionId", &session_id)?;
        let (session, role) = load(ctx, move |c| session_and_role(c, sid, user_id))
            .await?
            .ok_or(ApiError::NotFound("session"))?;
        if !roles::allowed(role, Action::Record) {
            return Err(ApiError::Forbidden(format!("a {role} may not record")).into());
        }
        if session.state != class_session::LIVE {
            return Err(ApiError::Conflict("the session is not live".into()).into());
        }
        let class_id = session.class_id;
        let title = load(ctx, move |c| schema::models::class::find(c, class_id))
            .await?
            .map(|c| c.title)
            .unwrap_or_default();
        let app = state(ctx);
        match app.recordings.start(app, &session, &title).await {
            Ok(r) => Ok(RecordingView(r)),
            Err(StartFailed::AlreadyRecording) => {
                Err(ApiError::Conflict("the session is being recorded already".into()).into())
            }
            Err(e) => {
                tracing::error!(session = sid, error = %e, "a recording could not start");
                Err(ApiError::Internal.into())
            }
        }
    }

    /// Stops recording the session (host only) and returns the recording once its file is
    /// final (`UPLOADING`; it becomes `READY` when stored). `CONFLICT` when it is not being
    /// recorded.
    async fn stop_recording(&self, ctx: &Context<'_>, session_id: ID) -> Result<RecordingView> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let sid = errors::parse_id("sessionId", &session_id)?;
        let (_, role) = load(ctx, move |c| session_and_role(c, sid, user_id))
            .await?
            .ok_or(ApiError::NotFound("session"))?;
        if !roles::allowed(role, Action::Record) {
            return Err(ApiError::Forbidden(format!("a {role} may not record")).into());
        }
        let Some(id) = state(ctx).recordings.stop(sid, true).await else {
            return Err(ApiError::Conflict("the session is not being recorded".into()).into());
        };
        let row = load(ctx, move |c| recording::find(c, id))
            .await?
            .ok_or(ApiError::NotFound("recording"))?;
        Ok(RecordingView(row))
    }
}

/// Where a moment of the session falls on the recording's timeline, in ms: from the recording's
/// start (its row's creation), within the file once its length is known. The file starts a
/// little after the row is made (the pipeline starting) and its length is its media's, so a line
/// sent in the last moments of a recording can otherwise land just past the end, where a player
/// never shows it; one sent just before the start shows at 0.
fn timeline_offset(at: i64, start: i64, duration_ms: Option<i64>) -> i64 {
    let offset = at - start;
    match duration_ms {
        Some(duration) => offset.clamp(0, duration.max(0)),
        None => offset,
    }
}

#[cfg(test)]
mod tests {
    use super::timeline_offset;

    #[test]
    fn a_line_is_placed_within_the_recorded_file() {
        // The recording started at 1000; its file lasts 26037 ms.
        assert_eq!(timeline_offset(2074, 1000, Some(26_037)), 1074);
        assert_eq!(
            timeline_offset(27_038, 1000, Some(26_037)),
            26_037,
            "sent in the last moment: at the end, not past it"
        );
        assert_eq!(timeline_offset(900, 1000, Some(26_037)), 0);
        // Still recording: no length yet.
        assert_eq!(timeline_offset(90_000, 1000, None), 89_000);
    }
}
