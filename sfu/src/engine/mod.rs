//! The media engine of one shard, sans-IO in str0m's shape: it takes inputs (datagrams,
//! commands, pipe messages from other shards, `now`) and returns outputs that the shard carries
//! out (datagrams to send, events, messages to other shards, items for in-process consumers, the
//! next timeout). It never touches a socket, a channel to another thread, or the clock.
//!
//! Where a packet goes: [`Engine::handle_datagram`] routes the datagram to its [`Peer`] (by STUN
//! username, then by source address learned from authenticated ICE checks), whose `rtc`
//! connection decrypts it; [`Engine::process`] reads the RTP out and hands it to the producer,
//! and [`router::route`] sends it to the producer's consumers.
//!
//! Modules, one concept each:
//! - [`peer`]: the WebRTC connection and its negotiation, rights, bandwidth state (mediasoup's
//!   `WebRtcTransport`);
//! - [`router`]: rooms, producers and consumers, and fan-out (mediasoup's `Router`);
//! - [`producer`], [`consumer`]: one published track; one receiver's copy of it and the write
//!   path to a subscriber;
//! - [`pipe`]: tracks and packets between the shards of a room (mediasoup's `PipeTransport`);
//! - [`local`]: in-process consumers for the recorder (mediasoup's `DirectTransport`);
//! - [`bandwidth`]: sharing each subscriber's estimate among its consumers;
//! - [`command`]: what the handle asks.

pub(crate) mod bandwidth;
pub(crate) mod command;
pub(crate) mod consumer;
pub(crate) mod keys;
pub(crate) mod local;
pub(crate) mod out;
pub(crate) mod peer;
pub(crate) mod pipe;
pub(crate) mod producer;
mod reports;
pub(crate) mod router;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportProtocol};

pub use consumer::Priority;
pub use local::{LocalConsumer, LocalItem, LocalOptions};
pub use peer::PeerRights;

use crate::errors::{AnswerError, JoinError};
use crate::events::{CloseReason, SfuEvent};
use crate::ids::{ConsumerId, LocalConsumerId, PeerId, ProducerId, RoomId, TrackId, TrackKey};
use crate::media::bwe::PacketResult;
use crate::media::forwarder::PacketInfo;
use crate::media::retransmit;
use crate::media::vp8;
use crate::stats::{ConsumerStats, PeerStats, ProducerStats};
use crate::throttle::LogThrottle;
use command::{ConsumerChange, ProducerChange};
use consumer::{Consumer, PeerSink, Sink};
use out::MediaOut;
use peer::{Endpoint, Peer};
use pipe::{Ingress, PipedPacket, ShardMessage};
use producer::{Origin, Producer};
use router::{RoundNotes, Router};

/// Header extensions forwarded to subscribers, with their ids remapped to each subscriber's
/// numbering. The others describe the publisher's own connection (mid, rid, transport-wide
/// sequence numbers, send times) and are not forwarded.
const FORWARDED_EXTENSIONS: &[&str] = &[
    peer::AUDIO_LEVEL_URI,
    "urn:3gpp:video-orientation",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
];

/// A bandwidth estimate event goes out when the estimate moved by this share since the last one.
const BWE_EVENT_CHANGE: f64 = 0.10;

/// A datagram for the shard to send.
pub(crate) struct Transmit {
    pub(crate) data: BytesMut,
    pub(crate) to: SocketAddr,
    pub(crate) protocol: TransportProtocol,
}

/// What the engine asks the shard to carry out, besides sending datagrams.
pub(crate) enum Output {
    /// For the SFU's event listeners.
    Event(SfuEvent),
    /// For another shard of a room.
    ToShard { shard: usize, message: ShardMessage },
    /// For an in-process consumer's queue.
    Local {
        consumer: LocalConsumerId,
        item: LocalItem,
    },
    /// An in-process consumer's room closed: the shard lets go of its queue.
    LocalEnd { consumer: LocalConsumerId },
    /// The subscribers as the review saw them (for metrics).
    Census(Vec<crate::stats::SubscriberStatus>),
}

/// Counters of the engine (read by the shard for its stats).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    /// Packets handed to other shards of their room.
    pub rtp_piped: u64,
    pub rtp_in: u64,
    pub rtp_forwarded: u64,
    pub forward_errors: u64,
    /// RTP packets dropped unrouted: from peers without the publish right, or on a track closed
    /// by the server.
    pub rtp_refused: u64,
    /// RTP packets of producers paused by the server.
    pub rtp_paused: u64,
    /// Packets sent again after subscribers' NACKs, and NACKed packets no longer held.
    pub rtp_retransmitted: u64,
    pub nacks_unanswered: u64,
    pub keyframe_requests_sent: u64,
    /// Layer changes of consumers (up, down, paused, resumed).
    pub layer_switches: u64,
    pub unknown_source: u64,
    /// Offers, answers and candidates from peers refused (nothing of them applied).
    pub signaling_refused: u64,
    /// Server offers that could not be made (tried again on the next round).
    pub server_offer_errors: u64,
    /// Datagrams from known peers that `rtc` refused (bad STUN, DTLS or SRTP).
    pub datagrams_refused: u64,
    /// Sender reports sent for forwarded streams.
    pub sender_reports: u64,
}

/// Log lines a peer could make repeat at packet or loop rate, one [`LogThrottle`] each.
#[derive(Debug, Default)]
struct Throttles {
    datagram_refused: LogThrottle,
    write_failed: LogThrottle,
    signaling_refused: LogThrottle,
}

/// How the shard was set up.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) index: usize,
    pub(crate) shard_count: usize,
    pub(crate) local_addr: SocketAddr,
    /// The ICE-TCP listener's address, if enabled.
    pub(crate) tcp_addr: Option<SocketAddr>,
    pub(crate) ice_address: std::net::IpAddr,
    /// ICE consent: disconnected after the first, failed (and removed) after both.
    pub(crate) ice_timeouts: (Duration, Duration),
}

/// The engine of one shard.
pub(crate) struct Engine {
    config: EngineConfig,
    /// Boxed: a `Peer` is several KB, and a map rehashes and keeps up to half its slots empty.
    peers: HashMap<PeerId, Box<Peer>>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    router: Router,
    next_ssrc: u32,
    pub(crate) counters: Counters,
    throttles: Throttles,
    /// The shard's DTLS certificate, made once and shared by its connections (as Janus and
    /// mediasoup do per worker): `rtc` would otherwise make a key pair and a self-signed
    /// certificate for every connection, the largest part of a join's cost. Renewed when close
    /// to expiry.
    certificate: Option<RTCCertificate>,
    /// The room being worked on, so that a panic is pinned to it.
    scope: Option<RoomId>,
    /// When subscribers' layers are next reviewed without waiting for feedback.
    next_review: Option<Instant>,
    /// Peers that had input this round, polled at its end.
    touched: Vec<PeerId>,
    /// Datagrams to send before polling the touched peers (answers to ICE checks).
    transmits: VecDeque<Transmit>,
    outputs: VecDeque<Output>,
    /// Packets to pipe to each shard, flushed at the end of each round.
    outbox: Vec<Vec<PipedPacket>>,
    /// Reused buffers (no allocation per round in steady state).
    scratch_ids: Vec<PeerId>,
    scratch_media: Vec<(PeerId, String, rtp::Packet)>,
    /// What a round collects (empty between rounds; reused).
    notes: RoundNotes,
    /// The media the round forwarded, sealed, for the shard to send ([`Engine::media_out`]).
    media_out: MediaOut,
    /// When the subscribers' sender reports are next due.
    next_sender_reports: Option<Instant>,
    /// The wall-clock time of an instant of the monotonic clock, for the NTP time of sender
    /// reports.
    wall_base: (Instant, std::time::SystemTime),
}

/// A stream a peer's connection started receiving (its first packet arrived).
struct Opened {
    track: String,
    receiver: rtc::rtp_transceiver::RTCRtpReceiverId,
    kind: RtpCodecKind,
    ssrc: u32,
    layer: u8,
}

/// The shard a room lives on first: a stable hash of its name (FNV-1a: stable across runs and
/// processes, unlike the std hasher).
pub(crate) fn home_shard(room: &str, shards: usize) -> usize {
    let hash = room.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards.max(1) as u64) as usize
}

impl Engine {
    pub(crate) fn new(config: EngineConfig) -> Engine {
        let outbox = (0..config_shards(&config)).map(|_| Vec::new()).collect();
        Engine {
            next_ssrc: 0x5f00_0000 ^ u32::from(config.local_addr.port()),
            config,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            router: Router::default(),
            counters: Counters::default(),
            throttles: Throttles::default(),
            certificate: None,
            scope: None,
            next_review: None,
            touched: Vec::new(),
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
            outbox,
            scratch_ids: Vec::new(),
            scratch_media: Vec::new(),
            notes: RoundNotes::default(),
            media_out: MediaOut::default(),
            next_sender_reports: None,
            wall_base: (Instant::now(), std::time::SystemTime::now()),
        }
    }

    /// The next output for the shard (events, shard messages, in-process items).
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next datagram to send: answers to ICE checks first, then what the connections touched
    /// this round wrote. A peer whose connection has nothing more to send leaves the round (and
    /// its next timeout is noted).
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        while let Some(&id) = self.touched.last() {
            if let Some(peer) = self.peers.get_mut(&id) {
                if let Some(out) = peer.pc.poll_write() {
                    learn(&mut self.by_addr, id, peer, &out);
                    return Some(Transmit {
                        data: out.message,
                        to: out.transport.peer_addr,
                        protocol: out.transport.transport_protocol,
                    });
                }
                peer.touched = false;
                peer.next_timeout = peer.pc.poll_timeout();
            }
            self.touched.pop();
        }
        None
    }

    /// The media forwarded this round, sealed: the shard sends it after the round's other
    /// datagrams ([`Engine::poll_transmit`]) and clears it.
    pub(crate) fn media_out(&mut self) -> &mut MediaOut {
        &mut self.media_out
    }

    /// The sender reports of every stream the SFU forwards to a connected subscriber (`rtc`
    /// does not see those packets, so it cannot report them), through its connection's RTCP.
    fn send_sender_reports(&mut self, now: Instant) {
        let ntp = ntp_time(self.wall_base, now);
        for c in self.router.consumers.values() {
            let Sink::Peer(sink) = &c.sink else { continue };
            let Some(report) = sink.sender_report(now, ntp) else {
                continue;
            };
            let Some(peer) = self.peers.get_mut(&sink.peer) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let message = RTCMessage::RtcpPacket(String::new(), vec![Box::new(report)]);
            if peer
                .pc
                .handle_write(TaggedRTCMessage { now, message })
                .is_ok()
            {
                self.counters.sender_reports += 1;
            }
            if !peer.touched {
                peer.touched = true;
                self.touched.push(sink.peer);
            }
        }
    }

    /// The earliest time [`Engine::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().filter_map(|p| p.next_timeout);
        let keyframes = self
            .router
            .producers
            .values()
            .filter_map(|p| p.next_keyframe_timeout());
        let speakers = self
            .router
            .rooms
            .values()
            .filter_map(|r| r.speakers.next_timeout());
        let review = self.next_review.filter(|_| !self.peers.is_empty());
        let reports = self.next_sender_reports.filter(|_| !self.peers.is_empty());
        peers
            .chain(keyframes)
            .chain(speakers)
            .chain(review)
            .chain(reports)
            .min()
    }

    /// The room of what was being worked on when a panic struck, if known.
    pub(crate) fn faulty_room(&self) -> Option<RoomId> {
        self.scope.clone()
    }

    pub(crate) fn clear_scope(&mut self) {
        self.scope = None;
    }

    fn scope_peer(&mut self, id: PeerId) {
        self.scope = self.peers.get(&id).map(|p| p.room.clone());
    }

    fn emit(&mut self, event: SfuEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    /// The peers touched so far this round, in the reused scratch list (give it back to
    /// `scratch_ids` when done: no allocation per round).
    fn touched_snapshot(&mut self) -> Vec<PeerId> {
        let mut ids = std::mem::take(&mut self.scratch_ids);
        ids.clear();
        ids.extend_from_slice(&self.touched);
        ids
    }

    /// Marks a peer as having had input this round.
    fn touch(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id)
            && !peer.touched
        {
            peer.touched = true;
            self.touched.push(id);
        }
    }

    // ----- Inputs -----

    /// A packet from `from` (a UDP datagram, or a frame of an ICE-TCP connection). False when it
    /// is from no known peer.
    ///
    /// A STUN request is routed by its username (our ICE ufrag); anything else by its source
    /// address, learned only from where the connection answered (it answers only ICE checks
    /// whose MESSAGE-INTEGRITY holds), so an unauthenticated datagram teaches nothing.
    pub(crate) fn handle_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        protocol: TransportProtocol,
        now: Instant,
    ) -> bool {
        self.handle_received(BytesMut::from(data), from, protocol, now)
    }

    /// [`Engine::handle_datagram`] for a datagram the caller owns: it goes to the connection
    /// as it is, without a copy (the shard reads datagrams into slices of one shared buffer).
    pub(crate) fn handle_received(
        &mut self,
        data: BytesMut,
        from: SocketAddr,
        protocol: TransportProtocol,
        now: Instant,
    ) -> bool {
        let stun = peer::is_stun(&data);
        let target = if stun {
            peer::stun_local_ufrag(&data).and_then(|u| self.by_ufrag.get(&u).copied())
        } else {
            None
        };
        let Some(id) = target.or_else(|| self.by_addr.get(&from).copied()) else {
            self.counters.unknown_source += 1;
            return false;
        };
        self.scope_peer(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        // Media from a peer that may not publish goes no further: not decrypted, not bound to a
        // receiver, not routed, whatever its descriptions said.
        if !peer.rights.publish && peer::is_rtp(&data) {
            self.counters.rtp_refused += 1;
            return true;
        }
        let message = rtc::shared::TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: match protocol {
                    TransportProtocol::TCP => {
                        self.config.tcp_addr.unwrap_or(self.config.local_addr)
                    }
                    _ => self.config.local_addr,
                },
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: data,
        };
        if let Err(e) = peer.pc.handle_read(message) {
            self.counters.datagrams_refused += 1;
            if let Some(held) = self.throttles.datagram_refused.allow(now) {
                tracing::debug!(peer = %id, error = %e, held, "datagram refused");
            }
        }
        if stun {
            // The answer to a check goes out now, and teaches where the peer is before the
            // datagrams that follow it in this batch (its DTLS handshake) are routed.
            while let Some(out) = peer.pc.poll_write() {
                learn(&mut self.by_addr, id, peer, &out);
                self.transmits.push_back(Transmit {
                    data: out.message,
                    to: out.transport.peer_addr,
                    protocol: out.transport.transport_protocol,
                });
            }
        }
        self.touch(id);
        true
    }

    /// Runs timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self.next_sender_reports {
            Some(due) if due <= now => {
                self.send_sender_reports(now);
                self.next_sender_reports = Some(now + SENDER_REPORT_INTERVAL);
            }
            None => self.next_sender_reports = Some(now + SENDER_REPORT_INTERVAL),
            Some(_) => {}
        }
        let mut due = std::mem::take(&mut self.scratch_ids);
        due.clear();
        due.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.next_timeout.is_some_and(|t| t <= now))
                .map(|(id, _)| *id),
        );
        for &id in &due {
            self.scope_peer(id);
            if let Some(peer) = self.peers.get_mut(&id) {
                let _ = peer.pc.handle_timeout(now);
                peer.next_timeout = None;
            }
            self.touch(id);
        }
        self.scratch_ids = due;
        // Keyframes asked for and not arrived: ask again.
        let mut retry = Vec::new();
        for p in self.router.producers.values_mut() {
            for (layer, requests) in p.keyframes.iter_mut().enumerate() {
                if requests.poll(now) {
                    retry.push((p.id, layer as u8));
                }
            }
        }
        for (pid, layer) in retry {
            self.send_keyframe_request(pid, layer, now);
        }
        match self.next_review {
            Some(t) if t <= now => self.review(now),
            Some(_) => {}
            None => self.next_review = Some(now + bandwidth::REVIEW_INTERVAL),
        }
        let mut speakers = Vec::new();
        for (name, room) in &mut self.router.rooms {
            if let Some(peer) = room.speakers.poll(now) {
                room.speaker = Some(peer);
                speakers.push((name.clone(), peer));
            }
        }
        for (room, peer) in speakers {
            self.scope = Some(room.clone());
            // The new speaker's consumers move up in everyone's allocation.
            let members = self
                .router
                .rooms
                .get(&room)
                .map(|r| r.members.clone())
                .unwrap_or_default();
            for member in members {
                self.reallocate(member, now);
            }
            // Every shard of the room sees every level and reaches the same result; the room's
            // home shard reports it.
            if home_shard(room.as_str(), self.config.shard_count) == self.config.index {
                self.emit(SfuEvent::ActiveSpeaker { room, peer });
            }
        }
    }

    /// Processes what the connections touched this round produced: connection events, received
    /// media and RTCP, renegotiation; then hands each other shard its piped packets.
    pub(crate) fn process(&mut self, now: Instant) {
        self.process_events(now);
        self.process_reads(now);
        self.renegotiate(now);
        for (shard, packets) in self.outbox.iter_mut().enumerate() {
            if !packets.is_empty() {
                self.outputs.push_back(Output::ToShard {
                    shard,
                    message: ShardMessage::Packets(std::mem::take(packets)),
                });
            }
        }
    }

    /// A message from another shard of a room.
    pub(crate) fn handle_shard_message(&mut self, message: ShardMessage, now: Instant) {
        match message {
            ShardMessage::Track {
                room,
                origin,
                key,
                kind,
                codec,
            } => {
                self.scope = Some(room.clone());
                self.add_piped_producer(room, origin, key, kind, codec, now);
            }
            ShardMessage::Untrack { key } => {
                if let Some(&pid) = self.router.by_track.get(&key) {
                    self.scope = self.router.producers.get(&pid).map(|p| p.room.clone());
                    self.remove_producer(pid);
                }
            }
            ShardMessage::Packets(packets) => {
                let mut notes = std::mem::take(&mut self.notes);
                for piped in packets {
                    self.receive_piped(piped, now, &mut notes);
                }
                self.finish_round(notes, now);
            }
            ShardMessage::Keyframe { key, layer } => {
                if let Some(&pid) = self.router.by_track.get(&key) {
                    self.scope = self.router.producers.get(&pid).map(|p| p.room.clone());
                    self.request_keyframe(pid, layer, now);
                }
            }
        }
    }

    // ----- Peers -----

    /// The shard's DTLS certificate (see the field), made on first use and renewed a day before
    /// it expires.
    fn certificate(&mut self) -> Result<RTCCertificate, rtc::shared::error::Error> {
        // Wall clock: certificate validity is calendar time, not the engine's monotonic `now`.
        let renew_after = std::time::SystemTime::now() + Duration::from_secs(86_400);
        if let Some(c) = self
            .certificate
            .as_ref()
            .filter(|c| c.expires > renew_after)
        {
            return Ok(c.clone());
        }
        let provider = rtc::crypto::default_provider()
            .map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?;
        let params = CertificateParams::new(vec![rtc::shared::util::math_rand_alpha(16)])
            .map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?;
        let made = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )?;
        self.certificate = Some(made.clone());
        Ok(made)
    }

    /// Adds a peer to `room`: its connection answers `offer`, and everything published in the
    /// room is connected to it (its first server offer carries all of it).
    pub(crate) fn join(
        &mut self,
        room: RoomId,
        id: PeerId,
        offer: String,
        rights: PeerRights,
        now: Instant,
    ) -> Result<String, JoinError> {
        self.scope = Some(room.clone());
        let certificate = self
            .certificate()
            .map_err(|e| JoinError::Setup(e.to_string()))?;
        let endpoint = Endpoint {
            ice_address: self.config.ice_address,
            udp_port: self.config.local_addr.port(),
            tcp_port: self.config.tcp_addr.map(|a| a.port()),
            ice_timeouts: self.config.ice_timeouts,
            certificate: &certificate,
        };
        let peer = Peer::from_offer(id, room.clone(), offer, rights, &endpoint, now)?;
        self.by_ufrag.insert(peer.ufrag.clone(), id);
        self.peers.insert(id, Box::new(peer));
        self.touch(id);
        let r = self.router.rooms.entry(room).or_default();
        r.members.push(id);
        let published = r.producers.clone();
        let mut new_sections = false;
        for pid in published {
            new_sections |= self.connect(pid, id) == Some(true);
        }
        let answered = match self.peers.get_mut(&id) {
            Some(peer) => peer.answer_first_offer(now).inspect(|_| {
                // Tracks on the sections it offered to receive are in the answer; others need
                // a server offer.
                peer.renegotiate = new_sections;
            }),
            None => Err(JoinError::Closed),
        };
        if answered.is_err() {
            self.remove_peer_quietly(id);
        }
        answered
    }

    /// Removes a peer: its connection closes, its consumers go, its producers end (everyone is
    /// told), and the addresses it was known by are forgotten.
    pub(crate) fn remove_peer(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let (consumers, producers) = (peer.consumers.clone(), peer.producers.clone());
        for cid in consumers {
            self.disconnect(cid);
        }
        for (_, pid) in producers {
            self.remove_producer(pid);
        }
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        let _ = peer.pc.close();
        self.by_ufrag.remove(&peer.ufrag);
        for addr in &peer.addrs {
            if self.by_addr.get(addr) == Some(&id) {
                self.by_addr.remove(addr);
            }
        }
        if let Some(room) = self.router.rooms.get_mut(&peer.room) {
            room.members.retain(|p| *p != id);
            room.speakers.remove(id);
        }
        self.prune_room(&peer.room);
        self.emit(SfuEvent::PeerDisconnected { peer: id });
    }

    /// Removes a peer whose join failed (nobody heard of it: no event).
    fn remove_peer_quietly(&mut self, id: PeerId) {
        self.remove_peer(id);
        if let Some(Output::Event(SfuEvent::PeerDisconnected { peer })) = self.outputs.back()
            && *peer == id
        {
            self.outputs.pop_back();
        }
    }

    /// Forgets a room this shard no longer has anything of.
    fn prune_room(&mut self, room: &RoomId) {
        if let Some(r) = self.router.rooms.get(room)
            && r.members.is_empty()
            && r.producers.is_empty()
            && r.locals.is_empty()
            && r.links.is_empty()
        {
            self.router.rooms.remove(room);
        }
    }

    /// Counts a refused offer, answer or candidate of `peer` and logs it (throttled: a peer
    /// decides how often it sends them).
    fn refused(&mut self, peer: PeerId, what: &str, error: &dyn std::fmt::Display, now: Instant) {
        self.counters.signaling_refused += 1;
        if let Some(held) = self.throttles.signaling_refused.allow(now) {
            tracing::info!(peer = %peer, error = %error, held, "{what} refused");
        }
    }

    /// A renegotiation offer from the peer; see [`Peer::client_offer`].
    pub(crate) fn client_offer(
        &mut self,
        id: PeerId,
        sdp: String,
        now: Instant,
    ) -> Result<String, JoinError> {
        self.scope_peer(id);
        self.touch(id);
        let peer = self.peers.get_mut(&id).ok_or(JoinError::UnknownPeer)?;
        let result = match peer.client_offer(sdp, now) {
            Ok(answer) => {
                self.unpublish_unreceived(id);
                Ok(answer)
            }
            Err(Ok(e)) => Err(e),
            Err(Err(e)) => {
                tracing::warn!(peer = %id, "a refused offer could not be rolled back: peer closed");
                self.remove_peer(id);
                Err(e)
            }
        };
        if let Err(e) = &result {
            self.refused(id, "offer", e, now);
        }
        result
    }

    /// Unpublishes the tracks of `id` whose sections no longer send to the SFU after a
    /// renegotiation (the browser's `removeTrack`, or a stopped transceiver: a screen share that
    /// ended). `rtc` says nothing of a remote track going away.
    fn unpublish_unreceived(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let receiving: Vec<_> = peer
            .pc
            .get_transceivers()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|t| {
                let t = peer.pc.rtp_transceiver(t)?;
                t.current_direction()
                    .has_recv()
                    .then(|| t.receiver())
                    .flatten()
            })
            .collect();
        let gone: Vec<ProducerId> = peer
            .producers
            .iter()
            .map(|(_, pid)| *pid)
            .filter(|pid| {
                self.router.producers.get(pid).is_some_and(|p| {
                    matches!(p.origin, Origin::Local { receiver } if !receiving.contains(&receiver))
                })
            })
            .collect();
        for pid in gone {
            self.remove_producer(pid);
        }
    }

    /// The peer's answer to the pending server offer; see [`Peer::accept_answer`].
    pub(crate) fn answer(
        &mut self,
        id: PeerId,
        sdp: String,
        now: Instant,
    ) -> Result<(), AnswerError> {
        self.scope_peer(id);
        self.touch(id);
        let result = match self.peers.get_mut(&id) {
            Some(peer) => peer.accept_answer(sdp, now),
            None => Err(AnswerError::UnknownPeer),
        };
        if let Err(e) = &result {
            self.refused(id, "answer", e, now);
        }
        result
    }

    /// A trickled candidate of the peer.
    pub(crate) fn candidate(&mut self, id: PeerId, candidate: String, now: Instant) {
        self.scope_peer(id);
        self.touch(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let init = RTCIceCandidateInit {
            candidate,
            ..Default::default()
        };
        if let Err(e) = peer.pc.add_remote_candidate(init) {
            self.refused(id, "candidate", &e, now);
        }
    }

    /// Grants or revokes `id`'s right to publish. Revoking closes its producers now, takes the
    /// receiving side off its transceivers and makes a server offer saying so; granting lets its
    /// next offer publish.
    pub(crate) fn set_publish(&mut self, id: PeerId, publish: bool) {
        self.scope_peer(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.rights.publish == publish {
            return;
        }
        peer.rights.publish = publish;
        if !publish {
            peer::refuse_receiving(&mut peer.pc, peer.connected);
            // A server offer tells the peer its sending sections are no longer received, so an
            // honest client stops sending (until then its RTP is refused on arrival).
            peer.renegotiate = true;
            let producers = std::mem::take(&mut peer.producers);
            if let Some(room) = self.router.rooms.get_mut(&peer.room) {
                room.speakers.remove(id);
            }
            for (_, pid) in producers {
                self.remove_producer(pid);
            }
        }
        self.touch(id);
    }

    // ----- The media graph -----

    /// Gives `subscriber` a consumer of producer `pid`: a new sending track on its connection
    /// (a server offer follows). Not for its own tracks, nor twice. `Some(true)` when the track
    /// needed a new section (m-line) on the connection.
    pub(crate) fn connect(&mut self, pid: ProducerId, subscriber: PeerId) -> Option<bool> {
        let producer = self.router.producers.get(&pid)?;
        let peer = self.peers.get(&subscriber)?;
        if producer.key.peer == subscriber
            || producer.room != peer.room
            || self.router.consumer_of(peer, &producer.key).is_some()
        {
            return None;
        }
        let (key, kind, codec) = (producer.key.clone(), producer.kind, producer.codec.clone());
        self.next_ssrc = self.next_ssrc.wrapping_add(0x9e37_79b9);
        let ssrc = self.next_ssrc;
        let cid = self.router.next_consumer_id();
        let peer = self.peers.get_mut(&subscriber)?;
        let (mime, clock_rate) = (codec.mime_type.clone(), codec.clock_rate);
        let media = MediaStreamTrack::new(
            key.msid_stream(),
            key.msid_track(),
            key.track.to_string(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let (sender_id, new_section) = match peer::add_sending_track(
            &mut peer.pc,
            media,
            key.msid_stream(),
        ) {
            Ok(added) => added,
            Err(e) => {
                tracing::warn!(subscriber = %subscriber, track = %key, error = %e, "cannot add a consumer track");
                return None;
            }
        };
        peer.consumers.push(cid);
        peer.renegotiate = true;
        let sink = Sink::Peer(PeerSink::new(subscriber, sender_id, ssrc, mime));
        self.router
            .consumers
            .insert(cid, Consumer::new(cid, pid, key, sink, clock_rate, Some(0)));
        if let Some(p) = self.router.producers.get_mut(&pid) {
            p.consumers.push(cid);
        }
        self.touch(subscriber);
        Some(new_section)
    }

    /// Removes a consumer: from its producer, and its track from its subscriber's connection
    /// (a server offer follows), or, for an in-process consumer, with a
    /// [`LocalItem::TrackRemoved`].
    pub(crate) fn disconnect(&mut self, cid: ConsumerId) {
        let Some(consumer) = self.router.consumers.remove(&cid) else {
            return;
        };
        if let Some(p) = self.router.producers.get_mut(&consumer.producer) {
            p.consumers.retain(|c| *c != cid);
        }
        match consumer.sink {
            Sink::Peer(sink) => {
                if let Some(peer) = self.peers.get_mut(&sink.peer) {
                    peer.consumers.retain(|c| *c != cid);
                    let _ = peer.pc.remove_track(sink.sender_id);
                    peer.renegotiate = true;
                }
                self.touch(sink.peer);
            }
            Sink::Local(id) => self.outputs.push_back(Output::Local {
                consumer: id,
                item: LocalItem::TrackRemoved {
                    track: consumer.source,
                },
            }),
        }
    }

    /// Registers a producer (local or piped) and connects everyone in its room on this shard to
    /// it: members, and in-process consumers for a local one.
    fn add_producer(&mut self, producer: Producer, now: Instant) {
        let (pid, room, key, origin) = (
            producer.id,
            producer.room.clone(),
            producer.key.clone(),
            producer.origin,
        );
        self.router.by_track.insert(key.clone(), pid);
        self.router.producers.insert(pid, producer);
        let r = self.router.rooms.entry(room).or_default();
        r.producers.push(pid);
        let (members, locals) = (r.members.clone(), r.locals.clone());
        for member in members {
            self.connect(pid, member);
        }
        if matches!(origin, Origin::Local { .. }) {
            for (local, max_layer) in locals {
                self.connect_local(pid, local, max_layer, now);
            }
        }
    }

    /// A track a peer of this shard started publishing.
    fn add_local_producer(&mut self, id: PeerId, opened: Opened, now: Instant) {
        let Opened {
            track,
            receiver,
            kind,
            ssrc,
            layer,
        } = opened;
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let room = peer.room.clone();
        let codec = match kind {
            RtpCodecKind::Audio => peer::opus(),
            _ => peer::vp8(),
        };
        let pid = self.router.next_producer_id();
        let key = TrackKey::new(id, track.as_str());
        let mut producer = Producer::new(
            pid,
            key.clone(),
            room.clone(),
            kind,
            codec.clone(),
            Origin::Local { receiver },
        );
        producer.ssrcs.push((ssrc, layer));
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.producers.push((TrackId::from(track), pid));
        }
        self.add_producer(producer, now);
        let links = self
            .router
            .rooms
            .get(&room)
            .map(|r| r.links.clone())
            .unwrap_or_default();
        self.pipe_track(&room, &links, &key, kind, &codec);
        self.emit(SfuEvent::TrackPublished {
            peer: id,
            track: key.track,
            video: kind == RtpCodecKind::Video,
        });
    }

    /// A track published on another shard: this shard's members of the room get consumers.
    fn add_piped_producer(
        &mut self,
        room: RoomId,
        origin: usize,
        key: TrackKey,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        now: Instant,
    ) {
        if self.router.by_track.contains_key(&key) {
            return;
        }
        let pid = self.router.next_producer_id();
        let producer = Producer::new(pid, key, room, kind, codec, Origin::Piped { shard: origin });
        self.add_producer(producer, now);
    }

    /// Ends a producer: its consumers go, and for a local one the room's other shards and the
    /// SFU's user are told ([`SfuEvent::TrackUnpublished`]).
    fn remove_producer(&mut self, pid: ProducerId) {
        let Some(producer) = self.router.producers.get(&pid) else {
            return;
        };
        let consumers = producer.consumers.clone();
        for cid in consumers {
            self.disconnect(cid);
        }
        let Some(producer) = self.router.producers.remove(&pid) else {
            return;
        };
        self.router.by_track.remove(&producer.key);
        let links = match self.router.rooms.get_mut(&producer.room) {
            Some(r) => {
                r.producers.retain(|p| *p != pid);
                r.links.clone()
            }
            None => Vec::new(),
        };
        if let Some(peer) = self.peers.get_mut(&producer.key.peer) {
            peer.producers.retain(|(_, p)| *p != pid);
        }
        if matches!(producer.origin, Origin::Local { .. }) {
            for shard in links {
                self.outputs.push_back(Output::ToShard {
                    shard,
                    message: ShardMessage::Untrack {
                        key: producer.key.clone(),
                    },
                });
            }
            self.emit(SfuEvent::TrackUnpublished {
                peer: producer.key.peer,
                track: producer.key.track.clone(),
            });
        }
        self.prune_room(&producer.room);
    }

    /// Tells `shards` that `key` is published in `room` here.
    fn pipe_track(
        &mut self,
        room: &RoomId,
        shards: &[usize],
        key: &TrackKey,
        kind: RtpCodecKind,
        codec: &RTCRtpCodec,
    ) {
        for &shard in shards {
            self.outputs.push_back(Output::ToShard {
                shard,
                message: ShardMessage::Track {
                    room: room.clone(),
                    origin: self.config.index,
                    key: key.clone(),
                    kind,
                    codec: codec.clone(),
                },
            });
        }
    }

    /// The set of shards hosting `room` changed. Tracks published here go to the shards that are
    /// new to it; a shard that left the room forgets what was piped to it.
    pub(crate) fn link_room(&mut self, room: RoomId, shards: &[usize]) {
        self.scope = Some(room.clone());
        if !shards.contains(&self.config.index) {
            let piped: Vec<ProducerId> = match self.router.rooms.get_mut(&room) {
                Some(r) => {
                    r.links.clear();
                    r.producers.clone()
                }
                None => return,
            };
            for pid in piped {
                if self
                    .router
                    .producers
                    .get(&pid)
                    .is_some_and(|p| matches!(p.origin, Origin::Piped { .. }))
                {
                    self.remove_producer(pid);
                }
            }
            self.prune_room(&room);
            return;
        }
        let index = self.config.index;
        let r = self.router.rooms.entry(room.clone()).or_default();
        let links: Vec<usize> = shards.iter().copied().filter(|s| *s != index).collect();
        let new: Vec<usize> = links
            .iter()
            .copied()
            .filter(|s| !r.links.contains(s))
            .collect();
        r.links = links;
        let local: Vec<(TrackKey, RtpCodecKind, RTCRtpCodec)> = r
            .producers
            .iter()
            .filter_map(|pid| self.router.producers.get(pid))
            .filter(|p| matches!(p.origin, Origin::Local { .. }))
            .map(|p| (p.key.clone(), p.kind, p.codec.clone()))
            .collect();
        for (key, kind, codec) in local {
            self.pipe_track(&room, &new, &key, kind, &codec);
        }
    }

    /// Gives `subscriber` `source` again after it unsubscribed.
    fn subscribe(&mut self, subscriber: PeerId, source: &TrackKey) {
        if let Some(&pid) = self.router.by_track.get(source) {
            self.connect(pid, subscriber);
        }
    }

    /// Changes one of a subscriber's consumers.
    fn change_consumer(
        &mut self,
        subscriber: PeerId,
        source: TrackKey,
        change: ConsumerChange,
        now: Instant,
    ) {
        self.scope_peer(subscriber);
        if let ConsumerChange::Subscribe(true) = change {
            self.subscribe(subscriber, &source);
            return;
        }
        let Some(cid) = self
            .peers
            .get(&subscriber)
            .and_then(|p| self.router.consumer_of(p, &source))
        else {
            return;
        };
        let Some(c) = self.router.consumers.get_mut(&cid) else {
            return;
        };
        match change {
            ConsumerChange::Subscribe(_) => {
                self.disconnect(cid);
                return;
            }
            ConsumerChange::Pause(paused) => {
                c.preference_changed |= c.paused != paused;
                c.paused = paused;
            }
            ConsumerChange::PreferredLayer(layer) => {
                c.preference_changed |= c.preferred != layer;
                c.preferred = layer;
            }
            ConsumerChange::Priority(priority) => c.priority = priority,
            ConsumerChange::MaxTemporal(max) => {
                c.forwarder.set_max_temporal(max);
                return;
            }
        }
        self.reallocate(subscriber, now);
    }

    /// Pauses, resumes or closes a producer of this shard, by the server.
    fn change_producer(&mut self, source: TrackKey, change: ProducerChange, now: Instant) {
        let Some(&pid) = self.router.by_track.get(&source) else {
            return;
        };
        let Some(producer) = self.router.producers.get_mut(&pid) else {
            return;
        };
        if !matches!(producer.origin, Origin::Local { .. }) {
            return;
        }
        self.scope = Some(producer.room.clone());
        match change {
            ProducerChange::Close => self.remove_producer(pid),
            ProducerChange::Pause(paused) => {
                if producer.paused == paused {
                    return;
                }
                producer.paused = paused;
                // Each consumer goes on from where it was at the next keyframe after resuming.
                for cid in producer.consumers.clone() {
                    if let Some(c) = self.router.consumers.get_mut(&cid) {
                        c.forwarder.reset_source();
                    }
                }
                if !paused {
                    self.request_all_keyframes(pid, now);
                }
                self.emit(SfuEvent::ProducerPaused {
                    peer: source.peer,
                    track: source.track,
                    paused,
                });
            }
        }
    }

    /// An in-process consumer of `room`: connected to every track published in it on this
    /// shard, now and later.
    pub(crate) fn add_local(
        &mut self,
        room: RoomId,
        id: LocalConsumerId,
        max_layer: u8,
        now: Instant,
    ) {
        self.scope = Some(room.clone());
        let r = self.router.rooms.entry(room).or_default();
        r.locals.push((id, max_layer));
        let producers = r.producers.clone();
        for pid in producers {
            if self
                .router
                .producers
                .get(&pid)
                .is_some_and(|p| matches!(p.origin, Origin::Local { .. }))
            {
                self.connect_local(pid, id, max_layer, now);
            }
        }
    }

    /// Forgets an in-process consumer (its reader is gone).
    pub(crate) fn remove_local(&mut self, id: LocalConsumerId) {
        let consumers: Vec<ConsumerId> = self
            .router
            .consumers
            .values()
            .filter(|c| matches!(c.sink, Sink::Local(l) if l == id))
            .map(|c| c.id)
            .collect();
        for cid in consumers {
            self.disconnect(cid);
        }
        let rooms: Vec<RoomId> = self.router.rooms.keys().cloned().collect();
        for room in rooms {
            if let Some(r) = self.router.rooms.get_mut(&room) {
                r.locals.retain(|(l, _)| *l != id);
            }
            self.prune_room(&room);
        }
    }

    /// Connects an in-process consumer to a local producer: it is told of the track, and its
    /// packets follow from a keyframe of the chosen layer.
    fn connect_local(
        &mut self,
        pid: ProducerId,
        local: LocalConsumerId,
        max_layer: u8,
        now: Instant,
    ) {
        let cid = self.router.next_consumer_id();
        let Some(producer) = self.router.producers.get(&pid) else {
            return;
        };
        let video = producer.video();
        let layer = if video {
            max_layer.min(producer.highest_layer(now))
        } else {
            0
        };
        let item = LocalItem::TrackAdded {
            track: producer.key.clone(),
            video,
            mime: producer.codec.mime_type.clone(),
            payload_type: if video {
                peer::VP8_PAYLOAD_TYPE
            } else {
                peer::OPUS_PAYLOAD_TYPE
            },
            clock_rate: producer.codec.clock_rate,
            publisher: producer.key.peer,
        };
        let consumer = Consumer::new(
            cid,
            pid,
            producer.key.clone(),
            Sink::Local(local),
            producer.codec.clock_rate,
            Some(layer),
        );
        self.outputs.push_back(Output::Local {
            consumer: local,
            item,
        });
        self.router.consumers.insert(cid, consumer);
        if let Some(p) = self.router.producers.get_mut(&pid) {
            p.consumers.push(cid);
        }
        if video {
            self.request_keyframe(pid, layer, now);
        }
    }

    // ----- Media -----

    /// Asks the publisher of `pid` for a keyframe of `layer`, at most once per 500 ms per layer
    /// (retried until it arrives); through its shard when it is on another.
    fn request_keyframe(&mut self, pid: ProducerId, layer: u8, now: Instant) {
        if self
            .router
            .producers
            .get_mut(&pid)
            .is_some_and(|p| p.keyframes[usize::from(layer.min(2))].request(now))
        {
            self.send_keyframe_request(pid, layer, now);
        }
    }

    /// Asks for a keyframe of every layer `pid` has (a request by the SFU's user, a resume).
    fn request_all_keyframes(&mut self, pid: ProducerId, now: Instant) {
        let layers: Vec<u8> = match self.router.producers.get(&pid) {
            Some(p) => p.layers().collect(),
            None => return,
        };
        for layer in layers {
            self.request_keyframe(pid, layer, now);
        }
    }

    /// Sends a keyframe request for `pid`'s `layer` now: a PLI on that layer's stream (every
    /// stream when the layers are not known), or a message to its publisher's shard.
    fn send_keyframe_request(&mut self, pid: ProducerId, layer: u8, now: Instant) {
        let Some(producer) = self.router.producers.get(&pid) else {
            return;
        };
        match producer.origin {
            Origin::Piped { shard } => self.outputs.push_back(Output::ToShard {
                shard,
                message: ShardMessage::Keyframe {
                    key: producer.key.clone(),
                    layer,
                },
            }),
            Origin::Local { receiver } => {
                let publisher = producer.key.peer;
                let Some(peer) = self.peers.get_mut(&publisher) else {
                    return;
                };
                let of_layer = producer.ssrcs.iter().any(|(_, l)| *l == layer);
                if let Some(mut receiver) = peer.pc.rtp_receiver(receiver) {
                    for (ssrc, _) in producer
                        .ssrcs
                        .iter()
                        .filter(|(_, l)| !of_layer || *l == layer)
                    {
                        let pli = PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc: *ssrc,
                        };
                        if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                            self.counters.keyframe_requests_sent += 1;
                        }
                    }
                }
                self.touch(publisher);
            }
        }
    }

    fn process_events(&mut self, now: Instant) {
        let ids = self.touched_snapshot();
        let mut gone = Vec::new();
        let mut opened = Vec::new();
        for &id in &ids {
            self.scope_peer(id);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            while let Some(event) = peer.pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                        RTCPeerConnectionState::Connected => {
                            peer.connected = true;
                            self.outputs
                                .push_back(Output::Event(SfuEvent::PeerConnected { peer: id }));
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            gone.push(id)
                        }
                        _ => {}
                    },
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        // Only a peer with the publish right gets a producer (its RTP is refused
                        // on arrival otherwise; this holds for what `rtc` had queued).
                        if !peer.rights.publish {
                            continue;
                        }
                        let layer = peer::simulcast_layer(init.rid.as_deref());
                        let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
                            continue;
                        };
                        let kind = receiver.track().kind();
                        opened.push((
                            id,
                            Opened {
                                track: init.track_id,
                                receiver: init.receiver_id,
                                kind,
                                ssrc: init.ssrc,
                                layer,
                            },
                        ));
                    }
                    _ => {}
                }
            }
        }
        self.scratch_ids = ids;
        for (id, opened) in opened {
            let known = self
                .peers
                .get(&id)
                .and_then(|p| {
                    p.producers
                        .iter()
                        .find(|(t, _)| *t == *opened.track.as_str())
                })
                .map(|(_, pid)| *pid);
            match known {
                // Another simulcast stream of a track already published, or one `rtc` bound
                // again after a renegotiation.
                Some(pid) => {
                    if let Some(p) = self.router.producers.get_mut(&pid)
                        && !p.ssrcs.contains(&(opened.ssrc, opened.layer))
                    {
                        p.ssrcs.push((opened.ssrc, opened.layer));
                    }
                }
                None => self.add_local_producer(id, opened, now),
            }
        }
        for id in gone {
            self.remove_peer(id);
        }
    }

    fn process_reads(&mut self, now: Instant) {
        let mut media = std::mem::take(&mut self.scratch_media);
        let mut notes = std::mem::take(&mut self.notes);
        let mut estimates: Vec<PeerId> = Vec::new();
        let mut results: Vec<PacketResult> = Vec::new();
        let mut nacks: Vec<(ConsumerId, Vec<u16>)> = Vec::new();
        let mut reports: Vec<(ProducerId, u32, u64, u32)> = Vec::new();
        // Keyframes subscribers asked for (PLI, FIR).
        let mut asked: Vec<(ProducerId, u8)> = Vec::new();
        let ids = self.touched_snapshot();
        for &id in &ids {
            self.scope_peer(id);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(track, packet) => media.push((id, track, packet)),
                    RTCMessage::RtcpPacket(_, packets) => {
                        for p in &packets {
                            let any = p.as_any();
                            if let Some(feedback) = any.downcast_ref::<TransportLayerCc>() {
                                results.clear();
                                results.extend(
                                    rtc::interceptor::convert_twcc(feedback)
                                        .into_iter()
                                        .filter(|a| !a.arrived || a.arrival.is_some())
                                        .map(|a| PacketResult {
                                            transport_seq: a.sequence_number,
                                            arrival_us: a.arrival.map(|d| d.as_micros() as i64),
                                        }),
                                );
                                peer.bwe.on_feedback(&results, now);
                                peer.feedback_seen = true;
                                peer.fresh_feedback = true;
                                if !estimates.contains(&id) {
                                    estimates.push(id);
                                }
                                continue;
                            }
                            if let Some(report) = any.downcast_ref::<SenderReport>() {
                                if let Some(pid) =
                                    peer.producers.iter().map(|(_, p)| *p).find(|p| {
                                        self.router.producers.get(p).is_some_and(|p| {
                                            p.ssrcs.iter().any(|(s, _)| *s == report.ssrc)
                                        })
                                    })
                                {
                                    reports.push((
                                        pid,
                                        report.ssrc,
                                        report.ntp_time,
                                        report.rtp_time,
                                    ));
                                }
                                continue;
                            }
                            let (media_ssrc, lost) = if let Some(pli) =
                                any.downcast_ref::<PictureLossIndication>()
                            {
                                (Some(pli.media_ssrc), None)
                            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                                (fir.fir.first().map(|e| e.ssrc), None)
                            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                                let mut seqs = Vec::new();
                                retransmit::nacked(
                                    nack.nacks.iter().map(|n| (n.packet_id, n.lost_packets)),
                                    &mut seqs,
                                );
                                (Some(nack.media_ssrc), Some(seqs))
                            } else {
                                (None, None)
                            };
                            let Some(ssrc) = media_ssrc else { continue };
                            let consumer = peer.consumers.iter().copied().find(|c| {
                                self.router.consumers.get(c).is_some_and(
                                    |c| matches!(&c.sink, Sink::Peer(s) if s.ssrc == ssrc),
                                )
                            });
                            let Some(cid) = consumer else { continue };
                            match lost {
                                Some(seqs) => nacks.push((cid, seqs)),
                                None => {
                                    // The subscriber lost its picture: a keyframe of the layer
                                    // it gets (or is switching to).
                                    if let Some(c) = self.router.consumers.get(&cid)
                                        && let Some(layer) = c
                                            .forwarder
                                            .keyframe_needed()
                                            .or(c.forwarder.current_layer())
                                    {
                                        asked.push((c.producer, layer));
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.scratch_ids = ids;
        for id in estimates {
            self.scope_peer(id);
            self.reallocate(id, now);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let bps = peer.bwe.estimate_bps();
            let moved = peer
                .reported_bps
                .is_none_or(|r| (bps as f64 - r as f64).abs() >= BWE_EVENT_CHANGE * r as f64);
            if moved {
                peer.reported_bps = Some(bps);
                tracing::debug!(
                    peer = %id,
                    bps,
                    delivered_bps = ?peer.bwe.delivered_bps(),
                    usage = ?peer.bwe.usage(),
                    threshold = peer.bwe.threshold(),
                    "bandwidth estimate moved"
                );
                self.emit(SfuEvent::BandwidthEstimate { peer: id, bps });
            }
        }
        for (cid, seqs) in nacks {
            self.retransmit(cid, &seqs, now);
        }
        asked.sort_unstable();
        asked.dedup();
        for (pid, layer) in asked {
            self.request_keyframe(pid, layer, now);
        }
        for (pid, ssrc, ntp_time, rtp_time) in reports {
            self.report_to_locals(pid, ssrc, ntp_time, rtp_time);
        }
        for (source, track, packet) in media.drain(..) {
            self.counters.rtp_in += 1;
            self.forward(source, &track, packet, now, &mut notes);
        }
        self.scratch_media = media;
        self.finish_round(notes, now);
    }

    /// After a batch of packets: layer change events out, wanted keyframes asked for.
    fn finish_round(&mut self, mut notes: RoundNotes, now: Instant) {
        for event in notes.events.drain(..) {
            if let SfuEvent::LayerChanged {
                subscriber,
                source,
                track,
                layer,
            } = &event
            {
                self.counters.layer_switches += 1;
                tracing::debug!(%subscriber, %source, %track, ?layer, "layer changed");
            }
            self.emit(event);
        }
        notes.keyframes.sort_unstable();
        notes.keyframes.dedup();
        for (pid, layer) in notes.keyframes.drain(..) {
            // Only if still wanted: the keyframe may have come later in the same batch.
            let wanted = self.router.producers.get(&pid).is_some_and(|p| {
                p.consumers.iter().any(|c| {
                    self.router
                        .consumers
                        .get(c)
                        .is_some_and(|c| c.forwarder.keyframe_needed() == Some(layer))
                })
            });
            if wanted {
                self.request_keyframe(pid, layer, now);
            }
        }
        // Its lists, empty, serve the next round (no allocation per round).
        self.notes = notes;
    }

    /// Sends again what a subscriber reported lost, from its producer's recent packets, with
    /// the rewrite it had and a fresh transport-wide sequence number.
    fn retransmit(&mut self, cid: ConsumerId, seqs: &[u16], now: Instant) {
        let Router {
            consumers,
            producers,
            ..
        } = &mut self.router;
        let Some(c) = consumers.get_mut(&cid) else {
            return;
        };
        let Some(producer) = producers.get(&c.producer) else {
            return;
        };
        let Sink::Peer(sink) = &mut c.sink else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&sink.peer) else {
            return;
        };
        let extensions = producer
            .extensions
            .clone()
            .unwrap_or_else(|| Vec::new().into());
        for &seq in seqs {
            let packet = sink.sent.find(seq).and_then(|sent| {
                Some((sent, producer.recall(sent.layer, sent.input_sequence, now)?))
            });
            let Some((sent, packet)) = packet else {
                self.counters.nacks_unanswered += 1;
                tracing::trace!(
                    consumer = ?cid,
                    seq,
                    sent = ?sink.sent.find(seq).map(|s| s.input_sequence),
                    "NACK not answered (never sent, or no longer kept)"
                );
                continue;
            };
            let info = vp8::parse(&packet.payload).ok();
            if consumer::write(
                sink,
                peer,
                &mut self.media_out,
                packet,
                info.as_ref(),
                &extensions,
                sent.rewrite,
                now,
            )
            .is_ok()
            {
                self.counters.rtp_retransmitted += 1;
                c.retransmitted += 1;
                c.packets += 1;
            }
        }
    }

    /// A publisher's sender report, for the in-process consumers forwarding that stream's layer:
    /// its RTP time moved onto their output timeline.
    fn report_to_locals(&mut self, pid: ProducerId, ssrc: u32, ntp_time: u64, rtp_time: u32) {
        let Some(producer) = self.router.producers.get(&pid) else {
            return;
        };
        let layer = producer.layer_of(ssrc);
        for cid in &producer.consumers {
            let Some(c) = self.router.consumers.get(cid) else {
                continue;
            };
            let Sink::Local(local) = c.sink else { continue };
            if c.forwarder.current_layer() != Some(layer) {
                continue;
            }
            let Some(offset) = c.forwarder.timestamp_offset() else {
                continue;
            };
            self.outputs.push_back(Output::Local {
                consumer: local,
                item: LocalItem::SenderReport {
                    track: producer.key.clone(),
                    ntp_time,
                    rtp_time: rtp_time.wrapping_add(offset),
                },
            });
        }
    }

    /// A packet a local publisher sent: to the room's other shards, then to its consumers here.
    fn forward(
        &mut self,
        source: PeerId,
        track: &str,
        packet: rtp::Packet,
        now: Instant,
        notes: &mut RoundNotes,
    ) {
        self.scope_peer(source);
        let Engine {
            peers,
            router,
            counters,
            outputs,
            outbox,
            throttles,
            media_out,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&source) else {
            return;
        };
        let Some(pid) = peer
            .producers
            .iter()
            .find(|(t, _)| *t == *track)
            .map(|(_, p)| *p)
        else {
            // A track closed by the server (or when the right to publish was revoked).
            counters.rtp_refused += 1;
            return;
        };
        let Router {
            producers,
            consumers,
            rooms,
            ..
        } = router;
        let Some(producer) = producers.get_mut(&pid) else {
            return;
        };
        if producer.paused {
            counters.rtp_paused += 1;
            return;
        }
        let layer = producer.layer_of(packet.header.ssrc);
        let vp8 = if producer.video() {
            vp8::parse(&packet.payload).ok()
        } else {
            None
        };
        let (keyframe, temporal_id) = match (&vp8, producer.video()) {
            (Some(info), _) => (info.keyframe, info.temporal_id),
            (None, true) => (false, None),
            (None, false) => (true, None),
        };
        if keyframe && producer.video() {
            producer.on_keyframe(layer);
        }
        producer.count(layer, &packet, keyframe, now);
        if producer.extensions.is_none()
            && let Origin::Local { receiver } = producer.origin
            && let Some(mut receiver) = peer.pc.rtp_receiver(receiver)
        {
            let negotiated: Vec<(u8, String)> = receiver
                .get_parameters()
                .rtp_parameters
                .header_extensions
                .iter()
                .filter(|h| FORWARDED_EXTENSIONS.contains(&h.uri.as_str()))
                .filter_map(|h| u8::try_from(h.id).ok().map(|id| (id, h.uri.clone())))
                .collect();
            producer.audio_level_id = negotiated
                .iter()
                .find(|(_, u)| u == peer::AUDIO_LEVEL_URI)
                .map(|(id, _)| *id);
            producer.extensions = Some(negotiated.into());
        }
        let level = producer
            .audio_level_id
            .and_then(|id| packet.header.extensions.iter().find(|e| e.id == id))
            .and_then(|e| e.payload.first())
            .map(|b| b & 0x7f);
        let ingress = Ingress {
            info: PacketInfo {
                layer,
                sequence: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                keyframe,
                temporal_id,
                picture: vp8.as_ref().and_then(vp8::Vp8Info::picture),
            },
            video: producer.video(),
            vp8,
            level,
            extensions: producer
                .extensions
                .clone()
                .unwrap_or_else(|| Vec::new().into()),
        };
        let Some(room) = rooms.get_mut(&producer.room) else {
            return;
        };
        if let Some(level) = level {
            room.speakers.observe(source, level, now);
        }
        // The room's subscribers on other shards get it through their shard.
        for &link in &room.links {
            if let Some(out) = outbox.get_mut(link) {
                counters.rtp_piped += 1;
                out.push(PipedPacket {
                    key: producer.key.clone(),
                    packet: packet.clone(),
                    ingress: ingress.clone(),
                });
            }
        }
        router::route(
            producer,
            consumers,
            peers,
            media_out,
            &packet,
            &ingress,
            now,
            notes,
            outputs,
            counters,
            &mut throttles.write_failed,
        );
        producer.remember(layer, packet, now);
    }

    /// A packet another shard received for one of its producers, for this shard's consumers.
    fn receive_piped(&mut self, piped: PipedPacket, now: Instant, notes: &mut RoundNotes) {
        let Engine {
            peers,
            router,
            counters,
            outputs,
            throttles,
            scope,
            media_out,
            ..
        } = self;
        let Router {
            producers,
            consumers,
            rooms,
            by_track,
            ..
        } = router;
        let Some(producer) = by_track.get(&piped.key).and_then(|p| producers.get_mut(p)) else {
            return;
        };
        *scope = Some(producer.room.clone());
        let info = &piped.ingress.info;
        if info.keyframe && producer.video() {
            producer.on_keyframe(info.layer);
        }
        producer.count(info.layer, &piped.packet, info.keyframe, now);
        if producer.extensions.is_none() {
            producer.extensions = Some(piped.ingress.extensions.clone());
        }
        if let Some(level) = piped.ingress.level
            && let Some(room) = rooms.get_mut(&producer.room)
        {
            room.speakers.observe(piped.key.peer, level, now);
        }
        router::route(
            producer,
            consumers,
            peers,
            media_out,
            &piped.packet,
            &piped.ingress,
            now,
            notes,
            outputs,
            counters,
            &mut throttles.write_failed,
        );
        producer.remember(info.layer, piped.packet, now);
    }

    fn renegotiate(&mut self, now: Instant) {
        let ids = self.touched_snapshot();
        for &id in &ids {
            self.scope_peer(id);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            match peer.make_offer(now) {
                Ok(Some(sdp)) => self.emit(SfuEvent::Offer { peer: id, sdp }),
                Ok(None) => {}
                Err(e) => {
                    // Tried again on every round: counted each time, logged once.
                    self.counters.server_offer_errors += 1;
                    if !std::mem::replace(&mut peer.offer_failing, true) {
                        tracing::warn!(peer = %id, error = %e, "cannot create a renegotiation offer");
                    }
                }
            }
        }
        self.scratch_ids = ids;
    }

    // ----- Rooms -----

    /// Closes a room after a fault: every member is disconnected and forgotten.
    pub(crate) fn close_room(&mut self, room: &RoomId, reason: CloseReason) {
        let had = self.router.rooms.contains_key(room);
        self.close_room_quietly(room);
        let report = match reason {
            CloseReason::Requested => {
                had && home_shard(room.as_str(), self.config.shard_count) == self.config.index
            }
            _ => true,
        };
        if report {
            self.emit(SfuEvent::RoomClosed {
                room: room.clone(),
                reason,
            });
        }
    }

    /// Disconnects and forgets every member of `room` on this shard, what was piped to it, and
    /// its in-process consumers (their queues end).
    fn close_room_quietly(&mut self, room: &RoomId) {
        let members: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| &p.room == room)
            .map(|(id, _)| *id)
            .collect();
        for id in members {
            self.remove_peer(id);
        }
        let (producers, locals) = match self.router.rooms.get(room) {
            Some(r) => (r.producers.clone(), r.locals.clone()),
            None => return,
        };
        for pid in producers {
            self.remove_producer(pid);
        }
        for (local, _) in locals {
            self.remove_local(local);
            self.outputs.push_back(Output::LocalEnd { consumer: local });
        }
        self.router.rooms.remove(room);
    }

    /// What `id` publishes and receives now.
    pub(crate) fn stats(&self, id: PeerId) -> Option<PeerStats> {
        let p = self.peers.get(&id)?;
        Some(PeerStats {
            peer: id,
            room: p.room.clone(),
            shard: self.config.index,
            connected: p.connected,
            rights: p.rights,
            estimate_bps: p.feedback_seen.then(|| p.bwe.estimate_bps()),
            producers: p
                .producers
                .iter()
                .filter_map(|(_, pid)| self.router.producers.get(pid))
                .map(|x| ProducerStats {
                    track: x.key.track.clone(),
                    video: x.video(),
                    streams: x.ssrcs.clone(),
                    paused: x.paused,
                })
                .collect(),
            consumers: p
                .consumers
                .iter()
                .filter_map(|cid| self.router.consumers.get(cid))
                .filter_map(|c| {
                    let Sink::Peer(sink) = &c.sink else {
                        return None;
                    };
                    Some(ConsumerStats {
                        source: c.source.peer,
                        track: c.source.track.clone(),
                        ssrc: sink.ssrc,
                        current_layer: c.forwarder.current_layer(),
                        target_layer: c.forwarder.target_layer(),
                        preferred_layer: c.preferred,
                        packets: c.packets,
                        retransmitted: c.retransmitted,
                    })
                })
                .collect(),
        })
    }
}

/// Remembers that `id` is at `addr` (it was sent something there by its connection, which only
/// answers authenticated checks), forgetting its oldest address beyond the bound.
fn learn(
    by_addr: &mut HashMap<SocketAddr, PeerId>,
    id: PeerId,
    peer: &mut Peer,
    out: &rtc::shared::TaggedBytesMut,
) {
    let addr = out.transport.peer_addr;
    // Its DTLS and RTCP go over the selected candidate pair (answers to ICE checks may go
    // elsewhere): so does the media the SFU forwards to it.
    if !peer::is_stun(&out.message) {
        peer.media_to = Some((addr, out.transport.transport_protocol));
    }
    if let Some(forgotten) = peer.learn_address(addr)
        && by_addr.get(&forgotten) == Some(&id)
    {
        by_addr.remove(&forgotten);
    }
    by_addr.insert(addr, id);
}

/// How often each forwarded stream's sender report goes out (RFC 3550's interval is about 5 s
/// for a small session; browsers use about 1 s, which keeps lip sync fresh).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The NTP timestamp (RFC 5905: seconds since 1900, 32.32 fixed point) of `now`, from a known
/// pair of monotonic and wall-clock readings.
fn ntp_time(base: (Instant, std::time::SystemTime), now: Instant) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let wall = if now >= base.0 {
        base.1 + (now - base.0)
    } else {
        base.1 - (base.0 - now)
    };
    let since_unix = wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

fn config_shards(config: &EngineConfig) -> usize {
    config.shard_count.max(1)
}
