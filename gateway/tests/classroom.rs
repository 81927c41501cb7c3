//! The classroom in real Chromium (fake camera and microphone): a host starts a session and
//! publishes with simulcast; two viewers decode the host's video and receive audio; muting;
//! a viewer's attempt to publish refused by the server; a small tile receiving a lower layer; the
//! host's websocket dropping and the host leaving and rejoining. Screenshots are kept.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestServer;
use support::browser::Browser;

const SCENARIO: &str = "classroom";
const WAIT: Duration = Duration::from_secs(30);

async fn sign_up(b: &Browser, url: &str, name: &str, email: &str) {
    b.goto(&format!("{url}/signin")).await;
    b.click("[data-testid=auth-toggle]").await;
    b.fill("input[name=name]", name).await;
    b.fill("input[name=email]", email).await;
    b.fill("input[name=password]", "correct horse battery")
        .await;
    b.click("[data-testid=auth-submit]").await;
    b.wait_for("[data-testid=signed-in-as]").await;
}

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

/// The first remote tile's picture: (mean luma, luma std deviation, 8x8 fingerprint, width).
async fn picture(b: &Browser) -> Option<(f64, f64, Vec<f64>, f64)> {
    let v = b
        .eval(
            "const v = document.querySelector('[data-testid=tile]:not(.self) video');
             if (!v || !v.videoWidth) return null;
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

/// Waits until `check` passes, polling every 250 ms for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Video keeps decoding on `b`: frames grow between two looks.
async fn video_flows(b: &Browser, what: &str) {
    let (start, _, _) = inbound(b).await;
    until(what, || async {
        let (now, _, _) = inbound(b).await;
        (now >= start + 10.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_class_in_chromium() {
    let server = TestServer::with_built_frontend().await;
    let url = server.url.clone();
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;

    // The host creates a class, schedules a session, goes live and joins.
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    host.click("[data-testid=start-session]").await;
    let join = host.wait_for("[data-testid=join-link]").await;
    let href = join.attr("href").await.unwrap().unwrap();
    host.screenshot(SCENARIO, "class-page").await;
    join.click().await.unwrap();
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    host.wait_for("[data-testid=tile].self").await;
    assert_eq!(host.text_of("[data-testid=room-title]").await, "Optics 101");
    let live_url = format!("{url}{href}");

    // Two viewers join with the link.
    let mut viewers = Vec::new();
    for (i, name) in ["Vera Viewer", "Walt Watcher"].iter().enumerate() {
        let b = Browser::launch(&format!("viewer{}", i + 1)).await;
        sign_up(&b, &url, name, &format!("viewer{i}@example.org")).await;
        let clicked = Instant::now();
        b.goto(&live_url).await;
        b.wait_for("[data-testid=room-state][data-phase=live]")
            .await;
        until("the host's first frame", || async {
            let (f, _, _) = inbound(&b).await;
            (f > 0.0).then_some(())
        })
        .await;
        eprintln!("{name}: join to first remote frame {:?}", clicked.elapsed());
        viewers.push(b);
    }

    // Each viewer decodes the host's video: keyframes, frames growing, not black, moving; and
    // receives audio.
    for v in &viewers {
        let (f0, k0, a0) = inbound(v).await;
        assert!(k0 >= 1.0, "a keyframe decoded");
        let first = until("a picture", || picture(v)).await;
        video_flows(v, "frames decoding").await;
        let second = until("a later picture", || picture(v)).await;
        let (_, _, a1) = inbound(v).await;
        assert!(
            first.0 > 20.0 && first.1 > 5.0,
            "not black: mean {} std {}",
            first.0,
            first.1
        );
        let moved: f64 = first
            .2
            .iter()
            .zip(&second.2)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(moved > 1.0, "the picture moves: {moved}");
        assert!(a1 > a0, "audio packets arrive: {a0} then {a1}");
        assert!(f0 >= 1.0);
    }
    // Each tile shows its connection quality from getStats: bitrate, loss, round-trip time.
    for v in &viewers {
        until("a bitrate in the tile's quality line", || async {
            let text = v
                .eval("return document.querySelector('[data-testid=tile] [data-testid=quality]').textContent;")
                .await;
            let text = text.as_str()?.to_owned();
            let kbps: f64 = text.split(" kbit/s").next()?.trim().parse().ok()?;
            (kbps > 0.0 && text.contains("% loss") && text.ends_with("ms")).then_some(())
        })
        .await;
    }
    for b in viewers.iter().chain([&host]) {
        b.screenshot(SCENARIO, "watching").await;
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
    assert_eq!(refused, Value::from("FORBIDDEN"));

    // A viewer with small tiles gets a lower simulcast layer than one with large tiles.
    viewers[1].click("[data-testid=toggle-layout]").await;
    let (large, small) = until("a smaller layer for small tiles", || async {
        let large = picture(&viewers[0]).await?.3;
        let small = picture(&viewers[1]).await?.3;
        (small < large).then_some((large, small))
    })
    .await;
    eprintln!("large tile {large} px wide, small tile {small} px wide");
    viewers[1].screenshot(SCENARIO, "small-tiles").await;

    // The host's websocket drops: the page says so, recovers, and viewers still get video.
    host.eval("window.__classroomDropSocket(); return true;")
        .await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    for v in &viewers {
        video_flows(v, "video after the host's websocket dropped").await;
    }

    // The host leaves and comes back: viewers get video again.
    host.click("[data-testid=leave]").await;
    for v in &viewers {
        until("the host's tile to go", || async {
            let n = v
                .eval("return document.querySelectorAll('[data-testid=tile]').length;")
                .await;
            (n == 0).then_some(())
        })
        .await;
    }
    host.goto(&live_url).await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    for v in &viewers {
        video_flows(v, "video after the host rejoined").await;
    }
    for b in viewers.iter().chain([&host]) {
        b.screenshot(SCENARIO, "after-rejoin").await;
    }

    // Join to first remote picture, measured in the browser (from opening the class link to the
    // first `playing` of a remote video), five times.
    let mut joins = Vec::new();
    for _ in 0..5 {
        viewers[1].goto(&live_url).await;
        let ms = until("the first remote picture", || async {
            viewers[1]
                .eval("return window.__classroomFirstFrame ?? null;")
                .await
                .as_f64()
        })
        .await;
        joins.push(ms);
    }
    joins.sort_by(f64::total_cmp);
    eprintln!(
        "join to first remote picture, 5 runs: {joins:?} ms; median {} ms",
        joins[2]
    );

    for b in viewers {
        b.close().await;
    }
    host.close().await;
    server.stop().await;
}
