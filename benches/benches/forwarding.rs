//! Our per-packet forwarding work for a 1 -> N fan-out, without SRTP or sockets: parse the RTP
//! header and VP8 descriptor once, then per consumer decide (forwarder), copy and rewrite SSRC /
//! payload type / sequence / timestamp and remap header extension ids. Also the bandwidth
//! allocation for one subscriber.
//!
//! A counting allocator reports heap allocations per forwarded packet in steady state (goal: 0).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sfu::media::allocator::{self, Need};
use sfu::media::forwarder::{Decision, Forwarder, PacketInfo};
use sfu::media::rtp::{self, Fields, Header};
use sfu::media::vp8;

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

struct Consumer {
    forwarder: Forwarder,
    ssrc: u32,
    payload_type: u8,
    ext_map: [u8; 256],
    out: Vec<u8>,
}

struct FanOut {
    consumers: Vec<Consumer>,
    packet: Vec<u8>,
    sequence: u16,
    timestamp: u32,
    now: Instant,
}

impl FanOut {
    fn new(n: usize) -> FanOut {
        let mut ext_map = [0u8; 256];
        ext_map[1] = 3;
        ext_map[2] = 5;
        let consumers = (0..n)
            .map(|i| Consumer {
                forwarder: Forwarder::new(90_000, Some(0)),
                ssrc: 1000 + i as u32,
                payload_type: 98,
                ext_map,
                out: Vec::with_capacity(1500),
            })
            .collect();
        FanOut {
            consumers,
            packet: Vec::with_capacity(1500),
            sequence: 0,
            timestamp: 0,
            now: Instant::now(),
        }
    }

    /// One incoming 1200-byte VP8 packet forwarded to every consumer; returns packets forwarded.
    fn step(&mut self) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(3000);
        self.now += Duration::from_micros(300);
        let keyframe = self.sequence == 1;
        let mut payload = [0u8; 1170];
        payload[0] = 0x90;
        payload[1] = 0x80;
        payload[2] = 0x80 | (self.sequence >> 8) as u8 & 0x7f;
        payload[3] = self.sequence as u8;
        payload[4] = u8::from(!keyframe);
        let fields = Fields {
            payload_type: 96,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: 42,
            marker: false,
        };
        rtp::build(
            &mut self.packet,
            fields,
            &[(1, &[0x90]), (2, &[1, 2, 3])],
            &payload,
        );

        let header = Header::parse(&self.packet).expect("valid");
        let info = vp8::parse(header.payload(&self.packet)).expect("valid");
        let p = PacketInfo {
            layer: 0,
            sequence: header.sequence,
            timestamp: header.timestamp,
            marker: header.marker,
            keyframe: info.keyframe,
            temporal_id: info.temporal_id,
        };
        let mut forwarded = 0;
        for c in &mut self.consumers {
            if let Decision::Forward(rw) = c.forwarder.handle(&p, self.now) {
                c.out.clear();
                c.out.extend_from_slice(&self.packet);
                rtp::rewrite(
                    &mut c.out,
                    c.ssrc,
                    c.payload_type,
                    rw.sequence,
                    rw.timestamp,
                    rw.marker,
                );
                rtp::remap_extension_ids(&mut c.out, &header, &c.ext_map);
                black_box(&c.out);
                forwarded += 1;
            }
        }
        forwarded
    }
}

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_1_to_n");
    for n in [1usize, 10, 100] {
        let mut fan = FanOut::new(n);
        for _ in 0..100 {
            fan.step();
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| fan.step())
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

/// Allocations per forwarded packet in steady state, counted over 10 000 packets to 10 consumers.
fn report_allocations() {
    let mut fan = FanOut::new(10);
    for _ in 0..100 {
        fan.step();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut forwarded = 0;
    for _ in 0..10_000 {
        forwarded += fan.step();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "allocations in our forwarding path: {allocations} for {forwarded} forwarded packets ({:.4} per packet)",
        allocations as f64 / forwarded as f64
    );
}

criterion_group!(benches, forwarding);

fn main() {
    report_allocations();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
