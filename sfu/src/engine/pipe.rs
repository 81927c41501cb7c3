//! Between the shards of a room (like mediasoup's `PipeTransport`, in-process): a shard pipes
//! its publishers' tracks and packets to the other shards hosting members of the room, and they
//! ask it for keyframes.

use std::sync::Arc;

use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};

use crate::ids::{RoomId, TrackKey};
use crate::media::forwarder::PacketInfo;

/// What one shard tells another about the tracks of a room they share.
pub(crate) enum ShardMessage {
    /// A publisher on shard `origin` published `key` in `room`.
    Track {
        room: RoomId,
        origin: usize,
        key: TrackKey,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
    },
    /// A piped track ended.
    Untrack { key: TrackKey },
    /// Packets of piped tracks (on the pipe queue, which has its own bound and budget).
    Packets(Vec<PipedPacket>),
    /// A subscriber on another shard needs a keyframe of this shard's track, of one layer.
    Keyframe { key: TrackKey, layer: u8 },
}

/// What the shard that received a packet learned of it, passed along with it to the other shards
/// of its room.
#[derive(Clone)]
pub(crate) struct Ingress {
    pub(crate) info: PacketInfo,
    pub(crate) video: bool,
    /// Audio level (RFC 6464), if the packet carries one.
    pub(crate) level: Option<u8>,
    /// Forwardable header extensions as the publisher numbers them.
    pub(crate) extensions: Arc<[(u8, String)]>,
    /// The VP8 payload descriptor (where its picture id and TL0PICIDX are, for renumbering).
    pub(crate) vp8: Option<crate::media::vp8::Vp8Info>,
}

/// A publisher's packet on its way to another shard of its room.
pub(crate) struct PipedPacket {
    pub(crate) key: TrackKey,
    pub(crate) packet: rtp::Packet,
    pub(crate) ingress: Ingress,
}
