//! Recording of live sessions into one mixed video file.
//!
//! - [`pipeline`]: the live GStreamer pipeline of one recording: RTP in per published track
//!   (VP8, Opus), a compositor whose grid reflows as publishers come and go, an audio mix over a
//!   live silent base, one WebM file out, finalised on stop.
//! - [`layout`]: where each picture goes on the canvas (pure).
//!
//! Still to come (issue 14): feeding it from the SFU's local consumer, A/V sync from the
//! publishers' sender reports, the spool and the upload journal, VOD.

pub mod layout;
pub mod pipeline;
