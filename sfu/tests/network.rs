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
    let keyframe = i % gop == 0;
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
    let handle = sfu.clone();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}
