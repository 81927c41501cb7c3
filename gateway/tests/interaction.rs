//! Chat, Q&A and polls through GraphQL: limits and their errors (over HTTP and over the
//! websocket), who may delete, one upvote and one ballot per person, what an attendee sees of an
//! anonymous question and of unshared results, live delivery and history; and durability: a
//! gateway killed with SIGKILL right after acknowledging a message still has it when restarted.
//! Nothing waits on a clock to synchronise: events are awaited with a deadline.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Api, TestServer, join, live_session, user};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long an expected event may take (a failure bound, not a synchronisation).
const WAIT: Duration = Duration::from_secs(20);

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on ChatMessagePosted { seq message { id authorName body } }
  ... on ChatMessageDeleted { seq messageId }
  ... on QuestionUpdated { seq question { id body anonymous askerName mine votes upvotedByMe state answer answeredLive } }
  ... on PollUpdated { seq poll { id open resultsShared voted myChoices results voters } } } }";

const SEND: &str = "mutation($s: ID!, $b: String!) { sendChatMessage(sessionId: $s, body: $b) { id body authorName } }";

async fn server() -> TestServer {
    TestServer::start_with(std::path::PathBuf::from("/nonexistent"), |c| {
        c.auth.sign_up_per_ip_per_minute = 1000;
        c.auth.chat_per_user_per_minute = 8;
    })
    .await
}

/// A `graphql-transport-ws` connection: operations go out with their own ids; every `next`,
/// `error` and `complete` comes back on one channel as (id, message).
struct Ws {
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    rx: mpsc::UnboundedReceiver<(String, Value)>,
    next_id: u32,
}

impl Ws {
    async fn open(server: &TestServer, token: &str) -> Ws {
        let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        sink.send(Message::text(
            json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
        ))
        .await
        .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let value: Value = serde_json::from_str(&text).unwrap();
                if let Some(id) = value["id"].as_str() {
                    let _ = tx.send((id.to_owned(), value.clone()));
                }
            }
        });
        Ws {
            sink,
            rx,
            next_id: 0,
        }
    }

    async fn start(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.sink
            .send(Message::text(
                json!({ "id": id, "type": "subscribe",
                        "payload": { "query": query, "variables": variables } })
                .to_string(),
            ))
            .await
            .unwrap();
        id
    }

    /// The next message of operation `id` (others are dropped: use one operation at a time, or
    /// [`Events`] for a subscription).
    async fn reply(&mut self, id: &str) -> Value {
        loop {
            let (got, value) = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("an answer in time")
                .expect("websocket open");
            if got == id {
                return value;
            }
        }
    }

    /// Runs a query or mutation; returns its `next` payload (`data` and `errors`).
    async fn execute(&mut self, query: &str, variables: Value) -> Value {
        let id = self.start(query, variables).await;
        let reply = self.reply(&id).await;
        match reply["type"].as_str() {
            Some("next") => reply["payload"].clone(),
            Some("error") => json!({ "errors": reply["payload"] }),
            other => panic!("unexpected {other:?}: {reply}"),
        }
    }
}

/// A subscription to `sessionEvents` on its own websocket: its events as they arrive.
struct Events {
    ws: Ws,
    id: String,
}

impl Events {
    async fn open(server: &TestServer, token: &str, session: &str) -> Events {
        let mut ws = Ws::open(server, token).await;
        let id = ws.start(EVENTS, json!({ "s": session })).await;
        let mut events = Events { ws, id };
        let first = events.next().await;
        assert_eq!(first["__typename"], "SessionSnapshot", "{first}");
        events
    }

    async fn next(&mut self) -> Value {
        let reply = self.ws.reply(&self.id.clone()).await;
        assert_eq!(reply["type"], "next", "{reply}");
        reply["payload"]["data"]["sessionEvents"].clone()
    }

    /// The next event of `kind` (others, such as people joining, are skipped).
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let e = self.next().await;
            if e["__typename"] == kind {
                return e;
            }
        }
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_live_stored_paged_and_limited_on_http_and_websocket() {
    let server = server().await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, _) = user(&server, "ann@example.org", "Ann").await;
    join(&ann, &session).await;
    let mut host_events = Events::open(&server, &host_token, &session).await;

    // Live: stored, acknowledged, then delivered to the others.
    let sent = ann
        .ok(SEND, json!({ "s": session, "b": "  Hello, class!  " }))
        .await;
    assert_eq!(sent["sendChatMessage"]["body"], "Hello, class!");
    assert_eq!(sent["sendChatMessage"]["authorName"], "Ann");
    let posted = host_events.next_of("ChatMessagePosted").await;
    assert_eq!(posted["message"]["id"], sent["sendChatMessage"]["id"]);
    assert_eq!(posted["message"]["body"], "Hello, class!");

    // Too long: BAD_USER_INPUT naming the field; 2000 characters (not bytes) pass.
    let long = "é".repeat(2001);
    let body = ann.post(SEND, json!({ "s": session, "b": long })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "body");
    let blank = ann
        .post(SEND, json!({ "s": session, "b": "\u{200B} " }))
        .await;
    assert_eq!(blank["errors"][0]["extensions"]["field"], "body");
    ann.ok(SEND, json!({ "s": session, "b": "é".repeat(2000) }))
        .await;

    // The rate limit over HTTP: 8 a minute, 2 back to back (two already went).
    let body = ann.post(SEND, json!({ "s": session, "b": "spam" })).await;
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("try again")
    );

    // ... and over the websocket, for another user: the same limit, the same error.
    let (bo, bo_token) = user(&server, "bo@example.org", "Bo").await;
    join(&bo, &session).await;
    let mut ws = Ws::open(&server, &bo_token).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let answer = ws
            .execute(SEND, json!({ "s": session, "b": format!("ws {i}") }))
            .await;
        codes.push(answer["errors"][0]["extensions"]["code"].clone());
    }
    assert_eq!(codes, [Value::Null, Value::Null, json!("RATE_LIMITED")]);

    // History: newest page last-first, cursor to the older ones; nothing rate-limited stored.
    let page = |before: Value| {
        let host = host.clone();
        let session = session.clone();
        async move {
            host.ok(
                "query($s: ID!, $b: ID) { chatMessages(sessionId: $s, last: 2, before: $b) { messages { id body } hasOlder olderCursor } }",
                json!({ "s": session, "b": before }),
            )
            .await["chatMessages"]
                .clone()
        }
    };
    let newest = page(Value::Null).await;
    let bodies: Vec<&str> = newest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["ws 0", "ws 1"]);
    assert_eq!(newest["hasOlder"], true);
    let older = page(newest["olderCursor"].clone()).await;
    assert_eq!(older["messages"][0]["body"], "Hello, class!");
    assert_eq!(older["hasOlder"], false);
    assert_eq!(
        ann.error_code(
            "query($s: ID!) { chatMessages(sessionId: $s, last: 500) { hasOlder } }",
            json!({ "s": session })
        )
        .await,
        "BAD_USER_INPUT"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_co_hosts_delete_messages_for_everyone_attendees_cannot() {
    let server = server().await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (co, _) = user(&server, "co@example.org", "Cole").await;
    let co_id = co.ok("{ me { id } }", json!({})).await["me"]["id"].clone();
    let class = host
        .ok(
            "query($s: ID!) { session(id: $s) { class { id } } }",
            json!({ "s": session }),
        )
        .await["session"]["class"]["id"]
        .clone();
    host.ok(
        "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: CO_HOST) }",
        json!({ "c": class, "u": co_id }),
    )
    .await;
    join(&co, &session).await;
    let (ann, ann_token) = user(&server, "ann@example.org", "Ann").await;
    join(&ann, &session).await;
    let (bo, _) = user(&server, "bo@example.org", "Bo").await;
    join(&bo, &session).await;
    let mut ann_events = Events::open(&server, &ann_token, &session).await;
    let mut host_events = Events::open(&server, &host_token, &session).await;

    const DELETE: &str =
        "mutation($s: ID!, $m: ID!) { deleteChatMessage(sessionId: $s, messageId: $m) }";
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        ids.push(
            bo.ok(SEND, json!({ "s": session, "b": text })).await["sendChatMessage"]["id"].clone(),
        );
    }
    // An attendee may not, not even their own message.
    for who in [&ann, &bo] {
        assert_eq!(
            who.error_code(DELETE, json!({ "s": session, "m": ids[0] }))
                .await,
            "FORBIDDEN"
        );
    }
    // The co-host and the host may: gone for everyone, live, and from the history.
    co.ok(DELETE, json!({ "s": session, "m": ids[0] })).await;
    host.ok(DELETE, json!({ "s": session, "m": ids[1] })).await;
    for events in [&mut ann_events, &mut host_events] {
        let a = events.next_of("ChatMessageDeleted").await;
        let b = events.next_of("ChatMessageDeleted").await;
        assert_eq!([&a["messageId"], &b["messageId"]], [&ids[0], &ids[1]]);
    }
    assert_eq!(
        host.error_code(DELETE, json!({ "s": session, "m": ids[0] }))
            .await,
        "NOT_FOUND",
        "already deleted"
    );
    let history = ann
        .ok(
            "query($s: ID!) { chatMessages(sessionId: $s) { messages { id } } }",
            json!({ "s": session }),
        )
        .await;
    assert_eq!(history["chatMessages"]["messages"], json!([]));
    server.stop().await;
}

const ASK: &str = "mutation($s: ID!, $b: String!, $a: Boolean) { askQuestion(sessionId: $s, body: $b, anonymous: $a) { id askerName anonymous mine } }";
const UPVOTE: &str = "mutation($s: ID!, $q: ID!) { upvoteQuestion(sessionId: $s, questionId: $q) { votes upvotedByMe } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_one_upvote_per_person_anonymous_to_attendees_and_moderated_live() {
    let server = server().await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, ann_token) = user(&server, "ann@example.org", "Ann").await;
    join(&ann, &session).await;
    let (bo, _) = user(&server, "bo@example.org", "Bo").await;
    join(&bo, &session).await;
    let mut ann_events = Events::open(&server, &ann_token, &session).await;
    let mut host_events = Events::open(&server, &host_token, &session).await;

    let asked = bo
        .ok(
            ASK,
            json!({ "s": session, "b": "Is light a wave?", "a": true }),
        )
        .await["askQuestion"]
        .clone();
    assert_eq!(asked["askerName"], "Bo", "the asker sees their own name");
    assert_eq!(asked["mine"], true);
    let q = asked["id"].clone();
    // Anonymous to another attendee, named to the host.
    let to_ann = ann_events.next_of("QuestionUpdated").await;
    assert_eq!(to_ann["question"]["askerName"], Value::Null);
    assert_eq!(to_ann["question"]["anonymous"], true);
    assert_eq!(to_ann["question"]["mine"], false);
    let to_host = host_events.next_of("QuestionUpdated").await;
    assert_eq!(to_host["question"]["askerName"], "Bo");

    // One upvote per person: a second one is CONFLICT and counts nothing.
    let up = ann.ok(UPVOTE, json!({ "s": session, "q": q })).await;
    assert_eq!(
        up["upvoteQuestion"],
        json!({ "votes": 1, "upvotedByMe": true })
    );
    assert_eq!(
        ann.error_code(UPVOTE, json!({ "s": session, "q": q }))
            .await,
        "CONFLICT"
    );
    let live = host_events.next_of("QuestionUpdated").await;
    assert_eq!(live["question"]["votes"], 1);
    assert_eq!(live["question"]["upvotedByMe"], false);
    // Taken back, then given again.
    let back = ann
        .ok(
            "mutation($s: ID!, $q: ID!) { withdrawUpvote(sessionId: $s, questionId: $q) { votes upvotedByMe } }",
            json!({ "s": session, "q": q }),
        )
        .await;
    assert_eq!(
        back["withdrawUpvote"],
        json!({ "votes": 0, "upvotedByMe": false })
    );
    ann.ok(UPVOTE, json!({ "s": session, "q": q })).await;
    host.ok(UPVOTE, json!({ "s": session, "q": q })).await;

    // Attendees may not moderate; the host answers in writing, dismisses, reopens, answers live.
    const ANSWER: &str = "mutation($s: ID!, $q: ID!, $a: String) { answerQuestion(sessionId: $s, questionId: $q, answer: $a) { state answer answeredLive votes } }";
    assert_eq!(
        ann.error_code(ANSWER, json!({ "s": session, "q": q, "a": "yes" }))
            .await,
        "FORBIDDEN"
    );
    let answered = host
        .ok(ANSWER, json!({ "s": session, "q": q, "a": "Both." }))
        .await;
    assert_eq!(
        answered["answerQuestion"],
        json!({ "state": "ANSWERED", "answer": "Both.", "answeredLive": false, "votes": 2 })
    );
    for op in ["dismissQuestion", "reopenQuestion"] {
        host.ok(
            &format!(
                "mutation($s: ID!, $q: ID!) {{ {op}(sessionId: $s, questionId: $q) {{ state }} }}"
            ),
            json!({ "s": session, "q": q }),
        )
        .await;
    }
    host.ok(ANSWER, json!({ "s": session, "q": q })).await;
    // Ann sees each change in order, after the host's upvote.
    while ann_events.next_of("QuestionUpdated").await["question"]["votes"] != 2 {}
    let mut states = Vec::new();
    while states.len() < 4 {
        let e = ann_events.next_of("QuestionUpdated").await;
        let q = &e["question"];
        assert_eq!((&q["votes"], &q["upvotedByMe"]), (&json!(2), &json!(true)));
        states.push((q["state"].clone(), q["answeredLive"].clone()));
    }
    assert_eq!(
        states,
        [
            (json!("ANSWERED"), json!(false)),
            (json!("DISMISSED"), json!(false)),
            (json!("OPEN"), json!(false)),
            (json!("ANSWERED"), json!(true)),
        ]
    );
    let list = ann
        .ok(
            "query($s: ID!) { questions(sessionId: $s) { askerName votes upvotedByMe answeredLive } }",
            json!({ "s": session }),
        )
        .await;
    assert_eq!(
        list["questions"],
        json!([{ "askerName": null, "votes": 2, "upvotedByMe": true, "answeredLive": true }])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_one_ballot_per_person_results_for_hosts_until_shared() {
    let server = server().await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, ann_token) = user(&server, "ann@example.org", "Ann").await;
    join(&ann, &session).await;
    let (bo, _) = user(&server, "bo@example.org", "Bo").await;
    join(&bo, &session).await;
    let mut ann_events = Events::open(&server, &ann_token, &session).await;
    let mut host_events = Events::open(&server, &host_token, &session).await;

    const CREATE: &str = "mutation($s: ID!, $i: CreatePollInput!) { createPoll(sessionId: $s, input: $i) { id open } }";
    const VOTE: &str = "mutation($s: ID!, $p: ID!, $o: [Int!]!) { votePoll(sessionId: $s, pollId: $p, options: $o) { voted myChoices results } }";
    let input = json!({ "question": "Which colour?", "options": ["Red", "Green", "Blue"] });
    assert_eq!(
        ann.error_code(CREATE, json!({ "s": session, "i": input }))
            .await,
        "FORBIDDEN"
    );
    let bad = host
        .post(
            CREATE,
            json!({ "s": session, "i": { "question": "?", "options": ["only one"] } }),
        )
        .await;
    assert_eq!(bad["errors"][0]["extensions"]["field"], "input.options");
    let poll =
        host.ok(CREATE, json!({ "s": session, "i": input })).await["createPoll"]["id"].clone();
    assert!(ann_events.next_of("PollUpdated").await["poll"]["results"].is_null());

    // Single choice: exactly one valid option.
    for wrong in [json!([0, 1]), json!([3]), json!([])] {
        let body = ann
            .post(VOTE, json!({ "s": session, "p": poll, "o": wrong }))
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "options",
            "{body}"
        );
    }
    let voted = ann
        .ok(VOTE, json!({ "s": session, "p": poll, "o": [1] }))
        .await;
    assert_eq!(
        voted["votePoll"],
        json!({ "voted": true, "myChoices": [1], "results": null }),
        "an attendee does not see results before they are shared"
    );
    assert_eq!(
        ann.error_code(VOTE, json!({ "s": session, "p": poll, "o": [2] }))
            .await,
        "CONFLICT",
        "one ballot per person"
    );
    bo.ok(VOTE, json!({ "s": session, "p": poll, "o": [1] }))
        .await;
    // The host sees results live.
    let mut seen = Value::Null;
    while seen["voters"] != 2 {
        seen = host_events.next_of("PollUpdated").await["poll"].clone();
    }
    assert_eq!(seen["results"], json!([0, 2, 0]));

    // Closed, then shared: everyone sees the results.
    host.ok(
        "mutation($s: ID!, $p: ID!) { closePoll(sessionId: $s, pollId: $p) { open } }",
        json!({ "s": session, "p": poll }),
    )
    .await;
    assert_eq!(
        bo.error_code(VOTE, json!({ "s": session, "p": poll, "o": [0] }))
            .await,
        "CONFLICT"
    );
    host.ok(
        "mutation($s: ID!, $p: ID!) { sharePollResults(sessionId: $s, pollId: $p) { resultsShared } }",
        json!({ "s": session, "p": poll }),
    )
    .await;
    let mut shared = Value::Null;
    while shared["resultsShared"] != true {
        shared = ann_events.next_of("PollUpdated").await["poll"].clone();
    }
    assert_eq!(shared["results"], json!([0, 2, 0]));
    assert_eq!(shared["open"], false);
    assert_eq!(shared["myChoices"], json!([1]));
    server.stop().await;
}

/// The gateway binary killed with SIGKILL right after it acknowledged a chat message, restarted
/// on the same data directory: the message is in the history.
#[test]
fn an_acknowledged_message_survives_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CLASSROOM_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .current_dir(dir.path())
            .env("CLASSROOM_HTTP_ADDR", "127.0.0.1:0")
            .env("CLASSROOM_SFU_UDP_PORT_START", "0")
            .env("CLASSROOM_SFU_SHARDS", "1")
            .env("CLASSROOM_LOG_FORMAT", "json")
            .env("CLASSROOM_HTTP_STATIC_DIR", dir.path().join("no-frontend"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(addr) = value["fields"]["addr"].as_str() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("the gateway listens");
        (child, format!("http://{addr}"))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut child, base) = start();
    let host = Api::new(&base);
    let (session, sent) = runtime.block_on(async {
        host.sign_up("host@example.org", "Hannah Host").await;
        let session = live_session(&host).await.1;
        join(&host, &session).await;
        let sent = host
            .ok(SEND, json!({ "s": session, "b": "remember me" }))
            .await["sendChatMessage"]["id"]
            .clone();
        (session, sent)
    });
    // Right after the acknowledgement: no shutdown, no flush.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, base) = start();
    let again = Api::new(&base);
    let history = runtime.block_on(async {
        again
            .ok(
                "mutation($i: SignInInput!) { signIn(input: $i) { id } }",
                json!({ "i": { "email": "host@example.org", "password": "correct horse battery" } }),
            )
            .await;
        join(&again, &session).await;
        again
            .ok(
                "query($s: ID!) { chatMessages(sessionId: $s) { messages { id body } } }",
                json!({ "s": session }),
            )
            .await
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        history["chatMessages"]["messages"],
        json!([{ "id": sent, "body": "remember me" }])
    );
}
