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
