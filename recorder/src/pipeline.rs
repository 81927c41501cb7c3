//! The live GStreamer pipeline of one recording: RTP in per track, one WebM file out.
//!
//! ```text
//! videotestsrc (black, live) ─┐
//! appsrc ─ rtpjitterbuffer ─ rtpvp8depay ─ vp8dec ─ videoconvert ─ queue ─┤ compositor ─ vp8enc ─┐
//!                                                                          …                     ├ webmmux ─ filesink
//! audiotestsrc (silence, live) ─┐                                                                │
//! appsrc ─ rtpjitterbuffer ─ rtpopusdepay ─ opusdec ─ audioconvert ─ audioresample ─ queue ─┤ audiomixer ─ opusenc ─┘
//! ```
//!
//! The live black and silent sources keep both mixers producing whoever publishes or not: a late
//! joiner is mixed from its first sample and silence never stalls the audio. The compositor's
//! layout ([`crate::layout`]) reflows when a picture comes or goes. Matroska writes a cluster at
//! least every second, so a file whose process died is playable up to there; a recording that
//! stops normally ends with EOS, which finalises the file with its duration and cues (seeking).
//!
//! Timestamps come from arrival (`do-timestamp` on each `appsrc`, then the jitter buffer): audio
//! and video of one person stay together within the network's jitter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::layout;

/// What a recording looks like.
#[derive(Debug, Clone)]
pub struct Format {
    pub width: i32,
    pub height: i32,
    pub fps: i32,
    /// Target video bitrate (bit/s).
    pub video_bps: i32,
}

impl Default for Format {
    fn default() -> Format {
        Format {
            width: 1280,
            height: 720,
            fps: 30,
            video_bps: 2_000_000,
        }
    }
}

/// A kind of input track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// VP8 over RTP, 90 kHz.
    Video,
    /// Opus over RTP, 48 kHz.
    Audio,
}

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("no such track: {0}")]
    UnknownTrack(String),
    #[error("the track is already recorded: {0}")]
    DuplicateTrack(String),
    #[error("the pipeline did not finish the file in time")]
    Timeout,
}

impl From<gst::glib::Error> for Error {
    fn from(e: gst::glib::Error) -> Error {
        Error::Gst(e.to_string())
    }
}

impl From<gst::glib::BoolError> for Error {
    fn from(e: gst::glib::BoolError) -> Error {
        Error::Gst(e.to_string())
    }
}

impl From<gst::StateChangeError> for Error {
    fn from(e: gst::StateChangeError) -> Error {
        Error::Gst(e.to_string())
    }
}

struct Input {
    kind: Kind,
    src: gst_app::AppSrc,
    /// The elements of its branch, source first.
    elements: Vec<gst::Element>,
    /// The mixer's pad it feeds.
    mixer_pad: gst::Pad,
    /// Shown large (a shared screen).
    screen: bool,
}

/// One recording in progress.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    audiomixer: gst::Element,
    format: Format,
    /// Inputs by track id, and the order pictures were added (the layout's order).
    inputs: HashMap<String, Input>,
    order: Vec<String>,
    path: PathBuf,
}

fn make(factory: &str) -> Result<gst::Element, Error> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| Error::Gst(format!("{factory}: {e}")))
}

impl Pipeline {
    /// Starts recording into `path` (a WebM file, created or replaced).
    pub fn start(path: &Path, format: Format) -> Result<Pipeline, Error> {
        gst::init()?;
        let Format {
            width,
            height,
            fps,
            video_bps,
        } = format;
        let description = format!(
            "videotestsrc is-live=true pattern=black \
               ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
               ! compositor name=mix background=black \
               ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1,colorimetry=bt601,chroma-site=jpeg \
               ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 \
               ! vp8enc deadline=1 cpu-used=8 threads=2 target-bitrate={video_bps} keyframe-max-dist={keyframes} \
                   end-usage=cbr error-resilient=default \
               ! queue ! mux. \
             audiotestsrc is-live=true wave=silence \
               ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved \
               ! audiomixer name=amix \
               ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
               ! opusenc bitrate=64000 ! queue ! mux. \
             webmmux name=mux min-cluster-duration=500000000 max-cluster-duration=1000000000 \
               ! filesink name=sink",
            keyframes = fps * 2,
        );
        let pipeline = gst::parse::launch(&description)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| Error::Gst("not a pipeline".into()))?;
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| Error::Gst(format!("no element {name}")))
        };
        by_name("sink")?.set_property("location", path.to_string_lossy().to_string());
        let compositor = by_name("mix")?;
        let audiomixer = by_name("amix")?;
        pipeline.set_state(gst::State::Playing)?;
        Ok(Pipeline {
            pipeline,
            compositor,
            audiomixer,
            format,
            inputs: HashMap::new(),
            order: Vec::new(),
            path: path.to_owned(),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an input track (its RTP follows with [`Pipeline::push_rtp`]); `payload_type` is the
    /// one its packets carry, `screen` shows it large.
    pub fn add_track(
        &mut self,
        id: &str,
        kind: Kind,
        payload_type: u8,
        screen: bool,
    ) -> Result<(), Error> {
        if self.inputs.contains_key(id) {
            return Err(Error::DuplicateTrack(id.to_owned()));
        }
        let caps = match kind {
            Kind::Video => gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("encoding-name", "VP8")
                .field("clock-rate", 90_000i32)
                .field("payload", i32::from(payload_type))
                .build(),
            Kind::Audio => gst::Caps::builder("application/x-rtp")
                .field("media", "audio")
                .field("encoding-name", "OPUS")
                .field("clock-rate", 48_000i32)
                .field("payload", i32::from(payload_type))
                .build(),
        };
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(true)
            // Bounded: a stalled pipeline drops what it cannot take (counted by the caller).
            .max_bytes(4 * 1024 * 1024)
            .block(false)
            .build();
        let jitter = make("rtpjitterbuffer")?;
        jitter.set_property("latency", 200u32);
        let mut elements: Vec<gst::Element> = vec![src.clone().upcast(), jitter];
        match kind {
            Kind::Video => {
                elements.push(make("rtpvp8depay")?);
                elements.push(make("vp8dec")?);
                elements.push(make("videoconvert")?);
            }
            Kind::Audio => {
                elements.push(make("rtpopusdepay")?);
                elements.push(make("opusdec")?);
                elements.push(make("audioconvert")?);
                elements.push(make("audioresample")?);
            }
        }
        elements.push(make("queue")?);
        self.pipeline.add_many(&elements)?;
        gst::Element::link_many(&elements)?;
        let mixer = match kind {
            Kind::Video => &self.compositor,
            Kind::Audio => &self.audiomixer,
        };
        let mixer_pad = mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| Error::Gst("the mixer gave no pad".into()))?;
        // The branch always holds at least its appsrc and queue.
        let last = elements.last().expect("a branch has elements");
        last.static_pad("src")
            .ok_or_else(|| Error::Gst("no src pad".into()))?
            .link(&mixer_pad)
            .map_err(|e| Error::Gst(format!("link to the mixer: {e:?}")))?;
        if kind == Kind::Video {
            mixer_pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        }
        for e in &elements {
            e.sync_state_with_parent()?;
        }
        self.inputs.insert(
            id.to_owned(),
            Input {
                kind,
                src,
                elements,
                mixer_pad,
                screen,
            },
        );
        if kind == Kind::Video {
            self.order.push(id.to_owned());
            self.relayout();
        }
        Ok(())
    }

    /// One RTP packet of a track, as received.
    pub fn push_rtp(&self, id: &str, packet: &[u8]) -> Result<(), Error> {
        let input = self
            .inputs
            .get(id)
            .ok_or_else(|| Error::UnknownTrack(id.to_owned()))?;
        let buffer = gst::Buffer::from_mut_slice(packet.to_vec());
        input
            .src
            .push_buffer(buffer)
            .map(drop)
            .map_err(|e| Error::Gst(format!("push: {e:?}")))
    }

    /// Removes a track: its picture leaves the canvas (the others reflow), its sound the mix.
    pub fn remove_track(&mut self, id: &str) -> Result<(), Error> {
        let input = self
            .inputs
            .remove(id)
            .ok_or_else(|| Error::UnknownTrack(id.to_owned()))?;
        self.order.retain(|t| t != id);
        let mixer = match input.kind {
            Kind::Video => &self.compositor,
            Kind::Audio => &self.audiomixer,
        };
        // Unlinked first, so the mixer stops waiting for it; then the branch stops.
        if let Some(peer) = input.mixer_pad.peer() {
            let _ = peer.unlink(&input.mixer_pad);
        }
        mixer.release_request_pad(&input.mixer_pad);
        for e in &input.elements {
            let _ = e.set_state(gst::State::Null);
        }
        self.pipeline.remove_many(&input.elements)?;
        if input.kind == Kind::Video {
            self.relayout();
        }
        Ok(())
    }

    /// Tracks being recorded.
    pub fn tracks(&self) -> impl Iterator<Item = &str> {
        self.inputs.keys().map(String::as_str)
    }

    fn relayout(&self) {
        let screen = self
            .order
            .iter()
            .position(|id| self.inputs.get(id).is_some_and(|i| i.screen));
        let cells = layout::cells(
            self.order.len(),
            self.format.width,
            self.format.height,
            screen,
        );
        for (id, cell) in self.order.iter().zip(cells) {
            if let Some(input) = self.inputs.get(id) {
                let pad = &input.mixer_pad;
                pad.set_property("xpos", cell.x);
                pad.set_property("ypos", cell.y);
                pad.set_property("width", cell.width);
                pad.set_property("height", cell.height);
            }
        }
    }

    /// Stops: every input ends, EOS flows through so the last second is kept, and the file is
    /// finalised (duration, cues). Waits at most `timeout` for it.
    pub fn stop(mut self, timeout: Duration) -> Result<PathBuf, Error> {
        let ids: Vec<String> = self.inputs.keys().cloned().collect();
        for id in ids {
            self.remove_track(&id)?;
        }
        self.pipeline.send_event(gst::event::Eos::new());
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| Error::Gst("no bus".into()))?;
        let message = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let result = match message.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(self.path.clone()),
            Some(gst::MessageView::Error(e)) => Err(Error::Gst(e.error().to_string())),
            _ => Err(Error::Timeout),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
