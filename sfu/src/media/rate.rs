//! Bitrate of a stream over the last second, from the sizes of its packets: what each simulcast
//! layer costs, for the allocator. Ten buckets of 100 ms; no allocation, time passed in.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);

/// A sliding one-second byte counter.
#[derive(Debug, Clone)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Start of the bucket `head` counts into; `None` before the first packet.
    head_start: Option<Instant>,
    head: usize,
    /// When the first packet was counted (the rate is measured over at most the time since).
    first: Option<Instant>,
}

impl Default for RateMeter {
    fn default() -> RateMeter {
        RateMeter {
            bytes: [0; BUCKETS],
            head_start: None,
            head: 0,
            first: None,
        }
    }
}

impl RateMeter {
    /// Counts a packet of `bytes` at `now`.
    pub fn add(&mut self, bytes: usize, now: Instant) {
        self.advance(now);
        self.first.get_or_insert(now);
        self.bytes[self.head] += bytes as u64;
    }

    /// Bits per second over the last second (or since the first packet, if sooner, but at least
    /// 100 ms); `None` before any packet or when nothing arrived for a second.
    pub fn bps(&self, now: Instant) -> Option<u64> {
        let start = self.head_start?;
        let steps =
            (now.saturating_duration_since(start).as_millis() / BUCKET.as_millis()) as usize;
        if steps >= BUCKETS {
            return None;
        }
        // The `steps` oldest buckets have left the window (advancing would clear them).
        let total: u64 = (0..BUCKETS - steps)
            .map(|back| self.bytes[(self.head + BUCKETS - back) % BUCKETS])
            .sum();
        if total == 0 {
            return None;
        }
        let span = now
            .saturating_duration_since(self.first?)
            .clamp(BUCKET, BUCKET * BUCKETS as u32);
        Some((total as f64 * 8.0 / span.as_secs_f64()) as u64)
    }

    /// Moves the head to the bucket of `now`, clearing the buckets passed over.
    fn advance(&mut self, now: Instant) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let steps = (now.saturating_duration_since(start).as_millis() / BUCKET.as_millis()) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS as u64) {
            self.head = (self.head + 1) % BUCKETS;
            self.bytes[self.head] = 0;
        }
        self.head_start = Some(start + BUCKET * steps as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_measures_its_rate() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        // 1000 bytes every 10 ms = 800 kbps, for 3 s.
        for i in 0..300u32 {
            m.add(1000, t0 + Duration::from_millis(10) * i);
        }
        let bps = m.bps(t0 + Duration::from_millis(2995)).unwrap();
        assert!((780_000..=820_000).contains(&bps), "{bps}");
    }

    #[test]
    fn a_young_stream_is_measured_over_its_age() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..30u32 {
            m.add(1000, t0 + Duration::from_millis(10) * i);
        }
        // 30 000 bytes in 300 ms.
        let bps = m.bps(t0 + Duration::from_millis(300)).unwrap();
        assert_eq!(bps, 800_000);
    }

    #[test]
    fn a_stopped_stream_fades_to_nothing() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.bps(t0), None);
        for i in 0..100u32 {
            m.add(500, t0 + Duration::from_millis(10) * i);
        }
        let half = m.bps(t0 + Duration::from_millis(1500)).unwrap();
        assert!(half < 250_000, "half the window has emptied: {half}");
        assert_eq!(m.bps(t0 + Duration::from_millis(2100)), None);
        // And a long silence does not make it spin.
        assert_eq!(m.bps(t0 + Duration::from_secs(3600)), None);
    }
}
