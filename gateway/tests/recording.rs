//! Recording through GraphQL and playing it back: only the host starts and stops it, everyone
//! in the session is told, the file is stored and becomes `READY`, its signed URL serves HTTP
//! Range requests, a forged or expired URL gets 403, and the replay places the chat on the
//! recording's timeline. No browser and no publisher: the recording of an empty stage is the
//! neutral background and silence (the pipeline with publishers is the recorder's own tests,
//! and the Chromium class in `vod_browser.rs`).

mod support;

#[path = "../../recorder/tests/support/moto.rs"]
mod moto;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::events::{self, Events};
use support::{Api, TestServer, join, live_session, user};

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on SessionSnapshot { seq recording { id state } }
  ... on RecordingChanged { seq recording { id state durationMs } } } }";

const START: &str = "mutation($s: ID!) { startRecording(sessionId: $s) { id state } }";
const STOP: &str = "mutation($s: ID!) { stopRecording(sessionId: $s) { id state durationMs } }";
const RECORDING: &str = "query($id: ID!) { recording(id: $id) { id state durationMs sizeBytes
  error playbackUrl classId sessionTitle createdAt } }";

/// The key playback URLs are signed with in these tests (so a test can forge an expired one).
const SECRET: &str = "test-secret-of-playback-urls";

async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// A gateway recording small pictures (light on CI), signing with [`SECRET`], then `change`d.
async fn server_with(change: impl FnOnce(&mut gateway::Config)) -> TestServer {
    TestServer::start_with(std::path::PathBuf::from("/nonexistent"), |c| {
        c.recording.url_secret = SECRET.to_owned();
        c.recording.width = 320;
        c.recording.height = 180;
        c.recording.fps = 15;
        change(c);
    })
    .await
}

/// The host starts recording the session: the recording's id.
async fn start_recording(host: &Api, session: &str) -> String {
    host.ok(START, json!({ "s": session })).await["startRecording"]["id"]
        .as_str()
        .expect("a recording id")
        .to_owned()
}

async fn subscribe(server: &TestServer, token: &str, session: &str) -> (Events, Value) {
    let mut events = events::subscribe(
        &server.url,
        token,
        EVENTS,
        json!({ "s": session }),
        "sessionEvents",
    )
    .await;
    let snapshot = events.until("SessionSnapshot").await;
    (events, snapshot)
}

/// Polls a recording until `done` holds (a failure bound, not a synchronisation).
async fn recording_until(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.ok(RECORDING, json!({ "id": id })).await["recording"].clone();
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the recording never got there: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the spool holds `bytes` of the recording (the pipeline is writing).
async fn spooled(server: &TestServer, recording: &str, bytes: u64) {
    let file = server
        .state()
        .config
        .recording
        .spool_dir
        .join(format!("recording-{recording}.webm"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) < bytes {
        assert!(Instant::now() < deadline, "{} never grew", file.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `gst-discoverer-1.0` says of a file: (duration in seconds, has video, has audio).
fn discover(path: &Path) -> (f64, bool, bool) {
    let out = Command::new("gst-discoverer-1.0")
        .arg("-v")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0 runs (gstreamer1.0-plugins-base-apps)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let Some(duration) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Duration: "))
    else {
        return (0.0, false, false);
    };
    let parts: Vec<f64> = duration
        .split(':')
        .map(|p| p.trim().parse().unwrap())
        .collect();
    (
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2],
        text.contains("video #"),
        text.contains("audio #"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_records_a_session_and_it_plays_back_from_a_signed_url() {
    let server = server().await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let (viewer, viewer_token) = user(&server, "viewer@example.org", "Vic Viewer").await;
    let (class, session) = live_session(&host).await;
    join(&host, &session).await;
    join(&viewer, &session).await;
    let (mut seen, snapshot) = subscribe(&server, &viewer_token, &session).await;
    assert!(snapshot["recording"].is_null(), "nothing recorded yet");

    // Only the host records.
    assert_eq!(
        viewer.error_code(START, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    assert_eq!(
        host.error_code(STOP, json!({ "s": session })).await,
        "CONFLICT",
        "nothing to stop"
    );
    let started = host.ok(START, json!({ "s": session })).await["startRecording"].clone();
    assert_eq!(started["state"], "RECORDING");
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(
        host.error_code(START, json!({ "s": session })).await,
        "CONFLICT",
        "one recording at a time"
    );

    // Everyone in the session is told; someone subscribing later finds it in the snapshot.
    let told = seen.until("RecordingChanged").await;
    assert_eq!(told["recording"]["id"], id.as_str());
    assert_eq!(told["recording"]["state"], "RECORDING");
    let (_late, snapshot) = subscribe(&server, &host_token, &session).await;
    assert_eq!(snapshot["recording"]["id"], id.as_str());

    // Chat during the recording, for the replay.
    let chat = "mutation($s: ID!, $b: String!) { sendChatMessage(sessionId: $s, body: $b) { id } }";
    spooled(&server, &id, 1).await;
    viewer
        .ok(chat, json!({ "s": session, "b": "first question" }))
        .await;
    spooled(&server, &id, 40_000).await;
    viewer
        .ok(chat, json!({ "s": session, "b": "second thought" }))
        .await;

    let stopped = host.ok(STOP, json!({ "s": session })).await["stopRecording"].clone();
    assert_eq!(
        stopped["state"], "UPLOADING",
        "the file is final: {stopped}"
    );
    let duration_ms = stopped["durationMs"].as_i64().unwrap();
    assert!(duration_ms > 500, "{stopped}");
    let told = seen.until("RecordingChanged").await;
    assert_eq!(told["recording"]["state"], "UPLOADING");

    // Stored, then ready, with its size; the spool file is gone.
    let ready = recording_until(&host, &id, |r| r["state"] != "UPLOADING").await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["classId"], class);
    assert!(
        ready["sessionTitle"]
            .as_str()
            .unwrap()
            .starts_with("Optics")
    );
    let size = ready["sizeBytes"].as_u64().unwrap();
    assert!(size > 40_000, "{ready}");
    assert!(
        !server
            .state()
            .config
            .recording
            .spool_dir
            .join(format!("recording-{id}.webm"))
            .exists(),
        "the spool file is deleted once stored"
    );

    // The class lists it; a viewer sees it too and may play it.
    let listed = viewer
        .ok(
            "query($c: ID!) { classRecordings(classId: $c) { id state } }",
            json!({ "c": class }),
        )
        .await["classRecordings"]
        .clone();
    assert_eq!(listed[0]["id"], id.as_str());
    let url = viewer.ok(RECORDING, json!({ "id": id })).await["recording"]["playbackUrl"]
        .as_str()
        .expect("a playback URL when ready")
        .to_owned();

    // The whole file, then ranges of it (what a player's seek asks for).
    let anyone = Api::new(&server.url);
    let whole = anyone.get(&url).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "video/webm");
    let body = whole.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    let part = anyone
        .client()
        .get(format!("{}{url}", server.url))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{size}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), body.slice(1000..2000));
    let tail = anyone
        .client()
        .get(format!("{}{url}", server.url))
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), body.slice(body.len() - 100..));
    let beyond = anyone
        .client()
        .get(format!("{}{url}", server.url))
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    // Forged and expired URLs get 403.
    let forged = url.replace(
        &format!("/vod/{id}?"),
        &format!("/vod/{}?", id.parse::<i64>().unwrap() + 1),
    );
    assert_eq!(anyone.get(&forged).await.status(), 403, "another recording");
    let tampered = format!("{}0", &url[..url.len() - 1]);
    assert_eq!(
        anyone.get(&tampered).await.status(),
        403,
        "a changed signature"
    );
    let exp = gateway::recording::unix_now() - 1;
    let rid: i64 = id.parse().unwrap();
    let expired = format!(
        "/vod/{id}?exp={exp}&sig={}",
        gateway::recording::sign(SECRET.as_bytes(), rid, exp)
    );
    assert_eq!(anyone.get(&expired).await.status(), 403, "expired");
    assert_eq!(
        anyone.get(&format!("/vod/{id}")).await.status(),
        403,
        "unsigned"
    );

    // The file has a picture and sound all along.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let (seconds, video, audio) = discover(file.path());
    assert!(video && audio, "video and audio streams");
    let expected = duration_ms as f64 / 1000.0;
    assert!(
        (seconds - expected).abs() <= 0.5,
        "the file lasts {seconds:.2} s, the recording {expected:.2} s"
    );

    // The replay: the chat on the recording's timeline, in order.
    let replay = viewer
        .ok(
            "query($r: ID!) { recordingReplay(recordingId: $r) { chat { author body offsetMs } questions { body } } }",
            json!({ "r": id }),
        )
        .await["recordingReplay"]
        .clone();
    let lines = replay["chat"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["body"], "first question");
    assert_eq!(lines[0]["author"], "Vic Viewer");
    let (a, b) = (
        lines[0]["offsetMs"].as_i64().unwrap(),
        lines[1]["offsetMs"].as_i64().unwrap(),
    );
    assert!(
        0 <= a && a < b && b <= duration_ms,
        "offsets {a}, {b} within {duration_ms}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_session_stops_its_recording() {
    let server = server().await;
    let (host, _) = user(&server, "host@example.org", "Hannah Host").await;
    let (outsider, _) = user(&server, "out@example.org", "Otto Outsider").await;
    let (class, session) = live_session(&host).await;
    host.ok(
        "mutation($id: ID!) { updateClass(id: $id, input: { visibility: INVITE_ONLY }) { id } }",
        json!({ "id": class }),
    )
    .await;
    let id = start_recording(&host, &session).await;
    spooled(&server, &id, 1).await;
    host.ok(
        "mutation($id: ID!) { endSession(id: $id) { id } }",
        json!({ "id": session }),
    )
    .await;
    let done = recording_until(&host, &id, |r| r["state"] == "READY").await;
    assert!(done["durationMs"].as_i64().unwrap() > 0);
    assert_eq!(
        host.error_code(START, json!({ "s": session })).await,
        "CONFLICT",
        "an ended session is not recorded"
    );
    // Someone who may not see the class sees nothing of it.
    let none = outsider.ok(RECORDING, json!({ "id": id })).await;
    assert!(none["recording"].is_null(), "{none}");
    assert_eq!(
        outsider
            .error_code(
                "query($c: ID!) { classRecordings(classId: $c) { id } }",
                json!({ "c": class }),
            )
            .await,
        "NOT_FOUND"
    );
    server.stop().await;
}

/// The gateway binary on `dir`'s data, JSON logs on a channel; its HTTP address.
/// A child process killed (SIGKILL) when dropped: a failing test leaves no gateway behind.
struct Process(std::process::Child);

impl Process {
    /// Kills it at once, as a crash would, and reaps it.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn gateway_process(dir: &Path) -> (Process, std::sync::mpsc::Receiver<String>, String) {
    use std::io::BufRead;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CLASSROOM_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd
        .current_dir(dir)
        .env("CLASSROOM_HTTP_ADDR", "127.0.0.1:0")
        .env("CLASSROOM_SFU_UDP_PORT_START", "0")
        .env("CLASSROOM_SFU_SHARDS", "1")
        .env("CLASSROOM_LOG_FORMAT", "json")
        .env("CLASSROOM_HTTP_STATIC_DIR", dir.join("no-frontend"))
        .env("CLASSROOM_RECORDING_WIDTH", "320")
        .env("CLASSROOM_RECORDING_HEIGHT", "180")
        .env("CLASSROOM_RECORDING_FPS", "15")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the gateway starts");
    let mut child = Process(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway logs that it listens");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if let Some(addr) = v["fields"]["addr"].as_str() {
            break addr.to_owned();
        }
    };
    (child, rx, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_short_by_sigkill_is_stored_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _logs, url) = gateway_process(dir.path());
    let host = Api::new(&url);
    host.sign_up("host@example.org", "Hannah Host").await;
    let (_, session) = live_session(&host).await;
    let id = start_recording(&host, &session).await;
    // A few seconds are written (the spooled file plays that long), then the process dies at
    // once.
    let file = dir.path().join(format!("data/spool/recording-{id}.webm"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let written =
        || recorder::probe::duration(&file, Duration::from_secs(10)).unwrap_or(Duration::ZERO);
    while written() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "the recording is written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill();
    let ran = started.elapsed().as_secs_f64();
    let spooled = std::fs::metadata(&file).unwrap().len();
    // The cut file decodes to its end, picture and sound (the tools fail on a broken stream).
    let decoded = Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("filesrc")
        .arg(format!("location={}", file.display()))
        .args(["!", "matroskademux", "name=d"])
        .args(["d.video_0", "!", "queue", "!", "vp8dec", "!", "fakesink"])
        .args(["d.audio_0", "!", "queue", "!", "opusdec", "!", "fakesink"])
        .output()
        .expect("gst-launch-1.0 runs (gstreamer1.0-tools)");
    assert!(
        decoded.status.success(),
        "the cut file decodes: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );

    // Started again: the recording is found, stored and ready, as long as the file was.
    let (mut again, _logs, url) = gateway_process(dir.path());
    let host = Api::new(&url);
    host.ok(
        "mutation($i: SignInInput!) { signIn(input: $i) { id } }",
        json!({ "i": { "email": "host@example.org", "password": "correct horse battery" } }),
    )
    .await;
    let ready = recording_until(&host, &id, |r| {
        r["state"] == "READY" || r["state"] == "FAILED"
    })
    .await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(
        ready["sizeBytes"].as_u64().unwrap(),
        spooled,
        "the whole spooled file is stored"
    );
    // The duration is read from the file: at least what it held before the kill, at most how
    // long the recording ran.
    let duration = ready["durationMs"].as_i64().expect("a duration") as f64 / 1000.0;
    assert!(
        (3.0..=ran + 0.5).contains(&duration),
        "duration {duration:.2} s noted for a recording that ran {ran:.2} s"
    );
    assert!(!file.exists(), "the spool file is gone once stored");
    let url_path = ready["playbackUrl"].as_str().unwrap().to_owned();
    let body = host.get(&url_path).await.bytes().await.unwrap();
    assert_eq!(body.len() as u64, spooled);
    again.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_the_store_keeps_refusing_fails_with_the_error_and_keeps_its_file() {
    let server = server_with(|c| {
        c.recording.upload_max_attempts = 2;
        c.recording.upload_retry_ms = 10;
    })
    .await;
    let (host, _) = user(&server, "host@example.org", "Hannah Host").await;
    let (_, session) = live_session(&host).await;
    let id = start_recording(&host, &session).await;
    spooled(&server, &id, 1).await;
    // The store's directory becomes a file: every write to it fails.
    let objects = server.state().config.storage.path.clone();
    std::fs::remove_dir_all(&objects).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    host.ok(STOP, json!({ "s": session })).await;
    let failed = recording_until(&host, &id, |r| r["state"] != "UPLOADING").await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert!(
        !failed["error"].as_str().unwrap_or("").is_empty(),
        "says why: {failed}"
    );
    assert!(failed["playbackUrl"].is_null());
    assert!(
        server
            .state()
            .config
            .recording
            .spool_dir
            .join(format!("recording-{id}.webm"))
            .is_file(),
        "the file is kept for an operator"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_recording_is_stored_in_the_bucket_and_plays_from_a_presigned_url() {
    let logs = tempfile::tempdir().unwrap();
    let moto = moto::Moto::start(logs.path()).await;
    let created = moto
        .request("PUT /classroom HTTP/1.1")
        .expect("create bucket");
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let server = server_with(|c| {
        c.storage.kind = gateway::config::StorageKind::S3;
        c.storage.bucket = "classroom".into();
        c.storage.endpoint = endpoint.clone();
        c.storage.allow_http = true;
        c.storage.access_key_id = "test".into();
        c.storage.secret_access_key = "test".into();
    })
    .await;
    let (host, _) = user(&server, "host@example.org", "Hannah Host").await;
    let (_, session) = live_session(&host).await;
    let id = start_recording(&host, &session).await;
    spooled(&server, &id, 1).await;
    host.ok(STOP, json!({ "s": session })).await;
    let ready = recording_until(&host, &id, |r| r["state"] != "UPLOADING").await;
    assert_eq!(
        ready["state"],
        "READY",
        "{ready}; moto: {}",
        moto.log_text()
    );
    let size = ready["sizeBytes"].as_u64().unwrap();
    let url = ready["playbackUrl"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{endpoint}/classroom/recordings/"))
            && url.contains("X-Amz-Signature="),
        "a presigned GET on the bucket: {url}"
    );
    let client = reqwest::Client::new();
    let whole = client.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let body = whole.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    let part = client
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206, "the bucket serves ranges (seeking)");
    assert_eq!(part.bytes().await.unwrap(), body.slice(100..200));
    // (Checking the signature is the service's part; moto does not, a real S3 does.)
    server.stop().await;
}
