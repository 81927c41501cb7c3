//! Test peers for the SFU: webrtc-rs (async) clients that join through the [`Sfu`] handle and
//! answer its renegotiation offers. Shared by the integration tests and the loopback benchmark.
#![allow(dead_code)]

pub mod relay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use sfu::{PeerId, PeerRights, Sfu, SfuConfig, SfuEvent};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    connected: mpsc::UnboundedSender<()>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(());
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

pub struct Client {
    pub pc: Arc<dyn PeerConnection>,
    /// ICE over TCP only.
    pub tcp_only: bool,
    pub gathered: mpsc::UnboundedReceiver<()>,
    pub connected: mpsc::UnboundedReceiver<()>,
    pub tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

mod deliver_rtcp;
pub use deliver_rtcp::DeliverRtcp;

pub async fn client() -> Client {
    client_with(false).await
}

pub async fn client_with(deliver_rtcp: bool) -> Client {
    client_on(deliver_rtcp, false).await
}

/// A client with ICE over TCP only (active TCP candidates, no UDP socket): a network that blocks
/// UDP.
pub async fn client_tcp_only() -> Client {
    client_on(false, true).await
}

async fn client_on(deliver_rtcp: bool, tcp_only: bool) -> Client {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    media
        .register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".into(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .unwrap();
    let mut registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    if deliver_rtcp {
        registry = registry.with(Slot::from(14_000), DeliverRtcp::default());
    }
    let (gathered_tx, gathered) = mpsc::unbounded_channel();
    let (connected_tx, connected) = mpsc::unbounded_channel();
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(webrtc::peer_connection::SettingEngineBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            gathered: gathered_tx,
            connected: connected_tx,
            tracks: tracks_tx,
        }))
        .with_udp_addrs(if tcp_only {
            vec![]
        } else {
            vec!["127.0.0.1:0".to_owned()]
        })
        .with_tcp_addrs(if tcp_only {
            vec!["127.0.0.1:0".to_owned()]
        } else {
            vec![]
        })
        .build()
        .await
        .unwrap();
    Client {
        pc: Arc::new(pc),
        tcp_only,
        gathered,
        connected,
        tracks,
    }
}

/// Where each peer's server offers go, and offers that arrived before their peer registered.
pub type OfferRoutes = (
    HashMap<PeerId, mpsc::UnboundedSender<String>>,
    HashMap<PeerId, Vec<String>>,
);

/// Server offers, routed to the peer they are for (buffered until the peer registers).
#[derive(Clone, Default)]
pub struct Offers(
    Arc<Mutex<OfferRoutes>>,
    Arc<Mutex<Option<mpsc::UnboundedReceiver<SfuEvent>>>>,
);

impl Offers {
    pub fn spawn_dispatcher(&self, mut events: mpsc::Receiver<SfuEvent>) {
        let offers = self.clone();
        let (others_tx, others_rx) = mpsc::unbounded_channel();
        *self.1.lock().unwrap() = Some(others_rx);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let SfuEvent::Offer { peer, sdp } = event {
                    let mut state = offers.0.lock().unwrap();
                    match state.0.get(&peer) {
                        Some(tx) => {
                            let _ = tx.send(sdp);
                        }
                        None => state.1.entry(peer).or_default().push(sdp),
                    }
                } else {
                    let _ = others_tx.send(event);
                }
            }
        });
    }

    /// Every event other than offers, in order.
    pub fn other_events(&self) -> mpsc::UnboundedReceiver<SfuEvent> {
        self.1
            .lock()
            .unwrap()
            .take()
            .expect("dispatcher running; events taken once")
    }

    pub fn register(&self, peer: PeerId) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.0.lock().unwrap();
        for sdp in state.1.remove(&peer).unwrap_or_default() {
            let _ = tx.send(sdp);
        }
        state.0.insert(peer, tx);
        rx
    }
}

/// Offer, wait for candidates, join, apply the answer, wait until connected; then answer every
/// server offer from then on.
pub async fn join(sfu: &Sfu, offers: &Offers, c: &mut Client) -> PeerId {
    join_room(sfu, offers, c, "room-1").await
}

/// Like [`join`], into `room`.
pub async fn join_room(sfu: &Sfu, offers: &Offers, c: &mut Client, room: &str) -> PeerId {
    join_via(sfu, offers, c, room, None).await
}

/// Like [`join_room`], with the client reaching the SFU through `relay` when given: every
/// description from the SFU is rewritten to name the relay instead.
pub async fn join_via(
    sfu: &Sfu,
    offers: &Offers,
    c: &mut Client,
    room: &str,
    relay: Option<Arc<relay::Relay>>,
) -> PeerId {
    join_as(
        sfu,
        offers,
        c,
        room,
        relay,
        PeerRights::PUBLISHER,
        |offer| offer,
    )
    .await
}

/// Like [`join_via`], with `rights`, and the offer the SFU gets rewritten by `tamper` first (the
/// client keeps its own): what a client that lies about its media sends.
pub async fn join_as(
    sfu: &Sfu,
    offers: &Offers,
    c: &mut Client,
    room: &str,
    relay: Option<Arc<relay::Relay>>,
    rights: PeerRights,
    tamper: impl FnOnce(String) -> String,
) -> PeerId {
    let rewrite = move |sdp: String| match &relay {
        Some(r) => r.rewrite(&sdp),
        None => sdp,
    };
    let peer = connect_as(sfu, c, room, rights, tamper, &rewrite).await;
    let mut server_offers = offers.register(peer);
    let pc = Arc::clone(&c.pc);
    let sfu = sfu.clone();
    tokio::spawn(async move {
        while let Some(sdp) = server_offers.recv().await {
            pc.set_remote_description(RTCSessionDescription::offer(rewrite(sdp)).unwrap())
                .await
                .unwrap();
            let answer = pc.create_answer(None).await.unwrap();
            pc.set_local_description(answer).await.unwrap();
            let answer = pc.local_description().await.unwrap().sdp;
            // A panic here would go unseen (a task's): say it on stderr.
            if let Err(e) = sfu.answer_checked(peer, answer).await {
                eprintln!("support: peer {peer}: the SFU refused its answer: {e}");
            }
        }
    });
    peer
}

/// Offer, wait for candidates, join `room`, apply the answer, wait until connected. Server
/// offers are left to the caller (they wait in `offers` until it registers the peer).
pub async fn connect(sfu: &Sfu, c: &mut Client, room: &str) -> PeerId {
    connect_as(sfu, c, room, PeerRights::PUBLISHER, |offer| offer, &|sdp| {
        sdp
    })
    .await
}

/// Like [`connect`], with `rights`, the offer rewritten by `tamper`, and every description from
/// the SFU by `rewrite`.
async fn connect_as(
    sfu: &Sfu,
    c: &mut Client,
    room: &str,
    rights: PeerRights,
    tamper: impl FnOnce(String) -> String,
    rewrite: &impl Fn(String) -> String,
) -> PeerId {
    let offer = c.pc.create_offer(None).await.unwrap();
    c.pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(WAIT, c.gathered.recv())
        .await
        .expect("ICE gathering completes");
    let offer = tamper(c.pc.local_description().await.unwrap().sdp);
    let (peer, answer) = sfu.join_with(room, offer, rights).await.expect("join");
    let answer = rewrite(answer);
    c.pc.set_remote_description(RTCSessionDescription::answer(answer.clone()).unwrap())
        .await
        .unwrap();
    if c.tcp_only {
        // The webrtc-rs client dials passive TCP candidates only when they are trickled.
        for line in answer
            .lines()
            .filter(|l| l.contains(" tcp ") && l.contains("passive"))
        {
            let candidate = line.trim_start_matches("a=").to_owned();
            c.pc.add_ice_candidate(rtc::peer_connection::transport::RTCIceCandidateInit {
                candidate,
                sdp_mid: Some(String::new()),
                sdp_mline_index: Some(0),
                username_fragment: None,
                url: None,
            })
            .await
            .unwrap();
        }
    }
    tokio::time::timeout(WAIT, c.connected.recv())
        .await
        .expect("connected");
    peer
}

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Waits until `check` holds for `peer`'s stats: each read queues on the shard behind the
/// commands sent before it, so usually the first read does; later ones follow the shard's work.
pub async fn stats_until(
    sfu: &Sfu,
    peer: PeerId,
    check: impl Fn(&sfu::PeerStats) -> bool,
) -> sfu::PeerStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = sfu.stats(peer).await.expect("a known peer");
        if check(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds for the counters of shard `index`.
pub async fn shard_until(
    sfu: &Sfu,
    index: usize,
    check: impl Fn(&sfu::ShardStats) -> bool,
) -> sfu::ShardStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = sfu.shards()[index].stats;
        if check(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until none of the client's transceivers is negotiated to send (the server's offer said
/// it receives nothing from it any more, and the client answered).
pub async fn until_not_sending(c: &Client) {
    use webrtc::rtp_transceiver::RTCRtpTransceiverDirection as Direction;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut sending = false;
        for t in c.pc.get_transceivers().await {
            if let Ok(Direction::Sendonly | Direction::Sendrecv) = t.current_direction().await {
                sending = true;
            }
        }
        if !sending {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client still sends"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the SFU's shards (blocking work, off the async threads) and waits for them.
pub async fn shutdown(sfu: &Sfu) {
    let handle = sfu.clone();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .expect("shutdown task");
}

pub fn start_sfu() -> (Sfu, Offers) {
    start_sfu_with(SfuConfig::default())
}

pub fn start_sfu_with(config: SfuConfig) -> (Sfu, Offers) {
    let sfu = Sfu::start(config).unwrap();
    let offers = Offers::default();
    offers.spawn_dispatcher(sfu.events(65_536));
    (sfu, offers)
}

/// A publishing peer: its client, its VP8 track (one encoding per `(rid, ssrc)`; rid "" without
/// simulcast), the negotiated payload type, and its peer id.
pub struct Publisher {
    pub client: Client,
    /// SSRCs of its encodings, in order.
    pub ssrcs: Vec<u32>,
    pub track: Arc<TrackLocalStaticRTP>,
    pub payload_type: u8,
    pub peer: PeerId,
    pub sender: Arc<dyn webrtc::rtp_transceiver::RtpSender>,
}

pub async fn publisher(
    sfu: &Sfu,
    offers: &Offers,
    encodings: &[(&str, u32)],
    deliver_rtcp: bool,
) -> Publisher {
    publisher_via(sfu, offers, encodings, deliver_rtcp, None).await
}

/// Like [`publisher`], reaching the SFU through `relay` when given.
pub async fn publisher_via(
    sfu: &Sfu,
    offers: &Offers,
    encodings: &[(&str, u32)],
    deliver_rtcp: bool,
    relay: Option<Arc<relay::Relay>>,
) -> Publisher {
    let mut client = client_with(deliver_rtcp).await;
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "cam".into(),
        "camera".into(),
        "camera".into(),
        RtpCodecKind::Video,
        encodings
            .iter()
            .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.to_string(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: vp8(),
                ..Default::default()
            })
            .collect(),
    )));
    let sender = client
        .pc
        .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let peer = join_via(sfu, offers, &mut client, "room-1", relay).await;
    let payload_type = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
    let ssrcs = encodings.iter().map(|(_, s)| *s).collect();
    Publisher {
        client,
        ssrcs,
        track,
        payload_type,
        peer,
        sender,
    }
}

/// A subscribing peer: offers one receive-only video line to connect with; tracks arrive by
/// server offers.
pub async fn subscriber(sfu: &Sfu, offers: &Offers) -> (Client, PeerId) {
    subscriber_in(sfu, offers, "room-1").await
}

/// Like [`subscriber`], in `room`.
pub async fn subscriber_in(sfu: &Sfu, offers: &Offers, room: &str) -> (Client, PeerId) {
    subscriber_via(sfu, offers, room, None).await
}

/// A client with one receive-only video section and its gathered offer, not yet sent.
pub async fn receiving_offer() -> (Client, String) {
    let c = client().await;
    c.pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let offer = c.pc.create_offer(None).await.unwrap();
    c.pc.set_local_description(offer).await.unwrap();
    let mut c = c;
    tokio::time::timeout(WAIT, c.gathered.recv())
        .await
        .expect("ICE gathering completes");
    let offer = c.pc.local_description().await.unwrap().sdp;
    (c, offer)
}

/// Like [`subscriber_in`], reaching the SFU through `relay` when given.
pub async fn subscriber_via(
    sfu: &Sfu,
    offers: &Offers,
    room: &str,
    relay: Option<Arc<relay::Relay>>,
) -> (Client, PeerId) {
    let mut c = client().await;
    c.pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let id = join_via(sfu, offers, &mut c, room, relay).await;
    (c, id)
}

impl Publisher {
    /// Sends VP8 every 10 ms like an encoder: a keyframe when asked by a PLI (and first), delta
    /// frames otherwise, each with a 200-byte payload. The publisher must have been created with
    /// `deliver_rtcp`. Returns the sending task and when each PLI arrived.
    pub fn send_keyframes_on_request(
        &self,
    ) -> (
        tokio::task::JoinHandle<()>,
        mpsc::UnboundedReceiver<std::time::Instant>,
    ) {
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        use std::sync::atomic::{AtomicBool, Ordering};
        use webrtc::media_stream::track_local::TrackLocalEvent;
        let (track, pt, ssrc) = (Arc::clone(&self.track), self.payload_type, self.ssrcs[0]);
        let (pli_tx, pli_rx) = mpsc::unbounded_channel();
        let wants_keyframe = Arc::new(AtomicBool::new(true));
        let listener = {
            let (track, wants) = (Arc::clone(&track), Arc::clone(&wants_keyframe));
            tokio::spawn(async move {
                while let Some(event) = track.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(packets) = event
                        && packets
                            .iter()
                            .any(|p| p.as_any().is::<PictureLossIndication>())
                    {
                        wants.store(true, Ordering::SeqCst);
                        let _ = pli_tx.send(std::time::Instant::now());
                    }
                }
            })
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for i in 0u32.. {
                tick.tick().await;
                let keyframe = wants_keyframe.swap(false, Ordering::SeqCst);
                let mut payload = vec![0x10, u8::from(!keyframe)];
                payload.extend_from_slice(&[0xcd; 200]);
                let header = rtc::rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: pt,
                    sequence_number: i as u16,
                    timestamp: i.wrapping_mul(3000),
                    ssrc,
                    ..Default::default()
                };
                let _ = track
                    .write_rtp(rtc::rtp::Packet {
                        header,
                        payload: bytes::Bytes::from(payload),
                    })
                    .await;
            }
            listener.abort();
        });
        (task, pli_rx)
    }

    /// Sends three simulcast layers (rids q, h, f on the publisher's SSRCs) every `every` until the
    /// task is aborted: each its own sequence numbers, a keyframe every `gop` packets, payloads of
    /// `sizes[layer]` bytes carrying the layer number in their third byte.
    pub async fn send_simulcast(
        &self,
        sizes: [usize; 3],
        gop: u32,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let params = self.sender.get_parameters().await.unwrap();
        let pt = params.rtp_parameters.codecs[0].payload_type;
        let ext = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|h| h.uri == uri)
                .map(|h| h.id as u8)
                .unwrap()
        };
        let (mid_ext, rid_ext) = (
            ext("urn:ietf:params:rtp-hdrext:sdes:mid"),
            ext("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
        );
        let mid = self.client.pc.get_transceivers().await[0]
            .mid()
            .await
            .unwrap()
            .unwrap();
        let (track, ssrcs) = (Arc::clone(&self.track), self.ssrcs.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for i in 0u32.. {
                tick.tick().await;
                for (layer, rid) in ["q", "h", "f"].iter().enumerate() {
                    let mut header = rtc::rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: pt,
                        sequence_number: (i as u16).wrapping_add(layer as u16 * 10_000),
                        timestamp: i.wrapping_mul(3000).wrapping_add(layer as u32 * 77),
                        ssrc: ssrcs[layer],
                        ..Default::default()
                    };
                    header
                        .set_extension(mid_ext, bytes::Bytes::from(mid.clone().into_bytes()))
                        .unwrap();
                    header
                        .set_extension(rid_ext, bytes::Bytes::from(rid.to_string().into_bytes()))
                        .unwrap();
                    let keyframe = i.is_multiple_of(gop);
                    let mut payload = vec![0x10, u8::from(!keyframe), layer as u8];
                    payload.resize(sizes[layer].max(3), 0xee);
                    let _ = track
                        .write_rtp(rtc::rtp::Packet {
                            header,
                            payload: bytes::Bytes::from(payload),
                        })
                        .await;
                }
            }
        })
    }

    /// Sends `make(i, payload_type)` for i = 0, 1, ... every `every` until the task is aborted.
    pub fn send_packets(
        &self,
        every: Duration,
        make: impl Fn(u32, u8) -> rtc::rtp::Packet + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let (track, pt) = (Arc::clone(&self.track), self.payload_type);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for i in 0u32.. {
                tick.tick().await;
                let _ = track.write_rtp(make(i, pt)).await;
            }
        })
    }

    /// Sends small VP8 packets every 10 ms (a keyframe every 20) until the task is aborted.
    pub fn send_vp8(&self) -> tokio::task::JoinHandle<()> {
        send_tagged(
            Arc::clone(&self.track),
            self.payload_type,
            self.ssrcs[0],
            [0, 0],
        )
    }
}

/// A VP8 camera track (id `track_id`) with one encoding on `ssrc`, not yet added to a connection.
pub fn vp8_camera(ssrc: u32, track_id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "cam".into(),
        track_id.into(),
        track_id.into(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: vp8(),
            ..Default::default()
        }],
    )))
}

/// Sends small VP8 packets on `track` every 10 ms (a keyframe every 20), their payload ending in
/// `tag` (to tell senders apart), until the task is aborted.
pub fn send_tagged(
    track: Arc<TrackLocalStaticRTP>,
    pt: u8,
    ssrc: u32,
    tag: [u8; 2],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 0u32.. {
            tick.tick().await;
            let payload = bytes::Bytes::from(vec![0x10, u8::from(i % 20 != 0), tag[0], tag[1]]);
            let header = rtc::rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: i as u16,
                timestamp: i.wrapping_mul(3000),
                ssrc,
                ..Default::default()
            };
            let _ = track.write_rtp(rtc::rtp::Packet { header, payload }).await;
        }
    })
}

/// The first remote track a client receives.
pub async fn first_track(c: &mut Client) -> Arc<dyn TrackRemote> {
    tokio::time::timeout(WAIT, c.tracks.recv())
        .await
        .expect("a track arrives")
        .expect("open channel")
}
