//! A/V synchronisation measured on the recorded file (issue 14).
//!
//! Two synthetic publishers flash their picture and beep at the same instants: publisher A once a
//! second (the left half of its picture turns white for one frame, a 1 kHz beep of 50 ms
//! starts), the late joiner B (from the middle of the recording on, its NTP clock 3.7 s ahead of
//! A's) 520 ms later (the right half of its picture, a 2 kHz beep). The cameras run at 25 fps and
//! the instants move by a frame from second to second, so that flashes fall at every phase of
//! the recording's 30 fps frames (a flash shows in the frame during which it happened: its time
//! is read as that frame's middle, ±17 ms). Their media is encoded beforehand, as a browser would
//! send it (VP8 and Opus in RTP, sender reports pairing the NTP time of a capture instant with its
//! RTP time), and delivered to the recorder in real time through [`Feeder`] with different
//! network delays per track: the picture 80 ms (A) and 50 ms (B) later than the sound, plus a few
//! ms of jitter (reordering the packets of a frame). The finished file is decoded; every flash is
//! paired with its beep.
//!
//! - With the sender reports, every flash and its beep are within 40 ms, for both publishers, and
//!   B's events are 520 ms after A's (both have the same least delay for their sound).
//! - Timed by arrival, the same recording has A's picture about 80 ms late.
//!
//! `RECORDER_AV_SECONDS` sets the synchronised recording's length (default 240 s: "several
//! minutes", as issue 14 asks; B joins in its middle).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use recorder::live::{Feeder, Timing};
use recorder::pipeline::{Format, Pipeline};
use rtc::shared::marshal::Unmarshal;
use sfu::{LocalItem, PeerId, TrackKey};

static SERIAL: Mutex<()> = Mutex::new(());

const NS: u64 = 1_000_000_000;
/// The cameras' frame rate: not the recording's (30), so flashes fall at every phase of its frames.
const CAMERA_FPS: u64 = 25;
/// The recording's frame rate.
const FPS: u64 = 30;
const WIDTH: usize = 320;
const HEIGHT: usize = 180;
const RATE: u64 = 48_000;
/// A beep's length.
const BEEP: u64 = RATE / 20;
const AMPLITUDE: f64 = 0.5;

/// Media of one publisher as it leaves the browser: packets with their capture time (ns, on the
/// test's timeline) and the origins of its RTP and NTP clocks.
struct Track {
    video: bool,
    packets: Vec<(u64, Vec<u8>)>,
    rtp_offset: u32,
    clock_rate: u64,
}

impl Track {
    /// The RTP time of capture time `t` (ns since the publisher's own start).
    fn rtp(&self, t: u64) -> u32 {
        self.rtp_offset
            .wrapping_add((u128::from(t) * u128::from(self.clock_rate) / u128::from(NS)) as u32)
    }
}

/// Runs a non-live encoder: raw buffers pushed into `appsrc name=src`, RTP read from
/// `appsink name=out`, with their timestamps.
fn encode(description: &str, buffers: impl Iterator<Item = gst::Buffer>) -> Vec<(u64, Vec<u8>)> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    {
        let out = out.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let pts = buffer.pts().expect("timestamped").nseconds();
                    out.lock().unwrap().push((pts, map.as_slice().to_vec()));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    for b in buffers {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the encoder finishes");
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{message:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
    std::mem::take(&mut *out.lock().unwrap())
}

/// A camera: black, the left (or right) half white for one frame at each flash.
fn camera(seconds: u64, flashes: &[u64], left: bool, rtp_offset: u32) -> Track {
    let frames = seconds * CAMERA_FPS;
    let flash_frames: Vec<u64> = flashes.iter().map(|t| t * CAMERA_FPS / NS).collect();
    let mut black = vec![16u8; WIDTH * HEIGHT];
    black.resize(WIDTH * HEIGHT * 3 / 2, 128);
    let mut white = black.clone();
    for y in 0..HEIGHT {
        let row = &mut white[y * WIDTH..(y + 1) * WIDTH];
        let half = if left {
            &mut row[..WIDTH / 2]
        } else {
            &mut row[WIDTH / 2..]
        };
        half.fill(235);
    }
    let buffers = (0..frames).map(move |f| {
        let data = if flash_frames.contains(&f) {
            white.clone()
        } else {
            black.clone()
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(f * NS / CAMERA_FPS));
            b.set_duration(gst::ClockTime::from_nseconds(NS / CAMERA_FPS));
        }
        buffer
    });
    let packets = encode(
        &format!(
            "appsrc name=src format=time block=true max-bytes=4000000 \
               caps=video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={CAMERA_FPS}/1 \
             ! vp8enc deadline=1 cpu-used=8 lag-in-frames=0 keyframe-max-dist=50 \
                 target-bitrate=400000 end-usage=cbr \
             ! rtpvp8pay pt=96 mtu=1000 timestamp-offset={rtp_offset} \
             ! appsink name=out sync=false"
        ),
        buffers,
    );
    Track {
        video: true,
        packets,
        rtp_offset,
        clock_rate: 90_000,
    }
}

/// A microphone: silence, a beep of `freq` Hz at each flash.
fn microphone(seconds: u64, flashes: &[u64], freq: f64, rtp_offset: u32) -> Track {
    let per_buffer = RATE / 50;
    let mut signal = vec![0i16; (seconds * RATE) as usize];
    for t in flashes {
        let start = (t * RATE / NS) as usize;
        for i in 0..BEEP as usize {
            let v = AMPLITUDE * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE as f64).sin();
            if let Some(s) = signal.get_mut(start + i) {
                *s = (v * 32767.0) as i16;
            }
        }
    }
    let buffers = (0..seconds * 50).map(move |n| {
        let first = n * per_buffer;
        let data: Vec<u8> = signal[first as usize..(first + per_buffer) as usize]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(first * NS / RATE));
            b.set_duration(gst::ClockTime::from_nseconds(per_buffer * NS / RATE));
        }
        buffer
    });
    let packets = encode(
        &format!(
            "appsrc name=src format=time block=true max-bytes=1000000 \
               caps=audio/x-raw,format=S16LE,rate={RATE},channels=1,layout=interleaved \
             ! opusenc bitrate=64000 frame-size=20 \
             ! rtpopuspay pt=111 timestamp-offset={rtp_offset} \
             ! appsink name=out sync=false"
        ),
        buffers,
    );
    Track {
        video: false,
        packets,
        rtp_offset,
        clock_rate: RATE,
    }
}

/// One publisher: its tracks, when it joins (on the test's timeline), where its NTP clock
/// stands, and the network's delay for its sound and its picture.
struct Publisher {
    peer: PeerId,
    joins: u64,
    ntp_ahead: u64,
    audio_delay: u64,
    video_delay: u64,
    tracks: Vec<Track>,
}

const MS: u64 = 1_000_000;
/// NTP seconds of the test's timeline origin (some day in 2026).
const NTP_ORIGIN: u64 = 3_976_000_000;

fn ntp(ns: u64) -> u64 {
    let secs = NTP_ORIGIN + ns / NS;
    let frac = ((ns % NS) << 32) / NS;
    (secs << 32) | frac
}

/// The items the recorder gets, with their delivery time (ns on the test's timeline).
fn deliveries(publishers: &[Publisher]) -> Vec<(u64, LocalItem)> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut jitter = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % (6 * MS)
    };
    let mut out = Vec::new();
    for p in publishers {
        for t in &p.tracks {
            let key = TrackKey::new(p.peer, if t.video { "cam" } else { "mic" });
            let delay = if t.video {
                p.video_delay
            } else {
                p.audio_delay
            };
            out.push((
                p.joins,
                LocalItem::TrackAdded {
                    track: key.clone(),
                    video: t.video,
                    mime: if t.video { "video/VP8" } else { "audio/opus" }.into(),
                    payload_type: if t.video { 96 } else { 111 },
                    clock_rate: t.clock_rate as u32,
                    publisher: p.peer,
                },
            ));
            let end = t.packets.last().map(|(c, _)| *c).unwrap_or(0);
            for (capture, bytes) in &t.packets {
                let packet = rtc::rtp::Packet::unmarshal(&mut &bytes[..]).unwrap();
                // The payloader's RTP time is the capture time's.
                assert_eq!(packet.header.timestamp, t.rtp(*capture));
                out.push((
                    p.joins + capture + delay + jitter(),
                    LocalItem::Rtp {
                        track: key.clone(),
                        packet,
                    },
                ));
            }
            // A sender report every second, video and audio at different moments.
            let mut at = if t.video { 250 * MS } else { 750 * MS };
            while at < end {
                out.push((
                    p.joins + at + delay,
                    LocalItem::SenderReport {
                        track: key.clone(),
                        ntp_time: ntp(p.joins + at + p.ntp_ahead),
                        rtp_time: t.rtp(at),
                    },
                ));
                at += NS;
            }
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// What the file shows: per video frame its time and the mean luma of A's and B's regions;
/// the mono sound and the time of its first sample.
struct Decoded {
    frames: Vec<(u64, f64, f64)>,
    samples: Vec<f32>,
    audio_start: u64,
    frame_duration: u64,
}

fn decode(path: &Path, width: usize, height: usize) -> Decoded {
    let description = format!(
        "filesrc location={} ! matroskademux name=d \
           d. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! vp8dec ! videoconvert \
              ! video/x-raw,format=GRAY8 ! appsink name=v sync=false \
           d. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! opusdec \
              ! audioconvert ! audioresample \
              ! audio/x-raw,format=F32LE,channels=1,rate={RATE},layout=interleaved \
              ! appsink name=a sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = |name: &str| {
        pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
    };
    let (v, a) = (sink("v"), sink("a"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let stride = width.div_ceil(4) * 4;
    // A's region: inside the left half of A's picture, alone or left of B; B's: inside the
    // right half of B's picture, right of A.
    let region = |data: &[u8], x0: usize, x1: usize| {
        let (y0, y1) = (height / 3, height * 2 / 3);
        let mut sum = 0u64;
        for y in y0..y1 {
            sum += data[y * stride + x0..y * stride + x1]
                .iter()
                .map(|&p| u64::from(p))
                .sum::<u64>();
        }
        sum as f64 / ((y1 - y0) * (x1 - x0)) as f64
    };
    let mut decoded = Decoded {
        frames: Vec::new(),
        samples: Vec::new(),
        audio_start: u64::MAX,
        frame_duration: NS / FPS,
    };
    let (mut v_done, mut a_done) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(v_done && a_done) {
        assert!(Instant::now() < deadline, "the file decodes in time");
        if !v_done {
            match v.try_pull_sample(gst::ClockTime::from_mseconds(5)) {
                Some(s) => {
                    let b = s.buffer().unwrap();
                    if let Some(d) = b.duration() {
                        decoded.frame_duration = d.nseconds();
                    }
                    let map = b.map_readable().unwrap();
                    decoded.frames.push((
                        b.pts().unwrap().nseconds(),
                        region(&map, width / 32, width * 7 / 32),
                        region(&map, width * 25 / 32, width * 31 / 32),
                    ));
                }
                None => v_done = v.is_eos(),
            }
        }
        if !a_done {
            match a.try_pull_sample(gst::ClockTime::from_mseconds(5)) {
                Some(s) => {
                    let b = s.buffer().unwrap();
                    if decoded.audio_start == u64::MAX {
                        decoded.audio_start = b.pts().unwrap().nseconds();
                    }
                    let map = b.map_readable().unwrap();
                    decoded.samples.extend(
                        map.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                None => a_done = a.is_eos(),
            }
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    decoded
}

/// Flashes seen in a region: the middle of the first frame of each (the flash happened during
/// that frame), in ns.
fn flashes(d: &Decoded, b_region: bool) -> Vec<u64> {
    let mut out = Vec::new();
    let mut lit = false;
    for &(pts, a, b) in &d.frames {
        let luma = if b_region { b } else { a };
        if luma > 60.0 && !lit {
            out.push(pts + d.frame_duration / 2);
        }
        lit = luma > 60.0;
    }
    out
}

/// Beeps heard: the onset of each (first sample above a tenth of full scale after 200 ms of
/// quiet) and its frequency (1 or 2 kHz, whichever dominates its first 40 ms), in ns.
fn beeps(d: &Decoded) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let mut last_loud: Option<usize> = None;
    for (i, &s) in d.samples.iter().enumerate() {
        if s.abs() < 0.1 {
            continue;
        }
        if last_loud.is_none_or(|l| i - l > RATE as usize / 5) {
            let window = &d.samples[i..(i + RATE as usize / 25).min(d.samples.len())];
            let power = |f: f64| {
                let (mut re, mut im) = (0.0, 0.0);
                for (k, &x) in window.iter().enumerate() {
                    let w = 2.0 * std::f64::consts::PI * f * k as f64 / RATE as f64;
                    re += f64::from(x) * w.cos();
                    im += f64::from(x) * w.sin();
                }
                re * re + im * im
            };
            let freq = if power(1000.0) > power(2000.0) {
                1000.0
            } else {
                2000.0
            };
            out.push((d.audio_start + i as u64 * NS / RATE, freq));
        }
        last_loud = Some(i);
    }
    out
}

/// Pairs every flash with the nearest beep: (flash time, picture minus sound, ns).
fn pairs(flashes: &[u64], beeps: &[u64]) -> Vec<(u64, i64)> {
    flashes
        .iter()
        .filter_map(|&f| {
            let b = beeps.iter().min_by_key(|&&b| b.abs_diff(f))?;
            (b.abs_diff(f) < 300 * MS).then(|| (f, f as i64 - *b as i64))
        })
        .collect()
}

/// Records the publishers, fed in real time; returns the decoded file.
fn record(publishers: &[Publisher], seconds: u64, timing: Timing, name: &str) -> Decoded {
    let dir = std::env::temp_dir().join(format!("recorder-av-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let format = Format {
        width: 640,
        height: 360,
        fps: FPS as i32,
        video_bps: 800_000,
    };
    let items = deliveries(publishers);
    let pipeline = Pipeline::start(&path, format).unwrap();
    let mut feeder = Feeder::new(pipeline, |_| false).with_timing(timing);
    let started = Instant::now();
    for (at, item) in items {
        let due = started + Duration::from_nanos(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        feeder.apply(item);
    }
    let end = started + Duration::from_secs(seconds);
    if let Some(wait) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    assert_eq!(feeder.refused, 0, "every item applied");
    assert!(
        timing == Timing::Arrival || feeder.reports >= seconds,
        "reports: {}",
        feeder.reports
    );
    let stopping = Instant::now();
    let file = feeder.finish().unwrap();
    eprintln!(
        "{name}: {seconds} s recorded, finalised {:.2} s after the stop, {} kB",
        stopping.elapsed().as_secs_f64(),
        std::fs::metadata(&file).unwrap().len() / 1000
    );
    let decoded = decode(&file, 640, 360);
    let _ = std::fs::remove_dir_all(&dir);
    decoded
}

/// How long after A's B flashes and beeps: on a camera frame (13 at 25 fps).
const B_PHASE: u64 = 13 * NS / CAMERA_FPS;

/// Flash and beep instants from 2 s on, `phase` into each second plus 0 to 160 ms (steps of a
/// camera frame, 40 ms), so that they fall at every phase of the recording's 30 fps frames.
fn instants(seconds: u64, phase: u64) -> Vec<u64> {
    (2..seconds - 1)
        .map(|s| s * NS + phase + (s % 5) * NS / CAMERA_FPS)
        .collect()
}

fn publisher_a(seconds: u64) -> Publisher {
    let flashes = instants(seconds, 0);
    Publisher {
        peer: PeerId::from_u64(0xa),
        joins: 0,
        ntp_ahead: 0,
        audio_delay: 30 * MS,
        video_delay: 110 * MS,
        tracks: vec![
            // The camera's RTP timestamps wrap 20 s in.
            camera(seconds, &flashes, true, u32::MAX - 20 * 90_000),
            microphone(seconds, &flashes, 1000.0, 1_234_567),
        ],
    }
}

fn stats(name: &str, pairs: &[(u64, i64)]) -> (f64, f64) {
    let offsets: Vec<f64> = pairs.iter().map(|(_, o)| *o as f64 / 1e6).collect();
    let mean = offsets.iter().sum::<f64>() / offsets.len().max(1) as f64;
    let worst = offsets.iter().fold(0.0f64, |w, o| w.max(o.abs()));
    let (min, max) = offsets
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &o| (lo.min(o), hi.max(o)));
    // Steady from start to end: the mean of the first and of the last ten.
    let mean_of = |o: &[f64]| o.iter().sum::<f64>() / o.len().max(1) as f64;
    let ten = offsets.len().min(10);
    eprintln!(
        "{name}: {} flash/beep pairs, picture minus sound: mean {mean:+.1} ms, \
         min {min:+.1} ms, max {max:+.1} ms (first ten {:+.1} ms, last ten {:+.1} ms)",
        offsets.len(),
        mean_of(&offsets[..ten]),
        mean_of(&offsets[offsets.len() - ten..])
    );
    (mean, worst)
}

#[test]
fn flashes_and_beeps_stay_together_with_the_sender_reports_and_drift_apart_without() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    gst::init().unwrap();
    let seconds: u64 = std::env::var("RECORDER_AV_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    let generating = Instant::now();
    let a = publisher_a(seconds);
    // B joins in the middle, flashes and beeps about half a second after A (on the test's
    // timeline).
    let joins = seconds / 2;
    let b_length = seconds - joins;
    let b_flashes = instants(b_length, B_PHASE);
    let b = Publisher {
        peer: PeerId::from_u64(0xb),
        joins: joins * NS,
        ntp_ahead: 3_700 * MS,
        audio_delay: 30 * MS,
        video_delay: 80 * MS,
        tracks: vec![
            camera(b_length, &b_flashes, false, 77),
            microphone(b_length, &b_flashes, 2000.0, 4_000_000_000),
        ],
    };
    eprintln!(
        "media encoded in {:.1} s",
        generating.elapsed().as_secs_f64()
    );

    let decoded = record(&[a, b], seconds, Timing::SenderReports, "synced.webm");
    let all_beeps = beeps(&decoded);
    let beeps_of = |freq: f64| -> Vec<u64> {
        all_beeps
            .iter()
            .filter(|(_, f)| *f == freq)
            .map(|(t, _)| *t)
            .collect()
    };
    let (a_beeps, b_beeps) = (beeps_of(1000.0), beeps_of(2000.0));
    let (a_flashes, b_flashes_seen) = (flashes(&decoded, false), flashes(&decoded, true));
    let a_pairs = pairs(&a_flashes, &a_beeps);
    let b_pairs = pairs(&b_flashes_seen, &b_beeps);
    let (_, a_worst) = stats("A, synchronised", &a_pairs);
    let (_, b_worst) = stats("B (late joiner), synchronised", &b_pairs);
    // Every flash and beep was recorded and paired (the last one may fall past the stop).
    assert!(
        a_pairs.len() + 1 >= (seconds - 3) as usize && a_beeps.len() + 1 >= (seconds - 3) as usize,
        "A: {} pairs of {} flashes, {} beeps",
        a_pairs.len(),
        a_flashes.len(),
        a_beeps.len()
    );
    assert!(
        b_pairs.len() + 1 >= (b_length - 3) as usize,
        "B: {} pairs of {} flashes, {} beeps",
        b_pairs.len(),
        b_flashes_seen.len(),
        b_beeps.len()
    );
    for (who, pairs) in [("A", &a_pairs), ("B", &b_pairs)] {
        for (at, offset) in pairs.iter() {
            assert!(
                offset.unsigned_abs() <= 40 * MS,
                "{who}: the flash at {:.3} s is {:+.1} ms off its beep",
                *at as f64 / 1e9,
                *offset as f64 / 1e6
            );
        }
    }
    assert!(a_worst <= 40.0 && b_worst <= 40.0);
    // Person to person: B's beeps 520 ms after A's (same least delay for both sounds).
    let mut across = Vec::new();
    for &b in &b_beeps {
        let a = a_beeps.iter().rfind(|&&a| a < b).expect("A beeps before B");
        across.push(b as i64 - *a as i64 - B_PHASE as i64);
    }
    let worst_across = across.iter().map(|o| o.unsigned_abs()).max().unwrap_or(0);
    eprintln!(
        "B's beeps against A's (expected 520 ms apart): worst {:.1} ms off",
        worst_across as f64 / 1e6
    );
    assert!(worst_across <= 40 * MS, "{across:?}");

    // The same publisher timed by arrival: its picture lags by the 80 ms the network added.
    let short = 20;
    let decoded = record(
        &[publisher_a(short)],
        short,
        Timing::Arrival,
        "arrival.webm",
    );
    let a_beeps: Vec<u64> = beeps(&decoded).into_iter().map(|(t, _)| t).collect();
    let arrival_pairs = pairs(&flashes(&decoded, false), &a_beeps);
    let (mean, _) = stats("A, timed by arrival", &arrival_pairs);
    assert!(arrival_pairs.len() >= (short - 4) as usize);
    // The 80 ms the network added to the picture shows (less the sound's own lead in the file):
    // outside the 40 ms the sender reports keep every pair within.
    assert!(
        (40.0..=120.0).contains(&mean),
        "timed by arrival, the picture lags by tens of ms: {mean:+.1} ms"
    );
}
