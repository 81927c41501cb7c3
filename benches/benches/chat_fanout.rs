//! Chat in a class of 200: every participant sends a message at the same moment, over real HTTP
//! (`sendChatMessage`, acknowledged once stored in SQLite), and every participant receives every
//! message on its `sessionEvents` websocket. Reports the time from sending a message to its
//! delivery to each of the 200 subscribers, and to the last of them (p50, p99, max), and that no
//! send failed. Then the session state machine's rate for chat events on one core.
//!
//! Not a criterion bench: percentiles under a burst are what matters. Figures depend on the
//! machine (and on what else runs on it): compare runs on one machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Barrier, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PARTICIPANTS: usize = 200;
const ROUNDS: usize = 3;
const WAIT: Duration = Duration::from_secs(120);
const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename ... on ChatMessagePosted { message { body } } } }";
const SEND: &str =
    "mutation($s: ID!, $b: String!) { sendChatMessage(sessionId: $s, body: $b) { id } }";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn post(http: &reqwest::Client, url: &str, cookie: &str, query: &str, vars: Value) -> Value {
    http.post(url)
        .header("cookie", cookie)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("request")
        .json::<Value>()
        .await
        .expect("json")
}

/// Opens a subscription with `cookie`; returns when its snapshot has come. Each message body
/// received is handed to `tx` with the instant it arrived.
async fn subscribe(
    ws_url: &str,
    cookie: &str,
    session: &str,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) {
    let mut request = ws_url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
                "payload": { "query": EVENTS, "variables": { "s": session } } })
        .to_string(),
    ))
    .await
    .unwrap();
    // The snapshot first.
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("websocket closed before the snapshot")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["payload"]["data"]["sessionEvents"]["__typename"] == "SessionSnapshot" {
            break;
        }
        assert_ne!(v["type"], "error", "{v}");
    }
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let at = Instant::now();
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(body) = v["payload"]["data"]["sessionEvents"]["message"]["body"].as_str()
                && tx.send((body.to_owned(), at)).is_err()
            {
                return;
            }
        }
    });
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "chat_fanout".contains(a.as_str())) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::default();
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.static_dir = data.path().join("static");
    config.database.url = format!("sqlite://{}", data.path().join("bench.db").display());
    config.storage.path = data.path().join("objects");
    config.sfu.shards = 1;
    config.sfu.udp_port_start = 0;
    let running = gateway::start(config).await.expect("gateway");
    let url = format!("http://{}/graphql", running.local_addr);
    let ws_url = format!("ws://{}/graphql/ws", running.local_addr);
    let state = running.state().clone();

    // The host (its cookie from signing up) makes a live session.
    let host = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let gql = |q: &str, v: Value| {
        let host = host.clone();
        let url = url.clone();
        let body = json!({ "query": q, "variables": v });
        async move {
            host.post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    gql("mutation { signUp(input: {email: \"host@example.org\", password: \"bench password\", displayName: \"Host\"}) { id } }", json!({})).await;
    let class = gql(
        "mutation { createClass(input: {title: \"Bench\"}) { id } }",
        json!({}),
    )
    .await["data"]["createClass"]["id"]
        .clone();
    let session = gql(
        "mutation($c: ID!) { scheduleSession(input: {classId: $c, start: \"2030-01-01T10:00:00Z\"}) { id } }",
        json!({ "c": class }),
    )
    .await["data"]["scheduleSession"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gql(
        "mutation($s: ID!) { startSession(id: $s) { id } }",
        json!({ "s": session }),
    )
    .await;

    // 200 participants, each with a browser session cookie, joined and subscribed.
    let ids: Vec<i64> = state
        .db
        .interact(|c| {
            (0..PARTICIPANTS)
                .map(|i| {
                    let email = format!("p{i}@example.org");
                    let name = format!("Participant {i}");
                    schema::models::user::create(
                        c,
                        &schema::models::user::NewUser {
                            email: Some(&email),
                            email_verified: false,
                            display_name: &name,
                            password_hash: None,
                            created_at: schema::now_ms(),
                        },
                    )
                    .map(|u| u.id)
                })
                .collect()
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut cookies = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    for (i, id) in ids.iter().enumerate() {
        let (_, set_cookie) = gateway::graphql::account::start_session(&state, *id)
            .await
            .unwrap();
        // `classroom_session=<secret>`, without the attributes.
        let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
        let joined = post(
            &http,
            &url,
            &cookie,
            "mutation($s: ID!) { joinSession(sessionId: $s) { participantId } }",
            json!({ "s": session }),
        )
        .await;
        assert!(joined["errors"].is_null(), "{joined}");
        let (one_tx, mut one_rx) = mpsc::unbounded_channel();
        subscribe(&ws_url, &cookie, &session, one_tx).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some((body, at)) = one_rx.recv().await {
                if tx.send((i, body, at)).is_err() {
                    return;
                }
            }
        });
        cookies.push(cookie);
    }

    let mut to_each = Vec::new();
    let mut to_all = Vec::new();
    let mut acks = Vec::new();
    let mut failures = 0usize;
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(PARTICIPANTS));
        let sends: Vec<_> = cookies
            .iter()
            .enumerate()
            .map(|(i, cookie)| {
                let (http, url, cookie, session) =
                    (http.clone(), url.clone(), cookie.clone(), session.clone());
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let body = format!("r{round} m{i}");
                    let sent = Instant::now();
                    let answer = post(
                        &http,
                        &url,
                        &cookie,
                        SEND,
                        json!({ "s": session, "b": body }),
                    )
                    .await;
                    (body, sent, sent.elapsed(), answer["errors"].is_null())
                })
            })
            .collect();
        let mut sent_at = std::collections::HashMap::new();
        for s in sends {
            let (body, at, ack, ok) = s.await.unwrap();
            failures += usize::from(!ok);
            acks.push(ack);
            sent_at.insert(body, at);
        }
        // Every message to every subscriber.
        let mut last = std::collections::HashMap::<String, Instant>::new();
        let mut got = 0usize;
        let deadline = Instant::now() + WAIT;
        while got < PARTICIPANTS * PARTICIPANTS {
            let (_, body, at) = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .expect("every message delivered in time")
                .expect("open");
            if !body.starts_with(&format!("r{round} ")) {
                continue;
            }
            got += 1;
            to_each.push(at - sent_at[&body]);
            let l = last.entry(body).or_insert(at);
            *l = (*l).max(at);
        }
        to_all.extend(last.iter().map(|(b, at)| *at - sent_at[b]));
    }
    to_each.sort();
    to_all.sort();
    acks.sort();
    println!(
        "chat: {PARTICIPANTS} participants each send 1 message at once, {ROUNDS} rounds, SQLite, real HTTP + websockets; failed sends: {failures}"
    );
    println!("{:<34} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    for (what, v) in [
        ("send -> acknowledged (stored)", &acks),
        ("send -> delivered, per subscriber", &to_each),
        ("send -> delivered to all 200", &to_all),
    ] {
        println!(
            "{what:<34} {:>10.2?} {:>10.2?} {:>10.2?}",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
    assert_eq!(failures, 0, "every message was accepted");
    running.stop(Duration::from_secs(5)).await;

    // The state machine alone: chat events applied per second on one core.
    use gateway::live::interaction::{ChatLine, Interaction};
    use gateway::live::{Command, ParticipantInfo, SessionCore};
    let mut core = SessionCore::new();
    let t0 = std::time::Instant::now();
    for id in 1..=PARTICIPANTS as i64 {
        core.apply(
            Command::Join(ParticipantInfo {
                id,
                user_id: id,
                name: format!("p{id}"),
                role: gateway::roles::Role::Viewer,
                connected: true,
            }),
            t0,
        )
        .unwrap();
    }
    let change = Arc::new(Interaction::ChatPosted(ChatLine {
        id: 1,
        user_id: 1,
        author: "p1".into(),
        body: "hello".into(),
        sent_at: 0,
    }));
    let n = 1_000_000u32;
    let started = Instant::now();
    for i in 0..n {
        let out = core
            .apply(
                Command::Interaction {
                    participant_id: i64::from(i % PARTICIPANTS as u32) + 1,
                    change: Arc::clone(&change),
                },
                t0,
            )
            .unwrap();
        std::hint::black_box(out);
    }
    let took = started.elapsed();
    println!(
        "state machine: {n} chat events in {took:.2?}: {:.0} events/s on one core",
        f64::from(n) / took.as_secs_f64()
    );
}
