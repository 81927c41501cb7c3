//! The API under hostile input (issue 10): request bodies over the limit, queries that cost too
//! much to even check, malformed requests, credentials revoked under an open websocket, rate limits
//! over the websocket, websocket protocol abuse, text that is not text, and roles given by email.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Api, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http};

const CREATE_CLASS: &str = "mutation($i: CreateClassInput!) { createClass(input: $i) { id } }";
const CREATE_TOKEN: &str =
    "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret token { id } } }";
const SIGN_UP: &str = "mutation($i: SignUpInput!) { signUp(input: $i) { id } }";
const SIGN_IN: &str = "mutation($i: SignInInput!) { signIn(input: $i) { id } }";

async fn server() -> TestServer {
    // These tests use only the API; the static directory does not need to exist.
    TestServer::start(std::path::PathBuf::from("/nonexistent/classroom-static")).await
}

fn addr(server: &TestServer) -> SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the test server's address")
}

/// Sends `head` and then `body` on a fresh connection; returns the status and body of the
/// answer (read up to its `content-length`, without waiting for the connection to close).
async fn raw_http(server: &TestServer, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr(server)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and stop reading) before the whole body is sent.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some((headers, rest)) = text.split_once("\r\n\r\n") {
                let length = headers
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if rest.len() >= length {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let server = server().await;
    let limit = gateway::graphql::MAX_BODY_BYTES;

    // Announced too large: refused from the headers alone, nothing of the body read.
    let (status, body) = raw_http(
        &server,
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");

    // Chunked, with no length announced: refused as soon as it passes the limit.
    let mut chunked = Vec::new();
    let mut sent = 0;
    while sent <= limit {
        let n = 8000.min(limit + 1 - sent);
        chunked.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', n));
        chunked.extend_from_slice(b"\r\n");
        sent += n;
    }
    let (status, body) = raw_http(
        &server,
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");

    // Any route: a body announced too large is refused before routing.
    let (status, _) = raw_http(
        &server,
        "POST /health HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 413);

    // Just under the limit, chunked or not, is a request like any other.
    let query = br#"{"query":"{ me { id } }"}"#;
    let mut padded = query.to_vec();
    padded.resize(limit - 10, b' ');
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        padded.len()
    );
    let (status, body) = raw_http(&server, &head, &padded).await;
    assert_eq!((status, body.as_str()), (200, r#"{"data":{"me":null}}"#));
    let mut chunked = format!("{:x}\r\n", padded.len()).into_bytes();
    chunked.extend_from_slice(&padded);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, body) = raw_http(
        &server,
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"data":{"me":null}}"#));
    server.stop().await;
}

/// Posts a raw body to /graphql; returns the status and the body as JSON (which it must be).
async fn post_raw(server: &TestServer, body: &'static str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert!(
        content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/") && t.ends_with("json")),
        "a JSON answer: {content_type:?} {text}"
    );
    (status, serde_json::from_str(&text).expect("JSON"))
}

#[tokio::test]
async fn malformed_requests_get_json_errors_with_codes() {
    let server = server().await;
    for bad in [
        r#"{"query": "{ me { id } }""#,
        "not json",
        r#"{"query": 42}"#,
        "[1, 2]",
    ] {
        let (status, body) = post_raw(&server, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
            "{bad}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        for internal in ["async_graphql", "struct", "Request", "::"] {
            assert!(!message.contains(internal), "{bad}: {message}");
        }
    }

    let api = Api::new(&server.url);
    let parse = api.post("{ me { id }", json!({})).await;
    assert_eq!(
        parse["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED",
        "{parse}"
    );
    let validation = api.post("{ nope }", json!({})).await;
    assert_eq!(
        validation["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{validation}"
    );
    let wrong_type = api
        .post(
            "query($n: Int!) { classes(first: $n) { nodes { id } } }",
            json!({ "n": "x" }),
        )
        .await;
    assert_eq!(
        wrong_type["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{wrong_type}"
    );
    let unknown_operation: Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .json(&json!({ "query": "query A { me { id } }", "operationName": "B" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        unknown_operation["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{unknown_operation}"
    );
    server.stop().await;
}

/// Fragments that each spread the one before twice: 2^21 copies of `me { id }` once expanded,
/// in about 800 bytes.
fn fragment_bomb() -> String {
    let mut q = String::from("fragment F0 on Query { me { id } } ");
    for i in 1..=21 {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{p} ...F{p} }} ",
            p = i - 1
        ));
    }
    q.push_str("query { ...F21 }");
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fragment_bomb_is_refused_at_once_and_the_server_keeps_answering() {
    let server = server().await;
    let bomb = fragment_bomb();
    assert!(bomb.len() < 1000, "{}", bomb.len());

    // Four attackers send the bomb over and over while /health is asked, one request at a time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (api, bomb, stop) = (Api::new(&server.url), bomb.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let body = api.post(&bomb, json!({})).await;
                times.push(started.elapsed());
                assert_eq!(
                    body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
                    "{body}"
                );
                assert!(body["data"].is_null(), "{body}");
            }
            times
        }));
    }
    let client = reqwest::Client::new();
    let mut health = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.get(format!("{}/health", server.url)).send(),
        )
        .await
        .expect("/health answers while the bomb is sent")
        .unwrap();
        assert_eq!(answer.status(), 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refusals = Vec::new();
    for a in attackers {
        refusals.extend(a.await.unwrap());
    }
    refusals.sort();
    health.sort();
    println!(
        "fragment bomb: {} refusals, median {:?}, slowest {:?}; /health under attack: median {:?}, slowest {:?}",
        refusals.len(),
        refusals[refusals.len() / 2],
        refusals.last().unwrap(),
        health[health.len() / 2],
        health.last().unwrap(),
    );
    server.stop().await;
}

#[tokio::test]
async fn list_sizes_count_and_other_costly_shapes_are_refused() {
    let server = server().await;
    let api = Api::new(&server.url);
    let code = |body: &Value| body["errors"][0]["extensions"]["code"].clone();

    // One page of 100 passes the check (and then needs a sign-in); 100 aliases of it do not.
    let page = "classes(first: 100) { edges { node { id title } } }";
    let one = api.post(&format!("{{ {page} }}"), json!({})).await;
    assert_eq!(code(&one), "UNAUTHENTICATED", "{one}");
    let aliased: String = (0..100).map(|i| format!("a{i}: {page} ")).collect();
    let many = api.post(&format!("{{ {aliased} }}"), json!({})).await;
    assert_eq!(code(&many), "QUERY_TOO_COMPLEX", "{many}");
    // A page size in a variable counts the same.
    let four: String = (0..4)
        .map(|i| format!("a{i}: classes(first: $n) {{ edges {{ node {{ id title }} }} }} "))
        .collect();
    let variable = api
        .post(
            &format!("query($n: Int!) {{ {four} }}"),
            json!({ "n": 100 }),
        )
        .await;
    assert_eq!(code(&variable), "QUERY_TOO_COMPLEX", "{variable}");
    let small = api
        .post(&format!("query($n: Int!) {{ {four} }}"), json!({ "n": 5 }))
        .await;
    assert_eq!(code(&small), "UNAUTHENTICATED", "{small}");

    // Fragments that spread each other.
    let cycle = api
        .post(
            "fragment A on Query { ...B } fragment B on Query { ...A me { id } } { ...A }",
            json!({}),
        )
        .await;
    assert_eq!(code(&cycle), "GRAPHQL_VALIDATION_FAILED", "{cycle}");
    // Too many fragments, too many aliases, too many tokens, nesting too deep for the parser.
    let fragments: String = (0..200)
        .map(|i| format!("fragment G{i} on Query {{ __typename }} "))
        .collect();
    let fragments = api
        .post(&format!("{fragments} {{ ...G0 }}"), json!({}))
        .await;
    assert_eq!(code(&fragments), "QUERY_TOO_COMPLEX", "{fragments}");
    let aliases: String = (0..200).map(|i| format!("t{i}: __typename ")).collect();
    let aliases = api.post(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code(&aliases), "QUERY_TOO_COMPLEX", "{aliases}");
    let tokens = format!("{{ {} }}", "__typename ".repeat(5000));
    let tokens = api.post(&tokens, json!({})).await;
    assert_eq!(code(&tokens), "QUERY_TOO_COMPLEX", "{tokens}");
    let braces = format!("{}{}", "{ me ".repeat(10_000), "}".repeat(10_000));
    let braces = api.post(&braces, json!({})).await;
    assert_eq!(code(&braces), "QUERY_TOO_COMPLEX", "{braces}");
    let lists = format!(
        "{{ class(id: {}1{}) {{ id }} }}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let lists = api.post(&lists, json!({})).await;
    assert_eq!(code(&lists), "QUERY_TOO_COMPLEX", "{lists}");
    server.stop().await;
}

/// The introspection query of graphql-js (`getIntrospectionQuery()`), as GraphiQL and Python's
/// `gql` send it.
const INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
      }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
    }
"#;

#[tokio::test]
async fn the_standard_introspection_query_is_answered() {
    let server = server().await;
    let api = Api::new(&server.url);
    let data = api.ok(INTROSPECTION, json!({})).await;
    let types = data["__schema"]["types"].as_array().unwrap();
    assert!(
        types.iter().any(|t| t["name"] == "Class"),
        "the schema's types: {}",
        types.len()
    );
    // Its fields are not a way around the depth limit of ordinary queries.
    let deep = "{ classes { edges { node { sessions { class { sessions { class { sessions { class { id } } } } } } } } } }";
    let refused = api.post(deep, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{refused}"
    );
    // Nor is introspection a way around the cost limit.
    let aliased: String = (0..20)
        .map(|i| format!("s{i}: __schema {{ types {{ ...FullType }} }} "))
        .collect();
    let costly = format!(
        "{{ {aliased} }} {}",
        &INTROSPECTION[INTROSPECTION.find("fragment FullType").unwrap()..]
    );
    let refused = api.post(&costly, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{refused}"
    );
    server.stop().await;
}

/// A `graphql-transport-ws` client.
struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u32,
}

impl Ws {
    async fn connect(server: &TestServer, headers: &[(&str, &str)]) -> Ws {
        let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket");
        Ws { stream, next_id: 0 }
    }

    async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// `connection_init`, and its acknowledgement.
    async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        assert_eq!(self.next().await["type"], "connection_ack");
    }

    /// The next protocol message (pings skipped); panics when the socket closes.
    async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("a websocket message")
                .expect("open websocket")
                .expect("websocket message");
            match msg {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] != "ping" {
                        return value;
                    }
                }
                Message::Close(frame) => panic!("the socket closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    async fn closed(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("the server closes the socket");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error instead of a close frame: {e}"),
            }
        }
    }

    /// Runs one operation with a fresh id; returns its first payload (`data` and `errors`).
    async fn run(&mut self, query: &str, variables: Value) -> Value {
        self.next_id += 1;
        let id = format!("op{}", self.next_id);
        self.send(json!({ "id": id, "type": "subscribe",
                          "payload": { "query": query, "variables": variables } }))
            .await;
        loop {
            let message = self.next().await;
            if message["id"] == id.as_str() {
                assert_eq!(message["type"], "next", "{message}");
                return message["payload"].clone();
            }
        }
    }
}

fn error_code(payload: &Value) -> String {
    payload["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error: {payload}"))
        .to_owned()
}

/// Signs in without a cookie store; returns the session cookie's secret.
async fn session_cookie(server: &TestServer, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .json(&json!({ "query": SIGN_IN,
                       "variables": { "i": { "email": email, "password": "correct horse battery" } } }))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("classroom_session=")
        .to_owned()
}

#[tokio::test]
async fn a_credential_revoked_under_an_open_websocket_stops_working_there() {
    let server = server().await;
    let browser = Api::new(&server.url);
    browser.sign_up("w@example.org", "W").await;
    let created = browser
        .ok(
            CREATE_TOKEN,
            json!({ "i": { "name": "ws", "scopes": ["READ", "WRITE"] } }),
        )
        .await;
    let secret = created["createApiToken"]["secret"].as_str().unwrap();
    let token_id = created["createApiToken"]["token"]["id"].clone();
    let class = browser
        .ok(CREATE_CLASS, json!({ "i": { "title": "Optics" } }))
        .await["createClass"]["id"]
        .clone();
    let session = browser
        .ok(
            "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
            json!({ "i": { "classId": class, "start": "2030-01-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();
    let follow = "subscription($s: ID!) { sessionStateChanged(sessionId: $s) { state } }";

    // A token.
    let mut ws = Ws::connect(&server, &[]).await;
    ws.init(json!({ "token": secret })).await;
    assert!(
        ws.run("{ me { id } }", json!({})).await["data"]["me"]["id"].is_string(),
        "signed in with the token"
    );
    browser
        .ok(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": token_id }),
        )
        .await;
    assert_eq!(
        ws.run("{ me { id } }", json!({})).await["data"]["me"],
        Value::Null,
        "the revoked token is anonymous on the socket it opened"
    );
    let create = ws
        .run(CREATE_CLASS, json!({ "i": { "title": "After" } }))
        .await;
    assert_eq!(error_code(&create), "UNAUTHENTICATED");
    let subscribed = ws.run(follow, json!({ "s": session })).await;
    assert_eq!(error_code(&subscribed), "UNAUTHENTICATED");

    // A browser session (cookie on the upgrade request), signed out elsewhere.
    let cookie = session_cookie(&server, "w@example.org").await;
    let header = format!("classroom_session={cookie}");
    let mut ws = Ws::connect(&server, &[("cookie", &header)]).await;
    ws.init(json!({})).await;
    assert!(ws.run("{ me { id } }", json!({})).await["data"]["me"]["id"].is_string());
    let signed_out = reqwest::Client::new()
        .post(format!("{}/graphql", server.url))
        .header("cookie", &header)
        .json(&json!({ "query": "mutation { signOut }" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(signed_out["data"]["signOut"], true, "{signed_out}");
    assert_eq!(
        ws.run("{ me { id } }", json!({})).await["data"]["me"],
        Value::Null
    );
    let create = ws
        .run(CREATE_CLASS, json!({ "i": { "title": "After" } }))
        .await;
    assert_eq!(error_code(&create), "UNAUTHENTICATED");
    let subscribed = ws.run(follow, json!({ "s": session })).await;
    assert_eq!(error_code(&subscribed), "UNAUTHENTICATED");
    server.stop().await;
}

#[tokio::test]
async fn sign_up_and_sign_in_limits_hold_over_the_websocket() {
    let server = server().await;
    let mut ws = Ws::connect(&server, &[]).await;
    ws.init(json!({})).await;
    // The limit is checked before the input: short passwords make the attempts cheap.
    let mut codes = Vec::new();
    for n in 0..11 {
        let input = json!({ "i": { "email": format!("u{n}@example.org"), "password": "short", "displayName": "U" } });
        codes.push(error_code(&ws.run(SIGN_UP, input).await));
    }
    assert_eq!(codes[..10], ["BAD_USER_INPUT"; 10], "{codes:?}");
    assert_eq!(codes[10], "RATE_LIMITED", "{codes:?}");
    // The HTTP side shares the same per-IP budget.
    let input =
        json!({ "i": { "email": "http@example.org", "password": "short", "displayName": "H" } });
    assert_eq!(
        Api::new(&server.url).error_code(SIGN_UP, input).await,
        "RATE_LIMITED"
    );

    // Sign-ins per IP (30 a minute, one more every 2 s), each for another account.
    let mut codes = Vec::new();
    for n in 0..40 {
        let input = json!({ "i": { "email": format!("nobody{n}@example.org"), "password": "wrong password" } });
        codes.push(error_code(&ws.run(SIGN_IN, input).await));
        if codes[n] == "RATE_LIMITED" {
            break;
        }
    }
    let allowed = codes.len() - 1;
    assert!((30..35).contains(&allowed), "{codes:?}");
    assert!(
        codes[..allowed].iter().all(|c| c == "FORBIDDEN"),
        "{codes:?}"
    );
    assert_eq!(codes[allowed], "RATE_LIMITED", "{codes:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_websocket_protocol_is_enforced() {
    let server = TestServer::start_with(
        std::path::PathBuf::from("/nonexistent/classroom-static"),
        |c| c.http.ws_init_timeout_ms = 300,
    )
    .await;

    // No connection_init: closed with 4408 once the (here shortened) timeout passes.
    let mut ws = Ws::connect(&server, &[]).await;
    assert_eq!(ws.closed().await, 4408);

    // An operation before connection_init: 4401.
    let mut ws = Ws::connect(&server, &[]).await;
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { id } }" } }))
        .await;
    assert_eq!(ws.closed().await, 4401);

    // A token in connection_init that is no token of ours: 4403, not an anonymous connection.
    let mut ws = Ws::connect(&server, &[]).await;
    ws.send(json!({ "type": "connection_init", "payload": { "token": "cls_not-a-token" } }))
        .await;
    assert_eq!(ws.closed().await, 4403);

    // A message that is not of the protocol: 4400.
    let mut ws = Ws::connect(&server, &[]).await;
    ws.init(json!({})).await;
    ws.stream.send(Message::text("{ not json")).await.unwrap();
    assert_eq!(ws.closed().await, 4400);

    // An id in use by a running subscription: 4409. An id whose operation completed is free.
    let api = Api::new(&server.url);
    api.sign_up("p@example.org", "P").await;
    let token = api
        .ok(
            CREATE_TOKEN,
            json!({ "i": { "name": "ws", "scopes": ["READ", "WRITE"] } }),
        )
        .await["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let class = api
        .ok(CREATE_CLASS, json!({ "i": { "title": "Optics" } }))
        .await["createClass"]["id"]
        .clone();
    let session = api
        .ok(
            "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
            json!({ "i": { "classId": class, "start": "2030-01-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .clone();
    let mut ws = Ws::connect(&server, &[]).await;
    ws.init(json!({ "token": token })).await;
    for _ in 0..2 {
        ws.send(json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ me { id } }" } }))
            .await;
        assert_eq!(ws.next().await["type"], "next");
        assert_eq!(ws.next().await, json!({ "id": "q", "type": "complete" }));
    }
    let follow = json!({ "id": "s", "type": "subscribe", "payload": {
        "query": "subscription($s: ID!) { sessionStateChanged(sessionId: $s) { state } }",
        "variables": { "s": session } } });
    ws.send(follow.clone()).await;
    let first = ws.next().await;
    assert_eq!(
        first["payload"]["data"]["sessionStateChanged"]["state"], "SCHEDULED",
        "{first}"
    );
    ws.send(follow).await;
    assert_eq!(ws.closed().await, 4409);
    server.stop().await;
}

#[tokio::test]
async fn text_that_shows_nothing_or_holds_nul_is_bad_input() {
    let server = server().await;
    let api = Api::new(&server.url);
    api.sign_up("t@example.org", "T").await;
    let extensions = |body: &Value| body["errors"][0]["extensions"].clone();
    for (title, why) in [
        ("Opt\u{0}ics", "NUL"),
        ("\u{200B}\u{200B}\u{200B}", "zero-width spaces"),
        ("\u{200D}\u{FEFF} \u{2060}", "joiners and a BOM"),
        ("\u{3164}", "a Hangul filler"),
    ] {
        let body = api
            .post(CREATE_CLASS, json!({ "i": { "title": title } }))
            .await;
        assert_eq!(
            extensions(&body),
            json!({ "code": "BAD_USER_INPUT", "field": "input.title" }),
            "{why}: {body}"
        );
    }
    let body = api
        .post(
            CREATE_CLASS,
            json!({ "i": { "title": "Optics", "description": "light\u{0}" } }),
        )
        .await;
    assert_eq!(
        extensions(&body),
        json!({ "code": "BAD_USER_INPUT", "field": "input.description" })
    );
    let body = Api::new(&server.url)
        .post(
            SIGN_UP,
            json!({ "i": { "email": "n@example.org", "password": "long enough pw", "displayName": "N\u{0}" } }),
        )
        .await;
    assert_eq!(
        extensions(&body),
        json!({ "code": "BAD_USER_INPUT", "field": "input.displayName" })
    );
    assert!(
        api.ok("{ classes(mine: true) { nodes { id } } }", json!({}))
            .await["classes"]["nodes"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_role_is_given_by_email_too() {
    let server = server().await;
    let host = Api::new(&server.url);
    host.sign_up("host@example.org", "Host").await;
    let helper = Api::new(&server.url);
    helper.sign_up("helper@example.org", "Helper").await;
    let class = host
        .ok(CREATE_CLASS, json!({ "i": { "title": "Optics" } }))
        .await["createClass"]["id"]
        .clone();
    let assign = "mutation($c: ID!, $e: String, $u: ID) { assignRole(classId: $c, email: $e, userId: $u, role: CO_HOST) }";
    assert_eq!(
        host.ok(assign, json!({ "c": class, "e": "Helper@Example.org" }))
            .await["assignRole"],
        true
    );
    let role = helper
        .ok(
            "query($c: ID!) { class(id: $c) { myRole } }",
            json!({ "c": class }),
        )
        .await;
    assert_eq!(role["class"]["myRole"], "CO_HOST");
    assert_eq!(
        host.error_code(assign, json!({ "c": class, "e": "nobody@example.org" }))
            .await,
        "NOT_FOUND"
    );
    let neither = host.post(assign, json!({ "c": class })).await;
    assert_eq!(
        neither["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "userId" })
    );
    let both = host
        .post(
            assign,
            json!({ "c": class, "e": "helper@example.org", "u": "1" }),
        )
        .await;
    assert_eq!(
        both["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "email" })
    );
    server.stop().await;
}
