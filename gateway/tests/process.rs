//! The `gateway` binary as an operator runs it: `--help`, configuration errors, JSON logs with
//! request ids, and shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// Longest the tests wait for a line of output or for the process to exit.
const WAIT: Duration = Duration::from_secs(20);

/// The gateway binary with a clean `CLASSROOM_*` environment and its data under `dir`.
fn gateway(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CLASSROOM_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("CLASSROOM_HTTP_ADDR", "127.0.0.1:0")
        .env("CLASSROOM_SFU_UDP_PORT_START", "0")
        .env("CLASSROOM_SFU_SHARDS", "2")
        .env("RUST_BACKTRACE", "1");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("gateway runs")
}

#[test]
fn help_lists_every_configuration_key_with_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(gateway(dir.path()).arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for key in gateway::config::KEYS {
        assert!(help.contains(key.key), "--help lists {}", key.key);
        assert!(
            help.contains(&key.env_var()),
            "--help lists {}",
            key.env_var()
        );
    }
    assert!(help.contains("--config <FILE>"));
}

#[test]
fn a_bad_value_stops_startup_with_exit_code_2_and_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(gateway(dir.path()).env("CLASSROOM_SFU_UDP_PORT_START", "fifty"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("`sfu.udp_port_start` = \"fifty\""),
        "names key and value: {stderr}"
    );
    assert!(
        stderr.contains("CLASSROOM_SFU_UDP_PORT_START"),
        "names the source: {stderr}"
    );
    assert!(
        stderr.contains("1024 to 65535"),
        "says what is allowed: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "no panic: {stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created before validation"
    );

    let out = run(gateway(dir.path()).env("CLASSROOM_LOG_FORMAT", "xml"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("`log.format` = \"xml\"") && stderr.contains("text, json"),
        "{stderr}"
    );

    let out = run(gateway(dir.path()).args(["--config", "nope.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("nope.toml"));

    let out = run(gateway(dir.path()).arg("--no-such-flag"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_taken_http_port_fails_startup_with_exit_code_1_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(gateway(dir.path()).env(
        "CLASSROOM_HTTP_ADDR",
        taken.local_addr().unwrap().to_string(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("cannot listen on"), "{stdout}");
    assert!(!stdout.contains("panicked"), "{stdout}");
}

/// Lines of a child's stdout, read on a thread and handed over a channel.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the first line that satisfies `pred` and returns it parsed as JSON.
fn wait_for_line(
    lines: &Receiver<String>,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut seen = Vec::new();
    loop {
        let line = lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no log line for {what} within {WAIT:?}; the lines before:\n{}",
                seen.join("\n")
            )
        });
        seen.push(line.clone());
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if pred(&value) {
            return value;
        }
    }
}

#[test]
fn json_logs_carry_request_ids_and_sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway(dir.path())
        .env("CLASSROOM_LOG_FORMAT", "json")
        .env("CLASSROOM_HTTP_STATIC_DIR", dir.path().join("no-frontend"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let listening = wait_for_line(&lines, "listening", |v| v["fields"]["addr"].is_string());
    let addr = listening["fields"]["addr"].as_str().unwrap().to_owned();
    assert!(
        dir.path().join("data/classroom.db").is_file(),
        "default database under ./data"
    );
    assert!(
        dir.path().join("data/objects").is_dir(),
        "default object store under ./data"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime.block_on(
        reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .header("x-request-id", "trace-me-7")
            .send(),
    );
    let response = response.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-7");

    let logged = wait_for_line(&lines, "the request", |v| {
        v["span"]["request_id"] == "trace-me-7"
    });
    assert_eq!(logged["span"]["path"], "/health");
    assert_eq!(logged["fields"]["status"], 200);

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    wait_for_line(&lines, "shutdown", |v| {
        v["fields"]["message"] == "shutdown complete"
    });
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
}
