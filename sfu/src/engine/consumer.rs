//! A consumer: one producer's packets for one receiver, rewritten into a continuous stream by its
//! [`Forwarder`]. Two forwarding modes, as mediasoup has consumer kinds: to a subscriber's
//! connection ([`PeerSink`]: its own SSRC, payload type, header extension numbering and
//! transport-wide sequence numbers, NACKs answered), or to an in-process reader
//! ([`Sink::Local`], the recorder).

use std::time::Instant;

use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;

use crate::ids::{ConsumerId, LocalConsumerId, PeerId, ProducerId, TrackKey};
use crate::media::forwarder::{Forwarder, Rewrite};
use crate::media::retransmit::{Sent, SentLog};
use crate::media::srtp::Rollover;
use crate::media::vp8::{self, Vp8Info};

use super::out::MediaOut;
use super::peer::{Peer, TRANSPORT_CC_URI};

/// How a subscriber shows a track: the order in which its tracks share its bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A small tile.
    Thumbnail,
    /// A tile of the grid (the default).
    Grid,
    /// Pinned or large: served before the grid, like the active speaker.
    Pinned,
}

/// One producer's packets for one receiver.
pub(crate) struct Consumer {
    pub(crate) id: ConsumerId,
    pub(crate) producer: ProducerId,
    pub(crate) source: TrackKey,
    pub(crate) sink: Sink,
    /// The highest layer the receiver wants (`None`: paused by the subscriber).
    pub(crate) preferred: Option<u8>,
    /// Set by the subscriber (pinned, grid, thumbnail); the room's speaker is raised above it.
    pub(crate) priority: Priority,
    /// Paused by the subscriber (the preferred layer is kept for when it resumes).
    pub(crate) paused: bool,
    pub(crate) forwarder: Forwarder,
    /// Packets sent (retransmissions included).
    pub(crate) packets: u64,
    /// Packets sent again after a NACK.
    pub(crate) retransmitted: u64,
    /// When the layer forwarded last changed.
    pub(crate) layer_since: Option<Instant>,
    /// The receiver changed what it wants (layer, pause) since the last allocation: acted on
    /// at once, whatever the time on the current layer.
    pub(crate) preference_changed: bool,
}

/// Where a consumer's packets go.
pub(crate) enum Sink {
    Peer(PeerSink),
    Local(LocalConsumerId),
}

/// A consumer's sending side on a subscriber's connection.
pub(crate) struct PeerSink {
    pub(crate) peer: PeerId,
    pub(crate) sender_id: RTCRtpSenderId,
    pub(crate) ssrc: u32,
    pub(crate) mime: String,
    /// The negotiated payload type, read on first use.
    payload_type: Option<u8>,
    /// Publisher extension id -> this subscriber's id (0: not forwarded). Built on first use,
    /// with `twcc_id`.
    extension_map: Option<Box<[u8; 256]>>,
    /// This subscriber's id of the transport-wide sequence number extension (0: not negotiated).
    twcc_id: u8,
    /// How recent packets were rewritten, for NACKs.
    pub(crate) sent: SentLog,
    /// Its SSRC's SRTP rollover counter.
    rollover: Rollover,
    /// RTP packets and payload octets sent (for sender reports; they wrap, as RFC 3550 says).
    packets_sent: u32,
    octets_sent: u32,
    /// The RTP timestamp of the newest frame sent and when its first packet went.
    last_frame: Option<(u32, Instant)>,
    clock_rate: u32,
}

impl PeerSink {
    pub(crate) fn new(peer: PeerId, sender_id: RTCRtpSenderId, ssrc: u32, mime: String) -> Self {
        PeerSink {
            peer,
            sender_id,
            ssrc,
            payload_type: None,
            extension_map: None,
            twcc_id: 0,
            sent: SentLog::default(),
            rollover: Rollover::default(),
            packets_sent: 0,
            octets_sent: 0,
            last_frame: None,
            clock_rate: if mime.to_ascii_lowercase().starts_with("audio/") {
                48_000
            } else {
                90_000
            },
            mime,
        }
    }

    fn count_sent(&mut self, payload: usize, timestamp: u32, now: Instant) {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload as u32);
        // A newer frame (a resent packet's is older and changes nothing).
        if self
            .last_frame
            .is_none_or(|(t, _)| (timestamp.wrapping_sub(t) as i32) > 0)
        {
            self.last_frame = Some((timestamp, now));
        }
    }

    /// Its sender report at `now` (RFC 3550 §6.4.1), once it sent something: the RTP time of
    /// `now` extrapolated from the newest frame sent (as `rtc`'s own reports do), `ntp` the
    /// wall-clock time of `now` in NTP format.
    pub(crate) fn sender_report(&self, now: Instant, ntp: u64) -> Option<SenderReport> {
        let (timestamp, at) = self.last_frame?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time: ntp,
            rtp_time: timestamp.wrapping_add((elapsed * f64::from(self.clock_rate)) as u32),
            packet_count: self.packets_sent,
            octet_count: self.octets_sent,
            ..Default::default()
        })
    }
}

impl Consumer {
    pub(crate) fn new(
        id: ConsumerId,
        producer: ProducerId,
        source: TrackKey,
        sink: Sink,
        clock_rate: u32,
        preferred: Option<u8>,
    ) -> Consumer {
        Consumer {
            id,
            producer,
            source,
            sink,
            preferred,
            priority: Priority::Grid,
            paused: false,
            forwarder: Forwarder::new(clock_rate, preferred),
            packets: 0,
            retransmitted: 0,
            layer_since: None,
            preference_changed: false,
        }
    }

    /// The subscriber this consumer sends to, if it is a connection's.
    pub(crate) fn subscriber(&self) -> Option<PeerId> {
        match &self.sink {
            Sink::Peer(s) => Some(s.peer),
            Sink::Local(_) => None,
        }
    }
}

/// Why a packet could not be written to a subscriber.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The sender is gone or its codec is not negotiated yet, or the connection has no keys or
    /// no path yet.
    NotReady,
    /// Too large to forward, or the sealing failed.
    Refused(String),
}

/// Writes `packet` (as the publisher sent it) to the subscriber, rewritten: the consumer's SSRC
/// and payload type, `rewrite`'s sequence number, timestamp and marker (and VP8 picture id and
/// TL0PICIDX; `vp8` is its parsed descriptor), the forwardable header extensions renumbered for
/// this connection, and a fresh transport-wide sequence number (recorded for bandwidth
/// estimation). Returns the size written (before SRTP).
///
/// This is the SFU's own send path: the packet is written straight into the shard's send buffer
/// `out`, sealed there with the connection's SRTP keys (`media::srtp`), and sent with the
/// round's other packets. `rtc` does not see it: the SFU answers NACKs for it and sends its
/// sender reports ([`PeerSink::sender_report`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    sink: &mut PeerSink,
    peer: &mut Peer,
    out: &mut MediaOut,
    packet: &rtp::Packet,
    vp8: Option<&Vp8Info>,
    extensions: &[(u8, String)],
    rewrite: Rewrite,
    now: Instant,
) -> Result<usize, WriteError> {
    if sink.payload_type.is_none() || sink.extension_map.is_none() {
        learn_sender(sink, &mut peer.pc, extensions)?;
    }
    let (Some(pt), Some(map)) = (sink.payload_type, sink.extension_map.as_deref()) else {
        return Err(WriteError::NotReady);
    };
    let Some((to, protocol)) = peer.media_to else {
        return Err(WriteError::NotReady);
    };
    let transport_seq = (sink.twcc_id != 0).then_some(peer.transport_seq);
    let Some(srtp) = peer.srtp_sender() else {
        return Err(WriteError::NotReady);
    };
    let tag_len = srtp.profile().tag_len();
    let dst = out.space();
    let Some(header_len) = write_header(dst, &packet.header, pt, sink, map, transport_seq, rewrite)
    else {
        return Err(WriteError::Refused("header too large".into()));
    };
    let len = header_len + packet.payload.len();
    if len + tag_len > dst.len() {
        return Err(WriteError::Refused(format!("{len}-byte packet too large")));
    }
    dst[header_len..len].copy_from_slice(&packet.payload);
    if let (Some(info), Some(picture)) = (vp8, &rewrite.picture) {
        vp8::renumber(&mut dst[header_len..len], info, picture);
    }
    let roc = sink.rollover.of(rewrite.sequence);
    let sealed = srtp
        .seal(dst, header_len, len, roc)
        .map_err(|e| WriteError::Refused(e.to_string()))?;
    out.commit(sealed, to, protocol);
    sink.count_sent(packet.payload.len(), rewrite.timestamp, now);
    if let Some(seq) = transport_seq {
        peer.transport_seq = seq.wrapping_add(1);
        peer.bwe.on_sent(seq, len, now);
    }
    Ok(len)
}

/// Writes the RTP header of a forwarded packet at the start of `dst`: version 2, no padding, the
/// publisher's CSRCs, and the forwardable extensions in the one-byte form (RFC 8285; every id
/// kept is 1 to 14, every payload 1 to 16 bytes), then the transport-wide sequence number.
/// Returns its length, `None` if it does not fit.
fn write_header(
    dst: &mut [u8],
    header: &rtp::header::Header,
    payload_type: u8,
    sink: &PeerSink,
    map: &[u8; 256],
    transport_seq: Option<u16>,
    rewrite: Rewrite,
) -> Option<usize> {
    let csrc = &header.csrc[..header.csrc.len().min(15)];
    let fixed = 12 + 4 * csrc.len();
    if dst.len() < fixed + 4 {
        return None;
    }
    dst[0] = 0x80 | csrc.len() as u8;
    dst[1] = (u8::from(rewrite.marker) << 7) | (payload_type & 0x7f);
    dst[2..4].copy_from_slice(&rewrite.sequence.to_be_bytes());
    dst[4..8].copy_from_slice(&rewrite.timestamp.to_be_bytes());
    dst[8..12].copy_from_slice(&sink.ssrc.to_be_bytes());
    for (i, c) in csrc.iter().enumerate() {
        dst[12 + 4 * i..16 + 4 * i].copy_from_slice(&c.to_be_bytes());
    }
    // The extension block: 0xBEDE, its length in words, then the elements.
    let mut at = fixed + 4;
    for e in &header.extensions {
        let id = map[usize::from(e.id)];
        let size = e.payload.len();
        if id == 0 || id > 14 || size == 0 || size > 16 {
            continue;
        }
        if at + 1 + size > dst.len() {
            return None;
        }
        dst[at] = (id << 4) | (size - 1) as u8;
        dst[at + 1..at + 1 + size].copy_from_slice(&e.payload);
        at += 1 + size;
    }
    if let Some(seq) = transport_seq {
        if at + 3 > dst.len() {
            return None;
        }
        dst[at] = (sink.twcc_id << 4) | 1;
        dst[at + 1..at + 3].copy_from_slice(&seq.to_be_bytes());
        at += 3;
    }
    if at == fixed + 4 {
        return Some(fixed);
    }
    let padded = (at + 3) & !3;
    if padded > dst.len() {
        return None;
    }
    dst[at..padded].fill(0);
    let words = u16::try_from((padded - fixed - 4) / 4).ok()?;
    dst[0] |= 0x10;
    dst[fixed..fixed + 2].copy_from_slice(&[0xbe, 0xde]);
    dst[fixed + 2..fixed + 4].copy_from_slice(&words.to_be_bytes());
    Some(padded)
}

/// Reads what a consumer needs of its sender once: the negotiated payload type of its codec, and
/// the subscriber's ids of the forwarded header extensions and of the transport-wide sequence
/// number.
fn learn_sender(
    sink: &mut PeerSink,
    pc: &mut RTCPeerConnection,
    extensions: &[(u8, String)],
) -> Result<(), WriteError> {
    let mut sender = pc.rtp_sender(sink.sender_id).ok_or(WriteError::NotReady)?;
    let parameters = sender.get_parameters();
    // The SSRC must be the sender's own (what `rtc`'s `write_rtp` checks).
    if !parameters
        .encodings
        .iter()
        .any(|e| e.rtp_coding_parameters.ssrc == Some(sink.ssrc))
    {
        return Err(WriteError::NotReady);
    }
    sink.payload_type = parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|k| k.rtp_codec.mime_type.eq_ignore_ascii_case(&sink.mime))
        .map(|k| k.payload_type);
    let theirs = &parameters.rtp_parameters.header_extensions;
    let mut map = Box::new([0u8; 256]);
    for (id, uri) in extensions {
        if let Some(h) = theirs.iter().find(|h| &h.uri == uri) {
            map[usize::from(*id)] = u8::try_from(h.id).unwrap_or(0);
        }
    }
    sink.twcc_id = theirs
        .iter()
        .find(|h| h.uri == TRANSPORT_CC_URI)
        .and_then(|h| u8::try_from(h.id).ok())
        .filter(|id| (1..=14).contains(id))
        .unwrap_or(0);
    sink.extension_map = Some(map);
    Ok(())
}

/// Records what a consumer sent, for NACKs.
pub(crate) fn record(sink: &mut PeerSink, layer: u8, input_sequence: u16, rewrite: Rewrite) {
    sink.sent.record(Sent {
        layer,
        input_sequence,
        rewrite,
    });
}
