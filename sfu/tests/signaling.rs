//! Signaling that refuses what cannot work and never wedges a connection: offers checked before
//! they are applied (a refused renegotiation leaves the connection negotiating as before), an
//! offer from a new connection refused, answers only to a pending server offer, candidates
//! that parse. Real webrtc-rs peers; their descriptions tampered with as a hostile client would.

mod support;

use std::sync::Arc;

use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use sfu::{AnswerError, CandidateError, JoinError, PeerId, Sfu};
use support::{Client, WAIT, start_sfu};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Waits for the next RTP packet of a remote track.
async fn next_packet(track: &Arc<dyn TrackRemote>) {
    loop {
        match tokio::time::timeout(WAIT, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(_))) => return,
            Ok(Some(_)) => {}
            _ => panic!("no media"),
        }
    }
}

/// A client that receives audio and video (two media sections, mids 0 and 1).
async fn two_section_client() -> Client {
    let c = support::client().await;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        c.pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    }
    c
}

/// The client's offer as it would send it now, without applying it (its own state stays as it
/// is: what it sends next is up to the test).
async fn offer_of(c: &Client) -> String {
    c.pc.create_offer(None).await.unwrap().sdp
}

/// A first offer of `c`, with its candidates.
async fn first_offer(c: &mut Client) -> String {
    let offer = c.pc.create_offer(None).await.unwrap();
    c.pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(WAIT, c.gathered.recv())
        .await
        .expect("ICE gathering completes");
    c.pc.local_description().await.unwrap().sdp
}

/// The client renegotiates for real: offers, applies the SFU's answer.
async fn renegotiate(sfu: &Sfu, c: &Client, peer: PeerId) {
    let offer = c.pc.create_offer(None).await.unwrap();
    c.pc.set_local_description(offer).await.unwrap();
    let offer = c.pc.local_description().await.unwrap().sdp;
    let answer = sfu.offer(peer, offer).await.expect("the SFU answers");
    c.pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
}

/// `sdp` without its lines that start with `prefix`.
fn without(sdp: &str, prefix: &str) -> String {
    let out: String = sdp
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect();
    assert_ne!(out, sdp, "{prefix} is in the description");
    out
}

/// `sdp` with each line that starts with `prefix` replaced by `line`.
fn with_lines(sdp: &str, prefix: &str, line: &str) -> String {
    let out: String = sdp
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with(prefix) {
                format!("{line}\r\n")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_ne!(out, sdp, "{prefix} is in the description");
    out
}

/// `sdp` with `from` replaced by `to` once.
fn replaced(sdp: &str, from: &str, to: &str) -> String {
    let out = sdp.replacen(from, to, 1);
    assert_ne!(out, sdp, "{from} is in the description");
    out
}

/// `sdp` cut off in the middle of a line.
fn cut_off(sdp: &str) -> String {
    let mut cut = sdp[..sdp.len() / 2].to_owned();
    while cut.ends_with('\n') || cut.ends_with('\r') {
        cut.pop();
    }
    cut
}

/// The first `a=extmap` id turned into 300.
fn extmap_300(sdp: &str) -> String {
    let at = sdp.find("a=extmap:").expect("an extmap") + "a=extmap:".len();
    let end = at + sdp[at..].find([' ', '/']).unwrap();
    format!("{}300{}", &sdp[..at], &sdp[end..])
}

/// Ways a hostile client writes an offer that cannot work, each with a word the refusal names.
fn bad_offers(offer: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "no ice-ufrag",
            without(offer, "a=ice-ufrag:"),
            "a=ice-ufrag",
        ),
        ("no ice-pwd", without(offer, "a=ice-pwd:"), "a=ice-pwd"),
        ("no mid", without(offer, "a=mid:"), "a=mid"),
        ("extmap id 300", extmap_300(offer), "a=extmap:300"),
        (
            "two sections with mid 0",
            replaced(offer, "a=mid:1", "a=mid:0"),
            "a=mid:0",
        ),
        (
            "a passive DTLS side",
            with_lines(offer, "a=setup:", "a=setup:passive"),
            "a=setup:passive",
        ),
        (
            "an md5 fingerprint",
            with_lines(
                offer,
                "a=fingerprint:",
                "a=fingerprint:md5 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24",
            ),
            "md5",
        ),
        ("cut off halfway", cut_off(offer), "cut off"),
    ]
}

/// The reason of a `BadOffer`; anything else fails the test.
fn bad_offer_reason(case: &str, result: Result<impl std::fmt::Debug, JoinError>) -> String {
    match result {
        Err(JoinError::BadOffer(reason)) => reason,
        other => panic!("{case}: {other:?}"),
    }
}

/// Item 4: a renegotiation without `a=ice-ufrag` is refused, and the connection is not wedged:
/// a publisher joining later reaches the subscriber (server offer, answer, media), and the
/// server offer was made at once (no failed attempt). The subscriber offered audio only, so
/// the publisher's video needs a new media section: only a server offer brings it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renegotiation_leaves_the_connection_working() {
    let (sfu, offers) = start_sfu();
    let mut subscriber = support::client().await;
    subscriber
        .pc
        .add_transceiver_from_kind(
            RtpCodecKind::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let id = support::join(&sfu, &offers, &mut subscriber).await;

    let bad = without(&offer_of(&subscriber).await, "a=ice-ufrag:");
    let reason = bad_offer_reason("no ice-ufrag", sfu.offer(id, bad).await);
    assert!(reason.contains("ice-ufrag"), "{reason}");

    let publisher = support::publisher(&sfu, &offers, &[("", 0x3131_0001)], false).await;
    let send = publisher.send_vp8();
    let track = support::first_track(&mut subscriber).await;
    next_packet(&track).await;
    let stats = sfu.shards()[0].stats; // new API
    assert_eq!(stats.server_offer_errors, 0, "{stats:?}"); // new API
    assert_eq!(stats.signaling_refused, 1, "{stats:?}"); // new API
    send.abort();
    support::shutdown(&sfu).await;
}

/// Item 5: a peer back on a brand-new connection offers through `offer` (not as a restart): the
/// offer names another DTLS certificate and is refused, since DTLS would never complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_from_a_new_connection_is_refused() {
    let (sfu, offers) = start_sfu();
    let (_old, id) = support::subscriber(&sfu, &offers).await;
    let (_new, offer) = support::receiving_offer().await;
    let reason = bad_offer_reason("a new connection", sfu.offer(id, offer).await);
    assert_eq!(reason, "a new connection: send it as a restart");
    support::shutdown(&sfu).await;
}

/// An ICE restart of the same connection (new ICE credentials, same certificate) is not a new
/// connection: it is answered, and the connection goes on to receive media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_of_the_same_connection_is_answered() {
    let (sfu, offers) = start_sfu();
    let (mut subscriber, id) = support::subscriber(&sfu, &offers).await;
    let before = subscriber.pc.local_description().await.unwrap().sdp;
    let offer = subscriber
        .pc
        .create_offer(Some(rtc::peer_connection::configuration::RTCOfferOptions {
            ice_restart: true,
        }))
        .await
        .unwrap();
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find(|l| l.starts_with("a=ice-ufrag:"))
            .map(str::to_owned)
    };
    assert_ne!(ufrag(&offer.sdp), ufrag(&before), "new ICE credentials");
    subscriber.pc.set_local_description(offer).await.unwrap();
    let offer = subscriber.pc.local_description().await.unwrap().sdp;
    let answer = sfu
        .offer(id, offer)
        .await
        .expect("an ICE restart is answered");
    subscriber
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();

    let publisher = support::publisher(&sfu, &offers, &[("", 0x3232_0001)], false).await;
    let send = publisher.send_vp8();
    let track = support::first_track(&mut subscriber).await;
    next_packet(&track).await;
    send.abort();
    support::shutdown(&sfu).await;
}

/// Item 6, joining: each offer that cannot work is refused, its reason naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_offers_that_cannot_work_are_refused() {
    let (sfu, _offers) = start_sfu();
    let mut c = two_section_client().await;
    let offer = first_offer(&mut c).await;
    for (case, bad, named) in bad_offers(&offer) {
        let reason = bad_offer_reason(case, sfu.join("room-1", bad).await);
        assert!(reason.contains(named), "{case}: {reason}");
    }
    // Nothing of them stayed: the untouched offer joins.
    sfu.join("room-1", offer)
        .await
        .expect("the offer as written joins");
    support::shutdown(&sfu).await;
}

/// Item 6, renegotiating: each offer that cannot work (and one that swaps the kinds of its two
/// mids) is refused with its reason, and changes nothing: the next is refused for its own
/// reason, and afterwards a real renegotiation is answered and media arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renegotiations_that_cannot_work_are_refused_and_change_nothing() {
    let (sfu, offers) = start_sfu();
    let mut c = two_section_client().await;
    let id = support::join(&sfu, &offers, &mut c).await;
    let offer = offer_of(&c).await;
    let swapped = offer
        .replacen("m=audio ", "m=swap ", 1)
        .replacen("m=video ", "m=audio ", 1)
        .replacen("m=swap ", "m=video ", 1);
    let mut cases = bad_offers(&offer);
    cases.push(("the kinds of two mids swapped", swapped, "kind"));
    for (case, bad, named) in cases {
        let reason = bad_offer_reason(case, sfu.offer(id, bad).await);
        assert!(reason.contains(named), "{case}: {reason}");
    }
    renegotiate(&sfu, &c, id).await;
    let publisher = support::publisher(&sfu, &offers, &[("", 0x3333_0001)], false).await;
    let send = publisher.send_vp8();
    let track = support::first_track(&mut c).await;
    next_packet(&track).await;
    send.abort();
    support::shutdown(&sfu).await;
}

/// The old calls refuse garbage too: an answer that is no description, a candidate that is no
/// candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_and_candidates_are_refused() {
    let (sfu, offers) = start_sfu();
    let (_c, id) = support::subscriber(&sfu, &offers).await;
    assert!(!sfu.answer(id, "garbage".into()));
    assert!(!sfu.add_ice_candidate(id, "candidate:garbage".into()));
    support::shutdown(&sfu).await;
}

/// Answers only to a pending server offer, and only ones that can work (refused ones leave the
/// offer pending); candidates that parse, for known peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_candidates_are_checked() {
    let (sfu, offers) = start_sfu();
    let mut c = support::client().await;
    c.pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let id = support::connect(&sfu, &mut c, "room-1").await;

    // Unsolicited: no server offer is pending.
    let description = c.pc.local_description().await.unwrap().sdp;
    assert_eq!(
        sfu.answer_checked(id, description.clone()).await,
        Err(AnswerError::NoOfferPending)
    );
    assert_eq!(
        sfu.answer_checked(sfu::PeerId::from_u64(987_654), description)
            .await,
        Err(AnswerError::UnknownPeer)
    );

    // A publisher joins: a server offer waits for this peer.
    let publisher = support::publisher(&sfu, &offers, &[("", 0x3434_0001)], false).await;
    let send = publisher.send_vp8();
    let mut server_offers = offers.register(id);
    let offer = tokio::time::timeout(WAIT, server_offers.recv())
        .await
        .expect("a server offer")
        .unwrap();
    c.pc.set_remote_description(RTCSessionDescription::offer(offer).unwrap())
        .await
        .unwrap();
    let answer = c.pc.create_answer(None).await.unwrap();
    c.pc.set_local_description(answer).await.unwrap();
    let answer = c.pc.local_description().await.unwrap().sdp;

    let md5 = with_lines(
        &answer,
        "a=fingerprint:",
        "a=fingerprint:md5 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24",
    );
    let other_ice = with_lines(&answer, "a=ice-ufrag:", "a=ice-ufrag:someoneelse");
    for (case, bad, named) in [
        ("garbage", "garbage".to_owned(), "description"),
        ("cut off", cut_off(&answer), "cut off"),
        ("an md5 fingerprint", md5, "md5"),
        ("another connection", other_ice, "new connection"),
        ("no mid", without(&answer, "a=mid:"), "a=mid"),
    ] {
        match sfu.answer_checked(id, bad).await {
            Err(AnswerError::BadAnswer(reason)) => {
                assert!(reason.contains(named), "{case}: {reason}")
            }
            other => panic!("{case}: {other:?}"),
        }
    }
    // Still pending: the real answer is taken, once.
    sfu.answer_checked(id, answer.clone())
        .await
        .expect("the answer");
    assert_eq!(
        sfu.answer_checked(id, answer).await,
        Err(AnswerError::NoOfferPending)
    );
    let track = support::first_track(&mut c).await;
    next_packet(&track).await;

    // Candidates.
    assert!(matches!(
        sfu.add_ice_candidate_checked(id, "candidate:garbage".into()),
        Err(CandidateError::BadCandidate(_))
    ));
    let valid = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host".to_owned();
    assert_eq!(
        sfu.add_ice_candidate_checked(sfu::PeerId::from_u64(987_654), valid.clone()),
        Err(CandidateError::UnknownPeer)
    );
    assert_eq!(sfu.add_ice_candidate_checked(id, valid.clone()), Ok(()));
    assert_eq!(sfu.add_ice_candidate_checked(id, String::new()), Ok(()));
    assert!(sfu.add_ice_candidate(id, valid));
    send.abort();
    support::shutdown(&sfu).await;
}
