//! What a peer publishes and receives, as [`crate::Sfu::stats`] reports it.

use crate::engine::PeerRights;
use crate::ids::{PeerId, RoomId, TrackId};

/// What one peer publishes and receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub peer: PeerId,
    pub room: RoomId,
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
    pub track: TrackId,
    pub video: bool,
    /// (SSRC, simulcast layer) of each stream.
    pub streams: Vec<(u32, u8)>,
    /// Paused by the server ([`crate::Sfu::pause_producer`]).
    pub paused: bool,
}

/// One received track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The publishing peer and its track.
    pub source: PeerId,
    pub track: TrackId,
    /// The SSRC this subscriber sees.
    pub ssrc: u32,
    /// Layer forwarded now, and layer wanted (`None`: paused or not started).
    pub current_layer: Option<u8>,
    pub target_layer: Option<u8>,
    /// The highest layer the subscriber asked for (`None`: paused by the subscriber).
    pub preferred_layer: Option<u8>,
    /// Packets sent to this subscriber for this track (retransmissions included).
    pub packets: u64,
    /// Packets sent again because the subscriber reported them lost (NACK).
    pub retransmitted: u64,
}

/// One subscriber as the last review saw it (once a second): for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStatus {
    pub peer: PeerId,
    /// Bandwidth estimated towards it, once its congestion feedback has arrived.
    pub estimate_bps: Option<u64>,
    /// Its video consumers on each simulcast layer (0, 1, 2), and those receiving none.
    pub video_on_layer: [u32; 3],
    pub video_without_layer: u32,
}
