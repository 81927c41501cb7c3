//! Test support shared by the gateway's integration tests: a gateway started in-process on free
//! loopback ports with its own temporary data directory, and real headless Chromium browsers.
//!
//! Each test binary uses part of this module, so unused items are expected per binary.
#![allow(dead_code)]

pub mod browser;
pub mod events;

use std::path::PathBuf;
use std::time::Duration;

use gateway::{Config, Running};

/// The workspace root (the gateway crate's parent directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_owned()
}

/// Where tests keep artifacts people look at (screenshots): `$E2E_ARTIFACTS_DIR`, or
/// `e2e-artifacts` in the cargo target directory.
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_ARTIFACTS_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("e2e-artifacts")
}

/// A configuration for tests: loopback, free ports, two shards, data under `data_dir`.
pub fn test_config(data_dir: &std::path::Path, static_dir: PathBuf) -> Config {
    let mut config = Config::default();
    config.http.addr = "127.0.0.1:0".parse().expect("literal address");
    config.http.static_dir = static_dir;
    config.database.url = format!("sqlite://{}", data_dir.join("classroom.db").display());
    config.storage.path = data_dir.join("objects");
    config.recording.spool_dir = data_dir.join("spool");
    config.recording.journal = data_dir.join("recording-jobs.sqlite");
    config.sfu.shards = 2;
    config.sfu.udp_port_start = 0;
    config
}

/// A gateway running in this process. Stop it with [`TestServer::stop`].
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    running: Running,
    _data: tempfile::TempDir,
}

impl TestServer {
    /// Starts a gateway that serves the built frontend from `frontend/dist`.
    pub async fn with_built_frontend() -> TestServer {
        let dist = workspace_root().join("frontend/dist");
        assert!(
            dist.join("index.html").is_file(),
            "{} has no build of the frontend: run `just frontend` (or `just test`) first",
            dist.display()
        );
        Self::start(dist).await
    }

    /// Starts a gateway serving static files from `static_dir`.
    pub async fn start(static_dir: PathBuf) -> TestServer {
        Self::start_with(static_dir, |_| {}).await
    }

    /// Like [`TestServer::start`], with changes to the test configuration.
    pub async fn start_with(static_dir: PathBuf, change: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(data.path(), static_dir);
        change(&mut config);
        let running = gateway::start(config).await.expect("gateway starts");
        TestServer {
            url: format!("http://{}", running.local_addr),
            running,
            _data: data,
        }
    }

    pub fn state(&self) -> &gateway::AppState {
        self.running.state()
    }

    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(5)).await;
    }
}

/// A GraphQL client over HTTP, as a script or a browser would be: keeps cookies, may send a
/// bearer token, sends JSON.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Sent as `Authorization: Bearer` when set.
    pub bearer: Option<String>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("http client");
        Api {
            client,
            base: base.to_owned(),
            bearer: None,
        }
    }

    /// A client of the caller's making (for example one that stops at some redirect).
    pub fn with_client(client: reqwest::Client, base: &str) -> Api {
        Api {
            client,
            base: base.to_owned(),
            bearer: None,
        }
    }

    /// The same client (same cookies) with a bearer token.
    pub fn with_bearer(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            bearer: Some(token.to_owned()),
        }
    }

    /// The HTTP client (its cookies), for requests of the test's own making.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Posts a query; returns the whole response body (`data` and `errors`).
    pub async fn post(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /graphql");
        response.json().await.expect("a JSON answer")
    }

    /// `GET <base><path>` with this client's cookies (and bearer token, if any).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("GET")
    }

    /// Posts a query that must succeed; returns `data`.
    pub async fn ok(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        let body = self.post(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Posts a query that must fail; returns the first error's `extensions.code`.
    pub async fn error_code(&self, query: &str, variables: serde_json::Value) -> String {
        let body = self.post(query, variables).await;
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {body}"))
            .to_owned()
    }

    /// Signs up a new account on this client (its cookie is kept); returns the user id.
    pub async fn sign_up(&self, email: &str, name: &str) -> String {
        let data = self
            .ok(
                "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
                serde_json::json!({ "i": { "email": email, "password": "correct horse battery", "displayName": name } }),
            )
            .await;
        data["signUp"]["id"].as_str().expect("user id").to_owned()
    }
}

/// A signed-up user (a fresh client with its session cookie) and an API token of theirs for
/// the websocket.
pub async fn user(server: &TestServer, email: &str, name: &str) -> (Api, String) {
    let api = Api::new(&server.url);
    api.sign_up(email, name).await;
    let token = api
        .ok(
            "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret } }",
            serde_json::json!({ "i": { "name": "ws", "scopes": ["READ", "WRITE"] } }),
        )
        .await["createApiToken"]["secret"]
        .as_str()
        .expect("the token's secret")
        .to_owned();
    (api, token)
}

/// A live session of a new class of `host`'s: (class id, session id).
pub async fn live_session(host: &Api) -> (serde_json::Value, String) {
    let class = host
        .ok(
            "mutation($i: CreateClassInput!) { createClass(input: $i) { id } }",
            serde_json::json!({ "i": { "title": "Optics" } }),
        )
        .await["createClass"]["id"]
        .clone();
    let session = host
        .ok(
            "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
            serde_json::json!({ "i": { "classId": class, "start": "2030-01-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .as_str()
        .expect("the session's id")
        .to_owned();
    host.ok(
        "mutation($id: ID!) { startSession(id: $id) { id } }",
        serde_json::json!({ "id": session }),
    )
    .await;
    (class, session)
}

/// `api`'s user joins the live `session`: their participant id.
pub async fn join(api: &Api, session: &str) -> i64 {
    api.ok(
        "mutation($s: ID!) { joinSession(sessionId: $s) { participantId } }",
        serde_json::json!({ "s": session }),
    )
    .await["joinSession"]["participantId"]
        .as_str()
        .expect("a participant id")
        .parse()
        .expect("a numeric participant id")
}
