//! Entry points for the fuzz targets (`sfu/fuzz`) and their regression tests: a shard's engine
//! driven without sockets, the way the shard thread drives it, with input from the network.
//! Not part of the API. Each entry point panics when an invariant breaks (a panic is a bug:
//! the shard would close the room it was working on).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rtc::shared::TransportProtocol;
use rtc::shared::tcp_framing::TcpFrameDecoder;
use tokio::sync::oneshot;

use crate::engine::command::Command;
use crate::engine::{Engine, EngineConfig};
use crate::sdp_check::{self, Role};
use crate::{JoinError, PeerId, PeerRights, RoomId, SfuConfig};

/// The longest one offer or one datagram may take; far more than it takes (a slow fuzzing
/// build included): beyond it, something loops.
pub const TIME_BOUND: Duration = Duration::from_secs(2);

/// The shard's address in these tests.
const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);
/// The joined peer's address.
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50_000);
/// Another address, known to no peer.
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 50_001);

/// A browser's offer (audio and video, bundled), accepted by the engine.
pub const OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:- audio-1\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=ssrc:1001 cname:fuzz\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:- video-1\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc:2002 cname:fuzz\r\n";

/// A shard's engine with no socket around it.
struct Harness {
    engine: Engine,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let config = SfuConfig::default();
        let engine = Engine::new(EngineConfig {
            index: 0,
            shard_count: 1,
            local_addr: LOCAL,
            tcp_addr: Some(LOCAL),
            ice_address: config.ice_address,
            ice_timeouts: (config.ice_disconnected_timeout, config.ice_failed_timeout),
        });
        Harness {
            engine,
            now: Instant::now(),
        }
    }

    /// Runs `command` on the engine, then a round of its work, as the shard does.
    fn command(&mut self, command: Command) {
        self.engine.handle_command(command, self.now);
        self.round();
    }

    /// A round of the shard's loop: timers, processing, sending. How many datagrams went out.
    fn round(&mut self) -> usize {
        self.engine.handle_timeout(self.now);
        self.engine.process(self.now);
        while self.engine.poll_output().is_some() {}
        let mut sent = 0;
        while self.engine.poll_transmit().is_some() {
            sent += 1;
        }
        let media = self.engine.media_out();
        sent += media.packets().len();
        media.clear();
        sent
    }

    fn join(&mut self, peer: PeerId, offer: String) -> Result<String, JoinError> {
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::Join {
            room: RoomId::from("room"),
            peer,
            offer,
            rights: PeerRights::PUBLISHER,
            reply,
        });
        answer.try_recv().expect("the engine answers at once")
    }

    fn offer(&mut self, peer: PeerId, sdp: String) -> Result<String, JoinError> {
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::Offer { peer, sdp, reply });
        answer.try_recv().expect("the engine answers at once")
    }
}

/// Runs `work`, which must end within [`TIME_BOUND`].
fn bounded<T>(what: &str, work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = work();
    let took = start.elapsed();
    assert!(took < TIME_BOUND, "{what} took {took:?}");
    out
}

/// Arbitrary bytes as an SDP offer: through the checks alone, as a peer's first offer (joining),
/// and as a renegotiation of a connected peer. Whatever it is: no panic, an answer (or a
/// refusal) within [`TIME_BOUND`], an answer that is a description, and a renegotiation refused
/// after the checks passed (by `rtc`) leaves the connection able to negotiate again.
///
/// The engine and its connected peer are kept from one input to the next while inputs are
/// refused (a refused offer changes nothing: that is what is checked), and made again after one
/// is accepted.
pub fn sdp_offer(data: &[u8]) {
    thread_local! {
        /// The engine, its connected peer, and the next peer id to use.
        static CONNECTED: std::cell::RefCell<Option<(Harness, PeerId, PeerId)>> =
            const { std::cell::RefCell::new(None) };
    }
    let sdp = String::from_utf8_lossy(data).into_owned();
    let checked = bounded("checking", || sdp_check::check(&sdp, Role::Offer));
    let (mut h, peer, newcomer) = CONNECTED.with_borrow_mut(Option::take).unwrap_or_else(|| {
        let mut h = Harness::new();
        bounded("joining", || h.join(PeerId::from_u64(1), OFFER.to_owned()))
            .expect("the reference offer joins");
        (h, PeerId::from_u64(1), PeerId::from_u64(2))
    });
    let joined = bounded("joining", || h.join(newcomer, sdp.clone()));
    match &joined {
        Ok(answer) => {
            sdp_check::describe(answer).expect("the answer is a description");
            h.command(Command::Leave { peer: newcomer });
        }
        Err(e) => assert!(
            checked.is_ok() || matches!(e, JoinError::BadOffer(_)),
            "a refused offer failed otherwise: {e:?}"
        ),
    }

    let renegotiated = bounded("renegotiating", || h.offer(peer, sdp.clone()));
    let keep = match renegotiated {
        Ok(answer) => {
            sdp_check::describe(&answer).expect("the answer is a description");
            false
        }
        Err(_) if checked.is_err() => true,
        Err(_) => {
            // Refused by `rtc` after the checks: rolled back, the connection negotiates as before.
            let again = bounded("renegotiating", || h.offer(peer, OFFER.to_owned()));
            assert!(again.is_ok(), "wedged after a refused offer: {again:?}");
            true
        }
    };
    if keep {
        CONNECTED
            .with_borrow_mut(|c| *c = Some((h, peer, PeerId::from_u64(newcomer.as_u64() + 1))));
    }
}

/// How one record of [`datagrams`] input arrives.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// A UDP datagram from the joined peer's address.
    FromPeer,
    /// A UDP datagram from an address no peer has.
    FromStranger,
    /// Bytes of an ICE-TCP stream from the peer (RFC 4571 framing, split anywhere).
    TcpStream,
}

/// Arbitrary datagrams into the engine, as the shard hands them over: after a peer joined and
/// its address is known and its ICE connected, records of `[flags, length (2 bytes, big-endian),
/// bytes...]` (flags: how it arrives, and how far time moves on), each followed by a round of the
/// engine's work. STUN, DTLS, RTP, RTCP or
/// junk: no panic, each datagram handled within [`TIME_BOUND`].
pub fn datagrams(data: &[u8]) {
    let mut h = Harness::new();
    connect_ice(&mut h);

    let mut tcp = TcpFrameDecoder::new();
    let mut rest = data;
    while let [flags, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let arrival = match flags & 0b11 {
            1 => Arrival::FromStranger,
            2 => Arrival::TcpStream,
            _ => Arrival::FromPeer,
        };
        // Up to 31 steps of 100 ms: timers (ICE consent, keyframe retries) come due.
        h.now += Duration::from_millis(100) * u32::from(flags >> 3);
        bounded("a datagram", || {
            match arrival {
                Arrival::FromPeer => {
                    h.engine
                        .handle_datagram(bytes, PEER, TransportProtocol::UDP, h.now);
                }
                Arrival::FromStranger => {
                    let known =
                        h.engine
                            .handle_datagram(bytes, STRANGER, TransportProtocol::UDP, h.now);
                    // A stranger is routed only by a binding request naming a peer's ufrag.
                    assert!(!known || bytes.len() >= 20, "a stranger was routed");
                }
                Arrival::TcpStream => {
                    tcp.extend_from_slice(bytes);
                    while let Some(frame) = tcp.next_packet() {
                        h.engine
                            .handle_datagram(&frame, PEER, TransportProtocol::TCP, h.now);
                    }
                }
            }
            h.round();
        });
    }
}

/// Joins peer 1 with [`OFFER`] from [`PEER`] and connects its ICE as the peer would: a
/// nominating connectivity check to the SFU (its address becomes known), and a success response
/// to the SFU's own check. What follows reaches DTLS.
fn connect_ice(h: &mut Harness) {
    let answer = h
        .join(PeerId::from_u64(1), OFFER.to_owned())
        .expect("the reference offer joins");
    let (ufrag, pwd) = sdp_check::describe(&answer)
        .ok()
        .and_then(|d| d.ice)
        .expect("the answer has ICE credentials");
    let check = binding_request(&ufrag, &pwd);
    // Checked again once the SFU's own check succeeded: the nomination counts on a valid pair.
    for _ in 0..3 {
        assert!(
            h.engine
                .handle_datagram(&check, PEER, TransportProtocol::UDP, h.now),
            "the peer's check is routed to it"
        );
        h.engine.handle_timeout(h.now);
        h.engine.process(h.now);
        while h.engine.poll_output().is_some() {}
        let mut out = Vec::new();
        while let Some(t) = h.engine.poll_transmit() {
            out.push(t.data.to_vec());
        }
        for datagram in out {
            if let Some(response) = binding_success(&datagram) {
                h.engine
                    .handle_datagram(&response, PEER, TransportProtocol::UDP, h.now);
            }
        }
        h.now += Duration::from_millis(10);
    }
}

/// The peer's success response to the SFU's connectivity check `request` (signed with the
/// peer's ICE password, the one in [`OFFER`]); `None` if it is not a binding request.
fn binding_success(request: &[u8]) -> Option<Vec<u8>> {
    use rtc::stun::fingerprint::FINGERPRINT;
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message};
    use rtc::stun::xoraddr::XorMappedAddress;
    let mut m = Message::new();
    m.unmarshal_binary(request).ok()?;
    if m.typ != BINDING_REQUEST {
        return None;
    }
    let crypto = rtc::crypto::default_provider().ok()?;
    let mut response = Message::new();
    response
        .build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(m.transaction_id),
            Box::new(XorMappedAddress {
                ip: PEER.ip(),
                port: PEER.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                "P2uYro0UCOQ4zxjKXaWCBui1".to_owned(),
                crypto.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])
        .ok()?;
    Some(response.raw)
}

/// The peer's nominating connectivity check (a STUN binding request with USE-CANDIDATE, signed
/// with the SFU's ICE password), to the SFU's ICE username fragment `ufrag`.
pub(crate) fn binding_request(ufrag: &str, pwd: &str) -> Vec<u8> {
    use rtc::ice::attributes::control::AttrControlling;
    use rtc::ice::attributes::priority::PriorityAttr;
    use rtc::ice::attributes::use_candidate::UseCandidateAttr;
    use rtc::stun::attributes::ATTR_USERNAME;
    use rtc::stun::fingerprint::FINGERPRINT;
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{BINDING_REQUEST, Message, TransactionId};
    use rtc::stun::textattrs::Username;
    let crypto = rtc::crypto::default_provider().expect("a crypto provider");
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId([7; 12])),
        Box::new(Username::new(ATTR_USERNAME, format!("{ufrag}:EsAw"))),
        Box::<UseCandidateAttr>::default(),
        Box::new(AttrControlling(1)),
        Box::new(PriorityAttr(2_130_706_431)),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            pwd.to_owned(),
            crypto.crypto(),
        )),
        Box::new(FINGERPRINT),
    ])
    .expect("a binding request");
    m.raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_offer_joins_and_renegotiates() {
        sdp_offer(OFFER.as_bytes());
    }

    #[test]
    fn junk_offers_are_refused_without_wedging() {
        for junk in [
            &b""[..],
            b"v=0\r\n",
            b"\xff\xfe\x00garbage",
            &OFFER.as_bytes()[..OFFER.len() / 3],
        ] {
            sdp_offer(junk);
        }
    }

    /// The datagram harness reaches DTLS: once ICE is connected, the peer's ClientHello (from a
    /// real webrtc-rs client) is answered.
    #[test]
    fn a_client_hello_reaches_dtls() {
        let seed = include_bytes!("../fuzz/seeds/datagram/dtls_handshake.bin");
        let hello = &seed[3..3 + usize::from(u16::from_be_bytes([seed[1], seed[2]]))];
        assert_eq!(hello[..1], [22], "a DTLS handshake record");
        let mut h = Harness::new();
        connect_ice(&mut h);
        assert!(
            h.engine
                .handle_datagram(hello, PEER, TransportProtocol::UDP, h.now)
        );
        assert!(h.round() > 0, "the ClientHello is answered");
    }

    /// The fuzz targets' seeds (`sfu/fuzz/seeds`) run here too: a real client's DTLS handshake
    /// (captured from a webrtc-rs client), STUN, RTP, RTCP, ICE-TCP; offers.
    #[test]
    fn the_fuzz_seeds_run() {
        datagrams(include_bytes!("../fuzz/seeds/datagram/dtls_handshake.bin"));
        datagrams(include_bytes!("../fuzz/seeds/datagram/kinds.bin"));
        datagrams(include_bytes!("../fuzz/seeds/datagram/rtp.bin"));
        sdp_offer(include_bytes!("../fuzz/seeds/sdp_offer/browser_offer.sdp"));
        sdp_offer(include_bytes!("../fuzz/seeds/sdp_offer/renegotiation.sdp"));
        sdp_offer(include_bytes!("../fuzz/seeds/sdp_offer/data_channel.sdp"));
    }

    #[test]
    fn datagrams_of_every_kind_are_survived() {
        let mut input = Vec::new();
        let records: [(u8, &[u8]); 6] = [
            (0, &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]),
            (0, &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            (0b1000, &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xde]),
            (1, &[0x81, 200, 0, 1, 0, 0, 0, 1]),
            (2, &[0, 4, 0xde, 0xad]),
            (2, &[0xbe, 0xef, 0xff]),
        ];
        for (flags, bytes) in records {
            input.push(flags);
            input.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            input.extend_from_slice(bytes);
        }
        datagrams(&input);
    }
}
