//! An in-memory WebRTC client peer for deterministic tests, on the sans-IO `rtc` 0.21.1 crate.
//!
//! No sockets, no wall clock, no sleeps: every call takes the test's `now`, datagrams are plain
//! byte vectors handed between [`Endpoint`]s by [`pump`] / [`pump_all`] / [`pump_filtered`], and
//! timers run only when the test advances its fake clock and pumps again.
//!
//! [`MemoryPeer`] plays a browser: a full (not lite) ICE agent, controlling, DTLS client (active),
//! with the SFU's codecs (Opus PT 111, VP8 PT 96 with `ccm fir`, `nack`, `nack pli`), the audio
//! level and simulcast (mid, rid, repaired rid) header extensions, and transport-wide congestion
//! control in both directions (it numbers what it sends and reports what it receives).
//!
//! Typical use, against anything that implements [`Endpoint`] (a server peer, an SFU engine):
//!
//! ```ignore
//! let mut client = MemoryPeer::new("alice", "10.0.0.1:5000".parse()?, now);
//! client.add_send_video("cam", true);
//! let answer = server_join(client.create_offer(now));
//! client.set_answer(&answer, now)?;
//! while !client.connected() { now += Duration::from_millis(5); pump(&mut client, &mut server, now); }
//! client.send_rtp("cam", Some("f"), vp8_packet(true, 0, 0, 0, 100), now)?;
//! ```
//!
//! The I/O methods (`handle_receive`, `poll_transmit`, `poll_timeout`, `handle_timeout`) are
//! those of [`Endpoint`]: bring it into scope. Only depends on `rtc`, `bytes` and `std`; usable
//! as a crate root or as a module (`#[path = ".."] mod memory;`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::interceptor::{
    Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet as IPacket, Registry, Slot,
    StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// Audio level header extension (RFC 6464), negotiated for audio as the SFU does.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// SDES mid header extension (video only, as in the SFU).
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// SDES rtp-stream-id (rid) header extension (video only).
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// Transport-wide congestion control sequence number extension.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// The simulcast rids [`MemoryPeer::add_send_video`] uses, lowest layer first.
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// A datagram in flight between two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Anything [`pump_all`] can move datagrams between: a [`MemoryPeer`], a test's server peer, an
/// SFU engine wrapper. Datagrams are routed by [`Endpoint::addr`].
pub trait Endpoint {
    /// The address datagrams to this endpoint are sent to (and its datagrams come from).
    fn addr(&self) -> SocketAddr;
    /// The next datagram to send and its destination, if any.
    fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)>;
    /// A datagram arrived from `from`.
    fn handle_receive(&mut self, data: &[u8], from: SocketAddr, now: Instant);
    /// When [`Endpoint::handle_timeout`] next has work.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
}

/// Moves datagrams between `a` and `b` at `now` until neither has any left (see [`pump_all`]).
pub fn pump(a: &mut dyn Endpoint, b: &mut dyn Endpoint, now: Instant) -> usize {
    pump_all(&mut [a, b], now)
}

/// Runs every endpoint's due timers, then delivers all pending datagrams to the endpoint whose
/// address they are sent to, repeating (timers, datagrams) until nothing is left to move at `now`.
/// Datagrams to unknown addresses are dropped. Returns how many datagrams were delivered.
pub fn pump_all(endpoints: &mut [&mut dyn Endpoint], now: Instant) -> usize {
    pump_filtered(endpoints, now, |_| true)
}

/// Like [`pump_all`], delivering only the datagrams `keep` accepts (the others are lost): the
/// hook for loss, reordering-free drops and inspection in tests.
pub fn pump_filtered(
    endpoints: &mut [&mut dyn Endpoint],
    now: Instant,
    mut keep: impl FnMut(&Datagram) -> bool,
) -> usize {
    // Bounds: a misbehaving endpoint (a timer stuck at `now`, endless ping-pong) must end a test,
    // not hang it.
    const MAX_ROUNDS: usize = 1_000;
    const MAX_TIMER_RUNS: usize = 16;
    let mut delivered = 0;
    for _ in 0..MAX_ROUNDS {
        for e in endpoints.iter_mut() {
            for _ in 0..MAX_TIMER_RUNS {
                match e.poll_timeout() {
                    Some(t) if t <= now => e.handle_timeout(now),
                    _ => break,
                }
            }
        }
        let mut flight = Vec::new();
        for e in endpoints.iter_mut() {
            let from = e.addr();
            while let Some((data, to)) = e.poll_transmit() {
                flight.push(Datagram { from, to, data });
            }
        }
        if flight.is_empty() {
            break;
        }
        for d in flight {
            if !keep(&d) {
                continue;
            }
            if let Some(e) = endpoints.iter_mut().find(|e| e.addr() == d.to) {
                e.handle_receive(&d.data, d.from, now);
                delivered += 1;
            }
        }
    }
    delivered
}

/// A remote track (one SSRC of it) this peer receives, as `rtc` announced it on its first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track id as this peer sees it (the sender's `msid` track id).
    pub track_id: String,
    pub ssrc: u32,
    /// The simulcast rid, when the sender used one.
    pub rid: Option<String>,
    pub kind: RtpCodecKind,
    pub receiver_id: RTCRtpReceiverId,
}

/// What a [`MemoryPeer`] saw happen; drained by [`MemoryPeer::take_events`].
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// Connection state changed (ICE and DTLS: `Connected` means both are up).
    State(RTCPeerConnectionState),
    /// First packet of a remote SSRC arrived.
    TrackOpened(TrackInfo),
    /// A remote track went away (by renegotiation).
    TrackClosed(String),
    /// `rtc` wants a new offer (tracks or transceivers changed).
    NegotiationNeeded,
}

/// An RTP packet this peer received (decrypted).
#[derive(Debug, Clone)]
pub struct Received {
    /// The `now` of the datagram that carried it.
    pub at: Instant,
    /// The track id as this peer sees it.
    pub track_id: String,
    pub ssrc: u32,
    /// The simulcast rid of its SSRC, if any.
    pub rid: Option<String>,
    /// Sequence number, timestamp, marker, payload type, extensions.
    pub header: rtp::header::Header,
    pub payload: Bytes,
}

/// One of our sending tracks: its sender and its encodings (rid, SSRC).
struct LocalTrack {
    track_id: String,
    sender: RTCRtpSenderId,
    encodings: Vec<(Option<String>, u32)>,
}

/// An in-memory WebRTC client peer (browser-like); see the module documentation.
pub struct MemoryPeer {
    name: String,
    addr: SocketAddr,
    pc: RTCPeerConnection,
    state: RTCPeerConnectionState,
    local: Vec<LocalTrack>,
    remote: Vec<TrackInfo>,
    events: Vec<PeerEvent>,
    received: Vec<Received>,
    rtcp: Arc<Mutex<Vec<Box<dyn rtc::rtcp::Packet>>>>,
    errors: Vec<String>,
    /// Sender SSRC of our RTCP feedback.
    rtcp_ssrc: u32,
    next_ssrc: u32,
}

impl MemoryPeer {
    /// A client peer named `name` (SSRCs are derived from it, so they are stable across runs),
    /// reachable at `addr` (its only ICE host candidate). Panics if `rtc` refuses the setup.
    pub fn new(name: &str, addr: SocketAddr, now: Instant) -> MemoryPeer {
        let rtcp = Arc::new(Mutex::new(Vec::new()));
        let (media, registry) = client_media_setup(Arc::clone(&rtcp)).expect("media setup");
        let settings = SettingEngineBuilder::new()
            // Stays the DTLS client when it answers a re-offer too.
            .with_answering_dtls_role(RTCDtlsRole::Client)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .expect("peer connection");
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("host candidate");
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .expect("candidate");
        pc.add_local_candidate(init).expect("local candidate");
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .expect("end of candidates");
        // FNV-1a of the name: distinct, stable SSRCs per peer.
        let next_ssrc = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }) | 1;
        let mut peer = MemoryPeer {
            name: name.to_owned(),
            addr,
            pc,
            state: RTCPeerConnectionState::New,
            local: Vec::new(),
            remote: Vec::new(),
            events: Vec::new(),
            received: Vec::new(),
            rtcp,
            errors: Vec::new(),
            rtcp_ssrc: next_ssrc,
            next_ssrc,
        };
        peer.drain();
        peer
    }

    /// The underlying `rtc` connection, for what this harness does not wrap.
    pub fn pc(&mut self) -> &mut RTCPeerConnection {
        &mut self.pc
    }

    fn ssrc(&mut self) -> u32 {
        self.next_ssrc = self.next_ssrc.wrapping_add(0x9e37_79b9);
        self.next_ssrc
    }

    /// Stops sending `track_id` (as a browser's `removeTrack`: its section goes inactive).
    /// Takes effect with the next offer.
    pub fn remove_send(&mut self, track_id: &str) -> Result<(), Error> {
        let i = self
            .local
            .iter()
            .position(|t| t.track_id == track_id)
            .ok_or_else(|| Error::Other(format!("no local track {track_id}")))?;
        let track = self.local.remove(i);
        self.pc.remove_track(track.sender)
    }

    /// Publishes a VP8 track `track_id` (stream `"<name>-stream"`): one encoding, or with
    /// `simulcast` three with rids q, h, f, each on its own SSRC. Returns the SSRCs in that order.
    /// Takes effect with the next offer.
    pub fn add_send_video(&mut self, track_id: &str, simulcast: bool) -> Vec<u32> {
        let rids = if simulcast {
            SIMULCAST_RIDS.map(Some).to_vec()
        } else {
            vec![None]
        };
        self.add_send(track_id, RtpCodecKind::Video, vp8(), &rids)
    }

    /// Publishes an Opus track `track_id`. Returns its SSRC.
    pub fn add_send_audio(&mut self, track_id: &str) -> u32 {
        self.add_send(track_id, RtpCodecKind::Audio, opus(), &[None])[0]
    }

    fn add_send(
        &mut self,
        track_id: &str,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        rids: &[Option<&str>],
    ) -> Vec<u32> {
        let encodings: Vec<(Option<String>, u32)> = rids
            .iter()
            .map(|rid| (rid.map(str::to_owned), self.ssrc()))
            .collect();
        let track = MediaStreamTrack::new(
            format!("{}-stream", self.name),
            track_id.to_owned(),
            track_id.to_owned(),
            kind,
            encodings
                .iter()
                .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: rid.clone().unwrap_or_default(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                })
                .collect(),
        );
        let sender = self.pc.add_track(track).expect("add_track");
        let ssrcs = encodings.iter().map(|(_, s)| *s).collect();
        self.local.push(LocalTrack {
            track_id: track_id.to_owned(),
            sender,
            encodings,
        });
        self.drain();
        ssrcs
    }

    /// Adds a receive-only transceiver of `kind` (what a viewer offers to get a connection up).
    pub fn add_recv_only(&mut self, kind: RtpCodecKind) {
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        };
        self.pc
            .add_transceiver_from_kind(kind, Some(init))
            .expect("add_transceiver_from_kind");
        self.drain();
    }

    /// Creates an offer, sets it as the local description and returns its SDP (candidates
    /// included: no trickle). Panics if `rtc` refuses.
    pub fn create_offer(&mut self, now: Instant) -> String {
        let offer = self.pc.create_offer(None).expect("create_offer");
        self.pc
            .set_local_description(now, offer)
            .expect("set_local_description(offer)");
        self.drain();
        self.pc.local_description().expect("local description").sdp
    }

    /// Applies the other side's answer to our offer.
    pub fn set_answer(&mut self, sdp: &str, now: Instant) -> Result<(), Error> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())?;
        let result = self.pc.set_remote_description(now, answer);
        self.drain();
        result
    }

    /// Applies an offer made by the other side (e.g. a server renegotiation) and returns our
    /// answer, already set as the local description.
    pub fn accept_offer(&mut self, sdp: &str, now: Instant) -> Result<String, Error> {
        let offer = RTCSessionDescription::offer(sdp.to_owned())?;
        self.pc.set_remote_description(now, offer)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        self.drain();
        Ok(self
            .pc
            .local_description()
            .ok_or_else(|| Error::Other("no local description".into()))?
            .sdp)
    }

    /// ICE and DTLS are up (the last connection state seen was `Connected`).
    pub fn connected(&self) -> bool {
        self.state == RTCPeerConnectionState::Connected
    }

    /// The last connection state seen.
    pub fn state(&self) -> RTCPeerConnectionState {
        self.state
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<PeerEvent> {
        std::mem::take(&mut self.events)
    }

    /// Every remote SSRC opened so far (not drained).
    pub fn remote_tracks(&self) -> &[TrackInfo] {
        &self.remote
    }

    /// RTP received since the last call, in arrival order.
    pub fn take_received(&mut self) -> Vec<Received> {
        std::mem::take(&mut self.received)
    }

    /// RTCP packets received since the last call (every packet of every compound, reports
    /// included; downcast with `as_any()`), as they came off the wire after decryption.
    pub fn take_rtcp(&mut self) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        std::mem::take(&mut *self.rtcp.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Errors `rtc` returned from `handle_read` / `handle_timeout` (not fatal; for diagnosis).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The SSRCs of a track we publish, in encoding order.
    pub fn local_ssrcs(&self, track_id: &str) -> Vec<u32> {
        self.local
            .iter()
            .filter(|t| t.track_id == track_id)
            .flat_map(|t| t.encodings.iter().map(|(_, s)| *s))
            .collect()
    }

    /// The negotiated id of header extension `uri` on a track we publish (e.g. [`AUDIO_LEVEL_URI`]
    /// to set an audio level before [`MemoryPeer::send_rtp`]).
    pub fn extension_id(&mut self, track_id: &str, uri: &str) -> Option<u8> {
        let sender = self.local.iter().find(|t| t.track_id == track_id)?.sender;
        let (_, extensions) = self.sender_params(sender)?;
        extensions
            .into_iter()
            .find(|(u, _)| u == uri)
            .map(|(_, id)| id)
    }

    /// The negotiated payload type and header extensions `(uri, id)` of one of our senders.
    fn sender_params(&mut self, sender: RTCRtpSenderId) -> Option<(u8, Vec<(String, u8)>)> {
        let mut sender = self.pc.rtp_sender(sender)?;
        let p = &sender.get_parameters().rtp_parameters;
        let ext = p.header_extensions.iter();
        let ext = ext.filter_map(|h| Some((h.uri.clone(), u8::try_from(h.id).ok()?)));
        Some((p.codecs.first()?.payload_type, ext.collect()))
    }

    /// Sends `packet` on our track `track_id` (encoding `rid`; `None` without simulcast). Fills in
    /// what the caller cannot know: the encoding's SSRC, the negotiated payload type, and the mid
    /// and rid header extensions when negotiated (video; rtc's `write_rtp` adds neither, and the
    /// receiver drops simulcast packets without them). Sequence number, timestamp, marker,
    /// payload and other extensions are the caller's; the transport-wide sequence number is
    /// added by rtc's TWCC sender. Datagrams are queued for [`Endpoint::poll_transmit`].
    pub fn send_rtp(
        &mut self,
        track_id: &str,
        rid: Option<&str>,
        mut packet: rtp::Packet,
        now: Instant,
    ) -> Result<(), Error> {
        let unknown = || Error::Other(format!("no local track {track_id} rid {rid:?}"));
        let track = self.local.iter().find(|t| t.track_id == track_id);
        let track = track.ok_or_else(unknown)?;
        let sender_id = track.sender;
        let encoding = track.encodings.iter().find(|(r, _)| r.as_deref() == rid);
        let ssrc = encoding.ok_or_else(unknown)?.1;
        let mid = self.mid_of(sender_id);
        let (pt, extensions) = self.sender_params(sender_id).ok_or_else(unknown)?;
        let ext = |uri: &str| extensions.iter().find(|(u, _)| u == uri).map(|(_, id)| *id);
        packet.header.version = 2;
        packet.header.ssrc = ssrc;
        packet.header.payload_type = pt;
        if let (Some(id), Some(mid)) = (ext(MID_URI), mid) {
            packet.header.set_extension(id, Bytes::from(mid))?;
        }
        if let (Some(id), Some(rid)) = (ext(RID_URI), rid) {
            packet
                .header
                .set_extension(id, Bytes::from(rid.to_owned()))?;
        }
        let mut sender = self.pc.rtp_sender(sender_id).ok_or_else(unknown)?;
        let result = sender.write_rtp(now, packet);
        self.drain();
        result
    }

    /// The mid of the transceiver of `sender` (known once a description assigned it).
    fn mid_of(&mut self, sender: RTCRtpSenderId) -> Option<String> {
        let ids: Vec<_> = self.pc.get_transceivers().collect();
        ids.into_iter().find_map(|id| {
            let t = self.pc.rtp_transceiver(id)?;
            (t.sender() == Some(sender))
                .then(|| t.mid().clone())
                .flatten()
        })
    }

    /// Sends RTCP about the remote SSRC `media_ssrc` (one we receive), through its receiver.
    pub fn send_rtcp(
        &mut self,
        media_ssrc: u32,
        packets: Vec<Box<dyn rtc::rtcp::Packet>>,
        now: Instant,
    ) -> Result<(), Error> {
        let ids: Vec<RTCRtpReceiverId> = self.pc.get_receivers().collect();
        let id = ids
            .into_iter()
            .find(|id| {
                self.pc
                    .rtp_receiver(*id)
                    .is_some_and(|r| r.track().ssrcs().any(|s| s == media_ssrc))
            })
            .ok_or_else(|| Error::Other(format!("no receiver for ssrc {media_ssrc}")))?;
        let mut receiver = self
            .pc
            .rtp_receiver(id)
            .ok_or(Error::ErrRTPReceiverNotExisted)?;
        let result = receiver.write_rtcp(now, packets);
        self.drain();
        result
    }

    /// Asks the sender of `media_ssrc` for a keyframe (RTCP PLI).
    pub fn send_pli(&mut self, media_ssrc: u32, now: Instant) -> Result<(), Error> {
        let pli = PictureLossIndication {
            sender_ssrc: self.rtcp_ssrc,
            media_ssrc,
        };
        self.send_rtcp(media_ssrc, vec![Box::new(pli)], now)
    }

    /// Asks the sender of `media_ssrc` to retransmit `lost` sequence numbers (RTCP generic NACK).
    pub fn send_nack(&mut self, media_ssrc: u32, lost: &[u16], now: Instant) -> Result<(), Error> {
        let nack = TransportLayerNack {
            sender_ssrc: self.rtcp_ssrc,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(lost),
        };
        self.send_rtcp(media_ssrc, vec![Box::new(nack)], now)
    }

    /// Collects `rtc`'s events and decrypted RTP (called after every input).
    fn drain(&mut self) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    self.state = state;
                    self.events.push(PeerEvent::State(state));
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let kind = self
                        .pc
                        .rtp_receiver(init.receiver_id)
                        .map_or(RtpCodecKind::Unspecified, |r| r.track().kind());
                    let info = TrackInfo {
                        track_id: init.track_id,
                        ssrc: init.ssrc,
                        rid: init.rid,
                        kind,
                        receiver_id: init.receiver_id,
                    };
                    self.remote.retain(|t| t.ssrc != info.ssrc);
                    self.remote.push(info.clone());
                    self.events.push(PeerEvent::TrackOpened(info));
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(id)) => {
                    self.events.push(PeerEvent::TrackClosed(id));
                }
                RTCPeerConnectionEvent::OnNegotiationNeededEvent => {
                    self.events.push(PeerEvent::NegotiationNeeded);
                }
                _ => {}
            }
        }
        while let Some(msg) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(track_id, packet) = msg.message {
                let ssrc = packet.header.ssrc;
                let rid = self
                    .remote
                    .iter()
                    .find(|t| t.ssrc == ssrc)
                    .and_then(|t| t.rid.clone());
                self.received.push(Received {
                    at: msg.now,
                    track_id,
                    ssrc,
                    rid,
                    header: packet.header,
                    payload: packet.payload,
                });
            }
        }
    }
}

/// The I/O of a [`MemoryPeer`] (bring [`Endpoint`] into scope to call these).
impl Endpoint for MemoryPeer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        let out = self.pc.poll_write()?;
        Some((out.message.to_vec(), out.transport.peer_addr))
    }
    fn handle_receive(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let transport = TransportContext {
            local_addr: self.addr,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        };
        let message = BytesMut::from(data);
        if let Err(e) = self.pc.handle_read(TaggedBytesMut {
            now,
            transport,
            message,
        }) {
            self.errors.push(format!("handle_read: {e}"));
        }
        self.drain();
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }
    /// Runs `rtc`'s timers (ICE checks, DTLS retransmits, RTCP reports, NACKs, TWCC feedback).
    fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            self.errors.push(format!("handle_timeout: {e}"));
        }
        self.drain();
    }
}

/// Opus, as the SFU registers it.
pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

/// VP8, as the SFU registers it (feedback is added by the media engine).
pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The client's codecs, extensions and interceptors: the SFU's `media_setup` plus a TWCC sender,
/// and a tap that copies inbound RTCP into `rtcp`.
fn client_media_setup(
    rtcp: Arc<Mutex<Vec<Box<dyn rtc::rtcp::Packet>>>>,
) -> Result<(MediaEngine, Registry), Error> {
    let mut media = MediaEngine::default();
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let opus = RTCRtpCodecParameters {
        rtp_codec: opus(),
        payload_type: 111,
    };
    media.register_codec(opus, RtpCodecKind::Audio)?;
    let vp8 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            rtcp_feedback: vec![
                feedback("ccm", "fir"),
                feedback("nack", ""),
                feedback("nack", "pli"),
            ],
            ..vp8()
        },
        payload_type: 96,
    };
    media.register_codec(vp8, RtpCodecKind::Video)?;
    let audio_level = RTCRtpHeaderExtensionCapability {
        uri: AUDIO_LEVEL_URI.to_owned(),
    };
    media.register_header_extension(audio_level, RtpCodecKind::Audio, None)?;
    configure_simulcast_extension_headers(&mut media)?;
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build());
    // Sender and receiver: the client numbers its packets and reports the SFU's.
    let registry = configure_twcc(registry, &mut media)?;
    let registry = configure_rtcp_reports(registry).with(Slot::from(500), RtcpTap::new(rtcp));
    Ok((media, registry))
}

/// Copies every inbound RTCP packet into a shared list, wire-most (slot 500, below every other
/// interceptor, so nothing has consumed or filtered it yet). Passes everything through unchanged.
struct RtcpTap {
    seen: Arc<Mutex<Vec<Box<dyn rtc::rtcp::Packet>>>>,
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

impl RtcpTap {
    fn new(seen: Arc<Mutex<Vec<Box<dyn rtc::rtcp::Packet>>>>) -> RtcpTap {
        RtcpTap {
            seen,
            read: Default::default(),
            write: Default::default(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.extend(packets.iter().map(|p| p.cloned()));
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// A one-packet VP8 frame (marker set, PT 96, SSRC 0: [`MemoryPeer::send_rtp`] fills in both).
///
/// Payload: the RFC 7741 descriptor `X=1 S=1 PID=0` with a 15-bit picture id, then an RFC 6386
/// frame header whose first bit is the inverse keyframe flag (a keyframe also carries the start
/// code `9d 01 2a` and a 320x180 size), then `filler` bytes of 0xab (at least 1).
pub fn vp8_packet(
    keyframe: bool,
    seq: u16,
    ts: u32,
    picture_id: u16,
    filler: usize,
) -> rtp::Packet {
    let filler = filler.max(1);
    let mut payload = vec![
        0x90, // X, S, partition 0
        0x80, // I: picture id present
        0x80 | ((picture_id >> 8) as u8 & 0x7f),
        picture_id as u8,
    ];
    // Frame tag (RFC 6386 9.1): bit 0 = !keyframe, version 0, show_frame, and the first
    // partition's size (the filler; the 3- or 10-byte uncompressed chunk is not counted).
    let tag = u32::from(!keyframe) | (1 << 4) | ((filler as u32 & 0x7_ffff) << 5);
    payload.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        payload.extend_from_slice(&320u16.to_le_bytes());
        payload.extend_from_slice(&180u16.to_le_bytes());
    }
    payload.resize(payload.len() + filler, 0xab);
    packet(96, seq, ts, true, payload)
}

/// A 20 ms Opus packet (PT 111, SSRC 0): TOC byte `0xfc` (CELT fullband 20 ms, stereo, one
/// frame) followed by `size` bytes of 0x5a (at least 1). Marker clear.
pub fn opus_packet(seq: u16, ts: u32, size: usize) -> rtp::Packet {
    let mut payload = vec![0xfc];
    payload.resize(1 + size.max(1), 0x5a);
    packet(111, seq, ts, false, payload)
}

fn packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}
