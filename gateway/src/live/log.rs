//! The room events of one session, numbered: each gets the next sequence number and goes into a
//! bounded ring, so that a subscriber reads on from its last number, and one that asks for what
//! the ring no longer holds is told so (it then starts again from a snapshot) instead of
//! silently missing events.
//!
//! Plain data: no clock, no locks, no channels (the hub wakes subscribers).

use std::collections::VecDeque;

/// Room events kept per session.
pub const ROOM_LOG_CAPACITY: usize = 1024;

/// What a reader gets from [`RoomLog::read_after`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read<E> {
    /// The events after the given number (possibly none), oldest first, up to the limit asked.
    Events(Vec<(u64, E)>),
    /// The events right after the given number are no longer held (or the number was never this
    /// log's): start again from a snapshot.
    Gap,
}

/// A bounded, numbered log.
#[derive(Debug)]
pub struct RoomLog<E> {
    /// The newest events, oldest first, with their numbers (consecutive).
    ring: VecDeque<(u64, E)>,
    /// Most events held.
    capacity: usize,
    /// The number before the first event this log ever numbered (its first is `base + 1`).
    base: u64,
    /// The number of the newest event (`base` before any).
    head: u64,
}

impl<E: Clone> RoomLog<E> {
    /// An empty log whose first event is numbered `base + 1`. A distinct base per session
    /// incarnation keeps a number from an earlier incarnation from being taken for this one's.
    pub fn new(capacity: usize, base: u64) -> RoomLog<E> {
        RoomLog {
            ring: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            base,
            head: base,
        }
    }

    /// Numbers and keeps an event (the oldest goes when full). Returns its number.
    pub fn append(&mut self, event: E) -> u64 {
        self.head += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back((self.head, event));
        self.head
    }

    /// The number of the newest event: what a snapshot taken now is up to.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Whether the events after `after` are all still held (or there are none yet).
    pub fn holds_after(&self, after: u64) -> bool {
        if after < self.base || after > self.head {
            return false;
        }
        match self.ring.front() {
            Some((oldest, _)) => after + 1 >= *oldest,
            None => true,
        }
    }

    /// Up to `limit` events numbered after `after`, or [`Read::Gap`].
    pub fn read_after(&self, after: u64, limit: usize) -> Read<E> {
        if !self.holds_after(after) {
            return Read::Gap;
        }
        let Some((oldest, _)) = self.ring.front() else {
            return Read::Events(Vec::new());
        };
        let skip = (after + 1 - oldest) as usize;
        Read::Events(self.ring.iter().skip(skip).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_consecutive_from_the_base() {
        let mut log = RoomLog::new(4, 100);
        assert_eq!(log.head(), 100);
        assert_eq!(log.read_after(100, 10), Read::Events(vec![]));
        assert_eq!(log.append('a'), 101);
        assert_eq!(log.append('b'), 102);
        assert_eq!(
            log.read_after(100, 10),
            Read::Events(vec![(101, 'a'), (102, 'b')])
        );
        assert_eq!(log.read_after(101, 10), Read::Events(vec![(102, 'b')]));
        assert_eq!(log.read_after(100, 1), Read::Events(vec![(101, 'a')]));
        assert_eq!(log.read_after(102, 10), Read::Events(vec![]));
    }

    #[test]
    fn what_the_ring_no_longer_holds_is_a_gap_never_a_skip() {
        let mut log = RoomLog::new(3, 0);
        for c in ['a', 'b', 'c', 'd', 'e'] {
            log.append(c);
        }
        // Holds 3, 4, 5.
        assert_eq!(log.read_after(0, 10), Read::Gap);
        assert_eq!(log.read_after(1, 10), Read::Gap);
        assert_eq!(
            log.read_after(2, 10),
            Read::Events(vec![(3, 'c'), (4, 'd'), (5, 'e')])
        );
        assert_eq!(log.read_after(5, 10), Read::Events(vec![]));
    }

    #[test]
    fn numbers_not_of_this_log_are_a_gap() {
        let mut log = RoomLog::new(8, 1000);
        log.append('a');
        // From the future, or from an earlier incarnation of the session.
        assert_eq!(log.read_after(1002, 10), Read::Gap);
        assert_eq!(log.read_after(999, 10), Read::Gap);
        assert_eq!(log.read_after(7, 10), Read::Gap);
    }
}
