//! Arbitrary datagrams (STUN, DTLS, RTP, RTCP, junk; over UDP from the peer or a stranger, or an
//! ICE-TCP stream) into a shard's engine with one joined peer (`sfu::fuzz::datagrams`). No
//! panic, each handled within a time bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sfu::fuzz::datagrams(data);
});
