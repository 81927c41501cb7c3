//! What the [`crate::Sfu`] handle asks a shard's engine, and where the answers go.

use tokio::sync::oneshot;

use crate::errors::{AnswerError, JoinError};
use crate::ids::{LocalConsumerId, PeerId, RoomId, TrackKey};
use crate::stats::PeerStats;

use super::consumer::Priority;
use super::local::LocalSink;
use super::peer::PeerRights;
use super::pipe::ShardMessage;

/// Requests to a shard.
pub(crate) enum Command {
    Join {
        room: RoomId,
        peer: PeerId,
        offer: String,
        rights: PeerRights,
        reply: oneshot::Sender<Result<String, JoinError>>,
    },
    /// Grants or revokes a peer's right to publish.
    SetPublish {
        peer: PeerId,
        publish: bool,
    },
    /// The peer's answer to a server offer; the result goes to `reply` when there is one.
    Answer {
        peer: PeerId,
        sdp: String,
        reply: Option<oneshot::Sender<Result<(), AnswerError>>>,
    },
    /// A renegotiation offer from the peer (tracks added or removed).
    Offer {
        peer: PeerId,
        sdp: String,
        reply: oneshot::Sender<Result<String, JoinError>>,
    },
    /// A trickled ICE candidate of the peer.
    Candidate {
        peer: PeerId,
        candidate: String,
    },
    /// Changes one of a subscriber's consumers.
    Consumer {
        subscriber: PeerId,
        source: TrackKey,
        change: ConsumerChange,
    },
    RequestKeyframe {
        source: TrackKey,
    },
    /// Pauses, resumes or closes a producer (moderation), on its publisher's shard.
    Producer {
        source: TrackKey,
        change: ProducerChange,
    },
    CloseRoom {
        room: RoomId,
    },
    Leave {
        peer: PeerId,
    },
    /// An in-process consumer of `room`'s tracks published on this shard. The shard keeps the
    /// sink; the engine only produces its items.
    AddLocal {
        room: RoomId,
        id: LocalConsumerId,
        max_layer: u8,
        sink: LocalSink,
    },
    /// Every shard's mailbox (for pipes), in shard order; sent once at start.
    Mailboxes(Vec<crate::shard::Mailbox>),
    /// The shards that host members of `room` now (this one may have left it).
    LinkRoom {
        room: RoomId,
        shards: Vec<usize>,
    },
    /// From another shard of a room (pipe control; pipe packets travel on the pipe queue).
    Shard(ShardMessage),
    /// Fault injection for tests: panic while working on `room`.
    #[cfg(feature = "fault-injection")]
    InjectPanic {
        room: RoomId,
    },
    Stats {
        peer: PeerId,
        reply: oneshot::Sender<Option<PeerStats>>,
    },
}

/// A change to a subscriber's consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConsumerChange {
    Subscribe(bool),
    Pause(bool),
    PreferredLayer(Option<u8>),
    Priority(Priority),
    MaxTemporal(u8),
}

/// A change to a producer, by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProducerChange {
    Pause(bool),
    Close,
}

impl super::Engine {
    /// Carries out a command; answers go to its reply channel. The sink of a new in-process
    /// consumer is handed back: the shard keeps it (the engine only produces its items).
    pub(crate) fn handle_command(
        &mut self,
        command: Command,
        now: std::time::Instant,
    ) -> Option<(LocalConsumerId, LocalSink)> {
        match command {
            Command::Stats { peer, reply } => {
                let _ = reply.send(self.stats(peer));
            }
            Command::Mailboxes(_) => {}
            Command::LinkRoom { room, shards } => self.link_room(room, &shards),
            Command::Shard(message) => self.handle_shard_message(message, now),
            #[cfg(feature = "fault-injection")]
            Command::InjectPanic { room } => {
                self.scope = Some(room);
                panic!("fault injected for a test");
            }
            Command::Join {
                room,
                peer,
                offer,
                rights,
                reply,
            } => {
                let _ = reply.send(self.join(room, peer, offer, rights, now));
            }
            Command::SetPublish { peer, publish } => self.set_publish(peer, publish),
            Command::Answer { peer, sdp, reply } => {
                let result = self.answer(peer, sdp, now);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Offer { peer, sdp, reply } => {
                let _ = reply.send(self.client_offer(peer, sdp, now));
            }
            Command::Candidate { peer, candidate } => self.candidate(peer, candidate, now),
            Command::Consumer {
                subscriber,
                source,
                change,
            } => self.change_consumer(subscriber, source, change, now),
            Command::RequestKeyframe { source } => {
                if let Some(&pid) = self.router.by_track.get(&source) {
                    self.request_all_keyframes(pid, now);
                }
            }
            Command::Producer { source, change } => self.change_producer(source, change, now),
            Command::CloseRoom { room } => {
                self.scope = Some(room.clone());
                self.close_room(&room, crate::events::CloseReason::Requested);
            }
            Command::Leave { peer } => {
                self.scope_peer(peer);
                self.remove_peer(peer);
            }
            Command::AddLocal {
                room,
                id,
                max_layer,
                sink,
            } => {
                self.add_local(room, id, max_layer, now);
                return Some((id, sink));
            }
        }
        None
    }
}
