//! The HTTP surface without a browser: health, readiness, metrics, request ids, static files and
//! graceful shutdown. Most tests drive the router with `oneshot` (no socket).

mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gateway::AppState;
use tower::ServiceExt;

struct Fixture {
    state: AppState,
    _data: tempfile::TempDir,
}

async fn fixture(static_dir: &Path) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let config = support::test_config(data.path(), static_dir.to_owned());
    let state = gateway::build_state(config).await.expect("state");
    Fixture { state, _data: data }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.state.sfu.shutdown();
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(state: &AppState, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = gateway::router(state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn health_answers_and_every_response_carries_a_request_id() {
    let static_dir = tempfile::tempdir().unwrap();
    let f = fixture(static_dir.path()).await;

    let a = get(&f.state, "/health", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = json(&a.body);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let id = a.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(id.matches('-').count(), 4, "a UUID: {id}");

    let b = get(&f.state, "/health", &[]).await;
    assert_ne!(
        b.headers["x-request-id"], a.headers["x-request-id"],
        "ids differ per request"
    );

    // An id from a proxy in front is kept, so logs on both sides line up.
    let c = get(&f.state, "/no/such/route", &[("x-request-id", "proxy-42")]).await;
    assert_eq!(c.headers["x-request-id"], "proxy-42");
}

#[tokio::test]
async fn ready_checks_the_database_and_every_shard() {
    let static_dir = tempfile::tempdir().unwrap();
    let f = fixture(static_dir.path()).await;
    let a = get(&f.state, "/ready", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let body = json(&a.body);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["sfu_shards"], 2);
    assert_eq!(body["sfu_shards_running"], 2);
    assert_eq!(body["reasons"], serde_json::json!([]));

    f.state.sfu.shutdown();
    let a = get(&f.state, "/ready", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&a.body);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["sfu_shards_running"], 0);
    let reasons: Vec<String> = serde_json::from_value(body["reasons"].clone()).unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("sfu: shard 0 "), "{reasons:?}");

    let g = fixture(static_dir.path()).await;
    g.state.db.close();
    let a = get(&g.state, "/ready", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&a.body);
    assert_ne!(body["database"], "ok");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("database: "),
        "{body}"
    );
    // Liveness does not depend on the database.
    assert_eq!(get(&g.state, "/health", &[]).await.status, StatusCode::OK);
}

/// One sample of the exposition: name, labels, value.
type Samples = Vec<(String, HashMap<String, String>, f64)>;

/// A strict reader of the text exposition: every line must be a HELP, TYPE, the final EOF or a
/// well-formed sample of a family declared before it.
fn parse_exposition(text: &str) -> Samples {
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut families: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "exposition ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad name in {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad TYPE: {line}"));
            assert!(valid_name(name), "bad name in {line}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "info",
                    "summary",
                    "unknown"
                ]
                .contains(&kind),
                "{line}"
            );
            assert!(
                families.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family declared twice: {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair
                                .split_once("=\"")
                                .unwrap_or_else(|| panic!("bad label in {line}"));
                            assert!(valid_name(k), "bad label name in {line}");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, HashMap::new()),
            };
            assert!(valid_name(name), "bad name in {line}");
            let family = ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|f| families.contains_key(*f))
                })
                .unwrap_or(name);
            assert!(
                families.contains_key(family),
                "sample of an undeclared family: {line}"
            );
            samples.push((name.to_owned(), labels, value));
        }
    }
    samples
}

fn value_of(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_measured_values() {
    let static_dir = tempfile::tempdir().unwrap();
    let f = fixture(static_dir.path()).await;
    for _ in 0..3 {
        assert_eq!(get(&f.state, "/health", &[]).await.status, StatusCode::OK);
    }
    assert_eq!(
        get(&f.state, "/missing.css", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // Two datagrams to shard 1: its counters must show them.
    let shard = f.state.sfu.shards()[1].local_addr;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(&[1, 2, 3], shard).unwrap();
    client.send_to(&[4, 5], shard).unwrap();
    // The shard thread counts them asynchronously; stopping it drains its socket first.
    f.state.sfu.shutdown();

    let a = get(&f.state, "/metrics", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let samples = parse_exposition(&a.body);

    // The classic Prometheus parser reads it too.
    let scrape = prometheus_parse::Scrape::parse(a.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let classic = |name: &str| scrape.samples.iter().filter(|s| s.metric == name).count();
    assert_eq!(
        classic("http_requests_total"),
        2,
        "prometheus-parse reads both request series"
    );
    assert_eq!(
        classic("sfu_shard_packets_received_total"),
        2,
        "and both shards"
    );
    assert_eq!(classic("process_resident_memory_bytes"), 1);

    let health = [("method", "GET"), ("route", "/health"), ("status", "200")];
    assert_eq!(
        value_of(&samples, "http_requests_total", &health),
        Some(3.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "http_requests_total",
            &[("route", "static"), ("status", "404")]
        ),
        Some(1.0),
        "unmatched paths are labelled `static`, never by raw path"
    );
    assert_eq!(
        value_of(
            &samples,
            "http_request_duration_seconds_count",
            &[("route", "/health")]
        ),
        Some(3.0)
    );
    assert!(value_of(&samples, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    // Clock-tick resolution (10 ms): a young test process may show 0.
    assert!(value_of(&samples, "process_cpu_seconds_total", &[]).unwrap() >= 0.0);
    assert!(value_of(&samples, "process_open_fds", &[]).unwrap() >= 3.0);
    let held = value_of(&samples, "password_hashing_buffers_held", &[]).unwrap();
    assert!((0.0..=2.0).contains(&held), "{held} hashing buffers held");
    assert_eq!(value_of(&samples, "sfu_shards_running", &[]), Some(0.0));
    assert_eq!(
        value_of(
            &samples,
            "sfu_shard_packets_received_total",
            &[("shard", "1")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "sfu_shard_bytes_received_total",
            &[("shard", "1")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value_of(
            &samples,
            "sfu_shard_packets_received_total",
            &[("shard", "0")]
        ),
        Some(0.0)
    );
    // RTP refused from peers without the right to publish, per shard.
    for shard in ["0", "1"] {
        assert_eq!(
            value_of(&samples, "sfu_shard_rtp_refused_total", &[("shard", shard)]),
            Some(0.0)
        );
    }
    assert_eq!(
        value_of(&samples, "db_pool_max_connections", &[]),
        Some(8.0)
    );
}

#[tokio::test]
async fn static_files_are_served_with_spa_fallback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>app</title>",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/app.js"), "export default 1;").unwrap();
    let f = fixture(dir.path()).await;

    let js = get(&f.state, "/pkg/app.js", &[]).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.body, "export default 1;");
    assert!(
        js.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    for route in ["/", "/status", "/classes/42/session"] {
        let page = get(&f.state, route, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{route}");
        assert_eq!(page.body, "<!doctype html><title>app</title>", "{route}");
    }
    assert_eq!(
        get(&f.state, "/pkg/missing.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // Without a build, pages say how to make one, and the API still works.
    let empty = tempfile::tempdir().unwrap();
    let g = fixture(empty.path()).await;
    let page = get(&g.state, "/status", &[]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("just frontend"), "{}", page.body);
    assert_eq!(get(&g.state, "/health", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_started_server_serves_on_its_port_and_stops_cleanly() {
    let static_dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(static_dir.path().to_owned()).await;
    let url = format!("{}/health", server.url);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let sfu = server.state().sfu.clone();
    server.stop().await;
    assert!(!sfu.all_running(), "stopping the gateway stops the shards");
    assert!(
        reqwest::get(&url).await.is_err(),
        "the port no longer answers"
    );
}
