//! The product's GraphQL API as a script uses it: `POST /graphql` with a bearer token (or the
//! session cookie right after `signUp`), and `sessionEvents` over `graphql-transport-ws`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An error the API answered with (its `extensions.code`), as opposed to a transport failure.
#[derive(Debug)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    /// Seconds to wait, for `RATE_LIMITED`.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

/// Who makes a request.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// Nobody yet (signing up).
    Anonymous,
    Bearer(&'a str),
    /// A `name=value` session cookie.
    Cookie(&'a str),
}

/// The gateway's API at one base URL (`http://host:port`).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Api {
    pub fn new(base: &str) -> Result<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!(
                "--url must be http://host:port (this build speaks plain HTTP and ws:// only): {base}"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Api { http, base })
    }

    /// Posts a query; returns its `data`, or the first GraphQL error as an [`ApiError`].
    pub async fn gql(&self, auth: Auth<'_>, query: &str, variables: Value) -> Result<Value> {
        Ok(self.gql_response(auth, query, variables).await?.1)
    }

    /// Like [`Api::gql`], also returning the `set-cookie` session cookie (`name=value`).
    async fn gql_response(
        &self,
        auth: Auth<'_>,
        query: &str,
        variables: Value,
    ) -> Result<(Option<String>, Value)> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        request = match auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(cookie) => request.header(reqwest::header::COOKIE, cookie),
            Auth::Anonymous => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {}/graphql", self.base))?;
        let status = response.status();
        let cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("POST {}/graphql answered {status}, not JSON", self.base))?;
        if let Some(error) = body.get("errors").and_then(|e| e.get(0)) {
            let ext = &error["extensions"];
            return Err(ApiError {
                code: ext["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                message: error["message"].as_str().unwrap_or("").to_owned(),
                retry_after: ext["retryAfter"].as_u64(),
            }
            .into());
        }
        Ok((cookie, body["data"].clone()))
    }

    /// Creates an account (waiting out the sign-up rate limit when told to); returns the session
    /// cookie and the user id.
    pub async fn sign_up(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<(String, String)> {
        loop {
            let result = self
                .gql_response(
                    Auth::Anonymous,
                    "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
                    json!({ "i": { "email": email, "password": password, "displayName": name } }),
                )
                .await;
            match result {
                Ok((Some(cookie), data)) => {
                    let id = data["signUp"]["id"]
                        .as_str()
                        .ok_or_else(|| anyhow!("signUp answered no user id: {data}"))?;
                    return Ok((cookie, id.to_owned()));
                }
                Ok((None, _)) => bail!("signUp set no session cookie"),
                Err(e) => match e.downcast_ref::<ApiError>() {
                    Some(ApiError {
                        code,
                        retry_after: Some(wait),
                        ..
                    }) if code == "RATE_LIMITED" => {
                        eprintln!(
                            "\nloadgen: sign-ups are rate limited by the gateway (auth.sign_up_per_ip_per_minute); waiting {wait} s"
                        );
                        tokio::time::sleep(Duration::from_secs((*wait).max(1))).await;
                    }
                    _ => return Err(e.context(format!("signing up {email}"))),
                },
            }
        }
    }

    /// Creates an API token (read and write) from a browser session; returns its secret.
    pub async fn create_token(&self, cookie: &str, name: &str) -> Result<String> {
        let data = self
            .gql(
                Auth::Cookie(cookie),
                "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret } }",
                json!({ "i": { "name": name, "scopes": ["READ", "WRITE"] } }),
            )
            .await
            .context("creating an API token")?;
        Ok(data["createApiToken"]["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("createApiToken answered no secret"))?
            .to_owned())
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .with_context(|| format!("GET {}/metrics", self.base))?;
        if !response.status().is_success() {
            bail!("GET {}/metrics answered {}", self.base, response.status());
        }
        Ok(response.text().await?)
    }

    /// Whether `GET /health` answers 200.
    pub async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/health", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// A `graphql-transport-ws` connection with one subscription running.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the websocket handshake and `connection_ack` may take.
const WS_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens the websocket, authenticates with `token`, and subscribes to `query` as operation "1".
pub async fn subscribe(base: &str, token: &str, query: &str, variables: Value) -> Result<Ws> {
    let url = format!("{}/graphql/ws", base.replacen("http://", "ws://", 1));
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("websocket URL {url}"))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        reqwest::header::HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| anyhow!("websocket {url}: no answer in {WS_TIMEOUT:?}"))?
        .with_context(|| format!("websocket {url}"))?;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
    ))
    .await?;
    let acked = tokio::time::timeout(WS_TIMEOUT, async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(text) = msg? {
                let v: Value = serde_json::from_str(&text)?;
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(()),
                    Some("ping") => {
                        ws.send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await?;
                    }
                    _ => bail!("websocket refused the connection: {text}"),
                }
            }
        }
        bail!("websocket closed before connection_ack")
    })
    .await
    .map_err(|_| anyhow!("websocket: no connection_ack in {WS_TIMEOUT:?}"))?;
    acked?;
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
                "payload": { "query": query, "variables": variables } })
        .to_string(),
    ))
    .await?;
    Ok(ws)
}
