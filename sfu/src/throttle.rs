//! Log lines that a peer could make repeat at packet or loop rate: written at most once per
//! interval, with how many were held back since. The counters in the shard stats say how often;
//! the log only says that it happens. Time is an argument: it never reads the clock.

use std::time::{Duration, Instant};

/// One such log line.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    /// When the line may be written again (`None`: now).
    next: Option<Instant>,
    /// Lines held back since the last one written.
    held: u64,
}

impl LogThrottle {
    /// At most one line per this long.
    pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

    /// Whether to write the line at `now`: `Some(held back since the last one)`, or `None`
    /// (it is counted as held back).
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(now + Self::INTERVAL);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut throttle = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.allow(t0), Some(0));
        for i in 1..=500u64 {
            assert_eq!(throttle.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.allow(t0 + LogThrottle::INTERVAL), Some(500));
        assert_eq!(throttle.allow(t0 + LogThrottle::INTERVAL), None);
        assert_eq!(throttle.allow(t0 + 3 * LogThrottle::INTERVAL), Some(1));
    }
}
