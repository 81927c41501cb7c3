//! The media plane.
//!
//! Owns the SFU shards: one OS thread per shard, each with its own UDP socket, its WebRTC peer
//! connections (webrtc-rs `rtc`, sans-IO), rooms, producers and consumers, so that nothing on the
//! packet path is shared between cores. A room lives on its home shard; a large room spreads to
//! other shards, its tracks piped between them over in-process queues. This crate knows nothing
//! about users, classes or GraphQL; its users talk to it through the [`Sfu`] handle and hear
//! from it through [`SfuEvent`]s (every listener its own bounded queue, [`Sfu::events`]).
//!
//! Where a packet goes, in two hops: the shard thread ([`shard`]) reads a datagram and hands it
//! to its sans-IO [`engine`] (`Engine::handle_datagram`, then `Engine::process`), whose router
//! (`engine::router::route`) sends it to each consumer of its producer. The design, with the
//! mediasoup / str0m / LiveKit parallels, is in `sfu/README.md`.
//!
//! The decisions (what to forward, which layer, how much bandwidth) are plain structs in
//! [`media`], fed with `now`; the engine carries them out.

#[cfg(any(test, feature = "bench-rig"))]
#[doc(hidden)]
pub mod bench;
mod engine;
mod errors;
mod events;
#[doc(hidden)]
pub mod fuzz;
mod ids;
pub mod media;
mod recv;
mod sdp_check;
mod shard;
mod stats;
mod throttle;

pub use engine::{LocalConsumer, LocalItem, LocalOptions, PeerRights, Priority};
pub use errors::{AnswerError, CandidateError, JoinError};
pub use events::{CloseReason, SfuEvent};
pub use ids::{LocalConsumerId, PeerId, RoomId, TrackId, TrackKey};
pub use shard::{ShardStats, ShardStatus};
pub use stats::{ConsumerStats, PeerStats, ProducerStats, SubscriberStatus};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::command::{Command, ConsumerChange, ProducerChange};
use events::EventBus;
use ids::PeerIds;
use shard::{Refused, ShardHandle};
use tokio::sync::{mpsc, oneshot};

/// How to start the shards.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Number of shards (threads, each with one UDP port). At least 1.
    pub shards: usize,
    /// Address the shards' UDP sockets bind to.
    pub bind_address: IpAddr,
    /// First UDP port; shard `i` binds `udp_port_start + i`. 0 lets the OS pick a free port per shard.
    pub udp_port_start: u16,
    /// Address announced in ICE host candidates (the public address in a real deployment).
    pub ice_address: IpAddr,
    /// A peer from which no ICE consent check (STUN binding request) arrived for this long is
    /// disconnected (it may still come back)...
    pub ice_disconnected_timeout: Duration,
    /// ...and after this much longer, it has failed: it is removed and its resources freed
    /// (RFC 7675: consent expires after 30 s in all).
    pub ice_failed_timeout: Duration,
    /// Members of a room on its home shard before new members go to other shards (the room's
    /// tracks are then piped between its shards).
    pub spread_after: usize,
    /// ICE over TCP (RFC 6544 passive candidates, RFC 4571 framing) for networks that block UDP:
    /// each shard also listens on TCP, on its UDP port number when that is fixed.
    pub tcp: bool,
}

impl Default for SfuConfig {
    /// One shard on loopback, ports chosen by the OS, consent timeouts of 5 s and 25 s, rooms
    /// spreading to other shards beyond 100 members on their home shard.
    fn default() -> SfuConfig {
        SfuConfig {
            shards: 1,
            bind_address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            udp_port_start: 0,
            ice_address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(25),
            spread_after: 100,
            tcp: true,
        }
    }
}

/// Why the SFU could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("the SFU needs at least one shard")]
    NoShards,
    #[error("shard {index}: UDP port {port} is beyond 65535")]
    PortOutOfRange { index: usize, port: u32 },
    #[error("shard {index}: cannot bind UDP {addr}: {source}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {index}: cannot bind TCP {addr} (ICE over TCP): {source}")]
    BindTcp {
        index: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {index}: cannot start its thread: {source}")]
    Spawn {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Handle to the running shards. Cheap to clone; the shards stop on [`Sfu::shutdown`].
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

struct Inner {
    config: SfuConfig,
    shards: Vec<ShardHandle>,
    /// The listeners of every shard's events.
    events: Arc<EventBus>,
    /// Hands out peer ids unique across nodes.
    peer_ids: PeerIds,
    /// The next in-process consumer id.
    next_local: AtomicU64,
    /// Where peers and rooms are. A std mutex: held for map updates, never across I/O.
    placement: Mutex<Placement>,
}

/// Which shard each peer is on, and which shards host each room.
#[derive(Default)]
struct Placement {
    peers: HashMap<PeerId, (usize, RoomId)>,
    /// For each room: (shard, members on it), the room's home shard first.
    rooms: HashMap<RoomId, Vec<(usize, usize)>>,
    /// Peers on each shard.
    load: Vec<usize>,
}

impl Placement {
    /// Places a new member of `room`: on the room's home shard until it has `spread_after` members
    /// there, then on the least loaded shard. Returns the shard, and the room's new set of shards
    /// if the room spreads to one more.
    fn place(
        &mut self,
        peer: PeerId,
        room: &RoomId,
        home: usize,
        spread_after: usize,
    ) -> (usize, Option<Vec<usize>>) {
        let hosts = self.rooms.entry(room.clone()).or_default();
        let at_home = hosts.iter().find(|h| h.0 == home).map_or(0, |h| h.1);
        let shard = if at_home < spread_after {
            home
        } else {
            (0..self.load.len())
                .min_by_key(|&i| (self.load[i], i))
                .unwrap_or(home)
        };
        let spread = match hosts.iter_mut().find(|h| h.0 == shard) {
            Some(h) => {
                h.1 += 1;
                None
            }
            None => {
                hosts.push((shard, 1));
                Some(hosts.iter().map(|h| h.0).collect())
            }
        };
        self.load[shard] += 1;
        self.peers.insert(peer, (shard, room.clone()));
        (shard, spread)
    }

    /// Forgets a peer. Returns its shard, and, if that shard has no member of the room left, the
    /// room's remaining shards.
    fn remove(&mut self, peer: PeerId) -> Option<(usize, Option<Vec<usize>>)> {
        let (shard, room) = self.peers.remove(&peer)?;
        self.load[shard] = self.load[shard].saturating_sub(1);
        let hosts = self.rooms.get_mut(&room)?;
        let h = hosts.iter_mut().find(|h| h.0 == shard)?;
        h.1 -= 1;
        if h.1 > 0 {
            return Some((shard, None));
        }
        hosts.retain(|h| h.0 != shard);
        let remaining = hosts.iter().map(|h| h.0).collect();
        if hosts.is_empty() {
            self.rooms.remove(&room);
        }
        Some((shard, Some(remaining)))
    }
}

impl Sfu {
    /// Binds every shard's socket and starts its thread. On error, the shards already started are
    /// stopped again before returning.
    pub fn start(config: SfuConfig) -> Result<Sfu, StartError> {
        if config.shards == 0 {
            return Err(StartError::NoShards);
        }
        let mut shards = Vec::with_capacity(config.shards);
        let events = Arc::new(EventBus::default());
        for index in 0..config.shards {
            let port = if config.udp_port_start == 0 {
                0
            } else {
                let port = u32::from(config.udp_port_start) + index as u32;
                if port > u32::from(u16::MAX) {
                    stop_all(&shards);
                    return Err(StartError::PortOutOfRange { index, port });
                }
                port as u16
            };
            match ShardHandle::spawn(
                index,
                SocketAddr::new(config.bind_address, port),
                &config,
                Arc::clone(&events),
            ) {
                Ok(shard) => shards.push(shard),
                Err(e) => {
                    stop_all(&shards);
                    return Err(e);
                }
            }
        }
        // Each shard can reach every other (pipes between the shards of a room).
        let mailboxes: Vec<shard::Mailbox> = shards.iter().map(ShardHandle::mailbox).collect();
        for shard in &shards {
            let _ = shard.send(Command::Mailboxes(mailboxes.clone()));
        }
        let shard_count = shards.len();
        tracing::info!(
            shards = shards.len(),
            ports = ?shards.iter().map(|s| s.local_addr().port()).collect::<Vec<_>>(),
            ice_address = %config.ice_address,
            "SFU shards started"
        );
        Ok(Sfu {
            inner: Arc::new(Inner {
                config,
                shards,
                events,
                peer_ids: PeerIds::random(),
                next_local: AtomicU64::new(1),
                placement: Mutex::new(Placement {
                    load: vec![0; shard_count],
                    ..Placement::default()
                }),
            }),
        })
    }

    /// A new listener of every shard's events, with room for `capacity` of them: each listener
    /// gets every event from now on. A listener that falls further behind loses events (counted
    /// in [`Sfu::events_dropped`]); the shards never wait. Dropping the receiver ends it.
    pub fn events(&self, capacity: usize) -> mpsc::Receiver<SfuEvent> {
        self.inner.events.listen(capacity)
    }

    /// Events lost to listeners that were full.
    pub fn events_dropped(&self) -> u64 {
        self.inner.events.dropped()
    }

    /// The shard a room lives on first: a stable hash of its name.
    fn shard_for_room(&self, room: &str) -> usize {
        engine::home_shard(room, self.inner.shards.len())
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.inner
            .placement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the shards of `room` which shards host it now, and `left` (if any) that it does not.
    fn link_room(&self, room: &RoomId, shards: &[usize], left: Option<usize>) {
        for &s in shards.iter().chain(left.as_ref()) {
            let _ = self.inner.shards[s].send(Command::LinkRoom {
                room: room.clone(),
                shards: shards.to_vec(),
            });
        }
    }

    /// Adds a peer that may publish to `room`: [`Sfu::join_with`] with
    /// [`PeerRights::PUBLISHER`]. Kept for callers that check the right to publish themselves;
    /// prefer `join_with` and the peer's real rights.
    pub async fn join(&self, room: &str, offer: String) -> Result<(PeerId, String), JoinError> {
        self.join_with(room, offer, PeerRights::PUBLISHER).await
    }

    /// Adds a peer to `room` with the browser's SDP offer and what it may do there; returns its
    /// id and the SDP answer. Tracks already published in the room follow in one
    /// [`SfuEvent::Offer`].
    ///
    /// A peer without the publish right gets no producer whatever its descriptions say: RTP it
    /// sends is dropped on arrival, unrouted (counted in [`ShardStats::rtp_refused`]), and its
    /// sending sections are answered `inactive` (unless it offers nothing else: an answer with
    /// no active section would carry no usable ICE candidates). [`Sfu::set_publish`] changes the
    /// right later.
    ///
    /// An offer that cannot work is refused with [`JoinError::BadOffer`] naming the problem
    /// (see [`Sfu::offer`]). A shard whose queue is full refuses with [`JoinError::Busy`].
    ///
    /// A room lives on its home shard; beyond [`SfuConfig::spread_after`] members there, new
    /// members go to the least loaded shard and the room's tracks are piped to it.
    pub async fn join_with(
        &self,
        room: &str,
        offer: String,
        rights: PeerRights,
    ) -> Result<(PeerId, String), JoinError> {
        let room = RoomId::from(room);
        let peer = self.inner.peer_ids.next();
        let home = self.shard_for_room(room.as_str());
        let (shard, spread) =
            self.placement()
                .place(peer, &room, home, self.inner.config.spread_after.max(1));
        if let Some(shards) = spread
            && shards.len() > 1
        {
            self.link_room(&room, &shards, None);
        }
        let (reply, answer) = oneshot::channel();
        let sent = self.inner.shards[shard].send(Command::Join {
            room,
            peer,
            offer,
            rights,
            reply,
        });
        let result = match sent {
            Ok(()) => answer
                .await
                .map_err(|_| JoinError::Closed)
                .and_then(|r| r.map(|sdp| (peer, sdp))),
            Err(Refused::Busy) => Err(JoinError::Busy),
            Err(Refused::Closed) => Err(JoinError::Closed),
        };
        if result.is_err() {
            self.unplace(peer);
        }
        result
    }

    /// Forgets where a peer was; unlinks its shard from its room if it was the last member there.
    fn unplace(&self, peer: PeerId) -> Option<usize> {
        let room = self.placement().peers.get(&peer).map(|(_, r)| r.clone())?;
        let (shard, unlinked) = self.placement().remove(peer)?;
        if let Some(remaining) = unlinked {
            self.link_room(&room, &remaining, Some(shard));
        }
        Some(shard)
    }

    /// The shard `peer` lives on.
    fn shard_of(&self, peer: PeerId) -> Option<&ShardHandle> {
        let index = self.placement().peers.get(&peer).map(|(s, _)| *s)?;
        self.inner.shards.get(index)
    }

    /// Sends a command to `peer`'s shard; false for an unknown peer or a refused command.
    fn to_peer(&self, peer: PeerId, command: Command) -> bool {
        self.shard_of(peer).is_some_and(|s| s.send(command).is_ok())
    }

    /// The peer's answer to a server offer ([`SfuEvent::Offer`]). False for an unknown peer or a
    /// description that cannot be an answer; the rest of what [`Sfu::answer_checked`] refuses
    /// is only counted ([`ShardStats::signaling_refused`]). Prefer `answer_checked`.
    pub fn answer(&self, peer: PeerId, sdp: String) -> bool {
        if sdp_check::check(&sdp, sdp_check::Role::Answer).is_err() {
            return false;
        }
        self.to_peer(
            peer,
            Command::Answer {
                peer,
                sdp,
                reply: None,
            },
        )
    }

    /// The peer's answer to a server offer ([`SfuEvent::Offer`]), applied, or refused without
    /// changing anything: when no server offer waits for an answer, when it cannot be parsed,
    /// does not match the offer's media sections, names another connection (another DTLS
    /// certificate or ICE credentials), or cannot work (no `a=mid`, a weak fingerprint, a bad
    /// `a=extmap`...). After a refusal the server offer still waits.
    pub async fn answer_checked(&self, peer: PeerId, sdp: String) -> Result<(), AnswerError> {
        let shard = self.shard_of(peer).ok_or(AnswerError::UnknownPeer)?;
        let (reply, result) = oneshot::channel();
        shard
            .send(Command::Answer {
                peer,
                sdp,
                reply: Some(reply),
            })
            .map_err(|_| AnswerError::Closed)?;
        result.await.map_err(|_| AnswerError::Closed)?
    }

    /// A renegotiation offer from the peer (it adds or removes tracks); returns the answer. If a
    /// server offer crossed it, the server's is withdrawn and sent again afterwards.
    ///
    /// An offer that cannot work is refused with [`JoinError::BadOffer`] and changes nothing
    /// (the connection negotiates on as before): one that cannot be parsed or is cut off,
    /// lacks `a=mid`, `a=ice-ufrag` or `a=ice-pwd`, has two sections with one mid, a passive
    /// DTLS side, a fingerprint other than SHA-2, an `a=extmap` id outside 1 to 255, changes the
    /// kind of a mid, or comes from a new connection (another DTLS certificate: "a new
    /// connection: send it as a restart", i.e. leave and join again). New ICE credentials with
    /// the same certificate are an ICE restart, which is answered.
    ///
    /// A track published after joining must come on a new send-only m-line
    /// (`addTransceiver(track, {direction: "sendonly"})`): `rtc` 0.21 does not start receiving on
    /// an m-line that was negotiated receive-only before.
    ///
    /// From a peer without the publish right, sending sections are answered without receiving
    /// and publish nothing.
    pub async fn offer(&self, peer: PeerId, sdp: String) -> Result<String, JoinError> {
        let shard = self.shard_of(peer).ok_or(JoinError::UnknownPeer)?;
        let (reply, answer) = oneshot::channel();
        shard
            .send(Command::Offer { peer, sdp, reply })
            .map_err(|r| match r {
                Refused::Busy => JoinError::Busy,
                Refused::Closed => JoinError::Closed,
            })?;
        answer.await.map_err(|_| JoinError::Closed)?
    }

    /// Grants (`true`) or revokes the peer's right to publish. Revoking closes its producers at
    /// once: every consumer of them goes and [`SfuEvent::TrackUnpublished`] follows for each;
    /// RTP it sends from then on is dropped. Granting lets its next offer publish (a new
    /// send-only m-line, see [`Sfu::offer`]). False for an unknown peer.
    pub fn set_publish(&self, peer: PeerId, publish: bool) -> bool {
        self.to_peer(peer, Command::SetPublish { peer, publish })
    }

    /// Pauses (`true`) or resumes a published track, by the server (moderation: "muted by the
    /// host"): while paused nothing of it reaches anyone (its packets are dropped on arrival,
    /// counted in [`ShardStats::rtp_paused`]); resuming asks the publisher for a keyframe and each
    /// subscriber's stream goes on from it. Everyone hears of it in
    /// [`SfuEvent::ProducerPaused`]. False for an unknown peer.
    pub fn pause_producer(&self, peer: PeerId, track: &str, paused: bool) -> bool {
        self.to_peer(
            peer,
            Command::Producer {
                source: TrackKey::new(peer, track),
                change: ProducerChange::Pause(paused),
            },
        )
    }

    /// Closes a published track, by the server: its consumers go, [`SfuEvent::TrackUnpublished`]
    /// follows, and packets the publisher still sends on it are dropped (counted in
    /// [`ShardStats::rtp_refused`]). False for an unknown peer.
    pub fn close_producer(&self, peer: PeerId, track: &str) -> bool {
        self.to_peer(
            peer,
            Command::Producer {
                source: TrackKey::new(peer, track),
                change: ProducerChange::Close,
            },
        )
    }

    /// A trickled ICE candidate of the peer: [`Sfu::add_ice_candidate_checked`], false when it
    /// is refused.
    pub fn add_ice_candidate(&self, peer: PeerId, candidate: String) -> bool {
        self.add_ice_candidate_checked(peer, candidate).is_ok()
    }

    /// A trickled ICE candidate of the peer (`candidate:...` as in SDP, or the empty end of
    /// candidates), refused when it does not parse as one or the peer is unknown. The SFU is
    /// ICE-lite and learns addresses from the checks it receives, so this is optional. The
    /// SFU's own candidates are all in its answer.
    pub fn add_ice_candidate_checked(
        &self,
        peer: PeerId,
        candidate: String,
    ) -> Result<(), CandidateError> {
        let line = candidate.strip_prefix("candidate:").unwrap_or(&candidate);
        if !line.is_empty()
            && let Err(e) = rtc::ice::candidate::unmarshal_candidate(line)
        {
            return Err(CandidateError::BadCandidate(e.to_string()));
        }
        let shard = self.shard_of(peer).ok_or(CandidateError::UnknownPeer)?;
        shard
            .send(Command::Candidate { peer, candidate })
            .map_err(|_| CandidateError::Closed)
    }

    /// Changes `subscriber`'s consumer of `source`'s `track`.
    fn change_consumer(
        &self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        change: ConsumerChange,
    ) -> bool {
        self.to_peer(
            subscriber,
            Command::Consumer {
                subscriber,
                source: TrackKey::new(source, track),
                change,
            },
        )
    }

    /// Gives `subscriber` `source`'s `track` again after [`Sfu::unsubscribe`] (every member of a
    /// room is subscribed to every track published in it when it is published).
    pub fn subscribe(&self, subscriber: PeerId, source: PeerId, track: &str) -> bool {
        self.change_consumer(subscriber, source, track, ConsumerChange::Subscribe(true))
    }

    /// Stops sending `source`'s `track` to `subscriber`; the track leaves its connection (a server
    /// offer follows).
    pub fn unsubscribe(&self, subscriber: PeerId, source: PeerId, track: &str) -> bool {
        self.change_consumer(subscriber, source, track, ConsumerChange::Subscribe(false))
    }

    /// Pauses (`true`) or resumes a consumer, keeping its track on the connection and its
    /// preferred layer. Resuming waits for a keyframe, which is requested.
    pub fn pause(&self, subscriber: PeerId, source: PeerId, track: &str, paused: bool) -> bool {
        self.change_consumer(subscriber, source, track, ConsumerChange::Pause(paused))
    }

    /// The highest VP8 temporal layer (TID) forwarded to `subscriber` of `source`'s `track`: 0
    /// keeps the base frame rate only (a quarter with three temporal layers), 2 or more keeps all.
    /// Packets of higher layers are dropped without a gap in sequence numbers.
    pub fn set_max_temporal_layer(
        &self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        max: u8,
    ) -> bool {
        self.change_consumer(subscriber, source, track, ConsumerChange::MaxTemporal(max))
    }

    /// Asks `peer` for a keyframe of its `track` (at most one request per 500 ms per stream).
    pub fn request_keyframe(&self, peer: PeerId, track: &str) -> bool {
        self.to_peer(
            peer,
            Command::RequestKeyframe {
                source: TrackKey::new(peer, track),
            },
        )
    }

    /// Closes a room: every member on every shard is disconnected and forgotten, and
    /// [`SfuEvent::RoomClosed`] follows. Rooms are created by their first member joining.
    pub fn close_room(&self, room: &str) {
        let room = RoomId::from(room);
        {
            let mut placement = self.placement();
            let peers: Vec<PeerId> = placement
                .peers
                .iter()
                .filter(|(_, (_, r))| *r == room)
                .map(|(p, _)| *p)
                .collect();
            for peer in peers {
                placement.remove(peer);
            }
        }
        // Every shard: members the handle no longer knows of (a room closed before they joined
        // completely) go too.
        for shard in &self.inner.shards {
            let _ = shard.send(Command::CloseRoom { room: room.clone() });
        }
    }

    /// An in-process consumer of `room` (the recorder's input; see [`LocalItem`]): every track
    /// published in the room from now on and already, one layer per video track (up to
    /// [`LocalOptions::max_layer`]), sender reports for A/V sync, track starts and ends. The
    /// reader has [`LocalOptions::capacity`] items of slack; beyond, packets are dropped (counted
    /// in [`LocalConsumer::dropped`]), never waited for. Dropping the consumer ends it.
    pub fn local_consumer(&self, room: &str, options: LocalOptions) -> LocalConsumer {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let id = LocalConsumerId(self.inner.next_local.fetch_add(1, Ordering::Relaxed));
        // Every shard: a room's publishers may be on any of them.
        for shard in &self.inner.shards {
            let _ = shard.send(Command::AddLocal {
                room: RoomId::from(room),
                id,
                max_layer: options.max_layer.min(2),
                sink: engine::local::LocalSink::new(tx.clone(), Arc::clone(&dropped)),
            });
        }
        LocalConsumer {
            id,
            items: rx,
            dropped,
        }
    }

    /// The highest simulcast layer (0 lowest) `subscriber` wants of `source`'s `track`, from the
    /// size it shows it at; `None` pauses it. Within that, the layer follows the subscriber's
    /// bandwidth. A switch happens on the layer's next keyframe, which is requested.
    pub fn set_preferred_layer(
        &self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        layer: Option<u8>,
    ) -> bool {
        self.change_consumer(
            subscriber,
            source,
            track,
            ConsumerChange::PreferredLayer(layer),
        )
    }

    /// How `subscriber` shows `source`'s `track`, which orders the share of its bandwidth each
    /// track gets. The room's active speaker is raised to [`Priority::Pinned`] automatically.
    pub fn set_priority(
        &self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        priority: Priority,
    ) -> bool {
        self.change_consumer(
            subscriber,
            source,
            track,
            ConsumerChange::Priority(priority),
        )
    }

    /// What `peer` publishes and receives now; `None` for an unknown peer.
    pub async fn stats(&self, peer: PeerId) -> Option<PeerStats> {
        let shard = self.shard_of(peer)?;
        let (reply, answer) = oneshot::channel();
        shard.send(Command::Stats { peer, reply }).ok()?;
        answer.await.ok().flatten()
    }

    /// Fault injection for tests: makes the shard of `room` panic while working on it. The room
    /// is closed ([`SfuEvent::RoomClosed`]); the shard and its other rooms go on.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_fault(&self, room: &str) {
        let shard = self.shard_for_room(room);
        let _ = self.inner.shards[shard].send(Command::InjectPanic {
            room: RoomId::from(room),
        });
    }

    /// Removes a peer: its connection closes and its tracks leave the other peers.
    pub fn leave(&self, peer: PeerId) {
        if let Some(s) = self.unplace(peer) {
            let _ = self.inner.shards[s].send(Command::Leave { peer });
        }
    }

    /// The configuration the SFU runs with.
    pub fn config(&self) -> &SfuConfig {
        &self.inner.config
    }

    /// State and counters of every shard, in shard order.
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.inner.shards.iter().map(ShardHandle::status).collect()
    }

    /// Every subscriber's bandwidth estimate and video layers, as each shard's last review saw
    /// them (once a second).
    pub fn subscribers(&self) -> Vec<SubscriberStatus> {
        self.inner
            .shards
            .iter()
            .flat_map(ShardHandle::census)
            .collect()
    }

    /// True when every shard's thread is alive and serving its socket.
    pub fn all_running(&self) -> bool {
        self.inner.shards.iter().all(ShardHandle::is_running)
    }

    /// Stops every shard and waits for its thread to end. Blocking: call it from a blocking context.
    /// Idempotent.
    pub fn shutdown(&self) {
        stop_all(&self.inner.shards);
    }
}

fn stop_all(shards: &[ShardHandle]) {
    for shard in shards {
        shard.request_stop();
    }
    for shard in shards {
        shard.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};

    fn loopback_config(shards: usize) -> SfuConfig {
        SfuConfig {
            shards,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..SfuConfig::default()
        }
    }

    #[test]
    fn sfu_handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Sfu>();
    }

    #[test]
    fn zero_shards_is_refused() {
        assert!(matches!(
            Sfu::start(loopback_config(0)),
            Err(StartError::NoShards)
        ));
    }

    #[test]
    fn each_shard_binds_its_own_port_and_stops_on_shutdown() {
        let sfu = Sfu::start(loopback_config(3)).expect("start");
        let shards = sfu.shards();
        assert_eq!(shards.len(), 3);
        let mut ports: Vec<u16> = shards.iter().map(|s| s.local_addr.port()).collect();
        ports.dedup();
        assert_eq!(ports.len(), 3, "ports must differ: {ports:?}");
        assert!(shards.iter().all(|s| s.running));
        assert!(sfu.all_running());

        sfu.shutdown();
        assert!(!sfu.all_running());
        assert!(sfu.shards().iter().all(|s| !s.running));
        // A second shutdown is harmless.
        sfu.shutdown();
    }

    #[test]
    fn datagrams_for_unknown_peers_are_counted_and_dropped() {
        let sfu = Sfu::start(loopback_config(1)).expect("start");
        let target = sfu.shards()[0].local_addr;
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [1usize, 12, 200] {
            client.send_to(&vec![0x80; len], target).unwrap();
        }
        // Shutting down drains: the stop request is queued behind the three datagrams on the same
        // socket, so the shard has read all three before it stops.
        sfu.shutdown();
        let stats = sfu.shards()[0].stats;
        assert_eq!(stats.packets_received, 3);
        assert_eq!(stats.bytes_received, 213);
        assert_eq!(stats.packets_dropped_unknown_peer, 3);
    }

    #[test]
    fn a_taken_port_is_reported_with_the_shard_and_address() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut config = loopback_config(2);
        config.udp_port_start = taken.local_addr().unwrap().port();
        match Sfu::start(config) {
            Err(StartError::Bind { index: 0, addr, .. }) => {
                assert_eq!(addr, taken.local_addr().unwrap())
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("binding a taken port must fail"),
        }
    }
}
