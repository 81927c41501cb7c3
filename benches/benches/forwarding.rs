//! Our per-packet forwarding work for a 1 -> N fan-out, without sockets: parse the RTP header and
//! VP8 descriptor once, then per consumer decide (forwarder), copy and rewrite SSRC / payload
//! type / sequence / timestamp and remap header extension ids; then the same with each copy
//! SRTP-protected for its subscriber (webrtc-rs's SRTP context, both profiles browsers use).
//! Also simulcast layer selection (three layers into consumers on different layers) and the
//! bandwidth allocation for one subscriber.
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

use rtc::srtp::protection_profile::ProtectionProfile;

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
    /// The subscriber's SRTP context, when protecting.
    srtp: Option<rtc::srtp::context::Context>,
}

struct FanOut {
    consumers: Vec<Consumer>,
    packet: Vec<u8>,
    sequence: u16,
    timestamp: u32,
    now: Instant,
}

impl FanOut {
    /// `n` consumers whose copies are SRTP-protected with `profile`.
    fn with_srtp(n: usize, profile: ProtectionProfile) -> FanOut {
        let mut fan = FanOut::new(n);
        for (i, c) in fan.consumers.iter_mut().enumerate() {
            let key: Vec<u8> = (0..profile.key_len()).map(|b| (b + i) as u8).collect();
            let salt: Vec<u8> = (0..profile.salt_len()).map(|b| (b * 7 + i) as u8).collect();
            c.srtp = Some(
                rtc::srtp::context::Context::new(
                    &key,
                    &salt,
                    profile,
                    None,
                    None,
                    &rtc::crypto::providers::RingCrypto,
                )
                .expect("SRTP context"),
            );
        }
        fan
    }

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
                srtp: None,
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
                if let Some(srtp) = &mut c.srtp {
                    black_box(srtp.encrypt_rtp(&c.out).expect("protected"));
                }
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

    for (name, profile) in [
        (
            "aes128_cm_hmac_sha1_80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        ("aead_aes128_gcm", ProtectionProfile::AeadAes128Gcm),
    ] {
        let mut group = c.benchmark_group(format!("forward_1_to_n_srtp_{name}"));
        for n in [1usize, 10, 100] {
            let mut fan = FanOut::with_srtp(n, profile);
            for _ in 0..100 {
                fan.step();
            }
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| fan.step())
            });
        }
        group.finish();
    }

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

/// Allocations per forwarded packet in steady state, counted over 10 000 packets to 10 consumers:
/// ours alone, then with webrtc-rs's SRTP protection of each copy.
fn report_allocations() {
    for (label, mut fan) in [
        ("our forwarding path", FanOut::new(10)),
        (
            "with SRTP (webrtc-rs)",
            FanOut::with_srtp(10, ProtectionProfile::Aes128CmHmacSha1_80),
        ),
    ] {
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
            "allocations, {label}: {allocations} for {forwarded} forwarded packets ({:.4} per packet)",
            allocations as f64 / forwarded as f64
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
