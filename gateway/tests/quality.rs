//! Video quality a student sees (issue 12), in real Chromium: a host publishes Chromium's fake
//! camera (simulcast q/h/f: 320x180, 640x360, 1280x720) and three students watch it on a large
//! tile (the only remote tile in a 1280x800 window: about 600 px wide, so the page asks for the
//! top layer). Once everyone receives video, 60 s are measured while what happens in a class
//! happens: the host turns the camera off (15 s) and on (20 s), student 1 reloads the page and
//! rejoins from the link (30 s), student 2 switches to small tiles (40 s) and back (45 s).
//!
//! Every page samples its own `getStats()` every 250 ms (a sampler in the page, collected by the
//! test afterwards: WebDriver's latency does not decide when samples are taken). The test samples
//! the SFU's shard counters (keyframe requests sent to publishers) and its consumers' layers.
//! The report is printed (run with `--nocapture`), then the requirements are asserted:
//! each student on the top layer at least 95 % of the time outside the excluded windows, at most
//! 1 s of freezes per student, and keyframe requests to the host only around switches (see
//! [`MAX_KEYFRAME_REQUESTS_PER_MIN`]).

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::TestServer;
use support::browser::{Browser, sign_up, until};

const SCENARIO: &str = "quality";
const WAIT: Duration = Duration::from_secs(30);

/// The measurement window, from the moment every student receives video.
const RUN_MS: f64 = 60_000.0;
/// Not counted at the start of the window, nor after each event.
const WARM_UP_MS: f64 = 5_000.0;
const SETTLE_MS: f64 = 4_000.0;
/// How often the pages sample their stats; the share of time is counted in slots of this length.
const SLOT_MS: f64 = 250.0;
/// A stats sample older than this says nothing about now (a page reloading, a stalled sampler);
/// video that decoded no frame over this long is not shown.
const STALE_MS: f64 = 1_000.0;

/// When the events happen, from the start of the window.
const CAMERA_OFF_MS: f64 = 15_000.0;
const CAMERA_ON_MS: f64 = 20_000.0;
const RELOAD_MS: f64 = 30_000.0;
const SMALL_MS: f64 = 40_000.0;
const LARGE_MS: f64 = 45_000.0;

/// What issue 12 requires: a student with a large tile sees the top layer at least this share
/// of the time outside the excluded windows...
const MIN_TOP_SHARE: f64 = 0.95;
/// ...with at most this many seconds of freezes over the minute...
const MAX_FREEZE_S: f64 = 1.0;
/// ...and keyframe requests to the host only around switches. Five events in the minute each
/// justify at most one keyframe (a returning student's new consumer, a switch down and one back
/// up; camera off and on need none, the encoder keeps going), twice if the SFU asks again because
/// the first did not arrive within its 500 ms retry interval: 10, plus 2 for the start of the
/// window. Counted as PLIs sent (the shard counter): a request asks one layer's stream for a
/// keyframe, so each PLI is one request.
const MAX_KEYFRAME_REQUESTS_PER_MIN: f64 = 12.0;

/// Samples `window.__classroomPc.getStats()` every 250 ms into `window.__quality.samples`
/// (once per page load): received video and sent video.
const SAMPLER: &str = "
    if (!window.__quality) {
        const q = { page: Math.random().toString(36).slice(2), samples: [], busy: false };
        window.__quality = q;
        setInterval(async () => {
            if (q.busy) return;
            q.busy = true;
            try {
                const pc = window.__classroomPc;
                const inbound = [], outbound = [];
                if (pc && pc.connectionState !== 'closed') {
                    const stats = await pc.getStats();
                    stats.forEach(s => {
                        if (s.type === 'inbound-rtp' && s.kind === 'video') inbound.push([s.id,
                            s.frameHeight || 0, s.framesDecoded || 0, s.freezeCount || 0,
                            s.totalFreezesDuration || 0, s.pliCount || 0, s.keyFramesDecoded || 0]);
                        if (s.type === 'outbound-rtp' && s.kind === 'video') outbound.push([s.rid || '',
                            s.frameHeight || 0, s.keyFramesEncoded || 0, s.pliCount || 0,
                            s.qualityLimitationReason || '', s.framesPerSecond || 0]);
                    });
                }
                q.samples.push({ t: Date.now(), inbound, outbound });
            } catch (e) {
                q.samples.push({ t: Date.now(), inbound: [], outbound: [], error: String(e) });
            } finally {
                q.busy = false;
            }
        }, 250);
    }
    return window.__quality.page;";

/// Takes the samples the page has kept so far.
const DRAIN: &str = "
    const q = window.__quality;
    if (!q) return null;
    const samples = q.samples;
    q.samples = [];
    return { page: q.page, samples };";

/// Wall clock in ms since the epoch, as `Date.now()` in the pages (same machine).
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

async fn sleep_until_ms(t: f64) {
    let left = t - now_ms();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left / 1000.0)).await;
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A received video stream in one sample.
#[derive(Clone, Debug)]
struct Inbound {
    id: String,
    height: f64,
    decoded: f64,
    freezes: f64,
    frozen_s: f64,
    plis: f64,
    keyframes: f64,
}

/// A sent simulcast stream in one sample.
#[derive(Clone, Debug)]
struct Outbound {
    rid: String,
    height: f64,
    keyframes: f64,
    plis: f64,
    limit: String,
    fps: f64,
}

#[derive(Clone, Debug)]
struct Sample {
    /// Which page load took it (a reload starts new counters).
    page: String,
    t: f64,
    inbound: Vec<Inbound>,
    outbound: Vec<Outbound>,
}

impl Sample {
    /// The received video (one publisher in this scenario).
    fn video(&self) -> Option<&Inbound> {
        self.inbound
            .iter()
            .max_by(|a, b| a.decoded.total_cmp(&b.decoded))
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Installs the sampler in the page as it is now (again after a reload).
async fn start_sampler(b: &Browser) {
    let page = b.eval(SAMPLER).await;
    assert!(page.is_string(), "{}: sampler installed: {page}", b.name);
}

/// Moves the samples the page kept into `into`; how many there were.
async fn drain(b: &Browser, into: &mut Vec<Sample>) -> usize {
    let v = b.eval(DRAIN).await;
    assert!(!v.is_null(), "{}: the page's sampler is gone", b.name);
    let page = text(&v["page"]);
    let list = v["samples"].as_array().cloned().unwrap_or_default();
    for s in &list {
        let inbound = s["inbound"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Inbound {
                id: text(&r[0]),
                height: num(&r[1]),
                decoded: num(&r[2]),
                freezes: num(&r[3]),
                frozen_s: num(&r[4]),
                plis: num(&r[5]),
                keyframes: num(&r[6]),
            })
            .collect();
        let outbound = s["outbound"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Outbound {
                rid: text(&r[0]),
                height: num(&r[1]),
                keyframes: num(&r[2]),
                plis: num(&r[3]),
                limit: text(&r[4]),
                fps: num(&r[5]),
            })
            .collect();
        if let Some(e) = s["error"].as_str() {
            eprintln!("{}: getStats failed in a sample: {e}", b.name);
        }
        into.push(Sample {
            page: page.clone(),
            t: num(&s["t"]),
            inbound,
            outbound,
        });
    }
    list.len()
}

/// (frames decoded, frame height) of the received video, now.
async fn received_video(b: &Browser) -> (f64, f64) {
    let v = b
        .eval(
            "return (async () => {
                const pc = window.__classroomPc;
                if (!pc) return [0, 0];
                let f = 0, h = 0;
                (await pc.getStats()).forEach(s => {
                    if (s.type === 'inbound-rtp' && s.kind === 'video') { f += s.framesDecoded || 0; h = Math.max(h, s.frameHeight || 0); }
                });
                return [f, h];
            })()",
        )
        .await;
    (num(&v[0]), num(&v[1]))
}

/// The student's remote tile as laid out: (width, layer the page asked for).
async fn remote_tile(b: &Browser) -> Option<(f64, String)> {
    let v = b
        .eval(
            "const t = document.querySelector('[data-testid=tile]:not(.self)');
             return t ? [Number(t.dataset.width), t.dataset.layer] : null;",
        )
        .await;
    Some((v.get(0)?.as_f64()?, v.get(1)?.as_str()?.to_owned()))
}

/// The student is in the room with the host's video playing on a tile that asked for `layer`,
/// and frames decoding.
async fn watching(b: &Browser, layer: &str, what: &str) -> f64 {
    b.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let width = until(
        WAIT,
        &format!("{what}: a tile asking for {layer}"),
        || async {
            remote_tile(b)
                .await
                .and_then(|(w, l)| (l == layer).then_some(w))
        },
    )
    .await;
    let (start, _) = received_video(b).await;
    until(WAIT, &format!("{what}: frames decoding"), || async {
        let (now, height) = received_video(b).await;
        (now >= start + 10.0 && height > 0.0).then_some(())
    })
    .await;
    width
}

/// Sound on, as a student does: a page opened from a link (or reloaded) may not start sound
/// without a click, and offers *Turn on sound*.
async fn sound_on(b: &Browser, what: &str) {
    let blocked = until(
        WAIT,
        &format!("{what}: sound playing or the sound prompt"),
        || async {
            let v = b
            .eval(
                "const a = [...document.querySelectorAll('[data-testid=tile] audio[data-remote]')];
                 if (document.querySelector('[data-testid=enable-sound]')) return true;
                 if (a.length && a.every(x => x.srcObject && !x.paused)) return false;
                 return null;",
            )
            .await;
            v.as_bool()
        },
    )
    .await;
    if blocked {
        b.click("[data-testid=enable-sound]").await;
    }
}

/// What the SFU does for one student's video consumer.
#[derive(Clone, Debug)]
struct Consumer {
    name: String,
    preferred: Option<u8>,
    current: Option<u8>,
    estimate_bps: Option<u64>,
}

/// The video consumers of the session, by participant.
async fn video_consumers(server: &TestServer, session_id: i64) -> Vec<Consumer> {
    let state = server.state();
    let Some(snapshot) = state.live.snapshot(session_id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in snapshot.participants {
        let Some(peer) = state.live.peer_of(session_id, p.id) else {
            continue;
        };
        let Some(stats) = state.sfu.stats(peer).await else {
            continue;
        };
        for c in stats.consumers {
            if snapshot
                .tracks
                .iter()
                .any(|t| t.video && t.id.ends_with(c.track.as_str()))
            {
                out.push(Consumer {
                    name: p.name.clone(),
                    preferred: c.preferred_layer,
                    current: c.current_layer,
                    estimate_bps: stats.estimate_bps,
                });
            }
        }
    }
    out
}

/// Keyframe requests (PLIs) all shards have sent to publishers.
fn keyframe_requests_sent(server: &TestServer) -> u64 {
    server
        .state()
        .sfu
        .shards()
        .iter()
        .map(|s| s.stats.keyframe_requests_sent)
        .sum()
}

/// What the test saw of the server during the window.
#[derive(Default)]
struct ServerTrace {
    /// (time, keyframe requests sent by all shards).
    keyframes: Vec<(f64, u64)>,
    /// (time, video consumers), once a second.
    consumers: Vec<(f64, Vec<Consumer>)>,
}

async fn watch_server(server: &TestServer, session_id: i64, end: f64) -> ServerTrace {
    let mut trace = ServerTrace::default();
    let mut tick = 0u32;
    loop {
        let t = now_ms();
        trace.keyframes.push((t, keyframe_requests_sent(server)));
        if tick.is_multiple_of(4) {
            trace
                .consumers
                .push((t, video_consumers(server, session_id).await));
        }
        tick += 1;
        if t >= end {
            return trace;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Something that happened during the window.
struct Event {
    what: &'static str,
    /// Its mark on the timelines.
    mark: char,
    /// When it was done, in ms from the start of the window.
    at: f64,
}

/// Which times of the window are not counted in the share of layers.
struct Windows {
    t0: f64,
    events: Vec<Event>,
}

impl Windows {
    fn at(&self, what: &str) -> f64 {
        self.events
            .iter()
            .find(|e| e.what == what)
            .map_or(f64::NAN, |e| e.at)
    }

    /// The first 5 s, 4 s after each event, and while the host's camera is off (the student sees
    /// the placeholder, whatever layer arrives).
    fn excluded(&self, t: f64) -> bool {
        let at = t - self.t0;
        at < WARM_UP_MS
            || self
                .events
                .iter()
                .any(|e| at >= e.at && at < e.at + SETTLE_MS)
            || (at >= self.at("host camera off") && at < self.at("host camera on"))
    }

    fn end(&self) -> f64 {
        self.t0 + RUN_MS
    }
}

/// The layer of a decoded frame height: 0 top (720), 1 (360), 2 (180), 3 none.
fn layer_of(height: f64) -> usize {
    if height > 540.0 {
        0
    } else if height > 270.0 {
        1
    } else if height > 0.0 {
        2
    } else {
        3
    }
}

/// The layer the student sees at `t`, from the samples (sorted by time): none without a recent
/// sample, without received video, or when no frame was decoded over the last [`STALE_MS`].
fn layer_at(samples: &[Sample], t: f64) -> usize {
    let i = samples.partition_point(|s| s.t <= t);
    let Some(now) = i.checked_sub(1).map(|i| &samples[i]) else {
        return 3;
    };
    if t - now.t > STALE_MS {
        return 3;
    }
    let Some(video) = now.video() else {
        return 3;
    };
    let j = samples.partition_point(|s| s.t <= t - STALE_MS);
    if let Some(before) = j.checked_sub(1).map(|j| &samples[j])
        && before.page == now.page
        && let Some(b) = before.video()
        && b.id == video.id
        && b.decoded >= video.decoded
    {
        return 3;
    }
    layer_of(video.height)
}

/// Growth of a counter over the window, summed over every stream of every page load (a reload
/// starts new counters from zero): (over the whole window, outside the excluded windows).
fn growth<T>(
    points: impl IntoIterator<Item = (String, f64, T)>,
    w: &Windows,
    value: impl Fn(&T) -> f64,
) -> (f64, f64) {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (key, t, item) in points {
        series.entry(key).or_default().push((t, value(&item)));
    }
    let (mut total, mut counted) = (0.0, 0.0);
    for mut points in series.into_values() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut previous = 0.0;
        for (t, v) in points {
            if t > w.t0 && t <= w.end() {
                let d = v - previous;
                total += d;
                if !w.excluded(t) {
                    counted += d;
                }
            }
            previous = v;
        }
    }
    (total, counted)
}

fn inbound_points(samples: &[Sample]) -> Vec<(String, f64, Inbound)> {
    samples
        .iter()
        .flat_map(|s| {
            s.inbound
                .iter()
                .map(|v| (format!("{} {}", s.page, v.id), s.t, v.clone()))
        })
        .collect()
}

/// One student's figures.
struct ViewerReport {
    name: String,
    /// Share of counted time on each layer (720, 360, 180, none).
    shares: [f64; 4],
    counted_s: f64,
    freezes: (f64, f64),
    frozen_s: (f64, f64),
    plis: f64,
    keyframes_decoded: f64,
    samples: usize,
    /// One character a second: F, H, Q or - (none).
    timeline: String,
}

fn viewer_report(name: &str, samples: &[Sample], w: &Windows) -> ViewerReport {
    let mut slots = [0usize; 4];
    let mut t = w.t0 + SLOT_MS;
    while t <= w.end() {
        if !w.excluded(t) {
            slots[layer_at(samples, t)] += 1;
        }
        t += SLOT_MS;
    }
    let counted: usize = slots.iter().sum();
    let shares = slots.map(|n| n as f64 / counted.max(1) as f64);
    let timeline = (1..=(RUN_MS / 1000.0) as usize)
        .map(|s| ['F', 'H', 'Q', '-'][layer_at(samples, w.t0 + s as f64 * 1000.0)])
        .collect();
    let points = inbound_points(samples);
    ViewerReport {
        name: name.to_owned(),
        shares,
        counted_s: counted as f64 * SLOT_MS / 1000.0,
        freezes: growth(points.clone(), w, |v| v.freezes),
        frozen_s: growth(points.clone(), w, |v| v.frozen_s),
        plis: growth(points.clone(), w, |v| v.plis).0,
        keyframes_decoded: growth(points, w, |v| v.keyframes).0,
        samples: samples
            .iter()
            .filter(|s| s.t > w.t0 && s.t <= w.end())
            .count(),
        timeline,
    }
}

/// The host's sent video per rid: heights seen, keyframes encoded, PLIs received, limitation.
fn host_report(samples: &[Sample], w: &Windows) -> String {
    let mut out = String::new();
    let mut rids: Vec<String> = samples
        .iter()
        .flat_map(|s| s.outbound.iter().map(|o| o.rid.clone()))
        .collect();
    rids.sort();
    rids.dedup();
    for rid in rids {
        let in_window: Vec<&Outbound> = samples
            .iter()
            .filter(|s| s.t > w.t0 && s.t <= w.end())
            .flat_map(|s| s.outbound.iter().filter(|o| o.rid == rid))
            .collect();
        let mut heights: BTreeMap<u64, usize> = BTreeMap::new();
        let mut limits: BTreeMap<String, usize> = BTreeMap::new();
        for o in &in_window {
            *heights.entry(o.height as u64).or_default() += 1;
            *limits.entry(o.limit.clone()).or_default() += 1;
        }
        let n = in_window.len().max(1) as f64;
        let share = |m: Vec<(String, usize)>| {
            m.into_iter()
                .map(|(k, c)| format!("{k} {:.0} %", 100.0 * c as f64 / n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let points: Vec<(String, f64, Outbound)> = samples
            .iter()
            .flat_map(|s| {
                s.outbound
                    .iter()
                    .filter(|o| o.rid == rid)
                    .map(|o| (s.page.clone(), s.t, o.clone()))
            })
            .collect();
        let keyframes = growth(points.clone(), w, |o| o.keyframes).0;
        let plis = growth(points, w, |o| o.plis).0;
        let mut fps: Vec<f64> = in_window.iter().map(|o| o.fps).collect();
        fps.sort_by(f64::total_cmp);
        let median_fps = fps.get(fps.len() / 2).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "  host sends rid {rid:>1}: height {}; median {median_fps:.0} fps; keyframes encoded {keyframes:.0}, PLIs received {plis:.0}; limited by {}",
            share(
                heights
                    .into_iter()
                    .map(|(h, c)| (h.to_string(), c))
                    .collect()
            ),
            share(limits.into_iter().collect())
        );
    }
    out
}

/// Per student, the SFU's current layer once a second (F, H, Q; - paused; . no consumer), and
/// the range of its bandwidth estimate.
fn sfu_report(trace: &ServerTrace, names: &[&str], w: &Windows) -> String {
    let mut out = String::new();
    for name in names {
        let mut line = String::new();
        let mut estimates = Vec::new();
        for s in 1..=(RUN_MS / 1000.0) as usize {
            let t = w.t0 + s as f64 * 1000.0;
            let i = trace.consumers.partition_point(|(at, _)| *at <= t);
            let c = i
                .checked_sub(1)
                .and_then(|i| trace.consumers[i].1.iter().find(|c| c.name == *name));
            line.push(match c.map(|c| c.current) {
                None => '.',
                Some(Some(2)) => 'F',
                Some(Some(1)) => 'H',
                Some(Some(0)) => 'Q',
                Some(_) => '-',
            });
            if let Some(e) = c.and_then(|c| c.estimate_bps) {
                estimates.push(e / 1000);
            }
        }
        estimates.sort_unstable();
        let range = match (estimates.first(), estimates.get(estimates.len() / 2)) {
            (Some(lo), Some(mid)) => format!(
                "estimate {lo}..{} kbit/s, median {mid}",
                estimates.last().unwrap_or(lo)
            ),
            _ => "no estimate".to_owned(),
        };
        let preferred: Vec<String> = trace
            .consumers
            .iter()
            .filter(|(t, _)| *t > w.t0 && *t <= w.end())
            .filter_map(|(_, cs)| cs.iter().find(|c| c.name == *name))
            .map(|c| format!("{:?}", c.preferred))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(
            out,
            "  SFU current {:<9} {line}  ({range}; preferred seen {})",
            short(name),
            preferred.join(" ")
        );
    }
    out
}

fn short(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_quality_a_student_sees() {
    let started = Instant::now();
    eprintln!("load average at the start: {}", load_average());
    let server = TestServer::with_built_frontend().await;
    let url = server.url.clone();

    // The host creates a class and goes live.
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    host.wait_for("[data-testid=tile].self").await;
    let live_path = host.path().await;
    assert!(live_path.starts_with("/live/"), "in the room: {live_path}");
    let live_url = format!("{url}{live_path}");
    let session_id: i64 = live_path.trim_start_matches("/live/").parse().unwrap();
    start_sampler(&host).await;

    // Three students sign up and open the join link; each has the host's tile alone on the
    // stage, large (the grid's columns are at least 520 px), so the page asks for the top layer.
    let names = ["Vera One", "Walt Two", "Xena Three"];
    let mut viewers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let b = Browser::launch(&format!("viewer{}", i + 1)).await;
        sign_up(&b, &url, name, &format!("viewer{i}@example.org")).await;
        b.goto(&live_url).await;
        start_sampler(&b).await;
        viewers.push(b);
    }
    for v in &viewers {
        let width = watching(v, "HIGH", &v.name).await;
        eprintln!("{}: remote tile {width:.0} px wide, asks for HIGH", v.name);
        sound_on(v, &v.name).await;
    }
    for v in &viewers {
        let (width, layer) = remote_tile(v).await.expect("the host's tile");
        assert!(
            width >= 480.0 && layer == "HIGH",
            "{}: a large tile: {width} px, asks for {layer}",
            v.name
        );
        v.screenshot(SCENARIO, "start").await;
    }
    // Everyone receives video: the minute starts.
    let load_at_start = load_average();
    let t0 = now_ms();
    let keyframes_at_start = keyframe_requests_sent(&server);
    let end = t0 + RUN_MS;
    eprintln!(
        "everyone receives video after {:.1} s; measuring for {} s (load average {load_at_start})",
        started.elapsed().as_secs_f64(),
        RUN_MS / 1000.0
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); viewers.len()];
    let events = async {
        let mut events = Vec::new();
        let mut happened = |what, mark| {
            events.push(Event {
                what,
                mark,
                at: now_ms() - t0,
            })
        };

        sleep_until_ms(t0 + CAMERA_OFF_MS).await;
        happened("host camera off", 'x');
        host.click("[data-testid=toggle-camera]").await;
        for v in &viewers {
            v.wait_for("[data-testid=tile]:not(.self)[data-muted=true]")
                .await;
        }

        sleep_until_ms(t0 + CAMERA_ON_MS).await;
        happened("host camera on", 'o');
        host.click("[data-testid=toggle-camera]").await;
        for v in &viewers {
            v.wait_for("[data-testid=tile]:not(.self)[data-muted=false]")
                .await;
        }

        // Student 1 reloads; the page at the link joins again by itself.
        sleep_until_ms(t0 + RELOAD_MS).await;
        drain(&viewers[0], &mut samples[0]).await;
        happened("viewer 1 reloads", 'R');
        viewers[0].reload().await;
        start_sampler(&viewers[0]).await;
        watching(&viewers[0], "HIGH", "viewer 1 after the reload").await;
        sound_on(&viewers[0], "viewer 1 after the reload").await;

        sleep_until_ms(t0 + SMALL_MS).await;
        happened("viewer 2 small tiles", 's');
        viewers[1].click("[data-testid=toggle-layout]").await;
        until(WAIT, "viewer 2's tile asking for LOW", || async {
            remote_tile(&viewers[1])
                .await
                .and_then(|(_, l)| (l == "LOW").then_some(()))
        })
        .await;

        sleep_until_ms(t0 + LARGE_MS).await;
        happened("viewer 2 large tiles", 'L');
        viewers[1].click("[data-testid=toggle-layout]").await;
        until(WAIT, "viewer 2's tile asking for HIGH", || async {
            remote_tile(&viewers[1])
                .await
                .and_then(|(_, l)| (l == "HIGH").then_some(()))
        })
        .await;
        events
    };
    let (events, trace) = tokio::join!(events, watch_server(&server, session_id, end));
    sleep_until_ms(end + SLOT_MS).await;
    let load_at_end = load_average();
    for (v, into) in viewers.iter().zip(samples.iter_mut()) {
        drain(v, into).await;
        into.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    let mut host_samples = Vec::new();
    drain(&host, &mut host_samples).await;
    for v in viewers.iter().chain([&host]) {
        v.screenshot(SCENARIO, "end").await;
    }

    // The figures.
    let w = Windows { t0, events };
    let reports: Vec<ViewerReport> = names
        .iter()
        .zip(&samples)
        .enumerate()
        .map(|(i, (name, s))| viewer_report(&format!("viewer {} ({})", i + 1, short(name)), s, &w))
        .collect();
    // From the counter's value at the start.
    let keyframe_points = std::iter::once((t0, keyframes_at_start))
        .chain(trace.keyframes.iter().copied())
        .map(|(t, n)| ("sfu".to_owned(), t, n as f64));
    let (pli_packets, pli_packets_counted) = growth(keyframe_points, &w, |n| *n);
    let requests = pli_packets;
    let minutes = RUN_MS / 60_000.0;
    let requests_per_min = requests / minutes;

    let mut report = String::new();
    let _ = writeln!(
        report,
        "\n=== issue 12: video quality a student sees; {:.0} s measured (load average {load_at_start} at the start, {load_at_end} at the end)",
        RUN_MS / 1000.0
    );
    let events_line: Vec<String> = w
        .events
        .iter()
        .map(|e| format!("{} [{}] at {:.1} s", e.what, e.mark, e.at / 1000.0))
        .collect();
    let _ = writeln!(report, "events: {}", events_line.join("; "));
    let _ = writeln!(
        report,
        "counted: outside the first {} s, {} s after each event and the camera-off time: {:.1} s of {} s",
        WARM_UP_MS / 1000.0,
        SETTLE_MS / 1000.0,
        reports[0].counted_s,
        RUN_MS / 1000.0
    );
    let _ = writeln!(
        report,
        "{:<18}| {:>6} | {:>6} | {:>6} | {:>6} | {:>15} | {:>17} | {:>7} | {:>6} | {:>7}",
        "",
        "720",
        "360",
        "180",
        "none",
        "freezes n / s",
        "of which counted",
        "PLI/min",
        "KF dec",
        "samples"
    );
    for r in &reports {
        let _ = writeln!(
            report,
            "{:<18}| {:>5.1}% | {:>5.1}% | {:>5.1}% | {:>5.1}% | {:>6.0} / {:>5.2} s | {:>8.0} / {:>5.2} s | {:>7.1} | {:>6.0} | {:>7}",
            r.name,
            100.0 * r.shares[0],
            100.0 * r.shares[1],
            100.0 * r.shares[2],
            100.0 * r.shares[3],
            r.freezes.0,
            r.frozen_s.0,
            r.freezes.1,
            r.frozen_s.1,
            r.plis / minutes,
            r.keyframes_decoded,
            r.samples
        );
    }
    let _ = writeln!(
        report,
        "keyframe requests to the host (server side): {requests:.0} PLIs, {requests_per_min:.1} per minute; {:.0} in counted (steady) time, {:.0} around events",
        pli_packets_counted,
        pli_packets - pli_packets_counted
    );
    report.push_str(&host_report(&host_samples, &w));
    let mut ruler = String::new();
    let mut marks = String::new();
    for s in 1..=(RUN_MS / 1000.0) as usize {
        ruler.push(if s % 10 == 0 {
            char::from_digit((s / 10 % 10) as u32, 10).unwrap_or('?')
        } else if s % 5 == 0 {
            '+'
        } else {
            '.'
        });
        let mark = w
            .events
            .iter()
            .find(|e| (e.at / 1000.0).ceil() as usize == s)
            .map_or(' ', |e| e.mark);
        marks.push(mark);
    }
    let _ = writeln!(
        report,
        "timelines, one character a second (F 720, H 360, Q 180, - none):"
    );
    let _ = writeln!(report, "  {:<21} {ruler}", "seconds (x10)");
    let _ = writeln!(report, "  {:<21} {marks}", "events");
    for r in &reports {
        let _ = writeln!(
            report,
            "  seen by {:<13} {}",
            short_viewer(&r.name),
            r.timeline
        );
    }
    report.push_str(&sfu_report(&trace, &names, &w));
    let _ = writeln!(
        report,
        "one run took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    eprintln!("{report}");

    // The harness itself worked: each page sampled the window (viewer 1 misses its reload).
    let expected = (RUN_MS / SLOT_MS) as usize;
    for r in &reports {
        assert!(
            r.samples * 10 >= expected * 8,
            "harness: {} has {} samples of {expected}",
            r.name,
            r.samples
        );
    }

    for b in viewers {
        b.close().await;
    }
    host.close().await;
    server.stop().await;

    // What issue 12 requires.
    let mut failures = Vec::new();
    for r in &reports {
        if r.shares[0] < MIN_TOP_SHARE {
            failures.push(format!(
                "{}: top layer {:.1} % of the counted time (at least {:.0} %)",
                r.name,
                100.0 * r.shares[0],
                100.0 * MIN_TOP_SHARE
            ));
        }
        if r.frozen_s.0 > MAX_FREEZE_S {
            failures.push(format!(
                "{}: {:.2} s of freezes ({:.0} freezes; at most {MAX_FREEZE_S} s)",
                r.name, r.frozen_s.0, r.freezes.0
            ));
        }
    }
    if requests_per_min > MAX_KEYFRAME_REQUESTS_PER_MIN {
        failures.push(format!(
            "{requests_per_min:.1} keyframe requests a minute to the host (at most {MAX_KEYFRAME_REQUESTS_PER_MIN})"
        ));
    }
    assert!(
        failures.is_empty(),
        "video quality (issue 12):\n{}",
        failures.join("\n")
    );
}

fn short_viewer(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}
