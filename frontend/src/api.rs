//! Transport to the gateway. Pages call these functions and never build requests themselves.

use serde::Deserialize;

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
}

/// `GET /ready` (200 or 503, same shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Readiness {
    pub status: String,
    pub database: String,
    pub sfu_shards_running: usize,
    pub sfu_shards: usize,
    pub reasons: Vec<String>,
}

/// What the status page shows: both answers, or why the server could not be asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    pub health: Health,
    pub readiness: Readiness,
}

async fn get_json<T: for<'de> Deserialize<'de>>(path: &str) -> Result<T, String> {
    let response = gloo_net::http::Request::get(path)
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e}"))?;
    let status = response.status();
    response
        .json::<T>()
        .await
        .map_err(|e| format!("unexpected answer from {path} (HTTP {status}): {e}"))
}

/// Asks the server for its liveness and readiness.
pub async fn server_status() -> Result<ServerStatus, String> {
    let health = get_json::<Health>("/health").await?;
    let readiness = get_json::<Readiness>("/ready").await?;
    Ok(ServerStatus { health, readiness })
}

/// A GraphQL error as the app shows it: the server's message and its `extensions.code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Posts a GraphQL operation (the session cookie goes along: same origin); returns `data`.
pub async fn graphql(
    query: &str,
    variables: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let network = |e: String| ApiError {
        code: "NETWORK".into(),
        message: format!("cannot reach the server: {e}"),
    };
    let body = serde_json::json!({ "query": query, "variables": variables });
    let response = gloo_net::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .body(body.to_string())
        .map_err(|e| network(e.to_string()))?
        .send()
        .await
        .map_err(|e| network(e.to_string()))?;
    let value: serde_json::Value = response.json().await.map_err(|e| network(e.to_string()))?;
    if let Some(error) = value["errors"].get(0) {
        return Err(ApiError {
            code: error["extensions"]["code"]
                .as_str()
                .unwrap_or("ERROR")
                .to_owned(),
            message: error["message"].as_str().unwrap_or("error").to_owned(),
        });
    }
    Ok(value["data"].clone())
}

/// The signed-in user, if any: (id, display name).
pub async fn me() -> Option<(String, String)> {
    let data = graphql("{ me { id displayName } }", serde_json::json!({}))
        .await
        .ok()?;
    let me = &data["me"];
    Some((
        me["id"].as_str()?.to_owned(),
        me["displayName"].as_str()?.to_owned(),
    ))
}
