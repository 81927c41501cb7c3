//! Send-side bandwidth estimation for one subscriber connection, from transport-wide congestion
//! control feedback (draft-holmer-rmcat-transport-wide-cc-extensions): Google Congestion Control
//! as libwebrtc does it, simplified.
//!
//! - Delay: packets are grouped into bursts by send time (those sent within 5 ms of a burst's
//!   first packet: the SFU writes a whole round of packets at one instant, and their spread on
//!   arrival is not a queue). Between consecutive bursts, the change in one-way delay (arrival
//!   delta minus send delta) is accumulated and smoothed; the slope of its linear fit over the last
//!   20 bursts, scaled, is compared with an adaptive threshold (it rises with the noise the path
//!   shows and falls back slowly). Only overuse sustained over more than 10 ms and two bursts, with
//!   a trend still rising, is a verdict.
//! - Loss: the share of packets reported lost over a window of at least 200 packets, or of at
//!   least 20 packets and two seconds (a report of 10-20 packets on a path losing 5 % at random
//!   often shows 10-20 %: judging each report alone would make every such path "heavily losing");
//!   a window of 50 packets already closes when a quarter of them are lost.
//! - Delivered: the rate acknowledged over the last 150 ms, except that a lower rate while the
//!   path delivers at least 90 % of what was sent (the sender sent less: black frames from a
//!   camera turned off, a smaller layer) does not lower what the path has shown it carries, as
//!   libwebrtc ignores lower samples in application-limited periods.
//! - Rate: on overuse, down to 85 % of what was delivered; on heavy loss, down to what was
//!   delivered less half the loss share, at most every 500 ms; otherwise, with little loss and no overuse, grow 8 % per second, never more than
//!   1 Mbit/s beyond 1.5 times what is actually acknowledged. Once congestion has been seen the
//!   estimate is a limit for good, growing from what is delivered (an upgrade is then deliberate:
//!   the estimate must reach the next layer); ten seconds after the last sign of congestion it is
//!   raised to at least what is being delivered. Time is passed in.

use std::time::{Duration, Instant};

/// Packets remembered for matching feedback (a power of two): 1 s of a 5 Mbit/s subscriber (8 KB),
/// more than any feedback's delay.
const HISTORY: usize = 512;
/// Points (bursts) in the delay trend fit.
const TREND_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Packets sent within this of a burst's first packet belong to the burst.
const BURST: Duration = Duration::from_millis(5);
/// The trend is scaled by the number of deltas seen (at most this many) and this gain before it
/// is compared with the threshold (libwebrtc's values).
const TREND_DELTAS_CAP: f64 = 60.0;
const TREND_GAIN: f64 = 4.0;
/// The adaptive threshold: its start, bounds, and how fast it follows the scaled trend up and
/// down (per ms).
const THRESHOLD_START: f64 = 12.5;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
const THRESHOLD_UP: f64 = 0.0087;
const THRESHOLD_DOWN: f64 = 0.039;
/// A scaled trend this far beyond the threshold does not move it (a real queue, not noise).
const THRESHOLD_MAX_ADAPT: f64 = 15.0;
/// Overuse must last this long (ms of send time) before it is a verdict.
const OVERUSE_TIME_MS: f64 = 10.0;
/// Loss share above which the estimate is cut.
const HIGH_LOSS: f64 = 0.10;
/// Shortest time between two cuts of the estimate for loss (libwebrtc waits about a round trip
/// plus 300 ms).
const LOSS_CUT_INTERVAL: Duration = Duration::from_millis(500);
/// The path keeps up with the sender when it delivers at least this share of the rate sent.
const KEEPING_UP: f64 = 0.9;
/// A loss window closes after this many packets...
const LOSS_WINDOW_PACKETS: u32 = 200;
/// ...or after this long, once it holds at least [`LOSS_WINDOW_MIN_PACKETS`].
const LOSS_WINDOW_TIME: Duration = Duration::from_secs(2);
const LOSS_WINDOW_MIN_PACKETS: u32 = 20;
/// A window closes early, after [`LOSS_EARLY_PACKETS`], when its loss is unmistakable (a queue
/// overflowing): a path losing 5 % at random shows this much once in about 10^5 windows.
const LOSS_EARLY_SHARE: f64 = 0.25;
const LOSS_EARLY_PACKETS: u32 = 50;
/// Loss share below which the estimate may grow.
const LOW_LOSS: f64 = 0.02;
/// Growth per second while the path is clear.
const GROWTH_PER_SECOND: f64 = 0.08;
/// How far beyond what is acknowledged the estimate may grow, in bits per second.
const PROBE_HEADROOM_BPS: f64 = 1_000_000.0;
/// How long congestion seen on the path keeps the estimate a limit.
pub const CONGESTION_MEMORY: Duration = Duration::from_secs(10);
/// Window over which the acknowledged bitrate is measured: short, as libwebrtc's acknowledged
/// bitrate estimator (150 ms once started), so that it follows a link that shrinks and the burst
/// of a stream that resumes, rather than the half second before.
const ACKED_WINDOW: Duration = Duration::from_millis(150);

/// What the delay trend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Overusing,
    Underusing,
}

#[derive(Clone, Copy)]
struct Sent {
    /// When it left, in µs since the estimator's first packet (16 bytes a slot, not 32).
    at_us: u64,
    bytes: u32,
    transport_seq: u16,
    /// Reported already, or a slot never written.
    used: bool,
}

/// One packet's fate in a feedback report: arrival time at the receiver (any fixed origin, in
/// microseconds), or `None` when lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub transport_seq: u16,
    pub arrival_us: Option<i64>,
}

/// A burst of packets sent close together.
#[derive(Debug, Clone, Copy)]
struct Burst {
    first_send: Instant,
    last_send: Instant,
    last_arrival_us: i64,
}

/// The delay trend and its overuse detector (libwebrtc's trendline estimator).
#[derive(Debug, Clone)]
struct Trendline {
    /// The burst being filled, and the last complete one.
    current: Option<Burst>,
    previous: Option<Burst>,
    deltas: f64,
    accumulated_ms: f64,
    smoothed_ms: f64,
    first_arrival_ms: Option<f64>,
    /// (arrival ms, smoothed delay ms), oldest first.
    points: [(f64, f64); TREND_WINDOW],
    len: usize,
    threshold: f64,
    threshold_updated_ms: Option<f64>,
    /// Send time (ms) overuse has lasted, -1 when not overusing; bursts over the threshold.
    overuse_ms: f64,
    overuse_count: u32,
    previous_trend: f64,
    usage: Usage,
}

impl Default for Trendline {
    fn default() -> Trendline {
        Trendline {
            current: None,
            previous: None,
            deltas: 0.0,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            first_arrival_ms: None,
            points: [(0.0, 0.0); TREND_WINDOW],
            len: 0,
            threshold: THRESHOLD_START,
            threshold_updated_ms: None,
            overuse_ms: -1.0,
            overuse_count: 0,
            previous_trend: 0.0,
            usage: Usage::Normal,
        }
    }
}

impl Trendline {
    /// A received packet: sent at `sent`, arrived at `arrival_us`.
    fn on_packet(&mut self, sent: Instant, arrival_us: i64) {
        let Some(current) = &mut self.current else {
            self.current = Some(Burst {
                first_send: sent,
                last_send: sent,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if sent < current.first_send {
            return; // reordered from an earlier burst
        }
        if sent.saturating_duration_since(current.first_send) <= BURST {
            current.last_send = current.last_send.max(sent);
            current.last_arrival_us = current.last_arrival_us.max(arrival_us);
            return;
        }
        let done = *current;
        self.current = Some(Burst {
            first_send: sent,
            last_send: sent,
            last_arrival_us: arrival_us,
        });
        if let Some(previous) = self.previous {
            let send_delta_ms = done
                .last_send
                .saturating_duration_since(previous.last_send)
                .as_secs_f64()
                * 1000.0;
            let arrival_delta_ms =
                (done.last_arrival_us - previous.last_arrival_us) as f64 / 1000.0;
            self.update(
                arrival_delta_ms,
                send_delta_ms,
                done.last_arrival_us as f64 / 1000.0,
            );
        }
        self.previous = Some(done);
    }

    fn update(&mut self, arrival_delta_ms: f64, send_delta_ms: f64, arrival_ms: f64) {
        self.deltas = (self.deltas + 1.0).min(1000.0);
        self.accumulated_ms += arrival_delta_ms - send_delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        if self.len == TREND_WINDOW {
            self.points.copy_within(1.., 0);
            self.len -= 1;
        }
        self.points[self.len] = (arrival_ms - first, self.smoothed_ms);
        self.len += 1;
        let trend = if self.len == TREND_WINDOW {
            slope(&self.points).unwrap_or(self.previous_trend)
        } else {
            self.previous_trend
        };
        self.detect(trend, send_delta_ms, arrival_ms);
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        let modified = self.deltas.min(TREND_DELTAS_CAP) * trend * TREND_GAIN;
        if modified > self.threshold {
            self.overuse_ms = if self.overuse_ms < 0.0 {
                send_delta_ms / 2.0
            } else {
                self.overuse_ms + send_delta_ms
            };
            self.overuse_count += 1;
            if self.overuse_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.previous_trend
            {
                self.overuse_ms = 0.0;
                self.overuse_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = trend;
        self.adapt_threshold(modified, now_ms);
    }

    /// The threshold follows the scaled trend: up slowly when the trend is above it (noise that
    /// is part of the path), down faster when below; not at all for a trend far beyond it.
    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.threshold_updated_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold + THRESHOLD_MAX_ADAPT {
            self.threshold_updated_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold {
            THRESHOLD_DOWN
        } else {
            THRESHOLD_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold = (self.threshold + k * (modified.abs() - self.threshold) * dt)
            .clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.threshold_updated_ms = Some(now_ms);
    }
}

/// Slope of the least-squares line through `points`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    (den > 0.0).then(|| num / den)
}

/// The estimator of one connection.
pub struct BandwidthEstimator {
    estimate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    sent: Vec<Sent>,
    /// The origin of the send times in `sent`: the first packet's.
    epoch: Option<Instant>,
    trendline: Trendline,
    /// (arrival µs, bytes) of recently acknowledged packets, for the acknowledged bitrate.
    acked: Vec<(i64, u32)>,
    last_update: Option<Instant>,
    usage: Usage,
    /// When the path last showed congestion (a queue building, or heavy loss).
    congested_at: Option<Instant>,
    /// When the path last lost more than [`HIGH_LOSS`] of a report.
    lossy_at: Option<Instant>,
    /// When the estimate was last cut for loss.
    loss_cut_at: Option<Instant>,
    /// What the path has shown it carries, bits per second: the acknowledged rate, except that
    /// a lower rate while the path delivers everything sent (the sender sent less: a camera
    /// turned off, a smaller layer) does not lower it. libwebrtc's acknowledged bitrate
    /// estimator likewise ignores lower samples in application-limited periods.
    delivered_bps: Option<f64>,
    /// (send time, bytes) of recently reported packets, received or lost, for the rate sent.
    reported: Vec<(Instant, u32)>,
    /// The open loss window: (received, lost, when it opened).
    loss_window: (u32, u32, Option<Instant>),
    /// The loss share of the last closed window.
    loss: f64,
}

impl BandwidthEstimator {
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> BandwidthEstimator {
        BandwidthEstimator {
            estimate_bps: initial_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps as f64,
            sent: vec![
                Sent {
                    at_us: 0,
                    bytes: 0,
                    transport_seq: 0,
                    used: true
                };
                HISTORY
            ],
            epoch: None,
            trendline: Trendline::default(),
            acked: Vec::with_capacity(64),
            last_update: None,
            usage: Usage::Normal,
            congested_at: None,
            lossy_at: None,
            loss_cut_at: None,
            delivered_bps: None,
            reported: Vec::with_capacity(64),
            loss_window: (0, 0, None),
            loss: 0.0,
        }
    }

    /// The estimate, in bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps as u64
    }

    /// The estimate as a limit, once the path has shown congestion. Before that (a path never
    /// seen full) there is no known limit and everything preferred may be sent. Afterwards the
    /// limit stays, growing on a clear path: going up a layer waits until the estimate has grown
    /// to it, rather than jumping back on a stale number.
    pub fn limit_bps(&self, _now: Instant) -> Option<u64> {
        self.congested_at.map(|_| self.estimate_bps())
    }

    /// Whether the path showed congestion (overuse or heavy loss) in the last
    /// [`CONGESTION_MEMORY`].
    pub fn congested(&self, now: Instant) -> bool {
        self.congested_at
            .is_some_and(|at| now.saturating_duration_since(at) < CONGESTION_MEMORY)
    }

    /// Whether the path lost heavily in the last [`CONGESTION_MEMORY`]: a stronger sign than a
    /// delay trend, which scheduling noise on a busy sender or receiver can fake. Only then is a
    /// consumer's last layer taken away.
    pub fn lossy(&self, now: Instant) -> bool {
        self.lossy_at
            .is_some_and(|at| now.saturating_duration_since(at) < CONGESTION_MEMORY)
    }

    /// What the path delivered recently (acknowledged by the receiver's feedback over the last
    /// [`ACKED_WINDOW`]), in bits per second: a delay signal alone does not limit below it.
    pub fn delivered_bps(&self) -> Option<u64> {
        self.delivered_bps.map(|b| b as u64)
    }

    /// What the delay trend said at the last feedback.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The overuse detector's adaptive threshold now (for observation).
    pub fn threshold(&self) -> f64 {
        self.trendline.threshold
    }

    /// A packet with transport-wide sequence number `transport_seq` and `bytes` left at `now`.
    pub fn on_sent(&mut self, transport_seq: u16, bytes: usize, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        self.sent[usize::from(transport_seq) % HISTORY] = Sent {
            at_us: now.saturating_duration_since(epoch).as_micros() as u64,
            bytes: bytes as u32,
            transport_seq,
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
            let Some(epoch) = self.epoch else { continue };
            let (sent_at, bytes) = (epoch + Duration::from_micros(slot.at_us), slot.bytes);
            self.reported.push((sent_at, bytes));
            let Some(arrival) = r.arrival_us else {
                lost += 1;
                continue;
            };
            received += 1;
            self.acked.push((arrival, bytes));
            self.trendline.on_packet(sent_at, arrival);
        }
        if received + lost == 0 {
            return;
        }
        self.usage = self.trendline.usage;
        // The loss of a window that closes with this report (otherwise no loss decision now).
        let window = &mut self.loss_window;
        window.0 += received;
        window.1 += lost;
        let opened = *window.2.get_or_insert(now);
        let packets = window.0 + window.1;
        let closed = (packets >= LOSS_WINDOW_PACKETS
            || (packets >= LOSS_EARLY_PACKETS
                && f64::from(window.1) >= LOSS_EARLY_SHARE * f64::from(packets))
            || (packets >= LOSS_WINDOW_MIN_PACKETS
                && now.saturating_duration_since(opened) >= LOSS_WINDOW_TIME))
            .then(|| f64::from(window.1) / f64::from(packets));
        if let Some(share) = closed {
            *window = (0, 0, None);
            self.loss = share;
        }
        let loss = closed.unwrap_or(0.0);
        let sent_bps = self.sent_bps();
        let acked_bps = self.acked_bps();
        if let Some(acked) = acked_bps {
            let keeping_up = sent_bps.is_some_and(|sent| acked >= KEEPING_UP * sent);
            self.delivered_bps = Some(match self.delivered_bps {
                Some(shown) if acked < shown && keeping_up => shown,
                _ => acked,
            });
        }
        // From here on, "acknowledged" is what the path has shown it carries.
        let acked_bps = self.delivered_bps;
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
            // At most once per interval: a queue that overflowed keeps reporting losses for a
            // while after the cut, and cutting on each report would collapse the estimate.
            if self
                .loss_cut_at
                .is_none_or(|at| now.saturating_duration_since(at) >= LOSS_CUT_INTERVAL)
            {
                self.loss_cut_at = Some(now);
                let base = acked_bps.map_or(self.estimate_bps, |a| a.min(self.estimate_bps));
                self.estimate_bps = base * (1.0 - 0.5 * loss);
            }
        } else if self.loss < LOW_LOSS && self.usage == Usage::Normal {
            let grown = self.estimate_bps * (1.0 + GROWTH_PER_SECOND * elapsed.as_secs_f64());
            // Do not run far ahead of what the path has shown it carries, but far enough to let
            // the allocator try the next simulcast layer (an upgrade is the probe: it is cut back
            // at once if the path queues).
            let ceiling = acked_bps.map_or(f64::MAX, |a| 1.5 * a + PROBE_HEADROOM_BPS);
            self.estimate_bps = grown.min(ceiling.max(self.estimate_bps));
        }
        // Long after the last congestion, the estimate is at least what is being delivered.
        if let (Some(at), Some(acked)) = (self.congested_at, acked_bps)
            && now.saturating_duration_since(at) >= CONGESTION_MEMORY
        {
            self.estimate_bps = self.estimate_bps.max(acked);
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

    /// Bits per second reported (received or lost) over the last [`ACKED_WINDOW`] of send times.
    fn sent_bps(&mut self) -> Option<f64> {
        self.reported.sort_unstable_by_key(|(at, _)| *at);
        let newest = self.reported.last()?.0;
        self.reported
            .retain(|(at, _)| newest.saturating_duration_since(*at) <= ACKED_WINDOW);
        let span = newest.saturating_duration_since(self.reported.first()?.0);
        if span < ACKED_WINDOW / 4 {
            return None;
        }
        let bits: f64 = self.reported[1..]
            .iter()
            .map(|(_, b)| f64::from(*b) * 8.0)
            .sum();
        Some(bits / span.as_secs_f64())
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
        // The span runs from the first arrival to the last: the first packet's bytes arrived
        // before it (counting them would overstate the rate by one packet per window).
        let bits: f64 = self.acked[1..]
            .iter()
            .map(|(_, b)| f64::from(*b) * 8.0)
            .sum();
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
        start: Instant,
        arrival_us: i64,
    }

    impl Sim {
        fn new(initial: u64) -> Sim {
            let t = Instant::now();
            Sim {
                bwe: BandwidthEstimator::new(initial, 50_000, 10_000_000),
                seq: 0,
                t,
                start: t,
                arrival_us: 0,
            }
        }

        /// `secs * 10` rounds of 10 packets at the estimate, each with its feedback.
        fn run(&mut self, secs: f64, capacity_bps: f64, loss_every: Option<u16>) {
            for _ in 0..(secs * 10.0) as usize {
                self.round(None, capacity_bps, loss_every);
            }
        }

        /// Sends at `rate_bps` for `secs` of simulated time.
        fn run_at(&mut self, rate_bps: f64, secs: f64, capacity_bps: f64) {
            let start = self.t;
            while self.t.saturating_duration_since(start).as_secs_f64() < secs {
                self.round(Some(rate_bps), capacity_bps, None);
            }
        }

        /// 10 packets at `rate_bps` (or the estimate), then their feedback.
        fn round(&mut self, rate_bps: Option<f64>, capacity_bps: f64, loss_every: Option<u16>) {
            let packets_per_feedback = 10;
            {
                let rate = rate_bps.unwrap_or(self.bwe.estimate_bps() as f64);
                let gap = Duration::from_secs_f64(1200.0 * 8.0 / rate);
                let mut results = Vec::new();
                for _ in 0..packets_per_feedback {
                    self.seq = self.seq.wrapping_add(1);
                    self.t += gap;
                    self.bwe.on_sent(self.seq, 1200, self.t);
                    // The bottleneck serves a packet in 1200*8/capacity seconds, after the one
                    // before it and not before it was sent (a queue that drains when idle).
                    let service_us = (1200.0 * 8.0 / capacity_bps * 1e6) as i64;
                    let sent_us = self.t.saturating_duration_since(self.start).as_micros() as i64;
                    self.arrival_us = (self.arrival_us + service_us).max(sent_us + 20_000);
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
    fn a_bottleneck_is_found_from_delay_growth_within_two_seconds() {
        let mut sim = Sim::new(1_500_000);
        let start = sim.t;
        let mut verdict = None;
        for _ in 0..50 {
            sim.run(0.1, 600_000.0, None);
            if verdict.is_none() && sim.bwe.congested(sim.t) {
                verdict = Some(sim.t - start);
            }
        }
        let verdict = verdict.expect("the queue is seen");
        assert!(verdict <= Duration::from_secs(2), "seen after {verdict:?}");
        let e = sim.bwe.estimate_bps();
        assert!(
            e <= 700_000,
            "settles near or below the 600 kbps bottleneck: {e}"
        );
        assert!(e >= 250_000, "but does not collapse: {e}");
        assert_eq!(
            sim.bwe.limit_bps(sim.t),
            Some(e),
            "the bottleneck is a limit"
        );
        assert!(!sim.bwe.lossy(sim.t), "a queue is not loss");
    }

    #[test]
    fn after_a_bottleneck_clears_the_estimate_recovers_without_new_verdicts() {
        let mut sim = Sim::new(1_500_000);
        sim.run(5.0, 600_000.0, None);
        assert!(sim.bwe.estimate_bps() < 800_000);
        // The path widens: the queue drains, and the estimate grows back from what is delivered.
        let mut verdicts = 0;
        for _ in 0..300 {
            sim.run(0.1, 5_000_000.0, None);
            if sim.bwe.usage() == Usage::Overusing {
                verdicts += 1;
            }
        }
        assert_eq!(verdicts, 0);
        let e = sim.bwe.estimate_bps();
        assert!(e > 1_500_000, "grew back: {e}");
        assert!(!sim.bwe.congested(sim.t));
        assert!(
            sim.bwe.limit_bps(sim.t).is_some(),
            "growth stays deliberate"
        );
    }

    /// A clean path seen through noisy feedback, as on loopback with a busy machine: the SFU
    /// writes each round's packets at one instant (one send time), they arrive spread by
    /// serialization and by up to 3 ms of jitter, and arrival times are reported with 250 µs
    /// resolution. Ten minutes of it is never congestion.
    #[test]
    fn jitter_on_a_clean_path_is_never_congestion() {
        let mut bwe = BandwidthEstimator::new(1_500_000, 100_000, 20_000_000);
        let mut t = Instant::now();
        let (mut seq, mut rng) = (0u16, 0x2545_f491_4f6c_dd1du64);
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 1000) as f64 / 1000.0
        };
        let base_us = 1_000_000i64;
        let mut results = Vec::new();
        let mut sent_since_feedback = Duration::ZERO;
        for round in 0..60_000u64 {
            // A round every 10 ms, 0 to 4 packets in it (1.5 Mbit/s on average).
            t += Duration::from_millis(10);
            let sent_at_us = (round as i64 + 1) * 10_000;
            let burst = (next() * 4.0) as usize + (round % 2) as usize;
            for k in 0..burst {
                seq = seq.wrapping_add(1);
                bwe.on_sent(seq, 1200, t);
                let spread = k as f64 * 100.0;
                let jitter = next() * 3000.0;
                let arrival = base_us + sent_at_us + (spread + jitter) as i64;
                results.push(PacketResult {
                    transport_seq: seq,
                    arrival_us: Some(arrival / 250 * 250),
                });
            }
            sent_since_feedback += Duration::from_millis(10);
            if sent_since_feedback >= Duration::from_millis(100) {
                sent_since_feedback = Duration::ZERO;
                results.sort_by_key(|r| r.arrival_us);
                bwe.on_feedback(&results, t);
                results.clear();
                assert_ne!(bwe.usage(), Usage::Overusing, "a verdict at round {round}");
            }
        }
        assert!(!bwe.congested(t));
        assert_eq!(bwe.limit_bps(t), None, "never a limit");
    }

    /// What a steady, uncongested path delivers is what was sent: the delivered rate is the
    /// floor of delay-only decisions and, long after congestion, of the estimate, so a bias up
    /// would compound feedback after feedback.
    #[test]
    fn the_delivered_rate_of_a_steady_path_is_the_sending_rate() {
        let mut bwe = BandwidthEstimator::new(1_000_000, 50_000, 10_000_000);
        let t0 = Instant::now();
        // 1 Mbit/s: a 1250-byte packet every 10 ms, feedback every 50 ms.
        let mut results = Vec::new();
        for seq in 1..=200u16 {
            let at = t0 + Duration::from_millis(10 * u64::from(seq));
            bwe.on_sent(seq, 1250, at);
            results.push(PacketResult {
                transport_seq: seq,
                arrival_us: Some(10_000 * i64::from(seq) + 5_000),
            });
            if seq % 5 == 0 {
                bwe.on_feedback(&results, at);
                results.clear();
            }
        }
        let delivered = bwe.delivered_bps().expect("measured") as f64;
        assert!(
            (delivered - 1_000_000.0).abs() < 10_000.0,
            "delivered {delivered} of 1 Mbit/s sent"
        );
    }

    /// A path that loses 5 % of packets at random (radio links do) is not losing heavily, even
    /// though small feedback reports often show 10-20 %: no loss verdict in a minute, and the
    /// estimate stays near what is sent.
    #[test]
    fn random_loss_of_five_percent_is_not_heavy_loss() {
        let mut bwe = BandwidthEstimator::new(1_000_000, 50_000, 10_000_000);
        let t0 = Instant::now();
        let mut dice = 0x2545_f491_4f6c_dd1du64;
        let mut results = Vec::new();
        let (mut lost, mut verdicts) = (0, 0);
        // 800 kbit/s: a 1000-byte packet every 10 ms, feedback every 50 ms, for 60 s.
        for n in 1..=6000u32 {
            let seq = n as u16;
            let at = t0 + Duration::from_millis(10 * u64::from(n));
            bwe.on_sent(seq, 1000, at);
            dice ^= dice << 13;
            dice ^= dice >> 7;
            dice ^= dice << 17;
            let drop = dice % 100 < 5;
            lost += u32::from(drop);
            results.push(PacketResult {
                transport_seq: seq,
                arrival_us: (!drop).then_some(10_000 * i64::from(n) + 5_000),
            });
            if n % 5 == 0 {
                bwe.on_feedback(&results, at);
                results.clear();
                verdicts += u32::from(bwe.lossy(at));
            }
        }
        assert!((250..350).contains(&lost), "about 5 % lost: {lost}");
        assert_eq!(verdicts, 0, "never losing heavily");
        assert!(
            bwe.estimate_bps() >= 700_000,
            "the estimate stays near the 800 kbit/s sent: {}",
            bwe.estimate_bps()
        );
    }

    /// A sender that sent little for a while (a camera turned off sends black frames) sees a
    /// delay trend: a busy machine's scheduling, or the first keyframes when the camera comes
    /// back. The path delivered everything sent and carried the full rate before: the cut is
    /// from that, not from the trickle of the quiet period.
    #[test]
    fn a_verdict_after_sending_little_cuts_from_what_the_path_carried_before() {
        let mut bwe = BandwidthEstimator::new(2_000_000, 50_000, 10_000_000);
        let t0 = Instant::now();
        let mut seq = 0u16;
        let mut send = |bwe: &mut BandwidthEstimator,
                        from_ms: u64,
                        to_ms: u64,
                        gap_ms: u64,
                        delay: &dyn Fn(u64) -> i64| {
            let mut at_ms = from_ms;
            while at_ms < to_ms {
                seq = seq.wrapping_add(1);
                let at = t0 + Duration::from_millis(at_ms);
                bwe.on_sent(seq, 1250, at);
                let arrival_us = at_ms as i64 * 1000 + 20_000 + delay(at_ms);
                bwe.on_feedback(
                    &[PacketResult {
                        transport_seq: seq,
                        arrival_us: Some(arrival_us),
                    }],
                    at + Duration::from_millis(25),
                );
                at_ms += gap_ms;
            }
        };
        // 1.5 Mbit/s for 3 s; then 100 kbit/s for 3 s, whose last 2.5 s queue more and more.
        send(&mut bwe, 0, 3000, 6, &|_| 0);
        let carried = bwe.delivered_bps().unwrap();
        assert!(carried > 1_400_000, "{carried}");
        send(&mut bwe, 3000, 6000, 100, &|ms| {
            ms.saturating_sub(3500) as i64 * 40
        });
        let now = t0 + Duration::from_millis(6025);
        assert!(bwe.congested(now), "the trend is a verdict");
        let e = bwe.estimate_bps();
        assert!(e >= 1_000_000, "cut from what was carried before: {e}");
        assert!(e < 2_000_000, "but cut: {e}");
    }

    /// The same quiet period, then a path that truly narrowed: the estimate follows it down.
    #[test]
    fn a_path_that_narrowed_while_the_sender_was_quiet_still_brings_the_estimate_down() {
        let mut sim = Sim::new(2_000_000);
        sim.run_at(1_500_000.0, 3.0, 4_000_000.0);
        sim.run_at(100_000.0, 3.0, 4_000_000.0);
        for _ in 0..30 {
            sim.run(0.1, 400_000.0, None);
        }
        let e = sim.bwe.estimate_bps();
        assert!(e <= 500_000, "down to the 400 kbit/s path: {e}");
        assert!(sim.bwe.delivered_bps().unwrap() <= 500_000);
    }

    #[test]
    fn heavy_loss_cuts_the_estimate() {
        let mut sim = Sim::new(1_000_000);
        sim.run(2.0, 10_000_000.0, Some(4)); // 25 % loss
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
    fn heavy_loss_marks_the_path_lossy() {
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
