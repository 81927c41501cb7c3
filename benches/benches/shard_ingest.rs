//! Cost of getting a datagram into a shard: loopback `send_to` plus the shard's receive and
//! accounting, per 1200-byte datagram (the size of a video RTP packet).
//!
//! This is the floor every forwarded packet pays on the receive side before any SFU logic runs.

use std::hint::black_box;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu::{Sfu, SfuConfig};

/// Datagrams per measured batch: 64 x 1200 B stays well inside a default socket receive buffer, so
/// the kernel does not drop any while the shard catches up.
const BATCH: u64 = 64;

fn shard_ingest(c: &mut Criterion) {
    let sfu = Sfu::start(SfuConfig::default()).expect("start one shard");
    let target = sfu.shards()[0].local_addr;
    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    let packet = [0x80u8; 1200];

    let mut group = c.benchmark_group("shard_ingest");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("1200B datagrams, send + receive + count", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = sfu.shards()[0].stats.packets_received;
                let start = Instant::now();
                for _ in 0..BATCH {
                    client.send_to(black_box(&packet), target).expect("send");
                }
                // The shard thread runs concurrently; the batch is done when it has counted it all.
                // Should the kernel drop some anyway, give up after a stall instead of hanging.
                let deadline = Instant::now() + Duration::from_secs(1);
                while sfu.shards()[0].stats.packets_received < before + BATCH {
                    assert!(
                        Instant::now() < deadline,
                        "datagrams were dropped by the kernel"
                    );
                    std::hint::spin_loop();
                }
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
    sfu.shutdown();
}

criterion_group!(benches, shard_ingest);
criterion_main!(benches);
