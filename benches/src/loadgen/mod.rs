//! `loadgen`: simulated publishers and subscribers in live sessions, joined through the
//! product's own GraphQL API and signaling, against a gateway it starts or one at `--url`.
//!
//! Each participant is its own account (a user who joins twice is one participant) with an API
//! token; publishers get the speaker role from the host. Publishers send synthetic VP8 (three
//! simulcast layers or one) and Opus; subscribers count what arrives. Figures come from the
//! gateway's `/metrics` (forwarded packets), from the subscribers (received packets, sequence
//! gaps, NACKs, join and first-frame times), and for a local gateway from `/proc/<pid>`.

pub mod api;
pub mod local;
pub mod media;
pub mod peer;
pub mod run;
pub mod stats;
