//! Test support shared by the gateway's integration tests: a gateway started in-process on free
//! loopback ports with its own temporary data directory, and real headless Chromium browsers.
//!
//! Each test binary uses part of this module, so unused items are expected per binary.
#![allow(dead_code)]

pub mod browser;

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
        let data = tempfile::tempdir().expect("temp dir");
        let running = gateway::start(test_config(data.path(), static_dir))
            .await
            .expect("gateway starts");
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
