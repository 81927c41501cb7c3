//! A recording whose pipeline is stuck (a starved machine, an element that never returns) must
//! not hang its caller: removing a track returns at once, and a stop returns within its timeout,
//! with the file finalised when only an input is stuck.
//!
//! A stall is made by a pad probe that sleeps for a minute in an element's streaming thread.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use recorder::pipeline::{Error, Format, Kind, Pipeline};

#[path = "support/source.rs"]
mod source;
use source::Source;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn format() -> Format {
    Format {
        width: 320,
        height: 180,
        fps: 15,
        video_bps: 300_000,
    }
}

/// An element of the recording made by `factory` (the first).
fn element(rec: &Pipeline, factory: &str) -> gst::Element {
    rec.gst_pipeline()
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == factory))
        .unwrap_or_else(|| panic!("a {factory}"))
}

/// From the moment it is armed, the next buffer through `pad` sleeps a minute in its thread.
fn stall(pad: &gst::Pad) -> Arc<AtomicBool> {
    stall_reporting(pad).0
}

/// [`stall`], and a receiver told when a buffer starts being held.
fn stall_reporting(pad: &gst::Pad) -> (Arc<AtomicBool>, std::sync::mpsc::Receiver<()>) {
    let armed = Arc::new(AtomicBool::new(false));
    let a = armed.clone();
    let (stuck, stuck_rx) = std::sync::mpsc::sync_channel(1);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if a.swap(false, Ordering::SeqCst) {
            let _ = stuck.try_send(());
            std::thread::sleep(Duration::from_secs(60));
        }
        gst::PadProbeReturn::Ok
    });
    (armed, stuck_rx)
}

fn duration(path: &Path) -> f64 {
    let out = Command::new("gst-discoverer-1.0")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let d = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Duration: "))
        .unwrap_or_else(|| panic!("a duration in: {text}"));
    let parts: Vec<f64> = d.split(':').map(|p| p.trim().parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn a_stuck_encoder_neither_blocks_a_track_removal_nor_a_stop_past_its_timeout() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("recorder-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = Pipeline::start(&dir.join("stuck.webm"), format()).unwrap();
    rec.add_track("cam", Kind::Video, 96, false).unwrap();
    let camera = Source::new(Kind::Video, "ball");
    camera.forward_for(&rec, "cam", Duration::from_secs(1));
    // The track's decoder, then the recording's encoder, get stuck.
    stall(&element(&rec, "vp8dec").static_pad("src").unwrap()).store(true, Ordering::SeqCst);
    camera.forward_for(&rec, "cam", Duration::from_millis(500));
    let removing = Instant::now();
    rec.remove_track("cam").unwrap();
    let removed = removing.elapsed();
    assert!(
        removed < Duration::from_millis(100),
        "remove_track took {removed:?}"
    );
    let (encoder_stall, stuck) =
        stall_reporting(&element(&rec, "vp8enc").static_pad("sink").unwrap());
    encoder_stall.store(true, Ordering::SeqCst);
    // Until a buffer is stuck in the encoder.
    stuck
        .recv_timeout(Duration::from_secs(10))
        .expect("a buffer reached the encoder");
    let stopping = Instant::now();
    let result = rec.stop(Duration::from_secs(3));
    let stopped = stopping.elapsed();
    eprintln!("stuck encoder: remove_track {removed:?}, stop {stopped:?}: {result:?}");
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    assert!(
        stopped < Duration::from_millis(3_300),
        "stop(3 s) returned after {stopped:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stuck_input_is_cut_off_at_the_stop_and_the_file_is_still_finalised() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("recorder-stuck-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = Pipeline::start(&dir.join("cut.webm"), format()).unwrap();
    rec.add_track("cam", Kind::Video, 96, false).unwrap();
    let camera = Source::new(Kind::Video, "ball");
    camera.forward_for(&rec, "cam", Duration::from_secs(2));
    stall(&element(&rec, "vp8dec").static_pad("src").unwrap()).store(true, Ordering::SeqCst);
    camera.forward_for(&rec, "cam", Duration::from_secs(1));
    let recorded = rec.running_time().as_secs_f64();
    let stopping = Instant::now();
    let file = rec.stop(Duration::from_secs(6));
    let stopped = stopping.elapsed();
    eprintln!("stuck input: stop {stopped:?}: {file:?}");
    let file = file.expect("the file is finalised without the stuck input");
    assert!(stopped < Duration::from_millis(6_300), "{stopped:?}");
    let d = duration(&file);
    assert!(
        (d - recorded).abs() < 1.0,
        "the file lasts {d:.2} s of {recorded:.2} s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
