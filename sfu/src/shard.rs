//! One shard: a thread that owns one UDP socket and everything that arrives on it.
//!
//! The thread waits in `poll(2)` on its UDP socket and, for ICE over TCP, its TCP listener and
//! connections (RFC 4571 framing). Commands arrive on a queue; a sleeping shard is woken by an empty
//! datagram to its own UDP port, and stopping sets a flag and does the same. Counters are atomics
//! written only by the shard thread (relaxed ordering: they are statistics, not synchronisation).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc::shared::TransportProtocol;
use rtc::shared::tcp_framing::TcpFrameDecoder;
use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::sync::mpsc;

use crate::driver::{Command, Engine, SfuEvent};
use crate::throttle::LogThrottle;
use crate::{SfuConfig, StartError};

/// Largest datagram a shard reads; WebRTC keeps its packets below an Ethernet MTU.
const MAX_DATAGRAM: usize = 2048;
/// Shortest wait for a timer (the socket timeout cannot be zero).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Longest wait without looking at the stop flag and the command queue. Wake-up datagrams are
/// the fast path, but a full receive buffer can drop them.
const MAX_WAIT: Duration = Duration::from_millis(50);

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
    /// RTP packets received from publishers.
    pub rtp_received: u64,
    /// RTP packets sent to subscribers.
    pub rtp_forwarded: u64,
    /// RTP packets handed to other shards of their room.
    pub rtp_piped: u64,
    /// RTP packets the forwarder chose to send that webrtc-rs refused to write.
    pub forward_errors: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests_sent: u64,
    /// RTP packets dropped without being routed: from peers without the right to publish (on
    /// arrival, before decryption), or on a track closed when that right was revoked.
    pub rtp_refused: u64,
    /// Offers, answers and trickled candidates from peers that were refused (nothing of them
    /// applied).
    pub signaling_refused: u64,
    /// Attempts at a server offer that failed (each is tried again on the next round).
    pub server_offer_errors: u64,
    /// Datagrams from known peers that webrtc-rs refused (bad STUN, DTLS or SRTP).
    pub datagrams_refused: u64,
    /// Rooms closed because their code panicked.
    pub rooms_closed_by_fault: u64,
}

/// What the gateway can see of a shard.
#[derive(Debug, Clone, Copy)]
pub struct ShardStatus {
    /// Shard number, from 0.
    pub index: usize,
    /// Address its UDP socket is bound to.
    pub local_addr: SocketAddr,
    /// Address its ICE-over-TCP listener is bound to, if enabled.
    pub tcp_addr: Option<SocketAddr>,
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
    rtp_received: AtomicU64,
    rtp_forwarded: AtomicU64,
    rtp_piped: AtomicU64,
    keyframe_requests_sent: AtomicU64,
    forward_errors: AtomicU64,
    rtp_refused: AtomicU64,
    signaling_refused: AtomicU64,
    server_offer_errors: AtomicU64,
    datagrams_refused: AtomicU64,
    rooms_closed_by_fault: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ShardStats {
        ShardStats {
            packets_received: self.packets_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            packets_dropped_unknown_peer: self.packets_dropped_unknown_peer.load(Ordering::Relaxed),
            socket_errors: self.socket_errors.load(Ordering::Relaxed),
            rtp_received: self.rtp_received.load(Ordering::Relaxed),
            rtp_forwarded: self.rtp_forwarded.load(Ordering::Relaxed),
            rtp_piped: self.rtp_piped.load(Ordering::Relaxed),
            keyframe_requests_sent: self.keyframe_requests_sent.load(Ordering::Relaxed),
            forward_errors: self.forward_errors.load(Ordering::Relaxed),
            rtp_refused: self.rtp_refused.load(Ordering::Relaxed),
            signaling_refused: self.signaling_refused.load(Ordering::Relaxed),
            server_offer_errors: self.server_offer_errors.load(Ordering::Relaxed),
            datagrams_refused: self.datagrams_refused.load(Ordering::Relaxed),
            rooms_closed_by_fault: self.rooms_closed_by_fault.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    stop: AtomicBool,
    counters: Counters,
}

/// Where commands to one shard go: its queue, and a wake-up for its blocking receive, sent only
/// when the shard is asleep (so a busy shard is not sent a datagram per command). Cheap to clone;
/// the shards hold one for each other shard (for pipes) and the handle one for each shard.
#[derive(Clone)]
pub(crate) struct Mailbox {
    commands: std::sync::mpsc::Sender<Command>,
    waker: Arc<UdpSocket>,
    target: SocketAddr,
    /// Set by the shard before it blocks; whoever clears it owes the shard a wake-up.
    asleep: Arc<AtomicBool>,
}

impl Mailbox {
    /// Queues a command, waking the shard if it sleeps. False when the shard has stopped.
    pub(crate) fn send(&self, command: Command) -> bool {
        if self.commands.send(command).is_err() {
            return false;
        }
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wake();
        }
        true
    }

    /// Makes the shard's blocking receive return (an empty datagram to itself).
    fn wake(&self) {
        if let Err(e) = self.waker.send_to(&[], self.target) {
            tracing::error!(error = %e, to = %self.target, "cannot wake shard");
        }
    }
}

pub(crate) struct ShardHandle {
    index: usize,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// Requests to the shard's engine.
    mailbox: Mailbox,
    /// Taken by the first `join`. A std mutex: it is held only to take the handle, never across I/O.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ShardHandle {
    pub(crate) fn spawn(
        index: usize,
        addr: SocketAddr,
        config: &SfuConfig,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> Result<ShardHandle, StartError> {
        let bind_err = |source| StartError::Bind {
            index,
            addr,
            source,
        };
        let socket = UdpSocket::bind(addr).map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        // ICE over TCP: the same port number when it was chosen, else one the OS picks.
        let listener = if config.tcp {
            let tcp_addr = SocketAddr::new(addr.ip(), addr.port());
            Some(
                TcpListener::bind(tcp_addr).map_err(|source| StartError::BindTcp {
                    index,
                    addr: tcp_addr,
                    source,
                })?,
            )
        } else {
            None
        };
        let tcp_addr = match &listener {
            Some(l) => Some(l.local_addr().map_err(bind_err)?),
            None => None,
        };
        let waker = Arc::new(socket.try_clone().map_err(bind_err)?);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let (commands, command_rx) = std::sync::mpsc::channel();
        let mut target = local_addr;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let mailbox = Mailbox {
            commands,
            waker,
            target,
            asleep: Arc::new(AtomicBool::new(false)),
        };
        let asleep = Arc::clone(&mailbox.asleep);
        let engine = Engine::new(index, local_addr, tcp_addr, config, events);
        let io = Io {
            index,
            udp: socket,
            listener,
            conns: Vec::new(),
            send_failed: LogThrottle::default(),
            receive_failed: LogThrottle::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("sfu-shard-{index}"))
            .spawn(move || run(io, &thread_shared, engine, &command_rx, &asleep))
            .map_err(|source| StartError::Spawn { index, source })?;
        Ok(ShardHandle {
            index,
            local_addr,
            tcp_addr,
            shared,
            mailbox,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands a command to the shard, waking it if needed. False when the shard has stopped.
    pub(crate) fn send(&self, command: Command) -> bool {
        self.mailbox.send(command)
    }

    /// Where other shards send this one commands.
    pub(crate) fn mailbox(&self) -> Mailbox {
        self.mailbox.clone()
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
            tcp_addr: self.tcp_addr,
            running: self.is_running(),
            stats: self.shared.counters.snapshot(),
        }
    }

    pub(crate) fn request_stop(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        self.mailbox.wake();
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

/// The shard's sockets: UDP, and ICE over TCP (a listener and its connections, RFC 4571 framing).
struct Io {
    index: usize,
    udp: UdpSocket,
    listener: Option<TcpListener>,
    conns: Vec<TcpConn>,
    /// Socket errors can repeat at packet rate: logged at most once in a while.
    send_failed: LogThrottle,
    receive_failed: LogThrottle,
}

/// One ICE-TCP connection.
struct TcpConn {
    stream: TcpStream,
    peer: SocketAddr,
    decoder: TcpFrameDecoder,
    /// Framed bytes not yet taken by the socket.
    unsent: Vec<u8>,
    closed: bool,
}

/// Unsent bytes a TCP connection may hold before it is closed as stuck.
const MAX_TCP_BACKLOG: usize = 4 << 20;
/// Datagrams read per wake-up before the engine processes them.
const UDP_BATCH: usize = 64;

impl Io {
    /// Sends one packet the engine produced.
    fn send(&mut self, data: &[u8], to: SocketAddr, protocol: TransportProtocol) {
        match protocol {
            TransportProtocol::TCP => self.send_tcp(data, to),
            _ => {
                if let Err(err) = self.udp.send_to(data, to)
                    && let Some(held) = self.send_failed.allow(Instant::now())
                {
                    tracing::debug!(shard = self.index, error = %err, %to, held, "UDP send failed");
                }
            }
        }
    }

    /// Frames a packet onto the TCP connection from `to` (RFC 4571).
    fn send_tcp(&mut self, data: &[u8], to: SocketAddr) {
        let Some(conn) = self.conns.iter_mut().find(|c| c.peer == to && !c.closed) else {
            return;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            return;
        };
        conn.unsent.extend_from_slice(&len.to_be_bytes());
        conn.unsent.extend_from_slice(data);
        conn.flush();
        if conn.unsent.len() > MAX_TCP_BACKLOG {
            tracing::debug!(peer = %conn.peer, "ICE-TCP connection stuck; closed");
            conn.closed = true;
        }
    }

    /// Accepts new TCP connections.
    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((stream, peer)) = listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.conns.push(TcpConn {
                stream,
                peer,
                decoder: TcpFrameDecoder::new(),
                unsent: Vec::new(),
                closed: false,
            });
        }
    }
}

impl TcpConn {
    fn flush(&mut self) {
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Reads what arrived; calls `frame` with every complete packet.
    fn read(&mut self, buf: &mut [u8], mut frame: impl FnMut(&[u8], SocketAddr)) {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.decoder.extend_from_slice(&buf[..n]);
                    while let Some(packet) = self.decoder.next_packet() {
                        frame(&packet, self.peer);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

/// What woke the shard.
#[derive(Default)]
struct Ready {
    udp: bool,
    listener: bool,
    tcp: bool,
}

/// Waits until a socket is readable (or a TCP connection writable, when it has a backlog), at
/// most `wait`.
fn wait_ready(io: &Io, wait: Duration) -> Ready {
    let timeout = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    if io.conns.is_empty() {
        // The common case, without allocating: the UDP socket and the listener.
        let mut fds = [
            PollFd::new(&io.udp, PollFlags::IN),
            match &io.listener {
                Some(l) => PollFd::new(l, PollFlags::IN),
                None => PollFd::new(&io.udp, PollFlags::IN),
            },
        ];
        if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
            return Ready::default();
        }
        return Ready {
            udp: !fds[0].revents().is_empty(),
            listener: io.listener.is_some() && !fds[1].revents().is_empty(),
            tcp: false,
        };
    }
    let mut fds = Vec::with_capacity(2 + io.conns.len());
    fds.push(PollFd::new(&io.udp, PollFlags::IN));
    if let Some(l) = &io.listener {
        fds.push(PollFd::new(l, PollFlags::IN));
    }
    let first_conn = fds.len();
    for c in &io.conns {
        let mut flags = PollFlags::IN;
        if !c.unsent.is_empty() {
            flags |= PollFlags::OUT;
        }
        fds.push(PollFd::new(&c.stream, flags));
    }
    if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
        return Ready::default();
    }
    Ready {
        udp: !fds[0].revents().is_empty(),
        listener: io.listener.is_some() && !fds[1].revents().is_empty(),
        tcp: fds[first_conn..].iter().any(|f| !f.revents().is_empty()),
    }
}

fn run(
    mut io: Io,
    shared: &Shared,
    mut engine: Engine,
    commands: &std::sync::mpsc::Receiver<Command>,
    asleep: &AtomicBool,
) {
    let index = io.index;
    let counters = &shared.counters;
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut tcp_buf = vec![0u8; 64 * 1024];
    if let Err(e) = io.udp.set_nonblocking(true) {
        tracing::error!(shard = index, error = %e, "cannot make the UDP socket non-blocking");
    }
    if let Some(l) = &io.listener
        && let Err(e) = l.set_nonblocking(true)
    {
        tracing::error!(shard = index, error = %e, "cannot make the TCP listener non-blocking");
    }
    loop {
        let now = Instant::now();
        guarded(index, counters, &mut engine, |e| e.handle_timeout(now));
        guarded(index, counters, &mut engine, |e| e.process(now));
        // Published before the packets leave, so a peer that got them sees them counted.
        counters
            .rtp_received
            .store(engine.counters.rtp_in, Ordering::Relaxed);
        counters
            .rtp_forwarded
            .store(engine.counters.rtp_forwarded, Ordering::Relaxed);
        counters
            .rtp_piped
            .store(engine.counters.rtp_piped, Ordering::Relaxed);
        counters
            .keyframe_requests_sent
            .store(engine.counters.keyframe_requests_sent, Ordering::Relaxed);
        counters
            .forward_errors
            .store(engine.counters.forward_errors, Ordering::Relaxed);
        counters
            .rtp_refused
            .store(engine.counters.rtp_refused, Ordering::Relaxed);
        counters
            .signaling_refused
            .store(engine.counters.signaling_refused, Ordering::Relaxed);
        counters
            .server_offer_errors
            .store(engine.counters.server_offer_errors, Ordering::Relaxed);
        counters
            .datagrams_refused
            .store(engine.counters.datagrams_refused, Ordering::Relaxed);
        guarded(index, counters, &mut engine, |e| {
            e.drain_writes(|data, to, protocol| io.send(data, to, protocol))
        });
        io.conns.retain(|c| !c.closed);

        let wait = engine
            .poll_timeout()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(Instant::now()))
            .clamp(MIN_WAIT, MAX_WAIT);
        // Asleep from here: a command queued from now on comes with a wake-up; one queued before
        // is taken now, without blocking.
        asleep.store(true, Ordering::SeqCst);
        if let Ok(command) = commands.try_recv() {
            asleep.store(false, Ordering::SeqCst);
            guarded(index, counters, &mut engine, |e| {
                e.handle_command(command, Instant::now())
            });
            drain_commands(index, counters, &mut engine, commands);
            if shared.stop.load(Ordering::Acquire) {
                break;
            }
            continue;
        }
        let ready = wait_ready(&io, wait);
        asleep.store(false, Ordering::SeqCst);
        if ready.udp {
            for _ in 0..UDP_BATCH {
                match io.udp.recv_from(&mut buf) {
                    // An empty datagram is a wake-up: stop, or commands to read.
                    Ok((0, _)) => {}
                    Ok((len, from)) => {
                        counters.packets_received.fetch_add(1, Ordering::Relaxed);
                        counters
                            .bytes_received
                            .fetch_add(len as u64, Ordering::Relaxed);
                        let known = guarded(index, counters, &mut engine, |e| {
                            e.handle_datagram(
                                &buf[..len],
                                from,
                                TransportProtocol::UDP,
                                Instant::now(),
                            )
                        });
                        if known != Some(true) {
                            counters
                                .packets_dropped_unknown_peer
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => {
                        counters.socket_errors.fetch_add(1, Ordering::Relaxed);
                        if let Some(held) = io.receive_failed.allow(Instant::now()) {
                            tracing::warn!(shard = index, error = %e, held, "UDP receive failed");
                        }
                        break;
                    }
                }
            }
        }
        if ready.listener {
            io.accept();
        }
        if ready.tcp {
            for conn in &mut io.conns {
                conn.flush();
                conn.read(&mut tcp_buf, |packet, from| {
                    counters.packets_received.fetch_add(1, Ordering::Relaxed);
                    counters
                        .bytes_received
                        .fetch_add(packet.len() as u64, Ordering::Relaxed);
                    let known = guarded(index, counters, &mut engine, |e| {
                        e.handle_datagram(packet, from, TransportProtocol::TCP, Instant::now())
                    });
                    if known != Some(true) {
                        counters
                            .packets_dropped_unknown_peer
                            .fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        drain_commands(index, counters, &mut engine, commands);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
    }
    // Account for what is still queued, so that stopping loses no count.
    while let Ok((len, from)) = io.udp.recv_from(&mut buf) {
        if len == 0 {
            continue;
        }
        counters.packets_received.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_received
            .fetch_add(len as u64, Ordering::Relaxed);
        if !engine.handle_datagram(&buf[..len], from, TransportProtocol::UDP, Instant::now()) {
            counters
                .packets_dropped_unknown_peer
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    tracing::debug!(shard = index, "shard stopped");
}

fn drain_commands(
    index: usize,
    counters: &Counters,
    engine: &mut Engine,
    commands: &std::sync::mpsc::Receiver<Command>,
) {
    while let Ok(command) = commands.try_recv() {
        guarded(index, counters, engine, |e| {
            e.handle_command(command, Instant::now())
        });
    }
}

/// Runs engine work; a panic in it closes the room it was working on (the shard and its other
/// rooms go on) and returns `None`.
fn guarded<T>(
    index: usize,
    counters: &Counters,
    engine: &mut Engine,
    work: impl FnOnce(&mut Engine) -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(engine))) {
        Ok(value) => Some(value),
        Err(payload) => {
            let reason = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            match engine.faulty_room() {
                Some(room) => {
                    tracing::error!(shard = index, room = %room, reason = %reason, "room closed after a fault");
                    // Counted before the room's events go out, so whoever sees them sees the count.
                    counters
                        .rooms_closed_by_fault
                        .fetch_add(1, Ordering::Relaxed);
                    engine.close_room(&room, &reason);
                }
                None => tracing::error!(shard = index, reason = %reason, "fault outside any room"),
            }
            engine.scope = None;
            None
        }
    }
}
