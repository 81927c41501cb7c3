//! The session hub through GraphQL: numbered room events, resuming with `since`, snapshots
//! where a subscriber cannot resume, and a participant's server offers surviving a flood of room
//! events. No browser and no media: room traffic and the SFU's offers are injected into the
//! gateway's `Live` directly; nothing waits on a clock to synchronise.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sfu::{PeerId, SfuEvent, TrackKey};
use support::{TestServer, join, live_session, user};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long an expected event may take (a failure bound, not a synchronisation).
const WAIT: Duration = Duration::from_secs(20);

const EVENTS: &str =
    "subscription($s: ID!, $since: Int) { sessionEvents(sessionId: $s, since: $since) { __typename
  ... on SessionSnapshot { reason seq participants { id name } tracks { id muted } }
  ... on ServerOffer { sdp }
  ... on ParticipantJoined { seq participant { id name } }
  ... on ParticipantLeft { seq participantId }
  ... on TrackPublished { seq track { id } }
  ... on TrackMuted { seq trackId muted } } }";

/// A subscription: its events as they arrive; dropping the sender side (the returned handle's
/// task) closes the websocket.
struct Events {
    rx: mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an event in time")
            .expect("subscription open")
    }

    /// Closes the websocket, as a dropped network would.
    fn close(self) {
        self.task.abort();
    }
}

async fn subscribe(server: &TestServer, token: &str, session: &str, since: Option<i64>) -> Events {
    let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
                "payload": { "query": EVENTS, "variables": { "s": session, "since": since } } })
        .to_string(),
    ))
    .await
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("next") => {
                    let data = &value["payload"]["data"]["sessionEvents"];
                    assert!(data.is_object(), "an event: {value}");
                    let _ = tx.send(data.clone());
                }
                Some("error") | Some("complete") => {
                    let _ = tx.send(value);
                    return;
                }
                _ => {}
            }
        }
    });
    Events { rx, task }
}

fn seq(event: &Value) -> i64 {
    event["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("a seq: {event}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscription_with_since_gets_exactly_the_missed_events() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;

    let mut events = subscribe(&server, &host_token, &session, None).await;
    let first = events.next().await;
    assert_eq!(first["__typename"], "SessionSnapshot");
    assert_eq!(first["reason"], "FIRST");
    assert_eq!(first["participants"][0]["name"], "Hannah Host");
    let (a, _) = user(&server, "a@example.org", "Ann").await;
    let a_pid = join(&a, &session).await;
    let joined = events.next().await;
    assert_eq!(joined["__typename"], "ParticipantJoined");
    assert_eq!(seq(&joined), seq(&first) + 1);
    let last = seq(&joined);
    events.close();

    // While the host's websocket is down: one joins, one leaves, one more joins.
    let (b, _) = user(&server, "b@example.org", "Bo").await;
    join(&b, &session).await;
    a.ok(
        "mutation($s: ID!) { leaveSession(sessionId: $s) }",
        json!({ "s": session }),
    )
    .await;
    let (c, _) = user(&server, "c@example.org", "Cy").await;
    join(&c, &session).await;

    let mut again = subscribe(&server, &host_token, &session, Some(last)).await;
    let missed = [again.next().await, again.next().await, again.next().await];
    let kinds: Vec<&str> = missed
        .iter()
        .map(|e| e["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["ParticipantJoined", "ParticipantLeft", "ParticipantJoined"],
        "no snapshot, exactly the missed events: {missed:?}"
    );
    assert_eq!(missed[0]["participant"]["name"], "Bo");
    assert_eq!(missed[1]["participantId"], a_pid.to_string());
    assert_eq!(missed[2]["participant"]["name"], "Cy");
    let seqs: Vec<i64> = missed.iter().map(seq).collect();
    assert_eq!(seqs, [last + 1, last + 2, last + 3]);
    // And then live ones, numbered on.
    let (d, _) = user(&server, "d@example.org", "Di").await;
    join(&d, &session).await;
    let live = again.next().await;
    assert_eq!(live["participant"]["name"], "Di");
    assert_eq!(seq(&live), last + 4);
    again.close();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscription_the_server_cannot_serve_starts_from_a_snapshot() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    let host_pid = join(&host, &session).await;
    let sid: i64 = session.parse().unwrap();
    let live = server.state().live.clone();
    let mut events = subscribe(&server, &host_token, &session, None).await;
    let first = events.next().await;
    events.close();
    // More room events than the session keeps, while away.
    let track = fake_track(&live, sid, host_pid);
    for i in 0..3000 {
        assert!(live.set_muted(sid, host_pid, &track, i % 2 == 0).is_ok());
    }
    let mut again = subscribe(&server, &host_token, &session, Some(seq(&first))).await;
    let snapshot = again.next().await;
    assert_eq!(snapshot["__typename"], "SessionSnapshot");
    assert_eq!(snapshot["reason"], "RESUME_UNAVAILABLE");
    assert_eq!(snapshot["tracks"][0]["id"], track.as_str());
    assert_eq!(snapshot["tracks"][0]["muted"], false);
    again.close();
    // A number that was never the session's.
    let mut bogus = subscribe(&server, &host_token, &session, Some(-5)).await;
    assert_eq!(bogus.next().await["reason"], "RESUME_UNAVAILABLE");
    bogus.close();
    server.stop().await;
}

/// Publishes a track for the participant as the SFU would say it (a peer nobody connects).
fn fake_track(live: &gateway::live::Live, sid: i64, pid: i64) -> String {
    let peer = PeerId::from_u64(0xbeef_0000 + pid as u64);
    live.attach(sid, pid, peer);
    live.on_sfu_event(SfuEvent::TrackPublished {
        peer,
        track: "cam".into(),
        video: true,
    });
    TrackKey::new(peer, "cam").msid_track()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_room_events_does_not_lose_a_server_offer_nor_leave_a_silent_gap() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, _) = user(&server, "host@example.org", "Hannah Host").await;
    let (viewer, viewer_token) = user(&server, "viewer@example.org", "Vic Viewer").await;
    let session = live_session(&host).await.1;
    let host_pid = join(&host, &session).await;
    let viewer_pid = join(&viewer, &session).await;
    let sid: i64 = session.parse().unwrap();
    let live = server.state().live.clone();
    let track = fake_track(&live, sid, host_pid);
    let viewer_peer = PeerId::from_u64(0xfeed);
    live.attach(sid, viewer_pid, viewer_peer);

    let mut events = subscribe(&server, &viewer_token, &session, None).await;
    let first = events.next().await;
    assert_eq!(first["reason"], "FIRST");
    // Room traffic far beyond what the session keeps, with the viewer's server offers in it.
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        for i in 0..1500 {
            let _ = live.set_muted(sid, host_pid, &track, i % 2 == 0);
        }
        live.on_sfu_event(SfuEvent::Offer {
            peer: viewer_peer,
            sdp: format!("offer {round}"),
        });
    }
    // The last event: someone joins.
    let (last, _) = user(&server, "last@example.org", "Last One").await;
    join(&last, &session).await;

    let mut offers = Vec::new();
    let mut lagged = 0;
    let mut previous = seq(&first);
    loop {
        let event = events.next().await;
        match event["__typename"].as_str().unwrap() {
            "ServerOffer" => offers.push(event["sdp"].as_str().unwrap().to_owned()),
            "SessionSnapshot" => {
                assert_eq!(event["reason"], "LAGGED");
                lagged += 1;
                assert!(seq(&event) > previous);
                previous = seq(&event);
            }
            _ => {
                // Never a silent gap: each room event follows the one before, or a snapshot.
                assert_eq!(seq(&event), previous + 1, "{event}");
                previous = seq(&event);
                if event["__typename"] == "ParticipantJoined" {
                    assert_eq!(event["participant"]["name"], "Last One");
                    break;
                }
            }
        }
    }
    // The newest offer always arrives; older ones only while they were the newest.
    assert_eq!(
        offers.last().map(String::as_str),
        Some("offer 4"),
        "{offers:?}"
    );
    let mut sorted = offers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, offers, "in order, each once");
    eprintln!(
        "{} offers delivered of {ROUNDS}, {lagged} lagged snapshots",
        offers.len()
    );
    // What was replaced or resynced is counted.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert_eq!(counter("live_lagged_resyncs_total"), lagged);
    assert_eq!(
        counter("live_directed_superseded_total"),
        (ROUNDS - offers.len()) as u64
    );
    assert!(counter("live_room_events_total") >= (ROUNDS * 1500) as u64);
    events.close();
    server.stop().await;
}
