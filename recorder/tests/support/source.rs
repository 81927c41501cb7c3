//! A synthetic publisher's track for the recorder's tests: GStreamer's own test sources,
//! encoders and payloaders (VP8 and Opus in RTP, as browsers send), live, read from an appsink.
//! Shared by the test binaries with `#[path]`.
#![allow(dead_code)]

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use recorder::pipeline::{Kind, Pipeline};

/// A live encoder of test video or sound into RTP packets, read from an appsink.
pub struct Source {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Source {
    pub fn new(kind: Kind, pattern: &str) -> Source {
        gst::init().unwrap();
        let description = match kind {
            Kind::Video => format!(
                "videotestsrc is-live=true pattern={pattern} \
                   ! video/x-raw,width=320,height=180,framerate=15/1 \
                   ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=15 \
                   ! rtpvp8pay pt=96 mtu=1200 ! appsink name=out sync=false"
            ),
            Kind::Audio => "audiotestsrc is-live=true wave=sine freq=440 \
                   ! audio/x-raw,rate=48000,channels=2 ! opusenc \
                   ! rtpopuspay pt=111 ! appsink name=out sync=false"
                .to_owned(),
        };
        let pipeline = gst::parse::launch(&description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Source { pipeline, sink }
    }

    /// Waits up to `wait` for a packet, then takes every packet produced so far.
    pub fn drain(&self, wait: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut timeout = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
        while let Some(sample) = self.sink.try_pull_sample(timeout) {
            timeout = gst::ClockTime::ZERO;
            if let Some(buffer) = sample.buffer()
                && let Ok(map) = buffer.map_readable()
            {
                out.push(map.as_slice().to_vec());
            }
        }
        out
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Source {
    /// Pushes into `rec`, as track `track`, what it makes for `time` (timed by arrival).
    pub fn forward_for(&self, rec: &Pipeline, track: &str, time: Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < time {
            for packet in self.drain(Duration::from_millis(5)) {
                rec.push_rtp(track, &packet).unwrap();
            }
        }
    }
}
