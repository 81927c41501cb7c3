//! The SFU engine's per-packet forwarding work for a 1 -> N fan-out, without sockets: the
//! production engine (`sfu::bench::ForwardingRig`: one publisher and N subscribers, real
//! webrtc-rs peers on an in-memory network) is handed one publisher datagram at a time and does
//! what a shard does with it: SRTP-decrypt, route, decide per consumer (forwarder), rewrite,
//! seal (the SFU's own SRTP) and hand out a datagram per subscriber. Only that work is timed (the publisher's
//! encryption and the network upkeep are not). Also simulcast layer selection (three layers into
//! consumers on different layers) and the bandwidth allocation for one subscriber.
//!
//! A counting allocator reports heap allocations per forwarded packet in steady state, in the
//! engine's work alone. And the SFU's own SRTP sealing of one packet, per profile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sfu::bench::ForwardingRig;
use sfu::media::allocator::{self, Need};
use sfu::media::forwarder::{Decision, Forwarder, PacketInfo, Picture};
use sfu::media::srtp::{MasterKey, Profile, Rollover, SrtpSender};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Publisher packets between two upkeep rounds of the in-memory network (consent checks,
/// feedback), which are not timed.
const UPKEEP_EVERY: u64 = 256;

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_forward_1_to_n");
    for n in [1usize, 10, 100] {
        let mut rig = ForwardingRig::new(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    if i % UPKEEP_EVERY == 0 {
                        rig.maintain();
                    }
                    let packets = rig.prepare();
                    let start = Instant::now();
                    black_box(rig.feed(&packets));
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();

    // Layer selection: each round brings one packet of each of three simulcast layers (a keyframe
    // every 30 rounds) to 9 consumers, 3 on each layer; targets rotate every 90 rounds, so the
    // consumers keep switching on keyframes. Per decision.
    let mut consumers: Vec<Forwarder> = (0..9)
        .map(|i| Forwarder::new(90_000, Some((i % 3) as u8)))
        .collect();
    let mut round = 0u32;
    let mut now = Instant::now();
    let mut group = c.benchmark_group("select_layer");
    group.throughput(Throughput::Elements(27));
    group.bench_function("3_layers_9_consumers", |b| {
        b.iter(|| {
            round = round.wrapping_add(1);
            now += Duration::from_millis(10);
            if round.is_multiple_of(90) {
                for (i, f) in consumers.iter_mut().enumerate() {
                    f.set_target(Some(((i as u32 + round / 90) % 3) as u8));
                }
            }
            let mut forwarded = 0;
            for layer in 0..3u8 {
                let p = PacketInfo {
                    layer,
                    sequence: (round as u16).wrapping_add(u16::from(layer) * 20_000),
                    timestamp: round.wrapping_mul(3000),
                    marker: true,
                    keyframe: round.is_multiple_of(30),
                    temporal_id: None,
                    // Each layer numbers its pictures on its own (renumbered across switches).
                    picture: Some(Picture {
                        id: (round as u16).wrapping_add(u16::from(layer) * 1000) & 0x7fff,
                        wide: true,
                        tl0: Some((round as u8).wrapping_add(layer * 50)),
                    }),
                };
                for f in &mut consumers {
                    if matches!(f.handle(&p, now), Decision::Forward(_)) {
                        forwarded += 1;
                    }
                }
            }
            black_box(forwarded)
        })
    });
    group.finish();

    // The SFU's own SRTP sealing of one forwarded 1200-byte packet, in place (what every
    // forwarded packet pays once per subscriber), for each profile it negotiates.
    let provider = rtc::crypto::default_provider().expect("ring");
    let mut group = c.benchmark_group("srtp_seal_1200_bytes");
    for profile in [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80] {
        let master = MasterKey {
            profile,
            key: vec![7; profile.key_len()],
            salt: vec![9; profile.salt_len()],
        };
        let mut sender = SrtpSender::new(provider.crypto(), &master).expect("keys");
        let mut rollover = Rollover::default();
        let mut buf = vec![0u8; 1300];
        let mut seq = 0u16;
        group.bench_function(format!("{profile:?}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[0] = 0x80;
                buf[1] = 96;
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(
                    sender
                        .seal(&mut buf, 12, 1200, rollover.of(seq))
                        .expect("sealed"),
                )
            })
        });
    }
    group.finish();

    let needs: Vec<Need> = (0..12)
        .map(|i| Need {
            priority: if i == 0 { 3 } else { 1 },
            layer_bitrates: [Some(150_000), Some(500_000), Some(1_500_000)],
            preferred: if i < 4 { 2 } else { 0 },
            current: Some(0),
        })
        .collect();
    let (mut order, mut out) = (Vec::with_capacity(16), Vec::with_capacity(16));
    c.bench_function("allocate_12_consumers", |b| {
        b.iter(|| allocator::allocate(black_box(4_000_000), &needs, &mut order, &mut out))
    });
}

/// Allocations per forwarded packet in steady state, in the engine's work alone, counted over
/// 5 000 packets to 1, 10 and 100 subscribers.
fn report_allocations() {
    for n in [1usize, 10, 100] {
        let mut rig = ForwardingRig::new(n);
        let before_forwarded = rig.forwarded();
        let mut allocations = 0;
        for i in 0..5_000u64 {
            if i % UPKEEP_EVERY == 0 {
                rig.maintain();
            }
            let packets = rig.prepare();
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            rig.feed(&packets);
            allocations += ALLOCATIONS.load(Ordering::Relaxed) - before;
        }
        let forwarded = rig.forwarded() - before_forwarded;
        println!(
            "engine allocations, {n} subscribers: {allocations} for {forwarded} forwarded packets ({:.2} per forwarded packet)",
            allocations as f64 / forwarded.max(1) as f64
        );
    }
}

criterion_group!(benches, forwarding);

fn main() {
    report_allocations();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
