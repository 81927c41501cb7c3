//! The recorder's cost: four publishers (640x360 VP8 at about 600 kbit/s, 30 fps, and Opus)
//! composited into 1280x720 at 30 fps (VP8, 2 Mbit/s) and mixed, written to WebM.
//!
//! The publishers' RTP is encoded beforehand into memory (as browsers would send it, with sender
//! reports every second), then fed in real time through `recorder::live::Feeder`, so the CPU
//! measured during the recording (the process's user + system time, from /proc/self/stat) is the
//! recorder's: depayloading, decoding, jitter buffers, compositing, mixing, encoding, muxing, the
//! A/V sync. Reports it as a share of one core, the output's bitrate and size per minute, the
//! frames that reached the encoder (all of them when the machine keeps up), and the time from
//! the stop to the finalised file.
//!
//! Not a criterion bench: the pipeline is live, one run of `RECORDER_BENCH_SECONDS` (25 s by
//! default) is the measurement. Figures depend on the machine and on what else runs on it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use recorder::live::Feeder;
use recorder::pipeline::{Format, Pipeline};
use rtc::shared::marshal::Unmarshal;
use sfu::{LocalItem, PeerId, TrackKey};

const PUBLISHERS: u64 = 4;
/// What each publisher's VP8 encoder aims at: synthetic pictures undershoot it, to about 600 kbit/s.
const VIDEO_BPS: u64 = 1_000_000;
const NS: u64 = 1_000_000_000;
const NTP_ORIGIN: u64 = 3_976_000_000;

/// Runs a non-live pipeline to its end, collecting what `appsink name=out` gets: (pts, bytes).
fn collect(description: &str) -> Vec<(u64, Vec<u8>)> {
    let pipeline = gst::parse::launch(description)
        .expect("a pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline
        .by_name("out")
        .expect("an appsink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink");
    let out = Arc::new(Mutex::new(Vec::new()));
    {
        let out = out.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let pts = buffer.pts().map(|t| t.nseconds()).unwrap_or(0);
                    out.lock().unwrap().push((pts, map.as_slice().to_vec()));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
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

/// The items a recording of `seconds` gets, with their delivery time (ns from the start).
fn publishers(seconds: u64) -> Vec<(u64, LocalItem)> {
    let patterns = ["ball", "smpte", "pinwheel", "spokes"];
    let mut items = Vec::new();
    for n in 0..PUBLISHERS {
        let peer = PeerId::from_u64(n + 1);
        let pattern = patterns[n as usize % patterns.len()];
        let video = collect(&format!(
            "videotestsrc num-buffers={frames} pattern={pattern} horizontal-speed=3 \
               ! video/x-raw,width=640,height=360,framerate=30/1 \
             ! vp8enc deadline=1 cpu-used=4 lag-in-frames=0 target-bitrate={video_bps} end-usage=cbr \
                 keyframe-max-dist=90 \
             ! rtpvp8pay pt=96 mtu=1200 timestamp-offset=0 ! appsink name=out sync=false",
            frames = seconds * 30,
            video_bps = VIDEO_BPS
        ));
        let audio = collect(&format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=960 wave=sine freq={freq} \
               ! audio/x-raw,rate=48000,channels=1 \
             ! opusenc bitrate=32000 frame-size=20 ! rtpopuspay pt=111 timestamp-offset=0 \
             ! appsink name=out sync=false",
            buffers = seconds * 50,
            freq = 300 + 100 * n
        ));
        for (name, video, rate, packets) in [
            ("cam", true, 90_000u64, video),
            ("mic", false, 48_000, audio),
        ] {
            let track = TrackKey::new(peer, name);
            items.push((
                0,
                LocalItem::TrackAdded {
                    track: track.clone(),
                    video,
                    mime: if video { "video/VP8" } else { "audio/opus" }.into(),
                    payload_type: if video { 96 } else { 111 },
                    clock_rate: rate as u32,
                    publisher: peer,
                },
            ));
            for (pts, bytes) in packets {
                let packet = rtc::rtp::Packet::unmarshal(&mut &bytes[..]).expect("RTP");
                items.push((
                    pts + 20_000_000,
                    LocalItem::Rtp {
                        track: track.clone(),
                        packet,
                    },
                ));
            }
            for s in 0..seconds {
                let at = s * NS + NS / 2;
                let ntp_ns = NTP_ORIGIN * NS + at;
                items.push((
                    at + 20_000_000,
                    LocalItem::SenderReport {
                        track: track.clone(),
                        ntp_time: ((ntp_ns / NS) << 32) | (((ntp_ns % NS) << 32) / NS),
                        rtp_time: (at * rate / NS) as u32,
                    },
                ));
            }
        }
    }
    items.sort_by_key(|(at, _)| *at);
    items
}

/// CPU time of this process so far (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command (in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a command") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_nanos(ticks * NS / rustix::param::clock_ticks_per_second())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty()
        && !args
            .iter()
            .any(|a| "recorder_compositor".contains(a.as_str()))
    {
        return;
    }
    let seconds: u64 = std::env::var("RECORDER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    gst::init().expect("GStreamer");
    let encoding = Instant::now();
    let items = publishers(seconds);
    let bytes_in: usize = items
        .iter()
        .filter_map(|(_, i)| match i {
            LocalItem::Rtp { packet, .. } => Some(packet.payload.len() + 12),
            _ => None,
        })
        .sum();
    println!(
        "recorder_compositor: {PUBLISHERS} publishers, 640x360 VP8 + Opus, {:.0} kbit/s each, \
         encoded in {:.1} s",
        bytes_in as f64 * 8.0 / seconds as f64 / PUBLISHERS as f64 / 1000.0,
        encoding.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.webm");
    let format = Format {
        width: 1280,
        height: 720,
        fps: 30,
        video_bps: 2_000_000,
    };
    let pipeline = Pipeline::start(&path, format.clone()).expect("the pipeline starts");
    // Frames that reach the encoder (under load, its queue drops what it cannot take).
    let encoded = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if let Some(encoder) = pipeline
        .gst_pipeline()
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vp8enc"))
        .and_then(|e| e.static_pad("sink"))
    {
        let encoded = encoded.clone();
        encoder.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            encoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let mut feeder = Feeder::new(pipeline, |_| false);
    let (cpu_start, started) = (cpu(), Instant::now());
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
    let (cpu_used, wall) = (cpu() - cpu_start, started.elapsed());
    assert_eq!(feeder.refused, 0, "every item applied");
    let stopping = Instant::now();
    let file = feeder.finish().expect("the file is finalised");
    let finalised = stopping.elapsed();
    let size = std::fs::metadata(&file).expect("the file").len();
    let share = cpu_used.as_secs_f64() / wall.as_secs_f64();
    println!(
        "recorder_compositor: {}x{}@{} from {PUBLISHERS}x360p: CPU {:.0} % of one core \
         ({:.1} s over {:.1} s)",
        format.width,
        format.height,
        format.fps,
        share * 100.0,
        cpu_used.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "recorder_compositor: output {:.0} kbit/s, {:.1} MB per minute, {} frames encoded of {}; \
         stop to finalised file {:.0} ms",
        size as f64 * 8.0 / wall.as_secs_f64() / 1000.0,
        size as f64 * 60.0 / wall.as_secs_f64() / 1e6,
        encoded.load(std::sync::atomic::Ordering::Relaxed),
        (wall.as_secs_f64() * f64::from(format.fps)).round(),
        finalised.as_secs_f64() * 1000.0
    );
}
