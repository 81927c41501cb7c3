//! A forwarding rig for the benchmarks (`benches/benches/forwarding.rs`): the production engine
//! with one publisher and N subscribers on an in-memory network (webrtc-rs peers from
//! `tests/support/memory.rs`, no sockets), fed one publisher datagram at a time. What
//! [`ForwardingRig::feed`] runs is what a shard runs per received packet: decrypt, route, decide,
//! rewrite, encrypt for each subscriber. Not part of the API (feature `bench-rig`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::TransportProtocol;

use crate::engine::pipe::ShardMessage;
use crate::engine::{Engine, EngineConfig, LocalItem, Output, PeerRights};
use crate::events::SfuEvent;
use crate::ids::{LocalConsumerId, PeerId, RoomId};

/// The in-memory webrtc-rs peers (shared with the engine's tests).
#[path = "../tests/support/memory.rs"]
#[allow(dead_code)]
pub(crate) mod memory;

use memory::{Endpoint, MemoryPeer};

/// An engine as an endpoint of the in-memory network, with what it produced (for the bench and
/// the engine's tests).
pub(crate) struct Node {
    pub(crate) engine: Engine,
    pub(crate) addr: SocketAddr,
    pub(crate) events: Vec<SfuEvent>,
    pub(crate) to_shards: Vec<(usize, ShardMessage)>,
    pub(crate) locals: Vec<(LocalConsumerId, LocalItem)>,
    /// The subscribers as the last review saw them.
    pub(crate) census: Vec<crate::stats::SubscriberStatus>,
    /// Forwarded media taken from the engine, not yet delivered.
    media: std::collections::VecDeque<(Vec<u8>, SocketAddr)>,
}

impl Node {
    /// Shard `index` of `shard_count`, at 10.0.0.(100 + index).
    pub(crate) fn new(index: usize, shard_count: usize) -> Node {
        let addr: SocketAddr = format!("10.0.0.{}:3478", 100 + index)
            .parse()
            .expect("an address");
        Node {
            engine: Engine::new(EngineConfig {
                index,
                shard_count,
                local_addr: addr,
                tcp_addr: None,
                ice_address: addr.ip(),
                ice_timeouts: (Duration::from_secs(5), Duration::from_secs(25)),
            }),
            addr,
            events: Vec::new(),
            to_shards: Vec::new(),
            locals: Vec::new(),
            census: Vec::new(),
            media: std::collections::VecDeque::new(),
        }
    }

    /// A round of the engine's work after an input, and its outputs collected.
    pub(crate) fn settle(&mut self, now: Instant) {
        self.engine.process(now);
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Event(e) => self.events.push(e),
                Output::ToShard { shard, message } => self.to_shards.push((shard, message)),
                Output::Local { consumer, item } => self.locals.push((consumer, item)),
                Output::Census(census) => self.census = census,
                Output::LocalEnd { .. } => {}
            }
        }
    }
}

impl Endpoint for Node {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        if let Some(t) = self.engine.poll_transmit() {
            return Some((t.data.to_vec(), t.to));
        }
        if self.media.is_empty() {
            let out = self.engine.media_out();
            for p in out.packets() {
                self.media.push_back((out.bytes(p).to_vec(), p.to));
            }
            out.clear();
        }
        self.media.pop_front()
    }
    fn handle_receive(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        self.engine
            .handle_datagram(data, from, TransportProtocol::UDP, now);
        self.settle(now);
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.engine.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.settle(now);
    }
}

/// One publisher (a 1200-byte VP8 packet per millisecond of fake time) and N subscribers.
pub struct ForwardingRig {
    node: Node,
    publisher: MemoryPeer,
    viewers: Vec<(PeerId, MemoryPeer)>,
    now: Instant,
    seq: u16,
}

impl ForwardingRig {
    /// Everyone joined and connected, media flowing to every subscriber.
    pub fn new(subscribers: usize) -> ForwardingRig {
        let now = Instant::now();
        let node = Node::new(0, 1);
        let mut publisher = MemoryPeer::new(
            "publisher",
            "10.0.1.1:5000".parse().expect("an address"),
            now,
        );
        publisher.add_send_video("cam", false);
        let mut rig = ForwardingRig {
            node,
            publisher,
            viewers: Vec::new(),
            now,
            seq: 0,
        };
        let offer = rig.publisher.create_offer(rig.now);
        let answer = rig
            .node
            .engine
            .join(
                RoomId::from("bench"),
                PeerId::from_u64(1),
                offer,
                PeerRights::PUBLISHER,
                rig.now,
            )
            .expect("the publisher joins");
        rig.node.settle(rig.now);
        rig.publisher
            .set_answer(&answer, rig.now)
            .expect("answer taken");
        for i in 0..subscribers {
            let addr: SocketAddr = format!("10.0.{}.{}:5000", 2 + i / 200, 1 + i % 200)
                .parse()
                .expect("an address");
            let mut viewer = MemoryPeer::new(&format!("viewer{i}"), addr, rig.now);
            viewer.add_recv_only(RtpCodecKind::Video);
            let offer = viewer.create_offer(rig.now);
            let id = PeerId::from_u64(2 + i as u64);
            let answer = rig
                .node
                .engine
                .join(
                    RoomId::from("bench"),
                    id,
                    offer,
                    PeerRights::VIEWER,
                    rig.now,
                )
                .expect("a viewer joins");
            rig.node.settle(rig.now);
            viewer.set_answer(&answer, rig.now).expect("answer taken");
            rig.viewers.push((id, viewer));
        }
        for _ in 0..400 {
            rig.maintain();
            let packets = rig.prepare();
            rig.feed(&packets);
        }
        rig
    }

    /// Lets everything that is due happen at the current fake time: datagrams both ways, timers,
    /// server offers answered (consent checks and feedback keep the connections alive). Call it
    /// every few hundred packets, outside what is measured.
    pub fn maintain(&mut self) {
        self.now += Duration::from_millis(1);
        for _ in 0..8 {
            let mut endpoints: Vec<&mut dyn Endpoint> = vec![&mut self.node, &mut self.publisher];
            for (_, v) in &mut self.viewers {
                endpoints.push(v);
            }
            let moved = memory::pump_all(&mut endpoints, self.now);
            let offers: Vec<(PeerId, String)> = std::mem::take(&mut self.node.events)
                .into_iter()
                .filter_map(|e| match e {
                    SfuEvent::Offer { peer, sdp } => Some((peer, sdp)),
                    _ => None,
                })
                .collect();
            self.node.locals.clear();
            self.node.to_shards.clear();
            let answered = !offers.is_empty();
            for (peer, sdp) in offers {
                if let Some((_, v)) = self.viewers.iter_mut().find(|(id, _)| *id == peer)
                    && let Ok(answer) = v.accept_offer(&sdp, self.now)
                {
                    let _ = self.node.engine.answer(peer, answer, self.now);
                    self.node.settle(self.now);
                }
            }
            if moved == 0 && !answered {
                break;
            }
        }
        for (_, v) in &mut self.viewers {
            v.take_received();
            v.take_rtcp();
        }
        self.publisher.take_rtcp();
    }

    /// The publisher's next packet as the datagrams it sends to the SFU (a keyframe every 100).
    pub fn prepare(&mut self) -> Vec<Vec<u8>> {
        self.now += Duration::from_millis(1);
        self.seq = self.seq.wrapping_add(1);
        let packet = memory::vp8_packet(
            self.seq.is_multiple_of(100),
            self.seq,
            u32::from(self.seq) * 90,
            self.seq,
            1150,
        );
        let _ = self.publisher.send_rtp("cam", None, packet, self.now);
        let mut out = Vec::new();
        while let Some((data, to)) = self.publisher.poll_transmit() {
            if to == self.node.addr {
                out.push(data);
            }
        }
        out
    }

    /// The engine's work for `datagrams` (from [`ForwardingRig::prepare`]): receive, route,
    /// write to every subscriber, and the datagrams it sends; returns how many it sent.
    pub fn feed(&mut self, datagrams: &[Vec<u8>]) -> usize {
        let from = self.publisher.addr();
        for d in datagrams {
            self.node
                .engine
                .handle_datagram(d, from, TransportProtocol::UDP, self.now);
        }
        self.node.settle(self.now);
        let mut sent = 0;
        while self.node.engine.poll_transmit().is_some() {
            sent += 1;
        }
        let media = self.node.engine.media_out();
        sent += media.packets().len();
        media.clear();
        sent
    }

    /// Packets the engine forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.node.engine.counters.rtp_forwarded
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rig_forwards_every_packet_to_every_subscriber() {
        let mut rig = super::ForwardingRig::new(3);
        let before = rig.forwarded();
        for _ in 0..10 {
            let packets = rig.prepare();
            rig.feed(&packets);
        }
        assert_eq!(rig.forwarded() - before, 30);
    }
}
