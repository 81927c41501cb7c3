//! A gateway started by loadgen: the `gateway` binary as a child process on a free loopback
//! port, its data in a temporary directory, stopped when the guard drops (a normal end, an
//! error, Ctrl-C, or a panic that unwinds).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::api::Api;

/// How long the child may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running child. Fields drop in order: the process first, then its data directory.
pub struct LocalGateway {
    child: Option<Child>,
    pub url: String,
    pub pid: u32,
    pub log: PathBuf,
    data: tempfile::TempDir,
}

/// Where the `gateway` binary is: `explicit`, else next to this executable (the same cargo
/// target directory and profile).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("--gateway-bin {}: no such file", path.display());
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable's path has no directory")?;
    let candidate = dir.join("gateway");
    if candidate.is_file() {
        return Ok(candidate);
    }
    bail!(
        "no gateway binary next to {} (looked for {}): build it with `cargo build -p gateway --bin gateway` \
         (add --release when loadgen is a release build), pass --gateway-bin, or point --url at a running gateway",
        exe.display(),
        candidate.display()
    )
}

/// A free loopback TCP port (bound, read, released: the child binds it right after).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

impl LocalGateway {
    /// Starts `binary` with `shards` SFU shards (0: the gateway's default, one per core) and
    /// waits until it answers `/health`.
    pub async fn start(
        binary: &Path,
        shards: u32,
        log_level: &str,
        keep: bool,
    ) -> Result<LocalGateway> {
        let data = tempfile::Builder::new()
            .prefix("loadgen-gateway-")
            .disable_cleanup(keep)
            .tempdir()
            .context("creating a temporary data directory")?;
        let dir = data.path();
        let port = free_port()?;
        let log = dir.join("gateway.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CLASSROOM_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(dir)
            .env("CLASSROOM_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("CLASSROOM_HTTP_STATIC_DIR", dir.join("no-frontend"))
            .env(
                "CLASSROOM_DATABASE_URL",
                format!("sqlite://{}", dir.join("classroom.db").display()),
            )
            .env("CLASSROOM_STORAGE_PATH", dir.join("objects"))
            .env("CLASSROOM_RECORDING_SPOOL_DIR", dir.join("spool"))
            .env(
                "CLASSROOM_RECORDING_JOURNAL",
                dir.join("recording-jobs.sqlite"),
            )
            .env("CLASSROOM_SFU_SHARDS", shards.to_string())
            .env("CLASSROOM_SFU_UDP_PORT_START", "0")
            .env("CLASSROOM_SFU_BIND_ADDRESS", "127.0.0.1")
            .env("CLASSROOM_SFU_ICE_ADDRESS", "127.0.0.1")
            // One account per simulated participant, all from this address.
            .env("CLASSROOM_AUTH_SIGN_UP_PER_IP_PER_MINUTE", "100000")
            .env("CLASSROOM_LOG_LEVEL", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut gateway = LocalGateway {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            pid,
            log,
            data,
        };
        let api = Api::new(&gateway.url)?;
        let started = Instant::now();
        loop {
            if api.healthy().await {
                return Ok(gateway);
            }
            if let Some(child) = gateway.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the gateway exited at startup ({status}); its log:\n{}",
                    gateway.log_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the gateway did not answer /health within {START_TIMEOUT:?}; its log:\n{}",
                    gateway.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// SIGTERM, then SIGKILL after the grace period; waits for the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for LocalGateway {
    fn drop(&mut self) {
        self.stop();
    }
}
