//! Live sessions: who is in each session now, their SFU peers and tracks, and the events each
//! participant's `sessionEvents` subscription carries.
//!
//! One [`Live`] per gateway. A participant is a row of the `participants` table (its id is the
//! participant id clients see) plus, while connected, an SFU peer in the session's room. SFU events
//! are mapped to session events by [`Live::run`]. A participant whose connection drops stays a
//! participant for [`GRACE`]: coming back within it keeps its id and role, and its tracks are
//! published again by its new connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sfu::{CloseReason, PeerId, Sfu, SfuEvent, TrackKey};
use tokio::sync::broadcast;

/// Server offers kept for peers not attached to a participant yet (the SFU may offer before the
/// join returns); beyond, the oldest is dropped.
const MAX_EARLY_OFFERS: usize = 1024;

use crate::roles::{self, Role};

/// How long a participant whose connection dropped keeps its place.
pub const GRACE: Duration = Duration::from_secs(30);
/// Session events buffered per session for slow subscribers.
const EVENT_BUFFER: usize = 1024;

/// The SFU room of a session.
pub fn room_of(session_id: i64) -> String {
    format!("session-{session_id}")
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

/// What happened in a session, for its participants.
#[derive(Debug, Clone)]
pub enum Event {
    /// For one participant: the SFU offers a new description (tracks came or went).
    ServerOffer {
        sdp: String,
    },
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
    /// For one participant: the simulcast layer it receives of a track changed.
    LayerChanged {
        track_id: String,
        layer: Option<u8>,
    },
    SessionEnded,
    /// For one participant: it was removed from the session.
    Removed {
        reason: String,
    },
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub connected: bool,
}

/// An event and who it is for (`None`: everyone in the session).
#[derive(Debug, Clone)]
pub struct Addressed {
    pub to: Option<i64>,
    pub event: Event,
}

struct Participant {
    info: ParticipantInfo,
    peer: Option<PeerId>,
    tracks: Vec<TrackInfo>,
    /// When the connection dropped, if it did (the grace period runs from here).
    dropped_at: Option<tokio::time::Instant>,
}

struct Session {
    participants: HashMap<i64, Participant>,
    events: broadcast::Sender<Addressed>,
    active_speaker: Option<i64>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<i64, Session>,
    /// SFU peer -> (session, participant).
    peers: HashMap<PeerId, (i64, i64)>,
    /// Server offers for peers not attached yet (the SFU may offer before `join` returns).
    early_offers: HashMap<PeerId, String>,
}

/// The registry of live sessions. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    sfu: Sfu,
    /// A std mutex: held for map updates only, never across an await.
    state: Arc<Mutex<State>>,
}

/// What a participant sees when it subscribes: everyone present and every track, then events.
pub struct Snapshot {
    pub participants: Vec<ParticipantInfo>,
    pub tracks: Vec<TrackInfo>,
    pub active_speaker: Option<i64>,
    pub events: broadcast::Receiver<Addressed>,
}

impl Live {
    pub fn new(sfu: Sfu) -> Live {
        Live {
            sfu,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(session: &Session, to: Option<i64>, event: Event) {
        // No subscriber is not an error.
        let _ = session.events.send(Addressed { to, event });
    }

    /// Adds (or finds again) a participant. Returns true when it is new to the session.
    pub fn join(&self, session_id: i64, info: ParticipantInfo) -> bool {
        let mut state = self.state();
        let session = state.sessions.entry(session_id).or_insert_with(|| Session {
            participants: HashMap::new(),
            events: broadcast::channel(EVENT_BUFFER).0,
            active_speaker: None,
        });
        if let Some(p) = session.participants.get_mut(&info.id) {
            p.dropped_at = None;
            return false;
        }
        Live::send(session, None, Event::ParticipantJoined(info.clone()));
        session.participants.insert(
            info.id,
            Participant {
                info,
                peer: None,
                tracks: Vec::new(),
                dropped_at: None,
            },
        );
        true
    }

    /// The participant of `user_id` present in the session, if any (a rejoin finds it).
    pub fn participant_of(&self, session_id: i64, user_id: i64) -> Option<ParticipantInfo> {
        let state = self.state();
        let session = state.sessions.get(&session_id)?;
        session
            .participants
            .values()
            .find(|p| p.info.user_id == user_id)
            .map(|p| p.info.clone())
    }

    /// The role of `user_id` in the session changed: their participant (if present) takes it,
    /// everyone is told, and their SFU peer may publish or not by it (revoking unpublishes its
    /// tracks at once; the SFU's events tell everyone).
    pub fn set_role(&self, session_id: i64, user_id: i64, role: Role) {
        let peer = {
            let mut state = self.state();
            let Some(session) = state.sessions.get_mut(&session_id) else {
                return;
            };
            let Some(p) = session
                .participants
                .values_mut()
                .find(|p| p.info.user_id == user_id)
            else {
                return;
            };
            if p.info.role == role {
                return;
            }
            p.info.role = role;
            let (participant_id, peer) = (p.info.id, p.peer);
            Live::send(
                session,
                None,
                Event::ParticipantRoleChanged {
                    participant_id,
                    role,
                },
            );
            peer
        };
        if let Some(peer) = peer {
            self.sfu
                .set_publish(peer, roles::allowed(role, roles::Action::Publish));
        }
    }

    /// The participant `id` of the session, if present.
    pub fn participant(&self, session_id: i64, id: i64) -> Option<ParticipantInfo> {
        let state = self.state();
        Some(
            state
                .sessions
                .get(&session_id)?
                .participants
                .get(&id)?
                .info
                .clone(),
        )
    }

    /// Everyone present and every track now, with a receiver of what follows.
    pub fn snapshot(&self, session_id: i64) -> Option<Snapshot> {
        let state = self.state();
        let session = state.sessions.get(&session_id)?;
        Some(Snapshot {
            participants: session
                .participants
                .values()
                .map(|p| p.info.clone())
                .collect(),
            tracks: session
                .participants
                .values()
                .flat_map(|p| p.tracks.iter().cloned())
                .collect(),
            active_speaker: session.active_speaker,
            events: session.events.subscribe(),
        })
    }

    /// The participant's SFU peer, if connected.
    pub fn peer_of(&self, session_id: i64, participant_id: i64) -> Option<PeerId> {
        let state = self.state();
        state
            .sessions
            .get(&session_id)?
            .participants
            .get(&participant_id)?
            .peer
    }

    /// Disconnects the participant's SFU peer, if any (before a new connection replaces it): its
    /// tracks are unpublished for everyone.
    pub fn detach(&self, session_id: i64, participant_id: i64) {
        let old = {
            let mut state = self.state();
            let Some(session) = state.sessions.get_mut(&session_id) else {
                return;
            };
            let Some(p) = session.participants.get_mut(&participant_id) else {
                return;
            };
            let Some(old) = p.peer.take() else {
                return;
            };
            p.info.connected = false;
            for t in std::mem::take(&mut p.tracks) {
                Live::send(
                    session,
                    None,
                    Event::TrackUnpublished {
                        track_id: t.id,
                        participant_id,
                    },
                );
            }
            state.peers.remove(&old);
            old
        };
        self.sfu.leave(old);
    }

    /// Connects the participant's (new) SFU peer; an earlier peer of it is left.
    pub fn attach(&self, session_id: i64, participant_id: i64, peer: PeerId) {
        let old = {
            let mut state = self.state();
            state.peers.insert(peer, (session_id, participant_id));
            if let Some(sdp) = state.early_offers.remove(&peer)
                && let Some(session) = state.sessions.get(&session_id)
            {
                Live::send(session, Some(participant_id), Event::ServerOffer { sdp });
            }
            let Some(session) = state.sessions.get_mut(&session_id) else {
                return;
            };
            let Some(p) = session.participants.get_mut(&participant_id) else {
                return;
            };
            p.dropped_at = None;
            let old = p.peer.replace(peer).filter(|o| *o != peer);
            // The old connection's tracks end with it (the SFU's own events about a peer that is
            // no longer attached are not matched to anyone).
            if let Some(old) = old {
                let prefix = format!("{old}-");
                let (gone, kept): (Vec<TrackInfo>, Vec<TrackInfo>) =
                    p.tracks.drain(..).partition(|t| t.id.starts_with(&prefix));
                p.tracks = kept;
                for t in gone {
                    Live::send(
                        session,
                        None,
                        Event::TrackUnpublished {
                            track_id: t.id,
                            participant_id,
                        },
                    );
                }
            }
            old
        };
        if let Some(old) = old {
            self.state().peers.remove(&old);
            self.sfu.leave(old);
        }
    }

    /// Marks a track muted or not, for everyone. False if the participant has no such track.
    pub fn set_muted(
        &self,
        session_id: i64,
        participant_id: i64,
        track_id: &str,
        muted: bool,
    ) -> bool {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(&session_id) else {
            return false;
        };
        let Some(track) = session
            .participants
            .get_mut(&participant_id)
            .and_then(|p| p.tracks.iter_mut().find(|t| t.id == track_id))
        else {
            return false;
        };
        track.muted = muted;
        Live::send(
            session,
            None,
            Event::TrackMuted {
                track_id: track_id.to_owned(),
                participant_id,
                muted,
            },
        );
        true
    }

    /// The publisher of a track of the session: (its SFU peer, its track name).
    pub fn track_source(&self, session_id: i64, track_id: &str) -> Option<(PeerId, String)> {
        let state = self.state();
        let session = state.sessions.get(&session_id)?;
        session
            .participants
            .values()
            .flat_map(|p| p.tracks.iter().map(move |t| (p, t)))
            .find(|(_, t)| t.id == track_id)
            .and_then(|(p, t)| {
                let key = TrackKey::from_msid_track(&t.id)?;
                (p.peer == Some(key.peer)).then(|| (key.peer, key.track.to_string()))
            })
    }

    /// The participant leaves: its peer goes, everyone is told. Returns whether it was present.
    pub fn leave(&self, session_id: i64, participant_id: i64) -> bool {
        let peer = {
            let mut state = self.state();
            let Some(session) = state.sessions.get_mut(&session_id) else {
                return false;
            };
            let Some(p) = session.participants.remove(&participant_id) else {
                return false;
            };
            for t in &p.tracks {
                Live::send(
                    session,
                    None,
                    Event::TrackUnpublished {
                        track_id: t.id.clone(),
                        participant_id,
                    },
                );
            }
            Live::send(session, None, Event::ParticipantLeft { participant_id });
            // The last one out: the session's entry goes (the next joiner makes a new one).
            if session.participants.is_empty() {
                state.sessions.remove(&session_id);
            }
            if let Some(peer) = p.peer {
                state.peers.remove(&peer);
            }
            p.peer
        };
        if let Some(peer) = peer {
            self.sfu.leave(peer);
        }
        true
    }

    /// The session ended: everyone is told and disconnected.
    pub fn end(&self, session_id: i64) {
        let session = self.state().sessions.remove(&session_id);
        if let Some(session) = session {
            Live::send(&session, None, Event::SessionEnded);
            let mut state = self.state();
            for p in session.participants.values() {
                if let Some(peer) = p.peer {
                    state.peers.remove(&peer);
                }
            }
        }
        self.sfu.close_room(&room_of(session_id));
    }

    /// Participants whose connection dropped more than [`GRACE`] ago: they have left.
    pub fn expired(&self, now: tokio::time::Instant) -> Vec<(i64, i64)> {
        let state = self.state();
        state
            .sessions
            .iter()
            .flat_map(|(sid, s)| {
                s.participants
                    .values()
                    .filter(|p| p.dropped_at.is_some_and(|t| now.duration_since(t) >= GRACE))
                    .map(move |p| (*sid, p.info.id))
            })
            .collect()
    }

    /// Applies one SFU event to the sessions.
    pub fn on_sfu_event(&self, event: SfuEvent) {
        let mut state = self.state();
        let state = &mut *state;
        let locate = |peers: &HashMap<PeerId, (i64, i64)>, peer: PeerId| peers.get(&peer).copied();
        match event {
            SfuEvent::Offer { peer, sdp } => match locate(&state.peers, peer) {
                Some((sid, pid)) => {
                    if let Some(session) = state.sessions.get(&sid) {
                        Live::send(session, Some(pid), Event::ServerOffer { sdp });
                    }
                }
                None => {
                    // Bounded: offers for peers never attached (a join that failed after the
                    // SFU answered) must not pile up; the oldest goes first.
                    if state.early_offers.len() >= MAX_EARLY_OFFERS
                        && let Some(oldest) = state.early_offers.keys().min().copied()
                    {
                        state.early_offers.remove(&oldest);
                        tracing::warn!(peer = %oldest, "early server offer dropped: too many waiting");
                    }
                    state.early_offers.insert(peer, sdp);
                }
            },
            SfuEvent::TrackPublished { peer, track, video } => {
                if let Some((sid, pid)) = locate(&state.peers, peer)
                    && let Some(session) = state.sessions.get_mut(&sid)
                    && let Some(p) = session.participants.get_mut(&pid)
                {
                    let key = TrackKey::new(peer, track);
                    let info = TrackInfo {
                        id: key.msid_track(),
                        stream_id: key.msid_stream(),
                        participant_id: pid,
                        video,
                        muted: false,
                    };
                    p.tracks.retain(|t| t.id != info.id);
                    p.tracks.push(info.clone());
                    Live::send(session, None, Event::TrackPublished(info));
                }
            }
            SfuEvent::TrackUnpublished { peer, track } => {
                if let Some((sid, pid)) = locate(&state.peers, peer)
                    && let Some(session) = state.sessions.get_mut(&sid)
                    && let Some(p) = session.participants.get_mut(&pid)
                {
                    let id = TrackKey::new(peer, track).msid_track();
                    p.tracks.retain(|t| t.id != id);
                    Live::send(
                        session,
                        None,
                        Event::TrackUnpublished {
                            track_id: id,
                            participant_id: pid,
                        },
                    );
                }
            }
            SfuEvent::PeerConnected { peer } => {
                if let Some((sid, pid)) = locate(&state.peers, peer)
                    && let Some(p) = state
                        .sessions
                        .get_mut(&sid)
                        .and_then(|s| s.participants.get_mut(&pid))
                {
                    p.info.connected = true;
                }
            }
            SfuEvent::PeerDisconnected { peer } => {
                // Its tracks were unpublished just before. The participant stays for the grace
                // period: a new connection may come. The SFU handle forgets the peer too.
                self.sfu.leave(peer);
                state.early_offers.remove(&peer);
                if let Some((sid, pid)) = state.peers.remove(&peer)
                    && let Some(p) = state
                        .sessions
                        .get_mut(&sid)
                        .and_then(|s| s.participants.get_mut(&pid))
                    && p.peer == Some(peer)
                {
                    p.peer = None;
                    p.info.connected = false;
                    p.dropped_at = Some(tokio::time::Instant::now());
                }
            }
            SfuEvent::ActiveSpeaker { room, peer } => {
                if let Some((sid, pid)) = locate(&state.peers, peer)
                    && room.as_str() == room_of(sid)
                    && let Some(session) = state.sessions.get_mut(&sid)
                {
                    session.active_speaker = Some(pid);
                    Live::send(
                        session,
                        None,
                        Event::ActiveSpeaker {
                            participant_id: pid,
                        },
                    );
                }
            }
            SfuEvent::LayerChanged {
                subscriber,
                source,
                track,
                layer,
            } => {
                if let Some((sid, pid)) = locate(&state.peers, subscriber)
                    && let Some(session) = state.sessions.get(&sid)
                {
                    Live::send(
                        session,
                        Some(pid),
                        Event::LayerChanged {
                            track_id: TrackKey::new(source, track).msid_track(),
                            layer,
                        },
                    );
                }
            }
            SfuEvent::RoomClosed { room, reason } => {
                let sid = state
                    .sessions
                    .keys()
                    .copied()
                    .find(|sid| room_of(*sid) == room.as_str());
                if let Some(session) = sid.and_then(|sid| state.sessions.get(&sid))
                    && reason != CloseReason::Requested
                {
                    Live::send(
                        session,
                        None,
                        Event::Removed {
                            reason: format!("the media server closed the room: {reason}"),
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_offers_for_peers_never_attached_are_bounded() {
        let sfu = Sfu::start(sfu::SfuConfig {
            tcp: false,
            ..sfu::SfuConfig::default()
        })
        .expect("the SFU starts");
        let live = Live::new(sfu.clone());
        for n in 0..(MAX_EARLY_OFFERS as u64 + 10) {
            live.on_sfu_event(SfuEvent::Offer {
                peer: PeerId::from_u64(n),
                sdp: "v=0".to_owned(),
            });
        }
        let state = live.state();
        assert_eq!(state.early_offers.len(), MAX_EARLY_OFFERS);
        // The oldest went first.
        assert!(!state.early_offers.contains_key(&PeerId::from_u64(0)));
        assert!(
            state
                .early_offers
                .contains_key(&PeerId::from_u64(MAX_EARLY_OFFERS as u64 + 9))
        );
        drop(state);
        sfu.shutdown();
    }
}
