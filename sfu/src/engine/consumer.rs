//! A consumer: one producer's packets for one receiver, rewritten into a continuous stream by its
//! [`Forwarder`]. Two forwarding modes, as mediasoup has consumer kinds: to a subscriber's
//! connection ([`PeerSink`]: its own SSRC, payload type, header extension numbering and
//! transport-wide sequence numbers, NACKs answered), or to an in-process reader
//! ([`Sink::Local`], the recorder).

use std::time::Instant;

use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;

use crate::ids::{ConsumerId, LocalConsumerId, PeerId, ProducerId, TrackKey};
use crate::media::forwarder::{Forwarder, Rewrite};
use crate::media::retransmit::{Sent, SentLog};
use crate::media::vp8::{self, Vp8Info};

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
    /// A packet passed the sender's own checks (`write_rtp`): later ones skip them.
    checked: bool,
}

impl PeerSink {
    pub(crate) fn new(peer: PeerId, sender_id: RTCRtpSenderId, ssrc: u32, mime: String) -> Self {
        PeerSink {
            peer,
            sender_id,
            ssrc,
            mime,
            payload_type: None,
            extension_map: None,
            twcc_id: 0,
            sent: SentLog::default(),
            checked: false,
        }
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
pub(crate) enum WriteError {
    /// The sender is gone or its codec is not negotiated yet.
    NotReady,
    /// `rtc` refused it.
    Refused(rtc::shared::error::Error),
}

/// Writes `packet` (as the publisher sent it) to the subscriber's connection, rewritten: the
/// consumer's SSRC and payload type, `rewrite`'s sequence number, timestamp and marker (and VP8
/// picture id and TL0PICIDX, in a copy of the payload when they change; `vp8` is its parsed
/// descriptor), the
/// forwardable header extensions renumbered for this connection, and a fresh transport-wide
/// sequence number (recorded for bandwidth estimation). Returns the size written.
///
/// The packet is cloned once (`rtc`'s write takes it by value; the payload is shared, not
/// copied).
pub(crate) fn write(
    sink: &mut PeerSink,
    peer: &mut Peer,
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
    let mut out = packet.clone();
    out.header.ssrc = sink.ssrc;
    out.header.payload_type = pt;
    out.header.sequence_number = rewrite.sequence;
    out.header.timestamp = rewrite.timestamp;
    out.header.marker = rewrite.marker;
    if let (Some(info), Some(picture)) = (vp8, &rewrite.picture)
        && let Some(payload) = vp8::renumbered(&packet.payload, info, picture)
    {
        out.payload = payload;
    }
    // Extension ids are per connection: keep the forwardable ones, renumbered.
    out.header.extensions.retain_mut(|e| {
        let id = map[usize::from(e.id)];
        e.id = id;
        id != 0 && id <= 14
    });
    // The transport-wide sequence number, for congestion feedback from this peer.
    let transport_seq = (sink.twcc_id != 0).then(|| {
        let seq = peer.transport_seq;
        peer.transport_seq = seq.wrapping_add(1);
        let at = 2 * usize::from(seq);
        out.header.extensions.push(rtp::header::Extension {
            id: sink.twcc_id,
            payload: bytes::Bytes::from_static(&SEQUENCE_BYTES[at..at + 2]),
        });
        seq
    });
    // One-byte header extensions (RFC 8285): every id kept is 1 to 14 and every forwarded
    // payload is short, whatever form the publisher used (a two-byte profile kept with these
    // extensions would not marshal to the size announced, and `rtc` would drop the packet).
    out.header.extension = !out.header.extensions.is_empty();
    out.header.extension_profile = if out.header.extension { 0xBEDE } else { 0 };
    // The publisher's padding after its own extensions does not fit ours: `rtc` counts it in
    // the size and writes only what the new list needs, and drops a packet whose sizes differ.
    out.header.extensions_padding = 0;
    let size = out.header.marshal_size() + out.payload.len();
    if sink.checked {
        // The sender's checks passed once for this consumer and what it writes does not change
        // (its SSRC, payload type and extension ids): straight into the connection's write path,
        // without `write_rtp`'s per-packet lookups and track-id String (which `rtc` ignores).
        peer.pc
            .handle_write(TaggedRTCMessage {
                now,
                message: RTCMessage::RtpPacket(String::new(), out),
            })
            .map_err(WriteError::Refused)?;
    } else {
        let mut sender = peer
            .pc
            .rtp_sender(sink.sender_id)
            .ok_or(WriteError::NotReady)?;
        sender.write_rtp(now, out).map_err(WriteError::Refused)?;
        sink.checked = true;
    }
    if let Some(seq) = transport_seq {
        peer.bwe.on_sent(seq, size, now);
    }
    Ok(size)
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
