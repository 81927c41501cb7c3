//! One shard: a thread that owns one UDP socket and everything that arrives on it.
//!
//! The thread blocks in `recv_from`; stopping sets a flag and sends the socket an empty datagram from
//! the shard's own side so that the blocking receive returns. Counters are atomics written only by the
//! shard thread (relaxed ordering: they are statistics, not synchronisation).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crate::StartError;

/// Largest datagram a shard reads (an Ethernet MTU); WebRTC keeps its packets below it.
const MAX_DATAGRAM: usize = 1500;

/// Counters of one shard since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Datagrams read from the socket.
    pub packets_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Datagrams dropped because no peer on this shard matches their source or STUN username.
    pub packets_dropped_unknown_peer: u64,
    /// Socket errors other than the wake-up of a stop request.
    pub socket_errors: u64,
}

/// What the gateway can see of a shard.
#[derive(Debug, Clone, Copy)]
pub struct ShardStatus {
    /// Shard number, from 0.
    pub index: usize,
    /// Address its UDP socket is bound to.
    pub local_addr: SocketAddr,
    /// Whether its thread is alive and not asked to stop.
    pub running: bool,
    /// Its counters.
    pub stats: ShardStats,
}

#[derive(Default)]
struct Counters {
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    packets_dropped_unknown_peer: AtomicU64,
    socket_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ShardStats {
        ShardStats {
            packets_received: self.packets_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            packets_dropped_unknown_peer: self.packets_dropped_unknown_peer.load(Ordering::Relaxed),
            socket_errors: self.socket_errors.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    stop: AtomicBool,
    counters: Counters,
}

pub(crate) struct ShardHandle {
    index: usize,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Socket used only to wake the thread when stopping.
    waker: UdpSocket,
    /// Taken by the first `join`. A std mutex: it is held only to take the handle, never across I/O.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ShardHandle {
    pub(crate) fn spawn(index: usize, addr: SocketAddr) -> Result<ShardHandle, StartError> {
        let bind_err = |source| StartError::Bind {
            index,
            addr,
            source,
        };
        let socket = UdpSocket::bind(addr).map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let waker = socket.try_clone().map_err(bind_err)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("sfu-shard-{index}"))
            .spawn(move || run(index, socket, &thread_shared))
            .map_err(|source| StartError::Spawn { index, source })?;
        Ok(ShardHandle {
            index,
            local_addr,
            shared,
            waker,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn is_running(&self) -> bool {
        if self.shared.stop.load(Ordering::Acquire) {
            return false;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub(crate) fn status(&self) -> ShardStatus {
        ShardStatus {
            index: self.index,
            local_addr: self.local_addr,
            running: self.is_running(),
            stats: self.shared.counters.snapshot(),
        }
    }

    pub(crate) fn request_stop(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // The wake-up datagram goes from the socket to itself; a wildcard bind address is not a
        // destination, so aim at loopback on the same port instead.
        let mut target = self.local_addr;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(e) = self.waker.send_to(&[], target) {
            tracing::error!(shard = self.index, error = %e, "cannot wake shard to stop it");
        }
    }

    pub(crate) fn join(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(shard = self.index, "shard thread panicked");
        }
    }
}

fn run(index: usize, socket: UdpSocket, shared: &Shared) {
    let counters = &shared.counters;
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf) {
            // The wake-up of a stop request: an empty datagram once the flag is set. Datagrams queued
            // before it have been read by now, so stopping loses none of them.
            Ok((0, _)) if shared.stop.load(Ordering::Acquire) => break,
            Ok((len, _from)) => {
                counters.packets_received.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_received
                    .fetch_add(len as u64, Ordering::Relaxed);
                // No peers live on a shard yet: every datagram is for an unknown peer.
                counters
                    .packets_dropped_unknown_peer
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.socket_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = index, error = %e, "UDP receive failed");
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
            }
        }
    }
    tracing::debug!(shard = index, "shard stopped");
}
