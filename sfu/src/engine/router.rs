//! The media graph of one shard, like mediasoup's `Router`: rooms, producers (local and piped,
//! in one map) and consumers, and where a packet goes ([`route`]).
//!
//! A producer lists its consumers by id, so forwarding a packet visits exactly the consumers of
//! its track. The graph changes only through [`super::Engine::connect`] and
//! [`super::Engine::disconnect`] (which also add and remove the tracks on subscribers'
//! connections) and the producer lifecycle in [`super::Engine`].

use std::collections::HashMap;
use std::time::Instant;

use rtc::rtp;

use crate::events::SfuEvent;
use crate::ids::{ConsumerId, LocalConsumerId, PeerId, ProducerId, RoomId, TrackKey};
use crate::media::forwarder::Decision;
use crate::media::speaker::SpeakerDetector;
use crate::throttle::LogThrottle;

use super::consumer::{self, Consumer, Sink, WriteError};
use super::local::LocalItem;
use super::peer::Peer;
use super::pipe::Ingress;
use super::{Counters, Output};

/// A room as one shard sees it.
#[derive(Default)]
pub(crate) struct Room {
    /// Its members on this shard.
    pub(crate) members: Vec<PeerId>,
    /// Every producer of the room on this shard (local and piped).
    pub(crate) producers: Vec<ProducerId>,
    pub(crate) speakers: SpeakerDetector<PeerId>,
    /// The dominant speaker now (its consumers are served first).
    pub(crate) speaker: Option<PeerId>,
    /// Other shards with members of this room: this shard's publishers are piped to them.
    pub(crate) links: Vec<usize>,
    /// In-process consumers of the room, with the highest layer each takes.
    pub(crate) locals: Vec<(LocalConsumerId, u8)>,
}

/// Rooms, producers and consumers of one shard.
#[derive(Default)]
pub(crate) struct Router {
    pub(crate) rooms: HashMap<RoomId, Room>,
    pub(crate) producers: HashMap<ProducerId, super::producer::Producer>,
    pub(crate) by_track: HashMap<TrackKey, ProducerId>,
    pub(crate) consumers: HashMap<ConsumerId, Consumer>,
    next_id: u64,
}

impl Router {
    pub(crate) fn next_producer_id(&mut self) -> ProducerId {
        self.next_id += 1;
        ProducerId(self.next_id)
    }

    pub(crate) fn next_consumer_id(&mut self) -> ConsumerId {
        self.next_id += 1;
        ConsumerId(self.next_id)
    }

    /// A subscriber's consumer of a track.
    pub(crate) fn consumer_of(&self, peer: &Peer, source: &TrackKey) -> Option<ConsumerId> {
        peer.consumers
            .iter()
            .copied()
            .find(|c| self.consumers.get(c).is_some_and(|c| &c.source == source))
    }
}

/// What the forwarding of a round collects for after it: keyframes wanted, layer changes.
#[derive(Default)]
pub(crate) struct RoundNotes {
    /// (producer, layer) keyframes wanted by consumers switching or starting.
    pub(crate) keyframes: Vec<(ProducerId, u8)>,
    pub(crate) events: Vec<SfuEvent>,
}

/// Sends a packet of `producer` to each of its consumers: each forwarder decides (layer, pause,
/// duplicates) and rewrites; subscribers get it on their connections, in-process consumers as a
/// [`LocalItem::Rtp`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn route(
    producer: &super::producer::Producer,
    consumers: &mut HashMap<ConsumerId, Consumer>,
    peers: &mut HashMap<PeerId, Box<Peer>>,
    out: &mut super::out::MediaOut,
    packet: &rtp::Packet,
    ingress: &Ingress,
    now: Instant,
    notes: &mut RoundNotes,
    outputs: &mut std::collections::VecDeque<Output>,
    counters: &mut Counters,
    write_failed: &mut LogThrottle,
) {
    for cid in &producer.consumers {
        let Some(c) = consumers.get_mut(cid) else {
            continue;
        };
        // A subscriber's connection takes media once ICE and DTLS are up.
        let sub = match &c.sink {
            Sink::Peer(sink) => match peers.get_mut(&sink.peer) {
                Some(peer) if peer.connected => Some(peer),
                _ => continue,
            },
            Sink::Local(_) => None,
        };
        let before = c.forwarder.current_layer();
        let decision = c.forwarder.handle(&ingress.info, now);
        if let Some(layer) = c.forwarder.keyframe_needed() {
            notes.keyframes.push((producer.id, layer));
        }
        if c.forwarder.current_layer() != before {
            c.layer_since = Some(now);
        }
        if c.forwarder.current_layer() != before
            && ingress.video
            && let Some(subscriber) = c.subscriber()
        {
            notes.events.push(SfuEvent::LayerChanged {
                subscriber,
                source: producer.key.peer,
                track: producer.key.track.clone(),
                layer: c.forwarder.current_layer(),
            });
        }
        let Decision::Forward(rewrite) = decision else {
            continue;
        };
        match (&mut c.sink, sub) {
            (Sink::Peer(sink), Some(peer)) => {
                // The packet goes out through the shard's send buffer, not the connection:
                // nothing new to poll on it.
                match consumer::write(
                    sink,
                    peer,
                    out,
                    packet,
                    ingress.vp8.as_ref(),
                    &ingress.extensions,
                    rewrite,
                    now,
                ) {
                    Ok(_) => {
                        if ingress.video {
                            consumer::record(
                                sink,
                                ingress.info.layer,
                                ingress.info.sequence,
                                rewrite,
                            );
                        }
                        counters.rtp_forwarded += 1;
                        c.packets += 1;
                    }
                    Err(WriteError::NotReady) => {}
                    Err(WriteError::Refused(e)) => {
                        counters.forward_errors += 1;
                        if let Some(held) = write_failed.allow(now) {
                            tracing::debug!(error = %e, held, "forwarding failed");
                        }
                    }
                }
            }
            (Sink::Local(id), _) => {
                let mut out = packet.clone();
                out.header.ssrc = ssrc_for_local(&producer.key);
                out.header.payload_type = if ingress.video {
                    super::peer::VP8_PAYLOAD_TYPE
                } else {
                    super::peer::OPUS_PAYLOAD_TYPE
                };
                out.header.sequence_number = rewrite.sequence;
                out.header.timestamp = rewrite.timestamp;
                out.header.marker = rewrite.marker;
                if let (Some(info), Some(picture)) = (&ingress.vp8, &rewrite.picture)
                    && let Some(payload) =
                        crate::media::vp8::renumbered(&packet.payload, info, picture)
                {
                    out.payload = payload;
                }
                c.packets += 1;
                outputs.push_back(Output::Local {
                    consumer: *id,
                    item: LocalItem::Rtp {
                        track: producer.key.clone(),
                        packet: out,
                    },
                });
            }
            (Sink::Peer(_), None) => {}
        }
    }
}

/// The SSRC of a track's packets for in-process consumers: stable per track.
pub(crate) fn ssrc_for_local(key: &TrackKey) -> u32 {
    let hash = key
        .track
        .bytes()
        .chain(key.peer.as_u64().to_le_bytes())
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    hash | 1
}
