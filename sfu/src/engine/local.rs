//! In-process consumers of a room (the recorder's input), like mediasoup's `DirectTransport`.
//!
//! A [`LocalConsumer`] receives, for every track published in its room: [`LocalItem::TrackAdded`]
//! (kind, codec, payload type, clock rate, publisher), then the track's RTP, one layer per video
//! track (the highest, or up to a chosen layer) with continuous sequence numbers and timestamps,
//! starting on a keyframe (one is asked for); the publisher's RTCP sender reports mapped onto
//! that output timeline (NTP <-> RTP time, for A/V sync); and [`LocalItem::TrackRemoved`].
//!
//! The engine produces the items ([`super::Output::Local`]); the shard hands them to each
//! consumer's bounded queue ([`LocalSink`]). A reader that falls behind loses packets, counted in
//! [`LocalConsumer::dropped`]; the shard never waits. Track starts and ends are not lost to a full
//! queue: they wait (with the packets of their track dropped meanwhile) in a small backlog, and a
//! reader so slow that even that backlog overflows is cut off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtc::rtp;
use tokio::sync::mpsc;

use crate::ids::{LocalConsumerId, PeerId, TrackKey};

/// What an in-process consumer receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LocalItem {
    /// A track was published in the room (or was there when the consumer started).
    TrackAdded {
        track: TrackKey,
        video: bool,
        /// `video/VP8` or `audio/opus`.
        mime: String,
        /// The payload type of its [`LocalItem::Rtp`] packets.
        payload_type: u8,
        clock_rate: u32,
        /// The publisher (same as `track.peer`).
        publisher: PeerId,
    },
    /// A packet of the track: one layer, continuous sequence numbers and timestamps.
    Rtp {
        track: TrackKey,
        packet: rtp::Packet,
    },
    /// The publisher's sender report for the layer being forwarded: `rtp_time` (on the
    /// [`LocalItem::Rtp`] packets' timeline) was `ntp_time` (NTP format, 32.32 fixed point).
    SenderReport {
        track: TrackKey,
        ntp_time: u64,
        rtp_time: u32,
    },
    /// The track ended (no more packets of it follow).
    TrackRemoved { track: TrackKey },
}

impl LocalItem {
    fn is_control(&self) -> bool {
        matches!(
            self,
            LocalItem::TrackAdded { .. } | LocalItem::TrackRemoved { .. }
        )
    }
}

/// What to take from the room.
#[derive(Debug, Clone, Copy)]
pub struct LocalOptions {
    /// Items the queue holds before packets are dropped.
    pub capacity: usize,
    /// The highest simulcast layer taken of each video track (2: the best there is).
    pub max_layer: u8,
}

impl Default for LocalOptions {
    fn default() -> LocalOptions {
        LocalOptions {
            capacity: 4096,
            max_layer: 2,
        }
    }
}

/// An in-process consumer of a room ([`crate::Sfu::local_consumer`]). Dropping it (or its
/// receiver) ends it on every shard.
pub struct LocalConsumer {
    pub id: LocalConsumerId,
    pub items: mpsc::Receiver<LocalItem>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl LocalConsumer {
    /// Items lost because the reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next item; `None` once the SFU stopped or the consumer was cut off.
    pub async fn recv(&mut self) -> Option<LocalItem> {
        self.items.recv().await
    }
}

/// Control items that may wait for a full queue, per consumer; beyond, the reader is cut off.
const MAX_BACKLOG: usize = 256;

/// The shard's side of one in-process consumer: its queue and the drop policy.
pub(crate) struct LocalSink {
    tx: mpsc::Sender<LocalItem>,
    dropped: Arc<AtomicU64>,
    /// Control items waiting for room, in order.
    backlog: VecDeque<LocalItem>,
}

/// What became of an item handed to a [`LocalSink`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    Dropped,
    /// The reader is gone (or was cut off): forget the consumer.
    Closed,
}

impl LocalSink {
    pub(crate) fn new(tx: mpsc::Sender<LocalItem>, dropped: Arc<AtomicU64>) -> LocalSink {
        LocalSink {
            tx,
            dropped,
            backlog: VecDeque::new(),
        }
    }

    /// Hands `item` to the reader's queue, or drops it (packets) or keeps it for later (track
    /// starts and ends) when the queue is full.
    pub(crate) fn deliver(&mut self, item: LocalItem) -> Delivery {
        if !self.flush() {
            return Delivery::Closed;
        }
        if !self.backlog.is_empty() {
            return self.hold_or_drop(item);
        }
        match self.tx.try_send(item) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(item)) => self.hold_or_drop(item),
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    fn hold_or_drop(&mut self, item: LocalItem) -> Delivery {
        if item.is_control() {
            if self.backlog.len() >= MAX_BACKLOG {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Delivery::Closed;
            }
            self.backlog.push_back(item);
            Delivery::Queued
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Delivery::Dropped
        }
    }

    /// Moves waiting control items to the queue while it has room. False when the reader is gone.
    pub(crate) fn flush(&mut self) -> bool {
        while let Some(item) = self.backlog.pop_front() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    self.backlog.push_front(item);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        !self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TrackKey {
        TrackKey::new(PeerId::from_u64(1), "cam")
    }

    fn rtp_item(seq: u16) -> LocalItem {
        let mut packet = rtp::Packet::default();
        packet.header.sequence_number = seq;
        LocalItem::Rtp {
            track: key(),
            packet,
        }
    }

    #[test]
    fn a_full_queue_drops_packets_keeps_track_ends_in_order_and_a_gone_reader_closes() {
        let (tx, mut rx) = mpsc::channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut sink = LocalSink::new(tx, Arc::clone(&dropped));
        assert_eq!(sink.deliver(rtp_item(1)), Delivery::Queued);
        assert_eq!(sink.deliver(rtp_item(2)), Delivery::Dropped);
        assert_eq!(
            sink.deliver(LocalItem::TrackRemoved { track: key() }),
            Delivery::Queued
        );
        // Behind a waiting track end, packets are dropped too (they would overtake it).
        assert_eq!(sink.deliver(rtp_item(3)), Delivery::Dropped);
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert!(matches!(rx.try_recv(), Ok(LocalItem::Rtp { .. })));
        assert!(sink.flush());
        assert!(matches!(rx.try_recv(), Ok(LocalItem::TrackRemoved { .. })));
        drop(rx);
        assert_eq!(sink.deliver(rtp_item(4)), Delivery::Closed);
    }
}
