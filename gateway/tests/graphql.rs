//! The GraphQL API over real HTTP and websockets, as scripts and the app use it.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Api, TestServer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CREATE_CLASS: &str =
    "mutation($i: CreateClassInput!) { createClass(input: $i) { id title } }";
const SCHEDULE: &str =
    "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id state } }";
const START: &str = "mutation($id: ID!) { startSession(id: $id) { id state startedAt } }";
const CREATE_TOKEN: &str = "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret token { id name scopes } } }";

async fn server() -> TestServer {
    // These tests use only the API; the static directory does not need to exist.
    let static_dir = std::path::PathBuf::from("/nonexistent/classroom-static");
    TestServer::start(static_dir).await
}

#[tokio::test]
async fn a_script_signs_up_creates_a_token_and_runs_a_class() {
    let server = server().await;
    let browser = Api::new(&server.url);
    browser.sign_up("host@example.org", "Hannah Host").await;
    let me = browser.ok("{ me { displayName email } }", json!({})).await;
    assert_eq!(
        me["me"],
        json!({ "displayName": "Hannah Host", "email": "host@example.org" })
    );

    let created = browser
        .ok(
            CREATE_TOKEN,
            json!({ "i": { "name": "ci", "scopes": ["READ", "WRITE"] } }),
        )
        .await;
    let secret = created["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("clsrm_"));
    assert_eq!(
        created["createApiToken"]["token"]["scopes"],
        json!(["READ", "WRITE"])
    );

    // A fresh client with only the token: no cookies.
    let script = Api::new(&server.url).with_bearer(&secret);
    assert_eq!(
        script.ok("{ me { email } }", json!({})).await["me"]["email"],
        "host@example.org"
    );
    let class = script
        .ok(
            CREATE_CLASS,
            json!({ "i": { "title": "Physics 101", "description": "Motion" } }),
        )
        .await;
    let class_id = class["createClass"]["id"].as_str().unwrap().to_owned();
    let session = script
        .ok(SCHEDULE, json!({ "i": { "classId": class_id, "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z" } }))
        .await;
    let session_id = session["scheduleSession"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(session["scheduleSession"]["state"], "SCHEDULED");
    let started = script.ok(START, json!({ "id": session_id })).await;
    assert_eq!(started["startSession"]["state"], "LIVE");

    let listed = script
        .ok(
            "{ classes(first: 10, mine: true) { edges { node { title myRole sessions { id state } } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["classes"],
        json!({ "edges": [{ "node": { "title": "Physics 101", "myRole": "HOST", "sessions": [{ "id": session_id, "state": "LIVE" }] } }],
                "pageInfo": { "hasNextPage": false } })
    );
    let tokens = browser
        .ok("{ apiTokens { name lastUsedAt } }", json!({}))
        .await;
    assert_eq!(tokens["apiTokens"][0]["name"], "ci");
    assert!(
        tokens["apiTokens"][0]["lastUsedAt"].is_string(),
        "token use is recorded"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_codes_and_fields_and_writes_nothing() {
    let server = server().await;
    let api = Api::new(&server.url);
    let anonymous = Api::new(&server.url);
    assert_eq!(
        anonymous
            .error_code(CREATE_CLASS, json!({ "i": { "title": "x" } }))
            .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        anonymous.ok("{ me { id } }", json!({})).await["me"],
        Value::Null
    );

    let short = api
        .post(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({ "i": { "email": "a@example.org", "password": "short", "displayName": "A" } }),
        )
        .await;
    assert_eq!(
        short["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "input.password" })
    );
    let bad_email = api
        .post(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({ "i": { "email": "not-an-email", "password": "long enough pw", "displayName": "A" } }),
        )
        .await;
    assert_eq!(bad_email["errors"][0]["extensions"]["field"], "input.email");

    api.sign_up("a@example.org", "A").await;
    let dup = Api::new(&server.url);
    assert_eq!(
        dup.error_code(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({ "i": { "email": "A@Example.org", "password": "long enough pw", "displayName": "A2" } })
        )
        .await,
        "CONFLICT"
    );

    let blank = api
        .post(CREATE_CLASS, json!({ "i": { "title": "   " } }))
        .await;
    assert_eq!(
        blank["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "input.title" })
    );
    let long = api
        .post(CREATE_CLASS, json!({ "i": { "title": "x".repeat(201) } }))
        .await;
    assert_eq!(long["errors"][0]["extensions"]["field"], "input.title");
    assert_eq!(
        api.error_code("{ class(id: \"nope\") { id } }", json!({}))
            .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        api.error_code("{ class(id: \"999999\") { id } }", json!({}))
            .await,
        "NOT_FOUND"
    );

    let class_id = api
        .ok(CREATE_CLASS, json!({ "i": { "title": "Chemistry" } }))
        .await["createClass"]["id"]
        .clone();
    let backwards = api
        .post(SCHEDULE, json!({ "i": { "classId": class_id, "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T09:00:00Z" } }))
        .await;
    assert_eq!(backwards["errors"][0]["extensions"]["field"], "input.end");
    let sid = api
        .ok(
            SCHEDULE,
            json!({ "i": { "classId": class_id, "start": "2026-12-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();
    api.ok(START, json!({ "id": sid })).await;
    assert_eq!(
        api.error_code(START, json!({ "id": sid })).await,
        "CONFLICT"
    );
    let sid2 = api
        .ok(
            SCHEDULE,
            json!({ "i": { "classId": class_id, "start": "2026-12-02T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();
    assert_eq!(
        api.error_code(START, json!({ "id": sid2 })).await,
        "CONFLICT",
        "one live session per class"
    );
    assert_eq!(
        api.error_code(
            "mutation($id: ID!) { deleteClass(id: $id) }",
            json!({ "id": class_id })
        )
        .await,
        "CONFLICT",
        "a class with a live session is not deleted"
    );
    let still = api
        .ok(
            "query($id: ID!) { class(id: $id) { sessions { state } } }",
            json!({ "id": class_id }),
        )
        .await;
    assert_eq!(
        still["class"]["sessions"],
        json!([{ "state": "LIVE" }, { "state": "SCHEDULED" }]),
        "the refused delete changed nothing"
    );

    // Limits on the query itself.
    let within = "{ classes { edges { node { sessions { class { title } } } } } }";
    assert!(
        api.post(within, json!({})).await.get("errors").is_none(),
        "depth 6 is fine"
    );
    let nested = "{ classes { edges { node { sessions { class { sessions { class { sessions { class { sessions { class { id } } } } } } } } } } } }";
    let refused = api.post(nested, json!({})).await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nested too deep"),
        "{refused}"
    );
    server.stop().await;
}

/// A client whose requests come from `ip` (any 127.x.y.z reaches a loopback server).
fn from_ip(server: &TestServer, ip: &str) -> Api {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    Api::with_client(client, &server.url)
}

#[tokio::test]
async fn sign_in_is_limited_per_account_and_source_so_nobody_locks_the_owner_out() {
    // These tests use only the API; the static directory does not need to exist.
    let static_dir = std::path::PathBuf::from("/nonexistent/classroom-static");
    let server = TestServer::start_with(static_dir, |c| {
        c.auth.sign_in_per_account_all_ips_per_minute = 12;
    })
    .await;
    Api::new(&server.url).sign_up("r@example.org", "R").await;
    let sign_in = "mutation($i: SignInInput!) { signIn(input: $i) { id } }";
    let wrong = json!({ "i": { "email": "r@example.org", "password": "wrong password!" } });
    let right = json!({ "i": { "email": "r@example.org", "password": "correct horse battery" } });

    // An attacker guessing from one address is limited after 5 attempts...
    let attacker = from_ip(&server, "127.0.0.2");
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(attacker.error_code(sign_in, wrong.clone()).await);
    }
    assert_eq!(codes[..5], ["FORBIDDEN"; 5], "{codes:?}");
    assert_eq!(codes[5], "RATE_LIMITED", "{codes:?}");
    // ... even with the right password from there ...
    assert_eq!(
        attacker.error_code(sign_in, right.clone()).await,
        "RATE_LIMITED"
    );
    // ... while the owner, elsewhere, signs in.
    from_ip(&server, "127.0.0.1")
        .ok(sign_in, right.clone())
        .await;

    // Guesses from many addresses meet the account's own, looser limit (12 here, all sources
    // together): the account is then limited everywhere.
    let mut limited = false;
    for n in 3..10 {
        let other = from_ip(&server, &format!("127.0.0.{n}"));
        for _ in 0..2 {
            limited |= other.error_code(sign_in, wrong.clone()).await == "RATE_LIMITED";
        }
    }
    assert!(limited, "the per-account limit applies across addresses");
    assert_eq!(
        from_ip(&server, "127.0.0.1")
            .error_code(sign_in, right)
            .await,
        "RATE_LIMITED"
    );
    server.stop().await;
}

#[tokio::test]
async fn sign_up_is_rate_limited_per_ip() {
    // A low limit, so that the window does not refill while the (slow, debug-built) argon2
    // hashing of the allowed sign-ups runs.
    let limit = 3;
    // These tests use only the API; the static directory does not need to exist.
    let static_dir = std::path::PathBuf::from("/nonexistent/classroom-static");
    let server =
        TestServer::start_with(static_dir, |c| c.auth.sign_up_per_ip_per_minute = limit).await;
    let sign_up = "mutation($i: SignUpInput!) { signUp(input: $i) { id } }";
    for n in 0..limit {
        let i = json!({ "i": { "email": format!("u{n}@example.org"), "password": "long enough pw", "displayName": "U" } });
        Api::new(&server.url).ok(sign_up, i).await;
    }
    let one_more = json!({ "i": { "email": "late@example.org", "password": "long enough pw", "displayName": "L" } });
    let body = Api::new(&server.url).post(sign_up, one_more).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    server.stop().await;
}

#[tokio::test]
async fn websockets_authenticate_with_a_token_in_connection_init() {
    let server = server().await;
    let api = Api::new(&server.url);
    api.sign_up("t@example.org", "Tokened").await;
    let created = api
        .ok(
            CREATE_TOKEN,
            json!({ "i": { "name": "ws", "scopes": ["READ"] } }),
        )
        .await;
    let secret = created["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": secret } }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_message(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { displayName } }" } })
            .to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_message(&mut ws).await["payload"]["data"]["me"]["displayName"],
        "Tokened"
    );
    server.stop().await;
}

#[tokio::test]
async fn sign_out_and_revocation_take_effect_at_once() {
    let server = server().await;
    let laptop = Api::new(&server.url);
    laptop.sign_up("s@example.org", "S").await;
    let phone = Api::new(&server.url);
    phone
        .ok(
            "mutation($i: SignInInput!) { signIn(input: $i) { id } }",
            json!({ "i": { "email": "s@example.org", "password": "correct horse battery" } }),
        )
        .await;
    let read_only = laptop
        .ok(
            CREATE_TOKEN,
            json!({ "i": { "name": "ro", "scopes": ["READ"] } }),
        )
        .await;
    let token =
        Api::new(&server.url).with_bearer(read_only["createApiToken"]["secret"].as_str().unwrap());
    assert_eq!(
        token
            .error_code(CREATE_CLASS, json!({ "i": { "title": "x" } }))
            .await,
        "FORBIDDEN",
        "READ scope only"
    );
    assert_eq!(
        token
            .error_code(
                CREATE_TOKEN,
                json!({ "i": { "name": "x", "scopes": ["READ"] } })
            )
            .await,
        "FORBIDDEN"
    );
    let token_id = read_only["createApiToken"]["token"]["id"].clone();
    laptop
        .ok(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": token_id }),
        )
        .await;
    assert_eq!(
        token.ok("{ me { id } }", json!({})).await["me"],
        Value::Null,
        "a revoked token is anonymous"
    );

    laptop.ok("mutation { signOut }", json!({})).await;
    assert_eq!(
        laptop.ok("{ me { id } }", json!({})).await["me"],
        Value::Null
    );
    assert!(
        phone.ok("{ me { id } }", json!({})).await["me"].is_object(),
        "other sessions stay"
    );
    assert_eq!(
        phone.ok("mutation { signOutEverywhere }", json!({})).await["signOutEverywhere"],
        1
    );
    assert_eq!(
        phone.ok("{ me { id } }", json!({})).await["me"],
        Value::Null
    );
    server.stop().await;
}

#[tokio::test]
async fn cookie_requests_from_other_sites_are_refused() {
    let server = server().await;
    let api = Api::new(&server.url);
    api.sign_up("c@example.org", "C").await;
    let raw = reqwest::Client::new();
    // A form post (what a cross-site page can send without a preflight) is refused, cookie or not.
    let form = raw
        .post(format!("{}/graphql", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", "classroom_session=whatever")
        .body("query=mutation%7BsignOut%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let evil = raw
        .post(format!("{}/graphql", server.url))
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .header("cookie", "classroom_session=whatever")
        .body(r#"{"query":"{ me { id } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    server.stop().await;
}

#[tokio::test]
async fn the_checked_in_sdl_matches_the_code() {
    let checked_in =
        std::fs::read_to_string(support::workspace_root().join("gateway/schema.graphql")).unwrap();
    assert!(
        checked_in == gateway::graphql::sdl(),
        "gateway/schema.graphql is stale: run `cargo run -p gateway -- print-schema > gateway/schema.graphql`"
    );
}

/// Reads websocket messages until one that is not a keep-alive ping.
async fn next_message(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a websocket message within 10 s")
            .expect("open websocket")
            .expect("websocket message");
        if let Message::Text(text) = msg {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" && value["type"] != "ka" {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn session_state_subscription_follows_changes_and_ends_on_sign_out() {
    let server = server().await;
    let host = Api::new(&server.url);
    host.sign_up("w@example.org", "W").await;
    let class_id = host
        .ok(CREATE_CLASS, json!({ "i": { "title": "Live" } }))
        .await["createClass"]["id"]
        .clone();
    let sid = host
        .ok(
            SCHEDULE,
            json!({ "i": { "classId": class_id, "start": "2026-12-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();

    // A viewer follows the session over a websocket authenticated by their session cookie.
    let viewer = Api::new(&server.url);
    viewer.sign_up("v@example.org", "V").await;
    let sign_in = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .json(&json!({ "query": "mutation($i: SignInInput!) { signIn(input: $i) { id } }", "variables": { "i": { "email": "v@example.org", "password": "correct horse battery" } } }))
        .send()
        .await
        .unwrap();
    let cookie = sign_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
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
    assert_eq!(next_message(&mut ws).await["type"], "connection_ack");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($id: ID!) { sessionStateChanged(sessionId: $id) { sessionId state } }", "variables": { "id": sid } } });
    ws.send(Message::text(subscribe.to_string())).await.unwrap();

    // First the state the session is in now: from here on no change can be missed.
    let current = next_message(&mut ws).await;
    assert_eq!(
        current["payload"]["data"]["sessionStateChanged"],
        json!({ "sessionId": sid, "state": "SCHEDULED" }),
        "{current}"
    );

    host.ok(START, json!({ "id": sid })).await;
    let event = next_message(&mut ws).await;
    assert_eq!(
        event["payload"]["data"]["sessionStateChanged"],
        json!({ "sessionId": sid, "state": "LIVE" }),
        "{event}"
    );

    // Signing out that browser session ends the subscription at once.
    let sign_out = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .header("cookie", &cookie)
        .json(&json!({ "query": "mutation { signOut }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), 200);
    let ended = next_message(&mut ws).await;
    assert_eq!(ended["payload"]["data"], Value::Null, "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert_eq!(next_message(&mut ws).await["type"], "complete");
    server.stop().await;
}

const CLASS_TITLES: &str =
    "query($mine: Boolean!) { classes(first: 50, mine: $mine) { edges { node { title } } } }";
const JOIN: &str = "mutation($s: ID!) { joinSession(sessionId: $s) { role } }";
const INVITE: &str = "mutation($c: ID!, $e: String!) { inviteToClass(classId: $c, email: $e) }";
const REMOVE_MEMBER: &str =
    "mutation($c: ID!, $u: ID!) { removeFromClass(classId: $c, userId: $u) }";

/// Titles of the classes `api` lists (newest first); `mine`: only those it is a member of.
async fn titles(api: &Api, mine: bool) -> Vec<String> {
    let data = api.ok(CLASS_TITLES, json!({ "mine": mine })).await;
    data["classes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates a class with a live session as `host`; returns (class id, session id).
async fn live_class(host: &Api, title: &str, visibility: Option<&str>) -> (Value, Value) {
    let mut input = json!({ "title": title });
    if let Some(v) = visibility {
        input["visibility"] = json!(v);
    }
    let created = host
        .ok(
            "mutation($i: CreateClassInput!) { createClass(input: $i) { id visibility } }",
            json!({ "i": input }),
        )
        .await;
    assert_eq!(
        created["createClass"]["visibility"],
        visibility.unwrap_or("UNLISTED"),
        "UNLISTED is the default"
    );
    let class_id = created["createClass"]["id"].clone();
    let sid = host
        .ok(
            SCHEDULE,
            json!({ "i": { "classId": class_id, "start": "2026-12-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();
    host.ok(START, json!({ "id": sid })).await;
    (class_id, sid)
}

#[tokio::test]
async fn visibility_decides_who_lists_opens_and_joins_a_class() {
    let server = server().await;
    let host = Api::new(&server.url);
    host.sign_up("teacher@example.org", "Teacher").await;
    let stranger = Api::new(&server.url);
    let stranger_id = stranger.sign_up("student@example.org", "Student").await;

    let (_public, public_sid) = live_class(&host, "Public", Some("PUBLIC")).await;
    let (unlisted, unlisted_sid) = live_class(&host, "Unlisted", None).await;
    let (private, private_sid) = live_class(&host, "Private", Some("INVITE_ONLY")).await;

    // Lists: the host sees all three; a stranger only the public class, and is member of none.
    assert_eq!(
        titles(&host, false).await,
        ["Private", "Unlisted", "Public"]
    );
    assert_eq!(titles(&stranger, false).await, ["Public"]);
    assert!(titles(&stranger, true).await.is_empty());

    // The link is enough for public and unlisted classes.
    let opened = stranger
        .ok(
            "query($c: ID!) { class(id: $c) { title visibility myRole } }",
            json!({ "c": unlisted }),
        )
        .await;
    assert_eq!(
        opened["class"],
        json!({ "title": "Unlisted", "visibility": "UNLISTED", "myRole": "VIEWER" })
    );
    for sid in [&public_sid, &unlisted_sid] {
        assert_eq!(
            stranger
                .ok(
                    "query($s: ID!) { session(id: $s) { state } }",
                    json!({ "s": sid })
                )
                .await["session"]["state"],
            "LIVE"
        );
        assert_eq!(
            stranger.ok(JOIN, json!({ "s": sid })).await["joinSession"]["role"],
            "VIEWER"
        );
    }

    // An invite-only class does not exist for a stranger: not as a class, a session, its
    // recordings, or a session to join; and they cannot invite themselves.
    let hidden = [
        (
            "query($c: ID!) { class(id: $c) { id } }",
            json!({ "c": private }),
        ),
        (
            "query($s: ID!) { session(id: $s) { id } }",
            json!({ "s": private_sid }),
        ),
        (
            "query($s: ID!) { recordings(sessionId: $s) { id } }",
            json!({ "s": private_sid }),
        ),
        (JOIN, json!({ "s": private_sid })),
        (INVITE, json!({ "c": private, "e": "student@example.org" })),
        (
            "mutation($c: ID!) { updateClass(id: $c, input: { visibility: PUBLIC }) { id } }",
            json!({ "c": private }),
        ),
    ];
    for (query, variables) in &hidden {
        assert_eq!(
            stranger.error_code(query, variables.clone()).await,
            "NOT_FOUND",
            "{query}"
        );
    }

    // Invitations: by an existing account's email, compared case-insensitively.
    assert_eq!(
        host.error_code(INVITE, json!({ "c": private, "e": "nobody@example.org" }))
            .await,
        "NOT_FOUND"
    );
    let bad = host
        .post(INVITE, json!({ "c": private, "e": "not an email" }))
        .await;
    assert_eq!(
        bad["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "email" })
    );
    assert_eq!(
        host.ok(
            INVITE,
            json!({ "c": private, "e": " Student@Example.ORG " })
        )
        .await["inviteToClass"],
        true
    );
    assert_eq!(titles(&stranger, false).await, ["Private", "Public"]);
    assert_eq!(titles(&stranger, true).await, ["Private"]);
    assert_eq!(
        stranger.ok(JOIN, json!({ "s": private_sid })).await["joinSession"]["role"],
        "VIEWER"
    );
    let members = "query($c: ID!) { class(id: $c) { members { id displayName } } }";
    assert_eq!(
        host.ok(members, json!({ "c": private })).await["class"]["members"],
        json!([{ "id": stranger_id, "displayName": "Student" }])
    );
    // A viewer, even an invited one, neither sees the members nor invites.
    assert_eq!(
        stranger.error_code(members, json!({ "c": private })).await,
        "FORBIDDEN"
    );
    assert_eq!(
        stranger
            .error_code(INVITE, json!({ "c": private, "e": "teacher@example.org" }))
            .await,
        "FORBIDDEN"
    );

    // Removed, the class is gone for them again.
    assert_eq!(
        host.ok(REMOVE_MEMBER, json!({ "c": private, "u": stranger_id }))
            .await["removeFromClass"],
        true
    );
    assert_eq!(
        host.error_code(REMOVE_MEMBER, json!({ "c": private, "u": stranger_id }))
            .await,
        "NOT_FOUND",
        "no longer a member"
    );
    assert_eq!(titles(&stranger, false).await, ["Public"]);
    assert_eq!(
        stranger.error_code(JOIN, json!({ "s": private_sid })).await,
        "NOT_FOUND"
    );

    // Visibility is the host's to change.
    let make_public =
        "mutation($c: ID!) { updateClass(id: $c, input: { visibility: PUBLIC }) { visibility } }";
    assert_eq!(
        stranger
            .error_code(make_public, json!({ "c": unlisted }))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        host.ok(make_public, json!({ "c": unlisted })).await["updateClass"]["visibility"],
        "PUBLIC"
    );
    assert_eq!(titles(&stranger, false).await, ["Unlisted", "Public"]);
    server.stop().await;
}
