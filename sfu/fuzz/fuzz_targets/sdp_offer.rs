//! Arbitrary bytes as a peer's SDP offer: checked, joined with, renegotiated with, on a shard's
//! engine without sockets (`sfu::fuzz::sdp_offer`). No panic, an answer or a refusal within a
//! time bound, and a refused renegotiation leaves the connection negotiating.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sfu::fuzz::sdp_offer(data);
});
