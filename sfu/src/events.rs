//! What the SFU tells its users, and how it reaches each of them.
//!
//! Every listener ([`crate::Sfu::events`]) has its own bounded queue. A listener that falls
//! behind by more than its queue loses events, counted in [`EventBus::dropped`] and logged; the
//! shards never wait for a listener. A listener whose receiver is dropped is forgotten.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::ids::{PeerId, RoomId, TrackId};
use crate::throttle::LogThrottle;

/// What the SFU tells its users.
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
        track: TrackId,
        video: bool,
    },
    /// A peer's track ended (the peer left, was removed, lost the right to publish, or the
    /// server closed the track).
    TrackUnpublished { peer: PeerId, track: TrackId },
    /// The server paused (`paused: true`) or resumed a peer's track
    /// ([`crate::Sfu::pause_producer`]): while paused, nothing of it reaches anyone.
    ProducerPaused {
        peer: PeerId,
        track: TrackId,
        paused: bool,
    },
    /// The server offers a new session description to `peer` (tracks came or went); answer it
    /// with [`crate::Sfu::answer_checked`].
    Offer { peer: PeerId, sdp: String },
    /// The dominant speaker of a room changed (from audio levels, with hysteresis).
    ActiveSpeaker { room: RoomId, peer: PeerId },
    /// The simulcast layer `subscriber` receives of `source`'s `track` changed (`None`: paused).
    LayerChanged {
        subscriber: PeerId,
        source: PeerId,
        track: TrackId,
        layer: Option<u8>,
    },
    /// The bandwidth estimated towards `peer` moved by 10 % or more.
    BandwidthEstimate { peer: PeerId, bps: u64 },
    /// The room was closed; its peers are disconnected. Other rooms go on.
    RoomClosed { room: RoomId, reason: CloseReason },
}

/// Why a room closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`crate::Sfu::close_room`] was called.
    Requested,
    /// The room's code panicked (the message); the shard and its other rooms go on.
    Fault(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Requested => f.write_str("closed"),
            CloseReason::Fault(reason) => write!(f, "fault: {reason}"),
        }
    }
}

/// The listeners of the SFU's events.
#[derive(Default)]
pub(crate) struct EventBus {
    /// A std mutex: held to hand an event to each listener's queue, never across I/O.
    listeners: Mutex<Vec<mpsc::Sender<SfuEvent>>>,
    dropped: AtomicU64,
    full: Mutex<LogThrottle>,
}

impl EventBus {
    /// A new listener with room for `capacity` events.
    pub(crate) fn listen(&self, capacity: usize) -> mpsc::Receiver<SfuEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.lock().push(tx);
        rx
    }

    /// Hands `event` to every listener that has room for it.
    pub(crate) fn publish(&self, event: SfuEvent) {
        let mut lost = 0;
        self.lock()
            .retain(|listener| match listener.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lost += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        if lost > 0 {
            self.dropped.fetch_add(lost, Ordering::Relaxed);
            let mut throttle = self.full.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(held) = throttle.allow(Instant::now()) {
                tracing::warn!(held, ?event, "an SFU event listener is full: event lost");
            }
        }
    }

    /// Events lost to full listeners since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<SfuEvent>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(n: u64) -> SfuEvent {
        SfuEvent::PeerConnected {
            peer: PeerId::from_u64(n),
        }
    }

    #[test]
    fn every_listener_gets_every_event_and_a_full_one_loses_only_its_own() {
        let bus = EventBus::default();
        let mut big = bus.listen(10);
        let mut small = bus.listen(1);
        bus.publish(connected(1));
        bus.publish(connected(2));
        assert_eq!(big.try_recv().ok(), Some(connected(1)));
        assert_eq!(big.try_recv().ok(), Some(connected(2)));
        assert_eq!(small.try_recv().ok(), Some(connected(1)));
        assert!(small.try_recv().is_err());
        assert_eq!(bus.dropped(), 1);
    }

    #[test]
    fn a_dropped_listener_is_forgotten() {
        let bus = EventBus::default();
        drop(bus.listen(1));
        bus.publish(connected(1));
        assert_eq!(bus.lock().len(), 0);
        assert_eq!(bus.dropped(), 0);
    }
}
