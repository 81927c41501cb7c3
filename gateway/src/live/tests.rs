//! The hub with a real (idle) SFU handle and hand-made SFU events: no browser, no sleeping.

use super::*;

fn live() -> (Live, Sfu) {
    let sfu = Sfu::start(sfu::SfuConfig {
        tcp: false,
        ..sfu::SfuConfig::default()
    })
    .expect("the SFU starts");
    (Live::new(sfu.clone()), sfu)
}

fn person(id: i64, role: Role) -> ParticipantInfo {
    ParticipantInfo {
        id,
        user_id: id * 10,
        name: format!("p{id}"),
        role,
        connected: false,
    }
}

const SID: i64 = 7;

/// A session with a host (1) publishing one track from peer 100, and a viewer (2) on peer 200.
/// Returns the host's track id.
fn classroom(live: &Live) -> String {
    live.join(SID, person(1, Role::Host)).unwrap();
    live.join(SID, person(2, Role::Viewer)).unwrap();
    live.attach(SID, 1, PeerId::from_u64(100));
    live.attach(SID, 2, PeerId::from_u64(200));
    live.on_sfu_event(SfuEvent::TrackPublished {
        peer: PeerId::from_u64(100),
        track: "cam".into(),
        video: true,
    });
    TrackKey::new(PeerId::from_u64(100), "cam").msid_track()
}

/// `n` room events: the host's track muted and unmuted in turn.
fn toggle(live: &Live, track: &str, n: usize) {
    for i in 0..n {
        assert!(live.set_muted(SID, 1, track, i % 2 == 0).is_ok());
    }
}

fn room_seqs(batch: &[Delivery]) -> Vec<u64> {
    batch
        .iter()
        .filter_map(|d| match d {
            Delivery::Room { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Everything there is now (several batches).
fn drain(sub: &mut Subscriber) -> Vec<Delivery> {
    let mut all = Vec::new();
    loop {
        let batch = sub.poll();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[test]
fn server_offers_for_peers_never_attached_are_bounded() {
    let (live, sfu) = live();
    for n in 0..(MAX_EARLY_OFFERS as u64 + 10) {
        live.on_sfu_event(SfuEvent::Offer {
            peer: PeerId::from_u64(n),
            sdp: "v=0".to_owned(),
        });
    }
    let index = lock(&live.0.index);
    assert_eq!(index.early_offers.len(), MAX_EARLY_OFFERS);
    // The oldest went first.
    assert!(!index.early_offers.contains_key(&PeerId::from_u64(0)));
    assert!(
        index
            .early_offers
            .contains_key(&PeerId::from_u64(MAX_EARLY_OFFERS as u64 + 9))
    );
    drop(index);
    sfu.shutdown();
}

#[test]
fn a_first_subscription_starts_from_a_snapshot_then_numbered_events() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut sub = live.subscribe(SID, 2, None).expect("the session");
    let first = sub.poll();
    let [Delivery::Snapshot { reason, seq, state }] = first.as_slice() else {
        panic!("one snapshot first: {first:?}");
    };
    assert_eq!(*reason, SnapshotReason::First);
    assert_eq!(state.participants.len(), 2);
    assert_eq!(state.tracks.len(), 1);
    let snapshot_seq = *seq;
    assert!(sub.poll().is_empty());
    toggle(&live, &track, 3);
    let next = sub.poll();
    assert_eq!(
        room_seqs(&next),
        vec![snapshot_seq + 1, snapshot_seq + 2, snapshot_seq + 3]
    );
    assert_eq!(sub.last_seq(), snapshot_seq + 3);
    sfu.shutdown();
}

#[test]
fn a_subscriber_that_resumes_gets_exactly_the_missed_events() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut sub = live.subscribe(SID, 2, None).unwrap();
    drain(&mut sub);
    toggle(&live, &track, 5);
    let seen = drain(&mut sub);
    let last = sub.last_seq();
    assert_eq!(room_seqs(&seen).last(), Some(&last));
    drop(sub);
    // While it is away: 7 more events, among them a participant joining.
    toggle(&live, &track, 4);
    live.join(SID, person(3, Role::Viewer)).unwrap();
    toggle(&live, &track, 2);
    let mut again = live.subscribe(SID, 2, Some(last)).unwrap();
    let missed = drain(&mut again);
    assert!(
        missed.iter().all(|d| matches!(d, Delivery::Room { .. })),
        "no snapshot: {missed:?}"
    );
    assert_eq!(
        room_seqs(&missed),
        ((last + 1)..=(last + 7)).collect::<Vec<_>>()
    );
    assert!(missed.contains(&Delivery::Room {
        seq: last + 5,
        event: RoomEvent::ParticipantJoined(person(3, Role::Viewer)),
    }));
    assert_eq!(live.stats().resumes, 1);
    sfu.shutdown();
}

#[test]
fn a_resume_the_log_cannot_serve_starts_from_a_snapshot() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut sub = live.subscribe(SID, 2, None).unwrap();
    drain(&mut sub);
    let last = sub.last_seq();
    drop(sub);
    toggle(&live, &track, ROOM_LOG_CAPACITY + 1);
    for since in [last, 3, u64::MAX] {
        let mut again = live.subscribe(SID, 2, Some(since)).unwrap();
        let got = again.poll();
        assert!(
            matches!(
                got.as_slice(),
                [Delivery::Snapshot {
                    reason: SnapshotReason::ResumeUnavailable,
                    ..
                }]
            ),
            "since {since}: {got:?}"
        );
    }
    sfu.shutdown();
}

#[test]
fn a_subscriber_far_behind_gets_a_lagged_snapshot_not_a_gap() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut slow = live.subscribe(SID, 2, None).unwrap();
    drain(&mut slow);
    toggle(&live, &track, ROOM_LOG_CAPACITY * 2);
    let got = slow.poll();
    let [
        Delivery::Snapshot {
            reason: SnapshotReason::Lagged,
            seq,
            state,
        },
    ] = got.as_slice()
    else {
        panic!("a lagged snapshot: {got:?}");
    };
    // The snapshot is the state after the last event: muted was last set by an odd toggle.
    assert!(!state.tracks[0].muted);
    assert_eq!(*seq, slow.last_seq());
    // Then live events again, numbered on from the snapshot.
    toggle(&live, &track, 1);
    assert_eq!(room_seqs(&slow.poll()), vec![seq + 1]);
    assert_eq!(live.stats().lagged_resyncs, 1);
    sfu.shutdown();
}

#[test]
fn a_flood_of_room_events_does_not_lose_a_server_offer() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut viewer = live.subscribe(SID, 2, None).unwrap();
    drain(&mut viewer);
    // Offers for the viewer's connection, in the middle of room traffic far beyond the log.
    for n in 0..5 {
        toggle(&live, &track, ROOM_LOG_CAPACITY);
        live.on_sfu_event(SfuEvent::Offer {
            peer: PeerId::from_u64(200),
            sdp: format!("offer {n}"),
        });
    }
    toggle(&live, &track, ROOM_LOG_CAPACITY);
    let got = drain(&mut viewer);
    // The newest offer, first (signaling goes before room traffic); the older ones it replaced.
    assert_eq!(
        got.first(),
        Some(&Delivery::Direct(Directed::ServerOffer {
            sdp: "offer 4".into()
        }))
    );
    let offers = got
        .iter()
        .filter(|d| matches!(d, Delivery::Direct(Directed::ServerOffer { .. })))
        .count();
    assert_eq!(offers, 1);
    assert!(got.iter().any(|d| matches!(
        d,
        Delivery::Snapshot {
            reason: SnapshotReason::Lagged,
            ..
        }
    )));
    // The host's subscription never sees the viewer's offer.
    let mut host = live.subscribe(SID, 1, None).unwrap();
    assert!(
        !drain(&mut host)
            .iter()
            .any(|d| matches!(d, Delivery::Direct(_)))
    );
    assert_eq!(live.stats().directed_superseded, 4);
    sfu.shutdown();
}

#[test]
fn an_offer_waits_in_the_mailbox_for_the_next_subscription() {
    let (live, sfu) = live();
    classroom(&live);
    let old = live.subscribe(SID, 2, None).unwrap();
    drop(old);
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(200),
        sdp: "while away".into(),
    });
    let mut old_but_alive = live.subscribe(SID, 2, None).unwrap();
    drain(&mut old_but_alive);
    // A newer subscription of the same participant (a reconnect) takes over its signaling.
    let mut new = live.subscribe(SID, 2, None).unwrap();
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(200),
        sdp: "after".into(),
    });
    assert!(
        !drain(&mut old_but_alive)
            .iter()
            .any(|d| matches!(d, Delivery::Direct(_)))
    );
    assert!(
        drain(&mut new).contains(&Delivery::Direct(Directed::ServerOffer {
            sdp: "after".into()
        }))
    );
    sfu.shutdown();
}

#[test]
fn an_offer_that_came_before_the_attach_is_delivered() {
    let (live, sfu) = live();
    live.join(SID, person(1, Role::Host)).unwrap();
    let mut sub = live.subscribe(SID, 1, None).unwrap();
    drain(&mut sub);
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(300),
        sdp: "early".into(),
    });
    assert!(drain(&mut sub).is_empty());
    live.attach(SID, 1, PeerId::from_u64(300));
    assert_eq!(
        drain(&mut sub),
        vec![Delivery::Direct(Directed::ServerOffer {
            sdp: "early".into()
        })]
    );
    // An early offer, then a newer one once attached, both undelivered: only the newer.
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(301),
        sdp: "early again".into(),
    });
    live.attach(SID, 1, PeerId::from_u64(301));
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(301),
        sdp: "newer".into(),
    });
    let got = drain(&mut sub);
    let offers: Vec<&Delivery> = got
        .iter()
        .filter(|d| matches!(d, Delivery::Direct(_)))
        .collect();
    assert_eq!(
        offers,
        vec![&Delivery::Direct(Directed::ServerOffer {
            sdp: "newer".into()
        })]
    );
    sfu.shutdown();
}

#[test]
fn subscriptions_end_with_the_session() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut sub = live.subscribe(SID, 2, None).unwrap();
    drain(&mut sub);
    toggle(&live, &track, 2);
    live.end(SID);
    let got = drain(&mut sub);
    assert_eq!(got.len(), 3);
    assert!(matches!(
        got.last(),
        Some(Delivery::Room {
            event: RoomEvent::SessionEnded,
            ..
        })
    ));
    assert!(sub.poll().is_empty());
    assert!(live.subscribe(SID, 2, None).is_none());
    // The next join makes a new session whose numbers are not the old one's.
    live.join(SID, person(1, Role::Host)).unwrap();
    let mut fresh = live.subscribe(SID, 1, Some(sub.last_seq())).unwrap();
    assert!(matches!(
        fresh.poll().as_slice(),
        [Delivery::Snapshot {
            reason: SnapshotReason::ResumeUnavailable,
            ..
        }]
    ));
    sfu.shutdown();
}

#[tokio::test]
async fn next_waits_for_events_and_ends_when_the_last_one_leaves() {
    let (live, sfu) = live();
    let track = classroom(&live);
    let mut sub = live.subscribe(SID, 2, None).unwrap();
    assert!(matches!(
        sub.next().await.unwrap().as_slice(),
        [Delivery::Snapshot { .. }]
    ));
    let waiting = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(batch) = sub.next().await {
            got.extend(batch);
        }
        got
    });
    toggle(&live, &track, 1);
    live.leave(SID, 1);
    live.leave(SID, 2);
    let got = waiting.await.unwrap();
    assert!(matches!(
        got.last(),
        Some(Delivery::Room {
            event: RoomEvent::ParticipantLeft { participant_id: 2 },
            ..
        })
    ));
    sfu.shutdown();
}

fn chat(live: &Live, from: i64, n: usize) {
    for i in 0..n {
        let line = interaction::ChatLine {
            id: i as i64 + 1,
            user_id: from * 10,
            author: format!("p{from}"),
            body: format!("message {i}"),
            sent_at: 0,
        };
        live.interaction(SID, from, interaction::Interaction::ChatPosted(line))
            .unwrap();
    }
}

#[test]
fn chat_goes_on_the_room_lane_in_order_and_never_pushes_out_a_server_offer() {
    let (live, sfu) = live();
    classroom(&live);
    let mut viewer = live.subscribe(SID, 2, None).unwrap();
    drain(&mut viewer);
    chat(&live, 1, 3);
    let got = drain(&mut viewer);
    let bodies: Vec<&str> = got
        .iter()
        .filter_map(|d| match d {
            Delivery::Room {
                event: RoomEvent::Interaction(change),
                ..
            } => match &**change {
                interaction::Interaction::ChatPosted(line) => Some(line.body.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(bodies, ["message 0", "message 1", "message 2"]);
    // A flood of chat far beyond the log, with an offer in the middle: the offer arrives.
    chat(&live, 1, ROOM_LOG_CAPACITY * 2);
    live.on_sfu_event(SfuEvent::Offer {
        peer: PeerId::from_u64(200),
        sdp: "offer".into(),
    });
    chat(&live, 2, ROOM_LOG_CAPACITY * 2);
    let got = drain(&mut viewer);
    assert_eq!(
        got.first(),
        Some(&Delivery::Direct(Directed::ServerOffer {
            sdp: "offer".into()
        }))
    );
    // Someone not in the session cannot speak in it.
    let line = interaction::Interaction::ChatDeleted { message_id: 1 };
    assert_eq!(
        live.interaction(SID, 99, line),
        Err(Refused::UnknownParticipant)
    );
    sfu.shutdown();
}
