//! Forwarded packets per CPU-second of one SFU shard, 1 publisher -> N subscribers, real
//! DTLS-SRTP webrtc-rs peers over loopback, everything in this process.
//!
//! The publisher sends 1200-byte VP8 packets at a fixed rate; the shard decrypts, decides,
//! rewrites, encrypts and sends each to every subscriber. The shard thread's own CPU time (from
//! /proc/self/task/<tid>/schedstat) is divided by the packets it forwarded: the peers' work is not
//! counted. Report the figures of one run side by side; the machine is shared.

#[path = "../../sfu/tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts heap allocations made on SFU shard threads (named `sfu-shard-*`), to report what the
/// whole forwarding path allocates per packet, webrtc-rs included.
struct ShardCounting;

static SHARD_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is a shard: unknown until first checked.
    static IS_SHARD: Cell<Option<bool>> = const { Cell::new(None) };
    /// Set while checking, so that an allocation made by the check is not counted recursively.
    static CHECKING: Cell<bool> = const { Cell::new(false) };
}

fn on_shard_thread() -> bool {
    IS_SHARD.with(|flag| match flag.get() {
        Some(known) => known,
        None => {
            if CHECKING.with(|c| c.replace(true)) {
                return false;
            }
            let known = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("sfu-shard"));
            CHECKING.with(|c| c.set(false));
            flag.set(Some(known));
            known
        }
    })
}

// SAFETY: delegates to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for ShardCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_shard_thread() {
            SHARD_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_shard_thread() {
            SHARD_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: ShardCounting = ShardCounting;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp;
use webrtc::media_stream::track_local::TrackLocal;

/// CPU time of one thread: exact (the scheduler's nanoseconds on a CPU), and its split between
/// user and kernel in clock ticks (10 ms, sampled: only a ratio over a long window).
#[derive(Clone, Copy, Default)]
struct ThreadCpu {
    seconds: f64,
    user_ticks: u64,
    system_ticks: u64,
}

impl std::ops::Sub for ThreadCpu {
    type Output = ThreadCpu;
    fn sub(self, earlier: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            seconds: self.seconds - earlier.seconds,
            user_ticks: self.user_ticks.saturating_sub(earlier.user_ticks),
            system_ticks: self.system_ticks.saturating_sub(earlier.system_ticks),
        }
    }
}

impl ThreadCpu {
    /// The kernel's share of the ticks, in percent.
    fn kernel_percent(&self) -> f64 {
        let all = self.user_ticks + self.system_ticks;
        if all == 0 {
            return f64::NAN;
        }
        100.0 * self.system_ticks as f64 / all as f64
    }
}

/// CPU time of the thread named `name` in this process (`/proc/self/task/<tid>/schedstat` and
/// `stat`).
fn thread_cpu(name: &str) -> Option<ThreadCpu> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() == name {
            let schedstat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            let ns: f64 = schedstat.split_whitespace().next()?.parse().ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            let f: Vec<&str> = after.split_whitespace().collect();
            return Some(ThreadCpu {
                seconds: ns / 1e9,
                user_ticks: f.get(11)?.parse().ok()?,
                system_ticks: f.get(12)?.parse().ok()?,
            });
        }
    }
    None
}

async fn run(subscribers: usize, packets_per_second: u32, seconds: u64) {
    let (sfu, offers) = support::start_sfu();
    const SSRC: u32 = 0x0e0e_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let (track, pt) = (
        std::sync::Arc::clone(&publisher.track),
        publisher.payload_type,
    );

    let mut clients = Vec::new();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for _ in 0..subscribers {
        let (mut c, _) = support::subscriber(&sfu, &offers).await;
        // Drain what arrives so the peers' buffers never stall; report the first packet.
        let mut tracks = std::mem::replace(&mut c.tracks, tokio::sync::mpsc::unbounded_channel().1);
        let started = started_tx.clone();
        tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                let started = started.clone();
                tokio::spawn(async move {
                    let mut first = true;
                    while let Some(event) = track.poll().await {
                        if first
                            && matches!(
                                event,
                                webrtc::media_stream::track_remote::TrackRemoteEvent::OnRtpPacket(
                                    _
                                )
                            )
                        {
                            first = false;
                            let _ = started.send(());
                        }
                    }
                });
            }
        });
        clients.push(c);
    }

    let per_tick = (packets_per_second / 1000).max(1);
    let sender_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut i = 0u32;
        loop {
            tick.tick().await;
            for _ in 0..per_tick {
                let keyframe = i.is_multiple_of(300);
                let mut payload = vec![0x10, u8::from(!keyframe)];
                payload.resize(1200 - 12, 0xab);
                let header = rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: pt,
                    sequence_number: i as u16,
                    timestamp: i * 90,
                    ssrc: SSRC,
                    ..Default::default()
                };
                let _ = track
                    .write_rtp(rtp::Packet {
                        header,
                        payload: Bytes::from(payload),
                    })
                    .await;
                i = i.wrapping_add(1);
            }
        }
    });

    // Measure once every subscriber receives media (its consumer started on a keyframe).
    for _ in 0..subscribers {
        tokio::time::timeout(support::WAIT, started_rx.recv())
            .await
            .expect("every subscriber gets media");
    }
    // Warm-up, as criterion does: the first second after start carries joins and keyframe
    // requests, not the steady state being measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let allocs0 = SHARD_ALLOCATIONS.load(Ordering::Relaxed);
    let (cpu0, fwd0, in0, t0) = (
        thread_cpu("sfu-shard-0").unwrap_or_default(),
        sfu.shards()[0].stats.rtp_forwarded,
        sfu.shards()[0].stats.rtp_received,
        Instant::now(),
    );
    // The measurement window: a benchmark measures over wall time; nothing waits on it to be correct.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, fwd1, in1, wall) = (
        thread_cpu("sfu-shard-0").unwrap_or_default(),
        sfu.shards()[0].stats.rtp_forwarded,
        sfu.shards()[0].stats.rtp_received,
        t0.elapsed(),
    );
    let allocs = SHARD_ALLOCATIONS.load(Ordering::Relaxed) - allocs0;
    let errors = sfu.shards()[0].stats.forward_errors;
    sender_task.abort();

    let forwarded = fwd1 - fwd0;
    let used = cpu1 - cpu0;
    let cpu = used.seconds;
    println!(
        "{subscribers:>4} subscribers: {:>7.0} in/s, {:>8.0} forwarded/s, shard CPU {:>5.1} % ({:.0} % of it in the kernel), {:>6.2} us CPU per forwarded packet, {:>8.0} forwarded packets per shard CPU-second, {:>5.1} shard allocations per forwarded packet, {errors} write errors",
        (in1 - in0) as f64 / wall.as_secs_f64(),
        forwarded as f64 / wall.as_secs_f64(),
        100.0 * cpu / wall.as_secs_f64(),
        used.kernel_percent(),
        if forwarded > 0 {
            cpu * 1e6 / forwarded as f64
        } else {
            f64::NAN
        },
        if cpu > 0.0 {
            forwarded as f64 / cpu
        } else {
            f64::NAN
        },
        if forwarded > 0 {
            allocs as f64 / forwarded as f64
        } else {
            f64::NAN
        },
    );
    for c in clients.into_iter().chain([publisher.client]) {
        let _ = c.pc.close().await;
    }
    support::shutdown(&sfu).await;
}

/// This machine's floor for one forwarded packet, measured in the same run: a 1200-byte RTP
/// packet sealed with AES-GCM (the SFU's own sealing, `sfu::media::srtp`) and sent with
/// `sendmmsg`, 32 per call, to a loopback socket that another thread drains; the CPU of the
/// sending thread only, per packet, in microseconds.
fn floor(packets: usize) -> (f64, f64) {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use sfu::media::srtp::{MasterKey, Profile, SrtpSender};
    use std::io::IoSlice;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    let rx = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let to = SockaddrStorage::from(rx.local_addr().expect("an address"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    rx.set_read_timeout(Some(Duration::from_millis(50))).ok();
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let _ = rx.recv(&mut buf);
            }
        })
    };
    let sender = std::thread::Builder::new()
        .name("floor-send".into())
        .spawn(move || {
            let provider = rtc::crypto::default_provider().expect("ring");
            let master = MasterKey {
                profile: Profile::AeadAes128Gcm,
                key: vec![7; 16],
                salt: vec![9; 12],
            };
            let mut srtp = SrtpSender::new(provider.crypto(), &master).expect("keys");
            let mut bufs = vec![[0u8; 1300]; 32];
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(32, None);
            let addrs = [Some(to); 32];
            let cpu0 = thread_cpu("floor-send").unwrap_or_default();
            let mut seq = 0u16;
            for _ in 0..packets / 32 {
                for buf in bufs.iter_mut() {
                    buf[0] = 0x80;
                    buf[1] = 96;
                    buf[2..4].copy_from_slice(&seq.to_be_bytes());
                    buf[12..1200].fill(0xab);
                    srtp.seal(buf, 12, 1200, 0).expect("sealed");
                    seq = seq.wrapping_add(1);
                }
                let slices: Vec<[IoSlice<'_>; 1]> =
                    bufs.iter().map(|b| [IoSlice::new(&b[..1216])]).collect();
                let _ = sendmmsg(
                    tx.as_raw_fd(),
                    &mut headers,
                    slices.iter(),
                    addrs,
                    [] as [ControlMessage<'_>; 0],
                    MsgFlags::empty(),
                )
                .map(|r| r.count());
            }
            thread_cpu("floor-send").unwrap_or_default() - cpu0
        })
        .expect("a thread");
    let cpu = sender.join().expect("the floor ran");
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    (cpu.seconds * 1e6 / packets as f64, cpu.kernel_percent())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "fanout_loopback".contains(a.as_str())) {
        return;
    }
    let (floor_us, floor_kernel) = floor(300_000);
    println!(
        "floor of this machine: {floor_us:.2} us CPU per packet ({floor_kernel:.0} % in the kernel; 1200-byte packet sealed with AES-GCM, sendmmsg 32 per call, loopback)"
    );
    println!(
        "1 publisher -> N subscribers, 1200-byte VP8 packets, 1000 packets/s in, 5 s measured"
    );
    let counts: Vec<usize> = std::env::var("FANOUT_SUBSCRIBERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 5, 10, 20, 50]);
    for n in counts {
        run(n, 1000, 5).await;
    }
}
