//! Liveness, readiness and metrics endpoints.
//!
//! `/health` answers as long as the process serves HTTP and touches nothing else. `/ready` checks
//! what the product needs to serve a class: the database answers and every SFU shard runs; otherwise
//! 503 with the reasons as JSON.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

/// How long `/ready` waits for the database before calling it unreachable.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Body of `GET /health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// Version of the gateway.
    pub version: &'static str,
    /// Seconds since the gateway started serving.
    pub uptime_seconds: u64,
}

/// `GET /health`: liveness.
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
    })
}

/// Body of `GET /ready`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok`, or why the database check failed.
    pub database: String,
    /// SFU shards running, out of `sfu_shards`.
    pub sfu_shards_running: usize,
    /// SFU shards configured.
    pub sfu_shards: usize,
    /// Empty when ready; otherwise one line per failed check.
    pub reasons: Vec<String>,
}

/// `GET /ready`: 200 when the database answers and all SFU shards run, 503 otherwise.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut reasons = Vec::new();
    let database = match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} ms", DATABASE_CHECK_TIMEOUT.as_millis()),
    };
    if database != "ok" {
        reasons.push(format!("database: {database}"));
    }
    let shards = state.sfu.shards();
    let running = shards.iter().filter(|s| s.running).count();
    for s in shards.iter().filter(|s| !s.running) {
        reasons.push(format!(
            "sfu: shard {} ({}) is not running",
            s.index, s.local_addr
        ));
    }
    let ready = reasons.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "unavailable" },
            database,
            sfu_shards_running: running,
            sfu_shards: shards.len(),
            reasons,
        }),
    )
}

/// `GET /metrics`: Prometheus (OpenMetrics) text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response(),
        Err(_) => {
            tracing::error!("encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
