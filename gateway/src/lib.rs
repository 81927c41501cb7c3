//! The gateway: one process that serves the app and the API and runs the SFU shards.
//!
//! [`start`] opens the database and object store, starts the SFU, binds the HTTP listener and serves
//! [`router`] until [`Running::stop`]. `main` adds configuration loading, logging and signals; tests
//! call [`start`] or [`router`] directly.

pub mod attendance;
pub mod auth;
pub mod body_limit;
pub mod config;
pub mod graphql;
pub mod health;
pub mod live;
pub mod metrics;
pub mod recording;
pub mod roles;
pub mod static_files;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::LatencyUnit;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use config::Config;

/// Header carrying the request id, set on every response (and accepted from a trusted proxy).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a request handler may use. Shared behind [`AppState`].
pub struct App {
    /// The configuration the process started with.
    pub config: Config,
    /// The database pool.
    pub db: schema::Db,
    /// The media plane.
    pub sfu: sfu::Sfu,
    /// Object storage (recordings).
    pub store: Arc<dyn ObjectStore>,
    /// The metrics registry.
    pub metrics: metrics::Metrics,
    /// When the process started serving, for `/health`'s uptime.
    pub started: Instant,
    /// Cancelled when the process shuts down; background tasks stop on it.
    pub shutdown: CancellationToken,
    /// The GraphQL schema (request data is added per request).
    pub api: graphql::ApiSchema,
    /// Session state changes, for the `sessionStateChanged` subscription.
    pub session_events: tokio::sync::broadcast::Sender<graphql::classes::SessionEvent>,
    /// Revoked sessions and tokens, so open subscriptions end at once.
    pub revocations: auth::Revocations,
    /// Sign-in and sign-up rate limits.
    pub rate_limits: auth::rate_limit::RateLimits,
    /// Configured OpenID Connect providers.
    pub oidc: auth::oidc::Providers,
    /// Who is in each live session, with their SFU peers and tracks.
    pub live: live::Live,
    /// Recordings being made on this node, their uploads, playback URLs.
    pub recordings: recording::Recorders,
}

/// The shared application state handed to every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] schema::DbError),
    #[error("database URL: {0}")]
    DatabaseUrl(#[from] schema::UrlError),
    #[error("object storage at {path}: {message}")]
    Storage { path: String, message: String },
    #[error("SFU: {0}")]
    Sfu(#[from] sfu::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The HTTP routes and middleware, without a socket (tests drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    let graphql = Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .layer(axum::middleware::from_fn(auth::csrf::protect));
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/graphql/ws", get(graphql::websocket))
        .route(
            "/sessions/{id}/attendance.csv",
            get(attendance::attendance_csv),
        )
        .route("/vod/{id}", get(recording::vod))
        .route("/auth/oidc/{provider}/start", get(auth::oidc::start))
        .route("/auth/oidc/{provider}/callback", get(auth::oidc::callback))
        .merge(graphql);
    let static_service = static_files::service(&state.config.http.static_dir);
    api.fallback_service(static_service)
        .layer(axum::middleware::from_fn(body_limit::limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Micros)))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
        .with_state(state)
}

/// Builds the shared state: opens the database and object store and starts the SFU shards.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let location = schema::DatabaseLocation::parse(&config.database.url)?;
    let db = schema::Db::open(&location, config.database.max_connections).await?;

    let storage_err = |message: String| StartError::Storage {
        path: config.storage.path.display().to_string(),
        message,
    };
    let (store, signer) = open_store(&config.storage).map_err(storage_err)?;
    let recordings = recording::Recorders::open(&config.recording, signer).map_err(|message| {
        StartError::Storage {
            path: config.recording.spool_dir.display().to_string(),
            message,
        }
    })?;

    let sfu = sfu::Sfu::start(sfu::SfuConfig {
        shards: usize::from(config.sfu_shards()),
        bind_address: config.sfu.bind_address,
        udp_port_start: config.sfu.udp_port_start,
        ice_address: config.sfu.ice_address,
        ..sfu::SfuConfig::default()
    })?;

    let live = live::Live::new(sfu.clone());
    let mut metrics = metrics::Metrics::new();
    metrics.register_collector(Box::new(metrics::SfuCollector(sfu.clone())));
    metrics.register_collector(Box::new(metrics::DbPoolCollector(db.clone())));
    metrics.register_collector(Box::new(metrics::LiveCollector(live.clone())));

    let rate_limits = auth::rate_limit::RateLimits::new(auth::rate_limit::Limits {
        sign_in_per_ip: config.auth.sign_in_per_ip_per_minute,
        sign_in_per_account_and_ip: config.auth.sign_in_per_account_per_minute,
        sign_in_per_account: config.auth.sign_in_per_account_all_ips_per_minute,
        sign_up_per_ip: config.auth.sign_up_per_ip_per_minute,
        chat_per_user: config.auth.chat_per_user_per_minute,
    });
    let oidc = auth::oidc::Providers::new(&config.auth.oidc);
    Ok(AppState(Arc::new(App {
        config,
        db,
        sfu,
        store,
        metrics,
        started: Instant::now(),
        shutdown: CancellationToken::new(),
        api: graphql::build_schema(),
        session_events: tokio::sync::broadcast::channel(1024).0,
        revocations: auth::Revocations::default(),
        rate_limits,
        oidc,
        live,
        recordings,
    })))
}

/// An object store and its URL presigner, when it has one (S3).
type OpenedStore = (
    Arc<dyn ObjectStore>,
    Option<Arc<dyn object_store::signer::Signer>>,
);

/// The object store of recordings, and its URL presigner when it has one (S3).
fn open_store(config: &config::StorageConfig) -> Result<OpenedStore, String> {
    match config.kind {
        config::StorageKind::Local => {
            std::fs::create_dir_all(&config.path).map_err(|e| e.to_string())?;
            let store =
                LocalFileSystem::new_with_prefix(&config.path).map_err(|e| e.to_string())?;
            Ok((Arc::new(store), None))
        }
        config::StorageKind::S3 => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region)
                .with_allow_http(config.allow_http);
            if !config.endpoint.is_empty() {
                builder = builder
                    .with_endpoint(&config.endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if !config.access_key_id.is_empty() {
                builder = builder
                    .with_access_key_id(&config.access_key_id)
                    .with_secret_access_key(&config.secret_access_key);
            }
            let s3 = Arc::new(builder.build().map_err(|e| e.to_string())?);
            Ok((s3.clone(), Some(s3)))
        }
    }
}

/// A started gateway.
pub struct Running {
    /// The address the HTTP server listens on.
    pub local_addr: SocketAddr,
    state: AppState,
    server: JoinHandle<std::io::Result<()>>,
}

/// Starts everything and serves HTTP on `config.http.addr` until [`Running::stop`].
pub async fn start(config: Config) -> Result<Running, StartError> {
    let addr = config.http.addr;
    // Bind first: a taken port should fail before shards and the database are set up.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    start_on(listener, config).await
}

/// Like [`start`], on a listener bound by the caller (who may need its port before starting).
pub async fn start_on(
    listener: tokio::net::TcpListener,
    mut config: Config,
) -> Result<Running, StartError> {
    let addr = config.http.addr;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    // Port 0 became a real port: derived URLs (OIDC redirects) must use it.
    config.http.addr = local_addr;
    let state = build_state(config).await?;
    // Connect info gives handlers the client's address (rate limits per IP).
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    spawn_live_tasks(&state);
    recording::spawn_tasks(&state);
    let shutdown = state.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    tracing::info!(addr = %local_addr, "listening on http://{local_addr}");
    Ok(Running {
        local_addr,
        state,
        server,
    })
}

/// Room for SFU events waiting for the session hub: a burst of joins produces a few events each.
const SFU_EVENT_QUEUE: usize = 65_536;

/// The SFU's events feed the live sessions; participants gone longer than the grace period leave.
fn spawn_live_tasks(state: &AppState) {
    {
        // The session hub's own listener; it keeps up (events are applied at once).
        let mut events = state.sfu.events(SFU_EVENT_QUEUE);
        let (app, shutdown) = (state.clone(), state.shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => {
                            if let sfu::SfuEvent::ActiveSpeaker { room, peer } = &event {
                                app.recordings.speaker(room.as_str(), *peer);
                            }
                            app.live.on_sfu_event(event)
                        }
                        None => return,
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
    let (live, db, shutdown) = (state.live.clone(), state.db.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            // They have left already; the database is told.
            for (_session, d) in live.expire(std::time::Instant::now()) {
                let now = schema::now_ms();
                let talk = i64::try_from(d.talk_ms).unwrap_or(i64::MAX);
                let participant = d.participant_id;
                let result = db
                    .interact(move |c| {
                        schema::models::participant::record_departure(c, participant, now, talk)
                    })
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, participant, "recording a departure failed");
                }
            }
        }
    });
}

impl Running {
    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting connections, lets in-flight requests finish (up to `grace`), then stops the
    /// SFU shards and closes the database pool.
    pub async fn stop(self, grace: Duration) {
        tracing::info!("shutting down");
        self.state.shutdown.cancel();
        let mut server = self.server;
        match tokio::time::timeout(grace, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "requests still running after the grace period; closing them"
                );
                server.abort();
            }
        }
        // Recordings being made end here: their files are final and wait in the journal.
        self.state.recordings.stop_all().await;
        let sfu = self.state.sfu.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sfu.shutdown()).await {
            tracing::error!(error = %e, "stopping the SFU failed");
        }
        self.state.db.close();
        tracing::info!("shutdown complete");
    }
}
