//! `GET /health` latency while clients send the most expensive queries the gateway refuses, next
//! to the same with nobody attacking, in one run, over real HTTP on loopback.
//!
//! Phases: idle; four connections sending the fragment bomb (fragments that each spread the one
//! before twice, 2^21 fields once expanded, ~860 bytes) back to back; four connections sending
//! the longest text the guard parses in full before refusing it (just under the token limit,
//! over the cost limit). In each, one client asks `/health` back to back; p50 / p99 / max of its
//! latency are printed, with how many attacks were refused and how long a refusal took.
//! The attackers run in this process, on the same cores as the server: compare the rows of one
//! run, not absolute figures across machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const HEALTH_REQUESTS: usize = 1000;
const ATTACKERS: usize = 4;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn fragment_bomb() -> String {
    let mut q = String::from("fragment F0 on Query { me { id } } ");
    for i in 1..=21 {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{p} ...F{p} }} ",
            p = i - 1
        ));
    }
    q.push_str("query { ...F21 }");
    q
}

/// Just under the token limit, so it is parsed whole, and over the cost limit.
fn long_refused() -> String {
    let fields: String = (0..3900).map(|_| "__typename ").collect();
    format!("{{ a: classes(first: 100) {{ nodes {{ {fields} }} }} }}")
}

/// Sends `query` back to back until `stop`; returns how long each refusal took.
async fn attack(url: String, query: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let body = json!({ "query": query }).to_string();
    let mut took = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer: serde_json::Value = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON");
        took.push(started.elapsed());
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
            "{answer}"
        );
    }
    took
}

async fn health_latencies(url: &str) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(HEALTH_REQUESTS);
    for _ in 0..HEALTH_REQUESTS {
        let started = Instant::now();
        let response = client.get(url).send().await.expect("/health");
        assert!(response.status().is_success());
        response.bytes().await.expect("body");
        out.push(started.elapsed());
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty()
        && !args
            .iter()
            .any(|a| "health_under_attack".contains(a.as_str()))
    {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::default();
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.static_dir = data.path().join("static");
    config.database.url = format!("sqlite://{}", data.path().join("bench.db").display());
    config.storage.path = data.path().join("objects");
    config.sfu.shards = 1;
    config.sfu.udp_port_start = 0;
    let running = gateway::start(config).await.expect("gateway");
    let health = format!("http://{}/health", running.local_addr);
    let graphql = format!("http://{}/graphql", running.local_addr);

    println!(
        "GET /health, {HEALTH_REQUESTS} requests back to back, while {ATTACKERS} connections send a refused query"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "attack", "p50", "p99", "max", "refused", "refusal p50", "refusal p99"
    );
    let attacks: [(&str, Option<String>); 3] = [
        ("none (idle)", None),
        ("fragment bomb", Some(fragment_bomb())),
        ("longest refused text", Some(long_refused())),
    ];
    for (name, query) in attacks {
        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = query
            .iter()
            .flat_map(|q| std::iter::repeat_n(q, ATTACKERS))
            .map(|q| tokio::spawn(attack(graphql.clone(), q.clone(), Arc::clone(&stop))))
            .collect();
        if !attackers.is_empty() {
            // Let the attack get going.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let latencies = health_latencies(&health).await;
        stop.store(true, Ordering::Relaxed);
        let mut refusals = Vec::new();
        for a in attackers {
            refusals.extend(a.await.unwrap());
        }
        refusals.sort();
        let (r50, r99) = if refusals.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.2?}", percentile(&refusals, 0.5)),
                format!("{:.2?}", percentile(&refusals, 0.99)),
            )
        };
        println!(
            "{:<22} {:>9.2?} {:>9.2?} {:>9.2?} {:>9} {:>12} {:>12}",
            name,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1],
            refusals.len(),
            r50,
            r99
        );
    }
    running.stop(Duration::from_secs(5)).await;
}
