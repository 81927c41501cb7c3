//! Joining a room where media already flows: no keyframe is asked for a newcomer before its
//! connection is up. Such a keyframe arrives before the newcomer can receive it, and the request
//! holds the stream's next one back by the request interval: half a second more before the first
//! picture (seen in Chromium: a viewer's tile asks for its layer as soon as the track arrives with
//! the answer, before DTLS is up).

mod support;

use std::time::Duration;

use rtc::peer_connection::sdp::RTCSessionDescription;
use support::{WAIT, start_sfu};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keyframe_is_asked_for_a_newcomer_before_it_is_connected() {
    let (sfu, offers) = start_sfu();
    let publisher = support::publisher(
        &sfu,
        &offers,
        &[("q", 0x1414_0001), ("h", 0x1414_0002), ("f", 0x1414_0003)],
        false,
    )
    .await;
    let send = publisher
        .send_simulcast([100, 200, 300], 50, Duration::from_millis(10))
        .await;
    support::shard_until(&sfu, 0, |s| s.rtp_received > 30).await;
    let before = sfu.shards()[0].stats.keyframe_requests_sent;

    // A newcomer whose answer is not applied yet (so it cannot be connected) asks for the high
    // layer, as a browser tile does when the track arrives.
    let (mut c, offer) = support::receiving_offer().await;
    let (peer, answer) = sfu.join("room-1", offer).await.expect("join");
    assert!(sfu.set_preferred_layer(peer, publisher.peer, "camera", Some(2)));
    // Stats queue behind the layer change: it has been handled when they answer.
    let stats = sfu.stats(peer).await.unwrap();
    assert!(!stats.connected);
    assert_eq!(stats.consumers[0].preferred_layer, Some(2));
    // The shard publishes its counters at the end of a round: wait for later rounds.
    let seen = sfu.shards()[0].stats.rtp_received;
    let later = support::shard_until(&sfu, 0, |s| s.rtp_received > seen + 6).await;
    assert_eq!(
        later.keyframe_requests_sent, before,
        "no keyframe asked for a subscriber that cannot receive it yet"
    );

    // Connected, it asks, and gets its picture.
    let mut server_offers = offers.register(peer);
    c.pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, c.connected.recv())
        .await
        .expect("connected");
    drop(server_offers.try_recv());
    support::shard_until(&sfu, 0, |s| s.keyframe_requests_sent > before).await;
    support::stats_until(&sfu, peer, |s| s.consumers[0].packets > 10).await;

    send.abort();
    support::shutdown(&sfu).await;
}

/// The DTLS fingerprint in an answer.
fn fingerprint(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .expect("a fingerprint")
        .to_owned()
}

/// A shard makes its DTLS certificate once, not for every connection (a key pair and a signed
/// certificate per join were the largest part of its cost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_answers_every_connection_with_its_one_certificate() {
    let (sfu, _offers) = start_sfu();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (_c, offer) = support::receiving_offer().await;
        let (_, answer) = sfu.join("room-1", offer).await.expect("join");
        answers.push(fingerprint(&answer));
    }
    assert_eq!(answers[0], answers[1]);
    support::shutdown(&sfu).await;
}
