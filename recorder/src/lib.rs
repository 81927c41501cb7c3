//! Recording of live sessions into one mixed video file.
//!
//! - [`pipeline`]: the live GStreamer pipeline of one recording: RTP in per published track
//!   (VP8, Opus), a compositor whose grid reflows as publishers come and go, an audio mix over a
//!   live silent base, one WebM file out, finalised on stop.
//! - [`layout`]: where each picture goes on the canvas (pure).
//! - [`live`]: feeds a recording from the SFU's in-process consumer of a room.
//!
//! Still to come (issue 14): A/V sync from the publishers' sender reports, the spool and the
//! upload journal, the API, VOD.

pub mod layout;
pub mod live;
pub mod pipeline;
