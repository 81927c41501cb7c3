//! The SFU's decision code: plain structs that take inputs with `now` passed in and return plain
//! values. No I/O, no clock reads, no allocation per packet in steady state. The shard driver feeds
//! them and carries out what they decide.

pub mod allocator;
pub mod bwe;
pub mod forwarder;
pub mod keyframes;
pub mod rate;
pub mod retransmit;
pub mod speaker;
pub mod srtp;
pub mod vp8;
