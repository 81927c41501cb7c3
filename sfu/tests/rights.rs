//! Publish rights, enforced where the media is: a peer joined without the right to publish gets no
//! producer whatever its offer says (however it is written), its RTP is dropped and counted, and
//! the right can be revoked (its tracks leave everyone) or granted (its next offer publishes).

mod support;

use std::sync::Arc;

use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use sfu::{PeerId, PeerRights, Sfu, SfuEvent};
use support::{Client, Offers, WAIT, start_sfu};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Waits for the first event that `want` accepts.
async fn until_event(
    events: &mut mpsc::UnboundedReceiver<SfuEvent>,
    want: impl Fn(&SfuEvent) -> bool,
) -> SfuEvent {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(event)) if want(&event) => return event,
            Ok(Some(_)) => {}
            _ => panic!("the event never came"),
        }
    }
}

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

/// Adds a send-only VP8 camera (`track_id`, on `ssrc`) to the client's connection.
async fn add_camera(
    client: &Client,
    ssrc: u32,
    track_id: &str,
) -> (
    Arc<TrackLocalStaticRTP>,
    Arc<dyn webrtc::rtp_transceiver::RtpSender>,
) {
    let track = support::vp8_camera(ssrc, track_id);
    let transceiver = client
        .pc
        .add_transceiver_from_track(
            Arc::clone(&track) as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let sender = transceiver.sender().await.unwrap().unwrap();
    (track, sender)
}

/// The payload type the client sends VP8 with.
async fn payload_type(sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>) -> u8 {
    let parameters = sender.get_parameters().await.unwrap().rtp_parameters;
    parameters.codecs.first().map_or(96, |c| c.payload_type)
}

/// The client offers again (tracks added); the SFU answers.
async fn renegotiate(sfu: &Sfu, client: &Client, peer: PeerId) {
    let offer = client.pc.create_offer(None).await.unwrap();
    client.pc.set_local_description(offer).await.unwrap();
    let offer = client.pc.local_description().await.unwrap().sdp;
    let answer = sfu.offer(peer, offer).await.expect("the SFU answers");
    client
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
}

/// A viewer (no publish right) whose offer, rewritten by `tamper`, sends a camera; it sends
/// VP8 from then on. Returns its id and the sending task.
async fn viewer_with_camera(
    sfu: &Sfu,
    offers: &Offers,
    ssrc: u32,
    tamper: fn(String) -> String,
) -> (Client, PeerId, tokio::task::JoinHandle<()>) {
    let mut client = support::client().await;
    let (track, sender) = add_camera(&client, ssrc, "camera").await;
    let peer = support::join_as(
        sfu,
        offers,
        &mut client,
        "room-1",
        None,
        PeerRights::VIEWER,
        tamper,
    )
    .await;
    let send = support::send_tagged(track, payload_type(&sender).await, ssrc, [7, 7]);
    (client, peer, send)
}

/// A viewer that sends a camera (its offer written as `tamper` makes it) publishes nothing:
/// no event, no producer, nothing reaches the other member; its RTP is refused and counted.
async fn a_viewer_camera_is_refused(tamper: fn(String) -> String) {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let (mut watcher, watcher_id) = support::subscriber(&sfu, &offers).await;
    let (_viewer, viewer_id, send) = viewer_with_camera(&sfu, &offers, 0x2121_0001, tamper).await;

    // The viewer sends: at 10 ms a packet, 50 refused is half a second of its camera.
    let stats = support::shard_until(&sfu, 0, |s| s.rtp_refused >= 50).await;
    assert_eq!(stats.rtp_received, 0, "nothing routed: {stats:?}");
    assert_eq!(stats.rtp_forwarded, 0, "nothing forwarded: {stats:?}");
    let viewer = sfu.stats(viewer_id).await.unwrap();
    assert!(viewer.producers.is_empty(), "{viewer:?}");
    assert_eq!(viewer.rights, PeerRights::VIEWER);
    let watcher_stats = sfu.stats(watcher_id).await.unwrap();
    assert!(watcher_stats.consumers.is_empty(), "{watcher_stats:?}");
    assert!(
        watcher.tracks.try_recv().is_err(),
        "no track reached the watcher"
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, SfuEvent::TrackPublished { .. }),
            "nothing is published: {event:?}"
        );
    }
    send.abort();
    support::shutdown(&sfu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sending_a_camera_publishes_nothing() {
    a_viewer_camera_is_refused(|offer| offer).await;
}

/// `m= video`: the parser trims the space and takes the line as video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_camera_on_a_mangled_media_line_publishes_nothing() {
    a_viewer_camera_is_refused(|offer| {
        let tampered = offer.replace("m=video ", "m= video ");
        assert_ne!(tampered, offer);
        tampered
    })
    .await;
}

/// `a=sendonly` then `a=recvonly` in one section: the parser takes the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_camera_with_two_directions_publishes_nothing() {
    a_viewer_camera_is_refused(|offer| {
        let tampered = offer.replace("a=sendonly\r\n", "a=sendonly\r\na=recvonly\r\n");
        assert_ne!(tampered, offer);
        tampered
    })
    .await;
}

/// Revoked: the publisher's track leaves the room at once and its RTP goes nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_right_unpublishes_at_once() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let publisher = support::publisher(&sfu, &offers, &[("", 0x2222_0001)], false).await;
    let send = publisher.send_vp8();
    let (mut watcher, watcher_id) = support::subscriber(&sfu, &offers).await;
    let track = support::first_track(&mut watcher).await;
    next_packet(&track).await;
    support::stats_until(&sfu, watcher_id, |s| {
        s.consumers.len() == 1 && s.consumers[0].packets > 0
    })
    .await;

    assert!(sfu.set_publish(publisher.peer, false));
    let event = until_event(&mut events, |e| {
        matches!(e, SfuEvent::TrackUnpublished { .. })
    })
    .await;
    assert_eq!(
        event,
        SfuEvent::TrackUnpublished {
            peer: publisher.peer,
            track: "camera".into()
        }
    );
    let gone = support::stats_until(&sfu, watcher_id, |s| s.consumers.is_empty()).await;
    assert!(gone.consumers.is_empty());
    let source = sfu.stats(publisher.peer).await.unwrap();
    assert!(source.producers.is_empty(), "{source:?}");
    assert_eq!(source.rights, PeerRights::VIEWER);
    // A server offer tells the publisher the SFU no longer receives from it: it stops sending.
    support::until_not_sending(&publisher.client).await;
    send.abort();
    support::shutdown(&sfu).await;
}

/// A viewer's camera is refused until it is granted the right; then its next offer publishes
/// and the room receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granting_the_right_lets_the_next_offer_publish() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let (mut watcher, watcher_id) = support::subscriber(&sfu, &offers).await;
    let mut viewer = support::client().await;
    viewer
        .pc
        .add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let viewer_id = support::join_as(
        &sfu,
        &offers,
        &mut viewer,
        "room-1",
        None,
        PeerRights::VIEWER,
        |offer| offer,
    )
    .await;

    // Not granted: a camera offered by renegotiation is refused.
    const EARLY: u32 = 0x2323_0001;
    let (track, sender) = add_camera(&viewer, EARLY, "early-camera").await;
    renegotiate(&sfu, &viewer, viewer_id).await;
    let early = support::send_tagged(track, payload_type(&sender).await, EARLY, [1, 1]);
    support::shard_until(&sfu, 0, |s| s.rtp_refused >= 20).await;
    let stats = sfu.stats(viewer_id).await.unwrap();
    assert!(stats.producers.is_empty(), "{stats:?}");

    // Granted: the next offer, adding a camera, publishes.
    assert!(sfu.set_publish(viewer_id, true));
    const LATE: u32 = 0x2323_0002;
    let (track, sender) = add_camera(&viewer, LATE, "late-camera").await;
    renegotiate(&sfu, &viewer, viewer_id).await;
    let late = support::send_tagged(track, payload_type(&sender).await, LATE, [2, 2]);
    until_event(&mut events, |e| {
        matches!(e, SfuEvent::TrackPublished { peer, track, .. }
            if *peer == viewer_id && track == "late-camera")
    })
    .await;
    let stats = support::stats_until(&sfu, watcher_id, |s| {
        s.consumers
            .iter()
            .any(|c| c.source == viewer_id && c.track == "late-camera" && c.packets >= 5)
    })
    .await;
    assert!(!stats.consumers.is_empty());
    let track = support::first_track(&mut watcher).await;
    next_packet(&track).await;
    assert_eq!(
        sfu.stats(viewer_id).await.unwrap().rights,
        PeerRights::PUBLISHER
    );
    early.abort();
    late.abort();
    support::shutdown(&sfu).await;
}
