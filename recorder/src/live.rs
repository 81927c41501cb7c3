//! Records a room from the SFU's in-process consumer ([`sfu::Sfu::local_consumer`]): every
//! track published in the room becomes an input of the [`Pipeline`], its packets are fed as they
//! come, timed from the publishers' sender reports ([`crate::sync`]), and it leaves the picture
//! when it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rtc::shared::marshal::Marshal;
use sfu::{LocalConsumer, LocalItem, TrackKey};
use tokio::sync::{oneshot, watch};

use crate::pipeline::{Error, Kind, Pipeline};
use crate::sync::Sync;

/// How long a stop waits for the file to be finalised.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How packets are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timing {
    /// From the RTP timestamps and the publishers' sender reports ([`crate::sync`]): audio and
    /// video of one person together, whatever the network does to each.
    #[default]
    SenderReports,
    /// By arrival, as received (off by whatever the network delays one track more than the
    /// other): for comparison.
    Arrival,
}

/// Applies a consumer's items to a recording.
pub struct Feeder {
    pipeline: Pipeline,
    /// Tells whether a track is a shared screen (shown large).
    is_screen: Box<dyn Fn(&TrackKey) -> bool + Send>,
    /// Arrival times: the pipeline's running time, unless a test gives another clock.
    clock: Box<dyn Fn() -> Duration + Send>,
    sync: Sync,
    timing: Timing,
    /// Who speaks now (a publisher's peer id), as the room says; followed as items come.
    speaker: Option<watch::Receiver<Option<u64>>>,
    /// The speaker last applied.
    current_speaker: Option<u64>,
    /// Each publisher's camera track (not a shared screen).
    cameras: HashMap<u64, String>,
    /// Packets fed.
    pub packets: u64,
    /// Sender reports applied.
    pub reports: u64,
    /// Items that could not be applied (a packet of a track the pipeline refused): counted,
    /// never fatal.
    pub refused: u64,
}

impl Feeder {
    pub fn new(
        pipeline: Pipeline,
        is_screen: impl Fn(&TrackKey) -> bool + Send + 'static,
    ) -> Feeder {
        let clock = Box::new(pipeline.running_clock());
        Feeder {
            pipeline,
            is_screen: Box::new(is_screen),
            clock,
            sync: Sync::new(),
            timing: Timing::default(),
            speaker: None,
            current_speaker: None,
            cameras: HashMap::new(),
            packets: 0,
            reports: 0,
            refused: 0,
        }
    }

    /// Takes arrival times from `clock` (running time of the pipeline) instead of the pipeline's
    /// clock.
    pub fn with_clock(mut self, clock: impl Fn() -> Duration + Send + 'static) -> Feeder {
        self.clock = Box::new(clock);
        self
    }

    /// Follows who speaks (a publisher's peer id): their camera is shown large among three or
    /// more pictures.
    pub fn with_speaker(mut self, speaker: watch::Receiver<Option<u64>>) -> Feeder {
        self.speaker = Some(speaker);
        self
    }

    /// Shows the current speaker's camera large (when the room's speaker changed, or their
    /// camera came).
    fn follow_speaker(&mut self, camera_added: bool) {
        let changed = self
            .speaker
            .as_mut()
            .is_some_and(|rx| rx.has_changed().unwrap_or(false));
        if changed && let Some(rx) = self.speaker.as_mut() {
            self.current_speaker = *rx.borrow_and_update();
        } else if !camera_added {
            return;
        }
        let track = self
            .current_speaker
            .and_then(|peer| self.cameras.get(&peer))
            .map(String::as_str);
        self.pipeline.set_speaker(track);
    }

    /// Times packets another way.
    pub fn with_timing(mut self, timing: Timing) -> Feeder {
        self.timing = timing;
        self
    }

    /// Applies one item.
    pub fn apply(&mut self, item: LocalItem) {
        self.follow_speaker(false);
        let done = match item {
            LocalItem::TrackAdded {
                track,
                video,
                payload_type,
                clock_rate,
                publisher,
                ..
            } => {
                let kind = if video { Kind::Video } else { Kind::Audio };
                let screen = video && (self.is_screen)(&track);
                let id = track.msid_track();
                let added = self.pipeline.add_track(&id, kind, payload_type, screen);
                if added.is_ok() {
                    self.sync.add_track(&id, publisher.as_u64(), clock_rate);
                    if video && !screen {
                        self.cameras.insert(track.peer.as_u64(), id);
                        self.follow_speaker(true);
                    }
                }
                added
            }
            LocalItem::Rtp { track, packet } => match packet.marshal() {
                Ok(bytes) => {
                    let id = track.msid_track();
                    let arrival = (self.clock)();
                    let pts = match self.timing {
                        Timing::SenderReports => {
                            self.sync.packet(&id, packet.header.timestamp, arrival)
                        }
                        Timing::Arrival => Some(arrival),
                    };
                    match pts {
                        Some(pts) => {
                            self.packets += 1;
                            self.pipeline.push_rtp_at(&id, &bytes, pts)
                        }
                        None => Err(Error::UnknownTrack(id)),
                    }
                }
                Err(e) => Err(Error::Gst(format!("marshal: {e}"))),
            },
            LocalItem::SenderReport {
                track,
                ntp_time,
                rtp_time,
            } => {
                let id = track.msid_track();
                if self.sync.sender_report(&id, ntp_time, rtp_time) {
                    self.reports += 1;
                    Ok(())
                } else {
                    Err(Error::UnknownTrack(id))
                }
            }
            LocalItem::TrackRemoved { track } => {
                let id = track.msid_track();
                self.sync.remove_track(&id);
                self.cameras.retain(|_, camera| *camera != id);
                self.pipeline.remove_track(&id)
            }
            // Whatever the SFU adds later.
            _ => Ok(()),
        };
        if let Err(e) = done {
            self.refused += 1;
            if self.refused.is_power_of_two() {
                tracing::debug!(error = %e, refused = self.refused, "recording input refused");
            }
        }
    }

    /// The recording being fed.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
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
