//! Records a room from the SFU's in-process consumer ([`sfu::Sfu::local_consumer`]): every
//! track published in the room becomes an input of the [`Pipeline`], its packets are fed as they
//! come, and it leaves the picture when it ends.

use std::path::PathBuf;
use std::time::Duration;

use rtc::shared::marshal::Marshal;
use sfu::{LocalConsumer, LocalItem, TrackKey};
use tokio::sync::oneshot;

use crate::pipeline::{Error, Kind, Pipeline};

/// How long a stop waits for the file to be finalised.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies a consumer's items to a recording.
pub struct Feeder {
    pipeline: Pipeline,
    /// Tells whether a track is a shared screen (shown large).
    is_screen: Box<dyn Fn(&TrackKey) -> bool + Send>,
    /// Packets fed.
    pub packets: u64,
    /// Items that could not be applied (a packet of a track the pipeline refused): counted,
    /// never fatal.
    pub refused: u64,
}

impl Feeder {
    pub fn new(
        pipeline: Pipeline,
        is_screen: impl Fn(&TrackKey) -> bool + Send + 'static,
    ) -> Feeder {
        Feeder {
            pipeline,
            is_screen: Box::new(is_screen),
            packets: 0,
            refused: 0,
        }
    }

    /// Applies one item.
    pub fn apply(&mut self, item: LocalItem) {
        let done = match item {
            LocalItem::TrackAdded {
                track,
                video,
                payload_type,
                ..
            } => {
                let kind = if video { Kind::Video } else { Kind::Audio };
                let screen = video && (self.is_screen)(&track);
                self.pipeline
                    .add_track(&track.msid_track(), kind, payload_type, screen)
            }
            LocalItem::Rtp { track, packet } => match packet.marshal() {
                Ok(bytes) => {
                    self.packets += 1;
                    self.pipeline.push_rtp(&track.msid_track(), &bytes)
                }
                Err(e) => Err(Error::Gst(format!("marshal: {e}"))),
            },
            LocalItem::TrackRemoved { track } => self.pipeline.remove_track(&track.msid_track()),
            // Sender reports (A/V synchronisation is still to come: the pipeline times packets
            // by arrival), and whatever the SFU adds later.
            _ => Ok(()),
        };
        if let Err(e) = done {
            self.refused += 1;
            if self.refused.is_power_of_two() {
                tracing::debug!(error = %e, refused = self.refused, "recording input refused");
            }
        }
    }

    /// Ends the recording: the file is finalised. Blocking (up to [`FINISH_TIMEOUT`]).
    pub fn finish(self) -> Result<PathBuf, Error> {
        self.pipeline.stop(FINISH_TIMEOUT)
    }
}

/// Records what `consumer` delivers until `stop` fires (or is dropped) or the SFU ends the
/// consumer, then finalises the file and returns its path.
pub async fn record(
    mut consumer: LocalConsumer,
    mut feeder: Feeder,
    mut stop: oneshot::Receiver<()>,
) -> Result<PathBuf, Error> {
    loop {
        tokio::select! {
            item = consumer.recv() => match item {
                Some(item) => feeder.apply(item),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    let consumer_dropped = consumer.dropped();
    drop(consumer);
    tracing::info!(
        packets = feeder.packets,
        refused = feeder.refused,
        dropped = consumer_dropped,
        "recording stops"
    );
    tokio::task::spawn_blocking(move || feeder.finish())
        .await
        .map_err(|e| Error::Gst(format!("the recording task failed: {e}")))?
}
