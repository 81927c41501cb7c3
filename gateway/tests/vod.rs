//! A recorded class and its replay in real Chromium (fake cameras and microphones), as people
//! use them: the host and a speaker publish, the host starts recording and everyone sees the
//! indicator, a viewer chats, the host stops; the class page lists the recording, which turns
//! ready on its own; its VOD page plays it (time advances, frames decode), a seek lands where
//! asked, the chat replay follows playback, and a click on a message seeks there. Every wait
//! polls a condition with a deadline. Screenshots are kept.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::browser::{Browser, sign_up, until};
use support::{Api, TestServer};

const SCENARIO: &str = "vod";
const WAIT: Duration = Duration::from_secs(60);

async fn exists(b: &Browser, css: &str) -> bool {
    b.eval(&format!(
        "return !!document.querySelector({});",
        Value::from(css)
    ))
    .await
    .as_bool()
    .unwrap_or(false)
}

/// The VOD video's state: (currentTime, decoded frames, paused).
async fn video(b: &Browser) -> (f64, f64, bool) {
    let v = b
        .eval(
            "const v = document.querySelector('[data-testid=vod-video]');
             if (!v) return [0, 0, true];
             const q = v.getVideoPlaybackQuality();
             return [v.currentTime, q.totalVideoFrames, v.paused];",
        )
        .await;
    (
        v[0].as_f64().unwrap_or(0.0),
        v[1].as_f64().unwrap_or(0.0),
        v[2].as_bool().unwrap_or(true),
    )
}

/// The chat lines the replay shows now.
async fn replay_lines(b: &Browser) -> Vec<String> {
    b.eval(
        "return [...document.querySelectorAll('[data-testid=replay-chat] [data-testid=replay-line]')]
           .map(e => e.textContent);",
    )
    .await
    .as_array()
    .map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    })
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_class_plays_back_with_its_chat() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let server = TestServer::start_with(support::workspace_root().join("frontend/dist"), |c| {
        c.recording.width = 640;
        c.recording.height = 360;
        c.recording.fps = 15;
        c.recording.video_kbps = 600;
    })
    .await;
    assert!(
        support::workspace_root()
            .join("frontend/dist/index.html")
            .is_file(),
        "run `just frontend` first"
    );
    let url = server.url.clone();
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    let class_path = host.path().await;
    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let live_url = format!("{url}{}", host.path().await);

    // A speaker (a standing role the host gives by script) and a viewer.
    let script = Api::new(&url);
    script
        .ok(
            "mutation($i: SignInInput!) { signIn(input: $i) { id } }",
            json!({ "i": { "email": "host@example.org", "password": "correct horse battery" } }),
        )
        .await;
    let speaker = Browser::launch("sam").await;
    sign_up(&speaker, &url, "Sam Speaker", "sam@example.org").await;
    let class_id = class_path.trim_start_matches("/classes/").to_owned();
    script
        .ok(
            "mutation($c: ID!, $e: String!) { assignRole(classId: $c, email: $e, role: SPEAKER) }",
            json!({ "c": class_id, "e": "sam@example.org" }),
        )
        .await;
    speaker.goto(&live_url).await;
    let viewer = Browser::launch("vic").await;
    sign_up(&viewer, &url, "Vic Viewer", "vic@example.org").await;
    viewer.goto(&live_url).await;
    viewer
        .wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let sid: i64 = live_url.rsplit('/').next().unwrap().parse().unwrap();
    until(WAIT, "two people publish video", || async {
        let s = server.state().live.snapshot(sid)?;
        let publishers: std::collections::HashSet<i64> = s
            .tracks
            .iter()
            .filter(|t| t.video)
            .map(|t| t.participant_id)
            .collect();
        (publishers.len() == 2).then_some(())
    })
    .await;

    // Recording: the host starts it; the viewer sees the indicator.
    assert!(
        !exists(&viewer, "[data-testid=record]").await,
        "a viewer has no record button"
    );
    host.click("[data-testid=record]").await;
    viewer.wait_for("[data-testid=recording-indicator]").await;
    viewer.screenshot(SCENARIO, "recording-indicator").await;
    let spool = server.state().config.recording.spool_dir.clone();
    let spooled = || {
        std::fs::read_dir(&spool)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    until(WAIT, "the recording is being written", || async {
        (spooled() > 50_000).then_some(())
    })
    .await;
    for body in ["hello from the back row", "is the lens convex?"] {
        viewer.fill("[data-testid=chat-input]", body).await;
        viewer.click("[data-testid=chat-send]").await;
        until(WAIT, "the message is shown", || async {
            viewer
                .text_of("[data-testid=chat-messages]")
                .await
                .contains(body)
                .then_some(())
        })
        .await;
        let mark = spooled();
        until(WAIT, "some more recording", || async {
            (spooled() > mark + 100_000).then_some(())
        })
        .await;
    }
    host.click("[data-testid=record]").await;
    until(WAIT, "the indicator goes", || async {
        (!exists(&viewer, "[data-testid=recording-indicator]").await).then_some(())
    })
    .await;

    // The class page lists it and it turns ready on its own.
    viewer.goto(&format!("{url}{class_path}")).await;
    viewer.wait_for("[data-testid=recording-link]").await;
    viewer.screenshot(SCENARIO, "class-recordings").await;
    viewer.click("[data-testid=recording-link]").await;
    viewer.wait_for("[data-testid=vod-video]").await;
    until(WAIT, "the video has its metadata", || async {
        let d = viewer
            .eval("const v = document.querySelector('[data-testid=vod-video]'); return v ? v.duration : 0;")
            .await
            .as_f64()
            .unwrap_or(0.0);
        (d.is_finite() && d > 2.0).then_some(())
    })
    .await;
    // Before playing, nothing of the chat has happened yet.
    assert!(replay_lines(&viewer).await.is_empty(), "no chat at 0:00");

    // Played as a person does (a click), time advances and frames decode.
    viewer
        .eval(
            "window.__vodErrors = [];
             document.querySelector('[data-testid=vod-video]').addEventListener('error', e =>
               window.__vodErrors.push(e.target.error && (e.target.error.code + ': ' + e.target.error.message)));
             return 0;",
        )
        .await;
    viewer.click("[data-testid=vod-video]").await;
    let deadline = std::time::Instant::now() + WAIT;
    let (t0, f0) = loop {
        let (t, f, paused) = video(&viewer).await;
        if !paused && t > 0.2 {
            break (t, f);
        }
        if std::time::Instant::now() > deadline {
            let state = viewer
                .eval(
                    "const v = document.querySelector('[data-testid=vod-video]');
                     return { t: v.currentTime, d: v.duration, paused: v.paused, ready: v.readyState,
                              network: v.networkState, error: v.error && v.error.message,
                              buffered: v.buffered.length ? [v.buffered.start(0), v.buffered.end(0)] : [],
                              errors: window.__vodErrors };",
                )
                .await;
            let src = viewer
                .eval("return document.querySelector('[data-testid=vod-video]').src;")
                .await;
            if let Some(src) = src.as_str() {
                let body = reqwest::get(src).await.unwrap().bytes().await.unwrap();
                let kept = support::artifacts_dir()
                    .join(SCENARIO)
                    .join("recording.webm");
                std::fs::write(&kept, &body).unwrap();
                eprintln!("the recording is kept in {}", kept.display());
            }
            let mut state = state;
            if let Some(errors) = state["errors"].as_array_mut() {
                errors.truncate(3);
            }
            panic!("playback did not start: {state}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    until(WAIT, "time advances and frames decode", || async {
        let (t, f, _) = video(&viewer).await;
        (t > t0 + 1.0 && f > f0 + 5.0).then_some(())
    })
    .await;
    // The chat follows playback.
    until(
        WAIT,
        "the first message shows once its time came",
        || async {
            replay_lines(&viewer)
                .await
                .iter()
                .any(|l| l.contains("hello from the back row"))
                .then_some(())
        },
    )
    .await;
    viewer.screenshot(SCENARIO, "vod-playing").await;

    until(
        WAIT,
        "the second message shows once its time came",
        || async {
            replay_lines(&viewer)
                .await
                .iter()
                .any(|l| l.contains("lens"))
                .then_some(())
        },
    )
    .await;

    // A click on a message seeks back to it.
    let offset: f64 = viewer
        .eval(
            "const e = [...document.querySelectorAll('[data-testid=replay-line]')]
               .find(e => e.textContent.includes('back row'));
             return e ? Number(e.getAttribute('data-offset-ms')) : -1;",
        )
        .await
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        offset > 0.0,
        "the first message has its offset in the replay"
    );
    viewer
        .eval(
            "[...document.querySelectorAll('[data-testid=replay-line]')]
               .find(e => e.textContent.includes('back row')).click(); return 0;",
        )
        .await;
    until(WAIT, "the click seeks to the message", || async {
        let (t, _, _) = video(&viewer).await;
        ((t - offset / 1000.0).abs() < 1.0).then_some(())
    })
    .await;

    // A seek to the start lands there, and the replay goes back with it.
    viewer
        .eval("const v = document.querySelector('[data-testid=vod-video]'); v.pause(); v.currentTime = 0.5; return 0;")
        .await;
    until(
        WAIT,
        "the seek lands and the chat is back to none",
        || async {
            let (t, _, _) = video(&viewer).await;
            ((0.4..0.9).contains(&t) && replay_lines(&viewer).await.is_empty()).then_some(())
        },
    )
    .await;
    viewer.screenshot(SCENARIO, "vod-seeked").await;

    for b in [host, speaker, viewer] {
        b.close().await;
    }
    server.stop().await;
}
