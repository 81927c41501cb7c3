//! The live GStreamer pipeline of one recording: RTP in per track, one WebM file out.
//!
//! ```text
//! videotestsrc (black, live) ─┐
//! appsrc ─ rtpjitterbuffer ─ rtpvp8depay ─ vp8dec ─ videoconvert ─ queue ─┤ compositor ─ queue (leaky) ─ vp8enc ─┐
//!                                                                          …                                     ├ webmmux ─ filesink
//! audiotestsrc (silence, live) ─┐                                                                                │
//! appsrc ─ rtpjitterbuffer ─ rtpopusdepay ─ opusdec ─ audioconvert ─ audioresample ─ queue ─┤ audiomixer ─ opusenc ─┘
//! ```
//!
//! The live black and silent sources keep both mixers producing whoever publishes or not: a late
//! joiner is mixed from its first sample and silence never stalls the audio. The compositor's
//! layout ([`crate::layout`]) is applied frame by frame to the pictures the compositor actually
//! shows (a joiner's cell opens with its first picture, a leaver's closes after its last). Matroska
//! writes a cluster at least every second, so a file whose process died is playable up to there;
//! a recording that stops normally ends with EOS, which finalises the file with its duration and
//! cues (seeking).
//!
//! **Timing.** Every packet is pushed with its presentation time on the pipeline's running-time
//! axis ([`Pipeline::push_rtp_at`]; [`crate::sync`] computes it from the sender reports, so audio
//! and video of one person line up whatever the network did). The jitter buffer reorders packets
//! and skips lost ones but computes timestamps of its own whatever its mode (`none` counts the
//! RTP time from zero, `synced` from the first packet's time, `slave` follows the arrivals), so
//! the time given rides past it in a reference-timestamp meta and is put back on its output
//! (the packet's arrival, as its DTS, is what the jitter buffer times its waits by). The mixers run [`LATENCY`]
//! behind the clock, which is how late (after its presentation time) a packet may arrive and
//! still be mixed: the extra network delay of the slower track of a publisher, jitter, decoding.
//!
//! **Under load** the encoder's input queue drops frames rather than holding the compositor back,
//! so the recording keeps its real duration when the machine cannot encode every frame. A track
//! that leaves gets EOS and is released once the mixer took its last data (or after
//! [`DRAIN_TIMEOUT`] if its branch is stuck), on a thread of its own: [`Pipeline::remove_track`]
//! never blocks. [`Pipeline::stop`] never blocks longer than its timeout: the EOS, the wait and
//! the teardown run on a thread of their own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_base as gst_base;
use gstreamer_base::prelude::*;

use crate::layout::{self, Rect};

/// How far behind the clock the mixers run: how late a packet may arrive (after its presentation
/// time) and still make it into the file.
pub const LATENCY: Duration = Duration::from_millis(500);

/// The Opus encoder's delay (its pre-skip, 312 samples at 48 kHz: 6.5 ms), rounded up to the
/// file's millisecond ticks, by which the sound is written later than the pictures.
///
/// Matroska players subtract the track's `CodecDelay` from every Opus block's time. Written as
/// the encoder timed them, the first sound would start at -6.5 ms (-7 ms in ticks), before the
/// first picture (0): the file's start time is then the sound's, and Chromium's FFmpegDemuxer,
/// which seeks to the start time when playback starts, seeks in the sound track (its video
/// starts after the seek time), where it finds no keyframe (audio blocks are not flagged as
/// such) and fails: `PIPELINE_ERROR_READ: FFmpegDemuxer: demuxer seek failed`. Shifted by the
/// delay, the decoded sound starts with the pictures (at 0, within half a millisecond) and is
/// where it was captured, as the sync needs.
pub const OPUS_CODEC_DELAY: Duration = Duration::from_millis(7);

/// How long the jitter buffer waits for a missing packet (ms).
const JITTER_LATENCY_MS: u32 = 200;

/// How long a track that left may take to deliver its last data to the mixer before its branch
/// is released anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The reference-timestamp meta that carries a packet's presentation time past the jitter buffer.
const PTS_META: &str = "timestamp/x-recorder-pts";

/// Element names of input branches start with this (their errors are not fatal).
const BRANCH_PREFIX: &str = "in";

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
}

/// A picture on the canvas.
struct Picture {
    /// Its track.
    id: String,
    pad: gst::Pad,
    /// Shown large (a shared screen).
    screen: bool,
    /// The cell last given to its pad.
    cell: Option<Rect>,
}

/// The pictures in the order they were added (the layout's order), shared with the compositor's
/// thread, which lays out before each frame those that have a picture to show.
struct Canvas {
    width: i32,
    height: i32,
    pictures: Vec<Picture>,
    /// The track of whoever speaks now (shown large among three or more pictures).
    speaker: Option<String>,
}

/// Fewest pictures on the canvas for the active speaker to be shown large (two people share it
/// evenly).
pub const SPEAKER_LARGE_FROM: usize = 3;

impl Canvas {
    fn lay_out(&mut self, shown: impl Fn(&gst::Pad) -> bool) {
        let visible: Vec<usize> = (0..self.pictures.len())
            .filter(|&i| shown(&self.pictures[i].pad))
            .collect();
        // A shared screen is large; else the active speaker, among enough people.
        let large = visible
            .iter()
            .position(|&i| self.pictures[i].screen)
            .or_else(|| {
                let speaker = self.speaker.as_deref()?;
                (visible.len() >= SPEAKER_LARGE_FROM)
                    .then(|| visible.iter().position(|&i| self.pictures[i].id == speaker))
                    .flatten()
            });
        let cells = layout::cells(visible.len(), self.width, self.height, large);
        for (i, p) in self.pictures.iter_mut().enumerate() {
            let cell = visible.iter().position(|&v| v == i).map(|k| cells[k]);
            if cell != p.cell {
                if let Some(c) = cell {
                    p.pad.set_property("xpos", c.x);
                    p.pad.set_property("ypos", c.y);
                    p.pad.set_property("width", c.width);
                    p.pad.set_property("height", c.height);
                }
                p.cell = cell;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One recording in progress.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    audiomixer: gst::Element,
    canvas: Arc<Mutex<Canvas>>,
    /// The title drawn on the background, shown while no picture is recorded.
    title: gst::Element,
    /// Inputs by track id.
    inputs: HashMap<String, Input>,
    path: PathBuf,
    pts_caps: gst::Caps,
    branches: u32,
    stopped: bool,
}

fn make(factory: &str, name: String) -> Result<gst::Element, Error> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|e| Error::Gst(format!("{factory}: {e}")))
}

/// The running time of a pipeline now.
fn running_time(pipeline: &gst::Pipeline) -> Duration {
    let now = match pipeline.clock() {
        Some(clock) => clock.time(),
        None => gst::SystemClock::obtain().time(),
    };
    let base = pipeline.base_time().unwrap_or(gst::ClockTime::ZERO);
    Duration::from_nanos(now.saturating_sub(base).nseconds())
}

fn clock_time(d: Duration) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Puts the presentation time given to a packet back on it (the jitter buffer set its own).
fn restore_pts(buffer: &mut gst::BufferRef) {
    let pts = buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == PTS_META)
        })
        .map(|m| m.timestamp());
    if let Some(pts) = pts {
        buffer.set_pts(pts);
        buffer.set_dts(gst::ClockTime::NONE);
    }
}

/// Takes an input off its mixer (the mixer no longer waits for it).
fn unhook(mixer: &gst::Element, canvas: &Mutex<Canvas>, input: &Input) {
    if input.kind == Kind::Video {
        lock(canvas).pictures.retain(|p| p.pad != input.mixer_pad);
    }
    if let Some(peer) = input.mixer_pad.peer() {
        let _ = peer.unlink(&input.mixer_pad);
    }
    mixer.release_request_pad(&input.mixer_pad);
}

/// Takes an input branch out of the pipeline: off the mixer, stopped, removed. May block on a
/// stuck branch: never on a caller's thread.
fn detach(pipeline: &gst::Pipeline, mixer: &gst::Element, canvas: &Mutex<Canvas>, input: Input) {
    unhook(mixer, canvas, &input);
    for e in &input.elements {
        let _ = e.set_state(gst::State::Null);
    }
    let _ = pipeline.remove_many(&input.elements);
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
        let latency = LATENCY.as_nanos();
        let font = (height / 12).max(8);
        let description = format!(
            "videotestsrc is-live=true pattern=black \
               ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
               ! textoverlay name=title text=\"\" valignment=center halignment=center \
                   font-desc=\"Sans {font}\" shaded-background=false \
               ! compositor name=mix background=black latency={latency} emit-signals=true \
               ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1,colorimetry=bt601,chroma-site=jpeg \
               ! queue leaky=downstream max-size-buffers={fps} max-size-bytes=0 max-size-time=0 \
               ! vp8enc deadline=1 cpu-used=8 threads=2 lag-in-frames=0 target-bitrate={video_bps} \
                   keyframe-max-dist={keyframes} end-usage=cbr error-resilient=default \
               ! queue ! mux. \
             audiotestsrc is-live=true wave=silence \
               ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved \
               ! audiomixer name=amix latency={latency} \
               ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
               ! opusenc bitrate=64000 ! queue name=aq ! mux. \
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
        let title = by_name("title")?;
        // See [`OPUS_CODEC_DELAY`]: the sound is written that much later than the pictures.
        by_name("aq")?
            .static_pad("src")
            .ok_or_else(|| Error::Gst("no src pad".into()))?
            .set_offset(OPUS_CODEC_DELAY.as_nanos() as i64);
        let canvas = Arc::new(Mutex::new(Canvas {
            width,
            height,
            pictures: Vec::new(),
            speaker: None,
        }));
        {
            let canvas = Arc::clone(&canvas);
            compositor
                .downcast_ref::<gst_base::Aggregator>()
                .ok_or_else(|| Error::Gst("the compositor is no aggregator".into()))?
                .connect_samples_selected(move |agg, _, _, _, _, _| {
                    lock(&canvas).lay_out(|pad| {
                        pad.downcast_ref::<gst_base::AggregatorPad>()
                            .is_some_and(|p| agg.peek_next_sample(p).is_some())
                    });
                });
        }
        // Only the end and errors are read from the bus (at stop); an input branch's error (a
        // publisher's broken stream) ends that input, not the recording.
        pipeline
            .bus()
            .ok_or_else(|| Error::Gst("no bus".into()))?
            .set_sync_handler(|_, message| {
                let from_branch = message
                    .src()
                    .is_some_and(|s| s.name().starts_with(BRANCH_PREFIX));
                match message.view() {
                    gst::MessageView::Eos(_) => gst::BusSyncReply::Pass,
                    gst::MessageView::Error(e) if !from_branch => {
                        tracing::warn!(error = %e.error(), debug = ?e.debug(), "recording pipeline error");
                        gst::BusSyncReply::Pass
                    }
                    gst::MessageView::Error(e) => {
                        tracing::warn!(error = %e.error(), "a recording input failed");
                        gst::BusSyncReply::Drop
                    }
                    _ => gst::BusSyncReply::Drop,
                }
            });
        pipeline.set_state(gst::State::Playing)?;
        Ok(Pipeline {
            pipeline,
            compositor,
            audiomixer,
            canvas,
            title,
            inputs: HashMap::new(),
            path: path.to_owned(),
            pts_caps: gst::Caps::new_empty_simple(PTS_META),
            branches: 0,
            stopped: false,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pipeline's running time now: the axis of presentation times.
    pub fn running_time(&self) -> Duration {
        running_time(&self.pipeline)
    }

    /// A clock reading the pipeline's running time, to keep apart from the pipeline.
    pub fn running_clock(&self) -> impl Fn() -> Duration + Send + 'static {
        let pipeline = self.pipeline.clone();
        move || running_time(&pipeline)
    }

    /// The GStreamer pipeline, for tests and benchmarks that look inside.
    #[doc(hidden)]
    pub fn gst_pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Adds an input track (its RTP follows with [`Pipeline::push_rtp_at`]); `payload_type` is
    /// the one its packets carry, `screen` shows it large.
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
        self.branches += 1;
        let prefix = format!("{BRANCH_PREFIX}{}", self.branches);
        let name = |role: &str| format!("{prefix}-{role}");
        let src = gst_app::AppSrc::builder()
            .name(name("src"))
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            // Bounded: a stalled pipeline drops what it cannot take (counted by the caller).
            .max_bytes(4 * 1024 * 1024)
            .block(false)
            .build();
        let jitter = make("rtpjitterbuffer", name("jitter"))?;
        jitter.set_property("latency", JITTER_LATENCY_MS);
        jitter
            .static_pad("src")
            .ok_or_else(|| Error::Gst("no src pad".into()))?
            .add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                |_, info| {
                    match &mut info.data {
                        Some(gst::PadProbeData::Buffer(buffer)) => restore_pts(buffer.make_mut()),
                        Some(gst::PadProbeData::BufferList(list)) => {
                            list.make_mut().foreach_mut(|mut buffer, _| {
                                restore_pts(buffer.make_mut());
                                std::ops::ControlFlow::Continue(Some(buffer))
                            });
                        }
                        _ => {}
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        let mut elements: Vec<gst::Element> = vec![src.clone().upcast(), jitter];
        match kind {
            Kind::Video => {
                elements.push(make("rtpvp8depay", name("depay"))?);
                elements.push(make("vp8dec", name("dec"))?);
                elements.push(make("videoconvert", name("convert"))?);
            }
            Kind::Audio => {
                elements.push(make("rtpopusdepay", name("depay"))?);
                elements.push(make("opusdec", name("dec"))?);
                elements.push(make("audioconvert", name("convert"))?);
                elements.push(make("audioresample", name("resample"))?);
            }
        }
        // Holds what waits for the mixer (up to its latency) without blocking the decoder.
        let queue = make("queue", name("queue"))?;
        queue.set_property("max-size-buffers", 0u32);
        queue.set_property("max-size-bytes", 0u32);
        queue.set_property("max-size-time", 3 * LATENCY.as_nanos() as u64);
        elements.push(queue);
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
            lock(&self.canvas).pictures.push(Picture {
                id: id.to_owned(),
                pad: mixer_pad.clone(),
                screen,
                cell: None,
            });
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
            },
        );
        self.show_title_if_empty();
        Ok(())
    }

    /// One RTP packet of a track, as received, timed by its arrival (now).
    pub fn push_rtp(&self, id: &str, packet: &[u8]) -> Result<(), Error> {
        self.push_rtp_at(id, packet, self.running_time())
    }

    /// One RTP packet of a track and its presentation time (running time, see [`crate::sync`]).
    pub fn push_rtp_at(&self, id: &str, packet: &[u8], pts: Duration) -> Result<(), Error> {
        let input = self
            .inputs
            .get(id)
            .ok_or_else(|| Error::UnknownTrack(id.to_owned()))?;
        let mut buffer = gst::Buffer::from_mut_slice(packet.to_vec());
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            let pts = clock_time(pts);
            buffer.set_pts(pts);
            // The arrival, which the jitter buffer times its waits for missing packets by.
            buffer.set_dts(clock_time(self.running_time()));
            gst::ReferenceTimestampMeta::add(buffer, &self.pts_caps, pts, gst::ClockTime::NONE);
        }
        input
            .src
            .push_buffer(buffer)
            .map(drop)
            .map_err(|e| Error::Gst(format!("push: {e:?}")))
    }

    /// Removes a track: it ends (what it sent so far is still mixed), then its picture leaves
    /// the canvas (the others reflow) and its sound the mix. Never blocks: the branch is released
    /// on a thread of its own once the mixer took its last data, or after [`DRAIN_TIMEOUT`].
    pub fn remove_track(&mut self, id: &str) -> Result<(), Error> {
        let input = self
            .inputs
            .remove(id)
            .ok_or_else(|| Error::UnknownTrack(id.to_owned()))?;
        self.show_title_if_empty();
        let _ = input.src.end_of_stream();
        let pipeline = self.pipeline.clone();
        let mixer = match input.kind {
            Kind::Video => self.compositor.clone(),
            Kind::Audio => self.audiomixer.clone(),
        };
        let canvas = Arc::clone(&self.canvas);
        std::thread::Builder::new()
            .name("recorder-drain".into())
            .spawn(move || {
                let pad = input.mixer_pad.downcast_ref::<gst_base::AggregatorPad>();
                let deadline = Instant::now() + DRAIN_TIMEOUT;
                while Instant::now() < deadline && !pad.is_some_and(|p| p.is_eos()) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                detach(&pipeline, &mixer, &canvas, input);
            })
            .map_err(|e| Error::Gst(format!("a thread: {e}")))?;
        Ok(())
    }

    /// The video track of whoever speaks now (`None`: nobody): shown large while three or more
    /// pictures are on the canvas and no screen is shared. Takes effect from the next frame.
    pub fn set_speaker(&self, track: Option<&str>) {
        lock(&self.canvas).speaker = track.map(str::to_owned);
    }

    /// The cell of a track's picture in the last frame laid out (for tests and diagnostics).
    pub fn cell_of(&self, track: &str) -> Option<Rect> {
        lock(&self.canvas)
            .pictures
            .iter()
            .find(|p| p.id == track)
            .and_then(|p| p.cell)
    }

    /// The text on the background (the class title), shown while nobody's picture is recorded.
    pub fn set_title(&self, title: &str) {
        self.title.set_property("text", title);
    }

    /// Shows the title only on an empty canvas.
    fn show_title_if_empty(&self) {
        let pictures = self.inputs.values().any(|i| matches!(i.kind, Kind::Video));
        self.title.set_property("silent", pictures);
    }

    /// Tracks being recorded.
    pub fn tracks(&self) -> impl Iterator<Item = &str> {
        self.inputs.keys().map(String::as_str)
    }

    /// Stops: every input ends, EOS flows through so the last second is kept, and the file is
    /// finalised (duration, cues), ending at the stop. Returns within `timeout` whatever state
    /// the pipeline is in: an input that cannot finish is cut off after [`DRAIN_TIMEOUT`] plus
    /// [`LATENCY`] (at most half the timeout) so the file still gets finalised; past the timeout
    /// the teardown goes on in the background ([`Error::Timeout`]).
    pub fn stop(mut self, timeout: Duration) -> Result<PathBuf, Error> {
        let deadline = Instant::now() + timeout;
        self.stopped = true;
        let pipeline = self.pipeline.clone();
        let (compositor, audiomixer) = (self.compositor.clone(), self.audiomixer.clone());
        let canvas = Arc::clone(&self.canvas);
        let inputs: Vec<Input> = self.inputs.drain().map(|(_, i)| i).collect();
        let path = self.path.clone();
        let (tx, rx) = mpsc::channel::<Option<Result<PathBuf, Error>>>();
        std::thread::Builder::new()
            .name("recorder-stop".into())
            .spawn(move || {
                let wait = |until: Instant| -> Option<Result<PathBuf, Error>> {
                    let bus = pipeline.bus()?;
                    let left = until.saturating_duration_since(Instant::now());
                    let message = bus.timed_pop_filtered(
                        clock_time(left),
                        &[gst::MessageType::Eos, gst::MessageType::Error],
                    )?;
                    Some(match message.view() {
                        gst::MessageView::Error(e) => Err(Error::Gst(e.error().to_string())),
                        _ => Ok(path.clone()),
                    })
                };
                // Nothing after the stop makes it into the file, whatever an input still holds.
                let end = clock_time(running_time(&pipeline));
                for mixer in [&compositor, &audiomixer] {
                    if let Some(pad) = mixer.static_pad("src") {
                        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                            match info.buffer().and_then(|b| b.pts()) {
                                Some(pts) if pts >= end => gst::PadProbeReturn::Drop,
                                _ => gst::PadProbeReturn::Ok,
                            }
                        });
                    }
                }
                // EOS from every source: the base sources and every input's appsrc.
                pipeline.send_event(gst::event::Eos::new());
                let cut_off = Instant::now()
                    + (DRAIN_TIMEOUT + LATENCY)
                        .min(deadline.saturating_duration_since(Instant::now()) / 2);
                let mut result = wait(cut_off);
                if result.is_none() {
                    // Off the mixers only: stopping a stuck branch would block here.
                    tracing::warn!("a recording input did not finish: cut off");
                    for input in &inputs {
                        let mixer = match input.kind {
                            Kind::Video => &compositor,
                            Kind::Audio => &audiomixer,
                        };
                        unhook(mixer, &canvas, input);
                    }
                    result = wait(deadline);
                }
                // The file is final at EOS (the sink flushed it); stopping closes it.
                let _ = tx.send(Some(result.unwrap_or(Err(Error::Timeout))));
                let _ = pipeline.set_state(gst::State::Null);
                let _ = tx.send(None);
            })
            .map_err(|e| Error::Gst(format!("a thread: {e}")))?;
        let left = || deadline.saturating_duration_since(Instant::now());
        let result = match rx.recv_timeout(left()) {
            Ok(Some(result)) => result,
            _ => return Err(Error::Timeout),
        };
        // Closed, or still closing in the background after a while: the file is final either way.
        if rx.recv_timeout(left().min(Duration::from_secs(2))).is_err() {
            tracing::warn!("the recording pipeline did not stop in time");
        }
        result
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.stopped {
            // Off this thread: a stuck element must not hang whoever drops a recording.
            let pipeline = self.pipeline.clone();
            let _ = std::thread::Builder::new()
                .name("recorder-drop".into())
                .spawn(move || {
                    let _ = pipeline.set_state(gst::State::Null);
                });
        }
    }
}
