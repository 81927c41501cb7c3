//! What a recorded file holds, read back from the file itself: how long it plays. Used for a
//! recording cut short by a crash, whose file was never finalised (no duration in its header).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::pipeline::Error;

/// How long a WebM file plays: from its first frame to the end of its last, over all its streams. The file is
/// demultiplexed to its end (nothing is decoded); a file cut off mid-cluster counts up to its
/// last whole frame. Gives up after `timeout`.
pub fn duration(path: &Path, timeout: Duration) -> Result<Duration, Error> {
    gst::init()?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()?;
    let demux = gst::ElementFactory::make("matroskademux").build()?;
    pipeline.add_many([&src, &demux])?;
    src.link(&demux)?;
    // The first and last instants of any frame: a recording's timeline need not start at 0.
    let span = Arc::new(Mutex::new(None::<(gst::ClockTime, gst::ClockTime)>));
    {
        let (pipeline, span) = (pipeline.downgrade(), Arc::clone(&span));
        demux.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            let Ok(sink) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
            else {
                return;
            };
            if pipeline.add(&sink).is_err() {
                return;
            }
            let _ = sink.sync_state_with_parent();
            if let Some(sink_pad) = sink.static_pad("sink") {
                let _ = pad.link(&sink_pad);
            }
            let span = Arc::clone(&span);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer()
                    && let Some(pts) = buffer.pts()
                {
                    let stop = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
                    let mut span = span.lock().unwrap_or_else(|p| p.into_inner());
                    *span = Some(match *span {
                        None => (pts, stop),
                        Some((first, last)) => (first.min(pts), last.max(stop)),
                    });
                }
                gst::PadProbeReturn::Ok
            });
        });
    }
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| Error::Gst("a pipeline without a bus".into()))?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(e) => Err(Error::Gst(e.error().to_string())),
            _ => Ok(()),
        },
        None => Err(Error::Timeout),
    };
    let _ = pipeline.set_state(gst::State::Null);
    let span = *span.lock().unwrap_or_else(|p| p.into_inner());
    let played = span.map(|(first, last)| Duration::from_nanos((last - first).nseconds()));
    match (result, played) {
        (Ok(()), played) => Ok(played.unwrap_or(Duration::ZERO)),
        // A file cut off mid-cluster may end in a parse error: what came before it counts.
        (Err(Error::Gst(_)), Some(played)) => Ok(played),
        (Err(e), _) => Err(e),
    }
}
