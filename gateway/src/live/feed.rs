//! One participant's mailbox of directed events (its server offers, layer changes, removal),
//! apart from the room's events so that no volume of room traffic (tracks, later chat) can push
//! its signaling out.
//!
//! Bounded, and it never loses what matters: a server offer is a whole description, so a newer
//! one replaces an older one not yet delivered (the client answers the newest); a layer change
//! replaces an earlier one for the same track; a removal is kept once. When it is full all the
//! same, the oldest layer change goes (and is counted): it only informs.
//!
//! Plain data: no clock, no locks, no channels (the hub wakes the subscriber).

use std::collections::VecDeque;

use super::core::Directed;

/// Directed events kept per participant.
pub const MAILBOX_CAPACITY: usize = 32;

/// What pushing did besides queueing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// An undelivered older event was replaced by this one (a newer offer, a newer layer).
    pub superseded: bool,
    /// The mailbox was full: an older layer change was dropped.
    pub dropped: bool,
}

/// A bounded queue of directed events for one participant.
#[derive(Debug)]
pub struct Mailbox {
    /// Undelivered events, oldest first.
    queue: VecDeque<Directed>,
    /// Most events held.
    capacity: usize,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            queue: VecDeque::new(),
            // Room for an offer, a removal and at least one more.
            capacity: capacity.max(3),
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues an event, replacing what it supersedes.
    pub fn push(&mut self, event: Directed) -> Pushed {
        let mut pushed = Pushed::default();
        let before = self.queue.len();
        match &event {
            Directed::ServerOffer { .. } => {
                self.queue
                    .retain(|e| !matches!(e, Directed::ServerOffer { .. }));
            }
            Directed::LayerChanged { track_id, .. } => {
                self.queue.retain(
                    |e| !matches!(e, Directed::LayerChanged { track_id: t, .. } if t == track_id),
                );
            }
            Directed::Removed { .. } => {
                if self.holds_removal() {
                    return pushed;
                }
            }
            Directed::StageInvitation => {
                if self
                    .queue
                    .iter()
                    .any(|e| matches!(e, Directed::StageInvitation))
                {
                    return pushed;
                }
            }
        }
        pushed.superseded = self.queue.len() < before;
        if self.queue.len() >= self.capacity {
            // Only layer changes can fill it (one offer and one removal at most).
            if let Some(i) = self
                .queue
                .iter()
                .position(|e| matches!(e, Directed::LayerChanged { .. }))
            {
                self.queue.remove(i);
                pushed.dropped = true;
            }
        }
        self.queue.push_back(event);
        pushed
    }

    /// A removal waits in it (the participant is gone, its mailbox stays until it is read).
    pub fn holds_removal(&self) -> bool {
        self.queue
            .iter()
            .any(|e| matches!(e, Directed::Removed { .. }))
    }

    /// Everything undelivered, oldest first.
    pub fn take(&mut self) -> Vec<Directed> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(n: u32) -> Directed {
        Directed::ServerOffer {
            sdp: format!("v=0 {n}"),
        }
    }

    fn layer(track: &str, layer: u8) -> Directed {
        Directed::LayerChanged {
            track_id: track.into(),
            layer: Some(layer),
        }
    }

    #[test]
    fn the_newest_offer_replaces_an_undelivered_one() {
        let mut m = Mailbox::new(32);
        assert_eq!(m.push(offer(1)), Pushed::default());
        m.push(layer("a", 0));
        assert_eq!(
            m.push(offer(2)),
            Pushed {
                superseded: true,
                dropped: false
            }
        );
        assert_eq!(m.take(), vec![layer("a", 0), offer(2)]);
        assert!(m.is_empty());
    }

    #[test]
    fn layer_changes_keep_the_newest_per_track() {
        let mut m = Mailbox::new(32);
        m.push(layer("a", 0));
        m.push(layer("b", 0));
        m.push(layer("a", 2));
        assert_eq!(m.take(), vec![layer("b", 0), layer("a", 2)]);
    }

    #[test]
    fn a_full_mailbox_drops_layer_changes_never_the_offer_or_the_removal() {
        let mut m = Mailbox::new(4);
        m.push(offer(1));
        m.push(Directed::Removed {
            reason: "bye".into(),
        });
        m.push(layer("a", 0));
        m.push(layer("b", 0));
        let full = m.push(layer("c", 0));
        assert!(full.dropped);
        assert_eq!(m.len(), 4);
        let pushed = m.push(offer(2));
        assert!(pushed.superseded && !pushed.dropped);
        let got = m.take();
        assert!(got.contains(&offer(2)));
        assert!(got.contains(&Directed::Removed {
            reason: "bye".into()
        }));
        assert!(!got.contains(&layer("a", 0)));
        // A removal is kept once.
        m.push(Directed::Removed { reason: "1".into() });
        m.push(Directed::Removed { reason: "2".into() });
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_flood_of_offers_leaves_exactly_the_last() {
        let mut m = Mailbox::new(32);
        for n in 0..10_000 {
            m.push(offer(n));
        }
        assert_eq!(m.take(), vec![offer(9_999)]);
    }
}
