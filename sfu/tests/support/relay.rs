//! A UDP relay between one test client and the SFU that can lose packets and limit bandwidth:
//! the network conditions of the loss and bandwidth tests. The client is pointed at the relay by
//! rewriting the SFU's host candidate in the session descriptions it receives
//! ([`Relay::rewrite`]); the SFU sees the relay as the client's address.
//!
//! Loss applies to RTP only (SRTP packets that are not RTCP), so that connection setup and the
//! feedback that recovers losses are not what a test measures. Losses are chosen by a seeded
//! generator: a run is reproducible.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What the relay does to the packets it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions {
    /// Fraction of RTP packets from the client to the SFU that are lost.
    pub loss_to_sfu: f64,
    /// Fraction of RTP packets from the SFU to the client that are lost.
    pub loss_to_client: f64,
    /// Bandwidth from the SFU to the client, in bits per second (`None`: unlimited). Packets queue
    /// behind it; a packet that would wait longer than [`MAX_QUEUE_DELAY`] is dropped.
    pub rate_to_client_bps: Option<u64>,
    /// Everything is lost, both ways (the client vanished).
    pub blackhole: bool,
}

/// Longest a packet waits in the bandwidth-limited queue before the relay drops it instead.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(250);

/// Counters of what the relay did.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub rtp_lost_to_sfu: AtomicU64,
    pub rtp_lost_to_client: AtomicU64,
    pub dropped_by_rate: AtomicU64,
}

pub struct Relay {
    /// Where the client sends.
    pub addr: SocketAddr,
    sfu: SocketAddr,
    conditions: Arc<Mutex<Conditions>>,
    pub counters: Arc<RelayCounters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// SRTP media, not SRTCP (RFC 7983 first byte; RFC 5761 payload types 192-223 are RTCP).
fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && (128..=191).contains(&b[0]) && !(192..=223).contains(&b[1])
}

/// A seeded xorshift: reproducible losses.
pub struct Dice(pub u64);

impl Dice {
    pub fn hit(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

impl Relay {
    /// A relay to the shard at `sfu`.
    pub async fn start(sfu: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let conditions = Arc::new(Mutex::new(Conditions::default()));
        let counters = Arc::new(RelayCounters::default());
        let client = Arc::new(Mutex::new(None::<SocketAddr>));

        // Client -> SFU.
        let upstream = {
            let (front, back, conditions, counters, client) = (
                Arc::clone(&front),
                Arc::clone(&back),
                Arc::clone(&conditions),
                Arc::clone(&counters),
                Arc::clone(&client),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
                while let Ok((len, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    let Conditions {
                        loss_to_sfu: loss,
                        blackhole,
                        ..
                    } = *conditions.lock().unwrap();
                    if blackhole {
                        continue;
                    }
                    if is_rtp(&buf[..len]) && dice.hit(loss) {
                        counters.rtp_lost_to_sfu.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = back.send_to(&buf[..len], sfu).await;
                }
            })
        };

        // SFU -> client: losses, then the bandwidth queue, then the pacer that sends.
        let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let downstream = {
            let (back, conditions, counters) = (
                Arc::clone(&back),
                Arc::clone(&conditions),
                Arc::clone(&counters),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut dice = Dice(0x2545_f491_4f6c_dd1d);
                // When the link finishes sending what is queued.
                let mut link_free = Instant::now();
                while let Ok((len, _)) = back.recv_from(&mut buf).await {
                    let c = *conditions.lock().unwrap();
                    if c.blackhole {
                        continue;
                    }
                    if is_rtp(&buf[..len]) && dice.hit(c.loss_to_client) {
                        counters.rtp_lost_to_client.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let now = Instant::now();
                    let departure = match c.rate_to_client_bps {
                        None => now,
                        Some(bps) => {
                            let start = link_free.max(now);
                            let done = start
                                + Duration::from_secs_f64((len as f64 + 28.0) * 8.0 / bps as f64);
                            if done.duration_since(now) > MAX_QUEUE_DELAY {
                                counters.dropped_by_rate.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            link_free = done;
                            done
                        }
                    };
                    let _ = queue_tx.send((departure, buf[..len].to_vec()));
                }
            })
        };
        let pacer = {
            let front = Arc::clone(&front);
            tokio::spawn(async move {
                while let Some((departure, packet)) = queue_rx.recv().await {
                    tokio::time::sleep_until(departure.into()).await;
                    let to = *client.lock().unwrap();
                    if let Some(to) = to {
                        let _ = front.send_to(&packet, to).await;
                    }
                }
            })
        };
        Relay {
            addr,
            sfu,
            conditions,
            counters,
            tasks: vec![upstream, downstream, pacer],
        }
    }

    /// Changes the network conditions from now on.
    pub fn set(&self, change: impl FnOnce(&mut Conditions)) {
        change(&mut self.conditions.lock().unwrap());
    }

    /// `sdp` with the SFU's host candidate pointing at the relay instead.
    pub fn rewrite(&self, sdp: &str) -> String {
        let from = format!(" {} {} typ host", self.sfu.ip(), self.sfu.port());
        let to = format!(" {} {} typ host", self.addr.ip(), self.addr.port());
        assert!(
            sdp.contains(&from),
            "the SFU's candidate {from:?} is in the description"
        );
        sdp.replace(&from, &to)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
