//! The `Sfu` handle beyond joining: subscribe and unsubscribe, pause and resume, keyframe
//! requests, renegotiation offers from a peer, the in-process tap for the recorder, closing a room.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sfu::SfuEvent;
use support::{WAIT, start_sfu};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// The next RTP packet of a remote track.
async fn next_packet(track: &Arc<dyn TrackRemote>) -> rtc::rtp::Packet {
    loop {
        match tokio::time::timeout(WAIT, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => return p,
            Ok(Some(_)) => {}
            _ => panic!("no media"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_pause_resume_unsubscribe_and_subscribe_again() {
    let (sfu, offers) = start_sfu();
    let publisher = support::publisher(&sfu, &offers, &[("", 0x1212_0001)], false).await;
    let send = publisher.send_vp8();
    let (mut subscriber, id) = support::subscriber(&sfu, &offers).await;
    let track = support::first_track(&mut subscriber).await;
    next_packet(&track).await;

    // Paused: the consumer stays, its target is nothing, nothing more is sent.
    assert!(sfu.pause(id, publisher.peer, "camera", true));
    let paused = support::stats_until(&sfu, id, |s| s.consumers[0].target_layer.is_none()).await;
    let sent = paused.consumers[0].packets;
    let later = support::stats_until(&sfu, id, |s| s.consumers[0].current_layer.is_none()).await;
    assert!(
        later.consumers[0].packets <= sent + 1,
        "{paused:?} {later:?}"
    );
    // Resumed: media again, from a keyframe (the publisher sends one every 20 packets).
    assert!(sfu.pause(id, publisher.peer, "camera", false));
    support::stats_until(&sfu, id, |s| s.consumers[0].packets > sent + 5).await;

    // Unsubscribed: the consumer is gone; subscribed again: it is back and media flows.
    assert!(sfu.unsubscribe(id, publisher.peer, "camera"));
    support::stats_until(&sfu, id, |s| s.consumers.is_empty()).await;
    assert!(sfu.subscribe(id, publisher.peer, "camera"));
    let back = support::stats_until(&sfu, id, |s| {
        s.consumers.len() == 1 && s.consumers[0].packets >= 10
    })
    .await;
    assert_eq!(back.consumers[0].source, publisher.peer);
    // A track that does not exist is not subscribed.
    assert!(sfu.subscribe(id, publisher.peer, "no-such-track"));
    let stats = sfu.stats(id).await.unwrap();
    assert_eq!(stats.consumers.len(), 1);

    send.abort();
    support::shutdown(&sfu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_through_the_handle_reaches_the_publisher() {
    let (sfu, offers) = start_sfu();
    let publisher = support::publisher(&sfu, &offers, &[("", 0x1313_0001)], true).await;
    let (send, mut plis) = publisher.send_keyframes_on_request();
    // The track is published once its first packet arrived.
    support::stats_until(&sfu, publisher.peer, |s| !s.producers.is_empty()).await;
    while plis.try_recv().is_ok() {}
    assert!(sfu.request_keyframe(publisher.peer, "camera"));
    tokio::time::timeout(WAIT, plis.recv())
        .await
        .expect("the PLI arrives")
        .unwrap();
    send.abort();
    support::shutdown(&sfu).await;
}

async fn next_item(local: &mut sfu::LocalConsumer) -> sfu::LocalItem {
    tokio::time::timeout(WAIT, local.recv())
        .await
        .expect("an item")
        .expect("the consumer is open")
}

/// The recorder's input: an in-process consumer of a room is told of the track, then gets its
/// packets from a keyframe on, with continuous sequence numbers, the SFU's payload type, and one
/// SSRC of its own; dropping it ends it and the shard goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_consumer_gets_the_track_then_its_packets_from_a_keyframe() {
    let (sfu, offers) = start_sfu();
    let mut local = sfu.local_consumer("room-1", sfu::LocalOptions::default());
    const SSRC: u32 = 0x1414_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let send = publisher.send_vp8();
    match next_item(&mut local).await {
        sfu::LocalItem::TrackAdded {
            track,
            video,
            mime,
            payload_type,
            clock_rate,
            publisher: from,
        } => {
            assert_eq!(track.peer, publisher.peer);
            assert_eq!(track.track, "camera");
            assert!(video);
            assert_eq!(mime, "video/VP8");
            assert_eq!((payload_type, clock_rate), (96, 90_000));
            assert_eq!(from, publisher.peer);
        }
        other => panic!("the track comes first: {other:?}"),
    }
    let mut got = Vec::new();
    while got.len() < 30 {
        if let sfu::LocalItem::Rtp { track, packet } = next_item(&mut local).await {
            assert_eq!(track.peer, publisher.peer);
            got.push(packet);
        }
    }
    // The first packet starts a keyframe (the P bit of the VP8 payload header is clear).
    assert_eq!(got[0].payload[1] & 1, 0, "starts on a keyframe");
    assert!(got.iter().all(|p| p.header.payload_type == 96));
    let ssrc = got[0].header.ssrc;
    assert!(got.iter().all(|p| p.header.ssrc == ssrc));
    let seqs: Vec<u16> = got.iter().map(|p| p.header.sequence_number).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
    assert_eq!(local.dropped(), 0);
    // Dropping it ends it; the shard goes on.
    drop(local);
    let (mut subscriber, _) = support::subscriber(&sfu, &offers).await;
    let track = support::first_track(&mut subscriber).await;
    next_packet(&track).await;
    send.abort();
    support::shutdown(&sfu).await;
}

/// A member that joined to watch publishes later: its offer adds a track, the SFU answers, and the
/// track is published to the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_publishes_after_joining_by_renegotiating() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let (viewer, viewer_id) = support::subscriber(&sfu, &offers).await;
    let (mut watcher, _) = support::subscriber(&sfu, &offers).await;

    // The viewer is invited on stage: it adds a camera and offers.
    const SSRC: u32 = 0x1515_0001;
    let track = support::vp8_camera(SSRC, "late-camera");
    // A new send-only line, as a browser does with addTransceiver(track, {direction: "sendonly"}).
    let transceiver = viewer
        .pc
        .add_transceiver_from_track(
            Arc::clone(&track) as Arc<dyn TrackLocal>,
            Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
                direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let sender = transceiver.sender().await.unwrap().unwrap();
    let offer = viewer.pc.create_offer(None).await.unwrap();
    viewer.pc.set_local_description(offer).await.unwrap();
    let offer = viewer.pc.local_description().await.unwrap().sdp;
    let answer = sfu.offer(viewer_id, offer).await.expect("the SFU answers");
    viewer
        .pc
        .set_remote_description(
            rtc::peer_connection::sdp::RTCSessionDescription::answer(answer).unwrap(),
        )
        .await
        .unwrap();
    let pt = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
    let send = support::send_tagged(Arc::clone(&track), pt, SSRC, [0, 0]);
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(SfuEvent::TrackPublished { peer, track, video })) => {
                assert_eq!(
                    (peer, track.as_str(), video),
                    (viewer_id, "late-camera", true)
                );
                break;
            }
            Ok(Some(_)) => {}
            _ => panic!("the late track is never published"),
        }
    }
    let remote = support::first_track(&mut watcher).await;
    next_packet(&remote).await;
    // An offer for a peer that does not exist is refused.
    assert_eq!(
        sfu.offer(sfu::PeerId::from_u64(987_654), "v=0".into())
            .await,
        Err(sfu::JoinError::UnknownPeer)
    );
    send.abort();
    support::shutdown(&sfu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_disconnects_its_members() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let (_a, a) = support::subscriber(&sfu, &offers).await;
    let (_b, b) = support::subscriber_in(&sfu, &offers, "other-room").await;
    sfu.close_room("room-1");
    let mut gone = false;
    let mut closed = false;
    while !(gone && closed) {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(SfuEvent::PeerDisconnected { peer })) => {
                assert_eq!(peer, a, "only the closed room's members go");
                gone = true;
            }
            Ok(Some(SfuEvent::RoomClosed { room, .. })) => {
                assert_eq!(room.as_str(), "room-1");
                closed = true;
            }
            Ok(Some(_)) => {}
            _ => panic!("no close: gone {gone}, closed {closed}"),
        }
    }
    assert_eq!(sfu.stats(a).await, None);
    assert!(sfu.stats(b).await.is_some(), "the other room goes on");
    support::shutdown(&sfu).await;
}

/// VP8 with three temporal layers (TIDs 0 2 1 2 ...): capped at the base layer, a subscriber gets
/// only TID 0, with continuous sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_layers_above_the_cap_are_dropped_without_a_gap() {
    let (sfu, offers) = start_sfu();
    const SSRC: u32 = 0x1616_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let send = publisher.send_packets(Duration::from_millis(5), |i, pt| {
        let tid = [0u8, 2, 1, 2][i as usize % 4];
        let keyframe = i.is_multiple_of(40);
        // X and S bits; T present; TID in the top two bits; then the VP8 header's P bit.
        let payload = vec![0x90, 0x20, tid << 6, u8::from(!keyframe), tid];
        rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: i as u16,
                timestamp: i * 1500,
                ssrc: SSRC,
                ..Default::default()
            },
            payload: bytes::Bytes::from(payload),
        }
    });
    let (mut subscriber, id) = support::subscriber(&sfu, &offers).await;
    let track = support::first_track(&mut subscriber).await;
    let first = next_packet(&track).await;
    assert!(sfu.set_max_temporal_layer(id, publisher.peer, "camera", 0));
    // Everything forwarded after this read obeys the cap (commands run in order on the shard).
    let before = sfu.stats(id).await.unwrap().consumers[0].packets;
    let mut seqs = vec![first.header.sequence_number];
    let mut capped = Vec::new();
    while capped.len() < 30 {
        let p = next_packet(&track).await;
        let index = p
            .header
            .sequence_number
            .wrapping_sub(first.header.sequence_number);
        seqs.push(p.header.sequence_number);
        if u64::from(index) >= before {
            capped.push(p.payload[4]);
        }
    }
    assert!(capped.iter().all(|tid| *tid == 0), "only TID 0: {capped:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "no sequence gap: {seqs:?}"
    );
    send.abort();
    support::shutdown(&sfu).await;
}
