//! Recording of live sessions into one mixed video file.
//!
//! This crate will own the GStreamer compositor pipeline (one input per published track, a live silent
//! audio base, a layout that reflows as people join and leave), the crash-safe local spool and the job
//! journal that uploads finished files to object storage. It knows the `sfu` handle and
//! `object_store`, never GraphQL. Nothing is implemented here yet: recording is its own issue.
