//! The classroom in real Chromium (fake camera and microphone), with Chromium's normal autoplay
//! policy, driven as people do: a host goes live and lands in the room; students open the shared
//! join link (signed in; signed out, then signing up) and see and hear the host; a reload; muting
//! camera and microphone shown to everyone; a viewer's attempt to publish refused; small tiles on
//! a lower layer; the host's websocket dropping; the host leaving and rejoining; the session ending
//! from the room; the link of an ended session and of one not started yet. Join to first picture is
//! measured in the browser. Screenshots are kept.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::TestServer;
use support::browser::{Browser, fill_sign_up, sign_up, until};

const SCENARIO: &str = "classroom";
const WAIT: Duration = Duration::from_secs(30);

/// Inbound video frames decoded, key frames, and audio packets received, over all remote tracks.
async fn inbound(b: &Browser) -> (f64, f64, f64) {
    let v = b
        .eval(
            "return (async () => {
                const pc = window.__classroomPc;
                if (!pc) return [0, 0, 0];
                const stats = await pc.getStats();
                let f = 0, k = 0, a = 0;
                stats.forEach(s => {
                    if (s.type === 'inbound-rtp' && s.kind === 'video') { f += s.framesDecoded || 0; k += s.keyFramesDecoded || 0; }
                    if (s.type === 'inbound-rtp' && s.kind === 'audio') { a += s.packetsReceived || 0; }
                });
                return [f, k, a];
            })()",
        )
        .await;
    (
        v[0].as_f64().unwrap_or(0.0),
        v[1].as_f64().unwrap_or(0.0),
        v[2].as_f64().unwrap_or(0.0),
    )
}

/// The first remote tile's picture as shown on the page: (mean luma, luma std deviation, 8x8
/// fingerprint, width). `None` while its video element is not playing: a video the browser
/// refused to play stays black for the person, whatever was decoded. Also `None` until playback
/// has advanced (a frame was presented): right when playback starts, a canvas can still read
/// the element as black.
async fn picture(b: &Browser) -> Option<(f64, f64, Vec<f64>, f64)> {
    let v = b
        .eval(
            "const v = document.querySelector('[data-testid=tile]:not(.self) video');
             if (!v || !v.videoWidth || v.paused || !(v.currentTime > 0)) return null;
             const c = document.createElement('canvas'); c.width = 64; c.height = 36;
             const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 36);
             const d = g.getImageData(0, 0, 64, 36).data;
             let sum = 0, sq = 0; const fp = new Array(64).fill(0);
             for (let y = 0; y < 36; y++) for (let x = 0; x < 64; x++) {
               const i = (y * 64 + x) * 4; const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
               sum += l; sq += l * l; fp[Math.floor(y / 4.5) * 8 + Math.floor(x / 8)] += l / 36;
             }
             const n = 64 * 36; const mean = sum / n;
             return [mean, Math.sqrt(sq / n - mean * mean), fp, v.videoWidth];",
        )
        .await;
    if v.is_null() {
        return None;
    }
    let fp = v[2]
        .as_array()?
        .iter()
        .map(|x| x.as_f64().unwrap_or(0.0))
        .collect();
    Some((v[0].as_f64()?, v[1].as_f64()?, fp, v[3].as_f64()?))
}

/// Video keeps decoding on `b`: frames grow between two looks.
async fn video_flows(b: &Browser, what: &str) {
    let (start, _, _) = inbound(b).await;
    until(WAIT, what, || async {
        let (now, _, _) = inbound(b).await;
        (now >= start + 10.0).then_some(())
    })
    .await;
}

/// The person sees the host: a picture that is not black and moves.
async fn sees_the_host(b: &Browser, what: &str) {
    let first = until(WAIT, &format!("{what}: a picture"), || picture(b)).await;
    assert!(
        first.0 > 20.0 && first.1 > 5.0,
        "{what}: not black: mean {} std {}",
        first.0,
        first.1
    );
    video_flows(b, &format!("{what}: frames decoding")).await;
    let second = until(WAIT, &format!("{what}: a later picture"), || picture(b)).await;
    let moved: f64 = first
        .2
        .iter()
        .zip(&second.2)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(moved > 1.0, "{what}: the picture moves: {moved}");
}

/// The person hears the host: every remote audio element plays, and audio packets arrive. When
/// the browser refused to start the sound (a page opened from a link), the page offers *Turn on
/// sound*, and a click on it starts it.
async fn hears_the_host(b: &Browser, what: &str) {
    let (_, _, a0) = inbound(b).await;
    let state = until(
        WAIT,
        &format!("{what}: sound playing or the sound prompt"),
        || async {
            let v = b
            .eval(
                "const a = [...document.querySelectorAll('[data-testid=tile] audio[data-remote]')];
                 if (document.querySelector('[data-testid=enable-sound]')) return 'blocked';
                 if (a.length && a.every(x => x.srcObject && !x.paused)) return 'playing';
                 return null;",
            )
            .await;
            v.as_str().map(str::to_owned)
        },
    )
    .await;
    if state == "blocked" {
        b.click("[data-testid=enable-sound]").await;
        until(WAIT, &format!("{what}: sound playing after the click"), || async {
            let v = b
                .eval(
                    "const a = [...document.querySelectorAll('[data-testid=tile] audio[data-remote]')];
                     return a.length > 0 && a.every(x => x.srcObject && !x.paused) && !document.querySelector('[data-testid=enable-sound]');",
                )
                .await;
            (v == Value::Bool(true)).then_some(())
        })
        .await;
    }
    until(WAIT, &format!("{what}: audio packets arriving"), || async {
        let (_, _, a1) = inbound(b).await;
        (a1 > a0).then_some(())
    })
    .await;
}

/// Errors the page left unhandled (a refused `play()` used to be one).
async fn page_errors(b: &Browser) -> Vec<Value> {
    b.eval("return window.__pageErrors || [];")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn phase(b: &Browser) -> String {
    b.eval("const e = document.querySelector('[data-testid=room-state]'); return e ? e.dataset.phase : null;")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn count(b: &Browser, css: &str) -> u64 {
    b.eval(&format!(
        "return document.querySelectorAll({}).length;",
        Value::from(css)
    ))
    .await
    .as_u64()
    .unwrap_or(0)
}

/// (preferred layer, current layer, bandwidth estimate) of every video consumer in the session.
async fn video_consumer_layers(
    server: &TestServer,
    session_id: i64,
) -> Vec<(Option<u8>, Option<u8>, Option<u64>)> {
    let state = server.state();
    let Some(snapshot) = state.live.snapshot(session_id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in snapshot.participants {
        let Some(peer) = state.live.peer_of(session_id, p.id) else {
            continue;
        };
        if let Some(stats) = state.sfu.stats(peer).await {
            for c in stats.consumers {
                if snapshot
                    .tracks
                    .iter()
                    .any(|t| t.video && t.id.ends_with(c.track.as_str()))
                {
                    out.push((c.preferred_layer, c.current_layer, stats.estimate_bps));
                }
            }
        }
    }
    out
}

/// The titles on the person's Classes page, once it has loaded.
async fn listed_titles(b: &Browser, url: &str) -> Vec<String> {
    b.goto(&format!("{url}/classes")).await;
    let v = until(WAIT, "the class list", || async {
        let v = b
            .eval(
                "if (document.querySelector('.class-list')) return [...document.querySelectorAll('.class-list li a')].map(a => a.textContent);
                 if ([...document.querySelectorAll('p.muted')].some(p => p.textContent.startsWith('No classes'))) return [];
                 return null;",
            )
            .await;
        v.as_array().cloned()
    })
    .await;
    v.into_iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Where the join time of the last page load went: each `classroom:*` mark, in ms since the page
/// opened.
async fn join_marks(b: &Browser) -> String {
    b.eval(
        "return performance.getEntriesByType('mark').filter(m => m.name.startsWith('classroom:'))
            .map(m => m.name.slice(10) + ' ' + m.startTime.toFixed(0)).join(', ');",
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_class_in_chromium() {
    let server = TestServer::with_built_frontend().await;
    let url = server.url.clone();
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;

    // The host creates a class, schedules a session and goes live: *Go live* takes them into the
    // room. The class page has the join link to copy.
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    host.wait_for("[data-testid=copy-join-link]").await;
    host.screenshot(SCENARIO, "class-page").await;
    let class_path = host.path().await;

    // A new class is unlisted: another student does not find it in their list; made public,
    // they do.
    let vera = Browser::launch("viewer1").await;
    sign_up(&vera, &url, "Vera Viewer", "viewer0@example.org").await;
    assert_eq!(listed_titles(&vera, &url).await, Vec::<String>::new());
    assert_eq!(
        host.text_of("[data-testid=class-visibility]").await,
        "Anyone with the link"
    );
    host.eval(
        "const s = document.querySelector('[data-testid=change-visibility]'); s.value = 'PUBLIC';
         s.dispatchEvent(new Event('change', { bubbles: true })); return true;",
    )
    .await;
    until(WAIT, "the class shown as public", || async {
        (host.text_of("[data-testid=class-visibility]").await == "Public").then_some(())
    })
    .await;
    assert_eq!(
        listed_titles(&vera, &url).await,
        vec!["Optics 101".to_owned()]
    );

    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let live_path = host.path().await;
    assert!(live_path.starts_with("/live/"), "in the room: {live_path}");
    host.wait_for("[data-testid=tile].self").await;
    host.wait_for("[data-testid=copy-link]").await;
    assert_eq!(host.text_of("[data-testid=room-title]").await, "Optics 101");
    let live_url = format!("{url}{live_path}");

    // A signed-in student opens the shared link (no click on the page: Chromium refuses sound
    // until one): sees the host at once, and hears them after *Turn on sound*.
    vera.goto(&live_url).await;
    vera.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    sees_the_host(&vera, "vera from the link").await;
    vera.screenshot(SCENARIO, "from-link").await;
    hears_the_host(&vera, "vera from the link").await;
    assert_eq!(page_errors(&vera).await, Vec::<Value>::new());

    // A signed-out student opens the link: the page asks them to sign in or sign up, and brings
    // them back into the class afterwards.
    let walt = Browser::launch("viewer2").await;
    walt.goto(&live_url).await;
    walt.wait_for("[data-testid=room-state][data-phase=signed-out]")
        .await;
    assert_eq!(
        count(&walt, "[data-testid=leave]").await,
        0,
        "no room buttons"
    );
    assert_eq!(count(&walt, "[data-testid=toggle-layout]").await, 0);
    walt.screenshot(SCENARIO, "signed-out").await;
    walt.click("[data-testid=room-sign-up]").await;
    fill_sign_up(&walt, "Walt Watcher", "viewer1@example.org").await;
    walt.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    assert_eq!(walt.path().await, live_path, "back in the class");
    sees_the_host(&walt, "walt after signing up").await;
    hears_the_host(&walt, "walt after signing up").await;
    let viewers = [vera, walt];

    // Each tile shows its connection quality as a level, with the figures on hover.
    for v in &viewers {
        until(WAIT, "a quality level with details", || async {
            let v = v
                .eval(
                    "const q = document.querySelector('[data-testid=tile] [data-testid=quality]');
                       return [q.dataset.level, q.title];",
                )
                .await;
            let (level, title) = (v[0].as_str()?, v[1].as_str()?);
            (["good", "fair", "poor"].contains(&level) && title.contains("kbit/s")).then_some(())
        })
        .await;
    }
    for b in viewers.iter().chain([&host]) {
        b.screenshot(SCENARIO, "watching").await;
    }

    // A reload: the picture comes back without a click.
    viewers[0].goto(&live_url).await;
    viewers[0]
        .wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    sees_the_host(&viewers[0], "vera after a reload").await;
    hears_the_host(&viewers[0], "vera after a reload").await;

    // The host mutes the microphone: everyone sees it, the host too; and unmutes.
    host.click("[data-testid=toggle-mic]").await;
    host.wait_for("[data-testid=tile].self[data-mic-muted=true] [data-testid=mic-muted]")
        .await;
    for v in &viewers {
        v.wait_for("[data-testid=tile][data-mic-muted=true] [data-testid=mic-muted]")
            .await;
    }
    viewers[0].screenshot(SCENARIO, "host-mic-muted").await;
    host.click("[data-testid=toggle-mic]").await;
    for v in &viewers {
        v.wait_for("[data-testid=tile][data-mic-muted=false]").await;
    }

    // The host turns the camera off: viewers see it; on again: video returns.
    host.click("[data-testid=toggle-camera]").await;
    for v in &viewers {
        v.wait_for("[data-testid=tile][data-muted=true]").await;
    }
    viewers[0].screenshot(SCENARIO, "host-camera-off").await;
    host.click("[data-testid=toggle-camera]").await;
    for v in &viewers {
        v.wait_for("[data-testid=tile][data-muted=false]").await;
        video_flows(v, "video after unmuting").await;
    }

    // A viewer's attempt to publish is refused by the server.
    let refused = viewers[0]
        .eval(
            "return (async () => {
                const pc = new RTCPeerConnection();
                const media = await navigator.mediaDevices.getUserMedia({ video: true });
                pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly' });
                const offer = await pc.createOffer();
                const session = location.pathname.split('/').pop();
                const r = await fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' },
                    body: JSON.stringify({ query: 'mutation($s: ID!, $sdp: String!) { sendOffer(sessionId: $s, sdp: $sdp) }',
                                           variables: { s: session, sdp: offer.sdp } }) });
                const body = await r.json();
                media.getTracks().forEach(t => t.stop()); pc.close();
                return body.errors ? body.errors[0].extensions.code : 'ACCEPTED';
            })()",
        )
        .await;
    // Refused: as a second connection (BAD_USER_INPUT) or as publishing (FORBIDDEN); what the
    // SFU enforces on media is tested with hostile peers in `signaling.rs` and `sfu/tests`.
    assert!(
        refused == "FORBIDDEN" || refused == "BAD_USER_INPUT",
        "a viewer's sending offer: {refused}"
    );
    assert_eq!(
        count(&host, "[data-testid=tile]").await,
        1,
        "nobody but the host on stage"
    );

    // A viewer with small tiles asks the server for the low layer and gets it; the one with
    // large tiles asks for the high one. (Which layer a large tile gets also depends on the SFU's
    // bandwidth estimate, the SFU's own tests cover it; printed here.)
    viewers[1].click("[data-testid=toggle-layout]").await;
    let session_id: i64 = live_path.trim_start_matches("/live/").parse().unwrap();
    let preferred = until(WAIT, "both viewers' layer preferences in the SFU", || async {
        let layers = video_consumer_layers(&server, session_id).await;
        let preferred: Vec<Option<u8>> = layers.iter().map(|l| l.0).collect();
        let asked = "const t = document.querySelector('[data-testid=tile]:not(.self)'); return t ? [t.dataset.width, t.dataset.layer] : null;";
        let (a0, a1) = (viewers[0].eval(asked).await, viewers[1].eval(asked).await);
        eprintln!("SFU video consumers (preferred, current, estimate): {layers:?}; tiles (width, layer asked): {a0} {a1}");
        (preferred.contains(&Some(0)) && preferred.contains(&Some(2))).then_some(layers)
    })
    .await;
    let small = until(WAIT, "the low layer on the small tile", || async {
        let width = picture(&viewers[1]).await?.3;
        (width <= 320.0).then_some(width)
    })
    .await;
    let large = picture(&viewers[0]).await.map(|p| p.3);
    eprintln!(
        "small tile {small} px wide, large tile {large:?} px wide; SFU (preferred, current, estimate): {preferred:?}"
    );
    viewers[1].screenshot(SCENARIO, "small-tiles").await;
    viewers[1].click("[data-testid=toggle-layout]").await;

    // The host's websocket drops: the page says so, recovers, and viewers still get video. It
    // resubscribes from the last event it applied (`since`), so it resumes instead of starting
    // from a snapshot.
    let resumes = server.state().live.stats().resumes;
    host.eval("window.__classroomDropSocket(); return true;")
        .await;
    until(WAIT, "the host's page resumes its subscription", || async {
        (server.state().live.stats().resumes > resumes).then_some(())
    })
    .await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let tiles = count(&host, "[data-testid=tile]").await;
    assert!(tiles > 0, "the host still sees the stage after resuming");
    for v in &viewers {
        video_flows(v, "video after the host's websocket dropped").await;
    }

    // The host leaves: their page says so and offers *Rejoin* (no stage, no controls); students
    // are told the host is away. The host rejoins: students see them again.
    host.click("[data-testid=leave]").await;
    host.wait_for("[data-testid=room-state][data-phase=left]")
        .await;
    host.wait_for("[data-testid=rejoin]").await;
    assert_eq!(count(&host, "[data-testid=tile]").await, 0, "no tiles");
    assert_eq!(count(&host, "[data-testid=toggle-camera]").await, 0);
    assert_eq!(count(&host, "[data-testid=room-counts]").await, 0);
    for v in &viewers {
        let away = v.text_of("[data-testid=stage-empty]").await;
        assert!(
            away.contains("host has left"),
            "told the host is away: {away}"
        );
        assert_eq!(count(v, "[data-testid=tile]").await, 0);
    }
    host.screenshot(SCENARIO, "host-left").await;
    viewers[0].screenshot(SCENARIO, "host-away").await;
    host.click("[data-testid=rejoin]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    host.wait_for("[data-testid=tile].self").await;
    for v in &viewers {
        sees_the_host(v, "after the host rejoined").await;
    }
    for b in viewers.iter().chain([&host]) {
        b.screenshot(SCENARIO, "after-rejoin").await;
    }

    // Join to first remote picture, measured in the browser, ten times each: from opening the
    // class link (the page's own clock starts at navigation), and from a click on *Join* on the
    // class page.
    let mut from_link = Vec::new();
    for _ in 0..10 {
        viewers[1].goto(&live_url).await;
        let ms = until(WAIT, "the first remote picture", || async {
            viewers[1]
                .eval("return window.__classroomFirstFrame ?? null;")
                .await
                .as_f64()
        })
        .await;
        from_link.push(ms);
    }
    eprintln!(
        "where the time went (last link open): {}",
        join_marks(&viewers[1]).await
    );
    let mut from_click = Vec::new();
    for _ in 0..10 {
        viewers[1].goto(&format!("{url}{class_path}")).await;
        viewers[1].click("[data-testid=join-link]").await;
        let ms = until(WAIT, "the first remote picture after Join", || async {
            viewers[1]
                .eval(
                    "const f = window.__classroomFirstFrame; const c = performance.getEntriesByName('classroom:join-click')[0];
                     return (f !== undefined && c) ? f - c.startTime : null;",
                )
                .await
                .as_f64()
        })
        .await;
        from_click.push(ms);
    }
    eprintln!(
        "where the time went (last Join click): {}",
        join_marks(&viewers[1]).await
    );
    from_link.sort_by(f64::total_cmp);
    from_click.sort_by(f64::total_cmp);
    eprintln!(
        "join to first remote picture from the link, 10 runs: p50 {:.0} ms, p95 {:.0} ms ({from_link:.0?})",
        percentile(&from_link, 0.5),
        percentile(&from_link, 0.95)
    );
    eprintln!(
        "join to first remote picture from a click on Join, 10 runs: p50 {:.0} ms, p95 {:.0} ms ({from_click:.0?})",
        percentile(&from_click, 0.5),
        percentile(&from_click, 0.95)
    );
    assert_eq!(page_errors(&viewers[1]).await, Vec::<Value>::new());

    // The host ends the session from the room: everyone's page says it ended, without the
    // room's counts and buttons.
    host.click("[data-testid=end-session]").await;
    host.click("[data-testid=confirm-end]").await;
    for b in viewers.iter().chain([&host]) {
        b.wait_for("[data-testid=room-state][data-phase=ended]")
            .await;
        assert_eq!(count(b, "[data-testid=room-counts]").await, 0);
        assert_eq!(count(b, "[data-testid=leave]").await, 0);
        assert!(
            b.text_of("[data-testid=room-message] h2")
                .await
                .contains("has ended")
        );
    }
    viewers[0].screenshot(SCENARIO, "ended").await;

    // The link of an ended session says so.
    viewers[0].goto(&live_url).await;
    viewers[0]
        .wait_for("[data-testid=room-state][data-phase=ended]")
        .await;
    assert!(
        viewers[0]
            .text_of("[data-testid=room-message] h2")
            .await
            .contains("has ended")
    );
    assert_eq!(phase(&viewers[0]).await, "ended");

    // The link of a session not started yet waits, and joins by itself when the host goes live.
    host.goto(&format!("{url}{class_path}")).await;
    host.click("[data-testid=schedule]").await;
    let next = until(WAIT, "the new session's start button", || async {
        let v = host
            .eval("const b = document.querySelector('[data-testid=start-session]'); return b ? b.closest('[data-session]').dataset.session : null;")
            .await;
        v.as_str().map(str::to_owned)
    })
    .await;
    let next_url = format!("{url}/live/{next}");
    viewers[0].goto(&next_url).await;
    viewers[0]
        .wait_for("[data-testid=room-state][data-phase=not-started]")
        .await;
    viewers[0].screenshot(SCENARIO, "not-started").await;
    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    viewers[0]
        .wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    sees_the_host(&viewers[0], "vera, joined when the session went live").await;

    for b in viewers {
        b.close().await;
    }
    host.close().await;
    server.stop().await;
}
