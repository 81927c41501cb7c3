//! Joining a live session and WebRTC signaling over GraphQL: the browser's offers, answers and
//! candidates are mutations; the server's offers and everything that happens in the session come
//! on the `sessionEvents` subscription. The role is checked on the server for every operation.
//!
//! Whether a participant may publish is the SFU's to enforce: its peer joins with the right its
//! role gives (and loses or gains it when the role changes), and a peer without it gets no
//! producer whatever its descriptions say. The only look at SDP here is a courtesy: a first
//! offer from someone who may not publish that sends media is refused with FORBIDDEN, read with
//! the SFU's own parser (webrtc-rs), never as text.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject, Subscription, Union};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use schema::models::{class_session, participant, recording, session_removal, user};

use super::errors::{self, ApiError};
use super::interaction::{
    self, ChatMessageDeleted, ChatMessagePosted, PollUpdated, QuestionUpdated, Viewer,
};
use super::stage;
use super::types::RecordingView;
use super::{caller, load, require_user, state};
use crate::auth::{self, Scope};
use crate::live::{
    self, Delivery, Directed, HandLoweredReason as LiveHandLoweredReason, ParticipantInfo,
    RoomEvent, SCREEN_TRACKS, SessionState, TrackInfo, TrackSource,
};
use crate::roles::{self, Action, Role};

/// Largest session description accepted, in bytes.
pub const MAX_SDP: usize = 32 * 1024;
/// Largest ICE candidate accepted, in bytes.
pub const MAX_CANDIDATE: usize = 1024;

#[derive(Default)]
pub struct SignalingMutation;

#[derive(Default)]
pub struct SignalingSubscription;

/// A STUN or TURN server for the browser's `RTCPeerConnection`.
#[derive(SimpleObject, Clone)]
pub struct IceServer {
    pub urls: Vec<String>,
}

/// The caller's place in a live session.
#[derive(SimpleObject)]
pub struct JoinedSession {
    pub participant_id: ID,
    pub role: Role,
    /// ICE servers for the browser. Empty when the SFU is reachable directly (its address is in
    /// its answers).
    pub ice_servers: Vec<IceServer>,
}

/// A simulcast layer.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum VideoLayer {
    /// The smallest (thumbnails).
    Low,
    Medium,
    /// Full resolution (a large tile).
    High,
}

impl VideoLayer {
    fn index(self) -> u8 {
        match self {
            VideoLayer::Low => 0,
            VideoLayer::Medium => 1,
            VideoLayer::High => 2,
        }
    }

    fn from_index(i: u8) -> VideoLayer {
        match i {
            0 => VideoLayer::Low,
            1 => VideoLayer::Medium,
            _ => VideoLayer::High,
        }
    }
}

/// Someone in the session.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Participant")]
pub struct ParticipantView {
    pub id: ID,
    pub user_id: ID,
    pub name: String,
    pub role: Role,
    /// Their media connection is up.
    pub connected: bool,
}

impl From<ParticipantInfo> for ParticipantView {
    fn from(p: ParticipantInfo) -> ParticipantView {
        ParticipantView {
            id: ID::from(p.id.to_string()),
            user_id: ID::from(p.user_id.to_string()),
            name: p.name,
            role: p.role,
            connected: p.connected,
        }
    }
}

/// A published track.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Track")]
pub struct TrackView {
    pub id: ID,
    /// The id of the media stream it arrives in on the browser's connection
    /// (`RTCTrackEvent.streams[0].id`).
    pub stream_id: String,
    pub participant_id: ID,
    pub kind: TrackKind,
    pub muted: bool,
    /// What it carries: camera, microphone, or a shared screen and its sound.
    pub source: TrackSourceKind,
}

/// What a track carries.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "TrackSource")]
pub enum TrackSourceKind {
    Camera,
    Microphone,
    /// A shared screen, window or tab (announced with `shareScreen`).
    Screen,
    /// The sound of a shared screen or tab.
    ScreenAudio,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrackKind {
    Audio,
    Video,
}

impl From<TrackInfo> for TrackView {
    fn from(t: TrackInfo) -> TrackView {
        TrackView {
            id: ID::from(t.id),
            stream_id: t.stream_id,
            participant_id: ID::from(t.participant_id.to_string()),
            kind: if t.video {
                TrackKind::Video
            } else {
                TrackKind::Audio
            },
            muted: t.muted,
            source: match t.source {
                TrackSource::Camera => TrackSourceKind::Camera,
                TrackSource::Microphone => TrackSourceKind::Microphone,
                TrackSource::Screen => TrackSourceKind::Screen,
                TrackSource::ScreenAudio => TrackSourceKind::ScreenAudio,
            },
        }
    }
}

/// The longest browser track id `shareScreen` takes (Chromium's are 36-character UUIDs).
const MAX_TRACK_ID: usize = 64;

/// The server offers a new session description: apply it and answer with `sendAnswer`.
#[derive(SimpleObject, Clone)]
pub struct ServerOffer {
    pub sdp: String,
}

#[derive(SimpleObject, Clone)]
pub struct ParticipantJoined {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant: ParticipantView,
}

#[derive(SimpleObject, Clone)]
pub struct ParticipantLeft {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant_id: ID,
}

#[derive(SimpleObject, Clone)]
pub struct ParticipantRoleChanged {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant_id: ID,
    pub role: Role,
}

#[derive(SimpleObject, Clone)]
pub struct TrackPublished {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub track: TrackView,
}

#[derive(SimpleObject, Clone)]
pub struct TrackUnpublished {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub track_id: ID,
    pub participant_id: ID,
}

#[derive(SimpleObject, Clone)]
pub struct TrackMuted {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub track_id: ID,
    pub participant_id: ID,
    pub muted: bool,
}

#[derive(SimpleObject, Clone)]
pub struct ActiveSpeakerChanged {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant_id: ID,
}

/// The layer this participant receives of a track changed (`null`: paused for lack of bandwidth
/// or by request).
#[derive(SimpleObject, Clone)]
pub struct LayerChanged {
    pub track_id: ID,
    pub layer: Option<VideoLayer>,
}

#[derive(SimpleObject, Clone)]
pub struct SessionEnded {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub session_id: ID,
}

/// This participant was removed from the session.
#[derive(SimpleObject, Clone)]
pub struct RemovedFromSession {
    pub reason: String,
}

/// A host or co-host invited this participant to stage: they are a speaker now and may
/// publish. Ask them to turn on camera and microphone; `leaveStage` declines.
#[derive(SimpleObject, Clone)]
pub struct StageInvitation {
    /// Always true (a GraphQL object needs a field).
    pub invited: bool,
}

/// A raised hand.
#[derive(SimpleObject, Clone)]
pub struct RaisedHand {
    pub participant_id: ID,
    pub raised_at: chrono::DateTime<chrono::Utc>,
}

#[derive(SimpleObject, Clone)]
pub struct HandRaised {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub hand: RaisedHand,
}

/// Why a hand went down.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum HandLoweredReason {
    /// Its owner lowered it.
    Lowered,
    /// A host or co-host dismissed it.
    Dismissed,
    /// Its owner was invited to stage.
    Invited,
}

#[derive(SimpleObject, Clone)]
pub struct HandLowered {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant_id: ID,
    pub reason: HandLoweredReason,
}

/// A kind of a participant's tracks muted by a host or co-host.
#[derive(SimpleObject, Clone)]
pub struct HostMute {
    pub participant_id: ID,
    pub kind: TrackKind,
}

/// A host or co-host muted a kind of a participant's tracks (`locked: true`: they cannot unmute
/// it), or allowed them to unmute it again (`locked: false`; they stay muted until they unmute).
#[derive(SimpleObject, Clone)]
pub struct HostMuteChanged {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub participant_id: ID,
    pub kind: TrackKind,
    pub locked: bool,
}

/// The session was locked (no one new may join but hosts and co-hosts) or opened.
#[derive(SimpleObject, Clone)]
pub struct SessionLockChanged {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub locked: bool,
}

/// A recording of the session started, or stopped (its state is no longer `RECORDING`).
#[derive(SimpleObject, Clone)]
pub struct RecordingChanged {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub recording: RecordingView,
}

/// Why a subscription starts again from a snapshot.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SnapshotReason {
    /// A subscription without `since`.
    First,
    /// `since` was given, but the session no longer holds the events after it (or it is not a
    /// number of this session).
    ResumeUnavailable,
    /// This subscription fell behind: the events it had not read yet are gone.
    Lagged,
}

impl From<live::SnapshotReason> for SnapshotReason {
    fn from(r: live::SnapshotReason) -> SnapshotReason {
        match r {
            live::SnapshotReason::First => SnapshotReason::First,
            live::SnapshotReason::ResumeUnavailable => SnapshotReason::ResumeUnavailable,
            live::SnapshotReason::Lagged => SnapshotReason::Lagged,
        }
    }
}

/// Everything in the session now, up to and including room event `seq`: replace what you knew
/// of the room with it, then apply the events that follow.
#[derive(SimpleObject, Clone)]
pub struct SessionSnapshot {
    pub reason: SnapshotReason,
    /// The number of the last room event it includes.
    pub seq: i64,
    pub participants: Vec<ParticipantView>,
    pub tracks: Vec<TrackView>,
    pub active_speaker_id: Option<ID>,
    /// Raised hands, oldest first.
    pub hands: Vec<RaisedHand>,
    /// Kinds muted by a host or co-host.
    pub host_mutes: Vec<HostMute>,
    /// No one new may join but hosts and co-hosts.
    pub locked: bool,
    /// The recording being made of the session now, if any.
    pub recording: Option<RecordingView>,
}

/// Something that happened in a live session. Room events (for everyone, chat, questions and
/// polls included) carry their `seq`;
/// `ServerOffer`, `LayerChanged` and `RemovedFromSession` are for the caller only.
#[derive(Union, Clone)]
pub enum SessionEventItem {
    SessionSnapshot(SessionSnapshot),
    ServerOffer(ServerOffer),
    ParticipantJoined(ParticipantJoined),
    ParticipantLeft(ParticipantLeft),
    ParticipantRoleChanged(ParticipantRoleChanged),
    TrackPublished(TrackPublished),
    TrackUnpublished(TrackUnpublished),
    TrackMuted(TrackMuted),
    ActiveSpeakerChanged(ActiveSpeakerChanged),
    LayerChanged(LayerChanged),
    SessionEnded(SessionEnded),
    RemovedFromSession(RemovedFromSession),
    ChatMessagePosted(ChatMessagePosted),
    ChatMessageDeleted(ChatMessageDeleted),
    QuestionUpdated(QuestionUpdated),
    PollUpdated(PollUpdated),
    StageInvitation(StageInvitation),
    HandRaised(HandRaised),
    HandLowered(HandLowered),
    HostMuteChanged(HostMuteChanged),
    SessionLockChanged(SessionLockChanged),
    RecordingChanged(RecordingChanged),
}

fn kind(video: bool) -> TrackKind {
    if video {
        TrackKind::Video
    } else {
        TrackKind::Audio
    }
}

fn hand(h: live::Hand) -> RaisedHand {
    RaisedHand {
        participant_id: id(h.participant_id),
        raised_at: super::types::time(h.raised_at_ms),
    }
}

fn id(n: i64) -> ID {
    ID::from(n.to_string())
}

/// Sequence numbers go out as GraphQL `Int`s (a session would need 2^63 events to overflow).
fn seq_out(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The event as `viewer` sees it; keeps `viewer`'s role current as role changes and snapshots
/// pass (what it may see of questions and polls depends on it).
fn item(
    session_id: i64,
    participant_id: i64,
    viewer: &mut Viewer,
    delivery: Delivery,
) -> SessionEventItem {
    match delivery {
        Delivery::Snapshot { reason, seq, state } => {
            if let Some(me) = state.participants.iter().find(|p| p.id == participant_id) {
                viewer.role = me.role;
            }
            snapshot_item(reason, seq, state)
        }
        Delivery::Room { seq, event } => {
            if let RoomEvent::ParticipantRoleChanged {
                participant_id: who,
                role,
            } = &event
                && *who == participant_id
            {
                viewer.role = *role;
            }
            room_item(session_id, seq_out(seq), event, *viewer)
        }
        Delivery::Direct(event) => direct_item(event),
    }
}

fn snapshot_item(reason: live::SnapshotReason, seq: u64, state: SessionState) -> SessionEventItem {
    SessionEventItem::SessionSnapshot(SessionSnapshot {
        reason: reason.into(),
        seq: seq_out(seq),
        participants: state.participants.into_iter().map(Into::into).collect(),
        tracks: state.tracks.into_iter().map(Into::into).collect(),
        active_speaker_id: state.active_speaker.map(id),
        hands: state.hands.into_iter().map(hand).collect(),
        host_mutes: state
            .host_mutes
            .into_iter()
            .map(|m| HostMute {
                participant_id: id(m.participant_id),
                kind: kind(m.video),
            })
            .collect(),
        locked: state.locked,
        recording: state.recording.map(RecordingView),
    })
}

fn direct_item(event: Directed) -> SessionEventItem {
    match event {
        Directed::ServerOffer { sdp } => SessionEventItem::ServerOffer(ServerOffer { sdp }),
        Directed::LayerChanged { track_id, layer } => {
            SessionEventItem::LayerChanged(LayerChanged {
                track_id: ID::from(track_id),
                layer: layer.map(VideoLayer::from_index),
            })
        }
        Directed::Removed { reason } => {
            SessionEventItem::RemovedFromSession(RemovedFromSession { reason })
        }
        Directed::StageInvitation => {
            SessionEventItem::StageInvitation(StageInvitation { invited: true })
        }
    }
}

fn room_item(session_id: i64, seq: i64, event: RoomEvent, viewer: Viewer) -> SessionEventItem {
    match event {
        RoomEvent::ParticipantJoined(p) => SessionEventItem::ParticipantJoined(ParticipantJoined {
            seq,
            participant: p.into(),
        }),
        RoomEvent::ParticipantLeft { participant_id } => {
            SessionEventItem::ParticipantLeft(ParticipantLeft {
                seq,
                participant_id: id(participant_id),
            })
        }
        RoomEvent::ParticipantRoleChanged {
            participant_id,
            role,
        } => SessionEventItem::ParticipantRoleChanged(ParticipantRoleChanged {
            seq,
            participant_id: id(participant_id),
            role,
        }),
        RoomEvent::TrackPublished(t) => SessionEventItem::TrackPublished(TrackPublished {
            seq,
            track: t.into(),
        }),
        RoomEvent::TrackUnpublished {
            track_id,
            participant_id,
        } => SessionEventItem::TrackUnpublished(TrackUnpublished {
            seq,
            track_id: ID::from(track_id),
            participant_id: id(participant_id),
        }),
        RoomEvent::TrackMuted {
            track_id,
            participant_id,
            muted,
        } => SessionEventItem::TrackMuted(TrackMuted {
            seq,
            track_id: ID::from(track_id),
            participant_id: id(participant_id),
            muted,
        }),
        RoomEvent::ActiveSpeaker { participant_id } => {
            SessionEventItem::ActiveSpeakerChanged(ActiveSpeakerChanged {
                seq,
                participant_id: id(participant_id),
            })
        }
        RoomEvent::SessionEnded => SessionEventItem::SessionEnded(SessionEnded {
            seq,
            session_id: id(session_id),
        }),
        RoomEvent::Interaction(change) => interaction::event_item(seq, &change, viewer),
        RoomEvent::HandRaised(h) => SessionEventItem::HandRaised(HandRaised { seq, hand: hand(h) }),
        RoomEvent::HandLowered {
            participant_id,
            reason,
        } => SessionEventItem::HandLowered(HandLowered {
            seq,
            participant_id: id(participant_id),
            reason: match reason {
                LiveHandLoweredReason::Lowered => HandLoweredReason::Lowered,
                LiveHandLoweredReason::Dismissed => HandLoweredReason::Dismissed,
                LiveHandLoweredReason::Invited => HandLoweredReason::Invited,
            },
        }),
        RoomEvent::HostMute {
            participant_id,
            video,
            locked,
        } => SessionEventItem::HostMuteChanged(HostMuteChanged {
            seq,
            participant_id: id(participant_id),
            kind: kind(video),
            locked,
        }),
        RoomEvent::SessionLocked { locked } => {
            SessionEventItem::SessionLockChanged(SessionLockChanged { seq, locked })
        }
        RoomEvent::RecordingChanged(r) => SessionEventItem::RecordingChanged(RecordingChanged {
            seq,
            recording: RecordingView(*r),
        }),
    }
}

/// Whether an offer sends media as the SFU reads it: an audio or video section whose direction
/// (the first direction attribute, as webrtc-rs takes it; none means sendrecv) is sendrecv or
/// sendonly. `None` when webrtc-rs cannot parse it (the SFU refuses it then).
pub fn offer_sends_media(sdp: &str) -> Option<bool> {
    use rtc::sdp::description::session::SessionDescription;
    let parsed = SessionDescription::unmarshal(&mut std::io::Cursor::new(sdp.as_bytes())).ok()?;
    Some(parsed.media_descriptions.iter().any(|m| {
        let media = m.media_name.media.as_str();
        let direction = m.attributes.iter().find_map(|a| match a.key.as_str() {
            d @ ("sendrecv" | "sendonly" | "recvonly" | "inactive") => Some(d),
            _ => None,
        });
        matches!(media, "audio" | "video")
            && matches!(direction, None | Some("sendrecv" | "sendonly"))
    }))
}

fn parse_session(session_id: &ID) -> Result<i64, ApiError> {
    errors::parse_id("sessionId", session_id)
}

/// The caller's participant in the live session, or FORBIDDEN.
pub(crate) fn me(
    ctx: &Context<'_>,
    session_id: i64,
    scope: Scope,
) -> Result<ParticipantInfo, ApiError> {
    let user = require_user(ctx, scope)?;
    state(ctx)
        .live
        .participant_of(session_id, user.id)
        .ok_or_else(|| ApiError::Forbidden("join the session first".into()))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::bad_input(
            field,
            format!("must be 1 to {max} bytes"),
        ));
    }
    Ok(())
}

#[Object]
impl SignalingMutation {
    /// Joins a live session: the caller becomes a participant with their role in the class. A
    /// participant who joins again (a reload, a dropped connection) keeps their id and role.
    /// Then: subscribe to `sessionEvents`, and send the browser's offer with `sendOffer`.
    async fn join_session(&self, ctx: &Context<'_>, session_id: ID) -> Result<JoinedSession> {
        let user = require_user(ctx, Scope::Write)?.clone();
        let sid = parse_session(&session_id)?;
        let live = state(ctx).live.clone();
        let ice_servers = state(ctx)
            .config
            .sfu
            .ice_server_urls()
            .into_iter()
            .map(|url| IceServer { urls: vec![url] })
            .collect();
        let user_id = user.id;
        let (found, role, removed) = load(ctx, move |c| {
            let Some(session) = class_session::find(c, sid)? else {
                return Ok(None);
            };
            let Some(class) = schema::models::class::find(c, session.class_id)? else {
                return Ok(None);
            };
            // NOT_FOUND, like a session that does not exist, when the caller may not see the class.
            let Some(role) = roles::access(c, &class, user_id)? else {
                return Ok(None);
            };
            let removed = session_removal::exists(c, sid, user_id)?;
            Ok(Some((session, role, removed)))
        })
        .await?
        .ok_or(ApiError::NotFound("session"))?;
        if removed {
            return Err(ApiError::Forbidden("you were removed from this session".into()).into());
        }
        if !roles::allowed(role, Action::View) {
            return Err(ApiError::NotFound("session").into());
        }
        if found.state != class_session::LIVE {
            return Err(
                ApiError::Conflict(format!("the session is {}, not live", found.state)).into(),
            );
        }
        if let Some(p) = live.participant_of(sid, user_id) {
            live.join(sid, p.clone()).map_err(stage::refused)?;
            return Ok(JoinedSession {
                participant_id: id(p.id),
                role: p.role,
                ice_servers,
            });
        }
        if found.locked && !matches!(role, Role::Host | Role::CoHost) {
            return Err(
                ApiError::Forbidden("the session is locked: no one new may join".into()).into(),
            );
        }
        let now = schema::now_ms();
        let role_name = match role {
            Role::Host => "host",
            Role::CoHost => "co_host",
            Role::Speaker => "speaker",
            Role::Viewer => "viewer",
        };
        let row = load(ctx, move |c| {
            participant::create(
                c,
                &participant::NewParticipant {
                    session_id: sid,
                    user_id,
                    role: role_name,
                    joined_at: now,
                },
            )
        })
        .await?;
        let joined = live.join(
            sid,
            ParticipantInfo {
                id: row.id,
                user_id,
                name: user.display_name.clone(),
                role,
                connected: false,
            },
        );
        if let Err(e) = joined {
            // Locked or removed meanwhile: the visit never began.
            let pid = row.id;
            load(ctx, move |c| participant::mark_left(c, pid, now)).await?;
            return Err(stage::refused(e).into());
        }
        if found.locked && live.snapshot(sid).is_some_and(|s| !s.locked) {
            // The lock is stored; the session's state in memory is new (everyone had left).
            let _ = live.command(sid, live::Command::Lock { locked: true });
        }
        if live.snapshot(sid).is_some_and(|s| s.recording.is_none()) {
            // Likewise a recording made while everyone was away.
            let active = load(ctx, move |c| recording::active_for_session(c, sid)).await?;
            if let Some(r) = active {
                let _ = live.command(sid, live::Command::Recording(r));
            }
        }
        Ok(JoinedSession {
            participant_id: id(row.id),
            role,
            ice_servers,
        })
    }

    /// The browser's offer; returns the SFU's answer. The first offer connects the participant's
    /// media; later ones renegotiate (tracks added or removed). With `restart`, the connection is
    /// replaced by a new one (after an ICE failure): its tracks are published again from the new
    /// offer. Only participants whose role may publish publish anything: from anyone else a first
    /// offer that sends media is refused, and later ones get their sending sections answered
    /// inactive.
    async fn send_offer(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        sdp: String,
        #[graphql(default)] restart: bool,
    ) -> Result<String> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        check_len("sdp", &sdp, MAX_SDP)?;
        let app = state(ctx);
        let may_publish = roles::allowed(me.role, Action::Publish);
        let connecting = restart || app.live.peer_of(sid, me.id).is_none();
        if connecting && !may_publish && offer_sends_media(&sdp) == Some(true) {
            return Err(ApiError::Forbidden(format!(
                "a {} may not publish: raise your hand to be invited on stage",
                me.role
            ))
            .into());
        }
        if restart {
            // The old connection goes first, so the new one is not offered its own old tracks.
            app.live.detach(sid, me.id);
        }
        let peer = app.live.peer_of(sid, me.id);
        let bad = |e: sfu::JoinError| -> async_graphql::Error {
            match e {
                sfu::JoinError::BadOffer(m) => ApiError::bad_input("sdp", m).into(),
                other => {
                    tracing::warn!(error = %other, "the SFU refused an offer");
                    ApiError::Internal.into()
                }
            }
        };
        match peer {
            Some(peer) => Ok(app.sfu.offer(peer, sdp).await.map_err(bad)?),
            None => {
                let rights = sfu::PeerRights {
                    publish: may_publish,
                };
                let (peer, answer) = app
                    .sfu
                    .join_with(&live::room_of(sid), sdp, rights)
                    .await
                    .map_err(bad)?;
                app.live.attach(sid, me.id, peer);
                // The role may have changed while the SFU was joining.
                if let Some(now) = app.live.participant(sid, me.id) {
                    let allowed = roles::allowed(now.role, Action::Publish);
                    if allowed != may_publish {
                        app.sfu.set_publish(peer, allowed);
                    }
                }
                Ok(answer)
            }
        }
    }

    /// The browser's answer to a `ServerOffer`. (What it may publish is the SFU's to enforce.)
    /// BAD_USER_INPUT (`sdp`) when no server offer waits for an answer or it cannot be applied.
    async fn send_answer(&self, ctx: &Context<'_>, session_id: ID, sdp: String) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        check_len("sdp", &sdp, MAX_SDP)?;
        let app = state(ctx);
        let peer = app
            .live
            .peer_of(sid, me.id)
            .ok_or_else(|| ApiError::Conflict("no media connection: send an offer first".into()))?;
        match app.sfu.answer_checked(peer, sdp).await {
            Ok(()) => Ok(true),
            Err(
                e @ (sfu::AnswerError::NoOfferPending
                | sfu::AnswerError::BadAnswer(_)
                | sfu::AnswerError::UnknownPeer),
            ) => Err(ApiError::bad_input("sdp", e.to_string()).into()),
            Err(e) => {
                tracing::warn!(error = %e, "the SFU could not take an answer");
                Err(ApiError::Internal.into())
            }
        }
    }

    /// A trickled ICE candidate of the browser (`candidate:...`). Optional: the SFU learns the
    /// browser's address from its connectivity checks. BAD_USER_INPUT (`candidate`) when it is
    /// not a candidate.
    async fn send_ice_candidate(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        candidate: String,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        check_len("candidate", &candidate, MAX_CANDIDATE)?;
        let app = state(ctx);
        let peer = app
            .live
            .peer_of(sid, me.id)
            .ok_or_else(|| ApiError::Conflict("no media connection: send an offer first".into()))?;
        match app.sfu.add_ice_candidate_checked(peer, candidate) {
            Ok(()) => Ok(true),
            Err(e @ (sfu::CandidateError::BadCandidate(_) | sfu::CandidateError::UnknownPeer)) => {
                Err(ApiError::bad_input("candidate", e.to_string()).into())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the SFU could not take a candidate");
                Err(ApiError::Internal.into())
            }
        }
    }

    /// The highest simulcast layer the caller wants of a track, from the size it shows it at
    /// (`null` pauses it). Within that, the layer follows the caller's bandwidth.
    async fn set_preferred_layer(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        track_id: ID,
        layer: Option<VideoLayer>,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        let app = state(ctx);
        let (source, track) = app
            .live
            .track_source(sid, &track_id)
            .ok_or(ApiError::NotFound("track"))?;
        let peer = app
            .live
            .peer_of(sid, me.id)
            .ok_or_else(|| ApiError::Conflict("no media connection: send an offer first".into()))?;
        Ok(app
            .sfu
            .set_preferred_layer(peer, source, &track, layer.map(VideoLayer::index)))
    }

    /// Tells everyone one of the caller's tracks is muted (or not). The browser stops sending
    /// itself; this is what the others see. Unmuting a kind a host or co-host muted is
    /// FORBIDDEN until they allow it (`allowUnmute`).
    async fn set_track_muted(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        track_id: ID,
        muted: bool,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        state(ctx)
            .live
            .set_muted(sid, me.id, &track_id, muted)
            .map_err(stage::refused)?;
        Ok(true)
    }

    /// Announces a screen share before offering it: the caller's tracks with these ids (the
    /// browser's `MediaStreamTrack.id` of the screen's picture and, when the browser captures
    /// it, its sound; they name the tracks in the caller's offer) are published as `SCREEN` and
    /// `SCREEN_AUDIO`, and everyone's app shows the screen large. Hosts, co-hosts and speakers
    /// only (FORBIDDEN otherwise). A share stops when its tracks are removed from the
    /// connection (the next offer).
    async fn share_screen(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        track_ids: Vec<String>,
    ) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        if track_ids.is_empty() || track_ids.len() > SCREEN_TRACKS {
            return Err(ApiError::bad_input(
                "trackIds",
                format!("one or {SCREEN_TRACKS} track ids: the screen's picture, and its sound"),
            )
            .into());
        }
        if let Some(bad) = track_ids
            .iter()
            .find(|t| t.is_empty() || t.len() > MAX_TRACK_ID || t.chars().any(char::is_whitespace))
        {
            return Err(ApiError::bad_input(
                "trackIds",
                format!(
                    "{:?} is not a track id (1 to {MAX_TRACK_ID} characters, no spaces)",
                    bad.chars().take(MAX_TRACK_ID).collect::<String>()
                ),
            )
            .into());
        }
        let me = me(ctx, sid, Scope::Write)?;
        state(ctx)
            .live
            .share_screen(sid, me.id, track_ids)
            .map_err(stage::refused)?;
        Ok(true)
    }

    /// Leaves the session: the media connection closes and everyone is told.
    async fn leave_session(&self, ctx: &Context<'_>, session_id: ID) -> Result<bool> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Write)?;
        let app = state(ctx);
        if let Some(departure) = app.live.leave(sid, me.id) {
            stage::record_departures(app, vec![departure]).await;
        }
        Ok(true)
    }
}

#[Subscription]
impl SignalingSubscription {
    /// Everything that happens in a live session the caller has joined. Room events (everyone
    /// and every track, roles, mutes, the speaker, the end) are numbered (`seq`); with `since`
    /// (the last `seq` received) a resubscription gets exactly what it missed when the server
    /// still holds it. Otherwise, and on a first subscription, it starts with a
    /// `SessionSnapshot` (reason FIRST or RESUME_UNAVAILABLE), and a subscription that falls too
    /// far behind gets a `SessionSnapshot` (LAGGED) in place of what it missed, never a silent
    /// gap. The caller's own signaling (`ServerOffer`, `LayerChanged`, `RemovedFromSession`)
    /// comes on a lane of its own that room traffic cannot push out: if several server offers
    /// pile up, only the newest is delivered. Ends after `SessionEnded` or
    /// `RemovedFromSession`, or with UNAUTHENTICATED on sign-out.
    async fn session_events(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        since: Option<i64>,
    ) -> Result<impl Stream<Item = SessionEventItem>> {
        let sid = parse_session(&session_id)?;
        let me = me(ctx, sid, Scope::Read)?;
        let app = state(ctx).clone();
        let caller = caller(ctx).clone();
        let revocations = app.revocations.subscribe();
        // A negative `since` is no number of ours: a snapshot (RESUME_UNAVAILABLE).
        let since = since.map(|n| u64::try_from(n).unwrap_or(u64::MAX));
        let subscriber = app
            .live
            .subscribe(sid, me.id, since)
            .ok_or(ApiError::NotFound("session"))?;
        let _ = user::find; // the participant's name came from the users table at join
        let batches = futures_util::stream::unfold(Some((subscriber, revocations)), move |st| {
            let caller = caller.clone();
            async move {
                let (mut subscriber, mut revocations) = st?;
                loop {
                    tokio::select! {
                        batch = subscriber.next() => {
                            let batch = batch?;
                            return Some((batch, Some((subscriber, revocations))));
                        }
                        r = revocations.recv() => match r {
                            Ok(r) if auth::ends(&caller, r) => return None,
                            Ok(_) | Err(RecvError::Lagged(_)) => continue,
                            Err(RecvError::Closed) => return None,
                        },
                    }
                }
            }
        });
        let pid = me.id;
        let mut viewer = Viewer::of(&me);
        Ok(batches.flat_map(move |batch| {
            let items: Vec<SessionEventItem> = batch
                .into_iter()
                .map(|d| item(sid, pid, &mut viewer, d))
                .collect();
            futures_util::stream::iter(items)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::offer_sends_media;

    const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn sdp(media: &str) -> String {
        format!("{HEAD}{media}")
    }

    #[test]
    fn sending_is_read_as_webrtc_rs_reads_it() {
        let recv_only = sdp(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n",
        );
        assert_eq!(offer_sends_media(&recv_only), Some(false));
        let sending = sdp(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n",
        );
        assert_eq!(offer_sends_media(&sending), Some(true));
        // No direction attribute means sendrecv.
        assert_eq!(
            offer_sends_media(&sdp("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n")),
            Some(true)
        );
        // A data channel sends no media.
        assert_eq!(
            offer_sends_media(&sdp(
                "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sendrecv\r\n"
            )),
            Some(false)
        );
        // What text matching missed: a space after `m=`, and the first of two directions.
        let spaced = sdp("m= video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n");
        assert_eq!(offer_sends_media(&spaced), Some(true));
        let two = sdp("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=recvonly\r\n");
        assert_eq!(offer_sends_media(&two), Some(true));
        assert_eq!(offer_sends_media("not sdp"), None);
    }
}
