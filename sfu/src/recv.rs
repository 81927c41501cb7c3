//! Receiving UDP datagrams with the time the kernel received them.
//!
//! The arrival times the SFU reports in its transport-wide congestion feedback (and that feed
//! publishers' bandwidth estimators) must be the network's, not the shard thread's: on a busy
//! machine the thread reads a burst of datagrams late, all at one instant, and stamping them then
//! adds a delay trend the path does not have (a publisher's browser then lowers its bitrate and
//! drops its top simulcast layer). `SO_TIMESTAMPNS` gives each datagram its receive time in the
//! kernel; it is mapped onto the monotonic clock the engine uses. (Linux turns stamping on for
//! the system a moment after the first socket asks; datagrams read before are stamped when read.)

use std::io;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

/// A kernel timestamp older than this (a clock step, or a datagram queued for very long) is not
/// trusted: the datagram is stamped when read.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Asks the kernel to timestamp `socket`'s datagrams. `false` when it cannot (they are then
/// stamped when read).
pub(crate) fn enable_timestamps(socket: &UdpSocket) -> bool {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).is_ok()
}

/// Receive buffer asked for each shard's socket: a shard thread descheduled for a moment on a
/// busy machine must not lose datagrams (the default, about 200 KiB, holds well under a second
/// of a few publishers' simulcast).
pub(crate) const RECEIVE_BUFFER: usize = 4 << 20;

/// Enlarges `socket`'s receive buffer to [`RECEIVE_BUFFER`] (beyond the system's maximum when the
/// process may), returning the size the kernel reports.
pub(crate) fn enlarge_receive_buffer(socket: &UdpSocket) -> Option<usize> {
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
    nix::sys::socket::getsockopt(socket, sockopt::RcvBuf).ok()
}

/// Space for one timestamp control message.
pub(crate) fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec)
}

/// Reads one datagram into `buf`: its length, source and arrival time (the kernel's when known,
/// else `now`).
pub(crate) fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    control: &mut [u8],
    now: Instant,
) -> io::Result<(usize, SocketAddr, Instant)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let from = msg
        .address
        .as_ref()
        .and_then(socket_addr)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut arrival = now;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                arrival = arrival_of(ts, SystemTime::now(), now);
            }
        }
    }
    Ok((msg.bytes, from, arrival))
}

/// The monotonic instant of a kernel (wall-clock) timestamp, given the wall clock and the
/// monotonic clock read together.
fn arrival_of(ts: TimeSpec, wall_now: SystemTime, now: Instant) -> Instant {
    let Ok(secs) = u64::try_from(ts.tv_sec()) else {
        return now;
    };
    let Ok(nanos) = u32::try_from(ts.tv_nsec()) else {
        return now;
    };
    let received = UNIX_EPOCH + Duration::new(secs, nanos);
    match wall_now.duration_since(received) {
        Ok(age) if age <= MAX_AGE => now.checked_sub(age).unwrap_or(now),
        _ => now,
    }
}

fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    if let Some(v6) = storage.as_sockaddr_in6() {
        return Some(SocketAddr::V6(SocketAddrV6::from(*v6)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram read late is stamped with when it arrived, not when it was read.
    #[test]
    fn a_datagram_read_late_keeps_its_arrival_time() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_timestamps(&socket));
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        // Linux turns receive timestamping on for the system asynchronously (a deferred static
        // key) the first time a socket asks: until then a datagram is stamped when read. Wait
        // until a probe read 2 ms late comes back stamped on arrival.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            sender
                .send_to(b"probe", socket.local_addr().unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
            let read_at = Instant::now();
            let (_, _, arrival) = recv(&socket, &mut buf, &mut control, read_at).unwrap();
            if read_at.duration_since(arrival) >= Duration::from_millis(1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the kernel never stamped a datagram"
            );
        }
        sender
            .send_to(b"hello", socket.local_addr().unwrap())
            .unwrap();
        let sent = Instant::now();
        // The reader is late (a busy shard thread): 50 ms pass before the read.
        std::thread::sleep(Duration::from_millis(50));
        let read_at = Instant::now();
        let (len, from, arrival) = recv(&socket, &mut buf, &mut control, read_at).unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(from, sender.local_addr().unwrap());
        assert!(
            read_at.duration_since(arrival) >= Duration::from_millis(45),
            "stamped {:?} before the read",
            read_at.duration_since(arrival)
        );
        assert!(
            arrival <= sent + Duration::from_millis(5),
            "about when it was sent, on loopback"
        );
    }

    #[test]
    fn the_receive_buffer_is_enlarged() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = nix::sys::socket::getsockopt(&socket, sockopt::RcvBuf).unwrap();
        let after = enlarge_receive_buffer(&socket).unwrap();
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn a_timestamp_from_the_future_or_long_ago_is_not_trusted() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let at = |d: Duration, future: bool| {
            let t = if future { wall + d } else { wall - d };
            let since = t.duration_since(UNIX_EPOCH).unwrap();
            TimeSpec::new(since.as_secs() as i64, i64::from(since.subsec_nanos()))
        };
        assert_eq!(
            arrival_of(at(Duration::from_millis(5), true), wall, now),
            now
        );
        assert_eq!(
            arrival_of(at(Duration::from_secs(5), false), wall, now),
            now
        );
        assert_eq!(
            arrival_of(at(Duration::from_millis(20), false), wall, now),
            now - Duration::from_millis(20)
        );
    }

    #[test]
    fn without_timestamps_a_datagram_is_stamped_when_read() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"x", socket.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        let mut control = control_buffer();
        let now = Instant::now();
        // Non-blocking read: wait for the datagram to be there.
        let got = loop {
            match recv(&socket, &mut buf, &mut control, now) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(got.2, now);
    }
}
