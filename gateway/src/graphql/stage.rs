//! Raised hands, the stage, moderation and attendance of a live session, over GraphQL.
//!
//! Every mutation is a command of the session hub ([`crate::live`]) after a role check here:
//! raising a hand needs [`Action::RaiseHand`], everything a moderator does [`Action::Moderate`]
//! and, on a participant, a higher role than theirs ([`roles::outranks`]). The caller's role is
//! their role in the live session (an invitation to stage makes a viewer a speaker for the
//! session only). What follows (room events, the SFU's publishing rights and pauses) is the
//! hub's. Removals and the lock are stored, so they hold when the session's state in memory
//! goes (everyone left); visits and talk time are stored as `participants` rows.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use schema::models::{class, class_session, participant, session_removal};

use super::errors::{self, ApiError};
use super::signaling::TrackKind;
use super::types::time;
use super::{load, require_user, state};
use crate::AppState;
use crate::auth::Scope;
use crate::live::{Command, Departure, ParticipantInfo, Refused};
use crate::roles::{self, Action};

#[derive(Default)]
pub struct StageMutation;

#[derive(Default)]
pub struct AttendanceQuery;

/// What a refusal of the hub means to a client.
pub fn refused(e: Refused) -> ApiError {
    match e {
        Refused::NoSession => ApiError::NotFound("session"),
        Refused::UnknownParticipant => ApiError::NotFound("participant"),
        Refused::UnknownTrack => ApiError::NotFound("track"),
        e @ (Refused::Locked | Refused::Removed | Refused::MutedByHost | Refused::MayNotShare) => {
            ApiError::Forbidden(e.to_string())
        }
        e => ApiError::Conflict(e.to_string()),
    }
}

/// Records ended visits (their end and talk time); failures are logged, never the caller's.
pub async fn record_departures(app: &AppState, departures: Vec<Departure>) {
    if departures.is_empty() {
        return;
    }
    let now = schema::now_ms();
    let result = app
        .db
        .interact(move |c| {
            for d in departures {
                let talk = i64::try_from(d.talk_ms).unwrap_or(i64::MAX);
                participant::record_departure(c, d.participant_id, now, talk)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "recording departures failed");
    }
}

fn parse_session(id: &ID) -> Result<i64, ApiError> {
    errors::parse_id("sessionId", id)
}

/// The caller's participant in the live session, or FORBIDDEN.
fn me(ctx: &Context<'_>, sid: i64) -> Result<ParticipantInfo, ApiError> {
    let user = require_user(ctx, Scope::Write)?;
    state(ctx)
        .live
        .participant_of(sid, user.id)
        .ok_or_else(|| ApiError::Forbidden("join the session first".into()))
}

/// The caller, a moderator of the session.
fn moderator(ctx: &Context<'_>, sid: i64) -> Result<ParticipantInfo, ApiError> {
    let me = me(ctx, sid)?;
    if !roles::allowed(me.role, Action::Moderate) {
        return Err(ApiError::Forbidden(format!(
            "a {} may not moderate the session",
            me.role
        )));
    }
    Ok(me)
}

/// The caller (a moderator) and a participant they may act on.
fn moderator_over(
    ctx: &Context<'_>,
    sid: i64,
    participant_id: &ID,
) -> Result<(ParticipantInfo, ParticipantInfo), ApiError> {
    let me = moderator(ctx, sid)?;
    let pid = errors::parse_id("participantId", participant_id)?;
    let target = state(ctx)
        .live
        .participant(sid, pid)
        .ok_or(ApiError::NotFound("participant"))?;
    if !roles::outranks(me.role, target.role) {
        return Err(ApiError::Forbidden(format!(
            "a {} may not do that to a {}",
            me.role, target.role
        )));
    }
    Ok((me, target))
}

fn run(ctx: &Context<'_>, sid: i64, command: Command) -> Result<Vec<Departure>, ApiError> {
    state(ctx).live.command(sid, command).map_err(refused)
}

#[Object]
impl StageMutation {
    /// Raises the caller's hand (hosts and co-hosts see the queue, oldest first). Raising it
    /// again changes nothing.
    async fn raise_hand(&self, ctx: &Context<'_>, session_id: ID) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid)?;
        if !roles::allowed(me.role, Action::RaiseHand) {
            return Err(ApiError::Forbidden("you may not raise a hand".into()).into());
        }
        run(
            ctx,
            sid,
            Command::RaiseHand {
                participant_id: me.id,
                at_ms: schema::now_ms(),
            },
        )?;
        Ok(true)
    }

    /// Lowers the caller's hand (nothing changes when it is down).
    async fn lower_hand(&self, ctx: &Context<'_>, session_id: ID) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid)?;
        run(
            ctx,
            sid,
            Command::LowerHand {
                participant_id: me.id,
            },
        )?;
        Ok(true)
    }

    /// Dismisses a raised hand (host or co-host). CONFLICT when it is not raised.
    async fn dismiss_hand(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        moderator(ctx, sid)?;
        let pid = errors::parse_id("participantId", &participant_id)?;
        run(
            ctx,
            sid,
            Command::DismissHand {
                participant_id: pid,
            },
        )?;
        Ok(true)
    }

    /// Invites a viewer to stage (host or co-host): they become a speaker for this session and
    /// may publish at once; their hand goes down; they get `StageInvitation` (the app asks them
    /// to turn on camera and microphone; they may decline with `leaveStage`). CONFLICT when the
    /// participant is not a viewer.
    async fn invite_to_stage(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let (_, target) = moderator_over(ctx, sid, &participant_id)?;
        run(
            ctx,
            sid,
            Command::InviteToStage {
                participant_id: target.id,
            },
        )?;
        Ok(true)
    }

    /// Sends a speaker back to the audience (host or co-host): they become a viewer for this
    /// session and their tracks close at once for everyone. CONFLICT when not a speaker.
    async fn send_to_audience(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let (_, target) = moderator_over(ctx, sid, &participant_id)?;
        run(
            ctx,
            sid,
            Command::SendToAudience {
                participant_id: target.id,
            },
        )?;
        Ok(true)
    }

    /// The caller leaves the stage (or declines an invitation to it): a speaker becomes a viewer
    /// for this session; their tracks close. FORBIDDEN when the caller is not a speaker.
    async fn leave_stage(&self, ctx: &Context<'_>, session_id: ID) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid)?;
        if me.role != crate::roles::Role::Speaker {
            return Err(ApiError::Forbidden(format!(
                "only a speaker can leave the stage, not a {}",
                me.role
            ))
            .into());
        }
        run(
            ctx,
            sid,
            Command::SendToAudience {
                participant_id: me.id,
            },
        )?;
        Ok(true)
    }

    /// Mutes a participant's microphone (`AUDIO`) or camera (`VIDEO`) (host or co-host): the SFU
    /// pauses those tracks (and any of that kind they publish later); everyone gets
    /// `HostMuteChanged` (locked) and `TrackMuted`. The participant cannot unmute it
    /// (`setTrackMuted` is FORBIDDEN) until a moderator calls `allowUnmute`.
    async fn mute_participant(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
        kind: TrackKind,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let (_, target) = moderator_over(ctx, sid, &participant_id)?;
        run(
            ctx,
            sid,
            Command::HostMute {
                participant_id: target.id,
                video: kind == TrackKind::Video,
                locked: true,
            },
        )?;
        Ok(true)
    }

    /// Lets a participant muted by a moderator unmute that kind again (host or co-host). It does
    /// not unmute them: they do, if they want to.
    async fn allow_unmute(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
        kind: TrackKind,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let (_, target) = moderator_over(ctx, sid, &participant_id)?;
        run(
            ctx,
            sid,
            Command::HostMute {
                participant_id: target.id,
                video: kind == TrackKind::Video,
                locked: false,
            },
        )?;
        Ok(true)
    }

    /// Removes a participant from the session (host or co-host): their tracks close at once,
    /// they get `RemovedFromSession`, everyone else `ParticipantLeft`, and they cannot join this
    /// session again (FORBIDDEN).
    async fn remove_participant(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        participant_id: ID,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let (me, target) = moderator_over(ctx, sid, &participant_id)?;
        let now = schema::now_ms();
        // Stored first: from here on a join is refused whatever happens in memory.
        let (user_id, by) = (target.user_id, me.user_id);
        load(ctx, move |c| {
            session_removal::create(
                c,
                &session_removal::NewSessionRemoval {
                    session_id: sid,
                    user_id,
                    removed_by: by,
                    removed_at: now,
                },
            )
        })
        .await?;
        let departed = run(
            ctx,
            sid,
            Command::Remove {
                participant_id: target.id,
                reason: format!("you were removed from the session by the {}", me.role),
            },
        )?;
        record_departures(state(ctx), departed).await;
        Ok(true)
    }

    /// Locks the session (`locked: true`: no one new may join but hosts and co-hosts; those
    /// present may reconnect) or opens it again (host or co-host). Everyone gets
    /// `SessionLockChanged`.
    async fn lock_session(&self, ctx: &Context<'_>, session_id: ID, locked: bool) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        moderator(ctx, sid)?;
        load(ctx, move |c| class_session::set_locked(c, sid, locked)).await?;
        run(ctx, sid, Command::Lock { locked })?;
        Ok(true)
    }
}

/// One visit of a participant: from joining to leaving (several visits are several rows).
#[derive(SimpleObject, Clone, Debug)]
pub struct AttendanceVisit {
    pub participant_id: ID,
    pub user_id: ID,
    pub name: String,
    /// The account's email (hosts and co-hosts see it to tell people apart).
    pub email: Option<String>,
    /// The role they joined with.
    pub role: String,
    pub joined_at: DateTime<Utc>,
    /// `null` while they are still here.
    pub left_at: Option<DateTime<Utc>>,
    /// How long the visit lasted (up to now while still here), in seconds.
    pub present_seconds: i64,
    /// How long they were the active speaker in this visit, in seconds.
    pub talk_seconds: i64,
}

/// Who came to a session, when, for how long, and how long they spoke.
#[derive(SimpleObject, Clone, Debug)]
pub struct AttendanceReport {
    pub session_id: ID,
    /// Every visit, by person, then by time.
    pub visits: Vec<AttendanceVisit>,
    /// How many different people came.
    pub people: i32,
}

/// The attendance report of a session for `user_id`: NOT_FOUND when they may not see the
/// session, FORBIDDEN when their role may not see attendance.
pub async fn report(app: &AppState, sid: i64, user_id: i64) -> Result<AttendanceReport, ApiError> {
    let (allowed, visits) = app
        .db
        .interact(move |c| {
            let Some(session) = class_session::find(c, sid)? else {
                return Ok(None);
            };
            let Some(cl) = class::find(c, session.class_id)? else {
                return Ok(None);
            };
            let Some(role) = roles::access(c, &cl, user_id)? else {
                return Ok(None);
            };
            if !roles::allowed(role, Action::ViewAttendance) {
                return Ok(Some((false, Vec::new())));
            }
            Ok(Some((true, participant::visits(c, sid)?)))
        })
        .await?
        .ok_or(ApiError::NotFound("session"))?;
    if !allowed {
        return Err(ApiError::Forbidden(
            "only hosts and co-hosts see attendance".into(),
        ));
    }
    let now = schema::now_ms();
    let mut people = std::collections::HashSet::new();
    let visits = visits
        .into_iter()
        .map(|v| {
            let p = v.participant;
            people.insert(p.user_id);
            let talk_ms = match p.left_at {
                Some(_) => p.talk_ms,
                None => app
                    .live
                    .talk_time(sid, p.id)
                    .map_or(p.talk_ms, |d| i64::try_from(d.as_millis()).unwrap_or(0)),
            };
            AttendanceVisit {
                participant_id: ID::from(p.id.to_string()),
                user_id: ID::from(p.user_id.to_string()),
                name: v.display_name,
                email: v.email,
                role: p.role,
                joined_at: time(p.joined_at),
                left_at: p.left_at.map(time),
                present_seconds: (p.left_at.unwrap_or(now) - p.joined_at).max(0) / 1000,
                talk_seconds: talk_ms / 1000,
            }
        })
        .collect();
    Ok(AttendanceReport {
        session_id: ID::from(sid.to_string()),
        visits,
        people: i32::try_from(people.len()).unwrap_or(i32::MAX),
    })
}

/// One CSV field, quoted when it must be (RFC 4180); a leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV: a header, then one line per visit.
pub fn csv(report: &AttendanceReport) -> String {
    let mut out = String::from(
        "participant_id,user_id,name,email,role,joined_at,left_at,present_seconds,talk_seconds\r\n",
    );
    for v in &report.visits {
        let fields = [
            v.participant_id.to_string(),
            v.user_id.to_string(),
            csv_field(&v.name),
            csv_field(v.email.as_deref().unwrap_or("")),
            csv_field(&v.role),
            v.joined_at.to_rfc3339(),
            v.left_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            v.present_seconds.to_string(),
            v.talk_seconds.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

#[Object]
impl AttendanceQuery {
    /// Who came to a session, each visit with its join and leave time and talk time (hosts and
    /// co-hosts). The same as CSV: `GET /sessions/<id>/attendance.csv`.
    async fn attendance(&self, ctx: &Context<'_>, session_id: ID) -> Result<AttendanceReport> {
        let sid = parse_session(&session_id)?;
        let user_id = require_user(ctx, Scope::Read)?.id;
        Ok(report(state(ctx), sid, user_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Ada"), "Ada");
        assert_eq!(csv_field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
    }
}
