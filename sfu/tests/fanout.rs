//! A publisher and three subscribers, real webrtc-rs peers over loopback against one shard:
//! ICE-lite, DTLS, SRTP, server-initiated renegotiation, forwarding with rewritten SSRC, payload
//! type and continuous sequence numbers.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use support::{WAIT, client, join, start_sfu};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_three_subscribers() {
    let (sfu, offers) = start_sfu();

    // The publisher sends a VP8 track.
    const PUBLISHER_SSRC: u32 = 0x0a0a_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", PUBLISHER_SSRC)], false).await;
    let (track, pt) = (Arc::clone(&publisher.track), publisher.payload_type);

    // Three subscribers, each offering one receive-only video line to connect with.
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(support::subscriber(&sfu, &offers).await.0);
    }

    // Each subscriber reports the (SSRC, sequence number) of what it receives.
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<(usize, u32, u16, u8)>();
    for (i, c) in subscribers.iter_mut().enumerate() {
        let mut tracks = std::mem::replace(&mut c.tracks, mpsc::unbounded_channel().1);
        let got = got_tx.clone();
        tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                let got = got.clone();
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(p) = event {
                            let _ = got.send((
                                i,
                                p.header.ssrc,
                                p.header.sequence_number,
                                p.payload[1],
                            ));
                        }
                    }
                });
            }
        });
    }

    // 10 ms per packet, a keyframe every 30, until every subscriber has 100 packets.
    let send_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 0u32..3000 {
            tick.tick().await;
            let keyframe = i % 30 == 0;
            let mut payload = vec![0x10, u8::from(!keyframe)];
            payload.extend_from_slice(&[0xab; 300]);
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: pt,
                    sequence_number: 1000u16.wrapping_add(i as u16),
                    timestamp: i * 3000,
                    ssrc: PUBLISHER_SSRC,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            };
            let _ = track.write_rtp(packet).await;
        }
    });

    let mut received: Vec<Vec<(u32, u16, u8)>> = vec![Vec::new(); 3];
    while received.iter().any(|r| r.len() < 100) {
        let (i, ssrc, seq, frame) = tokio::time::timeout(WAIT, got_rx.recv())
            .await
            .expect("media keeps flowing")
            .unwrap();
        received[i].push((ssrc, seq, frame));
    }
    send_task.abort();

    for (i, r) in received.iter().enumerate() {
        let ssrc = r[0].0;
        assert_ne!(
            ssrc, PUBLISHER_SSRC,
            "subscriber {i}: the SSRC is rewritten"
        );
        assert!(r.iter().all(|p| p.0 == ssrc), "subscriber {i}: one SSRC");
        assert_eq!(
            r[0].2, 0,
            "subscriber {i}: starts on a keyframe (P bit clear)"
        );
        let seqs: Vec<u16> = r.iter().map(|p| p.1).collect();
        let contiguous = seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
        assert!(
            contiguous,
            "subscriber {i}: sequence numbers without gaps: {seqs:?}"
        );
    }
    let ssrcs: std::collections::HashSet<u32> = received.iter().map(|r| r[0].0).collect();
    assert_eq!(ssrcs.len(), 3, "each subscriber has its own consumer SSRC");
    let stats = sfu.shards()[0].stats;
    assert!(stats.rtp_forwarded >= 300, "{stats:?}");

    for c in subscribers.into_iter().chain([publisher.client]) {
        let _ = c.pc.close().await;
    }
    support::shutdown(&sfu).await;
}

/// A subscriber asking for keyframes every 20 ms reaches the publisher at most once per 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_publisher_at_most_every_500_ms() {
    let (sfu, offers) = start_sfu();
    const SSRC: u32 = 0x0b0b_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], true).await;

    // Like an encoder: a keyframe when asked, delta frames otherwise. Reports when PLIs arrive.
    let (send_task, mut pli_rx) = publisher.send_keyframes_on_request();

    let (mut subscriber, _) = support::subscriber(&sfu, &offers).await;
    let remote = support::first_track(&mut subscriber).await;
    // Wait for the first forwarded packet, so the track's SSRC is known, then ask for keyframes
    // every 20 ms for 2 s.
    let ssrc = loop {
        match tokio::time::timeout(WAIT, remote.poll())
            .await
            .expect("media arrives")
        {
            Some(TrackRemoteEvent::OnRtpPacket(p)) => break p.header.ssrc,
            Some(_) => continue,
            None => panic!("track ended"),
        }
    };
    while pli_rx.try_recv().is_ok() {}
    let mut asks = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..100 {
        asks.tick().await;
        let pli: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        })];
        remote.write_rtcp(pli).await.unwrap();
    }
    send_task.abort();
    let mut arrivals = Vec::new();
    while let Ok(at) = pli_rx.try_recv() {
        arrivals.push(at);
    }
    assert!(
        arrivals.len() >= 2,
        "requests are passed on: {} PLIs",
        arrivals.len()
    );
    assert!(
        arrivals.len() <= 6,
        "100 requests in 2 s are coalesced: {} PLIs",
        arrivals.len()
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        // The SFU spaces them 500 ms apart by its clock; delivery jitter on loopback is far below 100 ms.
        assert!(gap >= Duration::from_millis(400), "PLIs {gap:?} apart");
    }
    let _ = subscriber.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}

/// A simulcast publisher (q, h, f) and two subscribers: one stays on the lowest layer, the other
/// asks for the highest and switches on its keyframe without a gap in sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_subscribers_get_the_layer_they_ask_for() {
    let (sfu, offers) = start_sfu();
    let rids = ["q", "h", "f"];
    let ssrcs = [0x0c0c_0001u32, 0x0c0c_0002, 0x0c0c_0003];
    let encodings: Vec<(&str, u32)> = rids.iter().copied().zip(ssrcs).collect();
    let publisher = support::publisher(&sfu, &offers, &encodings, false).await;
    let publisher_id = publisher.peer;
    // A keyframe every 15 packets on each layer.
    let send_task = publisher
        .send_simulcast([103; 3], 15, Duration::from_millis(10))
        .await;

    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<(usize, u16, u8)>();
    let mut subscribers = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let (mut c, id) = support::subscriber(&sfu, &offers).await;
        ids.push(id);
        let mut tracks = std::mem::replace(&mut c.tracks, mpsc::unbounded_channel().1);
        let got = got_tx.clone();
        tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                let got = got.clone();
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(p) = event {
                            let _ = got.send((i, p.header.sequence_number, p.payload[2]));
                        }
                    }
                });
            }
        });
        subscribers.push(c);
    }

    let mut received: Vec<Vec<(u16, u8)>> = vec![Vec::new(); 2];
    let mut asked = false;
    while received[0].len() < 100 || received[1].iter().filter(|p| p.1 == 2).count() < 50 {
        let (i, seq, layer) = tokio::time::timeout(WAIT, got_rx.recv())
            .await
            .expect("media keeps flowing")
            .unwrap();
        received[i].push((seq, layer));
        if i == 1 && !asked {
            // Subscriber 1 has its first packets (of the default, lowest layer): it wants the best.
            assert!(sfu.set_preferred_layer(ids[1], publisher_id, "camera", Some(2)));
            asked = true;
        }
    }
    send_task.abort();

    assert!(
        received[0].iter().all(|p| p.1 == 0),
        "subscriber 0 stays on the lowest layer"
    );
    // The stats say the same.
    let stats = sfu.stats(ids[1]).await.expect("a known peer");
    let consumer = &stats.consumers[0];
    assert_eq!(
        (consumer.source, consumer.track.as_str()),
        (publisher_id, "camera")
    );
    assert_eq!(
        (consumer.current_layer, consumer.target_layer),
        (Some(2), Some(2))
    );
    assert!(consumer.packets >= 50, "{consumer:?}");
    let published = sfu.stats(publisher_id).await.expect("a known peer");
    let mut layers: Vec<u8> = published.producers[0]
        .streams
        .iter()
        .map(|(_, l)| *l)
        .collect();
    layers.sort_unstable();
    assert_eq!(layers, [0, 1, 2], "three simulcast streams");
    assert_eq!(sfu.stats(sfu::PeerId::from_u64(9_999_999)).await, None);
    let layers: Vec<u8> = received[1].iter().map(|p| p.1).collect();
    let switch = layers.iter().position(|l| *l == 2).unwrap();
    assert!(layers[..switch].iter().all(|l| *l == 0), "{layers:?}");
    assert!(
        layers[switch..].iter().all(|l| *l == 2),
        "after the switch only the high layer: {layers:?}"
    );
    for (i, r) in received.iter().enumerate() {
        let contiguous = r.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1));
        assert!(
            contiguous,
            "subscriber {i}: no sequence gap, across the switch too"
        );
    }
    for c in subscribers.into_iter().chain([publisher.client]) {
        let _ = c.pc.close().await;
    }
    support::shutdown(&sfu).await;
}

/// Garbage on the shard's port (random bytes, STUN-, RTP- and DTLS-looking junk) is dropped and
/// counted, and the shard keeps serving: a publisher and a subscriber connected afterwards get
/// media through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_dropped_and_the_shard_keeps_serving() {
    let (sfu, offers) = start_sfu();
    let target = sfu.shards()[0].local_addr;
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2000 {
        let len = (next() % 300) as usize + 1;
        let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match round % 4 {
            0 => datagram[0] = 0x80,
            1 if len >= 8 => datagram[..8].copy_from_slice(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]),
            2 => datagram[0] = 22,
            _ => {}
        }
        junk.send_to(&datagram, target).unwrap();
    }
    assert!(sfu.shards()[0].running, "the shard survived the junk");

    // Media still flows through the same shard.
    const SSRC: u32 = 0x0d0d_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let send_task = publisher.send_vp8();
    let (mut subscriber, _) = support::subscriber(&sfu, &offers).await;
    let remote = support::first_track(&mut subscriber).await;
    let mut packets = 0;
    while packets < 50 {
        if let Some(TrackRemoteEvent::OnRtpPacket(_)) = tokio::time::timeout(WAIT, remote.poll())
            .await
            .expect("media arrives")
        {
            packets += 1;
        }
    }
    send_task.abort();
    let _ = subscriber.pc.close().await;
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
    let stats = sfu.shards()[0].stats;
    // The kernel may drop some of a burst when the receive buffer is full; most arrive.
    assert!(
        stats.packets_dropped_unknown_peer >= 100,
        "junk is counted as dropped: {stats:?}"
    );
}

/// Two microphones: the louder one becomes the active speaker, and when they swap, the other
/// does, from the audio-level header extension alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_speaker_follows_audio_levels() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    let levels = Arc::new([
        std::sync::atomic::AtomicU8::new(10),
        std::sync::atomic::AtomicU8::new(127),
    ]);
    let mut peers = Vec::new();
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for (n, ssrc) in [0x0f0f_0001u32, 0x0f0f_0002].into_iter().enumerate() {
        let mut c = client().await;
        let track = Arc::new(
            webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP::new(
                rtc::media_stream::MediaStreamTrack::new(
                    format!("mic-{n}"),
                    "microphone".into(),
                    "microphone".into(),
                    RtpCodecKind::Audio,
                    vec![rtc::rtp_transceiver::rtp_sender::RTCRtpEncodingParameters {
                        rtp_coding_parameters:
                            rtc::rtp_transceiver::rtp_sender::RTCRtpCodingParameters {
                                ssrc: Some(ssrc),
                                ..Default::default()
                            },
                        codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
                            mime_type: "audio/opus".into(),
                            clock_rate: 48_000,
                            channels: 2,
                            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                            rtcp_feedback: vec![],
                        },
                        ..Default::default()
                    }],
                ),
            ),
        );
        let sender = c
            .pc
            .add_track(Arc::clone(&track) as Arc<dyn webrtc::media_stream::track_local::TrackLocal>)
            .await
            .unwrap();
        peers.push(join(&sfu, &offers, &mut c).await);
        let params = sender.get_parameters().await.unwrap();
        let pt = params.rtp_parameters.codecs[0].payload_type;
        let level_id = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|h| h.uri == "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
            .map(|h| h.id as u8)
            .expect("audio level negotiated");
        let levels = Arc::clone(&levels);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for i in 0u32..100_000 {
                tick.tick().await;
                let mut header = rtp::header::Header {
                    version: 2,
                    payload_type: pt,
                    sequence_number: i as u16,
                    timestamp: i * 960,
                    ssrc,
                    ..Default::default()
                };
                let level = levels[n].load(std::sync::atomic::Ordering::SeqCst);
                header
                    .set_extension(level_id, Bytes::from(vec![0x80 | level]))
                    .unwrap();
                let _ = track
                    .write_rtp(rtp::Packet {
                        header,
                        payload: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                    })
                    .await;
            }
        }));
        clients.push(c);
    }
    assert_eq!(
        next_speaker(&mut events).await,
        peers[0],
        "the first microphone is loud"
    );
    // They swap: the second talks, the first goes quiet.
    levels[0].store(127, std::sync::atomic::Ordering::SeqCst);
    levels[1].store(10, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        next_speaker(&mut events).await,
        peers[1],
        "the second microphone takes over"
    );
    for t in tasks {
        t.abort();
    }
    for c in clients {
        let _ = c.pc.close().await;
    }
    support::shutdown(&sfu).await;
}

/// The next active-speaker change among `events`.
async fn next_speaker(events: &mut mpsc::UnboundedReceiver<sfu::SfuEvent>) -> sfu::PeerId {
    loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an active speaker event")
            .unwrap()
        {
            sfu::SfuEvent::ActiveSpeaker { peer, .. } => return peer,
            _ => continue,
        }
    }
}

/// A panic in one room's code closes that room only: the shard and the other room go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_in_one_room_closes_only_that_room() {
    let (sfu, offers) = start_sfu();
    let mut events = offers.other_events();
    // Room 1: a publisher and a subscriber with media flowing.
    const SSRC: u32 = 0x1010_0001;
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], false).await;
    let send_task = publisher.send_vp8();
    let (mut subscriber, _) = support::subscriber(&sfu, &offers).await;
    let remote = support::first_track(&mut subscriber).await;
    // Room 2, on the same (only) shard: one peer.
    let (other, doomed) = support::subscriber_in(&sfu, &offers, "room-2").await;

    sfu.inject_fault("room-2");
    let mut closed = false;
    let mut disconnected = false;
    while !(closed && disconnected) {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("the fault is reported")
            .unwrap()
        {
            sfu::SfuEvent::RoomClosed { room, .. } => {
                assert_eq!(room.as_str(), "room-2");
                closed = true;
            }
            sfu::SfuEvent::PeerDisconnected { peer } => {
                assert_eq!(peer, doomed, "only room 2's peer is disconnected");
                disconnected = true;
            }
            _ => {}
        }
    }
    assert!(sfu.shards()[0].running);
    assert_eq!(sfu.shards()[0].stats.rooms_closed_by_fault, 1);
    // Room 1 keeps forwarding.
    let mut packets = 0;
    while packets < 50 {
        if let Some(TrackRemoteEvent::OnRtpPacket(_)) = tokio::time::timeout(WAIT, remote.poll())
            .await
            .expect("media still arrives")
        {
            packets += 1;
        }
    }
    send_task.abort();
    for c in [subscriber, other, publisher.client] {
        let _ = c.pc.close().await;
    }
    support::shutdown(&sfu).await;
}
