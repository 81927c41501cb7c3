//! Typed identities of the media graph.
//!
//! [`PeerId`]s are unique across nodes (a random node tag in the high bits, a counter in the low
//! bits), rooms and tracks are shared strings ([`RoomId`], [`TrackId`]) compared without
//! parsing, and a published track is named by its publisher and its track id together
//! ([`TrackKey`]). The only text encoding of a track key is the track id subscribers see in their
//! SDP (`a=msid`), made and read here ([`TrackKey::msid_track`], [`TrackKey::from_msid_track`]).
//! Inside a shard, producers and consumers are numbered ([`ProducerId`], [`ConsumerId`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A peer (one WebRTC connection) of the SFU. Unique across nodes: the high 24 bits are a random
/// tag drawn when the SFU starts, the low 40 bits a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u64);

impl PeerId {
    /// The id as a number (for logs and maps kept by the SFU's user).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// An id from its number (as [`PeerId::as_u64`] gave it).
    pub fn from_u64(raw: u64) -> PeerId {
        PeerId(raw)
    }
}

impl fmt::Display for PeerId {
    /// Sixteen hex digits: a fixed width, so a track key's text form splits without ambiguity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Hands out [`PeerId`]s for one SFU: its node tag and a counter.
#[derive(Debug)]
pub(crate) struct PeerIds {
    tag: u64,
    next: AtomicU64,
}

impl PeerIds {
    /// A generator with a random node tag (so that two SFU nodes do not give out the same ids).
    pub(crate) fn random() -> PeerIds {
        let mut bytes = [0u8; 8];
        if getrandom(&mut bytes).is_err() {
            // The clock is a weaker but usable source of uniqueness.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = nanos.to_le_bytes();
        }
        PeerIds::with_tag(u64::from_le_bytes(bytes))
    }

    /// A generator with a given node tag (its low 24 bits are used).
    pub(crate) fn with_tag(tag: u64) -> PeerIds {
        PeerIds {
            tag: (tag & 0xff_ffff) << 40,
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> PeerId {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff;
        PeerId(self.tag | n)
    }
}

/// Random bytes from the kernel.
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A room: the peers that see each other's tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RoomId {
    fn from(s: &str) -> RoomId {
        RoomId(s.into())
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A track id as its publisher names it (the track id of its `a=msid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(Arc<str>);

impl TrackId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TrackId {
    fn from(s: &str) -> TrackId {
        TrackId(s.into())
    }
}

impl From<String> for TrackId {
    fn from(s: String) -> TrackId {
        TrackId(s.into())
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for TrackId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TrackId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for TrackId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A published track: its publisher and its track id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey {
    pub peer: PeerId,
    pub track: TrackId,
}

impl TrackKey {
    pub fn new(peer: PeerId, track: impl Into<TrackId>) -> TrackKey {
        TrackKey {
            peer,
            track: track.into(),
        }
    }

    /// The track id subscribers see in their SDP: the publisher's id (16 hex digits), a dash,
    /// the publisher's track id.
    pub fn msid_track(&self) -> String {
        format!("{}-{}", self.peer, self.track)
    }

    /// The stream id subscribers see in their SDP: one stream per publisher.
    pub fn msid_stream(&self) -> String {
        format!("peer-{}", self.peer)
    }

    /// Reads [`TrackKey::msid_track`] back; `None` for any other text.
    pub fn from_msid_track(s: &str) -> Option<TrackKey> {
        let (peer, track) = s.split_at_checked(16)?;
        let track = track.strip_prefix('-')?;
        if track.is_empty() || !peer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let peer = u64::from_str_radix(peer, 16).ok()?;
        Some(TrackKey::new(PeerId(peer), track))
    }
}

impl fmt::Display for TrackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.peer, self.track)
    }
}

/// A producer (a published track) on one shard, local or piped from another shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProducerId(pub(crate) u64);

/// A consumer (one subscriber's copy of one producer) on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConsumerId(pub(crate) u64);

/// An in-process consumer of a room ([`crate::LocalConsumer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalConsumerId(pub(crate) u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_two_nodes_differ_and_count_up_within_one() {
        let (a, b) = (PeerIds::with_tag(1), PeerIds::with_tag(2));
        let (a1, a2, b1) = (a.next(), a.next(), b.next());
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
        assert_eq!(a2.as_u64() - a1.as_u64(), 1);
    }

    #[test]
    fn a_track_key_survives_its_sdp_form_even_with_dashes_in_the_track_id() {
        let key = TrackKey::new(PeerId::from_u64(0xab_0000_0000_0007), "cam-1-{x}");
        let text = key.msid_track();
        assert_eq!(text, "00ab000000000007-cam-1-{x}");
        assert_eq!(TrackKey::from_msid_track(&text), Some(key));
    }

    #[test]
    fn other_text_is_not_a_track_key() {
        for s in [
            "",
            "7-cam",
            "00ab000000000007",
            "00ab000000000007-",
            "zzab000000000007-a",
        ] {
            assert_eq!(TrackKey::from_msid_track(s), None, "{s}");
        }
    }
}
