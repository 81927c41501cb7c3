//! One live session as a pure state machine: who is in it, their roles, their SFU peers and
//! tracks, muted state, the active speaker, and whether it ended.
//!
//! [`SessionCore::apply`] takes a [`Command`] and the time, changes the state, and returns what
//! follows as [`Output`]s: room events (for everyone, numbered by the hub's log), directed events
//! (for one participant's mailbox) and actions for the SFU. It never does I/O, never reads the
//! clock, never locks and never spawns: the hub around it ([`super::Live`]) does all of that, so
//! it is tested with hand-built commands and an injected clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

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
    SessionEnded,
    /// Chat, Q&A or polls changed (shared, not copied, by every subscriber that reads it).
    Interaction(Arc<Interaction>),
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
}

/// Everything present now: what a subscriber starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    pub participants: Vec<ParticipantInfo>,
    pub tracks: Vec<TrackInfo>,
    pub active_speaker: Option<i64>,
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
    /// The participant left because its grace period ran out (the hub records the departure).
    Expired { participant_id: i64 },
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
}

struct Participant {
    info: ParticipantInfo,
    /// Its SFU peer while connected.
    peer: Option<PeerId>,
    /// Its published tracks.
    tracks: Vec<TrackInfo>,
    /// When its connection dropped, if it did (the grace period runs from here).
    dropped_at: Option<Instant>,
}

/// The state of one live session.
#[derive(Default)]
pub struct SessionCore {
    /// Present participants by id (ordered, so snapshots are deterministic).
    participants: BTreeMap<i64, Participant>,
    /// The participant speaking now, as the SFU last said.
    active_speaker: Option<i64>,
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
        }
    }

    /// Applies one command at `now`.
    pub fn apply(&mut self, command: Command, now: Instant) -> Result<Vec<Output>, Refused> {
        if self.ended {
            return Err(Refused::Ended);
        }
        let mut out = Vec::new();
        match command {
            Command::Join(info) => {
                if let Some(p) = self.participants.get_mut(&info.id) {
                    p.dropped_at = None;
                } else {
                    out.push(Output::Room(RoomEvent::ParticipantJoined(info.clone())));
                    self.participants.insert(
                        info.id,
                        Participant {
                            info,
                            peer: None,
                            tracks: Vec::new(),
                            dropped_at: None,
                        },
                    );
                }
            }
            Command::Leave { participant_id } => {
                self.leave(participant_id, &mut out)?;
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
                let track = self
                    .get(participant_id)?
                    .tracks
                    .iter_mut()
                    .find(|t| t.id == track_id)
                    .ok_or(Refused::UnknownTrack)?;
                track.muted = muted;
                out.push(Output::Room(RoomEvent::TrackMuted {
                    track_id,
                    participant_id,
                    muted,
                }));
            }
            Command::End => {
                self.ended = true;
                out.push(Output::Room(RoomEvent::SessionEnded));
                for p in std::mem::take(&mut self.participants).into_values() {
                    out.extend(p.peer.map(Output::Forget));
                }
                self.active_speaker = None;
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
                    self.leave(participant_id, &mut out)?;
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
                let key = TrackKey::new(peer, track);
                let info = TrackInfo {
                    id: key.msid_track(),
                    stream_id: key.msid_stream(),
                    participant_id,
                    video,
                    muted: false,
                };
                p.tracks.retain(|t| t.id != info.id);
                p.tracks.push(info.clone());
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
                out.push(Output::Room(RoomEvent::TrackUnpublished {
                    track_id: id,
                    participant_id,
                }));
            }
            Command::ActiveSpeaker { participant_id } => {
                self.get(participant_id)?;
                self.active_speaker = Some(participant_id);
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
        }
        Ok(out)
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

    fn leave(&mut self, participant_id: i64, out: &mut Vec<Output>) -> Result<(), Refused> {
        let p = self
            .participants
            .remove(&participant_id)
            .ok_or(Refused::UnknownParticipant)?;
        unpublished(participant_id, p.tracks, out);
        out.push(Output::Room(RoomEvent::ParticipantLeft { participant_id }));
        out.extend(p.peer.map(Output::Release));
        if self.active_speaker == Some(participant_id) {
            self.active_speaker = None;
        }
        Ok(())
    }
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
                Output::Forget(peer(100))
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
}
