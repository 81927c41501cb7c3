//! A peer: one WebRTC connection (webrtc-rs `rtc`, sans-IO) and its negotiation, like a
//! mediasoup `WebRtcTransport`.
//!
//! Owns the connection's setup (ICE-lite, DTLS server, Opus and VP8, the interceptors), the offer
//! and answer exchanges in both directions with their checks and rollbacks, the peer's rights,
//! and its send-side bandwidth state. What the peer publishes and receives are producers and
//! consumers of the [`super::router::Router`], listed here by id.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::NackGeneratorBuilder;
use rtc::interceptor::{
    Attribute, Interceptor, Packet as IPacket, Registry, Slot, StreamInfo, TaggedPacket,
};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportProtocol;

use super::keys::KeyTap;
use crate::errors::{AnswerError, JoinError};
use crate::ids::{ConsumerId, PeerId, ProducerId, RoomId, TrackId};
use crate::media::bwe::BandwidthEstimator;
use crate::media::srtp::SrtpSender;
use crate::sdp_check::{self, Role};

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

/// The audio level header extension (RFC 6464).
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The transport-wide sequence number extension (congestion control feedback refers to it).
pub(crate) const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Bandwidth estimation bounds and starting point for a subscriber, in bits per second.
const BWE_INITIAL_BPS: u64 = 1_500_000;
const BWE_MIN_BPS: u64 = 100_000;
const BWE_MAX_BPS: u64 = 20_000_000;

/// How many times a lost packet of a publisher is NACKed before the SFU gives up on it.
const MAX_NACKS_PER_PACKET: u16 = 8;

/// Source addresses remembered per peer (learned from authenticated ICE checks); the oldest is
/// forgotten beyond this.
pub(crate) const MAX_ADDRESSES: usize = 4;

/// One peer of this shard.
pub(crate) struct Peer {
    pub(crate) room: RoomId,
    /// What it may do (publish or not).
    pub(crate) rights: PeerRights,
    pub(crate) pc: RTCPeerConnection,
    pub(crate) connected: bool,
    /// Our ICE username fragment (datagrams are routed by it first).
    pub(crate) ufrag: String,
    /// Source addresses it was seen at, oldest first (at most [`MAX_ADDRESSES`]).
    pub(crate) addrs: Vec<SocketAddr>,
    /// Its producers, by the track id `rtc` reports its packets under.
    pub(crate) producers: Vec<(TrackId, ProducerId)>,
    /// Its consumers.
    pub(crate) consumers: Vec<ConsumerId>,
    /// Tracks changed: an offer must be sent.
    pub(crate) renegotiate: bool,
    /// An offer was sent and not answered yet.
    pub(crate) offer_pending: bool,
    /// The last attempt at a server offer failed (logged once, until one succeeds).
    pub(crate) offer_failing: bool,
    /// Send-side bandwidth estimation of what the SFU sends this peer.
    pub(crate) bwe: BandwidthEstimator,
    /// Transport-wide sequence number of the next packet sent to this peer.
    pub(crate) transport_seq: u16,
    /// Congestion feedback arrived: the estimate drives its consumers' layers.
    pub(crate) feedback_seen: bool,
    /// Congestion feedback arrived since the last review.
    pub(crate) fresh_feedback: bool,
    /// The estimate last reported in an event.
    pub(crate) reported_bps: Option<u64>,
    /// When its connection next needs [`RTCPeerConnection::handle_timeout`], as of the last time
    /// it was touched.
    pub(crate) next_timeout: Option<Instant>,
    /// It had input this round: its connection is polled at the end of the round.
    pub(crate) touched: bool,
    /// The connection's crypto provider, which notes its SRTP keys.
    pub(crate) keys: Arc<KeyTap>,
    /// The SFU's own SRTP sending context for the media it forwards, and the handshake its keys
    /// are from.
    pub(crate) srtp: Option<(usize, SrtpSender)>,
    /// Where its connection sends (the selected candidate pair's remote address, as `rtc`'s own
    /// DTLS and RTCP datagrams show it): forwarded media goes there.
    pub(crate) media_to: Option<(SocketAddr, TransportProtocol)>,
}

/// What the shard answers with: its address for ICE candidates, its certificate.
pub(crate) struct Endpoint<'a> {
    pub(crate) ice_address: std::net::IpAddr,
    pub(crate) udp_port: u16,
    pub(crate) tcp_port: Option<u16>,
    pub(crate) ice_timeouts: (std::time::Duration, std::time::Duration),
    pub(crate) certificate: &'a RTCCertificate,
}

impl Peer {
    /// The SFU's SRTP sending context, made (again) from the latest DTLS handshake's keys when
    /// they are new. `None` before the first handshake.
    pub(crate) fn srtp_sender(&mut self) -> Option<&mut SrtpSender> {
        let handshakes = self.keys.handshakes();
        if handshakes == 0 {
            return None;
        }
        if self.srtp.as_ref().is_none_or(|(h, _)| *h != handshakes) {
            let sender = self
                .keys
                .local_key()
                .and_then(|master| SrtpSender::new(self.keys.primitives(), &master).ok());
            self.srtp = sender.map(|s| (handshakes, s));
        }
        self.srtp.as_mut().map(|(_, s)| s)
    }

    /// A new connection for `id` that took `offer` (checked first) and is ready to answer it
    /// ([`Peer::answer_first_offer`]) once the room's tracks are added to it: those that fit the
    /// sections it offered to receive go out in the answer itself.
    pub(crate) fn from_offer(
        id: PeerId,
        room: RoomId,
        offer: String,
        rights: PeerRights,
        endpoint: &Endpoint<'_>,
        now: Instant,
    ) -> Result<Peer, JoinError> {
        let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
        sdp_check::check(&offer, Role::Offer)?;
        let ufrag = format!(
            "p{:x}{}",
            id.as_u64(),
            rtc::shared::util::math_rand_alpha(8)
        );
        let pwd = rtc::shared::util::math_rand_alpha(32);
        let keys = KeyTap::new().map_err(|e| JoinError::Setup(e.to_string()))?;
        let settings = SettingEngineBuilder::new()
            .with_crypto_provider(keys.clone())
            // AES-GCM first; AES-CM with the 80-bit tag for peers without it (the SFU's own
            // sealing, `media::srtp`, supports exactly these).
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_lite(true)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_ice_credentials(ufrag.clone(), pwd)
            .with_ice_timeouts(
                Some(endpoint.ice_timeouts.0),
                Some(endpoint.ice_timeouts.1),
                None,
            )
            .build();
        let (media, registry) = media_setup().map_err(setup)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_certificates(vec![endpoint.certificate.clone()])
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
            refuse_receiving(&mut pc, false);
        }
        let candidates = std::iter::once(("udp", endpoint.udp_port))
            .chain(endpoint.tcp_port.map(|port| ("tcp", port)));
        for (network, port) in candidates {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: endpoint.ice_address.to_string(),
                    port,
                    component: 1,
                    ..Default::default()
                },
                tcp_type: if network == "tcp" {
                    rtc::ice::tcp_type::TcpType::Passive
                } else {
                    Default::default()
                },
            }
            .new_candidate_host()
            .map_err(setup)?;
            pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(setup)?)
                .map_err(setup)?;
        }
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(setup)?;
        Ok(Peer {
            room,
            rights,
            pc,
            connected: false,
            ufrag,
            addrs: Vec::new(),
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
            next_timeout: None,
            touched: false,
            keys,
            srtp: None,
            media_to: None,
        })
    }

    /// Answers the offer the connection was made with ([`Peer::from_offer`]).
    pub(crate) fn answer_first_offer(&mut self, now: Instant) -> Result<String, JoinError> {
        let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
        unsend_senderless(&mut self.pc);
        let answer = self.pc.create_answer(None).map_err(setup)?;
        self.pc.set_local_description(now, answer).map_err(setup)?;
        Ok(self
            .pc
            .local_description()
            .ok_or_else(|| JoinError::Setup("no local description".into()))?
            .sdp)
    }

    /// A renegotiation offer from the peer. If a server offer is pending (glare), the server is
    /// the polite side: its offer is rolled back and made again after this exchange.
    ///
    /// A refused offer changes nothing: it is checked first ([`sdp_check`]), and if `rtc` still
    /// fails once it has taken the offer, the offer is rolled back. `Err(Ok(e))`: refused;
    /// `Err(Err(e))`: refused and the connection could not even be rolled back (the caller
    /// closes it rather than leave it unable to negotiate again).
    pub(crate) fn client_offer(
        &mut self,
        sdp: String,
        now: Instant,
    ) -> Result<String, Result<JoinError, JoinError>> {
        let checked = sdp_check::check(&sdp, Role::Offer).map_err(|e| Ok(e.into()))?;
        if let Some(current) = self.pc.current_remote_description() {
            let current = sdp_check::describe(&current.sdp).map_err(|e| Ok(e.into()))?;
            sdp_check::check_renegotiation(&current, &checked).map_err(|e| Ok(e.into()))?;
        }
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|e| Ok(JoinError::BadOffer(e.to_string())))?;
        if self.offer_pending {
            let setup = |e: rtc::shared::error::Error| Ok(JoinError::Setup(e.to_string()));
            let rollback = RTCSessionDescription::rollback(None).map_err(setup)?;
            self.pc
                .set_local_description(now, rollback)
                .map_err(setup)?;
            self.offer_pending = false;
            self.renegotiate = true;
        }
        match self.answer_offer(offer, now) {
            Ok(sdp) => Ok(sdp),
            Err(e) if roll_back_remote(&mut self.pc, now) => Err(Ok(e)),
            Err(e) => Err(Err(e)),
        }
    }

    /// Applies a peer's offer (checked) and answers it: the answer's SDP.
    fn answer_offer(
        &mut self,
        offer: RTCSessionDescription,
        now: Instant,
    ) -> Result<String, JoinError> {
        let setup = |e: rtc::shared::error::Error| JoinError::Setup(e.to_string());
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| JoinError::BadOffer(e.to_string()))?;
        if !self.rights.publish {
            refuse_receiving(&mut self.pc, self.connected);
        }
        unsend_senderless(&mut self.pc);
        let answer = self.pc.create_answer(None).map_err(setup)?;
        self.pc.set_local_description(now, answer).map_err(setup)?;
        Ok(self
            .pc
            .local_description()
            .ok_or_else(|| JoinError::Setup("no local description".into()))?
            .sdp)
    }

    /// The peer's answer to the pending server offer. A refused answer changes nothing (the
    /// offer stays pending), unless `rtc` fails after taking it: then a new offer follows.
    pub(crate) fn accept_answer(&mut self, sdp: String, now: Instant) -> Result<(), AnswerError> {
        let ours = self.pc.pending_local_description();
        let (true, Some(ours)) = (self.offer_pending, ours) else {
            return Err(AnswerError::NoOfferPending);
        };
        let checked = sdp_check::check(&sdp, Role::Answer)?;
        let ours = sdp_check::describe(&ours.sdp)?;
        let current = match self.pc.current_remote_description() {
            Some(current) => sdp_check::describe(&current.sdp)?,
            None => return Err(AnswerError::NoOfferPending),
        };
        sdp_check::check_answer(&ours, &current, &checked)?;
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|e| AnswerError::BadAnswer(e.to_string()))?;
        if let Err(e) = self.pc.set_remote_description(now, answer) {
            if self.pc.pending_local_description().is_none() {
                // Taken, then failed: the next offer sets things right.
                self.offer_pending = false;
                self.renegotiate = true;
            }
            return Err(AnswerError::BadAnswer(e.to_string()));
        }
        self.offer_pending = false;
        Ok(())
    }

    /// A server offer when one is due (tracks changed) and the connection is `stable`:
    /// `Ok(Some(sdp))`. `Err` when `rtc` could not make it (tried again next round).
    pub(crate) fn make_offer(
        &mut self,
        now: Instant,
    ) -> Result<Option<String>, rtc::shared::error::Error> {
        if !self.renegotiate || self.offer_pending {
            return Ok(None);
        }
        // Only from `stable`; an exchange under way ends in it (refused offers are rolled back),
        // and the offer follows then.
        if self.pc.pending_remote_description().is_some()
            || self.pc.pending_local_description().is_some()
        {
            return Ok(None);
        }
        if !self.rights.publish {
            // A consumer's new transceiver would offer to receive too.
            refuse_receiving(&mut self.pc, self.connected);
        }
        unsend_senderless(&mut self.pc);
        let offer = self.pc.create_offer(None)?;
        self.pc.set_local_description(now, offer)?;
        let Some(desc) = self.pc.local_description() else {
            return Ok(None);
        };
        self.renegotiate = false;
        self.offer_pending = true;
        self.offer_failing = false;
        Ok(Some(desc.sdp))
    }

    /// Remembers `addr` as one of the peer's; returns the address it forgot to make room, if any.
    pub(crate) fn learn_address(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.addrs.contains(&addr) {
            return None;
        }
        self.addrs.push(addr);
        (self.addrs.len() > MAX_ADDRESSES).then(|| self.addrs.remove(0))
    }
}

/// Lets inbound RTCP reach the application: `rtc` drops RTCP not marked for delivery. Keeps only
/// what the SFU acts on (PLI, FIR, NACK, transport-wide congestion feedback, sender reports); a
/// compound whose first packet is an empty receiver report would otherwise be dropped whole.
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
                    if any.is::<PictureLossIndication>()
                        || any.is::<FullIntraRequest>()
                        || any.is::<TransportLayerNack>()
                        || any.is::<SenderReport>()
                    {
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

/// The codecs, header extensions and interceptors of every connection.
///
/// Opus and VP8 only (what the forwarding path understands), with NACK, PLI, FIR and
/// transport-wide congestion control feedback. RTX is not negotiated: `rtc`'s NACK generator does
/// not see packets repaired over RTX and would ask for them again and again, so retransmissions
/// travel on the original SSRC (RFC 4585), which the forwarder deduplicates. Subscribers' NACKs
/// are answered by the SFU itself from each producer's recent packets (see
/// [`super::consumer`]), with a fresh transport-wide sequence number, so `rtc`'s NACK responder
/// (which would keep a second copy of every packet sent) is not registered.
fn media_setup() -> Result<(MediaEngine, Registry), rtc::shared::error::Error> {
    let mut media = MediaEngine::default();
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    media.register_codec(
        rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters {
            rtp_codec: opus(),
            payload_type: OPUS_PAYLOAD_TYPE,
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
            payload_type: VP8_PAYLOAD_TYPE,
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
    let registry = Registry::new().with(
        Slot::NackGenerator,
        NackGeneratorBuilder::new()
            .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
            .build(),
    );
    let registry = configure_twcc_receiver_only(registry, &mut media)?;
    // Wire-ward of the report generators (10_000, 11_000), above the pacer.
    let registry = configure_rtcp_reports(registry)
        .with(
            Slot::from(9_500),
            super::reports::WithholdVideoReports::default(),
        )
        .with(Slot::from(14_000), DeliverRtcp::default());
    Ok((media, registry))
}

/// The payload types the SFU registers (and gives in-process consumers).
pub(crate) const OPUS_PAYLOAD_TYPE: u8 = 111;
pub(crate) const VP8_PAYLOAD_TYPE: u8 = 96;

pub(crate) fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Takes the receiving side off every transceiver of a peer without the publish right, so that
/// the next description (our answer to its offer, or our offer) accepts no media from it and
/// `rtc` starts no receiver. Applied after each of its offers: `rtc` turns a transceiver back to
/// receiving when an offer sends on it.
///
/// Before the connection is up, not when that would leave every section inactive: candidates in
/// inactive sections are skipped by `rtc` (a webrtc-rs client would never connect), so a peer
/// that offers only to send gets its sections answered as offered. Once `connected`, every
/// section may go inactive (a publisher demoted to viewer). Either way its RTP is refused on
/// arrival ([`super::Engine::handle_datagram`]); this only tells an honest client not to send.
pub(crate) fn refuse_receiving(pc: &mut RTCPeerConnection, connected: bool) {
    let ids: Vec<_> = pc.get_transceivers().collect();
    let sends = ids.iter().any(|&id| {
        pc.rtp_transceiver(id)
            .is_some_and(|t| t.direction().has_send())
    });
    if !sends && !connected {
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

/// Takes the sending side off transceivers that have nothing to send (no sender yet), so that a
/// description never offers a sending section without its `a=msid` and `a=ssrc` (a browser would
/// make up a stream for it, and the next offer, with the real track, would change it). A later
/// consumer reuses the transceiver ([`add_sending_track`]).
///
/// Not when that would leave every section inactive (see [`refuse_receiving`]).
fn unsend_senderless(pc: &mut RTCPeerConnection) {
    let ids: Vec<_> = pc.get_transceivers().collect();
    let active_after = ids.iter().any(|&id| {
        pc.rtp_transceiver(id).is_some_and(|t| {
            let d = t.direction();
            d.has_recv() || (d.has_send() && t.sender().is_some())
        })
    });
    if !active_after {
        return;
    }
    for id in ids {
        if let Some(mut t) = pc.rtp_transceiver(id) {
            let d = t.direction();
            if d.has_send() && t.sender().is_none() {
                t.set_direction(RTCRtpTransceiverDirection::from_send_recv(
                    false,
                    d.has_recv(),
                ));
            }
        }
    }
}

/// Adds a track for the connection to send: on a section the peer offered to receive on when
/// one is free (so that no new m-line is needed), else on a new send-only section. Never on a
/// section the peer sends on: `rtc`'s `add_track` would take a publisher's own send-only section
/// and make it send-receive, which the browser (whose side sends only) would answer without
/// receiving. Returns the sender, and whether a new section was made.
pub(crate) fn add_sending_track(
    pc: &mut RTCPeerConnection,
    track: rtc::media_stream::MediaStreamTrack,
    stream: String,
) -> Result<(rtc::rtp_transceiver::RTCRtpSenderId, bool), rtc::shared::error::Error> {
    let ids: Vec<_> = pc.get_transceivers().collect();
    let reuse = ids.iter().all(|&id| {
        pc.rtp_transceiver(id)
            .is_some_and(|t| t.sender().is_some() || !t.direction().has_recv())
    });
    if reuse {
        let before = ids.len();
        let sender = pc.add_track(track)?;
        return Ok((sender, pc.get_transceivers().count() > before));
    }
    let id = pc.add_transceiver_from_track(
        track,
        Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![stream],
            send_encodings: vec![],
        }),
    )?;
    let sender = pc
        .rtp_transceiver(id)
        .and_then(|t| t.sender())
        .ok_or_else(|| {
            rtc::shared::error::Error::Other("a new transceiver without a sender".into())
        })?;
    Ok((sender, true))
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

/// A STUN message (RFC 5389 magic cookie), by its header.
pub(crate) fn is_stun(b: &[u8]) -> bool {
    b.len() >= 20 && b[0] < 4 && b[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// Our ICE username fragment in a STUN request (the part of USERNAME before the colon).
pub(crate) fn stun_local_ufrag(b: &[u8]) -> Option<String> {
    let mut m = rtc::stun::message::Message::new();
    m.unmarshal_binary(b).ok()?;
    let username = m.get(rtc::stun::attributes::ATTR_USERNAME).ok()?;
    let username = String::from_utf8(username).ok()?;
    username.split(':').next().map(str::to_owned)
}

/// An RTP packet (not RTCP), by its first two bytes (RFC 7983, RFC 5761): version 2, and a
/// payload type outside RTCP's 64-95 range (marker bit masked).
pub(crate) fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && b[0] >> 6 == 2 && !(64..96).contains(&(b[1] & 0x7f))
}

/// Simulcast layer of a RID (0 without simulcast).
pub(crate) fn simulcast_layer(rid: Option<&str>) -> u8 {
    match rid {
        Some("h") | Some("m") | Some("mid") => 1,
        Some("f") | Some("hi") | Some("high") => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_and_rtcp_are_told_apart_by_payload_type() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 96 | 0x80;
        assert!(is_rtp(&rtp));
        rtp[1] = 200; // a sender report
        assert!(!is_rtp(&rtp));
        rtp[0] = 0x40; // version 1
        rtp[1] = 96;
        assert!(!is_rtp(&rtp));
        assert!(!is_rtp(&[0x80, 96]));
    }
}
