//! Send-side bandwidth estimation for one subscriber connection, from transport-wide congestion
//! control feedback (draft-holmer-rmcat-transport-wide-cc-extensions): a simplified Google
//! Congestion Control.
//!
//! - Delay: for consecutive received packets, the change in one-way delay (arrival delta minus send
//!   delta) is accumulated and smoothed; the slope of its linear fit over the last packets is the
//!   trend. A rising trend means a queue is building: overuse.
//! - Loss: the share of packets the feedback reports lost.
//! - Rate: on overuse, drop to 85 % of what was acknowledged; on heavy loss, cut by half the loss
//!   share; otherwise, with little loss and a flat trend, grow 8 % per second, never more than
//!   1 Mbit/s beyond 1.5 times what is actually acknowledged. Time is passed in.

use std::time::{Duration, Instant};

/// Packets remembered for matching feedback.
const HISTORY: usize = 2048;
/// Points in the delay trend fit.
const TREND_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Slope of the delay trend (ms of extra delay per ms of time) that counts as overuse.
const OVERUSE_SLOPE: f64 = 0.01;
/// Loss share above which the estimate is cut.
const HIGH_LOSS: f64 = 0.10;
/// Loss share below which the estimate may grow.
const LOW_LOSS: f64 = 0.02;
/// Growth per second while the path is clear.
const GROWTH_PER_SECOND: f64 = 0.08;
/// How far beyond what is acknowledged the estimate may grow, in bits per second.
const PROBE_HEADROOM_BPS: f64 = 1_000_000.0;
/// How long congestion seen on the path keeps the estimate a limit.
pub const CONGESTION_MEMORY: Duration = Duration::from_secs(10);
/// Window over which the acknowledged bitrate is measured.
const ACKED_WINDOW: Duration = Duration::from_millis(500);

/// What the delay trend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Overusing,
    Underusing,
}

#[derive(Clone, Copy)]
struct Sent {
    transport_seq: u16,
    bytes: u32,
    /// `None` for a slot never written.
    at: Option<Instant>,
    used: bool,
}

/// One packet's fate in a feedback report: arrival time at the receiver (any fixed origin, in
/// microseconds), or `None` when lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub transport_seq: u16,
    pub arrival_us: Option<i64>,
}

/// The estimator of one connection.
pub struct BandwidthEstimator {
    estimate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    sent: Vec<Sent>,
    /// Previous received packet: (send time, arrival µs).
    previous: Option<(Instant, i64)>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms, smoothed delay ms), oldest first.
    trend: [(f64, f64); TREND_WINDOW],
    trend_len: usize,
    /// (arrival µs, bytes) of recently acknowledged packets, for the acknowledged bitrate.
    acked: Vec<(i64, u32)>,
    last_update: Option<Instant>,
    usage: Usage,
    /// When the path last showed congestion (a queue building, or heavy loss).
    congested_at: Option<Instant>,
    /// When the path last lost more than [`HIGH_LOSS`] of a report.
    lossy_at: Option<Instant>,
}

impl BandwidthEstimator {
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> BandwidthEstimator {
        BandwidthEstimator {
            estimate_bps: initial_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps as f64,
            sent: vec![
                Sent {
                    transport_seq: 0,
                    bytes: 0,
                    at: None,
                    used: true
                };
                HISTORY
            ],
            previous: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            trend: [(0.0, 0.0); TREND_WINDOW],
            trend_len: 0,
            acked: Vec::with_capacity(1024),
            last_update: None,
            usage: Usage::Normal,
            congested_at: None,
            lossy_at: None,
        }
    }

    /// The estimate, in bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps as u64
    }

    /// The estimate as a limit: only while the path has shown congestion in the last
    /// [`CONGESTION_MEMORY`]. Before that (a path never seen full), or long after, there is no
    /// known limit and everything preferred may be sent: sending more is the probe, and the
    /// first sign of a queue brings the limit back.
    pub fn limit_bps(&self, now: Instant) -> Option<u64> {
        let at = self.congested_at?;
        (now.saturating_duration_since(at) < CONGESTION_MEMORY).then_some(self.estimate_bps())
    }

    /// Whether the path lost heavily in the last [`CONGESTION_MEMORY`]: a stronger sign than a
    /// delay trend, which scheduling noise on a busy sender or receiver can fake. Only then is a
    /// consumer's last layer taken away.
    pub fn lossy(&self, now: Instant) -> bool {
        self.lossy_at
            .is_some_and(|at| now.saturating_duration_since(at) < CONGESTION_MEMORY)
    }

    /// What the delay trend said at the last feedback.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// A packet with transport-wide sequence number `transport_seq` and `bytes` left at `now`.
    pub fn on_sent(&mut self, transport_seq: u16, bytes: usize, now: Instant) {
        self.sent[usize::from(transport_seq) % HISTORY] = Sent {
            transport_seq,
            bytes: bytes as u32,
            at: Some(now),
            used: false,
        };
    }

    /// A feedback report arrived at `now`.
    pub fn on_feedback(&mut self, results: &[PacketResult], now: Instant) {
        let (mut received, mut lost) = (0u32, 0u32);
        for r in results {
            let slot = &mut self.sent[usize::from(r.transport_seq) % HISTORY];
            if slot.transport_seq != r.transport_seq || slot.used {
                continue; // unknown or already reported
            }
            slot.used = true;
            let (Some(sent_at), bytes) = (slot.at, slot.bytes) else {
                continue;
            };
            let Some(arrival) = r.arrival_us else {
                lost += 1;
                continue;
            };
            received += 1;
            self.acked.push((arrival, bytes));
            if let Some((prev_sent, prev_arrival)) = self.previous {
                let send_delta_ms = sent_at.saturating_duration_since(prev_sent).as_secs_f64()
                    * 1000.0
                    - prev_sent.saturating_duration_since(sent_at).as_secs_f64() * 1000.0;
                let arrival_delta_ms = (arrival - prev_arrival) as f64 / 1000.0;
                self.accumulated_ms += arrival_delta_ms - send_delta_ms;
                self.smoothed_ms =
                    SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
                self.push_trend(arrival as f64 / 1000.0, self.smoothed_ms);
            }
            self.previous = Some((sent_at, arrival));
        }
        if received + lost == 0 {
            return;
        }
        self.usage = self.classify();
        let loss = f64::from(lost) / f64::from(received + lost);
        let acked_bps = self.acked_bps();
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);

        if self.usage == Usage::Overusing || loss > HIGH_LOSS {
            self.congested_at = Some(now);
        }
        if loss > HIGH_LOSS {
            self.lossy_at = Some(now);
        }
        if self.usage == Usage::Overusing {
            if let Some(acked) = acked_bps {
                self.estimate_bps = self.estimate_bps.min(0.85 * acked);
            } else {
                self.estimate_bps *= 0.85;
            }
        } else if loss > HIGH_LOSS {
            self.estimate_bps *= 1.0 - 0.5 * loss;
        } else if loss < LOW_LOSS && self.usage == Usage::Normal {
            let grown = self.estimate_bps * (1.0 + GROWTH_PER_SECOND * elapsed.as_secs_f64());
            // Do not run far ahead of what the path has shown it carries, but far enough to let
            // the allocator try the next simulcast layer (an upgrade is the probe: it is cut back
            // at once if the path queues).
            let ceiling = acked_bps.map_or(f64::MAX, |a| 1.5 * a + PROBE_HEADROOM_BPS);
            self.estimate_bps = grown.min(ceiling.max(self.estimate_bps));
        }
        self.estimate_bps = self.estimate_bps.clamp(self.min_bps, self.max_bps);
    }

    /// No feedback arrived for a while because nothing was sent (every consumer paused): the
    /// estimate grows as on a clear path, without the ceiling of what was acknowledged, so that
    /// paused consumers are tried again.
    pub fn on_idle(&mut self, now: Instant) {
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        self.estimate_bps = (self.estimate_bps * (1.0 + GROWTH_PER_SECOND * elapsed.as_secs_f64()))
            .clamp(self.min_bps, self.max_bps);
    }

    fn push_trend(&mut self, at_ms: f64, delay_ms: f64) {
        if self.trend_len == TREND_WINDOW {
            self.trend.copy_within(1.., 0);
            self.trend_len -= 1;
        }
        self.trend[self.trend_len] = (at_ms, delay_ms);
        self.trend_len += 1;
    }

    /// Slope of the least-squares line through the trend points.
    fn slope(&self) -> Option<f64> {
        let pts = &self.trend[..self.trend_len];
        if pts.len() < TREND_WINDOW / 2 {
            return None;
        }
        let n = pts.len() as f64;
        let mean_x = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let num: f64 = pts.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        let den: f64 = pts.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        (den > 0.0).then(|| num / den)
    }

    fn classify(&self) -> Usage {
        match self.slope() {
            Some(s) if s > OVERUSE_SLOPE => Usage::Overusing,
            Some(s) if s < -OVERUSE_SLOPE => Usage::Underusing,
            _ => Usage::Normal,
        }
    }

    /// Bits per second acknowledged over the last [`ACKED_WINDOW`] of arrivals.
    fn acked_bps(&mut self) -> Option<f64> {
        let newest = self.acked.last()?.0;
        let window_us = ACKED_WINDOW.as_micros() as i64;
        self.acked.retain(|(at, _)| newest - at <= window_us);
        let oldest = self.acked.first()?.0;
        let span_us = (newest - oldest).max(1);
        if span_us < window_us / 4 {
            return None; // too short to measure
        }
        let bits: f64 = self.acked.iter().map(|(_, b)| f64::from(*b) * 8.0).sum();
        Some(bits / (span_us as f64 / 1_000_000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `rate_bps` in 1200-byte packets for `secs`, with feedback every 100 ms. The path adds
    /// `queue_growth` ms of delay per packet beyond `capacity_bps` and loses every `loss_every`th.
    struct Sim {
        bwe: BandwidthEstimator,
        seq: u16,
        t: Instant,
        arrival_us: i64,
    }

    impl Sim {
        fn new(initial: u64) -> Sim {
            Sim {
                bwe: BandwidthEstimator::new(initial, 50_000, 10_000_000),
                seq: 0,
                t: Instant::now(),
                arrival_us: 0,
            }
        }

        fn run(&mut self, secs: f64, capacity_bps: f64, loss_every: Option<u16>) {
            let packets_per_feedback = 10;
            let steps = (secs * 10.0) as usize;
            for _ in 0..steps {
                let rate = self.bwe.estimate_bps() as f64;
                let gap = Duration::from_secs_f64(1200.0 * 8.0 / rate);
                let mut results = Vec::new();
                for _ in 0..packets_per_feedback {
                    self.seq = self.seq.wrapping_add(1);
                    self.t += gap;
                    self.bwe.on_sent(self.seq, 1200, self.t);
                    // The bottleneck serves a packet in 1200*8/capacity seconds; it never runs ahead.
                    let service_us = (1200.0 * 8.0 / capacity_bps * 1e6) as i64;
                    let send_us = gap.as_micros() as i64;
                    self.arrival_us += service_us.max(send_us);
                    let lost = loss_every.is_some_and(|k| self.seq.is_multiple_of(k));
                    results.push(PacketResult {
                        transport_seq: self.seq,
                        arrival_us: (!lost).then_some(self.arrival_us),
                    });
                }
                self.bwe.on_feedback(&results, self.t);
            }
        }
    }

    #[test]
    fn a_clear_path_lets_the_estimate_grow() {
        let mut sim = Sim::new(300_000);
        sim.run(5.0, 5_000_000.0, None);
        let e = sim.bwe.estimate_bps();
        assert!(e > 400_000, "grew from 300 kbps: {e}");
        assert!(e < 5_000_000);
        assert_eq!(sim.bwe.limit_bps(sim.t), None, "no congestion, no limit");
    }

    #[test]
    fn a_bottleneck_is_found_from_delay_growth() {
        let mut sim = Sim::new(2_000_000);
        sim.run(5.0, 800_000.0, None);
        let e = sim.bwe.estimate_bps();
        assert!(
            e <= 900_000,
            "settles near or below the 800 kbps bottleneck: {e}"
        );
        assert!(e >= 300_000, "but does not collapse: {e}");
        assert_eq!(
            sim.bwe.limit_bps(sim.t),
            Some(e),
            "the bottleneck is a limit"
        );
        // Ten seconds after the last sign of congestion, the limit is forgotten.
        let later = sim.t + CONGESTION_MEMORY + Duration::from_millis(1);
        assert_eq!(sim.bwe.limit_bps(later), None);
    }

    #[test]
    fn heavy_loss_cuts_the_estimate() {
        let mut sim = Sim::new(1_000_000);
        sim.run(2.0, 10_000_000.0, Some(5)); // 20 % loss
        assert!(
            sim.bwe.estimate_bps() < 700_000,
            "{}",
            sim.bwe.estimate_bps()
        );
    }

    #[test]
    fn an_idle_connection_grows_its_estimate_to_try_again() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(500_000, 100_000, 2_000_000);
        bwe.on_idle(t0);
        assert_eq!(bwe.estimate_bps(), 500_000, "no time has passed");
        bwe.on_idle(t0 + Duration::from_secs(1));
        assert_eq!(bwe.estimate_bps(), 540_000);
        for s in 2..60 {
            bwe.on_idle(t0 + Duration::from_secs(s));
        }
        assert_eq!(bwe.estimate_bps(), 2_000_000, "up to the maximum");
    }

    #[test]
    fn heavy_loss_marks_the_path_lossy_and_a_delay_trend_does_not() {
        let mut delay = Sim::new(2_000_000);
        delay.run(5.0, 800_000.0, None);
        assert!(
            delay.bwe.limit_bps(delay.t).is_some(),
            "a queue is congestion"
        );
        assert!(!delay.bwe.lossy(delay.t), "but not loss");
        let mut lossy = Sim::new(2_000_000);
        lossy.run(3.0, 10_000_000.0, Some(4));
        assert!(lossy.bwe.lossy(lossy.t), "25 % loss is");
        assert!(!lossy.bwe.lossy(lossy.t + CONGESTION_MEMORY), "for a while");
    }

    #[test]
    fn unknown_and_repeated_feedback_is_ignored() {
        let t = Instant::now();
        let mut bwe = BandwidthEstimator::new(500_000, 50_000, 1_000_000);
        bwe.on_feedback(
            &[PacketResult {
                transport_seq: 9,
                arrival_us: None,
            }],
            t,
        );
        assert_eq!(bwe.estimate_bps(), 500_000);
        bwe.on_sent(1, 1200, t);
        bwe.on_feedback(
            &[PacketResult {
                transport_seq: 1,
                arrival_us: None,
            }],
            t,
        );
        let after_loss = bwe.estimate_bps();
        bwe.on_feedback(
            &[PacketResult {
                transport_seq: 1,
                arrival_us: None,
            }],
            t,
        );
        assert_eq!(
            bwe.estimate_bps(),
            after_loss,
            "a repeated report counts once"
        );
    }
}
