//! Active speaker detection from the audio-level header extension (RFC 6464), per room. No audio is
//! decoded: each packet carries its level in -dBov (0 loudest, 127 silence).
//!
//! Levels are smoothed per speaker; the dominant speaker changes only when another speaker has been
//! the loudest, by a margin, for several evaluations in a row (hysteresis), so a cough does not
//! steal the stage.

use std::time::{Duration, Instant};

/// How often the detector decides.
pub const INTERVAL: Duration = Duration::from_millis(300);
/// Quieter than this (-dBov) counts as silence.
pub const SILENCE_DBOV: u8 = 60;
/// How much louder (dB) a challenger must be than the current speaker.
pub const MARGIN_DB: f32 = 6.0;
/// Evaluations in a row a challenger must win.
pub const WINS_NEEDED: u8 = 2;
/// Weight of a new level in the moving average.
const SMOOTHING: f32 = 0.3;
/// A speaker not heard for this long is silent.
const STALE: Duration = Duration::from_millis(600);

struct Entry<K> {
    key: K,
    /// Smoothed loudness in dB above silence (127 - dBov), 0 when silent.
    loudness: f32,
    last_heard: Instant,
}

/// The dominant speaker of one room.
pub struct SpeakerDetector<K> {
    entries: Vec<Entry<K>>,
    current: Option<K>,
    challenger: Option<(K, u8)>,
    next_evaluation: Option<Instant>,
}

impl<K: Copy + PartialEq> Default for SpeakerDetector<K> {
    fn default() -> Self {
        SpeakerDetector {
            entries: Vec::new(),
            current: None,
            challenger: None,
            next_evaluation: None,
        }
    }
}

impl<K: Copy + PartialEq> SpeakerDetector<K> {
    /// One audio packet's level (`dbov`: 0 loudest .. 127 silent) from `key`.
    pub fn observe(&mut self, key: K, dbov: u8, now: Instant) {
        let sample = if dbov >= SILENCE_DBOV {
            0.0
        } else {
            f32::from(127 - dbov.min(127))
        };
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.loudness += SMOOTHING * (sample - e.loudness);
                e.last_heard = now;
            }
            None => self.entries.push(Entry {
                key,
                loudness: sample * SMOOTHING,
                last_heard: now,
            }),
        }
        if self.next_evaluation.is_none() {
            self.next_evaluation = Some(now + INTERVAL);
        }
    }

    /// `key` left the room.
    pub fn remove(&mut self, key: K) {
        self.entries.retain(|e| e.key != key);
        if self.current == Some(key) {
            self.current = None;
        }
    }

    /// The dominant speaker now.
    pub fn current(&self) -> Option<K> {
        self.current
    }

    /// When to call [`SpeakerDetector::poll`] next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next_evaluation
    }

    /// Evaluates if due; returns the new dominant speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<K> {
        let due = self.next_evaluation.is_some_and(|t| now >= t);
        if !due {
            return None;
        }
        self.next_evaluation = Some(now + INTERVAL);
        let loudness = |e: &Entry<K>| {
            if now.saturating_duration_since(e.last_heard) > STALE {
                0.0
            } else {
                e.loudness
            }
        };
        let loudest = self
            .entries
            .iter()
            .filter(|e| loudness(e) > 0.5)
            .max_by(|a, b| loudness(a).total_cmp(&loudness(b)))
            .map(|e| (e.key, loudness(e)));
        let Some((key, level)) = loudest else {
            self.challenger = None;
            return None;
        };
        if self.current == Some(key) {
            self.challenger = None;
            return None;
        }
        let current_level = self
            .current
            .and_then(|c| self.entries.iter().find(|e| e.key == c))
            .map_or(0.0, loudness);
        if level < current_level + MARGIN_DB && current_level > 0.5 {
            self.challenger = None;
            return None;
        }
        let wins = match self.challenger {
            Some((k, n)) if k == key => n + 1,
            _ => 1,
        };
        if wins >= WINS_NEEDED || self.current.is_none() {
            self.current = Some(key);
            self.challenger = None;
            Some(key)
        } else {
            self.challenger = Some((key, wins));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 50 packets per second from each (key, dbov) for `ms`, polling as a driver would;
    /// returns the changes reported.
    fn run(
        d: &mut SpeakerDetector<u32>,
        start: Instant,
        ms: u64,
        talkers: &[(u32, u8)],
    ) -> Vec<(u64, u32)> {
        let mut changes = Vec::new();
        for step in 0..ms / 20 {
            let now = start + Duration::from_millis(step * 20);
            for &(k, level) in talkers {
                d.observe(k, level, now);
            }
            if let Some(k) = d.poll(now) {
                changes.push((step * 20, k));
            }
        }
        changes
    }

    #[test]
    fn the_first_speaker_is_announced_and_kept_against_quieter_ones() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let changes = run(&mut d, t0, 2000, &[(1, 20), (2, 45)]);
        assert_eq!(
            changes,
            [(300, 1)],
            "speaker 1 (louder) wins at the first evaluation"
        );
        assert_eq!(d.current(), Some(1));
    }

    #[test]
    fn a_short_burst_does_not_switch_but_a_sustained_louder_speaker_does() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        run(&mut d, t0, 1000, &[(1, 30)]);
        // Speaker 2 shouts for 100 ms while 1 keeps talking: no switch.
        let burst = run(
            &mut d,
            t0 + Duration::from_millis(1000),
            100,
            &[(1, 30), (2, 5)],
        );
        let after = run(&mut d, t0 + Duration::from_millis(1100), 600, &[(1, 30)]);
        assert!(burst.is_empty() && after.is_empty(), "{burst:?} {after:?}");
        // Speaker 1 stops; 2 talks on: 2 takes over after winning two evaluations.
        let changes = run(
            &mut d,
            t0 + Duration::from_millis(2000),
            2000,
            &[(1, 127), (2, 25)],
        );
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].1, 2);
    }

    #[test]
    fn silence_changes_nothing_and_leaving_clears_the_speaker() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        assert!(run(&mut d, t0, 1000, &[(1, 127), (2, 100)]).is_empty());
        run(&mut d, t0 + Duration::from_secs(1), 1000, &[(1, 10)]);
        assert_eq!(d.current(), Some(1));
        d.remove(1);
        assert_eq!(d.current(), None);
    }
}
