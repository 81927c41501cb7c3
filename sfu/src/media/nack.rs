//! Loss recovery: a retransmission buffer per publisher stream (answers subscribers' NACKs) and a
//! NACK generator per publisher stream (asks the publisher for what did not arrive).
//!
//! Both are fixed-size and allocation-free once warm: packets are copied into slots that keep their
//! capacity.

use std::time::{Duration, Instant};

/// How long a packet stays retransmittable.
pub const MAX_AGE: Duration = Duration::from_millis(1000);

struct Slot {
    sequence: u16,
    stored_at: Option<Instant>,
    data: Vec<u8>,
}

/// The recent packets of one stream, by sequence number.
pub struct RetransmitBuffer {
    slots: Vec<Slot>,
}

impl RetransmitBuffer {
    /// A buffer of `capacity` packets (rounded up to a power of two).
    pub fn new(capacity: usize) -> RetransmitBuffer {
        let capacity = capacity.next_power_of_two().clamp(16, 32768);
        RetransmitBuffer {
            slots: (0..capacity)
                .map(|_| Slot {
                    sequence: 0,
                    stored_at: None,
                    data: Vec::with_capacity(1500),
                })
                .collect(),
        }
    }

    /// Keeps a copy of `packet` (sequence number `sequence`), replacing the oldest.
    pub fn insert(&mut self, sequence: u16, packet: &[u8], now: Instant) {
        let n = self.slots.len();
        let slot = &mut self.slots[usize::from(sequence) & (n - 1)];
        slot.sequence = sequence;
        slot.stored_at = Some(now);
        slot.data.clear();
        slot.data.extend_from_slice(packet);
    }

    /// The packet with `sequence`, if still held and younger than [`MAX_AGE`].
    pub fn get(&self, sequence: u16, now: Instant) -> Option<&[u8]> {
        let n = self.slots.len();
        let slot = &self.slots[usize::from(sequence) & (n - 1)];
        match slot.stored_at {
            Some(at)
                if slot.sequence == sequence && now.saturating_duration_since(at) <= MAX_AGE =>
            {
                Some(&slot.data)
            }
            _ => None,
        }
    }
}

/// Most missing packets tracked at once; a larger gap is a stream restart, not loss.
pub const MAX_MISSING: usize = 256;
/// Times one packet is asked for before giving up.
pub const MAX_RETRIES: u8 = 10;

#[derive(Clone, Copy)]
struct Missing {
    sequence: u16,
    first_missed: Instant,
    last_asked: Option<Instant>,
    retries: u8,
}

/// Gaps in a publisher's stream, and when to NACK them.
pub struct NackGenerator {
    highest: Option<u16>,
    missing: Vec<Missing>,
    /// Wait between two NACKs for the same packet (about one round trip).
    retry_interval: Duration,
}

impl NackGenerator {
    pub fn new(retry_interval: Duration) -> NackGenerator {
        NackGenerator {
            highest: None,
            missing: Vec::with_capacity(MAX_MISSING),
            retry_interval,
        }
    }

    /// Sets the wait between two NACKs of one packet (follow the round-trip time).
    pub fn set_retry_interval(&mut self, interval: Duration) {
        self.retry_interval = interval;
    }

    /// A packet arrived.
    pub fn on_packet(&mut self, sequence: u16, now: Instant) {
        let Some(highest) = self.highest else {
            self.highest = Some(sequence);
            return;
        };
        let diff = sequence.wrapping_sub(highest) as i16;
        if diff > 0 {
            let gap = (diff - 1) as usize;
            if gap > MAX_MISSING {
                // A jump, not loss: start over from here.
                self.missing.clear();
            } else {
                for i in 1..=gap as u16 {
                    if self.missing.len() == MAX_MISSING {
                        self.missing.remove(0);
                    }
                    self.missing.push(Missing {
                        sequence: highest.wrapping_add(i),
                        first_missed: now,
                        last_asked: None,
                        retries: 0,
                    });
                }
            }
            self.highest = Some(sequence);
        } else {
            self.missing.retain(|m| m.sequence != sequence);
        }
    }

    /// Appends to `out` the sequence numbers to NACK now, and forgets packets asked for too often
    /// or missing for longer than [`MAX_AGE`].
    pub fn poll(&mut self, now: Instant, out: &mut Vec<u16>) {
        let retry = self.retry_interval;
        self.missing.retain(|m| {
            m.retries < MAX_RETRIES && now.saturating_duration_since(m.first_missed) <= MAX_AGE
        });
        for m in &mut self.missing {
            if m.last_asked
                .is_none_or(|t| now.saturating_duration_since(t) >= retry)
            {
                m.last_asked = Some(now);
                m.retries += 1;
                out.push(m.sequence);
            }
        }
    }

    /// Packets currently missing.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }
}

/// Builds RTCP generic NACK FCI entries (PID + bitmask of the 16 following) from up to 64
/// sequence numbers in any order; appends `(pid, blp)` pairs to `out`.
pub fn nack_pairs(sequences: &[u16], out: &mut Vec<(u16, u16)>) {
    let Some(&first) = sequences.first() else {
        return;
    };
    let n = sequences.len().min(64);
    let mut buf = [0u16; 64];
    buf[..n].copy_from_slice(&sequences[..n]);
    let sorted = &mut buf[..n];
    // Order by distance from the first, so that a run across the wrap (65535, 0) stays in order.
    sorted.sort_unstable_by_key(|s| s.wrapping_sub(first).wrapping_add(0x8000));
    let mut i = 0;
    while i < sorted.len() {
        let pid = sorted[i];
        let mut blp = 0u16;
        let mut j = i + 1;
        while j < sorted.len() {
            let d = sorted[j].wrapping_sub(pid);
            if d == 0 || d > 16 {
                break;
            }
            blp |= 1 << (d - 1);
            j += 1;
        }
        out.push((pid, blp));
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_returns_what_it_holds_until_overwritten_or_too_old() {
        let t0 = Instant::now();
        let mut b = RetransmitBuffer::new(16);
        b.insert(100, b"a", t0);
        b.insert(101, b"bb", t0);
        assert_eq!(b.get(100, t0), Some(&b"a"[..]));
        assert_eq!(b.get(102, t0), None);
        b.insert(116, b"c", t0); // same slot as 100
        assert_eq!(b.get(100, t0), None, "overwritten");
        assert_eq!(b.get(116, t0), Some(&b"c"[..]));
        assert_eq!(
            b.get(101, t0 + MAX_AGE + Duration::from_millis(1)),
            None,
            "too old"
        );
    }

    #[test]
    fn gaps_are_nacked_retried_and_forgotten() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut g = NackGenerator::new(Duration::from_millis(50));
        let mut out = Vec::new();
        g.on_packet(10, t0);
        g.on_packet(11, t0);
        g.on_packet(14, ms(1)); // 12 and 13 missing
        g.poll(ms(1), &mut out);
        assert_eq!(out, [12, 13]);
        out.clear();
        g.poll(ms(20), &mut out);
        assert!(out.is_empty(), "not again before the retry interval");
        g.on_packet(12, ms(30)); // recovered
        g.poll(ms(51), &mut out);
        assert_eq!(out, [13]);
        out.clear();
        g.on_packet(13, ms(60));
        g.poll(ms(200), &mut out);
        assert!(out.is_empty());
        assert_eq!(g.missing_count(), 0);

        // Across the wrap, and forgotten after MAX_AGE.
        g.on_packet(65534, ms(300));
        let mut g = NackGenerator::new(Duration::from_millis(50));
        g.on_packet(65534, t0);
        g.on_packet(1, t0); // 65535 and 0 missing
        g.poll(t0, &mut out);
        assert_eq!(out, [65535, 0]);
        out.clear();
        g.poll(t0 + MAX_AGE + Duration::from_millis(1), &mut out);
        assert!(out.is_empty());
        assert_eq!(g.missing_count(), 0);
    }

    #[test]
    fn a_big_jump_is_a_restart_not_loss() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::from_millis(50));
        g.on_packet(1, t0);
        g.on_packet(5000, t0);
        assert_eq!(g.missing_count(), 0);
    }

    #[test]
    fn nack_pairs_pack_following_losses_into_the_bitmask() {
        let mut out = Vec::new();
        nack_pairs(&[100, 101, 103, 117, 118, 200], &mut out);
        assert_eq!(out, [(100, 0b0000_0000_0000_0101), (117, 0b1), (200, 0)]);
        out.clear();
        nack_pairs(&[65535, 0, 2], &mut out);
        assert_eq!(out, [(65535, 0b101)]);
    }
}
