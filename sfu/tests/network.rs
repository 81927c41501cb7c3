//! The SFU under bad network conditions, made by a relay between the test peers and the shard:
//! loss recovered by NACK on both legs, and a subscriber whose bandwidth shrinks.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp;
use support::relay::Relay;
use support::{WAIT, start_sfu};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

/// VP8 packets carrying their index in the payload (bytes 2..6), a keyframe every `gop`.
fn indexed_packet(i: u32, gop: u32, pt: u8, ssrc: u32, size: usize) -> rtp::Packet {
    let keyframe = i.is_multiple_of(gop);
    let mut payload = vec![0x10, u8::from(!keyframe)];
    payload.extend_from_slice(&i.to_be_bytes());
    payload.resize(size.max(6), 0x5a);
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: pt,
            sequence_number: 7000u16.wrapping_add(i as u16),
            timestamp: i * 3000,
            ssrc,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

#[test]
fn the_relay_loses_about_the_fraction_asked() {
    let mut dice = support::relay::Dice(0x9e37_79b9_7f4a_7c15);
    let lost = (0..100_000).filter(|_| dice.hit(0.05)).count();
    assert!((4_500..5_500).contains(&lost), "{lost}");
    assert!(!(0..1000).any(|_| dice.hit(0.0)));
}

/// 5 % of RTP lost from the publisher to the SFU and 5 % from the SFU to the subscriber: the SFU
/// NACKs the publisher's gaps and answers the subscriber's NACKs from its buffer, so the subscriber
/// ends up with every packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_on_each_leg_is_recovered_by_nack() {
    let (sfu, offers) = start_sfu();
    let shard = sfu.shards()[0].local_addr;
    let up = Arc::new(Relay::start(shard).await);
    let down = Arc::new(Relay::start(shard).await);
    const SSRC: u32 = 0x0d0d_0001;
    let publisher =
        support::publisher_via(&sfu, &offers, &[("", SSRC)], false, Some(Arc::clone(&up))).await;
    let (mut subscriber, subscriber_id) =
        support::subscriber_via(&sfu, &offers, "room-1", Some(Arc::clone(&down))).await;

    // The subscriber reports the index of every packet it gets (retransmissions included).
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<u32>();
    let send = publisher.send_packets(Duration::from_millis(5), |i, pt| {
        indexed_packet(i, 50, pt, SSRC, 600)
    });
    let remote = support::first_track(&mut subscriber).await;
    tokio::spawn(async move {
        while let Some(event) = remote.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = event {
                let index = u32::from_be_bytes(p.payload[2..6].try_into().unwrap());
                let _ = got_tx.send(index);
            }
        }
    });

    // The first index received starts on a keyframe; from there on, 800 packets must all arrive.
    let first = tokio::time::timeout(WAIT, got_rx.recv())
        .await
        .expect("media arrives")
        .unwrap();
    assert_eq!(first % 50, 0, "the subscriber starts on a keyframe");
    up.set(|c| c.loss_to_sfu = 0.05);
    down.set(|c| c.loss_to_client = 0.05);
    let wanted: BTreeSet<u32> = (first + 50..first + 850).collect();
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !wanted.is_subset(&got) {
        match tokio::time::timeout_at(deadline, got_rx.recv()).await {
            Ok(Some(i)) => {
                got.insert(i);
            }
            _ => break,
        }
    }
    let missing: Vec<u32> = wanted.difference(&got).copied().collect();
    let lost_up = up.counters.rtp_lost_to_sfu.load(Ordering::Relaxed);
    let lost_down = down.counters.rtp_lost_to_client.load(Ordering::Relaxed);
    assert!(
        lost_up >= 20 && lost_down >= 20,
        "the relays lost packets: {lost_up} up, {lost_down} down"
    );
    let stats = sfu.stats(subscriber_id).await;
    assert!(
        missing.is_empty(),
        "every packet recovered; missing {} of 800: {missing:?} ({lost_up} lost up, {lost_down} \
         down); subscriber: {stats:?}",
        missing.len()
    );

    send.abort();
    let _ = subscriber.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}

/// A subscriber on the high simulcast layer whose link shrinks below that layer's bitrate: the
/// bandwidth estimate (from its transport-wide congestion feedback) falls, and it steps down to
/// the middle layer on a keyframe of that layer, without a gap in sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_bandwidth_steps_a_subscriber_down_on_a_keyframe() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let shard = sfu.shards()[0].local_addr;
    let link = Arc::new(Relay::start(shard).await);
    let ssrcs = [0x0e0e_0001u32, 0x0e0e_0002, 0x0e0e_0003];
    let encodings: Vec<(&str, u32)> = ["q", "h", "f"].into_iter().zip(ssrcs).collect();
    let publisher = support::publisher(&sfu, &offers, &encodings, false).await;
    // About 130 kbit/s, 420 kbit/s and 900 kbit/s with headers; a keyframe every 25 packets.
    let send = publisher
        .send_simulcast([120, 480, 1080], 25, Duration::from_millis(10))
        .await;
    let (mut subscriber, subscriber_id) =
        support::subscriber_via(&sfu, &offers, "room-1", Some(Arc::clone(&link))).await;
    let remote = support::first_track(&mut subscriber).await;
    assert!(sfu.set_preferred_layer(subscriber_id, publisher.peer, "camera", Some(2)));

    // What the subscriber receives: sequence number -> (layer, keyframe).
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<(u16, u8, bool)>();
    tokio::spawn(async move {
        while let Some(event) = remote.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = event {
                let _ = got_tx.send((
                    p.header.sequence_number,
                    p.payload[2],
                    p.payload[1] & 1 == 0,
                ));
            }
        }
    });
    let mut received = std::collections::BTreeMap::new();
    let mut layer_events = Vec::new();
    let mut estimates = Vec::new();
    let record = |event: sfu::SfuEvent, layers: &mut Vec<Option<u8>>, estimates: &mut Vec<u64>| {
        match event {
            sfu::SfuEvent::LayerChanged {
                subscriber, layer, ..
            } if subscriber == subscriber_id => layers.push(layer),
            sfu::SfuEvent::BandwidthEstimate { peer, bps } if peer == subscriber_id => {
                estimates.push(bps)
            }
            _ => {}
        }
    };

    // Unlimited: the subscriber climbs to the high layer.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::select! {
            Some((seq, layer, key)) = got_rx.recv() => { received.insert(seq, (layer, key)); }
            Some(event) = events.recv() => record(event, &mut layer_events, &mut estimates),
            _ = tokio::time::sleep_until(deadline) => panic!("never reached the high layer: {layer_events:?}"),
        }
        if received.values().filter(|(l, _)| *l == 2).count() >= 50 {
            break;
        }
    }

    // The link shrinks to 600 kbit/s: below the high layer, above the middle one.
    link.set(|c| c.rate_to_client_bps = Some(600_000));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::select! {
            Some((seq, layer, key)) = got_rx.recv() => { received.insert(seq, (layer, key)); }
            Some(event) = events.recv() => record(event, &mut layer_events, &mut estimates),
            _ = tokio::time::sleep_until(deadline) => panic!(
                "no step down: layers {layer_events:?}, estimates {estimates:?}, {:?}",
                sfu.stats(subscriber_id).await
            ),
        }
        if layer_events.last() == Some(&Some(1)) {
            break;
        }
    }
    // The first packet of the middle layer after the high one.
    let high = received
        .iter()
        .filter(|(_, (l, _))| *l == 2)
        .map(|(s, _)| *s)
        .next()
        .unwrap();
    let switch = received
        .range(high..)
        .find(|(_, (l, _))| *l == 1)
        .map(|(s, _)| *s);
    // Packets the queue dropped come back by NACK: wait for the ones around the switch.
    let deadline = tokio::time::Instant::now() + WAIT;
    let complete = |received: &std::collections::BTreeMap<u16, (u8, bool)>| {
        let Some(switch) = received
            .range(high..)
            .find(|(_, (l, _))| *l == 1)
            .map(|(s, _)| *s)
        else {
            return false;
        };
        (switch - 10..switch + 10).all(|s| received.contains_key(&s))
    };
    while !complete(&received) {
        match tokio::time::timeout_at(deadline, got_rx.recv()).await {
            Ok(Some((seq, layer, key))) => {
                received.insert(seq, (layer, key));
            }
            _ => break,
        }
    }
    let switch = received
        .range(high..)
        .find(|(_, (l, _))| *l == 1)
        .map(|(s, _)| *s)
        .or(switch)
        .expect("the middle layer arrives");
    let around: Vec<(u16, Option<&(u8, bool)>)> = (switch - 10..switch + 10)
        .map(|s| (s, received.get(&s)))
        .collect();
    assert!(
        around.iter().all(|(_, p)| p.is_some()),
        "no gap in sequence numbers around the switch: {around:?}"
    );
    assert_eq!(
        received[&switch],
        (1, true),
        "the middle layer starts with its keyframe"
    );
    assert_eq!(received[&(switch - 1)].0, 2, "right after the high layer");
    // Below the high layer's 900 kbit/s, from where it started.
    let last = estimates.last().copied().unwrap_or(u64::MAX);
    assert!(
        last < 900_000 && estimates[0] > 1_000_000,
        "the estimate fell with the link: {estimates:?}"
    );
    let stats = sfu.stats(subscriber_id).await.unwrap();
    assert_eq!(stats.consumers[0].current_layer, Some(1), "{stats:?}");
    assert_eq!(stats.consumers[0].preferred_layer, Some(2), "{stats:?}");

    send.abort();
    let _ = subscriber.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}

/// A publisher that vanishes (no more consent checks): after the consent timeouts it is removed,
/// its track is unpublished, and the subscriber's consumer of it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_consent_expires_is_removed_and_its_resources_freed() {
    let (sfu, offers) = support::start_sfu_with(sfu::SfuConfig {
        ice_disconnected_timeout: Duration::from_millis(500),
        ice_failed_timeout: Duration::from_millis(1000),
        ..sfu::SfuConfig::default()
    });
    let mut events = offers.other_events();
    let shard = sfu.shards()[0].local_addr;
    let link = Arc::new(Relay::start(shard).await);
    const SSRC: u32 = 0x0f0f_0001;
    let publisher =
        support::publisher_via(&sfu, &offers, &[("", SSRC)], false, Some(Arc::clone(&link))).await;
    let send = publisher.send_vp8();
    let (mut subscriber, subscriber_id) = support::subscriber(&sfu, &offers).await;
    let _track = support::first_track(&mut subscriber).await;
    let stats = sfu.stats(subscriber_id).await.unwrap();
    assert_eq!(stats.consumers.len(), 1, "{stats:?}");

    // The publisher's network goes away; the publisher itself never says goodbye.
    link.set(|c| c.blackhole = true);
    let (mut unpublished, mut disconnected) = (false, false);
    while !(unpublished && disconnected) {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(sfu::SfuEvent::TrackUnpublished { peer, track })) => {
                assert_eq!((peer, track.as_str()), (publisher.peer, "camera"));
                unpublished = true;
            }
            Ok(Some(sfu::SfuEvent::PeerDisconnected { peer })) => {
                assert_eq!(peer, publisher.peer, "only the silent peer goes");
                disconnected = true;
            }
            Ok(Some(_)) => {}
            _ => panic!("the silent publisher is never removed"),
        }
    }
    assert_eq!(sfu.stats(publisher.peer).await, None, "the peer is freed");
    let stats = sfu.stats(subscriber_id).await.unwrap();
    assert!(stats.connected);
    assert!(
        stats.consumers.is_empty(),
        "the subscriber's consumer of the removed track is gone: {stats:?}"
    );

    send.abort();
    let _ = subscriber.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}

/// A subscriber whose network blocks UDP reaches the shard over ICE-TCP (the shard's passive TCP
/// candidate, RFC 4571 framing) and receives media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_without_udp_gets_media_over_tcp() {
    let (sfu, offers) = start_sfu();
    assert!(
        sfu.shards()[0].tcp_addr.is_some(),
        "ICE-TCP is on by default"
    );
    const SSRC: u32 = 0x1111_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let send = publisher.send_vp8();

    let mut c = support::client_tcp_only().await;
    c.pc.add_transceiver_from_kind(
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
        Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
            direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let subscriber_id = support::join(&sfu, &offers, &mut c).await;
    let track = support::first_track(&mut c).await;
    let mut seqs = Vec::new();
    while seqs.len() < 50 {
        match tokio::time::timeout(WAIT, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => seqs.push(p.header.sequence_number),
            Ok(Some(_)) => {}
            _ => panic!("media over TCP: {} packets", seqs.len()),
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
    let stats = sfu.stats(subscriber_id).await.unwrap();
    assert!(
        stats.connected && stats.consumers[0].packets >= 50,
        "{stats:?}"
    );

    send.abort();
    let _ = c.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}
