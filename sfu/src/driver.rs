//! The media engine of one shard: WebRTC peer connections (webrtc-rs `rtc`, sans-IO), rooms,
//! producers (published tracks) and consumers (one per subscriber and track), and forwarding
//! between them with [`crate::media::forwarder::Forwarder`].
//!
//! Owned by the shard thread. It is fed datagrams, commands and timeouts with `now`, and drained
//! for datagrams to send; it never touches a socket or reads the clock itself. ICE-lite, DTLS in
//! the server role, one UDP port for all peers: datagrams are routed by STUN USERNAME (our ufrag),
//! then by source address (learned from every datagram a peer sends out).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::interceptor::{
    Attribute, Interceptor, Packet as IPacket, Registry, Slot, StreamInfo, TaggedPacket,
};
use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::media::allocator::{self, Need};
use crate::media::bwe::{BandwidthEstimator, PacketResult};
use crate::media::forwarder::{Decision, Forwarder, PacketInfo};
use crate::media::keyframes::KeyframeRequests;
use crate::media::rate::RateMeter;
use crate::media::speaker::SpeakerDetector;
use crate::media::vp8;
use crate::sdp_check::{self, Role, SdpError};
use crate::throttle::LogThrottle;

/// Identifies a peer across the SFU (allocated by the [`crate::Sfu`] handle).
pub type PeerId = u64;

/// What the SFU tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SfuEvent {
    /// ICE and DTLS completed.
    PeerConnected { peer: PeerId },
    /// The connection failed or closed; the peer is gone.
    PeerDisconnected { peer: PeerId },
    /// A peer's track started (first packet arrived).
    TrackPublished {
        peer: PeerId,
        track: String,
        video: bool,
    },
    /// A peer's track ended (the peer left or was removed).
    TrackUnpublished { peer: PeerId, track: String },
    /// The server offers a new session description to `peer` (tracks came or went); answer it
    /// with [`crate::Sfu::answer`].
    Offer { peer: PeerId, sdp: String },
    /// The dominant speaker of a room changed (from audio levels, with hysteresis).
    ActiveSpeaker { room: String, peer: PeerId },
    /// The simulcast layer `subscriber` receives of `source`'s `track` changed (`None`: paused).
    LayerChanged {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        layer: Option<u8>,
    },
    /// The bandwidth estimated towards `peer` moved by 10 % or more.
    BandwidthEstimate { peer: PeerId, bps: u64 },
    /// A fault in the room's code closed it; its peers are disconnected. Other rooms go on.
    RoomClosed { room: String, reason: String },
}

/// A publisher's RTP packet as received (decrypted), for an in-process consumer such as the
/// recorder ([`crate::Sfu::tap`]).
#[derive(Debug, Clone)]
pub struct TappedPacket {
    pub source: PeerId,
    pub track: String,
    /// VP8 video, or Opus audio.
    pub video: bool,
    /// Simulcast layer (0 without simulcast).
    pub layer: u8,
    /// Starts a VP8 keyframe (always true for audio).
    pub keyframe: bool,
    pub packet: rtp::Packet,
}

/// What a peer may do in its room, decided by the SFU's user (the gateway, from the member's
/// role) and enforced on the media path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRights {
    /// May publish tracks. Without it a peer gets no producer whatever its descriptions say.
    pub publish: bool,
}

impl PeerRights {
    /// May publish (and receive).
    pub const PUBLISHER: PeerRights = PeerRights { publish: true };
    /// Receives only.
    pub const VIEWER: PeerRights = PeerRights { publish: false };
}

/// Why joining failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    #[error("the offer is not a valid session description: {0}")]
    BadOffer(String),
    #[error("the peer connection could not be set up: {0}")]
    Setup(String),
    #[error("the SFU is shutting down")]
    Closed,
    #[error("no such peer")]
    UnknownPeer,
}

impl From<SdpError> for JoinError {
    fn from(e: SdpError) -> JoinError {
        JoinError::BadOffer(e.to_string())
    }
}

/// Why a peer's answer to a server offer was refused. A refused answer changes nothing: the
/// server offer stays pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("no such peer")]
    UnknownPeer,
    #[error("no server offer is waiting for an answer")]
    NoOfferPending,
    #[error("the answer cannot be applied: {0}")]
    BadAnswer(String),
    #[error("the SFU is shutting down")]
    Closed,
}

impl From<SdpError> for AnswerError {
    fn from(e: SdpError) -> AnswerError {
        AnswerError::BadAnswer(e.to_string())
    }
}

/// Why a peer's trickled ICE candidate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    #[error("no such peer")]
    UnknownPeer,
    #[error("not an ICE candidate: {0}")]
    BadCandidate(String),
    #[error("the SFU is shutting down")]
    Closed,
}

/// Requests to a shard.
pub(crate) enum Command {
    Join {
        room: String,
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
    Subscribe {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        subscribe: bool,
    },
    Pause {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        paused: bool,
    },
    RequestKeyframe {
        peer: PeerId,
        track: String,
    },
    SetTemporal {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        max: u8,
    },
    CloseRoom {
        room: String,
    },
    /// Plain RTP of `room`'s tracks published on this shard goes to `tap`.
    Tap {
        room: String,
        tap: mpsc::Sender<TappedPacket>,
    },
    Leave {
        peer: PeerId,
    },
    SetLayer {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        layer: Option<u8>,
    },
    SetPriority {
        subscriber: PeerId,
        source: PeerId,
        track: String,
        priority: u8,
    },
    /// Every shard's mailbox (for pipes), in shard order; sent once at start.
    Mailboxes(Vec<crate::shard::Mailbox>),
    /// The shards that host members of `room` now (this one may have left it).
    LinkRoom {
        room: String,
        shards: Vec<usize>,
    },
    /// A publisher on shard `origin` published a track in `room`.
    PipeTrack {
        room: String,
        origin: usize,
        source: PeerId,
        track: String,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
    },
    /// A piped track ended.
    PipeUntrack {
        source: PeerId,
        track: String,
    },
    /// Packets of piped tracks.
    Pipe(Vec<PipedPacket>),
    /// A subscriber on another shard needs a keyframe of this shard's `source`'s `track`.
    PipeKeyframe {
        source: PeerId,
        track: String,
    },
    /// Fault injection for tests: panic while working on `room`.
    InjectPanic {
        room: String,
    },
    Stats {
        peer: PeerId,
        reply: oneshot::Sender<Option<PeerStats>>,
    },
}

/// What one peer publishes and receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub peer: PeerId,
    pub room: String,
    /// The shard the peer is on.
    pub shard: usize,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// What the peer may do now.
    pub rights: PeerRights,
    /// Bandwidth estimated towards the peer, once its congestion feedback has arrived.
    pub estimate_bps: Option<u64>,
    pub producers: Vec<ProducerStats>,
    pub consumers: Vec<ConsumerStats>,
}

/// One published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStats {
    pub track: String,
    pub video: bool,
    /// (SSRC, simulcast layer) of each stream.
    pub streams: Vec<(u32, u8)>,
}

/// One received track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The publishing peer and its track.
    pub source: PeerId,
    pub track: String,
    /// The SSRC this subscriber sees.
    pub ssrc: u32,
    /// Layer forwarded now, and layer wanted (`None`: paused or not started).
    pub current_layer: Option<u8>,
    pub target_layer: Option<u8>,
    /// The highest layer the subscriber asked for (`None`: paused by the subscriber).
    pub preferred_layer: Option<u8>,
    /// Packets sent to this subscriber for this track.
    pub packets: u64,
}

/// What the engine is working on, so that a panic can be pinned to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Peer(PeerId),
    Room(String),
}

/// Counters of the engine (read by the shard for its stats).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EngineCounters {
    /// Packets handed to other shards of their room.
    pub rtp_piped: u64,
    pub rtp_in: u64,
    pub rtp_forwarded: u64,
    pub forward_errors: u64,
    /// RTP packets dropped unrouted: from peers without the publish right, or on a track closed
    /// when the right was revoked.
    pub rtp_refused: u64,
    pub keyframe_requests_sent: u64,
    pub unknown_source: u64,
    /// Offers, answers and candidates from peers refused (nothing of them applied).
    pub signaling_refused: u64,
    /// Server offers that could not be made (tried again on the next round).
    pub server_offer_errors: u64,
    /// Datagrams from known peers that `rtc` refused (bad STUN, DTLS or SRTP).
    pub datagrams_refused: u64,
}

/// Log lines a peer could make repeat at packet or loop rate, one [`LogThrottle`] each.
#[derive(Debug, Default)]
struct Throttles {
    datagram_refused: LogThrottle,
    write_failed: LogThrottle,
    signaling_refused: LogThrottle,
}

/// Lets inbound RTCP reach the application: `rtc` drops RTCP not marked for delivery. Keeps only
/// what the SFU acts on (PLI, FIR, transport-wide congestion feedback); a compound whose first
/// packet is an empty receiver report would otherwise be dropped whole.
///
/// `rtc` hands RTCP to the application under the track its media SSRC names. Congestion feedback
/// is about the whole connection and may name any SSRC (libwebrtc names one of its own), so it is
/// re-addressed to one of the streams this connection sends.
#[derive(Default)]
struct DeliverRtcp {
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
    /// SSRCs of the streams this connection sends (the consumers).
    local_ssrcs: Vec<u32>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverRtcp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            let local = self.local_ssrcs.first().copied();
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter_map(|p| {
                    let any = p.as_any();
                    if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                        return Some(p.clone());
                    }
                    let feedback = any.downcast_ref::<TransportLayerCc>()?;
                    let mut feedback = feedback.clone();
                    if !self.local_ssrcs.contains(&feedback.media_ssrc) {
                        feedback.media_ssrc = local?;
                    }
                    Some(Box::new(feedback) as Box<dyn rtc::rtcp::Packet>)
                })
                .collect();
            if !keep.is_empty() {
                msg.message.packet = IPacket::Rtcp(keep);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for DeliverRtcp {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.local_ssrcs.push(info.ssrc);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local_ssrcs.retain(|s| *s != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// The audio level header extension (RFC 6464).
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Header extensions forwarded to subscribers, with their ids remapped to each subscriber's
/// numbering. The others describe the publisher's own connection (mid, rid, transport-wide
/// sequence numbers, send times) and are not forwarded.
const FORWARDED_EXTENSIONS: &[&str] = &[
    AUDIO_LEVEL_URI,
    "urn:3gpp:video-orientation",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
];

/// The transport-wide sequence number extension (congestion control feedback refers to it).
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Every u16 in big-endian order: the transport-wide sequence number extension's payload is a
/// slice of this table, so stamping a packet allocates nothing.
static SEQUENCE_BYTES: [u8; 131_072] = {
    let mut table = [0u8; 131_072];
    let mut i = 0;
    while i < 65_536 {
        table[2 * i] = (i >> 8) as u8;
        table[2 * i + 1] = i as u8;
        i += 1;
    }
    table
};

/// Bandwidth estimation bounds and starting point for a subscriber, in bits per second.
const BWE_INITIAL_BPS: u64 = 1_500_000;
const BWE_MIN_BPS: u64 = 100_000;
const BWE_MAX_BPS: u64 = 20_000_000;
/// A bandwidth estimate event goes out when the estimate moved by this share since the last one.
const BWE_EVENT_CHANGE: f64 = 0.10;

/// How often subscribers' layers are reviewed without feedback.
const REVIEW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Consumer priorities for sharing bandwidth (higher first).
pub(crate) const PRIORITY_THUMBNAIL: u8 = 0;
pub(crate) const PRIORITY_GRID: u8 = 1;
pub(crate) const PRIORITY_SPEAKER: u8 = 2;

/// A room: its members and its dominant-speaker detector.
#[derive(Default)]
struct Room {
    members: Vec<PeerId>,
    speakers: SpeakerDetector<PeerId>,
    /// The dominant speaker now (its consumers get [`PRIORITY_SPEAKER`]).
    speaker: Option<PeerId>,
    /// Other shards with members of this room: this shard's publishers are piped to them.
    links: Vec<usize>,
}

/// A track a peer publishes.
struct Producer {
    track_id: String,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    /// `None` for a producer piped from another shard.
    receiver_id: Option<RTCRtpReceiverId>,
    /// (SSRC, simulcast layer) of its streams.
    ssrcs: Vec<(u32, u8)>,
    keyframes: KeyframeRequests,
    /// Forwardable extensions as the publisher numbers them: (id, URI). Read on the first packet;
    /// shared so that forwarding does not copy it.
    extensions: Option<std::sync::Arc<[(u8, String)]>>,
    /// The publisher's id of the audio level extension.
    audio_level_id: Option<u8>,
    /// Bitrate of each simulcast layer as received (new packets only, not retransmissions).
    rates: [RateMeter; 3],
    /// Highest sequence number seen on each layer.
    highest_seq: [Option<u16>; 3],
}

impl Producer {
    /// Counts a packet in its layer's bitrate, unless it is a retransmission (not newer than what
    /// the layer had).
    fn count(&mut self, layer: u8, packet: &rtp::Packet, now: Instant) {
        let l = usize::from(layer.min(2));
        let seq = packet.header.sequence_number;
        if self.highest_seq[l].is_none_or(|h| seq.wrapping_sub(h).wrapping_sub(1) < 0x8000) {
            self.highest_seq[l] = Some(seq);
            self.rates[l].add(packet.header.marshal_size() + packet.payload.len(), now);
        }
    }
}

/// What the shard that received a packet learned of it, passed along with it to the other shards
/// of its room.
#[derive(Clone)]
pub(crate) struct Ingress {
    info: PacketInfo,
    video: bool,
    /// Audio level (RFC 6464), if the packet carries one.
    level: Option<u8>,
    /// Forwardable header extensions as the publisher numbers them.
    extensions: std::sync::Arc<[(u8, String)]>,
}

/// A publisher's packet on its way to another shard of its room.
pub(crate) struct PipedPacket {
    source: PeerId,
    track: String,
    packet: rtp::Packet,
    ingress: Ingress,
}

/// A publisher on another shard, as this shard knows it: the tracks it pipes here.
struct RemotePublisher {
    room: String,
    /// The shard the publisher is on.
    origin: usize,
    producers: Vec<Producer>,
}

/// A track a peer receives from another peer's producer.
struct Consumer {
    source: (PeerId, String),
    sender_id: RTCRtpSenderId,
    ssrc: u32,
    mime: String,
    payload_type: Option<u8>,
    /// Publisher extension id -> this subscriber's id (0: not forwarded). Built on first use,
    /// with `twcc_id`.
    extension_map: Option<Box<[u8; 256]>>,
    /// This subscriber's id of the transport-wide sequence number extension (0: not negotiated).
    twcc_id: u8,
    /// The highest layer the subscriber wants (`None`: paused by the subscriber).
    preferred: Option<u8>,
    /// Set by the subscriber (pinned, grid, thumbnail); the room's speaker is raised above it.
    priority: u8,
    /// Paused by the subscriber (the preferred layer is kept for when it resumes).
    paused: bool,
    forwarder: Forwarder,
    /// Packets sent.
    packets: u64,
}

struct Peer {
    room: String,
    /// What it may do (publish or not).
    rights: PeerRights,
    pc: RTCPeerConnection,
    connected: bool,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    /// Tracks changed: an offer must be sent.
    renegotiate: bool,
    /// An offer was sent and not answered yet.
    offer_pending: bool,
    /// The last attempt at a server offer failed (logged once, until one succeeds).
    offer_failing: bool,
    /// Send-side bandwidth estimation of what the SFU sends this peer.
    bwe: BandwidthEstimator,
    /// Transport-wide sequence number of the next packet sent to this peer.
    transport_seq: u16,
    /// Congestion feedback arrived: the estimate drives its consumers' layers.
    feedback_seen: bool,
    /// Congestion feedback arrived since the last review.
    fresh_feedback: bool,
    /// The estimate last reported in an event.
    reported_bps: Option<u64>,
}

/// The engine of one shard.
pub(crate) struct Engine {
    local_addr: SocketAddr,
    /// The ICE-TCP listener's address, if enabled.
    tcp_addr: Option<SocketAddr>,
    ice_address: std::net::IpAddr,
    /// ICE consent: disconnected after the first, failed (and removed) after both.
    ice_timeouts: (std::time::Duration, std::time::Duration),
    peers: HashMap<PeerId, Peer>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    rooms: HashMap<String, Room>,
    events: mpsc::UnboundedSender<SfuEvent>,
    next_ssrc: u32,
    pub counters: EngineCounters,
    /// Log lines that could repeat at packet rate.
    throttles: Throttles,
    /// The shard's DTLS certificate, made once and shared by its connections (as Janus and
    /// mediasoup do per worker): `rtc` would otherwise make a key pair and a self-signed
    /// certificate for every connection, the largest part of a join's cost. Renewed when close
    /// to expiry.
    certificate: Option<RTCCertificate>,
    /// What is being worked on now (see [`Scope`]).
    pub(crate) scope: Option<Scope>,
    /// When subscribers' layers are next reviewed without waiting for feedback.
    next_review: Option<Instant>,
    /// This shard's number, and how many there are.
    index: usize,
    shard_count: usize,
    /// Every shard's mailbox, in shard order (empty until the handle sends them).
    mailboxes: Vec<crate::shard::Mailbox>,
    /// Publishers on other shards whose tracks are piped here.
    remote: HashMap<PeerId, RemotePublisher>,
    /// Packets to pipe to each shard, sent at the end of each round of processing.
    outbox: Vec<Vec<PipedPacket>>,
    /// In-process consumers of plain RTP (the recorder), by room.
    taps: Vec<(String, mpsc::Sender<TappedPacket>)>,
    /// Reused buffers (no allocation per round in steady state).
    scratch_ids: Vec<PeerId>,
    scratch_media: Vec<(PeerId, String, rtp::Packet)>,
}

/// How many times a lost packet of a publisher is NACKed before the SFU gives up on it.
const MAX_NACKS_PER_PACKET: u16 = 8;

/// The codecs, header extensions and interceptors of every connection.
///
/// Opus and VP8 only (what the forwarding path understands), with NACK, PLI, FIR and
/// transport-wide congestion control feedback. RTX is not negotiated: `rtc`'s NACK generator does
/// not see packets repaired over RTX and would ask for them again and again, so retransmissions
/// travel on the original SSRC (RFC 4585), which the forwarder deduplicates.
fn media_setup() -> Result<(MediaEngine, Registry), rtc::shared::error::Error> {
    let mut media = MediaEngine::default();
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    media.register_codec(
        rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters {
            rtp_codec: opus(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    media.register_codec(
        rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                rtcp_feedback: vec![
                    feedback("ccm", "fir"),
                    feedback("nack", ""),
                    feedback("nack", "pli"),
                ],
                ..vp8()
            },
            payload_type: 96,
        },
        RtpCodecKind::Video,
    )?;
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    configure_simulcast_extension_headers(&mut media)?;
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                .build(),
        );
    let registry = configure_twcc_receiver_only(registry, &mut media)?;
    let registry =
        configure_rtcp_reports(registry).with(Slot::from(14_000), DeliverRtcp::default());
    Ok((media, registry))
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

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The shard a room lives on first: a stable hash of its name (FNV-1a: stable across runs and
/// processes, unlike the std hasher).
pub(crate) fn home_shard(room: &str, shards: usize) -> usize {
    let hash = room.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards.max(1) as u64) as usize
}

fn simulcast_layer(rid: Option<&str>) -> u8 {
    match rid {
        Some("h") | Some("m") | Some("mid") => 1,
        Some("f") | Some("hi") | Some("high") => 2,
        _ => 0,
    }
}

/// An RTP packet (not RTCP), by its first two bytes (RFC 7983, RFC 5761).
fn is_rtp(b: &[u8]) -> bool {
    crate::media::rtp::is_rtp_or_rtcp(b) && !crate::media::rtp::is_rtcp(b)
}

/// Takes the receiving side off every transceiver of a peer without the publish right, so that
/// the next description (our answer to its offer, or our offer) accepts no media from it and
/// `rtc` starts no receiver. Applied after each of its offers: `rtc` turns a transceiver back to
/// receiving when an offer sends on it.
///
/// Not when that would leave every section inactive: candidates in inactive sections are
/// skipped by `rtc` (a webrtc-rs client would never connect), so a peer that offers only to send
/// gets its sections answered as offered. Either way its RTP is refused on arrival
/// ([`Engine::handle_datagram`]); this only tells an honest client not to send.
fn refuse_receiving(pc: &mut RTCPeerConnection) {
    let ids: Vec<_> = pc.get_transceivers().collect();
    let sends = ids.iter().any(|&id| {
        pc.rtp_transceiver(id)
            .is_some_and(|t| t.direction().has_send())
    });
    if !sends {
        return;
    }
    for id in ids {
        if let Some(mut transceiver) = pc.rtp_transceiver(id) {
            let direction = transceiver.direction();
            if direction.has_recv() {
                transceiver.set_direction(RTCRtpTransceiverDirection::from_send_recv(
                    direction.has_send(),
                    false,
                ));
            }
        }
    }
}

/// Applies a peer's offer (checked) and answers it: the answer's SDP. On error, the offer may
/// have been taken: the caller rolls it back ([`roll_back_remote`]).
fn answer_offer(
    peer: &mut Peer,
    offer: RTCSessionDescription,
    now: Instant,
) -> Result<String, JoinError> {
    let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
    peer.pc
        .set_remote_description(now, offer)
        .map_err(|e| JoinError::BadOffer(e.to_string()))?;
    if !peer.rights.publish {
        refuse_receiving(&mut peer.pc);
    }
    let answer = peer.pc.create_answer(None).map_err(setup)?;
    peer.pc.set_local_description(now, answer).map_err(setup)?;
    Ok(peer
        .pc
        .local_description()
        .ok_or_else(|| JoinError::Setup("no local description".into()))?
        .sdp)
}

/// Undoes a remote offer that was taken but not answered, so that the connection is `stable`
/// again and can negotiate. False if that failed.
fn roll_back_remote(pc: &mut RTCPeerConnection, now: Instant) -> bool {
    if pc.pending_remote_description().is_none() {
        return true;
    }
    RTCSessionDescription::rollback(None)
        .and_then(|rollback| pc.set_remote_description(now, rollback))
        .is_ok()
}

fn is_stun(b: &[u8]) -> bool {
    b.len() >= 20 && b[0] < 4 && b[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

fn stun_local_ufrag(b: &[u8]) -> Option<String> {
    let mut m = rtc::stun::message::Message::new();
    m.unmarshal_binary(b).ok()?;
    let username = m.get(rtc::stun::attributes::ATTR_USERNAME).ok()?;
    let username = String::from_utf8(username).ok()?;
    username.split(':').next().map(str::to_owned)
}

impl Engine {
    pub(crate) fn new(
        index: usize,
        local_addr: SocketAddr,
        tcp_addr: Option<SocketAddr>,
        config: &crate::SfuConfig,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> Engine {
        Engine {
            local_addr,
            tcp_addr,
            ice_address: config.ice_address,
            ice_timeouts: (config.ice_disconnected_timeout, config.ice_failed_timeout),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            rooms: HashMap::new(),
            events,
            next_ssrc: 0x5f00_0000 ^ u32::from(local_addr.port()),
            counters: EngineCounters::default(),
            throttles: Throttles::default(),
            certificate: None,
            scope: None,
            next_review: None,
            index,
            shard_count: config.shards,
            mailboxes: Vec::new(),
            remote: HashMap::new(),
            outbox: Vec::new(),
            taps: Vec::new(),
            scratch_ids: Vec::new(),
            scratch_media: Vec::new(),
        }
    }

    fn emit(&self, event: SfuEvent) {
        // Nobody listening is not an error of the media plane.
        let _ = self.events.send(event);
    }

    pub(crate) fn handle_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Stats { peer, reply } => {
                let _ = reply.send(self.stats(peer));
            }
            Command::Mailboxes(mailboxes) => {
                self.outbox = mailboxes.iter().map(|_| Vec::new()).collect();
                self.mailboxes = mailboxes;
            }
            Command::LinkRoom { room, shards } => {
                self.scope = Some(Scope::Room(room.clone()));
                self.link_room(&room, &shards);
            }
            Command::PipeTrack {
                room,
                origin,
                source,
                track,
                kind,
                codec,
            } => {
                self.scope = Some(Scope::Room(room.clone()));
                self.add_remote_track(&room, origin, source, track, kind, codec);
            }
            Command::PipeUntrack { source, track } => self.remove_track(source, &track),
            Command::Pipe(packets) => {
                let (mut keyframes, mut layer_changes) = (Vec::new(), Vec::new());
                for piped in packets {
                    self.scope = Some(Scope::Peer(piped.source));
                    self.receive_piped(piped, now, &mut keyframes, &mut layer_changes);
                }
                keyframes.sort();
                keyframes.dedup();
                for (peer, track) in keyframes {
                    self.request_keyframe(peer, &track, now);
                }
                for event in layer_changes {
                    self.emit(event);
                }
            }
            Command::PipeKeyframe { source, track } => {
                self.scope = Some(Scope::Peer(source));
                self.request_keyframe(source, &track, now);
            }
            Command::InjectPanic { room } => {
                self.scope = Some(Scope::Room(room));
                panic!("fault injected for a test");
            }
            Command::Join {
                room,
                peer,
                offer,
                rights,
                reply,
            } => {
                self.scope = Some(Scope::Room(room.clone()));
                let result = self.join(&room, peer, offer, rights, now);
                let _ = reply.send(result);
            }
            Command::SetPublish { peer, publish } => {
                self.scope = Some(Scope::Peer(peer));
                self.set_publish(peer, publish);
            }
            Command::Answer { peer, sdp, reply } => {
                self.scope = Some(Scope::Peer(peer));
                let result = self.answer(peer, sdp, now);
                if let Err(e) = &result {
                    self.refused(peer, "answer", e, now);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Offer { peer, sdp, reply } => {
                self.scope = Some(Scope::Peer(peer));
                let result = self.client_offer(peer, sdp, now);
                if let Err(e) = &result {
                    self.refused(peer, "offer", e, now);
                }
                let _ = reply.send(result);
            }
            Command::Candidate { peer, candidate } => {
                self.scope = Some(Scope::Peer(peer));
                if let Some(p) = self.peers.get_mut(&peer) {
                    let init = RTCIceCandidateInit {
                        candidate,
                        ..Default::default()
                    };
                    if let Err(e) = p.pc.add_remote_candidate(init) {
                        self.refused(peer, "candidate", &e, now);
                    }
                }
            }
            Command::Subscribe {
                subscriber,
                source,
                track,
                subscribe,
            } => {
                self.scope = Some(Scope::Peer(subscriber));
                if subscribe {
                    self.subscribe(subscriber, source, &track);
                } else {
                    self.unsubscribe(subscriber, source, &track);
                }
            }
            Command::Pause {
                subscriber,
                source,
                track,
                paused,
            } => self.change_consumer(subscriber, source, &track, now, |c| c.paused = paused),
            Command::RequestKeyframe { peer, track } => self.request_keyframe(peer, &track, now),
            Command::SetTemporal {
                subscriber,
                source,
                track,
                max,
            } => {
                if let Some(c) = self.consumer_mut(subscriber, source, &track) {
                    c.forwarder.set_max_temporal(max);
                }
            }
            Command::CloseRoom { room } => {
                let closed = self.rooms.contains_key(&room);
                self.close_room_quietly(&room);
                if closed && home_shard(&room, self.shard_count) == self.index {
                    self.emit(SfuEvent::RoomClosed {
                        room,
                        reason: "closed".to_owned(),
                    });
                }
            }
            Command::Tap { room, tap } => self.taps.push((room, tap)),
            Command::Leave { peer } => self.remove_peer(peer),
            Command::SetLayer {
                subscriber,
                source,
                track,
                layer,
            } => self.change_consumer(subscriber, source, &track, now, |c| c.preferred = layer),
            Command::SetPriority {
                subscriber,
                source,
                track,
                priority,
            } => self.change_consumer(subscriber, source, &track, now, |c| c.priority = priority),
        }
    }

    /// Changes one of `subscriber`'s consumers (preferred layer, priority, pause), then shares
    /// its bandwidth again ([`Engine::reallocate`]).
    fn change_consumer(
        &mut self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        now: Instant,
        change: impl FnOnce(&mut Consumer),
    ) {
        let Some(c) = self.consumer_mut(subscriber, source, track) else {
            return;
        };
        change(c);
        self.reallocate(subscriber, now);
    }

    fn consumer_mut(
        &mut self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
    ) -> Option<&mut Consumer> {
        self.peers
            .get_mut(&subscriber)?
            .consumers
            .iter_mut()
            .find(|c| c.source.0 == source && c.source.1 == track)
    }

    /// Asks the publisher of `track` for a keyframe, at most once per 500 ms per stream; through
    /// its shard when it is on another.
    fn request_keyframe(&mut self, peer: PeerId, track: &str, now: Instant) {
        if let Some(publisher) = self.remote.get_mut(&peer) {
            let request = publisher
                .producers
                .iter_mut()
                .find(|x| x.track_id == track)
                .is_some_and(|p| p.keyframes.request(now));
            if request && let Some(mailbox) = self.mailboxes.get(publisher.origin) {
                mailbox.send(Command::PipeKeyframe {
                    source: peer,
                    track: track.to_owned(),
                });
            }
            return;
        }
        let request = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.producers.iter_mut().find(|x| x.track_id == track))
            .is_some_and(|p| p.keyframes.request(now));
        if request {
            self.send_pli(peer, track, now);
        }
    }

    /// Counts a refused offer, answer or candidate of `peer` and logs it (throttled: a peer
    /// decides how often it sends them).
    fn refused(&mut self, peer: PeerId, what: &str, error: &dyn std::fmt::Display, now: Instant) {
        self.counters.signaling_refused += 1;
        if let Some(held) = self.throttles.signaling_refused.allow(now) {
            tracing::info!(peer, error = %error, held, "{what} refused");
        }
    }

    /// A renegotiation offer from the peer. If a server offer is pending (glare), the server is
    /// the polite side: its offer is rolled back and made again after this exchange.
    ///
    /// A refused offer changes nothing: it is checked first ([`sdp_check`]), and if `rtc` still
    /// fails once it has taken the offer, the offer is rolled back (a connection that cannot
    /// even be rolled back is closed rather than left unable to negotiate again).
    fn client_offer(&mut self, id: PeerId, sdp: String, now: Instant) -> Result<String, JoinError> {
        let peer = self.peers.get_mut(&id).ok_or(JoinError::UnknownPeer)?;
        let checked = sdp_check::check(&sdp, Role::Offer)?;
        if let Some(current) = peer.pc.current_remote_description() {
            let current = sdp_check::describe(&current.sdp)?;
            sdp_check::check_renegotiation(&current, &checked)?;
        }
        let offer =
            RTCSessionDescription::offer(sdp).map_err(|e| JoinError::BadOffer(e.to_string()))?;
        if peer.offer_pending {
            let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
            let rollback = RTCSessionDescription::rollback(None).map_err(setup)?;
            peer.pc
                .set_local_description(now, rollback)
                .map_err(setup)?;
            peer.offer_pending = false;
            peer.renegotiate = true;
        }
        let result = answer_offer(peer, offer, now);
        if result.is_err() && !roll_back_remote(&mut peer.pc, now) {
            tracing::warn!(
                peer = id,
                "a refused offer could not be rolled back: peer closed"
            );
            self.remove_peer(id);
        }
        result
    }

    /// The peer's answer to the pending server offer. A refused answer changes nothing (the
    /// offer stays pending), unless `rtc` fails after taking it: then a new offer follows.
    fn answer(&mut self, id: PeerId, sdp: String, now: Instant) -> Result<(), AnswerError> {
        let peer = self.peers.get_mut(&id).ok_or(AnswerError::UnknownPeer)?;
        let ours = peer.pc.pending_local_description();
        let (true, Some(ours)) = (peer.offer_pending, ours) else {
            return Err(AnswerError::NoOfferPending);
        };
        let checked = sdp_check::check(&sdp, Role::Answer)?;
        let ours = sdp_check::describe(&ours.sdp)?;
        let current = match peer.pc.current_remote_description() {
            Some(current) => sdp_check::describe(&current.sdp)?,
            None => return Err(AnswerError::NoOfferPending),
        };
        sdp_check::check_answer(&ours, &current, &checked)?;
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|e| AnswerError::BadAnswer(e.to_string()))?;
        if let Err(e) = peer.pc.set_remote_description(now, answer) {
            if peer.pc.pending_local_description().is_none() {
                // Taken, then failed: the next offer sets things right.
                peer.offer_pending = false;
                peer.renegotiate = true;
            }
            return Err(AnswerError::BadAnswer(e.to_string()));
        }
        peer.offer_pending = false;
        Ok(())
    }

    /// Grants or revokes `id`'s right to publish. Revoking closes its producers now and takes
    /// the receiving side off its transceivers (for the next negotiation); granting lets its
    /// next offer publish.
    fn set_publish(&mut self, id: PeerId, publish: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.rights.publish == publish {
            return;
        }
        peer.rights.publish = publish;
        if !publish {
            refuse_receiving(&mut peer.pc);
            self.close_producers(id);
        }
    }

    /// Closes every producer of `id`: its consumers on this shard go, the room's other shards drop
    /// theirs, and [`SfuEvent::TrackUnpublished`] follows for each.
    fn close_producers(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let producers = std::mem::take(&mut peer.producers);
        let links = self
            .rooms
            .get_mut(&peer.room)
            .map(|r| {
                r.speakers.remove(id);
                r.links.clone()
            })
            .unwrap_or_default();
        for p in producers {
            self.remove_track(id, &p.track_id);
            self.unpublished(id, &links, p.track_id);
        }
    }

    /// Tells the room's other shards (`links`) and the SFU's user that `id`'s `track` is gone.
    fn unpublished(&self, id: PeerId, links: &[usize], track: String) {
        for &shard in links {
            if let Some(mailbox) = self.mailboxes.get(shard) {
                mailbox.send(Command::PipeUntrack {
                    source: id,
                    track: track.clone(),
                });
            }
        }
        self.emit(SfuEvent::TrackUnpublished { peer: id, track });
    }

    /// Gives `subscriber` a consumer of `source`'s `track` again, if it is published in its room
    /// and not already consumed.
    fn subscribe(&mut self, subscriber: PeerId, source: PeerId, track: &str) {
        if subscriber == source || self.consumer_mut(subscriber, source, track).is_some() {
            return;
        }
        let Some(room) = self.peers.get(&subscriber).map(|p| p.room.clone()) else {
            return;
        };
        let source_room = self
            .peers
            .get(&source)
            .map(|p| &p.room)
            .or_else(|| self.remote.get(&source).map(|r| &r.room));
        if source_room != Some(&room) {
            return;
        }
        if let Some(p) = self.find_producer(source, track) {
            let (kind, codec) = (p.kind, p.codec.clone());
            self.add_consumer(subscriber, source, track, kind, codec);
        }
    }

    /// Removes `subscriber`'s consumer of `source`'s `track` (its sender leaves the connection).
    fn unsubscribe(&mut self, subscriber: PeerId, source: PeerId, track: &str) {
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let before = peer.consumers.len();
        let (gone, kept): (Vec<Consumer>, Vec<Consumer>) = peer
            .consumers
            .drain(..)
            .partition(|c| c.source.0 == source && c.source.1 == track);
        peer.consumers = kept;
        for c in gone {
            let _ = peer.pc.remove_track(c.sender_id);
        }
        if peer.consumers.len() != before {
            peer.renegotiate = true;
        }
    }

    /// A producer of this shard or piped to it.
    fn find_producer(&self, peer: PeerId, track: &str) -> Option<&Producer> {
        let producers = match self.peers.get(&peer) {
            Some(p) => &p.producers,
            None => &self.remote.get(&peer)?.producers,
        };
        producers.iter().find(|x| x.track_id == track)
    }

    /// The set of shards hosting `room` changed. Tracks published here go to the shards that are
    /// new to it; a shard that left the room forgets what was piped to it.
    fn link_room(&mut self, room: &str, shards: &[usize]) {
        if !shards.contains(&self.index) {
            if let Some(r) = self.rooms.get_mut(room) {
                r.links.clear();
                if r.members.is_empty() {
                    self.rooms.remove(room);
                }
            }
            let piped: Vec<(PeerId, String)> = self
                .remote
                .iter()
                .filter(|(_, r)| r.room == room)
                .flat_map(|(id, r)| r.producers.iter().map(|p| (*id, p.track_id.clone())))
                .collect();
            for (source, track) in piped {
                self.remove_track(source, &track);
            }
            return;
        }
        let links: Vec<usize> = shards
            .iter()
            .copied()
            .filter(|s| *s != self.index)
            .collect();
        let r = self.rooms.entry(room.to_owned()).or_default();
        let new: Vec<usize> = links
            .iter()
            .copied()
            .filter(|s| !r.links.contains(s))
            .collect();
        r.links = links;
        let members = r.members.clone();
        for member in members {
            let tracks: Vec<(String, RtpCodecKind, RTCRtpCodec)> = self.peers[&member]
                .producers
                .iter()
                .map(|p| (p.track_id.clone(), p.kind, p.codec.clone()))
                .collect();
            for (track, kind, codec) in tracks {
                self.pipe_track(room, &new, member, &track, kind, &codec);
            }
        }
    }

    /// Tells `shards` that `source` publishes `track` in `room`.
    fn pipe_track(
        &self,
        room: &str,
        shards: &[usize],
        source: PeerId,
        track: &str,
        kind: RtpCodecKind,
        codec: &RTCRtpCodec,
    ) {
        for &shard in shards {
            if let Some(mailbox) = self.mailboxes.get(shard) {
                mailbox.send(Command::PipeTrack {
                    room: room.to_owned(),
                    origin: self.index,
                    source,
                    track: track.to_owned(),
                    kind,
                    codec: codec.clone(),
                });
            }
        }
    }

    /// A track published on another shard: this shard's members of the room get consumers.
    fn add_remote_track(
        &mut self,
        room: &str,
        origin: usize,
        source: PeerId,
        track: String,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
    ) {
        let publisher = self
            .remote
            .entry(source)
            .or_insert_with(|| RemotePublisher {
                room: room.to_owned(),
                origin,
                producers: Vec::new(),
            });
        if publisher.producers.iter().any(|p| p.track_id == track) {
            return;
        }
        publisher.producers.push(Producer {
            track_id: track.clone(),
            kind,
            codec: codec.clone(),
            receiver_id: None,
            ssrcs: Vec::new(),
            keyframes: KeyframeRequests::default(),
            extensions: None,
            audio_level_id: None,
            rates: Default::default(),
            highest_seq: [None; 3],
        });
        let members = self
            .rooms
            .entry(room.to_owned())
            .or_default()
            .members
            .clone();
        for member in members {
            self.add_consumer(member, source, &track, kind, codec.clone());
        }
    }

    /// `source`'s `track` ended: its consumers on this shard go, with their senders.
    fn remove_track(&mut self, source: PeerId, track: &str) {
        if let Some(publisher) = self.remote.get_mut(&source) {
            publisher.producers.retain(|p| p.track_id != track);
            if publisher.producers.is_empty() {
                self.remote.remove(&source);
            }
        }
        for peer in self.peers.values_mut() {
            let (gone, kept): (Vec<Consumer>, Vec<Consumer>) = peer
                .consumers
                .drain(..)
                .partition(|c| c.source.0 == source && c.source.1 == track);
            peer.consumers = kept;
            for c in gone {
                let _ = peer.pc.remove_track(c.sender_id);
                peer.renegotiate = true;
            }
        }
    }

    /// Reviews every subscriber's layers: layer bitrates change without feedback, and a subscriber
    /// whose consumers are all paused sends no feedback. Its estimate grows as on a clear path,
    /// so that paused consumers are tried again (and cut back at once if the path is still full).
    fn review(&mut self, now: Instant) {
        self.next_review = Some(now + REVIEW_INTERVAL);
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.scope = Some(Scope::Peer(id));
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.feedback_seen && !std::mem::take(&mut peer.fresh_feedback) {
                peer.bwe.on_idle(now);
            }
            self.reallocate(id, now);
        }
    }

    /// Sets the target layer of each of `subscriber`'s video consumers. Until congestion feedback
    /// arrives from the subscriber, the target is its preferred layer; afterwards, the bandwidth
    /// estimate (less what its audio takes) is shared by priority ([`allocator::allocate`]), and
    /// a consumer that gets nothing is paused if the path is losing heavily (otherwise it keeps
    /// its lowest layer). A consumer that must switch asks for a keyframe.
    fn reallocate(&mut self, subscriber: PeerId, now: Instant) {
        let Some(sub) = self.peers.get(&subscriber) else {
            return;
        };
        let speaker = self.rooms.get(&sub.room).and_then(|r| r.speaker);
        let mut audio_bps = 0u64;
        let mut needs: Vec<Need> = Vec::new();
        // (consumer index, index in `needs` or the fixed target)
        let mut plan: Vec<(usize, Result<usize, Option<u8>>)> = Vec::new();
        for (i, c) in sub.consumers.iter().enumerate() {
            let Some(producer) = self.find_producer(c.source.0, &c.source.1) else {
                continue;
            };
            if producer.kind != RtpCodecKind::Video {
                audio_bps += producer.rates[0].bps(now).unwrap_or(0);
                continue;
            }
            // Layers with packets (a producer piped from another shard knows no SSRCs).
            let mut layer_bitrates = [None; 3];
            for (l, rate) in producer.rates.iter().enumerate() {
                layer_bitrates[l] = rate.bps(now);
            }
            let highest = producer
                .ssrcs
                .iter()
                .map(|(_, l)| *l)
                .chain((0..3u8).filter(|l| layer_bitrates[usize::from(*l)].is_some()))
                .max()
                .unwrap_or(0);
            let Some(preferred) = c.preferred.filter(|_| !c.paused) else {
                plan.push((i, Err(None)));
                continue;
            };
            if !sub.feedback_seen {
                plan.push((i, Err(Some(preferred.min(highest)))));
                continue;
            }
            let priority = if speaker == Some(c.source.0) {
                c.priority.max(PRIORITY_SPEAKER)
            } else {
                c.priority
            };
            plan.push((i, Ok(needs.len())));
            needs.push(Need {
                priority,
                layer_bitrates,
                preferred,
                current: c.forwarder.current_layer(),
            });
        }
        let mut allocated = Vec::new();
        if !needs.is_empty() {
            // Without congestion seen, there is no known limit: everyone gets what they prefer.
            let available = sub
                .bwe
                .limit_bps(now)
                .map_or(u64::MAX, |limit| limit.saturating_sub(audio_bps));
            allocator::allocate(available, &needs, &mut Vec::new(), &mut allocated);
            // A consumer is paused (it loses its last layer) only when the path loses heavily;
            // a delay trend alone keeps it on its lowest layer.
            if !sub.bwe.lossy(now) {
                for (need, out) in needs.iter().zip(allocated.iter_mut()) {
                    if out.is_none() && need.current.is_some() {
                        *out = (0..3u8).find(|l| need.layer_bitrates[usize::from(*l)].is_some());
                    }
                }
            }
        }
        let mut keyframes = Vec::new();
        let Some(sub) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let connected = sub.connected;
        for (i, target) in plan {
            let target = match target {
                Ok(n) => allocated[n],
                Err(fixed) => fixed,
            };
            let c = &mut sub.consumers[i];
            if c.forwarder.target_layer() == target {
                continue;
            }
            c.forwarder.set_target(target);
            // Only for a connected subscriber: a keyframe that arrives before its DTLS is up is
            // lost to it, and the request would hold the stream's next one back by the request
            // interval (500 ms more before a newcomer's first picture). A newcomer asks with its
            // first forwarded packet instead.
            if connected && c.forwarder.keyframe_needed().is_some() {
                keyframes.push(c.source.clone());
            }
        }
        for (source, track) in keyframes {
            self.request_keyframe(source, &track, now);
        }
    }

    /// The shard's DTLS certificate (see [`Engine::certificate`]'s field), made on first use and
    /// renewed a day before it expires.
    fn certificate(&mut self) -> Result<RTCCertificate, rtc::shared::error::Error> {
        // Wall clock: certificate validity is calendar time, not the engine's monotonic `now`.
        let renew_after = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
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

    fn join(
        &mut self,
        room: &str,
        id: PeerId,
        offer: String,
        rights: PeerRights,
        now: Instant,
    ) -> Result<String, JoinError> {
        let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
        sdp_check::check(&offer, Role::Offer)?;
        let ufrag = format!("p{id:x}{}", rtc::shared::util::math_rand_alpha(8));
        let pwd = rtc::shared::util::math_rand_alpha(32);
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_ice_credentials(ufrag.clone(), pwd)
            .with_ice_timeouts(Some(self.ice_timeouts.0), Some(self.ice_timeouts.1), None)
            .build();
        let (media, registry) = media_setup().map_err(setup)?;
        let certificate = self.certificate().map_err(setup)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_certificates(vec![certificate])
                    .build(),
            )
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(setup)?;
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| JoinError::BadOffer(e.to_string()))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| JoinError::BadOffer(e.to_string()))?;
        if !rights.publish {
            refuse_receiving(&mut pc);
        }
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.ice_address.to_string(),
                port: self.local_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(setup)?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(setup)?)
            .map_err(setup)?;
        if let Some(tcp) = self.tcp_addr {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "tcp".to_owned(),
                    address: self.ice_address.to_string(),
                    port: tcp.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type: rtc::ice::tcp_type::TcpType::Passive,
            }
            .new_candidate_host()
            .map_err(setup)?;
            pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(setup)?)
                .map_err(setup)?;
        }
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(setup)?;
        let answer = pc.create_answer(None).map_err(setup)?;
        pc.set_local_description(now, answer).map_err(setup)?;
        let sdp = pc
            .local_description()
            .ok_or_else(|| JoinError::Setup("no local description".into()))?
            .sdp;

        self.by_ufrag.insert(ufrag, id);
        self.peers.insert(
            id,
            Peer {
                room: room.to_owned(),
                rights,
                pc,
                connected: false,
                producers: Vec::new(),
                consumers: Vec::new(),
                renegotiate: false,
                offer_pending: false,
                offer_failing: false,
                bwe: BandwidthEstimator::new(BWE_INITIAL_BPS, BWE_MIN_BPS, BWE_MAX_BPS),
                transport_seq: 0,
                feedback_seen: false,
                fresh_feedback: false,
                reported_bps: None,
            },
        );
        // Everything already published in the room goes to the newcomer (by a server offer).
        let members = &mut self.rooms.entry(room.to_owned()).or_default().members;
        let existing: Vec<PeerId> = members.clone();
        members.push(id);
        for other in existing {
            let tracks: Vec<(String, RtpCodecKind, RTCRtpCodec)> = self.peers[&other]
                .producers
                .iter()
                .map(|p| (p.track_id.clone(), p.kind, p.codec.clone()))
                .collect();
            for (track, kind, codec) in tracks {
                self.add_consumer(id, other, &track, kind, codec);
            }
        }
        let piped: Vec<(PeerId, String, RtpCodecKind, RTCRtpCodec)> = self
            .remote
            .iter()
            .filter(|(_, r)| r.room == room)
            .flat_map(|(source, r)| {
                r.producers
                    .iter()
                    .map(|p| (*source, p.track_id.clone(), p.kind, p.codec.clone()))
            })
            .collect();
        for (source, track, kind, codec) in piped {
            self.add_consumer(id, source, &track, kind, codec);
        }
        Ok(sdp)
    }

    /// Gives `subscriber` a consumer of `source`'s track (a new sending track on its connection).
    fn add_consumer(
        &mut self,
        subscriber: PeerId,
        source: PeerId,
        track: &str,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
    ) {
        self.next_ssrc = self.next_ssrc.wrapping_add(0x9e37_79b9);
        let ssrc = self.next_ssrc;
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let mime = codec.mime_type.clone();
        let clock_rate = codec.clock_rate;
        let media = MediaStreamTrack::new(
            format!("peer-{source}"),
            format!("{source}-{track}"),
            track.to_owned(),
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
        match peer.pc.add_track(media) {
            Ok(sender_id) => {
                peer.consumers.push(Consumer {
                    source: (source, track.to_owned()),
                    sender_id,
                    ssrc,
                    mime,
                    payload_type: None,
                    extension_map: None,
                    twcc_id: 0,
                    preferred: Some(0),
                    priority: PRIORITY_GRID,
                    paused: false,
                    packets: 0,
                    forwarder: Forwarder::new(clock_rate, Some(0)),
                });
                peer.renegotiate = true;
            }
            Err(e) => {
                tracing::warn!(subscriber, source, track, error = %e, "cannot add a consumer track")
            }
        }
    }

    fn stats(&self, id: PeerId) -> Option<PeerStats> {
        let p = self.peers.get(&id)?;
        Some(PeerStats {
            peer: id,
            room: p.room.clone(),
            shard: self.index,
            connected: p.connected,
            rights: p.rights,
            estimate_bps: p.feedback_seen.then(|| p.bwe.estimate_bps()),
            producers: p
                .producers
                .iter()
                .map(|x| ProducerStats {
                    track: x.track_id.clone(),
                    video: x.kind == RtpCodecKind::Video,
                    streams: x.ssrcs.clone(),
                })
                .collect(),
            consumers: p
                .consumers
                .iter()
                .map(|c| ConsumerStats {
                    source: c.source.0,
                    track: c.source.1.clone(),
                    ssrc: c.ssrc,
                    current_layer: c.forwarder.current_layer(),
                    target_layer: c.forwarder.target_layer(),
                    preferred_layer: c.preferred,
                    packets: c.packets,
                })
                .collect(),
        })
    }

    /// The room of what was being worked on when a panic struck, if known.
    pub(crate) fn faulty_room(&self) -> Option<String> {
        match self.scope.as_ref()? {
            Scope::Room(room) => Some(room.clone()),
            Scope::Peer(id) => self.peers.get(id).map(|p| p.room.clone()),
        }
    }

    /// Closes a room after a fault: every member is disconnected and forgotten.
    pub(crate) fn close_room(&mut self, room: &str, reason: &str) {
        self.close_room_quietly(room);
        self.emit(SfuEvent::RoomClosed {
            room: room.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Disconnects and forgets every member of `room` on this shard, and what was piped to it.
    fn close_room_quietly(&mut self, room: &str) {
        let members: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.room == room)
            .map(|(id, _)| *id)
            .collect();
        for id in members {
            self.remove_peer(id);
        }
        self.rooms.remove(room);
        self.remote.retain(|_, r| r.room != room);
        self.taps.retain(|(r, _)| r != room);
    }

    fn remove_peer(&mut self, id: PeerId) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        let _ = peer.pc.close();
        self.by_ufrag.retain(|_, p| *p != id);
        self.by_addr.retain(|_, p| *p != id);
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|p| *p != id);
            room.speakers.remove(id);
            if room.members.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        for other in self.peers.values_mut() {
            let (gone, kept): (Vec<Consumer>, Vec<Consumer>) =
                other.consumers.drain(..).partition(|c| c.source.0 == id);
            other.consumers = kept;
            for c in gone {
                let _ = other.pc.remove_track(c.sender_id);
                other.renegotiate = true;
            }
        }
        let links = self
            .rooms
            .get(&peer.room)
            .map(|r| r.links.clone())
            .unwrap_or_default();
        for p in peer.producers {
            self.unpublished(id, &links, p.track_id);
        }
        self.emit(SfuEvent::PeerDisconnected { peer: id });
    }

    /// A datagram arrived. Returns false when no peer matches it.
    /// A packet from `from` (a UDP datagram, or a frame of an ICE-TCP connection). False when it
    /// is from no known peer.
    pub(crate) fn handle_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        protocol: TransportProtocol,
        now: Instant,
    ) -> bool {
        let mut target = None;
        if is_stun(data)
            && let Some(ufrag) = stun_local_ufrag(data)
        {
            target = self.by_ufrag.get(&ufrag).copied();
            if let Some(id) = target {
                self.by_addr.insert(from, id);
            }
        }
        let target = target.or_else(|| self.by_addr.get(&from).copied());
        let Some(id) = target else {
            self.counters.unknown_source += 1;
            return false;
        };
        self.scope = Some(Scope::Peer(id));
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        // Media from a peer that may not publish goes no further: not decrypted, not bound to a
        // receiver, not routed, whatever its descriptions said.
        if !peer.rights.publish && is_rtp(data) {
            self.counters.rtp_refused += 1;
            return true;
        }
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: match protocol {
                    TransportProtocol::TCP => self.tcp_addr.unwrap_or(self.local_addr),
                    _ => self.local_addr,
                },
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(message) {
            self.counters.datagrams_refused += 1;
            if let Some(held) = self.throttles.datagram_refused.allow(now) {
                tracing::debug!(peer = id, error = %e, held, "datagram refused");
            }
        }
        true
    }

    /// Runs timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            if peer.pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = peer.pc.handle_timeout(now);
            }
        }
        let mut due = Vec::new();
        for (id, peer) in &mut self.peers {
            self.scope = Some(Scope::Peer(*id));
            for p in &mut peer.producers {
                if p.keyframes.poll(now) {
                    due.push((*id, p.track_id.clone()));
                }
            }
        }
        for (id, track) in due {
            self.send_pli(id, &track, now);
        }
        // Keyframes asked of other shards and not arrived: ask again.
        for (source, publisher) in &mut self.remote {
            for p in &mut publisher.producers {
                if p.keyframes.poll(now)
                    && let Some(mailbox) = self.mailboxes.get(publisher.origin)
                {
                    mailbox.send(Command::PipeKeyframe {
                        source: *source,
                        track: p.track_id.clone(),
                    });
                }
            }
        }
        match self.next_review {
            Some(t) if t <= now => self.review(now),
            Some(_) => {}
            None => self.next_review = Some(now + REVIEW_INTERVAL),
        }
        let mut speakers = Vec::new();
        for (name, room) in &mut self.rooms {
            if let Some(peer) = room.speakers.poll(now) {
                room.speaker = Some(peer);
                speakers.push((name.clone(), peer));
            }
        }
        for (room, peer) in speakers {
            // The new speaker's consumers move up in everyone's allocation.
            let members = self.rooms.get(&room).map(|r| r.members.clone());
            for member in members.unwrap_or_default() {
                self.reallocate(member, now);
            }
            // Every shard of the room sees every level and reaches the same result; the room's home
            // shard reports it.
            if home_shard(&room, self.shard_count) == self.index {
                self.emit(SfuEvent::ActiveSpeaker { room, peer });
            }
        }
    }

    /// The earliest time [`Engine::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = self
            .rooms
            .values()
            .filter_map(|r| r.speakers.next_timeout())
            .chain(self.next_review.filter(|_| !self.peers.is_empty()))
            .chain(
                self.remote
                    .values()
                    .flat_map(|r| r.producers.iter())
                    .filter_map(|p| p.keyframes.next_timeout()),
            )
            .min();
        for peer in self.peers.values_mut() {
            let t = peer
                .pc
                .poll_timeout()
                .into_iter()
                .chain(
                    peer.producers
                        .iter()
                        .filter_map(|p| p.keyframes.next_timeout()),
                )
                .min();
            next = match (next, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Processes everything the connections produced: events, received media, renegotiation.
    pub(crate) fn process(&mut self, now: Instant) {
        self.process_events(now);
        self.process_reads(now);
        self.renegotiate(now);
        self.flush_pipes();
    }

    /// Hands each shard the packets piped to it in this round, in one batch.
    fn flush_pipes(&mut self) {
        for (shard, packets) in self.outbox.iter_mut().enumerate() {
            if !packets.is_empty()
                && let Some(mailbox) = self.mailboxes.get(shard)
            {
                mailbox.send(Command::Pipe(std::mem::take(packets)));
            }
        }
    }

    /// Datagrams to send, with their destinations.
    pub(crate) fn drain_writes(
        &mut self,
        mut send: impl FnMut(&[u8], SocketAddr, TransportProtocol),
    ) {
        for (id, peer) in &mut self.peers {
            self.scope = Some(Scope::Peer(*id));
            while let Some(out) = peer.pc.poll_write() {
                self.by_addr.insert(out.transport.peer_addr, *id);
                send(
                    &out.message,
                    out.transport.peer_addr,
                    out.transport.transport_protocol,
                );
            }
        }
    }

    fn process_events(&mut self, now: Instant) {
        let mut gone = Vec::new();
        let mut published = Vec::new();
        let mut ids = std::mem::take(&mut self.scratch_ids);
        ids.clear();
        ids.extend(self.peers.keys().copied());
        for &id in &ids {
            self.scope = Some(Scope::Peer(id));
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            while let Some(event) = peer.pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                        RTCPeerConnectionState::Connected => {
                            peer.connected = true;
                            let _ = self.events.send(SfuEvent::PeerConnected { peer: id });
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
                        let layer = simulcast_layer(init.rid.as_deref());
                        if let Some(p) = peer
                            .producers
                            .iter_mut()
                            .find(|p| p.track_id == init.track_id)
                        {
                            p.ssrcs.push((init.ssrc, layer));
                            continue;
                        }
                        let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
                            continue;
                        };
                        let kind = receiver.track().kind();
                        let codec = match kind {
                            RtpCodecKind::Audio => opus(),
                            _ => vp8(),
                        };
                        peer.producers.push(Producer {
                            track_id: init.track_id.clone(),
                            kind,
                            codec: codec.clone(),
                            receiver_id: Some(init.receiver_id),
                            ssrcs: vec![(init.ssrc, layer)],
                            keyframes: KeyframeRequests::default(),
                            extensions: None,
                            audio_level_id: None,
                            rates: Default::default(),
                            highest_seq: [None; 3],
                        });
                        published.push((id, init.track_id, kind, codec));
                    }
                    _ => {}
                }
            }
        }
        self.scratch_ids = ids;
        for (id, track, kind, codec) in published {
            let room = self.peers[&id].room.clone();
            let members: Vec<PeerId> = self
                .rooms
                .get(&room)
                .map(|r| r.members.clone())
                .unwrap_or_default();
            for other in members.into_iter().filter(|o| *o != id) {
                self.add_consumer(other, id, &track, kind, codec.clone());
            }
            let links = self
                .rooms
                .get(&room)
                .map(|r| r.links.clone())
                .unwrap_or_default();
            self.pipe_track(&room, &links, id, &track, kind, &codec);
            self.emit(SfuEvent::TrackPublished {
                peer: id,
                track,
                video: kind == RtpCodecKind::Video,
            });
        }
        for id in gone {
            self.remove_peer(id);
        }
        let _ = now;
    }

    fn process_reads(&mut self, now: Instant) {
        let mut media = std::mem::take(&mut self.scratch_media);
        let mut keyframe_wanted: Vec<(PeerId, String)> = Vec::new();
        let mut estimates: Vec<PeerId> = Vec::new();
        let mut results: Vec<PacketResult> = Vec::new();
        for (id, peer) in &mut self.peers {
            self.scope = Some(Scope::Peer(*id));
            while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(track, packet) => media.push((*id, track, packet)),
                    RTCMessage::RtcpPacket(_, packets) => {
                        for p in &packets {
                            if let Some(feedback) = p.as_any().downcast_ref::<TransportLayerCc>() {
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
                                if !estimates.contains(id) {
                                    estimates.push(*id);
                                }
                            }
                        }
                        for p in packets {
                            let media_ssrc = if let Some(pli) =
                                p.as_any().downcast_ref::<PictureLossIndication>()
                            {
                                Some(pli.media_ssrc)
                            } else {
                                p.as_any()
                                    .downcast_ref::<FullIntraRequest>()
                                    .and_then(|f| f.fir.first().map(|e| e.ssrc))
                            };
                            if let Some(ssrc) = media_ssrc
                                && let Some(c) = peer.consumers.iter().find(|c| c.ssrc == ssrc)
                            {
                                keyframe_wanted.push(c.source.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for id in estimates {
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
                self.emit(SfuEvent::BandwidthEstimate { peer: id, bps });
            }
        }
        let mut layer_changes = Vec::new();
        for (source, track, packet) in media.drain(..) {
            self.counters.rtp_in += 1;
            self.forward(
                source,
                &track,
                packet,
                now,
                &mut keyframe_wanted,
                &mut layer_changes,
            );
        }
        self.scratch_media = media;
        for event in layer_changes {
            self.emit(event);
        }
        keyframe_wanted.sort();
        keyframe_wanted.dedup();
        for (peer, track) in keyframe_wanted {
            self.request_keyframe(peer, &track, now);
        }
    }

    fn forward(
        &mut self,
        source: PeerId,
        track: &str,
        packet: rtp::Packet,
        now: Instant,
        keyframe_wanted: &mut Vec<(PeerId, String)>,
        layer_changes: &mut Vec<SfuEvent>,
    ) {
        self.scope = Some(Scope::Peer(source));
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        let Some(producer) = peer.producers.iter_mut().find(|p| p.track_id == track) else {
            // A track closed when the right to publish was revoked.
            self.counters.rtp_refused += 1;
            return;
        };
        let layer = producer
            .ssrcs
            .iter()
            .find(|(s, _)| *s == packet.header.ssrc)
            .map_or(0, |(_, l)| *l);
        let (keyframe, temporal_id) = if producer.kind == RtpCodecKind::Video {
            match vp8::parse(&packet.payload) {
                Ok(info) => (info.keyframe, info.temporal_id),
                Err(_) => (false, None),
            }
        } else {
            (true, None)
        };
        if keyframe && producer.kind == RtpCodecKind::Video {
            producer.keyframes.on_keyframe();
        }
        producer.count(layer, &packet, now);
        if producer.extensions.is_none()
            && let Some(mut receiver) = producer.receiver_id.and_then(|id| peer.pc.rtp_receiver(id))
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
                .find(|(_, u)| u == AUDIO_LEVEL_URI)
                .map(|(id, _)| *id);
            producer.extensions = Some(negotiated.into());
        }
        let extensions = producer
            .extensions
            .clone()
            .unwrap_or_else(|| std::sync::Arc::from(Vec::new()));
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
            },
            video: producer.kind == RtpCodecKind::Video,
            level,
            extensions,
        };
        // Disjoint borrows: the room (members) and the peers (subscribers) at once, no copies.
        let Engine {
            peers,
            rooms,
            counters,
            outbox,
            taps,
            throttles,
            ..
        } = self;
        if !taps.is_empty()
            && let Some(room) = peers.get(&source).map(|p| p.room.as_str())
        {
            // A tap that is full loses the packet (the shard never waits); one that is gone goes.
            taps.retain(|(r, tap)| {
                r != room
                    || !matches!(
                        tap.try_send(TappedPacket {
                            source,
                            track: track.to_owned(),
                            video: ingress.video,
                            layer: ingress.info.layer,
                            keyframe: ingress.info.keyframe,
                            packet: packet.clone(),
                        }),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
            });
        }
        let Some(room) = peers.get(&source).and_then(|p| rooms.get_mut(&p.room)) else {
            return;
        };
        // The room's subscribers on other shards get it through their shard.
        for &link in &room.links {
            if let Some(out) = outbox.get_mut(link) {
                counters.rtp_piped += 1;
                out.push(PipedPacket {
                    source,
                    track: track.to_owned(),
                    packet: packet.clone(),
                    ingress: ingress.clone(),
                });
            }
        }
        fan_out(
            peers,
            room,
            counters,
            source,
            track,
            &packet,
            &ingress,
            now,
            keyframe_wanted,
            layer_changes,
            &mut throttles.write_failed,
        );
    }

    /// A packet another shard received for one of its producers, for this shard's subscribers.
    fn receive_piped(
        &mut self,
        piped: PipedPacket,
        now: Instant,
        keyframe_wanted: &mut Vec<(PeerId, String)>,
        layer_changes: &mut Vec<SfuEvent>,
    ) {
        let Engine {
            peers,
            rooms,
            remote,
            counters,
            throttles,
            ..
        } = self;
        let Some(publisher) = remote.get_mut(&piped.source) else {
            return;
        };
        let Some(producer) = publisher
            .producers
            .iter_mut()
            .find(|p| p.track_id == piped.track)
        else {
            return;
        };
        let info = &piped.ingress.info;
        if info.keyframe && producer.kind == RtpCodecKind::Video {
            producer.keyframes.on_keyframe();
        }
        producer.count(info.layer, &piped.packet, now);
        let Some(room) = rooms.get_mut(&publisher.room) else {
            return;
        };
        fan_out(
            peers,
            room,
            counters,
            piped.source,
            &piped.track,
            &piped.packet,
            &piped.ingress,
            now,
            keyframe_wanted,
            layer_changes,
            &mut throttles.write_failed,
        );
    }

    fn send_pli(&mut self, peer: PeerId, track: &str, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(producer) = p.producers.iter().find(|x| x.track_id == track) else {
            return;
        };
        let (receiver_id, ssrcs) = (producer.receiver_id, producer.ssrcs.clone());
        if let Some(mut receiver) = receiver_id.and_then(|id| p.pc.rtp_receiver(id)) {
            for (ssrc, _) in ssrcs {
                if receiver
                    .write_rtcp(
                        now,
                        vec![Box::new(PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc: ssrc,
                        })],
                    )
                    .is_ok()
                {
                    self.counters.keyframe_requests_sent += 1;
                }
            }
        }
    }

    fn renegotiate(&mut self, now: Instant) {
        let mut offers = Vec::new();
        for (id, peer) in &mut self.peers {
            self.scope = Some(Scope::Peer(*id));
            if !peer.renegotiate || peer.offer_pending {
                continue;
            }
            // Only from `stable`; an exchange under way ends in it (refused offers are rolled
            // back), and the offer follows then.
            if peer.pc.pending_remote_description().is_some()
                || peer.pc.pending_local_description().is_some()
            {
                continue;
            }
            if !peer.rights.publish {
                // A consumer's new transceiver would offer to receive too.
                refuse_receiving(&mut peer.pc);
            }
            let offer = peer
                .pc
                .create_offer(None)
                .and_then(|o| peer.pc.set_local_description(now, o));
            match offer {
                Ok(()) => {
                    if let Some(desc) = peer.pc.local_description() {
                        peer.renegotiate = false;
                        peer.offer_pending = true;
                        peer.offer_failing = false;
                        offers.push(SfuEvent::Offer {
                            peer: *id,
                            sdp: desc.sdp,
                        });
                    }
                }
                Err(e) => {
                    // Tried again on every round: counted each time, logged once.
                    self.counters.server_offer_errors += 1;
                    if !std::mem::replace(&mut peer.offer_failing, true) {
                        tracing::warn!(peer = *id, error = %e, "cannot create a renegotiation offer");
                    }
                }
            }
        }
        for offer in offers {
            self.emit(offer);
        }
    }
}

/// Forwards a packet of `source`'s `track` to the room's subscribers on this shard.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    peers: &mut HashMap<PeerId, Peer>,
    room: &mut Room,
    counters: &mut EngineCounters,
    source: PeerId,
    track: &str,
    packet: &rtp::Packet,
    ingress: &Ingress,
    now: Instant,
    keyframe_wanted: &mut Vec<(PeerId, String)>,
    layer_changes: &mut Vec<SfuEvent>,
    write_failed: &mut LogThrottle,
) {
    let Ingress {
        info,
        video: producer_kind_video,
        level,
        extensions,
    } = ingress;
    if let Some(level) = *level {
        room.speakers.observe(source, level, now);
    }
    for &member in room.members.iter().filter(|m| **m != source) {
        let Some(sub) = peers.get_mut(&member) else {
            continue;
        };
        if !sub.connected {
            continue;
        }
        for c in sub
            .consumers
            .iter_mut()
            .filter(|c| c.source.0 == source && c.source.1 == track)
        {
            let before = c.forwarder.current_layer();
            let decision = c.forwarder.handle(info, now);
            if c.forwarder.keyframe_needed().is_some() {
                keyframe_wanted.push(c.source.clone());
            }
            if c.forwarder.current_layer() != before && *producer_kind_video {
                layer_changes.push(SfuEvent::LayerChanged {
                    subscriber: member,
                    source,
                    track: track.to_owned(),
                    layer: c.forwarder.current_layer(),
                });
            }
            let Decision::Forward(rewrite) = decision else {
                continue;
            };
            let Some(mut sender) = sub.pc.rtp_sender(c.sender_id) else {
                continue;
            };
            if c.payload_type.is_none() {
                c.payload_type = sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|k| k.rtp_codec.mime_type.eq_ignore_ascii_case(&c.mime))
                    .map(|k| k.payload_type);
            }
            let Some(pt) = c.payload_type else { continue };
            let twcc_id = &mut c.twcc_id;
            let map = c.extension_map.get_or_insert_with(|| {
                let theirs = &sender.get_parameters().rtp_parameters.header_extensions;
                let mut map = Box::new([0u8; 256]);
                for (id, uri) in extensions.iter() {
                    if let Some(h) = theirs.iter().find(|h| &h.uri == uri) {
                        map[usize::from(*id)] = u8::try_from(h.id).unwrap_or(0);
                    }
                }
                *twcc_id = theirs
                    .iter()
                    .find(|h| h.uri == TRANSPORT_CC_URI)
                    .and_then(|h| u8::try_from(h.id).ok())
                    .filter(|id| (1..=14).contains(id))
                    .unwrap_or(0);
                map
            });
            let mut out = packet.clone();
            out.header.ssrc = c.ssrc;
            out.header.payload_type = pt;
            out.header.sequence_number = rewrite.sequence;
            out.header.timestamp = rewrite.timestamp;
            out.header.marker = rewrite.marker;
            // Extension ids are per connection: keep the forwardable ones, renumbered.
            out.header.extensions.retain_mut(|e| {
                let id = map[usize::from(e.id)];
                e.id = id;
                id != 0 && id <= 14
            });
            // The transport-wide sequence number, for congestion feedback from this peer.
            let transport_seq = (c.twcc_id != 0).then(|| {
                let seq = sub.transport_seq;
                sub.transport_seq = seq.wrapping_add(1);
                let at = 2 * usize::from(seq);
                out.header.extensions.push(rtp::header::Extension {
                    id: c.twcc_id,
                    payload: bytes::Bytes::from_static(&SEQUENCE_BYTES[at..at + 2]),
                });
                seq
            });
            out.header.extension = !out.header.extensions.is_empty();
            if out.header.extension && out.header.extension_profile == 0 {
                out.header.extension_profile = 0xBEDE;
            }
            let size = out.header.marshal_size() + out.payload.len();
            match sender.write_rtp(now, out) {
                Ok(()) => {
                    if let Some(seq) = transport_seq {
                        sub.bwe.on_sent(seq, size, now);
                    }
                    counters.rtp_forwarded += 1;
                    c.packets += 1;
                }
                Err(e) => {
                    counters.forward_errors += 1;
                    if let Some(held) = write_failed.allow(now) {
                        tracing::debug!(error = %e, held, "write_rtp failed");
                    }
                }
            }
        }
    }
}
