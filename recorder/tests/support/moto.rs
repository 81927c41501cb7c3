//! An S3-compatible server for tests: moto's server mode (from PyPI), started on a free loopback
//! port and killed when dropped. Shared by the recorder's and the gateway's tests (`#[path]`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const MOTO_HINT: &str = "moto_server not found. Install it with `just setup` (a venv in tools/moto), \
     or: python3 -m venv tools/moto && tools/moto/bin/pip install 'moto[server]'";

pub fn moto_binary() -> Option<PathBuf> {
    let in_tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/moto/bin/moto_server");
    if in_tools.is_file() {
        return Some(in_tools);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    pub async fn start(log_dir: &Path) -> Moto {
        let binary = moto_binary().unwrap_or_else(|| panic!("{MOTO_HINT}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = log_dir.join("moto.log");
        let out = std::fs::File::create(&log).expect("moto log");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary:?}: {e}. {MOTO_HINT}"));
        let mut moto = Moto { child, port, log };
        moto.wait_ready().await;
        moto
    }

    /// Polls the port until moto answers an HTTP request.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited ({status}): {}", self.log_text());
            }
            if self
                .request("GET / HTTP/1.1")
                .is_ok_and(|r| r.starts_with("HTTP/1"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A bodiless HTTP/1.1 request; the whole response as text.
    pub fn request(&self, line: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{line}\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
