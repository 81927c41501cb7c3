//! The forwarding rig (`sfu::bench::ForwardingRig`) fed for a while, to run under a heap
//! profiler: `heaptrack target/release/examples/rig_profile 10 20000`, then `heaptrack_print`
//! on its output lists the allocation sites of the engine's per-packet work (and, at join, of
//! each subscriber's state).

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let mut rig = sfu::bench::ForwardingRig::new(subscribers);
    for i in 0..packets {
        let datagrams = rig.prepare();
        rig.feed(&datagrams);
        if i % 100 == 99 {
            rig.maintain();
        }
    }
    println!(
        "{subscribers} subscribers, {packets} packets in, {} forwarded",
        rig.forwarded()
    );
}
