//! One shard: a thread that owns one UDP socket and everything that arrives on it.
//!
//! The thread waits in `poll(2)` on its UDP socket and, for ICE over TCP, its TCP listener and
//! connections (RFC 4571 framing), feeds what arrives to its [`Engine`] and carries out what the
//! engine returns: datagrams to send, events for the listeners, messages to other shards, items
//! for in-process consumers.
//!
//! Two bounded queues feed it: commands (from the handle, and pipe control from other shards)
//! and pipe batches (packets from other shards of a room). A full command queue refuses the
//! command (the caller is told); a full pipe queue drops the batch (counted). Each round serves
//! at most [`COMMANDS_PER_ROUND`] commands and [`PIPE_BATCHES_PER_ROUND`] batches, and reads the
//! sockets whatever is queued, so steady pipe traffic cannot starve them. A sleeping shard is
//! woken by an empty datagram to its own UDP port; stopping sets a flag and does the same.
//! Counters are atomics written only by the shard thread (relaxed ordering: they are statistics,
//! not synchronisation).

use std::collections::HashMap;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use rtc::shared::TransportProtocol;
use rtc::shared::tcp_framing::TcpFrameDecoder;
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::engine::command::Command;
use crate::engine::local::{Delivery, LocalSink};
use crate::engine::out::MediaOut;
use crate::engine::pipe::{PipedPacket, ShardMessage};
use crate::engine::{Engine, EngineConfig, Output};
use crate::events::{CloseReason, EventBus};
use crate::ids::LocalConsumerId;
use crate::throttle::LogThrottle;
use crate::{SfuConfig, StartError};

/// Largest datagram a shard reads; WebRTC keeps its packets below an Ethernet MTU.
const MAX_DATAGRAM: usize = 2048;
/// Shortest wait for a timer (the socket timeout cannot be zero).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Longest wait without looking at the stop flag and the command queue. Wake-up datagrams are
/// the fast path, but a full receive buffer can drop them.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Commands a shard's queue holds; beyond, commands are refused.
pub(crate) const COMMAND_QUEUE: usize = 8192;
/// Pipe batches (one per round of another shard) a shard's queue holds; beyond, batches are
/// dropped (counted in [`ShardStats::pipe_batches_dropped`]).
pub(crate) const PIPE_QUEUE: usize = 256;
/// Commands served per round before the sockets are read again.
pub(crate) const COMMANDS_PER_ROUND: usize = 64;
/// Pipe batches served per round before the sockets are read again.
pub(crate) const PIPE_BATCHES_PER_ROUND: usize = 8;

macro_rules! shard_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters of one shard since it started.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct ShardStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Default)]
        struct Counters {
            $($name: AtomicU64,)*
        }

        impl Counters {
            fn snapshot(&self) -> ShardStats {
                ShardStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

shard_counters! {
    /// Datagrams read from the socket.
    packets_received,
    /// Bytes in those datagrams.
    bytes_received,
    /// Datagrams dropped because no peer on this shard matches their source or STUN username.
    packets_dropped_unknown_peer,
    /// Socket errors other than the wake-up of a stop request.
    socket_errors,
    /// RTP packets received from publishers.
    rtp_received,
    /// RTP packets sent to subscribers (retransmissions included).
    rtp_forwarded,
    /// RTP packets handed to other shards of their room.
    rtp_piped,
    /// RTP packets the forwarder chose to send that could not be written (too large for the
    /// send buffer's slot, or the sealing failed).
    forward_errors,
    /// Keyframe requests (PLI) sent to publishers.
    keyframe_requests_sent,
    /// RTP packets dropped without being routed: from peers without the right to publish (on
    /// arrival, before decryption), or on a track closed by the server or when that right was
    /// revoked.
    rtp_refused,
    /// RTP packets of producers paused by the server ([`crate::Sfu::pause_producer`]).
    rtp_paused,
    /// Packets sent again because a subscriber reported them lost (NACK).
    rtp_retransmitted,
    /// Packets subscribers reported lost that were no longer held.
    nacks_unanswered,
    /// Offers, answers and trickled candidates from peers that were refused (nothing of them
    /// applied).
    signaling_refused,
    /// Attempts at a server offer that failed (each is tried again on the next round).
    server_offer_errors,
    /// Datagrams from known peers that webrtc-rs refused (bad STUN, DTLS or SRTP).
    datagrams_refused,
    /// Rooms closed because their code panicked.
    rooms_closed_by_fault,
    /// Commands refused because the shard's queue was full.
    commands_refused,
    /// Batches of piped packets dropped because the receiving shard's queue was full (counted
    /// by the sending shard).
    pipe_batches_dropped,
    /// Layer changes of consumers (up, down, paused, resumed).
    layer_switches,
    /// Sender reports sent for the streams the SFU forwards.
    sender_reports,
    /// Forwarded packets dropped because the socket's send buffer was full.
    media_send_dropped,
    /// `sendmmsg` calls made for forwarded media (packets sent per call: `rtp_forwarded` over
    /// this).
    media_send_calls,
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

struct Shared {
    stop: AtomicBool,
    counters: Counters,
    /// The subscribers as the engine's last review saw them. A std mutex: held to swap the list.
    census: Mutex<Vec<crate::stats::SubscriberStatus>>,
}

/// Why a command did not reach a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its queue is full.
    Busy,
    /// It has stopped.
    Closed,
}

/// Where commands and pipe batches to one shard go: its two bounded queues, and a wake-up for
/// its blocking wait, sent only when the shard is asleep (so a busy shard is not sent a datagram
/// per command). Cheap to clone; the shards hold one for each other shard (for pipes) and the
/// handle one for each shard.
#[derive(Clone)]
pub(crate) struct Mailbox {
    commands: SyncSender<Command>,
    pipes: SyncSender<Vec<PipedPacket>>,
    waker: Arc<UdpSocket>,
    target: SocketAddr,
    /// Set by the shard before it blocks; whoever clears it owes the shard a wake-up.
    asleep: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Mailbox {
    /// Queues a command, waking the shard if it sleeps.
    pub(crate) fn send(&self, command: Command) -> Result<(), Refused> {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared
                    .counters
                    .commands_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(Refused::Closed),
        }
        self.wake_if_asleep();
        Ok(())
    }

    /// Queues a batch of piped packets; false when it was dropped (the queue is full, or the
    /// shard stopped).
    fn send_pipe(&self, batch: Vec<PipedPacket>) -> bool {
        if self.pipes.try_send(batch).is_err() {
            return false;
        }
        self.wake_if_asleep();
        true
    }

    fn wake_if_asleep(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wake();
        }
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
        events: Arc<EventBus>,
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
            census: Mutex::new(Vec::new()),
        });
        let (commands, command_rx) = std::sync::mpsc::sync_channel(COMMAND_QUEUE);
        let (pipes, pipe_rx) = std::sync::mpsc::sync_channel(PIPE_QUEUE);
        let mut target = local_addr;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let mailbox = Mailbox {
            commands,
            pipes,
            waker,
            target,
            asleep: Arc::new(AtomicBool::new(false)),
            shared: Arc::clone(&shared),
        };
        let engine = Engine::new(EngineConfig {
            index,
            shard_count: config.shards,
            local_addr,
            tcp_addr,
            ice_address: config.ice_address,
            ice_timeouts: (config.ice_disconnected_timeout, config.ice_failed_timeout),
        });
        let receive_buffer = crate::recv::enlarge_receive_buffer(&socket);
        tracing::debug!(shard = index, ?receive_buffer, "UDP receive buffer");
        if !crate::recv::enable_timestamps(&socket) {
            tracing::warn!(
                shard = index,
                "no kernel receive timestamps: arrival times are taken when datagrams are read"
            );
        }
        let io = Io {
            index,
            udp: socket,
            listener,
            conns: Vec::new(),
            control: crate::recv::control_buffer(),
            send_failed: LogThrottle::default(),
            receive_failed: LogThrottle::default(),
        };
        let shard = Shard {
            index,
            shared: Arc::clone(&shared),
            engine,
            events,
            mailboxes: Vec::new(),
            sinks: HashMap::new(),
            asleep: Arc::clone(&mailbox.asleep),
            commands: command_rx,
            pipes: pipe_rx,
            next_command: None,
            next_batch: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("sfu-shard-{index}"))
            .spawn(move || shard.run(io))
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

    /// Hands a command to the shard, waking it if needed.
    pub(crate) fn send(&self, command: Command) -> Result<(), Refused> {
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

    /// The subscribers as the shard's last review saw them.
    pub(crate) fn census(&self) -> Vec<crate::stats::SubscriberStatus> {
        self.shared
            .census
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    /// Control-message space for the kernel's receive timestamps.
    control: Vec<u8>,
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

/// What became of a round's forwarded media.
#[derive(Debug, Default, PartialEq, Eq)]
struct MediaSent {
    /// `sendmmsg` calls.
    calls: usize,
    /// Packets dropped because the send buffer was full.
    dropped: usize,
    /// Packets the socket refused (an unreachable destination, ...).
    failed: usize,
}

/// Messages per `sendmmsg` call.
const SEND_BATCH: usize = 32;

/// Unsent bytes a TCP connection may hold before it is closed as stuck.
const MAX_TCP_BACKLOG: usize = 4 << 20;
/// The shared buffer datagrams are read into (see [`Shard::read_udp`]): a new one every ~200
/// datagrams.
const RECEIVE_POOL: usize = 256 * 1024;
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

    /// Sends a round's forwarded media: UDP in batches of up to [`SEND_BATCH`] per `sendmmsg`
    /// (a partial send goes on from where it stopped), ICE-TCP framed one by one. A full send
    /// buffer drops the rest of the round, counted.
    fn send_media(
        &mut self,
        media: &MediaOut,
        headers: &mut MultiHeaders<SockaddrStorage>,
    ) -> MediaSent {
        let packets = media.packets();
        let mut sent = MediaSent::default();
        let mut i = 0;
        while i < packets.len() {
            if packets[i].protocol == TransportProtocol::TCP {
                self.send_tcp(media.bytes(&packets[i]), packets[i].to);
                i += 1;
                continue;
            }
            let run = packets[i..]
                .iter()
                .take(SEND_BATCH)
                .take_while(|p| p.protocol != TransportProtocol::TCP)
                .count();
            let batch = &packets[i..i + run];
            let slices: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|k| {
                [IoSlice::new(
                    batch.get(k).map_or(&[][..], |p| media.bytes(p)),
                )]
            });
            let addrs: [Option<SockaddrStorage>; SEND_BATCH] =
                std::array::from_fn(|k| batch.get(k).map(|p| SockaddrStorage::from(p.to)));
            sent.calls += 1;
            let result = sendmmsg(
                self.udp.as_raw_fd(),
                headers,
                slices[..run].iter(),
                &addrs[..run],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::empty(),
            )
            .map(|results| results.count());
            match result {
                Ok(n) if n > 0 => i += n,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                    sent.dropped += packets[i..]
                        .iter()
                        .filter(|p| p.protocol != TransportProtocol::TCP)
                        .count();
                    for p in packets[i..]
                        .iter()
                        .filter(|p| p.protocol == TransportProtocol::TCP)
                    {
                        self.send_tcp(media.bytes(p), p.to);
                    }
                    break;
                }
                Err(err) => {
                    // The first message was refused: it is skipped.
                    sent.failed += 1;
                    if let Some(held) = self.send_failed.allow(Instant::now()) {
                        tracing::debug!(shard = self.index, error = %err, to = %packets[i].to, held, "UDP send failed");
                    }
                    i += 1;
                }
            }
        }
        sent
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

/// The shard thread's state: its engine and what carries out the engine's outputs.
struct Shard {
    index: usize,
    shared: Arc<Shared>,
    engine: Engine,
    events: Arc<EventBus>,
    /// Every shard's mailbox, in shard order (empty until the handle sends them).
    mailboxes: Vec<Mailbox>,
    /// Queues of the in-process consumers with tracks on this shard.
    sinks: HashMap<LocalConsumerId, LocalSink>,
    asleep: Arc<AtomicBool>,
    commands: Receiver<Command>,
    pipes: Receiver<Vec<PipedPacket>>,
    /// Taken from a queue while checking whether it had anything, served next round.
    next_command: Option<Command>,
    next_batch: Option<Vec<PipedPacket>>,
}

impl Shard {
    fn run(mut self, mut io: Io) {
        let index = self.index;
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut tcp_buf = vec![0u8; 64 * 1024];
        let mut pool = BytesMut::new();
        // `sendmmsg`'s message headers, reused (made here: they hold raw pointers, so they stay
        // on the shard's thread).
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SEND_BATCH, None);
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
            self.guarded(|e| e.handle_timeout(now));
            self.guarded(|e| e.process(now));
            self.publish_counters();
            self.carry_out(&mut io, &mut headers);
            io.conns.retain(|c| !c.closed);

            let wait = self
                .engine
                .poll_timeout()
                .map_or(MAX_WAIT, |t| t.saturating_duration_since(Instant::now()))
                .clamp(MIN_WAIT, MAX_WAIT);
            // Asleep from here: what is queued from now on comes with a wake-up; what was queued
            // before is seen now, and the sockets are then only looked at, not waited on.
            self.asleep.store(true, Ordering::SeqCst);
            let queued = self.peek_queues();
            let ready = wait_ready(&io, if queued { Duration::ZERO } else { wait });
            self.asleep.store(false, Ordering::SeqCst);
            if ready.udp {
                self.read_udp(&mut io, &mut pool);
            }
            if ready.listener {
                io.accept();
            }
            if ready.tcp {
                self.read_tcp(&mut io, &mut tcp_buf);
            }
            self.serve_queues();
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
        }
        // Account for what is still queued, so that stopping loses no count.
        while let Ok((len, from)) = io.udp.recv_from(&mut buf) {
            if len > 0 {
                self.datagram(&buf[..len], from, TransportProtocol::UDP, Instant::now());
            }
        }
        tracing::debug!(shard = index, "shard stopped");
    }

    /// Whether a command or a pipe batch waits (one of each is taken out to know).
    fn peek_queues(&mut self) -> bool {
        if self.next_command.is_none() {
            self.next_command = self.commands.try_recv().ok();
        }
        if self.next_batch.is_none() {
            self.next_batch = self.pipes.try_recv().ok();
        }
        self.next_command.is_some() || self.next_batch.is_some()
    }

    /// Serves up to a round's budget of commands and pipe batches.
    fn serve_queues(&mut self) {
        for _ in 0..COMMANDS_PER_ROUND {
            let Some(command) = self
                .next_command
                .take()
                .or_else(|| self.commands.try_recv().ok())
            else {
                break;
            };
            self.command(command);
        }
        for _ in 0..PIPE_BATCHES_PER_ROUND {
            let Some(batch) = self
                .next_batch
                .take()
                .or_else(|| self.pipes.try_recv().ok())
            else {
                break;
            };
            let now = Instant::now();
            self.guarded(|e| e.handle_shard_message(ShardMessage::Packets(batch), now));
        }
    }

    fn command(&mut self, command: Command) {
        if let Command::Mailboxes(mailboxes) = command {
            self.mailboxes = mailboxes;
            return;
        }
        let now = Instant::now();
        if let Some(Some((id, sink))) = self.guarded(|e| e.handle_command(command, now)) {
            self.sinks.insert(id, sink);
        }
    }

    /// Reads up to [`UDP_BATCH`] datagrams, each into the next slice of `pool` (a buffer shared
    /// by the datagrams read from it, renewed when used up), handed to the engine without a
    /// copy.
    fn read_udp(&mut self, io: &mut Io, pool: &mut BytesMut) {
        for _ in 0..UDP_BATCH {
            if pool.len() < MAX_DATAGRAM {
                *pool = BytesMut::zeroed(RECEIVE_POOL);
            }
            let buf = &mut pool[..MAX_DATAGRAM];
            match crate::recv::recv(&io.udp, buf, &mut io.control, Instant::now()) {
                // An empty datagram is a wake-up: stop, or commands to read.
                Ok((0, _, _)) => {}
                Ok((len, from, arrival)) => {
                    let datagram = pool.split_to(len);
                    self.received(datagram, from, TransportProtocol::UDP, arrival);
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
                    self.shared
                        .counters
                        .socket_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(held) = io.receive_failed.allow(Instant::now()) {
                        tracing::warn!(shard = self.index, error = %e, held, "UDP receive failed");
                    }
                    break;
                }
            }
        }
    }

    fn read_tcp(&mut self, io: &mut Io, buf: &mut [u8]) {
        let mut frames = Vec::new();
        for conn in &mut io.conns {
            conn.flush();
            conn.read(buf, |packet, from| frames.push((packet.to_vec(), from)));
        }
        for (packet, from) in frames {
            self.datagram(&packet, from, TransportProtocol::TCP, Instant::now());
        }
    }

    /// One datagram (or ICE-TCP frame) into the engine, counted.
    /// `arrival`: when the kernel received it (for UDP, when known), else when it was read.
    fn datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        protocol: TransportProtocol,
        arrival: Instant,
    ) {
        self.received(BytesMut::from(data), from, protocol, arrival);
    }

    /// [`Shard::datagram`] for a datagram read into a buffer of its own.
    fn received(
        &mut self,
        data: BytesMut,
        from: SocketAddr,
        protocol: TransportProtocol,
        arrival: Instant,
    ) {
        let counters = &self.shared.counters;
        counters.packets_received.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let known = self.guarded(|e| e.handle_received(data, from, protocol, arrival));
        if known != Some(true) {
            self.shared
                .counters
                .packets_dropped_unknown_peer
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Carries out what the engine asked for: events, messages to other shards, items for
    /// in-process consumers, then the datagrams.
    fn carry_out(&mut self, io: &mut Io, headers: &mut MultiHeaders<SockaddrStorage>) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Event(event) => self.events.publish(event),
                Output::ToShard { shard, message } => self.send_to_shard(shard, message),
                Output::Local { consumer, item } => {
                    let delivered = self.sinks.get_mut(&consumer).map(|s| s.deliver(item));
                    if delivered == Some(Delivery::Closed) {
                        self.sinks.remove(&consumer);
                        self.guarded(|e| e.remove_local(consumer));
                    }
                }
                Output::LocalEnd { consumer } => {
                    self.sinks.remove(&consumer);
                }
                Output::Census(census) => {
                    *self.shared.census.lock().unwrap_or_else(|p| p.into_inner()) = census;
                }
            }
        }
        for sink in self.sinks.values_mut() {
            sink.flush();
        }
        while let Some(transmit) = self.guarded(Engine::poll_transmit).flatten() {
            io.send(&transmit.data, transmit.to, transmit.protocol);
        }
        let media = self.engine.media_out();
        if !media.is_empty() {
            let sent = io.send_media(media, headers);
            media.clear();
            let c = &self.shared.counters;
            c.media_send_dropped
                .fetch_add(sent.dropped as u64, Ordering::Relaxed);
            c.media_send_calls
                .fetch_add(sent.calls as u64, Ordering::Relaxed);
            c.socket_errors
                .fetch_add(sent.failed as u64, Ordering::Relaxed);
        }
    }

    fn send_to_shard(&mut self, shard: usize, message: ShardMessage) {
        let Some(mailbox) = self.mailboxes.get(shard) else {
            return;
        };
        match message {
            ShardMessage::Packets(batch) => {
                if !mailbox.send_pipe(batch) {
                    self.shared
                        .counters
                        .pipe_batches_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            control => {
                if let Err(refused) = mailbox.send(Command::Shard(control)) {
                    tracing::warn!(
                        shard = self.index,
                        to = shard,
                        ?refused,
                        "pipe message lost"
                    );
                }
            }
        }
    }

    /// Copies the engine's counters into the shared ones (before the round's packets leave, so
    /// a peer that got them sees them counted).
    fn publish_counters(&self) {
        let (c, e) = (&self.shared.counters, &self.engine.counters);
        for (counter, value) in [
            (&c.rtp_received, e.rtp_in),
            (&c.rtp_forwarded, e.rtp_forwarded),
            (&c.rtp_piped, e.rtp_piped),
            (&c.keyframe_requests_sent, e.keyframe_requests_sent),
            (&c.forward_errors, e.forward_errors),
            (&c.rtp_refused, e.rtp_refused),
            (&c.rtp_paused, e.rtp_paused),
            (&c.rtp_retransmitted, e.rtp_retransmitted),
            (&c.nacks_unanswered, e.nacks_unanswered),
            (&c.signaling_refused, e.signaling_refused),
            (&c.server_offer_errors, e.server_offer_errors),
            (&c.datagrams_refused, e.datagrams_refused),
            (&c.layer_switches, e.layer_switches),
            (&c.sender_reports, e.sender_reports),
        ] {
            counter.store(value, Ordering::Relaxed);
        }
    }

    /// Runs engine work; a panic in it closes the room it was working on (the shard and its
    /// other rooms go on) and returns `None`.
    fn guarded<T>(&mut self, work: impl FnOnce(&mut Engine) -> T) -> Option<T> {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut self.engine)));
        let payload = match result {
            Ok(value) => {
                self.engine.clear_scope();
                return Some(value);
            }
            Err(payload) => payload,
        };
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        match self.engine.faulty_room() {
            Some(room) => {
                tracing::error!(shard = self.index, room = %room, reason = %reason, "room closed after a fault");
                // Counted before the room's events go out, so whoever sees them sees the count.
                self.shared
                    .counters
                    .rooms_closed_by_fault
                    .fetch_add(1, Ordering::Relaxed);
                let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.engine
                        .close_room(&room, CloseReason::Fault(reason.clone()))
                }));
                if closed.is_err() {
                    tracing::error!(shard = self.index, room = %room, "closing the faulty room failed too");
                }
            }
            None => tracing::error!(shard = self.index, reason = %reason, "fault outside any room"),
        }
        self.engine.clear_scope();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        Engine::new(EngineConfig {
            index: 0,
            shard_count: 1,
            local_addr: addr,
            tcp_addr: None,
            ice_address: addr.ip(),
            ice_timeouts: (Duration::from_secs(5), Duration::from_secs(25)),
        })
    }

    /// A shard state around its queues (no thread, no socket of its own but the waker's).
    fn shard(commands: usize, pipes: usize) -> (Shard, Mailbox) {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let target = socket.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            census: Mutex::new(Vec::new()),
        });
        let (commands_tx, commands_rx) = std::sync::mpsc::sync_channel(commands);
        let (pipes_tx, pipes_rx) = std::sync::mpsc::sync_channel(pipes);
        let asleep = Arc::new(AtomicBool::new(false));
        let mailbox = Mailbox {
            commands: commands_tx,
            pipes: pipes_tx,
            waker: socket,
            target,
            asleep: Arc::clone(&asleep),
            shared: Arc::clone(&shared),
        };
        let shard = Shard {
            index: 0,
            shared,
            engine: engine(),
            events: Arc::new(EventBus::default()),
            mailboxes: Vec::new(),
            sinks: HashMap::new(),
            asleep,
            commands: commands_rx,
            pipes: pipes_rx,
            next_command: None,
            next_batch: None,
        };
        (shard, mailbox)
    }

    fn leave() -> Command {
        Command::Leave {
            peer: crate::PeerId::from_u64(1),
        }
    }

    #[test]
    fn a_full_command_queue_refuses_and_counts() {
        let (shard, mailbox) = shard(2, 1);
        assert_eq!(mailbox.send(leave()), Ok(()));
        assert_eq!(mailbox.send(leave()), Ok(()));
        assert_eq!(mailbox.send(leave()), Err(Refused::Busy));
        assert_eq!(shard.shared.counters.snapshot().commands_refused, 1);
        drop(shard);
        assert_eq!(mailbox.send(leave()), Err(Refused::Closed));
    }

    #[test]
    fn a_full_pipe_queue_drops_the_batch() {
        let (_shard, mailbox) = shard(1, 1);
        assert!(mailbox.send_pipe(Vec::new()));
        assert!(!mailbox.send_pipe(Vec::new()));
    }

    #[test]
    fn a_round_serves_a_bounded_share_of_what_is_queued_and_does_not_wait_on_the_sockets() {
        let (mut shard, mailbox) = shard(1000, 1000);
        for _ in 0..3 * COMMANDS_PER_ROUND {
            mailbox.send(leave()).unwrap();
        }
        for _ in 0..3 * PIPE_BATCHES_PER_ROUND {
            assert!(mailbox.send_pipe(Vec::new()));
        }
        // Queued work means the round polls its sockets without waiting.
        assert!(shard.peek_queues());
        shard.serve_queues();
        let left_commands = shard.commands.try_iter().count();
        let left_batches = shard.pipes.try_iter().count();
        assert_eq!(left_commands, 2 * COMMANDS_PER_ROUND);
        assert_eq!(left_batches, 2 * PIPE_BATCHES_PER_ROUND);
        assert!(!shard.peek_queues(), "all taken out by now");
    }
}
