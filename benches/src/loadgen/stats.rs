//! What the simulated participants count, and the pure arithmetic on it: sequence-gap loss per
//! received stream, percentiles, Prometheus text sums, `/proc/<pid>/stat` fields.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters shared by every participant of a run (atomics: bumped from many tasks, read by the
/// reporter once a second).
#[derive(Default)]
pub struct Stats {
    /// Participants whose `joinSession` succeeded.
    pub joined: AtomicU64,
    /// Participants whose peer connection is connected now.
    pub connected: AtomicU64,
    /// Participants that failed to join or whose connection failed.
    pub failed: AtomicU64,
    /// RTP packets received by subscribers (every track, duplicates included).
    pub sub_rx: AtomicU64,
    /// RTP packets received by publishers (the other publishers of their room).
    pub pub_rx: AtomicU64,
    /// Packets subscribers' streams should have had (from the highest sequence number seen).
    pub expected: AtomicU64,
    /// Distinct packets subscribers' streams got (late and repaired ones included).
    pub received: AtomicU64,
    /// Sequence numbers subscribers asked again for (the entries of their RTCP NACKs).
    pub nacks: AtomicU64,
    /// RTP packets publishers sent (video and audio).
    pub tx: AtomicU64,
    /// Keyframes publishers sent (per layer).
    pub keyframes: AtomicU64,
    /// PLIs and FIRs publishers got.
    pub keyframe_requests: AtomicU64,
    /// Video packets subscribers got, by the layer of the last keyframe of their stream
    /// (told by its width); index 3: not known yet.
    pub video_by_layer: [AtomicU64; 4],
    /// Milliseconds from `joinSession` to a connected peer connection, subscribers.
    pub join_ms_subscribers: Mutex<Vec<f64>>,
    /// The same, publishers.
    pub join_ms_publishers: Mutex<Vec<f64>>,
    /// Milliseconds from `joinSession` to the first packet of a video keyframe, subscribers.
    pub first_frame_ms: Mutex<Vec<f64>>,
    /// Errors after setup (answers refused, subscriptions ended), counted; the first few kept.
    pub errors: AtomicU64,
    pub first_errors: Mutex<Vec<String>>,
}

/// How many error messages a run keeps to show.
const KEPT_ERRORS: usize = 10;

impl Stats {
    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // No `.await` under this lock (std Mutex); poisoned only by a panic elsewhere, when the
        // message may as well be lost.
        if let Ok(mut kept) = self.first_errors.lock()
            && kept.len() < KEPT_ERRORS
        {
            kept.push(message);
        }
    }

    pub fn record(list: &Mutex<Vec<f64>>, since: Duration) {
        if let Ok(mut v) = list.lock() {
            v.push(since.as_secs_f64() * 1e3);
        }
    }

    pub fn snapshot_list(list: &Mutex<Vec<f64>>) -> Vec<f64> {
        list.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn snapshot_list_strings(list: &Mutex<Vec<String>>) -> Vec<String> {
        list.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn counters(&self) -> Counters {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            sub_rx: r(&self.sub_rx),
            pub_rx: r(&self.pub_rx),
            expected: r(&self.expected),
            received: r(&self.received),
            nacks: r(&self.nacks),
            tx: r(&self.tx),
            keyframes: r(&self.keyframes),
            keyframe_requests: r(&self.keyframe_requests),
            video_by_layer: [
                r(&self.video_by_layer[0]),
                r(&self.video_by_layer[1]),
                r(&self.video_by_layer[2]),
                r(&self.video_by_layer[3]),
            ],
        }
    }
}

/// One reading of the participants' counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub sub_rx: u64,
    pub pub_rx: u64,
    pub expected: u64,
    pub received: u64,
    pub nacks: u64,
    pub tx: u64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub video_by_layer: [u64; 4],
}

/// Loss of one received RTP stream from its sequence numbers, after repair: a packet that comes
/// late (a NACK's retransmission) still counts as received while it is within the window.
pub struct SeqTracker {
    /// Extended sequence number of the highest packet so far.
    highest: Option<u64>,
    /// Which of the last `WINDOW` sequence numbers arrived (bit `ext % WINDOW`).
    seen: [u64; WINDOW as usize / 64],
}

/// How far back a late packet still counts (sequence numbers).
const WINDOW: u64 = 1024;

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            highest: None,
            seen: [0; WINDOW as usize / 64],
        }
    }
}

impl SeqTracker {
    /// Takes one packet's sequence number; returns (newly expected, newly received) packets.
    pub fn push(&mut self, seq: u16) -> (u64, u64) {
        let Some(highest) = self.highest else {
            // Start high enough that a wrap backwards stays positive.
            let ext = (1u64 << 32) + u64::from(seq);
            self.highest = Some(ext);
            self.mark(ext);
            return (1, 1);
        };
        let diff = seq.wrapping_sub(highest as u16) as i16;
        let ext = highest.wrapping_add_signed(i64::from(diff));
        if ext > highest {
            let gap = ext - highest;
            if gap >= WINDOW {
                self.seen = [0; WINDOW as usize / 64];
            } else {
                for s in highest + 1..ext {
                    self.clear(s);
                }
            }
            self.highest = Some(ext);
            self.mark(ext);
            (gap, 1)
        } else if highest - ext < WINDOW && !self.is_seen(ext) {
            self.mark(ext);
            (0, 1)
        } else {
            // A duplicate, or too late to tell.
            (0, 0)
        }
    }

    fn mark(&mut self, ext: u64) {
        let i = (ext % WINDOW) as usize;
        self.seen[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, ext: u64) {
        let i = (ext % WINDOW) as usize;
        self.seen[i / 64] &= !(1 << (i % 64));
    }

    fn is_seen(&self, ext: u64) -> bool {
        let i = (ext % WINDOW) as usize;
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }
}

/// The `p`-th percentile (0-100) by nearest rank, or `None` for no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The sum of every sample of metric `name` (any labels) in a Prometheus/OpenMetrics text
/// exposition, or `None` when it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            labels.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // another metric whose name starts with `name`
        };
        if let Some(v) = value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// CPU time (user + system, in clock ticks) and resident pages from a `/proc/<pid>/stat` line.
/// The command name (field 2) may hold spaces and parentheses: fields are counted from the
/// last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3; field n is at index n - 3.
    let utime: u64 = f.get(14 - 3)?.parse().ok()?;
    let stime: u64 = f.get(15 - 3)?.parse().ok()?;
    let rss: u64 = f.get(24 - 3)?.parse().ok()?;
    Some((utime + stime, rss))
}

/// CPU seconds and resident bytes of process `pid` (`"self"` for this one).
pub fn proc_usage(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (ticks, pages) = parse_proc_stat(&stat)?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some((ticks as f64 / hz, pages * rustix::param::page_size() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u16]) -> (u64, u64) {
        seqs.iter().fold((0, 0), |(e, r), &s| {
            let (de, dr) = t.push(s);
            (e + de, r + dr)
        })
    }

    #[test]
    fn a_gap_is_loss_until_the_packet_comes_late() {
        let mut t = SeqTracker::default();
        assert_eq!(feed(&mut t, &[10, 11, 13, 14]), (5, 4));
        assert_eq!(feed(&mut t, &[12]), (0, 1), "repaired");
        assert_eq!(feed(&mut t, &[12, 14]), (0, 0), "duplicates");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut t = SeqTracker::default();
        assert_eq!(feed(&mut t, &[65534, 65535, 0, 2]), (5, 4));
        assert_eq!(feed(&mut t, &[1]), (0, 1));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn metric_sums_add_labelled_samples_of_that_name_only() {
        let text = "# TYPE sfu_shard_rtp_forwarded counter\n\
                    sfu_shard_rtp_forwarded_total{shard=\"0\"} 10\n\
                    sfu_shard_rtp_forwarded_total{shard=\"1\"} 32\n\
                    sfu_shard_rtp_forwarded_totally 5\n\
                    process_resident_memory_bytes 4096\n";
        assert_eq!(
            metric_sum(text, "sfu_shard_rtp_forwarded_total"),
            Some(42.0)
        );
        assert_eq!(
            metric_sum(text, "process_resident_memory_bytes"),
            Some(4096.0)
        );
        assert_eq!(metric_sum(text, "nothing"), None);
    }

    #[test]
    fn proc_stat_fields_after_an_odd_name() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615";
        assert_eq!(parse_proc_stat(line), Some((300, 2560)));
        assert!(proc_usage("self").is_some_and(|(_, rss)| rss > 0));
    }
}
