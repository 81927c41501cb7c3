//! Hands, the stage and moderation in real Chromium (fake camera and microphone), driven as
//! people do, in one sequence: a viewer raises a hand, the host sees it in the People panel and
//! invites them, the invited viewer accepts and publishes, another viewer decodes their video;
//! the host sends them back to the audience and their video stops for everyone; invited again,
//! the host mutes their microphone and they cannot unmute; the host shares a screen, which
//! everyone sees large (speaker view), a viewer switches to the grid and pins a camera, and the
//! share stops for everyone; the host removes a viewer, who cannot come back. Every wait polls a condition with a deadline. Screenshots are kept.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::TestServer;
use support::browser::{Browser, sign_up, until};

const SCENARIO: &str = "people";
const WAIT: Duration = Duration::from_secs(40);

/// Frames the page has decoded in the video element of `participant`'s tile (0 while it has no
/// playing picture).
async fn tile_frames(b: &Browser, participant: i64) -> f64 {
    b.eval(&format!(
        "const v = document.querySelector('[data-testid=tile][data-participant=\"{participant}\"] video');
         if (!v || !v.srcObject || !v.videoWidth || v.paused) return 0;
         return v.getVideoPlaybackQuality().totalVideoFrames;"
    ))
    .await
    .as_f64()
    .unwrap_or(0.0)
}

/// `participant`'s video decodes on `b`: frames of their tile grow.
async fn decodes(b: &Browser, participant: i64, what: &str) {
    let start = until(WAIT, &format!("{what}: a picture"), || async {
        let f = tile_frames(b, participant).await;
        (f > 0.0).then_some(f)
    })
    .await;
    until(WAIT, &format!("{what}: frames decoding"), || async {
        (tile_frames(b, participant).await >= start + 10.0).then_some(())
    })
    .await;
}

async fn exists(b: &Browser, css: &str) -> bool {
    b.eval(&format!(
        "return !!document.querySelector({});",
        Value::from(css)
    ))
    .await
    .as_bool()
    .unwrap_or(false)
}

async fn attr(b: &Browser, css: &str, name: &str) -> Option<String> {
    b.eval(&format!(
        "const e = document.querySelector({}); return e ? e.getAttribute({}) : null;",
        Value::from(css),
        Value::from(name)
    ))
    .await
    .as_str()
    .map(str::to_owned)
}

/// Frames decoded of the shared screen shown on `b` (0 while none plays).
async fn screen_frames(b: &Browser) -> f64 {
    b.eval(
        "const v = document.querySelector('[data-testid=screen-tile] video');
         if (!v || !v.srcObject || !v.videoWidth || v.paused) return 0;
         return v.getVideoPlaybackQuality().totalVideoFrames;",
    )
    .await
    .as_f64()
    .unwrap_or(0.0)
}

/// The laid-out width of the element `css` selects (0 when there is none).
async fn width(b: &Browser, css: &str) -> f64 {
    b.eval(&format!(
        "const e = document.querySelector({}); return e ? e.getBoundingClientRect().width : 0;",
        Value::from(css)
    ))
    .await
    .as_f64()
    .unwrap_or(0.0)
}

/// The selector of `participant`'s camera tile.
fn tile(participant: i64) -> String {
    format!("[data-testid=tile][data-participant=\"{participant}\"]")
}

/// The participant id of the person named `name` in the live session.
async fn participant(server: &TestServer, sid: i64, name: &str) -> i64 {
    until(WAIT, &format!("{name} in the session"), || async {
        server
            .state()
            .live
            .snapshot(sid)?
            .participants
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.id)
    })
    .await
}

/// The participant's published tracks of a kind, as the server has them.
fn tracks(server: &TestServer, sid: i64, pid: i64, video: bool) -> Vec<gateway::live::TrackInfo> {
    server
        .state()
        .live
        .snapshot(sid)
        .map(|s| {
            s.tracks
                .into_iter()
                .filter(|t| t.participant_id == pid && t.video == video)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_stage_and_moderation_in_chromium() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let server = TestServer::with_built_frontend().await;
    let url = server.url.clone();
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let live_path = host.path().await;
    let sid: i64 = live_path
        .trim_start_matches("/live/")
        .parse()
        .expect("a session id in the path");
    let live_url = format!("{url}{live_path}");

    let ann = Browser::launch("ann").await;
    sign_up(&ann, &url, "Ann Avery", "ann@example.org").await;
    ann.goto(&live_url).await;
    ann.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let bo = Browser::launch("bo").await;
    sign_up(&bo, &url, "Bo Berg", "bo@example.org").await;
    bo.goto(&live_url).await;
    bo.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let ann_pid = participant(&server, sid, "Ann Avery").await;
    let bo_pid = participant(&server, sid, "Bo Berg").await;
    let host_pid = participant(&server, sid, "Hannah Host").await;
    decodes(&bo, host_pid, "bo sees the host").await;
    decodes(&ann, host_pid, "ann sees the host").await;

    // A viewer has a raise-hand button and no moderation actions.
    assert!(!exists(&ann, "[data-testid=hand-queue]").await);
    assert!(!exists(&ann, "[data-testid=remove]").await);
    ann.click("[data-testid=raise-hand]").await;
    until(WAIT, "the host's queue shows one hand", || async {
        let n = host.text_of("[data-testid=hand-count]").await;
        (n == "1"
            && exists(
                &host,
                &format!("[data-testid=hand][data-participant=\"{ann_pid}\"]"),
            )
            .await)
            .then_some(())
    })
    .await;
    host.screenshot(SCENARIO, "hand-queue").await;

    // Invited: Ann is asked, accepts, and publishes; Bo decodes her video.
    host.click(&format!(
        "[data-testid=hand][data-participant=\"{ann_pid}\"] [data-testid=invite-to-stage]"
    ))
    .await;
    ann.wait_for("[data-testid=stage-invitation]").await;
    ann.screenshot(SCENARIO, "invitation").await;
    ann.click("[data-testid=accept-stage]").await;
    until(WAIT, "the host's queue is empty", || async {
        (host.text_of("[data-testid=hand-count]").await == "0").then_some(())
    })
    .await;
    decodes(&bo, ann_pid, "bo sees ann on stage").await;
    decodes(&host, ann_pid, "the host sees ann on stage").await;
    // Her connection was replaced by one that sends: on it she keeps receiving the host.
    let start = tile_frames(&ann, host_pid).await;
    until(
        WAIT,
        "ann on stage keeps decoding the host's picture",
        || async { (tile_frames(&ann, host_pid).await > start + 30.0).then_some(()) },
    )
    .await;
    bo.screenshot(SCENARIO, "ann-on-stage").await;

    // Sent back to the audience: her tracks close and her video goes for everyone.
    host.click(&format!(
        "[data-testid=person][data-participant=\"{ann_pid}\"] [data-testid=send-to-audience]"
    ))
    .await;
    until(WAIT, "ann's tracks closed on the server", || async {
        (tracks(&server, sid, ann_pid, true).is_empty()
            && tracks(&server, sid, ann_pid, false).is_empty())
        .then_some(())
    })
    .await;
    for (b, who) in [(&bo, "bo"), (&host, "the host")] {
        until(WAIT, &format!("ann's tile gone for {who}"), || async {
            (!exists(
                b,
                &format!("[data-testid=tile][data-participant=\"{ann_pid}\"]"),
            )
            .await)
                .then_some(())
        })
        .await;
    }
    until(WAIT, "ann's page is a viewer's again", || async {
        (exists(&ann, "[data-testid=raise-hand]").await
            && !exists(&ann, "[data-testid=toggle-mic]").await)
            .then_some(())
    })
    .await;

    // On stage again; the host mutes her microphone: she is told, and cannot unmute.
    host.click(&format!(
        "[data-testid=person][data-participant=\"{ann_pid}\"] [data-testid=invite]"
    ))
    .await;
    ann.click("[data-testid=accept-stage]").await;
    until(WAIT, "ann's microphone published", || async {
        (!tracks(&server, sid, ann_pid, false).is_empty()).then_some(())
    })
    .await;
    decodes(&bo, ann_pid, "bo sees ann on stage again").await;
    host.click(&format!(
        "[data-testid=person][data-participant=\"{ann_pid}\"] [data-testid=mute-mic]"
    ))
    .await;
    ann.wait_for("[data-testid=muted-by-host]").await;
    until(WAIT, "ann's unmute button disabled", || async {
        attr(&ann, "[data-testid=toggle-mic]", "disabled")
            .await
            .map(|_| ())
    })
    .await;
    let mic_muted_for_bo =
        format!("[data-testid=tile][data-participant=\"{ann_pid}\"][data-mic-muted=true]");
    until(WAIT, "bo sees ann's microphone off", || async {
        exists(&bo, &mic_muted_for_bo).await.then_some(())
    })
    .await;
    // Her own connection was replaced to join the stage: no renegotiation failed on the way.
    let notice = ann
        .eval("const n = document.querySelector('[data-testid=notice]'); return n ? n.textContent : '';")
        .await;
    assert_eq!(notice, "", "no error on ann's page");
    ann.screenshot(SCENARIO, "muted-by-host").await;
    // Trying anyway: the button does nothing, and the server refuses her (FORBIDDEN).
    ann.eval("document.querySelector('[data-testid=toggle-mic]').click(); return true;")
        .await;
    let audio = tracks(&server, sid, ann_pid, false);
    assert!(audio.iter().all(|t| t.muted), "still muted: {audio:?}");
    let refused = server
        .state()
        .live
        .set_muted(sid, ann_pid, &audio[0].id, false);
    assert_eq!(refused, Err(gateway::live::Refused::MutedByHost));
    assert!(exists(&bo, &mic_muted_for_bo).await);
    host.screenshot(SCENARIO, "people-panel").await;

    // The host shares a screen: everyone sees it large, the cameras in a strip below.
    host.click("[data-testid=share-screen]").await;
    until(WAIT, "the host's screen published as a screen", || async {
        tracks(&server, sid, host_pid, true)
            .iter()
            .any(|t| t.source == gateway::live::TrackSource::Screen)
            .then_some(())
    })
    .await;
    assert_eq!(
        host.text_of("[data-testid=share-screen]").await,
        "Stop sharing"
    );
    for (b, who) in [(&bo, "bo"), (&ann, "ann")] {
        let start = until(WAIT, &format!("{who}: the screen shows"), || async {
            let f = screen_frames(b).await;
            (f > 0.0).then_some(f)
        })
        .await;
        until(WAIT, &format!("{who}: the screen decodes"), || async {
            (screen_frames(b).await >= start + 5.0).then_some(())
        })
        .await;
        until(
            WAIT,
            &format!("{who}: speaker view with the screen large"),
            || async {
                (exists(
                    b,
                    "[data-testid=stage][data-layout=speaker] [data-testid=screen-tile].main",
                )
                .await
                    && width(b, "[data-testid=screen-tile]").await
                        > 2.0 * width(b, &tile(host_pid)).await)
                    .then_some(())
            },
        )
        .await;
    }
    // The host's camera in the strip is small: Bo asks for its low layer.
    until(WAIT, "bo asks for the host's small layer", || async {
        (attr(&bo, &tile(host_pid), "data-layer").await.as_deref() == Some("LOW")).then_some(())
    })
    .await;
    bo.screenshot(SCENARIO, "screen-share").await;
    // Bo picks the grid: no tile is large.
    bo.click("[data-testid=speaker-view]").await;
    until(WAIT, "bo's grid", || async {
        (exists(&bo, "[data-testid=stage][data-layout=grid]").await
            && !exists(&bo, "[data-testid=stage] .main").await)
            .then_some(())
    })
    .await;
    bo.screenshot(SCENARIO, "grid").await;
    // He pins the host's camera: speaker view with it large, at its high layer.
    bo.click(&format!("{} [data-testid=pin]", tile(host_pid)))
        .await;
    until(WAIT, "bo's pinned host, large and sharp", || async {
        (exists(
            &bo,
            &format!(
                "[data-testid=stage][data-layout=speaker] {}.main",
                tile(host_pid)
            ),
        )
        .await
            && attr(&bo, &tile(host_pid), "data-layer").await.as_deref() == Some("HIGH"))
        .then_some(())
    })
    .await;
    bo.screenshot(SCENARIO, "pinned").await;
    // The host stops sharing: the screen goes for everyone.
    host.click("[data-testid=share-screen]").await;
    until(WAIT, "the screen unpublished", || async {
        (!tracks(&server, sid, host_pid, true)
            .iter()
            .any(|t| t.source == gateway::live::TrackSource::Screen))
        .then_some(())
    })
    .await;
    for (b, who) in [(&bo, "bo"), (&ann, "ann")] {
        until(WAIT, &format!("{who}: the screen tile gone"), || async {
            (!exists(b, "[data-testid=screen-tile]").await).then_some(())
        })
        .await;
    }

    // Removed: Bo's page says so, and he cannot come back.
    host.click(&format!(
        "[data-testid=person][data-participant=\"{bo_pid}\"] [data-testid=remove]"
    ))
    .await;
    host.click(&format!(
        "[data-testid=person][data-participant=\"{bo_pid}\"] [data-testid=confirm-remove]"
    ))
    .await;
    bo.wait_for("[data-testid=room-state][data-phase=removed]")
        .await;
    bo.screenshot(SCENARIO, "removed").await;
    bo.reload().await;
    bo.wait_for("[data-testid=room-state][data-phase=failed]")
        .await;
    let message = bo.text_of("[data-testid=room-message]").await;
    assert!(message.contains("removed"), "{message}");
    until(WAIT, "bo gone from the host's list", || async {
        (!exists(
            &host,
            &format!("[data-testid=person][data-participant=\"{bo_pid}\"]"),
        )
        .await)
            .then_some(())
    })
    .await;

    for b in [host, ann, bo] {
        b.close().await;
    }
    server.stop().await;
}
