//! Keyframe requests to one publisher stream, coalesced: at most one PLI per interval, however many
//! subscribers ask, and asked again if no keyframe arrives.

use std::time::{Duration, Instant};

/// Shortest time between two requests to the same stream.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Request state of one producer stream.
#[derive(Debug, Clone, Default)]
pub struct KeyframeRequests {
    /// A keyframe is wanted and has not arrived yet.
    pending: bool,
    /// When the last request went out.
    last_sent: Option<Instant>,
}

impl KeyframeRequests {
    /// Someone wants a keyframe. Returns true when a request should be sent now; otherwise it is
    /// coalesced into one that [`KeyframeRequests::poll`] sends when the interval has passed.
    pub fn request(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// A keyframe arrived: nothing is pending any more.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
    }

    /// Whether a (retried or coalesced) request is due at `now`; records it as sent if so.
    pub fn poll(&mut self, now: Instant) -> bool {
        let due = self.pending
            && self
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= MIN_INTERVAL);
        if due {
            self.last_sent = Some(now);
        }
        due
    }

    /// When [`KeyframeRequests::poll`] should next be called, if a request is pending.
    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + MIN_INTERVAL),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_coalesced_to_one_per_interval_and_retried_until_a_keyframe() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut k = KeyframeRequests::default();
        assert!(k.request(t0), "the first request goes out at once");
        assert!(
            !k.request(ms(10)),
            "a second subscriber's request is coalesced"
        );
        assert!(!k.request(ms(499)));
        assert_eq!(k.next_timeout(), Some(ms(500)));
        assert!(!k.poll(ms(499)));
        assert!(
            k.poll(ms(500)),
            "no keyframe yet: asked again after the interval"
        );
        assert!(!k.poll(ms(600)));
        k.on_keyframe();
        assert_eq!(k.next_timeout(), None);
        assert!(!k.poll(ms(2000)), "nothing pending");
        assert!(
            k.request(ms(2000)),
            "a new request after the interval goes out at once"
        );
        assert!(!k.request(ms(2100)));
    }
}
