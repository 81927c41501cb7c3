//! One live session as a pure state machine: who is in it, their roles, their SFU peers and
//! tracks, muted state, the active speaker and talk time, raised hands and the stage,
//! moderation (mutes by the host, removals, the lock), and whether it ended.
//!
//! Moderation rules (who may ask is the GraphQL layer's to check, by role; what follows is here):
//! - a raised hand is lowered by its owner, dismissed by a moderator, or taken up by an
//!   invitation to stage: the viewer becomes a speaker for this session and may publish at once;
//!   they may leave the stage again (declining the invitation is leaving it);
//! - a mute by the host is a lock on the kind (microphone or camera): the SFU pauses the
//!   participant's tracks of that kind, tracks of it published later start paused, and the
//!   participant may not unmute them until a moderator allows it. Allowing never unmutes anyone:
//!   the participant unmutes themself afterwards, if they want;
//! - a removed user cannot join again while the session lasts; a locked session admits no new
//!   participant but hosts and co-hosts (those present may reconnect).
//!
//! [`SessionCore::apply`] takes a [`Command`] and the time, changes the state, and returns what
//! follows as [`Output`]s: room events (for everyone, numbered by the hub's log), directed events
//! (for one participant's mailbox) and actions for the SFU. It never does I/O, never reads the
//! clock, never locks and never spawns: the hub around it ([`super::Live`]) does all of that, so
//! it is tested with hand-built commands and an injected clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::models::recording::{self, Recording};
use sfu::{PeerId, TrackId, TrackKey};

use super::interaction::Interaction;
use crate::roles::{self, Role};

/// How long a participant whose connection dropped keeps its place.
pub const GRACE: Duration = Duration::from_secs(30);

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub connected: bool,
}

/// A published track as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Unique in the session: `<peer>-<track>`, the id the SFU gives the track on subscribers'
    /// connections.
    pub id: String,
    /// The media stream id subscribers see (`peer-<peer>`): maps a received track to its owner.
    pub stream_id: String,
    pub participant_id: i64,
    pub video: bool,
    pub muted: bool,
    /// What it carries: a camera or microphone, or a shared screen (and its sound).
    pub source: TrackSource,
}

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSource {
    Camera,
    Microphone,
    /// A shared screen, window or tab.
    Screen,
    /// The sound of a shared screen or tab.
    ScreenAudio,
}

impl TrackSource {
    fn of(video: bool, screen: bool) -> TrackSource {
        match (video, screen) {
            (true, false) => TrackSource::Camera,
            (false, false) => TrackSource::Microphone,
            (true, true) => TrackSource::Screen,
            (false, true) => TrackSource::ScreenAudio,
        }
    }
}

/// How many tracks one screen share may announce (its picture and its sound).
pub const SCREEN_TRACKS: usize = 2;

/// What happened in the session, for everyone in it. The hub numbers each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    ParticipantJoined(ParticipantInfo),
    ParticipantLeft {
        participant_id: i64,
    },
    ParticipantRoleChanged {
        participant_id: i64,
        role: Role,
    },
    TrackPublished(TrackInfo),
    TrackUnpublished {
        track_id: String,
        participant_id: i64,
    },
    TrackMuted {
        track_id: String,
        participant_id: i64,
        muted: bool,
    },
    ActiveSpeaker {
        participant_id: i64,
    },
    HandRaised(Hand),
    HandLowered {
        participant_id: i64,
        reason: HandLoweredReason,
    },
    /// A moderator muted (`locked: true`) a kind of the participant's tracks, or allowed them
    /// to unmute it again (`locked: false`).
    HostMute {
        participant_id: i64,
        video: bool,
        locked: bool,
    },
    SessionLocked {
        locked: bool,
    },
    SessionEnded,
    /// A recording of the session started, or stopped (its state is no longer `recording`).
    /// (Boxed: events stay small.)
    RecordingChanged(Box<Recording>),
    /// Chat, Q&A or polls changed (shared, not copied, by every subscriber that reads it).
    Interaction(Arc<Interaction>),
}

/// A raised hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hand {
    pub participant_id: i64,
    /// When it was raised (milliseconds since the epoch, as given by the hub).
    pub raised_at_ms: i64,
}

/// Why a hand went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandLoweredReason {
    /// Its owner lowered it.
    Lowered,
    /// A moderator dismissed it.
    Dismissed,
    /// Its owner was invited to stage.
    Invited,
}

impl std::fmt::Display for HandLoweredReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandLoweredReason::Lowered => "lowered",
            HandLoweredReason::Dismissed => "dismissed",
            HandLoweredReason::Invited => "invited",
        })
    }
}

/// A kind of a participant's tracks a moderator muted, which they may not unmute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMute {
    pub participant_id: i64,
    pub video: bool,
}

/// A participant's visit ended: how long they were the active speaker in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    pub participant_id: i64,
    pub talk_ms: u64,
}

/// What happened for one participant only (its own signaling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directed {
    /// The SFU offers a new description for the participant's connection (tracks came or went).
    /// A whole description: a newer one supersedes an older one not yet delivered.
    ServerOffer { sdp: String },
    /// The simulcast layer the participant receives of a track changed.
    LayerChanged { track_id: String, layer: Option<u8> },
    /// The participant was removed from the session.
    Removed { reason: String },
    /// A moderator invited the participant to stage: they may publish now (the app asks them to
    /// turn on camera and microphone; they may decline with `leaveStage`).
    StageInvitation,
}

/// Everything present now: what a subscriber starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    pub participants: Vec<ParticipantInfo>,
    pub tracks: Vec<TrackInfo>,
    pub active_speaker: Option<i64>,
    /// Raised hands, oldest first.
    pub hands: Vec<Hand>,
    /// Kinds muted by a moderator.
    pub host_mutes: Vec<HostMute>,
    /// No new participants but hosts and co-hosts.
    pub locked: bool,
    /// The recording being made now.
    pub recording: Option<Recording>,
}

/// An input of the session.
#[derive(Debug, Clone)]
pub enum Command {
    /// A participant joins, or comes back (then it keeps its id and role).
    Join(ParticipantInfo),
    /// The participant leaves (its own request).
    Leave { participant_id: i64 },
    /// The role of a user in the session changed.
    SetRole { user_id: i64, role: Role },
    /// The participant's (new) SFU peer.
    Attach { participant_id: i64, peer: PeerId },
    /// The participant's SFU peer goes (before a new connection replaces it).
    Detach { participant_id: i64 },
    /// The participant marks one of its tracks muted or not.
    SetMuted {
        participant_id: i64,
        track_id: String,
        muted: bool,
    },
    /// The participant's next tracks with these names (the browser's track ids, as its offer
    /// names them) carry a shared screen and its sound; tracks of those names already published
    /// are marked so at once. Replaces what it announced before.
    ShareScreen {
        participant_id: i64,
        tracks: Vec<String>,
    },
    /// The session ended.
    End,
    /// Participants whose connection dropped [`GRACE`] ago or more leave.
    Expire,
    /// From the SFU: a peer's connection is up.
    PeerConnected { participant_id: i64, peer: PeerId },
    /// From the SFU: a peer's connection is gone; its participant keeps its place for [`GRACE`].
    PeerDisconnected { participant_id: i64, peer: PeerId },
    /// From the SFU: a peer's track started.
    TrackPublished {
        participant_id: i64,
        peer: PeerId,
        track: TrackId,
        video: bool,
    },
    /// From the SFU: a peer's track ended.
    TrackUnpublished {
        participant_id: i64,
        peer: PeerId,
        track: TrackId,
    },
    /// From the SFU: the dominant speaker changed.
    ActiveSpeaker { participant_id: i64 },
    /// From the SFU: a new description for the participant's connection.
    ServerOffer { participant_id: i64, sdp: String },
    /// From the SFU: the layer the participant receives of a track changed.
    LayerChanged {
        participant_id: i64,
        track_id: String,
        layer: Option<u8>,
    },
    /// From the SFU: the room closed on its own (a fault): everyone is removed.
    RoomClosed { reason: String },
    /// A participant's chat message, question or poll change, already stored: everyone is told.
    Interaction {
        participant_id: i64,
        change: Arc<Interaction>,
    },
    /// The participant raises their hand (nothing changes when it is up already).
    RaiseHand { participant_id: i64, at_ms: i64 },
    /// The participant lowers their own hand (nothing changes when it is down).
    LowerHand { participant_id: i64 },
    /// A moderator dismisses a raised hand.
    DismissHand { participant_id: i64 },
    /// A moderator invites a viewer to stage: a speaker for this session, publishing at once.
    InviteToStage { participant_id: i64 },
    /// A speaker goes back to the audience (a moderator sends them, or they leave or decline
    /// the stage themself): their tracks close.
    SendToAudience { participant_id: i64 },
    /// A moderator mutes (`locked: true`) a kind of the participant's tracks, or allows them to
    /// unmute it again.
    HostMute {
        participant_id: i64,
        video: bool,
        locked: bool,
    },
    /// A moderator removes the participant: they cannot join again while the session lasts.
    Remove { participant_id: i64, reason: String },
    /// A moderator locks the session (no new participants but hosts and co-hosts) or opens it.
    Lock { locked: bool },
    /// A recording started (state `recording`) or stopped (any other state).
    Recording(Recording),
}

/// What follows from a command, for the hub to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// For everyone in the session (the hub gives it a sequence number).
    Room(RoomEvent),
    /// For one participant's mailbox.
    Direct { to: i64, event: Directed },
    /// The SFU peer may publish or not.
    SetPublish { peer: PeerId, allowed: bool },
    /// The SFU peer is no longer the session's: forget it and have the SFU drop it.
    Release(PeerId),
    /// The SFU peer is no longer the session's; the SFU closes it itself (the room closes).
    Forget(PeerId),
    /// The participant left because its grace period ran out.
    Expired { participant_id: i64 },
    /// The SFU pauses (`paused: true`) or resumes the peer's track (a mute by the host).
    PauseProducer {
        peer: PeerId,
        track: String,
        paused: bool,
    },
    /// A participant's visit ended (left, expired, removed, or the session ended): the hub
    /// records it.
    Departed(Departure),
}

/// Why a command was not applied. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("the session has ended")]
    Ended,
    #[error("no such participant in the session")]
    UnknownParticipant,
    #[error("the participant has no such track")]
    UnknownTrack,
    #[error("the peer is not the participant's current connection")]
    StalePeer,
    #[error("there is no such live session")]
    NoSession,
    #[error("the session is locked: no one new may join")]
    Locked,
    #[error("you were removed from this session")]
    Removed,
    #[error("only a viewer can be invited to stage")]
    NotAViewer,
    #[error("only a speaker can be sent back to the audience")]
    NotASpeaker,
    #[error("the hand is not raised")]
    NoHand,
    #[error("muted by the host: a host or co-host must allow you to unmute")]
    MutedByHost,
    #[error("only hosts, co-hosts and speakers can share a screen")]
    MayNotShare,
}

struct Participant {
    info: ParticipantInfo,
    /// Its SFU peer while connected.
    peer: Option<PeerId>,
    /// Its published tracks.
    tracks: Vec<TrackInfo>,
    /// When its connection dropped, if it did (the grace period runs from here).
    dropped_at: Option<Instant>,
    /// Kinds a moderator muted: [audio, video].
    host_muted: [bool; 2],
    /// Tracks the SFU holds paused (a mute by the host), by track id.
    paused: Vec<String>,
    /// Names of its tracks that carry a shared screen (announced by `ShareScreen`).
    screen: Vec<String>,
    /// Time it was the active speaker, up to `SessionCore::speaking_since`.
    talk: Duration,
}

impl Participant {
    fn new(info: ParticipantInfo) -> Participant {
        Participant {
            info,
            peer: None,
            tracks: Vec::new(),
            dropped_at: None,
            host_muted: [false; 2],
            paused: Vec::new(),
            screen: Vec::new(),
            talk: Duration::ZERO,
        }
    }
}

/// The state of one live session.
#[derive(Default)]
pub struct SessionCore {
    /// Present participants by id (ordered, so snapshots are deterministic).
    participants: BTreeMap<i64, Participant>,
    /// The participant speaking now, as the SFU last said.
    active_speaker: Option<i64>,
    /// Since when the active speaker speaks (their talk time runs from here).
    speaking_since: Option<Instant>,
    /// Raised hands, oldest first.
    hands: Vec<Hand>,
    /// Users removed by a moderator: they cannot join again.
    removed: std::collections::HashSet<i64>,
    /// No new participants but hosts and co-hosts.
    locked: bool,
    /// The recording being made now.
    recording: Option<Recording>,
    /// Ended: nothing more is applied.
    ended: bool,
}

impl SessionCore {
    pub fn new() -> SessionCore {
        SessionCore::default()
    }

    /// No one is present.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn participant(&self, id: i64) -> Option<&ParticipantInfo> {
        self.participants.get(&id).map(|p| &p.info)
    }

    /// The participant of a user, if present.
    pub fn participant_of(&self, user_id: i64) -> Option<&ParticipantInfo> {
        self.participants
            .values()
            .find(|p| p.info.user_id == user_id)
            .map(|p| &p.info)
    }

    /// The participant's SFU peer, if connected.
    pub fn peer_of(&self, participant_id: i64) -> Option<PeerId> {
        self.participants.get(&participant_id)?.peer
    }

    /// A track of the session and its publisher's current peer.
    pub fn track(&self, track_id: &str) -> Option<(&TrackInfo, Option<PeerId>)> {
        self.participants
            .values()
            .flat_map(|p| p.tracks.iter().map(move |t| (t, p.peer)))
            .find(|(t, _)| t.id == track_id)
    }

    /// Everyone present and every track now.
    pub fn state(&self) -> SessionState {
        SessionState {
            participants: self.participants.values().map(|p| p.info.clone()).collect(),
            tracks: self
                .participants
                .values()
                .flat_map(|p| p.tracks.iter().cloned())
                .collect(),
            active_speaker: self.active_speaker,
            hands: self.hands.clone(),
            host_mutes: self
                .participants
                .values()
                .flat_map(|p| {
                    [false, true]
                        .into_iter()
                        .filter(|&video| p.host_muted[usize::from(video)])
                        .map(|video| HostMute {
                            participant_id: p.info.id,
                            video,
                        })
                })
                .collect(),
            locked: self.locked,
            recording: self.recording.clone(),
        }
    }

    /// A session (again) in the hub starts knowing the recording being made of it.
    pub fn with_recording(mut self, recording: Option<Recording>) -> SessionCore {
        self.recording = recording;
        self
    }

    /// Whether the session is locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The participant's talk time up to `now` (the active speaker's includes the current turn).
    pub fn talk_time(&self, participant_id: i64, now: Instant) -> Option<Duration> {
        let p = self.participants.get(&participant_id)?;
        let current = match (self.active_speaker, self.speaking_since) {
            (Some(a), Some(since)) if a == participant_id => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        Some(p.talk + current)
    }

    /// Applies one command at `now`.
    pub fn apply(&mut self, command: Command, now: Instant) -> Result<Vec<Output>, Refused> {
        if self.ended {
            return Err(Refused::Ended);
        }
        let mut out = Vec::new();
        match command {
            Command::Join(info) => {
                if self.removed.contains(&info.user_id) {
                    return Err(Refused::Removed);
                }
                if let Some(p) = self.participants.get_mut(&info.id) {
                    p.dropped_at = None;
                } else {
                    if self.locked && !matches!(info.role, Role::Host | Role::CoHost) {
                        return Err(Refused::Locked);
                    }
                    out.push(Output::Room(RoomEvent::ParticipantJoined(info.clone())));
                    self.participants.insert(info.id, Participant::new(info));
                }
            }
            Command::Leave { participant_id } => {
                self.leave(participant_id, now, &mut out)?;
            }
            Command::SetRole { user_id, role } => {
                let p = self
                    .participants
                    .values_mut()
                    .find(|p| p.info.user_id == user_id)
                    .ok_or(Refused::UnknownParticipant)?;
                if p.info.role != role {
                    p.info.role = role;
                    out.push(Output::Room(RoomEvent::ParticipantRoleChanged {
                        participant_id: p.info.id,
                        role,
                    }));
                    if let Some(peer) = p.peer {
                        out.push(Output::SetPublish {
                            peer,
                            allowed: roles::allowed(role, roles::Action::Publish),
                        });
                    }
                }
            }
            Command::Attach {
                participant_id,
                peer,
            } => {
                let p = self.get(participant_id)?;
                p.dropped_at = None;
                if let Some(old) = p.peer.replace(peer).filter(|o| *o != peer) {
                    // The old connection's tracks end with it.
                    let prefix = format!("{old}-");
                    let (gone, kept) = p.tracks.drain(..).partition(|t| t.id.starts_with(&prefix));
                    p.tracks = kept;
                    unpublished(participant_id, gone, &mut out);
                    out.push(Output::Release(old));
                }
            }
            Command::Detach { participant_id } => {
                let p = self.get(participant_id)?;
                if let Some(old) = p.peer.take() {
                    p.info.connected = false;
                    let gone = std::mem::take(&mut p.tracks);
                    unpublished(participant_id, gone, &mut out);
                    out.push(Output::Release(old));
                }
            }
            Command::SetMuted {
                participant_id,
                track_id,
                muted,
            } => {
                let p = self.get(participant_id)?;
                let peer = p.peer;
                let track = p
                    .tracks
                    .iter_mut()
                    .find(|t| t.id == track_id)
                    .ok_or(Refused::UnknownTrack)?;
                if !muted && p.host_muted[usize::from(track.video)] {
                    return Err(Refused::MutedByHost);
                }
                track.muted = muted;
                if !muted && let Some(i) = p.paused.iter().position(|t| *t == track_id) {
                    // Paused by a mute of the host's that was lifted since: unmuting resumes it.
                    p.paused.remove(i);
                    if let (Some(peer), Some(key)) = (peer, TrackKey::from_msid_track(&track_id)) {
                        out.push(Output::PauseProducer {
                            peer,
                            track: key.track.to_string(),
                            paused: false,
                        });
                    }
                }
                out.push(Output::Room(RoomEvent::TrackMuted {
                    track_id,
                    participant_id,
                    muted,
                }));
            }
            Command::ShareScreen {
                participant_id,
                tracks,
            } => {
                let p = self.get(participant_id)?;
                if !roles::allowed(p.info.role, roles::Action::Publish) {
                    return Err(Refused::MayNotShare);
                }
                p.screen = tracks;
                p.screen.truncate(SCREEN_TRACKS);
                // Tracks already published under an announced name: everyone sees them as a
                // screen now (a published track is replaced by its new description).
                for t in &mut p.tracks {
                    let named = TrackKey::from_msid_track(&t.id)
                        .is_some_and(|k| p.screen.iter().any(|s| *s == *k.track));
                    let source = TrackSource::of(t.video, named);
                    if named && t.source != source {
                        t.source = source;
                        out.push(Output::Room(RoomEvent::TrackPublished(t.clone())));
                    }
                }
            }
            Command::End => {
                self.settle_talk(now);
                self.ended = true;
                out.push(Output::Room(RoomEvent::SessionEnded));
                for p in std::mem::take(&mut self.participants).into_values() {
                    out.extend(p.peer.map(Output::Forget));
                    out.push(Output::Departed(Departure {
                        participant_id: p.info.id,
                        talk_ms: millis(p.talk),
                    }));
                }
                self.active_speaker = None;
                self.hands.clear();
            }
            Command::Expire => {
                let due: Vec<i64> = self
                    .participants
                    .values()
                    .filter(|p| {
                        p.dropped_at
                            .is_some_and(|t| now.saturating_duration_since(t) >= GRACE)
                    })
                    .map(|p| p.info.id)
                    .collect();
                for participant_id in due {
                    self.leave(participant_id, now, &mut out)?;
                    out.push(Output::Expired { participant_id });
                }
            }
            Command::PeerConnected {
                participant_id,
                peer,
            } => {
                let p = self.current(participant_id, peer)?;
                p.info.connected = true;
            }
            Command::PeerDisconnected {
                participant_id,
                peer,
            } => {
                // Its tracks were unpublished just before (the SFU says so). A new connection
                // may come within the grace period.
                let p = self.current(participant_id, peer)?;
                p.peer = None;
                p.info.connected = false;
                p.dropped_at = Some(now);
            }
            Command::TrackPublished {
                participant_id,
                peer,
                track,
                video,
            } => {
                let p = self.get(participant_id)?;
                let key = TrackKey::new(peer, track.clone());
                let locked = p.host_muted[usize::from(video)];
                let screen = p.screen.iter().any(|t| *t == *track);
                let info = TrackInfo {
                    id: key.msid_track(),
                    stream_id: key.msid_stream(),
                    participant_id,
                    video,
                    muted: locked,
                    source: TrackSource::of(video, screen),
                };
                p.tracks.retain(|t| t.id != info.id);
                p.tracks.push(info.clone());
                if locked {
                    // Muted by the host: a new track of the kind starts paused.
                    if !p.paused.contains(&info.id) {
                        p.paused.push(info.id.clone());
                    }
                    out.push(Output::PauseProducer {
                        peer,
                        track: track.to_string(),
                        paused: true,
                    });
                }
                out.push(Output::Room(RoomEvent::TrackPublished(info)));
            }
            Command::TrackUnpublished {
                participant_id,
                peer,
                track,
            } => {
                let p = self.get(participant_id)?;
                let id = TrackKey::new(peer, track).msid_track();
                p.tracks.retain(|t| t.id != id);
                p.paused.retain(|t| *t != id);
                out.push(Output::Room(RoomEvent::TrackUnpublished {
                    track_id: id,
                    participant_id,
                }));
            }
            Command::ActiveSpeaker { participant_id } => {
                self.get(participant_id)?;
                if self.active_speaker == Some(participant_id) {
                    return Ok(out);
                }
                self.settle_talk(now);
                self.active_speaker = Some(participant_id);
                self.speaking_since = Some(now);
                out.push(Output::Room(RoomEvent::ActiveSpeaker { participant_id }));
            }
            Command::ServerOffer {
                participant_id,
                sdp,
            } => {
                self.get(participant_id)?;
                out.push(Output::Direct {
                    to: participant_id,
                    event: Directed::ServerOffer { sdp },
                });
            }
            Command::LayerChanged {
                participant_id,
                track_id,
                layer,
            } => {
                self.get(participant_id)?;
                out.push(Output::Direct {
                    to: participant_id,
                    event: Directed::LayerChanged { track_id, layer },
                });
            }
            Command::RoomClosed { reason } => {
                out.extend(self.participants.keys().map(|&to| Output::Direct {
                    to,
                    event: Directed::Removed {
                        reason: reason.clone(),
                    },
                }));
            }
            Command::Interaction {
                participant_id,
                change,
            } => {
                // Only someone present speaks in the room; what they may do was checked (by
                // role) before the change was stored.
                self.get(participant_id)?;
                out.push(Output::Room(RoomEvent::Interaction(change)));
            }
            Command::RaiseHand {
                participant_id,
                at_ms,
            } => {
                self.get(participant_id)?;
                if !self
                    .hands
                    .iter()
                    .any(|h| h.participant_id == participant_id)
                {
                    let hand = Hand {
                        participant_id,
                        raised_at_ms: at_ms,
                    };
                    self.hands.push(hand);
                    out.push(Output::Room(RoomEvent::HandRaised(hand)));
                }
            }
            Command::LowerHand { participant_id } => {
                self.get(participant_id)?;
                self.lower_hand(participant_id, HandLoweredReason::Lowered, &mut out);
            }
            Command::DismissHand { participant_id } => {
                self.get(participant_id)?;
                if !self.lower_hand(participant_id, HandLoweredReason::Dismissed, &mut out) {
                    return Err(Refused::NoHand);
                }
            }
            Command::InviteToStage { participant_id } => {
                if self.get(participant_id)?.info.role != Role::Viewer {
                    return Err(Refused::NotAViewer);
                }
                self.lower_hand(participant_id, HandLoweredReason::Invited, &mut out);
                self.set_role(participant_id, Role::Speaker, &mut out);
                out.push(Output::Direct {
                    to: participant_id,
                    event: Directed::StageInvitation,
                });
            }
            Command::SendToAudience { participant_id } => {
                if self.get(participant_id)?.info.role != Role::Speaker {
                    return Err(Refused::NotASpeaker);
                }
                // Revoking the right closes its tracks in the SFU, which says so
                // (`TrackUnpublished` follows from there).
                self.set_role(participant_id, Role::Viewer, &mut out);
            }
            Command::HostMute {
                participant_id,
                video,
                locked,
            } => {
                let p = self.get(participant_id)?;
                let kind = usize::from(video);
                if p.host_muted[kind] == locked {
                    return Ok(out);
                }
                p.host_muted[kind] = locked;
                out.push(Output::Room(RoomEvent::HostMute {
                    participant_id,
                    video,
                    locked,
                }));
                if locked {
                    for t in p.tracks.iter_mut().filter(|t| t.video == video) {
                        if !p.paused.contains(&t.id) {
                            p.paused.push(t.id.clone());
                            if let (Some(peer), Some(key)) =
                                (p.peer, TrackKey::from_msid_track(&t.id))
                            {
                                out.push(Output::PauseProducer {
                                    peer,
                                    track: key.track.to_string(),
                                    paused: true,
                                });
                            }
                        }
                        if !t.muted {
                            t.muted = true;
                            out.push(Output::Room(RoomEvent::TrackMuted {
                                track_id: t.id.clone(),
                                participant_id,
                                muted: true,
                            }));
                        }
                    }
                }
                // Allowing does not unmute: the participant does, when they want to.
            }
            Command::Remove {
                participant_id,
                reason,
            } => {
                let user_id = self.get(participant_id)?.info.user_id;
                self.removed.insert(user_id);
                out.push(Output::Direct {
                    to: participant_id,
                    event: Directed::Removed { reason },
                });
                self.leave(participant_id, now, &mut out)?;
            }
            Command::Lock { locked } => {
                if self.locked != locked {
                    self.locked = locked;
                    out.push(Output::Room(RoomEvent::SessionLocked { locked }));
                }
            }
            Command::Recording(r) => {
                if r.state == recording::RECORDING {
                    self.recording = Some(r.clone());
                } else if self.recording.as_ref().is_some_and(|now| now.id == r.id) {
                    self.recording = None;
                }
                out.push(Output::Room(RoomEvent::RecordingChanged(Box::new(r))));
            }
        }
        Ok(out)
    }

    /// Takes the participant's hand down, if it is up. Returns whether it was.
    fn lower_hand(
        &mut self,
        participant_id: i64,
        reason: HandLoweredReason,
        out: &mut Vec<Output>,
    ) -> bool {
        let before = self.hands.len();
        self.hands.retain(|h| h.participant_id != participant_id);
        let was = self.hands.len() < before;
        if was {
            out.push(Output::Room(RoomEvent::HandLowered {
                participant_id,
                reason,
            }));
        }
        was
    }

    /// Gives a present participant a role for this session; its peer's right to publish follows.
    fn set_role(&mut self, participant_id: i64, role: Role, out: &mut Vec<Output>) {
        let Some(p) = self.participants.get_mut(&participant_id) else {
            return;
        };
        if p.info.role == role {
            return;
        }
        p.info.role = role;
        out.push(Output::Room(RoomEvent::ParticipantRoleChanged {
            participant_id,
            role,
        }));
        if let Some(peer) = p.peer {
            out.push(Output::SetPublish {
                peer,
                allowed: roles::allowed(role, roles::Action::Publish),
            });
        }
    }

    /// Adds the current turn of the active speaker to their talk time (it restarts at `now`).
    fn settle_talk(&mut self, now: Instant) {
        if let (Some(a), Some(since)) = (self.active_speaker, self.speaking_since)
            && let Some(p) = self.participants.get_mut(&a)
        {
            p.talk += now.saturating_duration_since(since);
            self.speaking_since = Some(now);
        }
    }

    fn get(&mut self, participant_id: i64) -> Result<&mut Participant, Refused> {
        self.participants
            .get_mut(&participant_id)
            .ok_or(Refused::UnknownParticipant)
    }

    /// The participant, if `peer` is its current connection.
    fn current(&mut self, participant_id: i64, peer: PeerId) -> Result<&mut Participant, Refused> {
        let p = self.get(participant_id)?;
        if p.peer != Some(peer) {
            return Err(Refused::StalePeer);
        }
        Ok(p)
    }

    fn leave(
        &mut self,
        participant_id: i64,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        if !self.participants.contains_key(&participant_id) {
            return Err(Refused::UnknownParticipant);
        }
        self.settle_talk(now);
        let Some(p) = self.participants.remove(&participant_id) else {
            return Err(Refused::UnknownParticipant);
        };
        // Its hand goes with it (everyone drops it on `ParticipantLeft`).
        self.hands.retain(|h| h.participant_id != participant_id);
        unpublished(participant_id, p.tracks, out);
        out.push(Output::Room(RoomEvent::ParticipantLeft { participant_id }));
        out.extend(p.peer.map(Output::Release));
        out.push(Output::Departed(Departure {
            participant_id,
            talk_ms: millis(p.talk),
        }));
        if self.active_speaker == Some(participant_id) {
            self.active_speaker = None;
            self.speaking_since = None;
        }
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unpublished(participant_id: i64, tracks: Vec<TrackInfo>, out: &mut Vec<Output>) {
    out.extend(tracks.into_iter().map(|t| {
        Output::Room(RoomEvent::TrackUnpublished {
            track_id: t.id,
            participant_id,
        })
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: i64, role: Role) -> ParticipantInfo {
        ParticipantInfo {
            id,
            user_id: id * 10,
            name: format!("p{id}"),
            role,
            connected: false,
        }
    }

    fn peer(n: u64) -> PeerId {
        PeerId::from_u64(n)
    }

    fn track_id(peer_n: u64, track: &str) -> String {
        TrackKey::new(peer(peer_n), track).msid_track()
    }

    /// A session with a host (1, peer 100, one video track "cam") and a viewer (2, no peer).
    fn session(t0: Instant) -> SessionCore {
        let mut s = SessionCore::new();
        s.apply(Command::Join(person(1, Role::Host)), t0).unwrap();
        s.apply(Command::Join(person(2, Role::Viewer)), t0).unwrap();
        s.apply(
            Command::Attach {
                participant_id: 1,
                peer: peer(100),
            },
            t0,
        )
        .unwrap();
        s.apply(
            Command::TrackPublished {
                participant_id: 1,
                peer: peer(100),
                track: "cam".into(),
                video: true,
            },
            t0,
        )
        .unwrap();
        s
    }

    #[test]
    fn an_interaction_of_someone_present_is_a_room_event_for_everyone() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let change = Arc::new(Interaction::ChatDeleted { message_id: 5 });
        let out = s
            .apply(
                Command::Interaction {
                    participant_id: 2,
                    change: Arc::clone(&change),
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::Interaction(change.clone()))]
        );
        let absent = Command::Interaction {
            participant_id: 9,
            change: Arc::clone(&change),
        };
        assert_eq!(s.apply(absent, t0), Err(Refused::UnknownParticipant));
        s.apply(Command::End, t0).unwrap();
        let ended = Command::Interaction {
            participant_id: 2,
            change,
        };
        assert_eq!(s.apply(ended, t0), Err(Refused::Ended));
    }

    #[test]
    fn core_is_send_and_outputs_stay_small() {
        fn send<T: Send>() {}
        send::<SessionCore>();
        assert!(
            std::mem::size_of::<Output>() <= 128,
            "{}",
            std::mem::size_of::<Output>()
        );
    }

    #[test]
    fn join_tells_everyone_once_and_a_rejoin_keeps_the_place() {
        let t0 = Instant::now();
        let mut s = SessionCore::new();
        let out = s.apply(Command::Join(person(1, Role::Host)), t0).unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::ParticipantJoined(person(
                1,
                Role::Host
            )))]
        );
        // Coming back: no event, same participant.
        let again = s.apply(Command::Join(person(1, Role::Viewer)), t0).unwrap();
        assert!(again.is_empty());
        assert_eq!(s.participant(1).unwrap().role, Role::Host);
        assert_eq!(s.participant_of(10).unwrap().id, 1);
    }

    #[test]
    fn leave_unpublishes_tracks_then_says_who_left_and_releases_the_peer() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let out = s.apply(Command::Leave { participant_id: 1 }, t0).unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::TrackUnpublished {
                    track_id: track_id(100, "cam"),
                    participant_id: 1
                }),
                Output::Room(RoomEvent::ParticipantLeft { participant_id: 1 }),
                Output::Release(peer(100)),
                Output::Departed(Departure {
                    participant_id: 1,
                    talk_ms: 0
                }),
            ]
        );
        assert!(s.participant(1).is_none());
        assert_eq!(s.state().tracks, vec![]);
        assert_eq!(
            s.apply(Command::Leave { participant_id: 1 }, t0),
            Err(Refused::UnknownParticipant)
        );
    }

    #[test]
    fn role_change_is_told_and_sets_the_right_to_publish() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.apply(
            Command::Attach {
                participant_id: 2,
                peer: peer(200),
            },
            t0,
        )
        .unwrap();
        let out = s
            .apply(
                Command::SetRole {
                    user_id: 20,
                    role: Role::Speaker,
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::ParticipantRoleChanged {
                    participant_id: 2,
                    role: Role::Speaker
                }),
                Output::SetPublish {
                    peer: peer(200),
                    allowed: true
                },
            ]
        );
        // The same role again changes nothing.
        let same = SetRole(20, Role::Speaker);
        assert!(s.apply(same, t0).unwrap().is_empty());
        assert_eq!(
            s.apply(SetRole(99, Role::Host), t0),
            Err(Refused::UnknownParticipant)
        );
    }

    #[allow(non_snake_case)]
    fn SetRole(user_id: i64, role: Role) -> Command {
        Command::SetRole { user_id, role }
    }

    #[test]
    fn tracks_publish_mute_and_unpublish() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let cam = track_id(100, "cam");
        assert_eq!(
            s.state().tracks,
            vec![TrackInfo {
                id: cam.clone(),
                stream_id: TrackKey::new(peer(100), "cam").msid_stream(),
                participant_id: 1,
                video: true,
                muted: false,
                source: TrackSource::Camera,
            }]
        );
        let out = s
            .apply(
                Command::SetMuted {
                    participant_id: 1,
                    track_id: cam.clone(),
                    muted: true,
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::TrackMuted {
                track_id: cam.clone(),
                participant_id: 1,
                muted: true
            })]
        );
        assert!(s.state().tracks[0].muted);
        assert_eq!(
            s.apply(
                Command::SetMuted {
                    participant_id: 2,
                    track_id: cam.clone(),
                    muted: true
                },
                t0
            ),
            Err(Refused::UnknownTrack)
        );
        let out = s
            .apply(
                Command::TrackUnpublished {
                    participant_id: 1,
                    peer: peer(100),
                    track: "cam".into(),
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::TrackUnpublished {
                track_id: cam,
                participant_id: 1
            })]
        );
        assert!(s.state().tracks.is_empty());
    }

    #[test]
    fn a_new_connection_ends_the_old_ones_tracks() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let out = s
            .apply(
                Command::Attach {
                    participant_id: 1,
                    peer: peer(101),
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::TrackUnpublished {
                    track_id: track_id(100, "cam"),
                    participant_id: 1
                }),
                Output::Release(peer(100)),
            ]
        );
        assert_eq!(s.peer_of(1), Some(peer(101)));
        // The old peer's late events are not the participant's any more.
        assert_eq!(
            s.apply(
                Command::PeerDisconnected {
                    participant_id: 1,
                    peer: peer(100)
                },
                t0
            ),
            Err(Refused::StalePeer)
        );
    }

    #[test]
    fn directed_events_go_to_one_participant() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let out = s
            .apply(
                Command::ServerOffer {
                    participant_id: 2,
                    sdp: "v=0".into(),
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Direct {
                to: 2,
                event: Directed::ServerOffer { sdp: "v=0".into() }
            }]
        );
        let closed = s
            .apply(
                Command::RoomClosed {
                    reason: "fault".into(),
                },
                t0,
            )
            .unwrap();
        assert_eq!(closed.len(), 2);
        assert_eq!(
            s.apply(
                Command::ServerOffer {
                    participant_id: 9,
                    sdp: "v=0".into()
                },
                t0
            ),
            Err(Refused::UnknownParticipant)
        );
    }

    #[test]
    fn end_tells_everyone_and_refuses_everything_after() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let out = s.apply(Command::End, t0).unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::SessionEnded),
                Output::Forget(peer(100)),
                Output::Departed(Departure {
                    participant_id: 1,
                    talk_ms: 0
                }),
                Output::Departed(Departure {
                    participant_id: 2,
                    talk_ms: 0
                }),
            ]
        );
        assert!(s.is_ended() && s.is_empty());
        assert_eq!(
            s.apply(Command::Join(person(3, Role::Viewer)), t0),
            Err(Refused::Ended)
        );
        assert_eq!(s.apply(Command::End, t0), Err(Refused::Ended));
    }

    #[test]
    fn a_dropped_connection_keeps_the_place_for_the_grace_period_only() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.apply(
            Command::PeerConnected {
                participant_id: 1,
                peer: peer(100),
            },
            t0,
        )
        .unwrap();
        assert!(s.participant(1).unwrap().connected);
        s.apply(
            Command::PeerDisconnected {
                participant_id: 1,
                peer: peer(100),
            },
            t0,
        )
        .unwrap();
        assert!(!s.participant(1).unwrap().connected);
        assert_eq!(s.peer_of(1), None);
        // Just before the grace period ends: still here.
        let almost = t0 + GRACE - Duration::from_millis(1);
        assert!(s.apply(Command::Expire, almost).unwrap().is_empty());
        // Coming back within it (a join, then a new connection) resets it.
        s.apply(Command::Join(person(1, Role::Host)), almost)
            .unwrap();
        assert!(s.apply(Command::Expire, t0 + GRACE * 2).unwrap().is_empty());
        // Dropped again and gone past the grace period: it leaves.
        let t1 = t0 + GRACE * 3;
        s.apply(
            Command::Attach {
                participant_id: 1,
                peer: peer(101),
            },
            t1,
        )
        .unwrap();
        s.apply(
            Command::PeerDisconnected {
                participant_id: 1,
                peer: peer(101),
            },
            t1,
        )
        .unwrap();
        let out = s.apply(Command::Expire, t1 + GRACE).unwrap();
        assert!(out.contains(&Output::Room(RoomEvent::ParticipantLeft {
            participant_id: 1
        })));
        assert!(out.contains(&Output::Expired { participant_id: 1 }));
        assert!(s.participant(1).is_none());
        // The viewer, never connected, never expires.
        assert!(s.participant(2).is_some());
    }

    #[test]
    fn the_active_speaker_is_remembered_until_they_leave() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let out = s
            .apply(Command::ActiveSpeaker { participant_id: 1 }, t0)
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::ActiveSpeaker { participant_id: 1 })]
        );
        assert_eq!(s.state().active_speaker, Some(1));
        s.apply(Command::Leave { participant_id: 1 }, t0).unwrap();
        assert_eq!(s.state().active_speaker, None);
    }

    fn attach(s: &mut SessionCore, participant_id: i64, n: u64, t: Instant) {
        s.apply(
            Command::Attach {
                participant_id,
                peer: peer(n),
            },
            t,
        )
        .unwrap();
    }

    #[test]
    fn an_announced_screen_share_is_published_as_a_screen_and_viewers_may_not_share() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // A viewer may not share.
        assert_eq!(
            s.apply(
                Command::ShareScreen {
                    participant_id: 2,
                    tracks: vec!["scr".into()],
                },
                t0,
            ),
            Err(Refused::MayNotShare)
        );
        // The host announces its screen's picture and sound, then publishes them.
        let out = s
            .apply(
                Command::ShareScreen {
                    participant_id: 1,
                    tracks: vec!["scr".into(), "scr-sound".into()],
                },
                t0,
            )
            .unwrap();
        assert!(out.is_empty(), "nothing published under those names yet");
        publish(&mut s, 1, 100, "scr", true);
        publish(&mut s, 1, 100, "scr-sound", false);
        publish(&mut s, 1, 100, "mic", false);
        let sources: Vec<(String, TrackSource)> = s
            .state()
            .tracks
            .into_iter()
            .map(|t| (t.id, t.source))
            .collect();
        assert_eq!(
            sources,
            vec![
                (track_id(100, "cam"), TrackSource::Camera),
                (track_id(100, "scr"), TrackSource::Screen),
                (track_id(100, "scr-sound"), TrackSource::ScreenAudio),
                (track_id(100, "mic"), TrackSource::Microphone),
            ]
        );
        // Announcing a track already published (the camera, here) republishes it as a screen.
        let out = s
            .apply(
                Command::ShareScreen {
                    participant_id: 1,
                    tracks: vec!["cam".into()],
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::TrackPublished(TrackInfo {
                id: track_id(100, "cam"),
                stream_id: TrackKey::new(peer(100), "cam").msid_stream(),
                participant_id: 1,
                video: true,
                muted: false,
                source: TrackSource::Screen,
            }))]
        );
    }

    fn publish(s: &mut SessionCore, participant_id: i64, n: u64, track: &str, video: bool) {
        s.apply(
            Command::TrackPublished {
                participant_id,
                peer: peer(n),
                track: track.into(),
                video,
            },
            Instant::now(),
        )
        .unwrap();
    }

    #[test]
    fn hands_queue_by_time_and_go_down_once() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.apply(Command::Join(person(3, Role::Viewer)), t0).unwrap();
        let raise = |p: i64, at_ms: i64| Command::RaiseHand {
            participant_id: p,
            at_ms,
        };
        let out = s.apply(raise(3, 1_000), t0).unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::HandRaised(Hand {
                participant_id: 3,
                raised_at_ms: 1_000
            }))]
        );
        s.apply(raise(2, 2_000), t0).unwrap();
        // Raising again changes nothing and keeps the place in the queue.
        assert!(s.apply(raise(3, 3_000), t0).unwrap().is_empty());
        let queue: Vec<i64> = s.state().hands.iter().map(|h| h.participant_id).collect();
        assert_eq!(queue, vec![3, 2]);
        // Lowered by its owner; lowering again changes nothing.
        let out = s
            .apply(Command::LowerHand { participant_id: 3 }, t0)
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::HandLowered {
                participant_id: 3,
                reason: HandLoweredReason::Lowered
            })]
        );
        assert!(
            s.apply(Command::LowerHand { participant_id: 3 }, t0)
                .unwrap()
                .is_empty()
        );
        // Dismissed by a moderator; a hand that is down cannot be dismissed.
        let out = s
            .apply(Command::DismissHand { participant_id: 2 }, t0)
            .unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::HandLowered {
                participant_id: 2,
                reason: HandLoweredReason::Dismissed
            })]
        );
        assert_eq!(
            s.apply(Command::DismissHand { participant_id: 2 }, t0),
            Err(Refused::NoHand)
        );
        // A hand goes with its owner.
        s.apply(raise(3, 4_000), t0).unwrap();
        s.apply(Command::Leave { participant_id: 3 }, t0).unwrap();
        assert!(s.state().hands.is_empty());
        assert_eq!(s.apply(raise(9, 0), t0), Err(Refused::UnknownParticipant));
    }

    #[test]
    fn an_invitation_makes_a_speaker_who_may_publish_at_once_and_going_back_revokes_it() {
        let t0 = Instant::now();
        let mut s = session(t0);
        attach(&mut s, 2, 200, t0);
        s.apply(
            Command::RaiseHand {
                participant_id: 2,
                at_ms: 5,
            },
            t0,
        )
        .unwrap();
        let out = s
            .apply(Command::InviteToStage { participant_id: 2 }, t0)
            .unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::HandLowered {
                    participant_id: 2,
                    reason: HandLoweredReason::Invited
                }),
                Output::Room(RoomEvent::ParticipantRoleChanged {
                    participant_id: 2,
                    role: Role::Speaker
                }),
                Output::SetPublish {
                    peer: peer(200),
                    allowed: true
                },
                Output::Direct {
                    to: 2,
                    event: Directed::StageInvitation
                },
            ]
        );
        assert_eq!(s.participant(2).unwrap().role, Role::Speaker);
        // Only viewers are invited.
        assert_eq!(
            s.apply(Command::InviteToStage { participant_id: 2 }, t0),
            Err(Refused::NotAViewer)
        );
        assert_eq!(
            s.apply(Command::InviteToStage { participant_id: 1 }, t0),
            Err(Refused::NotAViewer)
        );
        // Back to the audience: the right to publish goes (the SFU closes the tracks).
        let out = s
            .apply(Command::SendToAudience { participant_id: 2 }, t0)
            .unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::ParticipantRoleChanged {
                    participant_id: 2,
                    role: Role::Viewer
                }),
                Output::SetPublish {
                    peer: peer(200),
                    allowed: false
                },
            ]
        );
        assert_eq!(
            s.apply(Command::SendToAudience { participant_id: 2 }, t0),
            Err(Refused::NotASpeaker)
        );
        // A rejoin within the visit keeps the stage role given in the session.
        s.apply(Command::InviteToStage { participant_id: 2 }, t0)
            .unwrap();
        s.apply(Command::Join(person(2, Role::Viewer)), t0).unwrap();
        assert_eq!(s.participant(2).unwrap().role, Role::Speaker);
    }

    #[test]
    fn a_mute_by_the_host_pauses_the_kind_and_locks_it_until_allowed() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.apply(Command::Join(person(3, Role::Speaker)), t0)
            .unwrap();
        attach(&mut s, 3, 300, t0);
        publish(&mut s, 3, 300, "mic", false);
        publish(&mut s, 3, 300, "cam", true);
        let mic = track_id(300, "mic");
        let mute = |locked: bool| Command::HostMute {
            participant_id: 3,
            video: false,
            locked,
        };
        let out = s.apply(mute(true), t0).unwrap();
        assert_eq!(
            out,
            vec![
                Output::Room(RoomEvent::HostMute {
                    participant_id: 3,
                    video: false,
                    locked: true
                }),
                Output::PauseProducer {
                    peer: peer(300),
                    track: "mic".into(),
                    paused: true
                },
                Output::Room(RoomEvent::TrackMuted {
                    track_id: mic.clone(),
                    participant_id: 3,
                    muted: true
                }),
            ]
        );
        assert_eq!(
            s.state().host_mutes,
            vec![HostMute {
                participant_id: 3,
                video: false
            }]
        );
        // Muting again changes nothing.
        assert!(s.apply(mute(true), t0).unwrap().is_empty());
        let unmute = Command::SetMuted {
            participant_id: 3,
            track_id: mic.clone(),
            muted: false,
        };
        // The speaker cannot unmute; the camera is not affected.
        assert_eq!(s.apply(unmute.clone(), t0), Err(Refused::MutedByHost));
        assert!(
            s.apply(
                Command::SetMuted {
                    participant_id: 3,
                    track_id: track_id(300, "cam"),
                    muted: false
                },
                t0
            )
            .is_ok()
        );
        // A new microphone track (a new device) starts paused.
        let out = s
            .apply(
                Command::TrackPublished {
                    participant_id: 3,
                    peer: peer(300),
                    track: "mic2".into(),
                    video: false,
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out[0],
            Output::PauseProducer {
                peer: peer(300),
                track: "mic2".into(),
                paused: true
            }
        );
        assert!(s.track(&track_id(300, "mic2")).unwrap().0.muted);
        // Allowed: nothing is unmuted by it...
        let out = s.apply(mute(false), t0).unwrap();
        assert_eq!(
            out,
            vec![Output::Room(RoomEvent::HostMute {
                participant_id: 3,
                video: false,
                locked: false
            })]
        );
        assert!(s.track(&mic).unwrap().0.muted);
        // ...the speaker unmutes, and the SFU resumes the track.
        let out = s.apply(unmute, t0).unwrap();
        assert_eq!(
            out,
            vec![
                Output::PauseProducer {
                    peer: peer(300),
                    track: "mic".into(),
                    paused: false
                },
                Output::Room(RoomEvent::TrackMuted {
                    track_id: mic,
                    participant_id: 3,
                    muted: false
                }),
            ]
        );
    }

    #[test]
    fn a_removed_user_cannot_come_back_and_a_locked_session_admits_only_hosts() {
        let t0 = Instant::now();
        let mut s = session(t0);
        attach(&mut s, 2, 200, t0);
        let out = s
            .apply(
                Command::Remove {
                    participant_id: 2,
                    reason: "bye".into(),
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                Output::Direct {
                    to: 2,
                    event: Directed::Removed {
                        reason: "bye".into()
                    }
                },
                Output::Room(RoomEvent::ParticipantLeft { participant_id: 2 }),
                Output::Release(peer(200)),
                Output::Departed(Departure {
                    participant_id: 2,
                    talk_ms: 0
                }),
            ]
        );
        // Not as the same participant, nor as a new one of the same user.
        assert_eq!(
            s.apply(Command::Join(person(2, Role::Viewer)), t0),
            Err(Refused::Removed)
        );
        let mut again = person(5, Role::Viewer);
        again.user_id = 20;
        assert_eq!(s.apply(Command::Join(again), t0), Err(Refused::Removed));
        // Locked: no one new but hosts and co-hosts; those present may come back.
        assert_eq!(
            s.apply(Command::Lock { locked: true }, t0).unwrap(),
            vec![Output::Room(RoomEvent::SessionLocked { locked: true })]
        );
        assert!(
            s.apply(Command::Lock { locked: true }, t0)
                .unwrap()
                .is_empty()
        );
        assert!(s.state().locked);
        assert_eq!(
            s.apply(Command::Join(person(6, Role::Viewer)), t0),
            Err(Refused::Locked)
        );
        assert_eq!(
            s.apply(Command::Join(person(7, Role::Speaker)), t0),
            Err(Refused::Locked)
        );
        assert!(s.apply(Command::Join(person(8, Role::CoHost)), t0).is_ok());
        assert!(s.apply(Command::Join(person(1, Role::Host)), t0).is_ok());
        s.apply(Command::Lock { locked: false }, t0).unwrap();
        assert!(s.apply(Command::Join(person(6, Role::Viewer)), t0).is_ok());
    }

    #[test]
    fn talk_time_adds_up_the_turns_as_active_speaker() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let speak = |p: i64| Command::ActiveSpeaker { participant_id: p };
        let sec = Duration::from_secs;
        s.apply(speak(1), t0).unwrap();
        // The same speaker again: no event, the turn goes on.
        assert!(s.apply(speak(1), t0 + sec(1)).unwrap().is_empty());
        s.apply(speak(2), t0 + sec(10)).unwrap();
        s.apply(speak(1), t0 + sec(13)).unwrap();
        assert_eq!(s.talk_time(1, t0 + sec(15)), Some(sec(12)));
        assert_eq!(s.talk_time(2, t0 + sec(15)), Some(sec(3)));
        let out = s
            .apply(Command::Leave { participant_id: 1 }, t0 + sec(20))
            .unwrap();
        assert!(out.contains(&Output::Departed(Departure {
            participant_id: 1,
            talk_ms: 17_000
        })));
        // Nobody speaks now: the viewer's time stands still.
        assert_eq!(s.talk_time(2, t0 + sec(60)), Some(sec(3)));
        let out = s.apply(Command::End, t0 + sec(60)).unwrap();
        assert!(out.contains(&Output::Departed(Departure {
            participant_id: 2,
            talk_ms: 3_000
        })));
    }
}
