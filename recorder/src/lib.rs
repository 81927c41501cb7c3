//! Recording of live sessions into one mixed video file.
//!
//! - [`pipeline`]: the live GStreamer pipeline of one recording: RTP in per published track
//!   (VP8, Opus), a compositor whose grid reflows as publishers come and go, an audio mix over a
//!   live silent base, one WebM file out, finalised on stop.
//! - [`sync`]: A/V synchronisation: each packet's presentation time from its RTP timestamp and
//!   its publisher's sender reports (pure).
//! - [`layout`]: where each picture goes on the canvas (pure).
//! - [`live`]: feeds a recording from the SFU's in-process consumer of a room.
//! - [`probe`]: how long a recorded file plays, read from the file (for files a crash cut short).
//! - [`journal`]: the media node's durable job list (SQLite): one row per recording, from the
//!   spool file being written to its verified copy in the object store; recovers after a crash.
//! - [`upload`]: uploads finished spool files to the object store (multipart, verified by size
//!   and SHA-256 read back, retried with backoff) and deletes them only once verified.

pub mod journal;
pub mod layout;
pub mod live;
pub mod pipeline;
pub mod probe;
pub mod sync;
pub mod upload;
