//! A room spread over two shards: members beyond the home shard's share go to the other shard,
//! and the room's tracks are piped to it over an in-process channel.

mod support;

use support::{WAIT, start_sfu_with};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spread_over_two_shards_gets_its_tracks_piped() {
    let (sfu, offers) = start_sfu_with(sfu::SfuConfig {
        shards: 2,
        spread_after: 1,
        ..sfu::SfuConfig::default()
    });
    let mut events = offers.other_events();
    const SSRC: u32 = 0x1010_0001;
    // The publisher sends keyframes only when asked: the subscribers' first keyframe proves that
    // their requests reach it, across shards too.
    let publisher = support::publisher(&sfu, &offers, &[("", SSRC)], true).await;
    let (send, _plis) = publisher.send_keyframes_on_request();
    let home = sfu.stats(publisher.peer).await.unwrap().shard;

    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<(usize, u32, u16, bool)>();
    let mut subscribers = Vec::new();
    let mut shard_of = Vec::new();
    for i in 0..3 {
        let (mut c, id) = support::subscriber(&sfu, &offers).await;
        shard_of.push(sfu.stats(id).await.unwrap().shard);
        let track = support::first_track(&mut c).await;
        let got = got_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    let _ = got.send((
                        i,
                        p.header.ssrc,
                        p.header.sequence_number,
                        p.payload[1] & 1 == 0,
                    ));
                }
            }
        });
        subscribers.push((c, id));
    }
    assert!(
        shard_of.iter().any(|s| *s != home),
        "beyond one member, the room spreads to the other shard: publisher on {home}, \
         subscribers on {shard_of:?}"
    );

    let mut received: Vec<Vec<(u32, u16, bool)>> = vec![Vec::new(); 3];
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.iter().any(|r| r.len() < 100) {
        let Ok(Some((i, ssrc, seq, key))) = tokio::time::timeout_at(deadline, got_rx.recv()).await
        else {
            panic!(
                "media reaches every subscriber: {:?} packets, subscribers on {shard_of:?}, \
                 publisher on {home}; {:?}",
                received.iter().map(Vec::len).collect::<Vec<_>>(),
                sfu.shards()
            );
        };
        received[i].push((ssrc, seq, key));
    }
    for (i, r) in received.iter().enumerate() {
        assert!(
            r[0].2,
            "subscriber {i} (shard {}) starts on a keyframe",
            shard_of[i]
        );
        assert!(
            r.iter().all(|p| p.0 == r[0].0 && p.0 != SSRC),
            "subscriber {i}: its own SSRC"
        );
        assert!(
            r.windows(2).all(|w| w[1].1 == w[0].1.wrapping_add(1)),
            "subscriber {i} (shard {}): no sequence gap",
            shard_of[i]
        );
    }
    let shards = sfu.shards();
    let other = 1 - home;
    assert!(shards[home].stats.rtp_piped >= 100, "{shards:?}");
    assert!(shards[other].stats.rtp_forwarded >= 100, "{shards:?}");
    assert_eq!(
        shards[other].stats.rtp_received, 0,
        "no publisher on {other}"
    );

    // The publisher leaves: the track goes from the subscribers on both shards.
    send.abort();
    sfu.leave(publisher.peer);
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(sfu::SfuEvent::PeerDisconnected { peer })) if peer == publisher.peer => break,
            Ok(Some(_)) => {}
            _ => panic!("the publisher's departure is reported"),
        }
    }
    for (_, id) in &subscribers {
        support::stats_until(&sfu, *id, |s| s.consumers.is_empty()).await;
    }

    for (c, _) in subscribers {
        let _ = c.pc.close().await;
    }
    let _ = publisher.client.pc.close().await;
    support::shutdown(&sfu).await;
}
