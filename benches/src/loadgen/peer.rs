//! One simulated participant: a webrtc-rs peer connection that joins through the GraphQL API,
//! answers the SFU's offers from `sessionEvents`, and publishes synthetic media or counts what
//! it receives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use rtc::interceptor::{Interceptor, Packet as IPacket, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

use super::api::{Api, Auth, Ws, subscribe};
use super::media::{self, Layer};
use super::stats::{SeqTracker, Stats};

/// What a participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber,
}

/// A signed-up account with an API token.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub user_id: String,
    pub token: String,
}

/// What every participant shares.
pub struct Shared {
    pub api: Api,
    pub stats: Arc<Stats>,
    pub layers: Vec<Layer>,
    pub fps: u32,
    /// Frames between periodic keyframes.
    pub gop: u32,
    pub audio: bool,
    /// Local address the peers' UDP sockets bind to (their ICE host candidate).
    pub bind_ip: String,
    /// How long a join may take, `joinSession` to connected.
    pub join_timeout: Duration,
    /// What subscribers ask for with `setPreferredLayer` (`LOW`, `MEDIUM`, `HIGH`); `None`:
    /// they never call it (the SFU's default).
    pub subscriber_layer: Option<&'static str>,
}

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on SessionSnapshot { tracks { id kind } }
  ... on TrackPublished { track { id kind } }
  ... on ServerOffer { sdp }
  ... on RemovedFromSession { reason } } }";
const JOIN: &str = "mutation($s: ID!) { joinSession(sessionId: $s) { participantId role } }";
const OFFER: &str = "mutation($s: ID!, $sdp: String!) { sendOffer(sessionId: $s, sdp: $sdp) }";
const ANSWER: &str = "mutation($s: ID!, $sdp: String!) { sendAnswer(sessionId: $s, sdp: $sdp) }";

/// A joined participant: its connection and the tasks that serve it.
pub struct Participant {
    pub pc: Arc<dyn PeerConnection>,
    tasks: Vec<JoinHandle<()>>,
}

impl Participant {
    /// Stops sending and signaling, then closes the connection.
    pub async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pc.close()).await;
    }
}

/// State the peer connection's event handler reports into.
struct PeerState {
    role: Role,
    stats: Arc<Stats>,
    /// When `joinSession` was sent.
    join_started: OnceLock<Instant>,
    /// A video keyframe arrived (time to first frame recorded).
    first_frame: AtomicBool,
    connected: watch::Sender<bool>,
    gathered: watch::Sender<bool>,
    /// Counted in `stats.connected` now.
    counted: AtomicBool,
    /// Widths of the layers, to tell which one a keyframe belongs to.
    widths: Vec<u16>,
}

struct Handler(Arc<PeerState>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.0.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let s = &self.0;
        match state {
            RTCPeerConnectionState::Connected => {
                s.connected.send_replace(true);
                if !s.counted.swap(true, Ordering::Relaxed) {
                    s.stats.connected.fetch_add(1, Ordering::Relaxed);
                }
            }
            RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Closed => {
                if s.counted.swap(false, Ordering::Relaxed) {
                    s.stats.connected.fetch_sub(1, Ordering::Relaxed);
                }
                if state == RTCPeerConnectionState::Failed {
                    s.stats.error("a peer connection failed".into());
                }
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(drain(track, Arc::clone(&self.0)));
    }
}

/// Reads a received track to its end, counting packets, sequence gaps and keyframes.
async fn drain(track: Arc<dyn TrackRemote>, peer: Arc<PeerState>) {
    let video = track.kind().await == RtpCodecKind::Video;
    let stats = &peer.stats;
    let mut seqs = SeqTracker::default();
    let mut layer = 3; // not known until a keyframe says
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(p) => p,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        if peer.role == Role::Publisher {
            stats.pub_rx.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.sub_rx.fetch_add(1, Ordering::Relaxed);
        let (expected, received) = seqs.push(packet.header.sequence_number);
        stats.expected.fetch_add(expected, Ordering::Relaxed);
        stats.received.fetch_add(received, Ordering::Relaxed);
        if !video {
            continue;
        }
        if let Some(start) = media::vp8_start(&packet.payload)
            && start.keyframe
        {
            if !peer.first_frame.swap(true, Ordering::Relaxed)
                && let Some(t0) = peer.join_started.get()
            {
                Stats::record(&stats.first_frame_ms, t0.elapsed());
            }
            if let Some(w) = start.width {
                layer = peer.widths.iter().position(|&x| x == w).unwrap_or(3);
            }
        }
        stats.video_by_layer[layer].fetch_add(1, Ordering::Relaxed);
    }
}

/// Lets RTCP (PLI, FIR) reach a publisher's `TrackLocal::poll` (the same interceptor as the
/// SFU's tests).
#[path = "../../../sfu/tests/support/deliver_rtcp.rs"]
mod deliver_rtcp;
use deliver_rtcp::DeliverRtcp;

/// Counts the sequence numbers of the NACKs a subscriber sends (wire-ward of the NACK
/// generator, so it sees what the generator emits); passes everything on unchanged.
struct CountNacks {
    nacks: Arc<Stats>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for CountNacks {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;
    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            let asked: u64 = packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                .flat_map(|n| n.nacks.iter())
                .map(|pair| 1 + u64::from(pair.lost_packets.count_ones()))
                .sum();
            if asked > 0 {
                self.nacks.nacks.fetch_add(asked, Ordering::Relaxed);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for CountNacks {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

async fn peer_connection(
    shared: &Shared,
    state: Arc<PeerState>,
) -> Result<Arc<dyn PeerConnection>> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let mut registry = register_default_interceptors(Registry::new(), &mut media)?;
    registry = match state.role {
        Role::Publisher => registry.with(Slot::from(14_000), DeliverRtcp::default()),
        Role::Subscriber => registry.with(
            Slot::from(6_500),
            CountNacks {
                nacks: Arc::clone(&state.stats),
                read: VecDeque::new(),
                write: VecDeque::new(),
            },
        ),
    };
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(webrtc::peer_connection::SettingEngineBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler(state)))
        .with_udp_addrs(vec![format!("{}:0", shared.bind_ip)])
        .build()
        .await
        .context("building a peer connection")?;
    Ok(Arc::new(pc))
}

/// What a publisher sends with: its tracks and their SSRCs.
struct Sending {
    video: Arc<TrackLocalStaticRTP>,
    video_ssrcs: Vec<u32>,
    audio: Option<Arc<TrackLocalStaticRTP>>,
    audio_ssrc: u32,
}

/// Joins `session` as `account`: `joinSession`, `sessionEvents`, the offer and its answer, until
/// the connection is up; a publisher then starts sending.
pub async fn join(
    shared: &Arc<Shared>,
    account: &Account,
    session: &str,
    role: Role,
    index: usize,
) -> Result<Participant> {
    let (connected_tx, mut connected) = watch::channel(false);
    let (gathered_tx, mut gathered) = watch::channel(false);
    let state = Arc::new(PeerState {
        role,
        stats: Arc::clone(&shared.stats),
        join_started: OnceLock::new(),
        first_frame: AtomicBool::new(false),
        connected: connected_tx,
        gathered: gathered_tx,
        counted: AtomicBool::new(false),
        widths: shared.layers.iter().map(|l| l.width).collect(),
    });
    let pc = peer_connection(shared, Arc::clone(&state)).await?;
    let mut tasks = Vec::new();
    let result = async {
        let sending = match role {
            Role::Publisher => Some(add_tracks(shared, &pc, index).await?),
            Role::Subscriber => {
                pc.add_transceiver_from_kind(
                    RtpCodecKind::Video,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await?;
                None
            }
        };
        let started = Instant::now();
        let _ = state.join_started.set(started);
        let auth = Auth::Bearer(&account.token);
        shared
            .api
            .gql(auth, JOIN, json!({ "s": session }))
            .await
            .context("joinSession")?;
        shared.stats.joined.fetch_add(1, Ordering::Relaxed);

        // Signaling: server offers are answered once this connection's own offer is.
        let ws = subscribe(
            &shared.api.base,
            &account.token,
            EVENTS,
            json!({ "s": session }),
        )
        .await
        .context("subscribing to sessionEvents")?;
        let (ready_tx, ready) = watch::channel(false);
        let (first_tx, first) = oneshot::channel();
        let signaling = Signaling {
            pc: Arc::clone(&pc),
            api: shared.api.clone(),
            token: account.token.clone(),
            session: session.to_owned(),
            ready,
            stats: Arc::clone(&shared.stats),
            layer: match role {
                Role::Subscriber => shared.subscriber_layer,
                Role::Publisher => None,
            },
        };
        tasks.push(tokio::spawn(signaling.run(ws, first_tx)));
        tokio::time::timeout(shared.join_timeout, first)
            .await
            .map_err(|_| anyhow!("no first session event"))?
            .map_err(|_| anyhow!("the subscription ended before its first event"))?;

        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        tokio::time::timeout(shared.join_timeout, gathered.wait_for(|g| *g))
            .await
            .map_err(|_| anyhow!("ICE gathering did not complete"))??;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp;
        let answer = shared
            .api
            .gql(auth, OFFER, json!({ "s": session, "sdp": sdp }))
            .await
            .context("sendOffer")?;
        let answer = answer["sendOffer"]
            .as_str()
            .ok_or_else(|| anyhow!("sendOffer answered no SDP"))?;
        pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?)
            .await
            .context("applying the SFU's answer")?;
        ready_tx.send_replace(true);
        let left = shared.join_timeout.saturating_sub(started.elapsed());
        tokio::time::timeout(left, connected.wait_for(|c| *c))
            .await
            .map_err(|_| anyhow!("not connected within {:?}", shared.join_timeout))??;
        let list = match role {
            Role::Publisher => &shared.stats.join_ms_publishers,
            Role::Subscriber => &shared.stats.join_ms_subscribers,
        };
        Stats::record(list, started.elapsed());
        if let Some(sending) = sending {
            tasks.extend(start_media(shared, &pc, sending).await?);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    match result {
        Ok(()) => Ok(Participant { pc, tasks }),
        Err(e) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            Participant { pc, tasks }.close().await;
            Err(e)
        }
    }
}

/// Adds a publisher's camera (one encoding per layer) and microphone.
async fn add_tracks(
    shared: &Shared,
    pc: &Arc<dyn PeerConnection>,
    index: usize,
) -> Result<Sending> {
    let stream = format!("loadgen-{index}");
    let video_ssrcs: Vec<u32> = shared.layers.iter().map(|_| rand::random()).collect();
    let video = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream.clone(),
        format!("{stream}-camera"),
        "camera".into(),
        RtpCodecKind::Video,
        shared
            .layers
            .iter()
            .zip(&video_ssrcs)
            .map(|(layer, ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: layer.rid.to_owned(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: vp8(),
                ..Default::default()
            })
            .collect(),
    )));
    pc.add_track(Arc::clone(&video) as Arc<dyn TrackLocal>)
        .await
        .context("adding the camera")?;
    let audio_ssrc = rand::random();
    let audio = if shared.audio {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream.clone(),
            format!("{stream}-microphone"),
            "microphone".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(audio_ssrc),
                    ..Default::default()
                },
                codec: opus(),
                ..Default::default()
            }],
        )));
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .context("adding the microphone")?;
        Some(track)
    } else {
        None
    };
    Ok(Sending {
        video,
        video_ssrcs,
        audio,
        audio_ssrc,
    })
}

/// A participant's side of `sessionEvents`.
struct Signaling {
    pc: Arc<dyn PeerConnection>,
    api: Api,
    token: String,
    session: String,
    /// Set once the participant's own offer is answered.
    ready: watch::Receiver<bool>,
    stats: Arc<Stats>,
    /// The highest layer to ask for of every video track (subscribers), if any.
    layer: Option<&'static str>,
}

impl Signaling {
    /// Answers server offers (after `ready`), asks for the preferred layer of video tracks,
    /// replies to pings, reports the first event and errors.
    async fn run(mut self, mut ws: Ws, first: oneshot::Sender<()>) {
        let mut first = Some(first);
        // Video tracks whose layer is still to be asked for.
        let mut pending: Vec<String> = Vec::new();
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                changed = self.ready.changed(), if !*self.ready.borrow() => {
                    if changed.is_err() {
                        return;
                    }
                    self.prefer(&mut pending).await;
                    continue;
                }
            };
            let text = match msg {
                None | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.stats.error(format!("sessionEvents websocket: {e}"));
                    return;
                }
            };
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                self.stats.error(format!("sessionEvents: not JSON: {text}"));
                continue;
            };
            match value["type"].as_str() {
                Some("next") => {
                    if let Some(errors) = value["payload"].get("errors") {
                        self.stats.error(format!("sessionEvents: {errors}"));
                    }
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                    let event = &value["payload"]["data"]["sessionEvents"];
                    let video_ids = |tracks: &Value| -> Vec<String> {
                        tracks
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|t| t["kind"] == "VIDEO")
                            .filter_map(|t| t["id"].as_str().map(str::to_owned))
                            .collect()
                    };
                    match event["__typename"].as_str() {
                        Some("ServerOffer") => {
                            let Some(sdp) = event["sdp"].as_str() else {
                                continue;
                            };
                            if self.ready.wait_for(|r| *r).await.is_err() {
                                return;
                            }
                            if let Err(e) =
                                answer(&self.pc, &self.api, &self.token, &self.session, sdp).await
                            {
                                self.stats.error(format!("answering a server offer: {e:#}"));
                            }
                        }
                        Some("SessionSnapshot") if self.layer.is_some() => {
                            pending.extend(video_ids(&event["tracks"]));
                        }
                        Some("TrackPublished") if self.layer.is_some() => {
                            pending.extend(video_ids(&json!([event["track"]])));
                        }
                        Some("RemovedFromSession") | Some("SessionEnded") => return,
                        _ => {}
                    }
                    if *self.ready.borrow() {
                        self.prefer(&mut pending).await;
                    }
                }
                Some("ping") => {
                    let _ = ws
                        .send(Message::text(json!({ "type": "pong" }).to_string()))
                        .await;
                }
                Some("error") => {
                    self.stats
                        .error(format!("sessionEvents refused: {}", value["payload"]));
                    return;
                }
                Some("complete") => return,
                _ => {}
            }
        }
    }

    /// `setPreferredLayer` for each pending track.
    async fn prefer(&self, pending: &mut Vec<String>) {
        let Some(layer) = self.layer else {
            pending.clear();
            return;
        };
        for track in pending.drain(..) {
            let result = self
                .api
                .gql(
                    Auth::Bearer(&self.token),
                    "mutation($s: ID!, $t: ID!, $l: VideoLayer) { setPreferredLayer(sessionId: $s, trackId: $t, layer: $l) }",
                    json!({ "s": self.session, "t": track, "l": layer }),
                )
                .await;
            if let Err(e) = result {
                self.stats.error(format!("setPreferredLayer: {e:#}"));
            }
        }
    }
}

async fn answer(
    pc: &Arc<dyn PeerConnection>,
    api: &Api,
    token: &str,
    session: &str,
    sdp: &str,
) -> Result<()> {
    pc.set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let sdp = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?
        .sdp;
    api.gql(
        Auth::Bearer(token),
        ANSWER,
        json!({ "s": session, "sdp": sdp }),
    )
    .await
    .context("sendAnswer")?;
    Ok(())
}

/// Starts a publisher's senders: video frames at the frame rate on every layer (a keyframe
/// every `gop` frames and when a PLI or FIR asks), audio every 20 ms, and the RTCP listeners.
async fn start_media(
    shared: &Arc<Shared>,
    pc: &Arc<dyn PeerConnection>,
    sending: Sending,
) -> Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let (mut video_pt, mut mid_ext, mut rid_ext, mut audio_pt) = (None, None, None, None);
    for sender in pc.get_senders().await {
        let track = sender.track();
        let params = sender.get_parameters().await?;
        let pt = params.rtp_parameters.codecs.first().map(|c| c.payload_type);
        let ext = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|h| h.uri == uri)
                .map(|h| h.id as u8)
        };
        if track.kind().await == RtpCodecKind::Video {
            video_pt = pt;
            mid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:mid");
            rid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id");
        } else {
            audio_pt = pt;
        }
    }
    let video_pt = video_pt.ok_or_else(|| anyhow!("no payload type negotiated for video"))?;
    let simulcast = shared.layers.len() > 1;
    // The camera's media section (transceivers come in no promised order).
    let mut mid = None;
    for t in pc.get_transceivers().await {
        if let Ok(Some(sender)) = t.sender().await
            && sender.track().kind().await == RtpCodecKind::Video
        {
            mid = t.mid().await?;
        }
    }
    let mid = mid.ok_or_else(|| anyhow!("the camera's transceiver has no mid"))?;
    if simulcast && (mid_ext.is_none() || rid_ext.is_none()) {
        bail!("the mid and rid header extensions were not negotiated: no simulcast");
    }

    // Keyframe wanted, per layer.
    let wanted: Arc<Vec<AtomicBool>> = Arc::new(
        shared
            .layers
            .iter()
            .map(|_| AtomicBool::new(true))
            .collect(),
    );
    {
        let (track, wanted, ssrcs, stats) = (
            Arc::clone(&sending.video),
            Arc::clone(&wanted),
            sending.video_ssrcs.clone(),
            Arc::clone(&shared.stats),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                    continue;
                };
                for p in packets {
                    let mut targets = Vec::new();
                    if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                        targets.push(pli.media_ssrc);
                    } else if let Some(fir) = p.as_any().downcast_ref::<FullIntraRequest>() {
                        targets.extend(fir.fir.iter().map(|e| e.ssrc));
                    } else {
                        continue;
                    }
                    stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    for ssrc in targets {
                        match ssrcs.iter().position(|&s| s == ssrc) {
                            Some(i) => wanted[i].store(true, Ordering::Relaxed),
                            None => wanted.iter().for_each(|w| w.store(true, Ordering::Relaxed)),
                        }
                    }
                }
            }
        }));
    }

    let (track, layers, ssrcs, stats) = (
        Arc::clone(&sending.video),
        shared.layers.clone(),
        sending.video_ssrcs.clone(),
        Arc::clone(&shared.stats),
    );
    let (fps, gop) = (shared.fps, shared.gop);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq: Vec<u16> = layers.iter().map(|_| rand::random()).collect();
        let mut timestamp: u32 = rand::random();
        let mut picture_id: Vec<u16> = layers.iter().map(|_| rand::random()).collect();
        let sizes: Vec<(usize, usize)> = layers.iter().map(|l| l.frame_sizes(fps, gop)).collect();
        for frame in 0u64.. {
            tick.tick().await;
            timestamp = timestamp.wrapping_add(90_000 / fps);
            for (i, layer) in layers.iter().enumerate() {
                let keyframe =
                    wanted[i].swap(false, Ordering::Relaxed) || frame % u64::from(gop) == 0;
                if keyframe {
                    stats.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                let size = if keyframe { sizes[i].1 } else { sizes[i].0 };
                picture_id[i] = picture_id[i].wrapping_add(1) & 0x7fff;
                let payloads = media::vp8_frame(size, keyframe, picture_id[i], layer);
                let last = payloads.len() - 1;
                for (k, payload) in payloads.into_iter().enumerate() {
                    let mut header = rtc::rtp::header::Header {
                        version: 2,
                        marker: k == last,
                        payload_type: video_pt,
                        sequence_number: seq[i],
                        timestamp,
                        ssrc: ssrcs[i],
                        ..Default::default()
                    };
                    seq[i] = seq[i].wrapping_add(1);
                    if let (true, Some(m), Some(r)) = (simulcast, mid_ext, rid_ext) {
                        let _ =
                            header.set_extension(m, bytes::Bytes::from(mid.clone().into_bytes()));
                        let _ = header
                            .set_extension(r, bytes::Bytes::from_static(layer.rid.as_bytes()));
                    }
                    let packet = rtc::rtp::Packet {
                        header,
                        payload: bytes::Bytes::from(payload),
                    };
                    if track.write_rtp(packet).await.is_ok() {
                        stats.tx.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }));

    if let (Some(track), Some(pt)) = (sending.audio, audio_pt) {
        let listener = Arc::clone(&track);
        // Its RTCP reaches the application too (DeliverRtcp): read it so its queue never fills.
        tasks.push(tokio::spawn(async move {
            while listener.poll().await.is_some() {}
        }));
        let (ssrc, stats) = (sending.audio_ssrc, Arc::clone(&shared.stats));
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_secs(1) / media::OPUS_PACKETS_PER_SECOND;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq: u16 = rand::random();
            let mut timestamp: u32 = rand::random();
            let payload = bytes::Bytes::from(
                (0..media::OPUS_PAYLOAD)
                    .map(|i| (i as u8).wrapping_mul(7))
                    .collect::<Vec<u8>>(),
            );
            let mut first = true;
            loop {
                tick.tick().await;
                let header = rtc::rtp::header::Header {
                    version: 2,
                    marker: first,
                    payload_type: pt,
                    sequence_number: seq,
                    timestamp,
                    ssrc,
                    ..Default::default()
                };
                first = false;
                seq = seq.wrapping_add(1);
                timestamp = timestamp.wrapping_add(media::OPUS_TIMESTAMP_STEP);
                let packet = rtc::rtp::Packet {
                    header,
                    payload: payload.clone(),
                };
                if track.write_rtp(packet).await.is_ok() {
                    stats.tx.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    Ok(tasks)
}
