//! A/V synchronisation: the presentation time of every RTP packet of a recording, from its RTP
//! timestamp and its publisher's RTCP sender reports. Pure: arrival times are arguments, never
//! read here; tested without GStreamer.
//!
//! Times are nanoseconds on the pipeline's running-time axis. Per track, RTP timestamps are
//! extended past their 32-bit wrap and read as media time `m = rtp / clock_rate`.
//!
//! - **The floor** of a track: the least `arrival - m` seen, i.e. the least-delayed packet's
//!   view of where the track's clock sits on ours. It only moves down, except for a slow rise
//!   ([`FLOOR_RISE_PPM`]) that follows a sender whose clock runs slower than ours (its packets
//!   would otherwise drift later and later past their timestamps).
//! - **Before any sender report** (or for a track that never gets one), a packet's time is
//!   `m + floor`: extrapolated from the first packet's arrival and RTP timestamp, refined as
//!   less-delayed packets come.
//! - **With sender reports**: a report pairs an RTP time with the sender's NTP time, so each
//!   packet has its NTP (capture) time. Both tracks of one publisher share that NTP clock; the
//!   publisher's NTP clock is placed on ours by the least `arrival - ntp` over all its reported
//!   tracks (their floors moved onto NTP time, packets before the report included). A packet's
//!   time is then `ntp + offset`: the sound and the picture captured at one instant get one
//!   time, whichever track the network delays more (the least-delayed track keeps its own
//!   timing; the other moves earlier). Each publisher has its own offset, so a publisher's NTP
//!   clock may be anywhere (seconds off ours, or another publisher's): everyone is placed at
//!   their own least network delay, and jitter or a slower track never shifts one person
//!   against another.
//! - **No jumps**: a track's times follow its RTP clock, and move toward a changed target (the
//!   first report, a lower floor, a new report) by at most [`SLEW_PER_MILLE`] of the media time
//!   that passes (10 %: 80 ms of correction take 0.8 s), without a discontinuity. Only a target
//!   more than [`JUMP`] away (a stepped NTP clock) is taken at once. Packets more than [`JUMP`]
//!   off the track's timeline are strays (timed as the others, ignored by the floor), unless they
//!   keep coming for [`JUMP`]: then the sender restarted its timestamps, and the track starts
//!   afresh.
//!
//! Packets of one frame (one RTP timestamp) get the same time; reordered packets get the time of
//! their timestamp; a time before the recording's start is clamped to zero.

use std::collections::HashMap;
use std::time::Duration;

const NS: i128 = 1_000_000_000;

/// How fast a track's times move toward a changed target, in thousandths of the media time that
/// passes.
pub const SLEW_PER_MILLE: i128 = 100;

/// A target this far from a track's current timing is taken at once (a resync).
pub const JUMP: Duration = Duration::from_secs(1);

/// How fast a floor rises (parts per million of the time that passes) unless a less-delayed
/// packet holds it: the clock drift between a sender and us that is followed.
pub const FLOOR_RISE_PPM: i128 = 100;

/// The presentation times of the tracks of a recording.
#[derive(Debug, Default)]
pub struct Sync {
    tracks: HashMap<String, Track>,
}

#[derive(Debug)]
struct Track {
    publisher: u64,
    rate: i128,
    /// The last RTP timestamp seen (packets and reports) and its extended value.
    last: Option<(u32, i64)>,
    floor: Option<Floor>,
    /// The latest sender report: its NTP time (ns) and extended RTP time.
    report: Option<(i128, i64)>,
    /// The newest packet timed: its extended RTP timestamp and time.
    out: Option<(i64, i128)>,
    /// Since when (arrival) packets have been more than [`JUMP`] off the timeline.
    suspect: Option<i128>,
}

#[derive(Debug, Clone, Copy)]
struct Floor {
    /// The least arrival - media time (ns).
    value: i128,
    /// When it was last updated (arrival, ns).
    at: i128,
}

/// NTP (32.32 fixed point) as nanoseconds.
fn ntp_ns(ntp: u64) -> i128 {
    i128::from(ntp >> 32) * NS + ((i128::from(ntp & 0xffff_ffff) * NS) >> 32)
}

impl Track {
    /// Extends a 32-bit RTP timestamp, relative to the last one seen (either direction).
    fn extend(&mut self, rtp: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(rtp),
            Some((last, last_ext)) => last_ext + i64::from(rtp.wrapping_sub(last) as i32),
        };
        self.last = Some((rtp, ext));
        ext
    }

    /// Media time (ns) of an extended RTP timestamp.
    fn media(&self, ext: i64) -> i128 {
        i128::from(ext) * NS / self.rate
    }

    /// NTP time minus media time, from the latest report.
    fn ntp_minus_media(&self) -> Option<i128> {
        self.report.map(|(ntp, ext)| ntp - self.media(ext))
    }
}

impl Sync {
    pub fn new() -> Sync {
        Sync::default()
    }

    /// A track starts: `publisher` groups the tracks that share one NTP clock (one sender).
    /// A track added again starts afresh.
    pub fn add_track(&mut self, track: &str, publisher: u64, clock_rate: u32) {
        self.tracks.insert(
            track.to_owned(),
            Track {
                publisher,
                rate: i128::from(clock_rate.max(1)),
                last: None,
                floor: None,
                report: None,
                out: None,
                suspect: None,
            },
        );
    }

    pub fn remove_track(&mut self, track: &str) {
        self.tracks.remove(track);
    }

    pub fn has_track(&self, track: &str) -> bool {
        self.tracks.contains_key(track)
    }

    /// A sender report of `track`: `rtp_time` (on its packets' timeline) was `ntp_time` (NTP,
    /// 32.32). False for an unknown track.
    pub fn sender_report(&mut self, track: &str, ntp_time: u64, rtp_time: u32) -> bool {
        let Some(t) = self.tracks.get_mut(track) else {
            return false;
        };
        let ext = t.extend(rtp_time);
        t.report = Some((ntp_ns(ntp_time), ext));
        true
    }

    /// Where the publisher's NTP clock sits on ours (ns to add to NTP time), once one of its
    /// tracks has a report and packets.
    fn offset(&self, publisher: u64) -> Option<i128> {
        self.tracks
            .values()
            .filter(|t| t.publisher == publisher)
            .filter_map(|t| Some(t.floor?.value - t.ntp_minus_media()?))
            .min()
    }

    /// The presentation time of a packet of `track` with RTP timestamp `rtp` that arrived at
    /// `arrival` (running time). `None` for an unknown track.
    pub fn packet(&mut self, track: &str, rtp: u32, arrival: Duration) -> Option<Duration> {
        let arrival = arrival.as_nanos() as i128;
        let t = self.tracks.get_mut(track)?;
        let ext = t.extend(rtp);
        let media = t.media(ext);
        let seen = arrival - media;
        let risen = t
            .floor
            .map(|f| f.value + (arrival - f.at).max(0) * FLOOR_RISE_PPM / 1_000_000);
        let jump = JUMP.as_nanos() as i128;
        let floor = match risen {
            // More than a second off the timeline: a stray packet (timed as the others, the floor
            // kept) or, when it lasts a second, a sender that restarted its timestamps (the track
            // starts afresh; its reports belonged to the old timeline).
            Some(risen) if (seen - risen).abs() > jump => {
                let since = *t.suspect.get_or_insert(arrival);
                if arrival - since >= jump {
                    t.report = None;
                    t.out = None;
                    t.suspect = None;
                    t.floor = Some(Floor {
                        value: seen,
                        at: arrival,
                    });
                    seen
                } else {
                    risen
                }
            }
            Some(risen) => {
                t.suspect = None;
                let floor = seen.min(risen);
                t.floor = Some(Floor {
                    value: floor,
                    at: arrival,
                });
                floor
            }
            None => {
                t.floor = Some(Floor {
                    value: seen,
                    at: arrival,
                });
                seen
            }
        };
        let publisher = t.publisher;
        let base = t.ntp_minus_media();
        let offset = self.offset(publisher);
        let t = self.tracks.get_mut(track)?;
        let target = match (base, offset) {
            (Some(base), Some(offset)) => media + base + offset,
            _ => media + floor,
        };
        let time = match t.out {
            None => target,
            Some((last_ext, last_time)) => {
                let elapsed = media - t.media(last_ext);
                let followed = last_time + elapsed;
                let error = target - followed;
                if error.abs() > JUMP.as_nanos() as i128 {
                    target
                } else {
                    let step = elapsed.abs() * SLEW_PER_MILLE / 1000;
                    followed + error.clamp(-step, step)
                }
            }
        };
        if t.out.is_none_or(|(last_ext, _)| ext >= last_ext) {
            t.out = Some((ext, time));
        }
        Some(Duration::from_nanos(
            time.clamp(0, i128::from(u64::MAX)) as u64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    fn ms(d: Duration) -> f64 {
        d.as_nanos() as f64 / 1e6
    }

    fn at(ns: i128) -> Duration {
        Duration::from_nanos(ns as u64)
    }

    /// A deterministic jitter source: 0..max ns.
    struct Jitter(u64);

    impl Jitter {
        fn next(&mut self, max: i128) -> i128 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            i128::from(self.0 >> 33) % max.max(1)
        }
    }

    /// One sending track: its RTP origin and clock rate, the sender's NTP clock origin, and the
    /// network delay to us.
    struct Sender {
        track: &'static str,
        rate: i128,
        rtp0: u32,
        /// NTP (ns) at capture time zero.
        ntp0: i128,
        delay: i128,
    }

    impl Sender {
        fn rtp(&self, capture: i128) -> u32 {
            (i128::from(self.rtp0) + capture * self.rate / NS) as u64 as u32
        }

        fn ntp(&self, capture: i128) -> u64 {
            let ns = self.ntp0 + capture;
            let secs = ns / NS;
            let frac = ((ns % NS) << 32) / NS;
            ((secs as u64) << 32) | frac as u64
        }

        fn report(&self, sync: &mut Sync, capture: i128) {
            assert!(sync.sender_report(self.track, self.ntp(capture), self.rtp(capture)));
        }

        /// The time of the packet captured at `capture`, arriving after the delay and `jitter`.
        fn packet(&self, sync: &mut Sync, capture: i128, jitter: i128) -> i128 {
            let arrival = capture + self.delay + jitter;
            sync.packet(self.track, self.rtp(capture), at(arrival))
                .unwrap()
                .as_nanos() as i128
        }
    }

    const NTP_2026: i128 = 3_976_000_000 * NS;

    #[test]
    fn ntp_fixed_point_reads_as_nanoseconds() {
        assert_eq!(ntp_ns(5 << 32), 5 * NS);
        assert_eq!(ntp_ns((5 << 32) | (1 << 31)), 5 * NS + NS / 2);
        let s = Sender {
            track: "t",
            rate: 90_000,
            rtp0: 0,
            ntp0: NTP_2026,
            delay: 0,
        };
        assert!((ntp_ns(s.ntp(1_234_567_890)) - NTP_2026 - 1_234_567_890).abs() <= 1);
    }

    #[test]
    fn before_any_report_packets_are_timed_from_the_first_arrival_and_their_rtp_timestamps() {
        let mut sync = Sync::new();
        sync.add_track("cam", 1, 90_000);
        // The RTP timestamp wraps 50 ms in.
        let cam = Sender {
            track: "cam",
            rate: 90_000,
            rtp0: u32::MAX - 4_499,
            ntp0: 0,
            delay: 1_000 * MS,
        };
        for frame in 0..300 {
            let capture = frame * 33_333_333;
            let time = cam.packet(&mut sync, capture, 0);
            // 90 kHz ticks are 11.1 us: the media time is exact to a tick.
            assert!(
                (time - (1_000 * MS + capture)).abs() < 20_000,
                "frame {frame}: {time}"
            );
        }
        assert_eq!(sync.packet("mic", 0, Duration::ZERO), None, "unknown track");
    }

    #[test]
    fn the_least_delayed_packet_sets_the_timeline_and_jitter_then_changes_nothing() {
        let mut sync = Sync::new();
        sync.add_track("mic", 1, 48_000);
        let mic = Sender {
            track: "mic",
            rate: 48_000,
            rtp0: 77,
            ntp0: 0,
            delay: 40 * MS,
        };
        let mut jitter = Jitter(1);
        // The first packet is 60 ms late; the others up to 30 ms.
        let first = mic.packet(&mut sync, 0, 60 * MS);
        assert_eq!(first, 100 * MS, "the first packet starts the timeline");
        let mut last = first;
        for n in 1..500 {
            let capture = n * 20 * MS;
            let time = mic.packet(&mut sync, capture, jitter.next(30 * MS));
            let step = time - last;
            assert!(
                (step - 20 * MS).abs() <= 2 * MS,
                "packet {n}: moved {step} ns for 20 ms of sound"
            );
            last = time;
            if n >= 100 {
                // Settled on the least delay seen (within the few tens of us a floor rises).
                let late = time - (capture + 40 * MS);
                assert!((0..=MS).contains(&late), "packet {n}: {late} ns");
            }
        }
    }

    /// Audio 20 ms, video 100 ms through the network, both jittery; a report on each track.
    fn camera_and_microphone(sync: &mut Sync, publisher: u64) -> (Sender, Sender) {
        sync.add_track("cam", publisher, 90_000);
        sync.add_track("mic", publisher, 48_000);
        (
            Sender {
                track: "cam",
                rate: 90_000,
                rtp0: 3_000_000_000,
                ntp0: NTP_2026,
                delay: 100 * MS,
            },
            Sender {
                track: "mic",
                rate: 48_000,
                rtp0: 12_345,
                ntp0: NTP_2026,
                delay: 20 * MS,
            },
        )
    }

    /// Feeds 10 s (frames every 33 ms, sound every 20 ms; reports every second, the first at
    /// `first_report`) and returns, per second from 3 s, the times of the frame and the sound
    /// captured on that second.
    fn ten_seconds(with_reports: bool) -> Vec<(i128, i128)> {
        let mut sync = Sync::new();
        let (cam, mic) = camera_and_microphone(&mut sync, 9);
        let mut jitter = Jitter(7);
        // Merged by arrival: (arrival, capture, video, report).
        let mut events = Vec::new();
        for f in 0..300 {
            let capture = f * NS / 30;
            events.push((
                capture + cam.delay + jitter.next(8 * MS),
                capture,
                true,
                false,
            ));
        }
        for a in 0..500 {
            let capture = a * 20 * MS;
            events.push((
                capture + mic.delay + jitter.next(8 * MS),
                capture,
                false,
                false,
            ));
        }
        if with_reports {
            for s in 0..10 {
                events.push((s * NS + 300 * MS + cam.delay, s * NS + 300 * MS, true, true));
                events.push((
                    s * NS + 700 * MS + mic.delay,
                    s * NS + 700 * MS,
                    false,
                    true,
                ));
            }
        }
        events.sort_by_key(|e| e.0);
        let mut seconds = vec![(0, 0); 10];
        for (arrival, capture, video, report) in events {
            let sender = if video { &cam } else { &mic };
            if report {
                sender.report(&mut sync, capture);
                continue;
            }
            let time = sync
                .packet(sender.track, sender.rtp(capture), at(arrival))
                .unwrap()
                .as_nanos() as i128;
            if capture % NS == 0 {
                let s = (capture / NS) as usize;
                if video {
                    seconds[s].0 = time;
                } else {
                    seconds[s].1 = time;
                }
            }
        }
        seconds.split_off(3)
    }

    #[test]
    fn sound_and_picture_captured_together_get_one_time_from_the_sender_reports() {
        for (video, audio) in ten_seconds(true) {
            let offset = video - audio;
            assert!(offset.abs() <= MS, "video - audio: {offset} ns");
        }
        // Timed by arrival alone, the picture would lag by the 80 ms the network adds.
        for (video, audio) in ten_seconds(false) {
            let offset = video - audio;
            assert!((75 * MS..=85 * MS).contains(&offset), "{offset} ns");
        }
    }

    #[test]
    fn each_publisher_keeps_its_own_clock_and_a_late_joiner_lines_up() {
        let mut sync = Sync::new();
        let (cam, mic) = camera_and_microphone(&mut sync, 1);
        // The late joiner (at 10 s): its NTP clock is 3.7 s ahead, its network slower (60 ms for
        // its sound, 90 ms for its picture).
        sync.add_track("cam2", 2, 90_000);
        sync.add_track("mic2", 2, 48_000);
        let cam2 = Sender {
            track: "cam2",
            rate: 90_000,
            rtp0: 5,
            ntp0: NTP_2026 + 3_700 * MS,
            delay: 90 * MS,
        };
        let mic2 = Sender {
            track: "mic2",
            rate: 48_000,
            rtp0: 4_000_000_000,
            ntp0: NTP_2026 + 3_700 * MS,
            delay: 60 * MS,
        };
        let mut jitter = Jitter(3);
        for n in 0..1000 {
            let capture = n * 20 * MS;
            if n % 50 == 0 {
                for s in [&cam, &mic] {
                    s.report(&mut sync, capture);
                }
                if n >= 500 {
                    for s in [&cam2, &mic2] {
                        s.report(&mut sync, capture);
                    }
                }
            }
            let mut times = Vec::new();
            for s in [&cam, &mic] {
                times.push(s.packet(&mut sync, capture, jitter.next(5 * MS)) - capture);
            }
            if n >= 500 {
                // Joins at 10 s.
                for s in [&cam2, &mic2] {
                    times.push(s.packet(&mut sync, capture, jitter.next(5 * MS)) - capture);
                }
            }
            if n >= 100 && !(500..600).contains(&n) {
                // Everyone at their least delay: 20 ms for the first, 60 ms for the joiner.
                assert!((times[0] - 20 * MS).abs() <= MS, "{n}: {times:?}");
                assert!((times[1] - 20 * MS).abs() <= MS, "{n}: {times:?}");
                if n >= 500 {
                    assert!((times[2] - 60 * MS).abs() <= MS, "{n}: {times:?}");
                    assert!((times[3] - 60 * MS).abs() <= MS, "{n}: {times:?}");
                }
            }
        }
    }

    #[test]
    fn a_first_report_moves_a_late_track_gradually_never_by_a_jump() {
        let mut sync = Sync::new();
        let (cam, mic) = camera_and_microphone(&mut sync, 1);
        cam.report(&mut sync, 0);
        let mut last = None;
        let mut converged_at = None;
        for f in 0..300i128 {
            let capture = f * NS / 30;
            // The microphone's first report comes at 5 s.
            if f % 3 == 0 {
                if f == 150 {
                    mic.report(&mut sync, capture);
                }
                mic.packet(&mut sync, capture, 0);
            }
            let time = cam.packet(&mut sync, capture, 0);
            if let Some(last) = last {
                let step: i128 = time - last;
                let frame = NS / 30;
                assert!(
                    (step - frame).abs() <= frame / 10 + 20_000,
                    "frame {f}: moved {step} ns"
                );
            }
            last = Some(time);
            let late = time - capture;
            if f < 150 {
                assert!((late - 100 * MS).abs() <= MS, "frame {f}: {late}");
            } else if converged_at.is_none() && (late - 20 * MS).abs() <= MS {
                converged_at = Some(f);
            }
        }
        // 80 ms at 10 %: 0.8 s, 24 frames.
        let converged_at = converged_at.expect("the picture moves onto the sound's timing");
        assert!((170..=178).contains(&converged_at), "{converged_at}");
    }

    #[test]
    fn a_restarted_timestamp_is_taken_at_once_and_reordered_packets_keep_their_time() {
        let mut sync = Sync::new();
        sync.add_track("cam", 1, 90_000);
        let arrival = |n: u64| Duration::from_micros(100_000 + 33_334 * n);
        let t0 = sync.packet("cam", 1000, arrival(0)).unwrap();
        let t1 = sync.packet("cam", 4000, arrival(1)).unwrap();
        assert!((ms(t1 - t0) - 33.3).abs() < 0.1);
        // A frame in three packets, the last first: one time.
        let a = sync.packet("cam", 10_000, arrival(3)).unwrap();
        let b = sync.packet("cam", 7_000, arrival(3)).unwrap();
        let c = sync.packet("cam", 10_000, arrival(3)).unwrap();
        assert_eq!(a, c);
        assert!((ms(a - b) - 33.3).abs() < 0.1, "the older frame is earlier");
        // A stray packet 20 s off changes nothing.
        let e = sync.packet("cam", 10_000 + 1_800_000, arrival(4)).unwrap();
        let f = sync.packet("cam", 13_000, arrival(5)).unwrap();
        assert!((ms(f - a) - 33.3).abs() < 0.1, "{e:?} {f:?}");
        // The sender restarts its timestamps 10 s back: after a second of them, the track is
        // timed by their arrival again.
        let mut rtp = 13_000u32.wrapping_sub(900_000);
        for n in 6..60 {
            rtp = rtp.wrapping_add(3_000);
            let t = sync.packet("cam", rtp, arrival(n)).unwrap();
            if n >= 37 {
                assert!((ms(t) - ms(arrival(n))).abs() < 1.0, "{n}: {t:?}");
            }
        }
        // Removed, then unknown.
        sync.remove_track("cam");
        assert!(!sync.has_track("cam"));
        assert_eq!(sync.packet("cam", 0, arrival(60)), None);
        assert!(!sync.sender_report("cam", 0, 0));
    }

    #[test]
    fn a_sender_clock_slower_than_ours_is_followed_for_hours() {
        // The sender's clock runs 50 ppm slow: its 20 ms of sound take 20.001 ms of ours.
        let mut sync = Sync::new();
        sync.add_track("mic", 1, 48_000);
        let mut jitter = Jitter(5);
        let mut worst = 0;
        for n in 0..(3 * 3600 * 50) {
            let capture = n * 20 * MS;
            let ours = capture + capture * 50 / 1_000_000;
            let arrival = ours + 30 * MS + jitter.next(10 * MS);
            let time = sync
                .packet("mic", (n * 960) as u64 as u32, at(arrival))
                .unwrap()
                .as_nanos() as i128;
            // How long after its time the packet arrived: bounded by the jitter, not growing.
            worst = worst.max(arrival - time);
        }
        assert!(
            worst < 15 * MS,
            "a packet arrived {worst} ns after its time"
        );
    }
}
