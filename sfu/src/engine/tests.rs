//! The engine driven without sockets or wall clock: in-memory webrtc-rs peers
//! (`tests/support/memory.rs`, browsers' stand-ins) exchange datagrams with one or two engines,
//! and the test moves a fake clock. Deterministic: nothing here waits on real time. The place
//! where SFU behaviour is pinned down; the real-socket tests (`sfu/tests`) prove the shard.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::TransportProtocol;

use super::command::{Command, ConsumerChange, ProducerChange};
use super::{LocalItem, PeerRights};
use crate::events::{CloseReason, SfuEvent};
use crate::ids::{LocalConsumerId, PeerId, RoomId, TrackKey};

use crate::bench::Node;
use crate::bench::memory::{self, Endpoint, MemoryPeer, Received};

const ROOM: &str = "room";

/// One shard's engine on the in-memory network.
type Shard = Node;

impl Node {
    fn command(&mut self, command: Command, now: Instant) {
        self.engine.handle_command(command, now);
        self.settle(now);
    }

    fn offers_for(&self, peer: PeerId) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, SfuEvent::Offer { peer: p, .. } if *p == peer))
            .count()
    }
}

/// A client and the peer id it joined as.
struct Client {
    peer: MemoryPeer,
    id: PeerId,
    received: Vec<Received>,
}

/// Engines and clients on one in-memory network, with a fake clock.
struct World {
    now: Instant,
    shards: Vec<Shard>,
    clients: Vec<Client>,
    next_id: u64,
    /// Server offers of each shard answered so far.
    answered: Vec<usize>,
}

impl World {
    fn new(shards: usize) -> World {
        World {
            now: Instant::now(),
            shards: (0..shards).map(|i| Shard::new(i, shards)).collect(),
            clients: Vec::new(),
            next_id: 1,
            answered: vec![0; shards],
        }
    }

    /// Moves the clock by `ms` and lets everything that is due happen: datagrams, timers, pipe
    /// messages between shards, server offers answered by their clients.
    fn step(&mut self, ms: u64) {
        self.step_filtered(ms, |_| true);
    }

    fn step_filtered(&mut self, ms: u64, mut keep: impl FnMut(&memory::Datagram) -> bool) {
        self.now += Duration::from_millis(ms);
        let now = self.now;
        for _ in 0..20 {
            let mut endpoints: Vec<&mut dyn Endpoint> = Vec::new();
            for s in &mut self.shards {
                endpoints.push(s);
            }
            for c in &mut self.clients {
                endpoints.push(&mut c.peer);
            }
            let moved = memory::pump_filtered(&mut endpoints, now, &mut keep);
            let piped = self.deliver_pipes();
            let answered = self.answer_offers();
            if moved == 0 && !piped && !answered {
                break;
            }
        }
        for c in &mut self.clients {
            c.received.extend(c.peer.take_received());
        }
    }

    fn deliver_pipes(&mut self) -> bool {
        let mut any = false;
        for from in 0..self.shards.len() {
            let messages = std::mem::take(&mut self.shards[from].to_shards);
            for (to, message) in messages {
                any = true;
                let shard = &mut self.shards[to];
                shard.engine.handle_shard_message(message, self.now);
                shard.settle(self.now);
            }
        }
        any
    }

    /// Server offers not answered yet, answered by their clients (each once; they stay in the
    /// event log, where tests count them).
    fn answer_offers(&mut self) -> bool {
        let mut any = false;
        for s in 0..self.shards.len() {
            let offers: Vec<(PeerId, String)> = self.shards[s]
                .events
                .iter()
                .filter_map(|e| match e {
                    SfuEvent::Offer { peer, sdp } => Some((*peer, sdp.clone())),
                    _ => None,
                })
                .skip(self.answered[s])
                .collect();
            for (peer, sdp) in offers {
                any = true;
                self.answered[s] += 1;
                let Some(c) = self.clients.iter_mut().find(|c| c.id == peer) else {
                    continue;
                };
                let answer = c
                    .peer
                    .accept_offer(&sdp, self.now)
                    .expect("the client answers");
                let shard = &mut self.shards[s];
                shard
                    .engine
                    .answer(peer, answer, self.now)
                    .expect("the answer is taken");
                shard.settle(self.now);
            }
        }
        any
    }

    /// A client joins `shard` with `peer`'s offer and the given rights, and connects.
    fn join(&mut self, mut peer: MemoryPeer, shard: usize, rights: PeerRights) -> usize {
        let id = PeerId::from_u64(self.next_id);
        self.next_id += 1;
        let offer = peer.create_offer(self.now);
        let s = &mut self.shards[shard];
        let answer = s
            .engine
            .join(RoomId::from(ROOM), id, offer, rights, self.now)
            .expect("the offer joins");
        s.settle(self.now);
        peer.set_answer(&answer, self.now)
            .expect("the answer is taken");
        self.clients.push(Client {
            peer,
            id,
            received: Vec::new(),
        });
        let index = self.clients.len() - 1;
        for _ in 0..200 {
            if self.clients[index].peer.connected() {
                return index;
            }
            self.step(5);
        }
        panic!("client {index} did not connect");
    }

    fn client(&mut self, name: &str) -> MemoryPeer {
        let n = self.clients.len() + 1;
        let addr: SocketAddr = format!("10.0.1.{n}:5000").parse().unwrap();
        MemoryPeer::new(name, addr, self.now)
    }

    /// A publisher of a camera (`simulcast`: three layers) and a microphone.
    fn publisher(&mut self, shard: usize, simulcast: bool) -> usize {
        let mut peer = self.client("publisher");
        peer.add_send_video("cam", simulcast);
        peer.add_send_audio("mic");
        self.join(peer, shard, PeerRights::PUBLISHER)
    }

    /// A viewer that offers to receive one audio and one video track.
    fn viewer(&mut self, shard: usize) -> usize {
        let mut peer = self.client("viewer");
        peer.add_recv_only(RtpCodecKind::Audio);
        peer.add_recv_only(RtpCodecKind::Video);
        self.join(peer, shard, PeerRights::VIEWER)
    }

    /// Sends one video packet of `rid` (or the only layer) and one audio packet from `client`,
    /// then a step of 20 ms. Layers are told apart by payload size (100 + 100 x layer bytes).
    fn send(&mut self, client: usize, rid: Option<&str>, seq: u16, keyframe: bool) {
        let layer = match rid {
            Some("h") => 1,
            Some("f") => 2,
            _ => 0,
        };
        let ts = u32::from(seq) * 3000;
        let now = self.now;
        let c = &mut self.clients[client];
        c.peer
            .send_rtp(
                "cam",
                rid,
                memory::vp8_packet(keyframe, seq, ts, seq, 100 + 100 * layer),
                now,
            )
            .expect("video sent");
        c.peer
            .send_rtp(
                "mic",
                None,
                memory::opus_packet(seq, u32::from(seq) * 960, 40),
                now,
            )
            .expect("audio sent");
    }

    fn video_received(&self, client: usize) -> Vec<&Received> {
        self.clients[client]
            .received
            .iter()
            .filter(|r| r.header.payload_type == 96)
            .collect()
    }

    /// `client` offers again (tracks changed, or an ICE restart) to shard 0 and takes its answer.
    fn renegotiate(&mut self, client: usize) {
        let offer = self.clients[client].peer.create_offer(self.now);
        let id = self.id(client);
        let answer = self.shards[0]
            .engine
            .client_offer(id, offer, self.now)
            .expect("the renegotiation is answered");
        self.clients[client]
            .peer
            .set_answer(&answer, self.now)
            .expect("the client takes the answer");
        self.shards[0].settle(self.now);
    }

    fn id(&self, client: usize) -> PeerId {
        self.clients[client].id
    }

    fn events(&self, shard: usize) -> &[SfuEvent] {
        &self.shards[shard].events
    }
}

/// Sends `n` rounds of media from `publisher` (all three layers when `simulcast`), numbered from
/// `first`, with a keyframe on every layer when the number is a multiple of `keyframe_every`.
fn stream(
    w: &mut World,
    publisher: usize,
    simulcast: bool,
    first: u16,
    n: u16,
    keyframe_every: u16,
) {
    for seq in first..first + n {
        let keyframe = seq % keyframe_every == 0;
        if simulcast {
            for rid in ["q", "h", "f"] {
                w.send(publisher, Some(rid), seq, keyframe);
            }
        } else {
            w.send(publisher, None, seq, keyframe);
        }
        w.step(20);
    }
}

fn published(w: &World, shard: usize) -> usize {
    w.events(shard)
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackPublished { .. }))
        .count()
}

#[test]
fn a_viewer_joining_a_live_room_gets_its_tracks_in_the_answer_without_a_server_offer() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    stream(&mut w, publisher, false, 0, 5, 100);
    assert_eq!(published(&w, 0), 2, "camera and microphone published");

    let mut peer = w.client("viewer");
    peer.add_recv_only(RtpCodecKind::Audio);
    peer.add_recv_only(RtpCodecKind::Video);
    let offer = peer.create_offer(w.now);
    let id = PeerId::from_u64(99);
    let answer = w.shards[0]
        .engine
        .join(RoomId::from(ROOM), id, offer, PeerRights::VIEWER, w.now)
        .expect("joins");
    // Both tracks, with their stream, track ids and SSRCs, are in the answer itself.
    let source = w.id(publisher);
    for track in ["cam", "mic"] {
        let key = TrackKey::new(source, track);
        assert!(
            answer.contains(&format!(
                "a=msid:{} {}",
                key.msid_stream(),
                key.msid_track()
            )),
            "{track} in the answer:\n{answer}"
        );
    }
    assert_eq!(answer.matches("a=sendonly").count(), 2, "{answer}");
    assert!(answer.matches("a=ssrc:").count() >= 2, "{answer}");
    w.shards[0].settle(w.now);
    peer.set_answer(&answer, w.now).unwrap();
    w.clients.push(Client {
        peer,
        id,
        received: Vec::new(),
    });
    let viewer = w.clients.len() - 1;
    for _ in 0..100 {
        w.step(5);
    }
    assert!(w.clients[viewer].peer.connected());
    stream(&mut w, publisher, false, 5, 30, 10);
    assert_eq!(w.shards[0].offers_for(id), 0, "no server offer was needed");
    let got = &w.clients[viewer].received;
    assert!(
        got.iter().any(|r| r.header.payload_type == 96),
        "video arrives"
    );
    assert!(
        got.iter().any(|r| r.header.payload_type == 111),
        "audio arrives"
    );
}

#[test]
fn a_viewer_who_joined_first_gets_one_complete_offer_per_track_that_arrives() {
    let mut w = World::new(1);
    let viewer = w.viewer(0);
    let publisher = w.publisher(0, false);
    stream(&mut w, publisher, false, 0, 30, 10);
    let id = w.id(viewer);
    let offers: Vec<&String> = w
        .events(0)
        .iter()
        .filter_map(|e| match e {
            SfuEvent::Offer { peer, sdp } if *peer == id => Some(sdp),
            _ => None,
        })
        .collect();
    assert!(!offers.is_empty());
    // Every section an offer says it sends on carries its track (msid and SSRC): no section is
    // described as sending before its track is there.
    for sdp in &offers {
        for section in sdp.split("\r\nm=").skip(1) {
            if section.contains("a=sendonly") || section.contains("a=sendrecv") {
                assert!(
                    section.contains("a=msid:") && section.contains("a=ssrc:"),
                    "a sending section without its track:\n{section}"
                );
            }
        }
    }
    assert!(w.video_received(viewer).len() > 10, "video arrives");
}

#[test]
fn a_simulcast_switch_happens_on_a_keyframe_of_the_new_layer_and_keeps_sequence_numbers_continuous()
{
    let mut w = World::new(1);
    let publisher = w.publisher(0, true);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, true, 0, 20, 1000);
    let low: Vec<u16> = w
        .video_received(viewer)
        .iter()
        .map(|r| r.header.sequence_number)
        .collect();
    assert!(!low.is_empty(), "the lowest layer arrives first");
    assert!(
        w.video_received(viewer)
            .iter()
            .all(|r| r.payload.len() < 200),
        "only layer 0 (100-byte filler)"
    );
    let (source, sub) = (w.id(publisher), w.id(viewer));
    w.shards[0].command(
        Command::Consumer {
            subscriber: sub,
            source: TrackKey::new(source, "cam"),
            change: ConsumerChange::PreferredLayer(Some(2)),
        },
        w.now,
    );
    // The keyframe asked for is layer 2's, on its stream alone.
    let ssrcs = w.clients[publisher].peer.local_ssrcs("cam");
    w.clients[publisher].peer.take_rtcp();
    w.step(5);
    let plis: Vec<u32> = w.clients[publisher]
        .peer
        .take_rtcp()
        .iter()
        .filter_map(|p| {
            p.as_any()
                .downcast_ref::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
                .map(|pli| pli.media_ssrc)
        })
        .collect();
    assert!(!plis.is_empty(), "a keyframe is asked for");
    assert!(
        plis.iter().all(|s| *s == ssrcs[2]),
        "only of layer 2 ({ssrcs:?}): {plis:?}"
    );
    // No keyframe yet: still layer 0. Then a keyframe on every layer: the switch.
    stream(&mut w, publisher, true, 20, 5, 1000);
    assert!(
        w.video_received(viewer)
            .iter()
            .all(|r| r.payload.len() < 200)
    );
    stream(&mut w, publisher, true, 25, 10, 25);
    let all: Vec<(u16, usize)> = w
        .video_received(viewer)
        .iter()
        .map(|r| (r.header.sequence_number, r.payload.len()))
        .collect();
    let switch = all
        .iter()
        .position(|(_, len)| *len > 300)
        .expect("layer 2 arrives");
    assert!(all[switch..].iter().all(|(_, len)| *len > 300), "{all:?}");
    assert!(
        all.windows(2).all(|p| p[1].0 == p[0].0.wrapping_add(1)),
        "continuous sequence numbers across the switch: {all:?}"
    );
    assert!(w.events(0).iter().any(|e| matches!(
        e,
        SfuEvent::LayerChanged { layer: Some(2), subscriber, .. } if *subscriber == sub
    )));
    // Seen by the next review, for metrics.
    w.step(1000);
    let status = w.shards[0]
        .census
        .iter()
        .find(|s| s.peer == sub)
        .expect("in the census");
    assert_eq!(status.video_on_layer, [0, 0, 1]);
    assert!(
        w.shards[0].engine.counters.layer_switches >= 2,
        "started, then switched"
    );
}

#[test]
fn a_lost_packet_is_sent_again_from_the_sfus_history_with_a_fresh_transport_sequence_number() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 1000);
    let before = w.video_received(viewer).len();
    assert!(before > 0);
    // The next video datagram to the viewer is lost (the biggest one of a round: video).
    let viewer_addr = w.clients[viewer].peer.addr();
    w.send(publisher, None, 10, false);
    let mut dropped = false;
    w.step_filtered(20, |d| {
        if !dropped && d.to == viewer_addr && d.data.len() > 110 {
            dropped = true;
            return false;
        }
        true
    });
    assert!(dropped);
    stream(&mut w, publisher, false, 11, 20, 1000);
    let video = w.video_received(viewer);
    let seqs: Vec<u16> = video.iter().map(|r| r.header.sequence_number).collect();
    let lost = seqs[before - 1].wrapping_add(1);
    assert!(
        seqs.contains(&lost),
        "the lost packet was repaired: {seqs:?}"
    );
    assert!(w.shards[0].engine.counters.rtp_retransmitted >= 1);
    // The repair went out after the packets that followed it, with a transport-wide sequence
    // number of its own (newer than theirs), so the estimator sees its bytes.
    let transport_seq = |r: &Received| -> Option<u16> {
        r.header
            .extensions
            .iter()
            .find(|e| e.payload.len() == 2)
            .map(|e| u16::from_be_bytes([e.payload[0], e.payload[1]]))
    };
    let repaired = video
        .iter()
        .find(|r| r.header.sequence_number == lost)
        .unwrap();
    let next = video
        .iter()
        .find(|r| r.header.sequence_number == lost.wrapping_add(1))
        .unwrap();
    let (a, b) = (transport_seq(repaired), transport_seq(next));
    assert!(
        a.is_some() && b.is_some(),
        "transport-wide sequence numbers present"
    );
    assert!(
        a.unwrap().wrapping_sub(b.unwrap()) < 0x8000 && a != b,
        "the repair has a newer transport sequence number ({a:?}) than the packet after it ({b:?})"
    );
}

#[test]
fn leaving_unpublishes_the_tracks_and_takes_them_off_everyone() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 5);
    let (source, sub) = (w.id(publisher), w.id(viewer));
    let consumers = |w: &World| w.shards[0].engine.stats(sub).unwrap().consumers.len();
    assert_eq!(consumers(&w), 2);
    w.shards[0].command(Command::Leave { peer: source }, w.now);
    w.step(20);
    let gone: Vec<&str> = w
        .events(0)
        .iter()
        .filter_map(|e| match e {
            SfuEvent::TrackUnpublished { peer, track } if *peer == source => Some(track.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(
        w.events(0)
            .contains(&SfuEvent::PeerDisconnected { peer: source })
    );
    assert_eq!(consumers(&w), 0);
    assert!(w.shards[0].engine.stats(source).is_none());
    assert!(w.shards[0].engine.router.producers.is_empty());
}

#[test]
fn a_producer_paused_by_the_server_reaches_nobody_and_resumes_from_a_keyframe() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 5);
    let source = w.id(publisher);
    let cam = TrackKey::new(source, "cam");
    w.shards[0].command(
        Command::Producer {
            source: cam.clone(),
            change: ProducerChange::Pause(true),
        },
        w.now,
    );
    assert!(w.events(0).contains(&SfuEvent::ProducerPaused {
        peer: source,
        track: "cam".into(),
        paused: true
    }));
    let before = w.video_received(viewer).len();
    stream(&mut w, publisher, false, 10, 10, 5);
    assert_eq!(
        w.video_received(viewer).len(),
        before,
        "nothing while paused"
    );
    assert!(w.shards[0].engine.counters.rtp_paused >= 10);
    w.clients[publisher].peer.take_rtcp();
    w.shards[0].command(
        Command::Producer {
            source: cam,
            change: ProducerChange::Pause(false),
        },
        w.now,
    );
    w.step(5);
    assert!(
        w.clients[publisher].peer.take_rtcp().iter().any(|p| {
            p.as_any()
                .is::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>(
                )
        }),
        "resuming asks the publisher for a keyframe"
    );
    stream(&mut w, publisher, false, 21, 3, 1000); // no keyframe yet: nothing
    assert_eq!(w.video_received(viewer).len(), before);
    stream(&mut w, publisher, false, 25, 5, 25); // a keyframe first
    let video = w.video_received(viewer);
    assert!(video.len() > before);
    assert_eq!(
        video[before].header.sequence_number,
        video[before - 1].header.sequence_number.wrapping_add(1),
        "the stream goes on without a gap"
    );
}

#[test]
fn closing_a_producer_unpublishes_it_and_drops_what_still_comes() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let _viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 5, 5);
    let source = w.id(publisher);
    w.shards[0].command(
        Command::Producer {
            source: TrackKey::new(source, "cam"),
            change: ProducerChange::Close,
        },
        w.now,
    );
    assert!(w.events(0).contains(&SfuEvent::TrackUnpublished {
        peer: source,
        track: "cam".into()
    }));
    let refused = w.shards[0].engine.counters.rtp_refused;
    stream(&mut w, publisher, false, 5, 5, 5);
    assert_eq!(w.shards[0].engine.counters.rtp_refused, refused + 5);
}

#[test]
fn a_local_consumer_gets_the_track_a_keyframe_first_and_sender_reports() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, true);
    stream(&mut w, publisher, true, 0, 5, 1000);
    let local = LocalConsumerId(7);
    w.shards[0]
        .engine
        .add_local(RoomId::from(ROOM), local, 2, w.now);
    w.shards[0].settle(w.now);
    // Keyframes come every 25 rounds; sender reports every second or so.
    stream(&mut w, publisher, true, 5, 150, 25);
    let items: Vec<&LocalItem> = w.shards[0].locals.iter().map(|(_, i)| i).collect();
    let added: Vec<&TrackKey> = items
        .iter()
        .filter_map(|i| match i {
            LocalItem::TrackAdded { track, .. } => Some(track),
            _ => None,
        })
        .collect();
    assert_eq!(added.len(), 2, "camera and microphone");
    let video: Vec<&rtc::rtp::Packet> = items
        .iter()
        .filter_map(|i| match i {
            LocalItem::Rtp { track, packet } if track.track == "cam" => Some(packet),
            _ => None,
        })
        .collect();
    assert!(video.len() > 20);
    assert_eq!(video[0].payload[4] & 1, 0, "starts on a keyframe");
    assert!(
        video.iter().all(|p| p.payload.len() > 300),
        "the best layer (2)"
    );
    assert!(
        video
            .windows(2)
            .all(|p| p[1].header.sequence_number == p[0].header.sequence_number.wrapping_add(1))
    );
    let reports: Vec<u32> = items
        .iter()
        .filter_map(|i| match i {
            LocalItem::SenderReport {
                track, rtp_time, ..
            } if track.track == "cam" => Some(*rtp_time),
            _ => None,
        })
        .collect();
    assert!(
        !reports.is_empty(),
        "sender reports for the forwarded layer"
    );
    // On the output timeline: within a second of the packets around it.
    let last_ts = video.last().unwrap().header.timestamp;
    assert!(
        reports
            .iter()
            .all(|r| last_ts.wrapping_sub(*r) < 90_000 * 4)
    );
}

#[test]
fn two_shards_pipe_a_room_and_keyframe_requests_travel_back() {
    let mut w = World::new(2);
    for s in 0..2 {
        w.shards[s].engine.link_room(RoomId::from(ROOM), &[0, 1]);
    }
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(1);
    stream(&mut w, publisher, false, 0, 20, 5);
    assert!(w.video_received(viewer).len() > 5, "video crosses shards");
    assert!(w.shards[0].engine.counters.rtp_piped > 0);
    assert!(w.shards[1].engine.counters.rtp_forwarded > 0);
    // A subscriber on shard 1 asks for a keyframe; the publisher on shard 0 is sent a PLI.
    w.clients[publisher].peer.take_rtcp();
    let ssrc = w.clients[viewer]
        .received
        .iter()
        .find(|r| r.header.payload_type == 96)
        .unwrap()
        .ssrc;
    let now = w.now;
    w.clients[viewer].peer.send_pli(ssrc, now).unwrap();
    w.step(600);
    assert!(w.clients[publisher].peer.take_rtcp().iter().any(|p| {
        p.as_any()
            .is::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
    }));
}

#[test]
fn a_simulcast_publisher_receives_another_publishers_track_on_a_section_of_its_own() {
    let mut w = World::new(1);
    let first = w.publisher(0, true);
    let second = w.publisher(0, true);
    stream(&mut w, second, true, 0, 30, 10);
    let from_second: Vec<&Received> = w.clients[first]
        .received
        .iter()
        .filter(|r| r.header.payload_type == 96)
        .collect();
    assert!(
        from_second.len() > 10,
        "the first publisher sees the second"
    );
}

#[test]
fn a_check_that_fails_integrity_teaches_no_address() {
    let mut w = World::new(1);
    let viewer = w.viewer(0);
    let id = w.id(viewer);
    let ufrag = w.shards[0].engine.peers[&id].ufrag.clone();
    let stranger: SocketAddr = "10.9.9.9:9999".parse().unwrap();
    let forged = crate::fuzz::binding_request(&ufrag, "not-the-password");
    let now = w.now;
    // Routed to the peer by its username (and refused by it), but its source is not learned.
    assert!(
        w.shards[0]
            .engine
            .handle_datagram(&forged, stranger, TransportProtocol::UDP, now)
    );
    w.shards[0].settle(now);
    assert!(
        !w.shards[0].engine.handle_datagram(
            &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
            stranger,
            TransportProtocol::UDP,
            now
        ),
        "a datagram from the stranger is from no known peer"
    );
    assert!(!w.shards[0].engine.by_addr.contains_key(&stranger));
    // The real client's address was learned, and is forgotten with the peer.
    let real = w.clients[viewer].peer.addr();
    assert_eq!(w.shards[0].engine.by_addr.get(&real), Some(&id));
    w.shards[0].command(Command::Leave { peer: id }, now);
    assert!(w.shards[0].engine.by_addr.is_empty());
    assert!(w.shards[0].engine.by_ufrag.is_empty());
}

#[test]
fn a_fault_is_pinned_to_the_room_being_worked_on() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 5, 5);
    let now = w.now;
    let engine = &mut w.shards[0].engine;
    let fault = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.handle_command(
            Command::InjectPanic {
                room: RoomId::from("other-room"),
            },
            now,
        )
    }));
    assert!(fault.is_err());
    assert_eq!(engine.faulty_room(), Some(RoomId::from("other-room")));
    engine.close_room(
        &RoomId::from("other-room"),
        CloseReason::Fault("injected".into()),
    );
    w.shards[0].settle(now);
    // This room goes on.
    let before = w.video_received(viewer).len();
    stream(&mut w, publisher, false, 5, 10, 5);
    assert!(w.video_received(viewer).len() > before);
}

#[test]
fn unsubscribing_takes_the_track_off_and_subscribing_brings_it_back() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 5);
    let (source, sub) = (w.id(publisher), w.id(viewer));
    let cam = TrackKey::new(source, "cam");
    let consumers = |w: &World| {
        w.shards[0]
            .engine
            .stats(sub)
            .unwrap()
            .consumers
            .iter()
            .map(|c| c.track.to_string())
            .collect::<Vec<_>>()
    };
    w.shards[0].command(
        Command::Consumer {
            subscriber: sub,
            source: cam.clone(),
            change: ConsumerChange::Subscribe(false),
        },
        w.now,
    );
    assert_eq!(consumers(&w), vec!["mic".to_owned()]);
    let before = w.video_received(viewer).len();
    stream(&mut w, publisher, false, 10, 10, 5);
    assert_eq!(
        w.video_received(viewer).len(),
        before,
        "no video while unsubscribed"
    );
    w.shards[0].command(
        Command::Consumer {
            subscriber: sub,
            source: cam,
            change: ConsumerChange::Subscribe(true),
        },
        w.now,
    );
    assert_eq!(consumers(&w).len(), 2);
    stream(&mut w, publisher, false, 20, 10, 5);
    assert!(w.video_received(viewer).len() > before, "video again");
}

#[test]
fn revoking_the_right_to_publish_closes_the_tracks_and_offers_the_peer_to_stop_sending() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let _viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 5);
    let id = w.id(publisher);
    let offers_before = w.shards[0].offers_for(id);
    w.shards[0].command(
        Command::SetPublish {
            peer: id,
            publish: false,
        },
        w.now,
    );
    let unpublished = w
        .events(0)
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackUnpublished { peer, .. } if *peer == id))
        .count();
    assert_eq!(unpublished, 2);
    w.step(5);
    assert_eq!(
        w.shards[0].offers_for(id),
        offers_before + 1,
        "a server offer"
    );
    let offer = w
        .events(0)
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::Offer { peer, sdp } if *peer == id => Some(sdp.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        !offer.contains("a=recvonly") && !offer.contains("a=sendrecv"),
        "the SFU receives nothing from it any more:\n{offer}"
    );
    // The client took the offer (answered in `step`): it no longer has a sending track.
    let now = w.now;
    assert!(
        w.clients[publisher]
            .peer
            .send_rtp("cam", None, memory::vp8_packet(true, 10, 0, 10, 100), now)
            .is_err(),
        "an honest client stops sending"
    );
}

/// A publisher's browser stops sending its top layer when its own estimate falls (Chromium
/// does): a subscriber on that layer moves to the next one as soon as the layer is seen silent,
/// without waiting out the time a layer is normally kept.
#[test]
fn a_subscriber_whose_layer_stops_moves_down_without_waiting() {
    top_layer_goes_quiet(false);
}

/// The same when the paused layer's stream carries only padding (a browser probing bandwidth
/// without RTX pads on a media stream): padding is not video.
#[test]
fn a_layer_that_carries_only_padding_is_silent() {
    top_layer_goes_quiet(true);
}

fn top_layer_goes_quiet(padding: bool) {
    let mut w = World::new(1);
    let publisher = w.publisher(0, true);
    let viewer = w.viewer(0);
    let (source, sub) = (w.id(publisher), w.id(viewer));
    stream(&mut w, publisher, true, 0, 20, 10);
    w.shards[0].command(
        Command::Consumer {
            subscriber: sub,
            source: TrackKey::new(source, "cam"),
            change: ConsumerChange::PreferredLayer(Some(2)),
        },
        w.now,
    );
    // On all layers: the viewer reaches layer 2 (300-byte payloads).
    stream(&mut w, publisher, true, 20, 30, 10);
    let on_top = |w: &World| {
        w.video_received(viewer)
            .last()
            .map(|r| r.payload.len() > 300)
    };
    assert_eq!(on_top(&w), Some(true), "on the top layer");
    // Layer 2 stops (or pads); 0 and 1 go on (keyframes every 200 ms).
    let stopped = w.now;
    let mut seq = 50;
    let moved = loop {
        let keyframe = seq % 10 == 0;
        w.send(publisher, Some("q"), seq, keyframe);
        w.send(publisher, Some("h"), seq, keyframe);
        if padding {
            let now = w.now;
            let mut pad = memory::vp8_packet(false, seq, u32::from(seq) * 3000, seq, 1);
            pad.payload = Default::default();
            pad.header.padding = true;
            w.clients[publisher]
                .peer
                .send_rtp("cam", Some("f"), pad, now)
                .expect("padding sent");
        }
        w.step(20);
        seq += 1;
        let last = w.video_received(viewer).last().map(|r| r.payload.len());
        if last.is_some_and(|len| (200..300).contains(&len)) {
            break w.now - stopped;
        }
        assert!(
            w.now - stopped < Duration::from_secs(10),
            "never moved down"
        );
    };
    assert!(
        moved <= Duration::from_millis(2500),
        "on layer 1 {moved:?} after layer 2 stopped (a layer is kept 4 s otherwise)"
    );
}

/// Screen sharing: a publisher with a camera adds a second video track (its screen) by a new
/// offer. Viewers are offered it as a track of its own and receive its packets beside the
/// camera's; stopping the share takes it off again.
#[test]
fn a_second_video_track_added_by_renegotiation_reaches_viewers_beside_the_camera() {
    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 10, 5);
    w.answer_offers();
    let camera_tracks = w.clients[viewer].peer.remote_tracks().len();
    // The share: a new offer with the screen track.
    w.clients[publisher].peer.add_send_video("screen", false);
    w.renegotiate(publisher);
    let mut screen_packets = 0;
    for seq in 10..60u16 {
        w.send(publisher, None, seq, seq % 5 == 0);
        let now = w.now;
        w.clients[publisher]
            .peer
            .send_rtp(
                "screen",
                None,
                memory::vp8_packet(seq % 5 == 0, seq, u32::from(seq) * 3000, seq, 700),
                now,
            )
            .expect("screen sent");
        w.step(20);
        w.answer_offers();
        screen_packets = w
            .video_received(viewer)
            .iter()
            .filter(|r| r.payload.len() > 700)
            .count();
    }
    assert!(
        w.clients[viewer].peer.remote_tracks().len() > camera_tracks,
        "the viewer was offered the screen as a track of its own"
    );
    assert!(
        screen_packets > 10,
        "the screen's packets arrive: {screen_packets}"
    );
    assert!(
        w.video_received(viewer)
            .iter()
            .rev()
            .take(20)
            .any(|r| r.payload.len() < 200),
        "and the camera's too"
    );
    // The share stops: its section goes inactive, and the track is unpublished.
    w.clients[publisher]
        .peer
        .remove_send("screen")
        .expect("the screen track is removed");
    w.renegotiate(publisher);
    stream(&mut w, publisher, false, 60, 5, 5);
    assert!(
        w.events(0).iter().any(|e| matches!(
            e,
            SfuEvent::TrackUnpublished { track, .. } if track.as_str() == "screen"
        )),
        "the screen is unpublished: {:?}",
        w.events(0)
    );
}

/// The SFU seals forwarded media itself (`media::srtp`, keyed through `engine::keys`): the
/// subscriber's own webrtc-rs decrypts every packet to the publisher's bytes, across an ICE
/// restart of the subscriber, and the SFU's sender reports for those streams arrive and agree
/// with what was sent.
#[test]
fn what_the_sfu_seals_itself_opens_at_the_subscriber_and_its_sender_reports_agree() {
    use rtc::rtcp::sender_report::SenderReport;

    let mut w = World::new(1);
    let publisher = w.publisher(0, false);
    let viewer = w.viewer(0);
    stream(&mut w, publisher, false, 0, 100, 50);
    // An ICE restart of the subscriber: same DTLS session, same keys.
    w.clients[viewer].peer.pc().restart_ice();
    w.renegotiate(viewer);
    stream(&mut w, publisher, false, 100, 100, 50);

    let video: Vec<Received> = w.video_received(viewer).into_iter().cloned().collect();
    assert!(
        video.len() >= 190,
        "nearly every video packet opened: {}",
        video.len()
    );
    assert!(
        video.iter().any(|r| r.header.sequence_number > 150),
        "media kept flowing after the restart"
    );
    for r in &video {
        // The publisher's payload: the VP8 descriptor (4 bytes) and the frame, 0xab filler.
        assert!(
            r.payload.len() == 107 || r.payload.len() == 114,
            "{}",
            r.payload.len()
        );
        assert!(
            r.payload[r.payload.len() - 100..]
                .iter()
                .all(|&b| b == 0xab)
        );
    }
    let audio: Vec<Received> = w.clients[viewer]
        .received
        .iter()
        .filter(|r| r.header.payload_type == 111)
        .cloned()
        .collect();
    assert!(audio.len() >= 190, "audio too: {}", audio.len());
    assert!(
        audio
            .iter()
            .all(|r| r.payload[0] == 0xfc && r.payload.len() == 41)
    );

    // Sender reports, about one a second per stream, from the SFU (rtc never saw the packets).
    let reports: Vec<SenderReport> = w.clients[viewer]
        .peer
        .take_rtcp()
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<SenderReport>().cloned())
        .collect();
    let video_ssrc = video[0].ssrc;
    let of_video: Vec<&SenderReport> = reports.iter().filter(|r| r.ssrc == video_ssrc).collect();
    assert!(
        of_video.len() >= 3,
        "video sender reports over 4 s: {reports:?}"
    );
    assert!(
        reports.iter().any(|r| r.ssrc == audio[0].ssrc),
        "and audio's"
    );
    assert!(w.shards[0].engine.counters.sender_reports >= 6);
    // The stream's own RTP clock rate, as its packets show it (this test's publisher moves
    // 3000 ticks per 20 ms packet).
    let (first, newest) = (&video[0], &video[video.len() - 1]);
    let rate = f64::from(newest.header.timestamp.wrapping_sub(first.header.timestamp))
        / (newest.at - first.at).as_secs_f64();
    for pair in of_video.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let seconds =
            (b.ntp_time.wrapping_sub(a.ntp_time)) as f64 / f64::from(1u32 << 16) / 65536.0;
        assert!(
            (0.9..1.2).contains(&seconds),
            "a report a second: {seconds}"
        );
        // The RTP clock moves as the wall clock does (within a frame).
        let rtp = f64::from(b.rtp_time.wrapping_sub(a.rtp_time)) / rate;
        assert!(
            (rtp - seconds).abs() < 0.07,
            "rtp {rtp} s vs ntp {seconds} s"
        );
        // A packet every 20 ms of 107 bytes (114 for a keyframe).
        let packets = b.packet_count - a.packet_count;
        assert!(
            (f64::from(packets) - seconds * 50.0).abs() <= 2.0,
            "{packets} packets in {seconds} s"
        );
        let octets = b.octet_count - a.octet_count;
        assert!(
            (107 * packets..=114 * packets).contains(&octets),
            "{octets} octets for {packets} packets"
        );
    }
    let last = of_video.last().unwrap();
    assert!(
        last.packet_count as usize <= video.len() && last.packet_count as usize + 60 >= video.len(),
        "the count is what arrived: {} of {}",
        last.packet_count,
        video.len()
    );
}
