//! Latency of the `classes` GraphQL query under load, on SQLite, over real HTTP on loopback.
//!
//! Starts a gateway with a fresh database of 1000 classes, then for each concurrency level runs
//! clients that each send requests back to back (a page of 20 classes with their titles, bearer
//! token auth) and reports p50 / p90 / p99 / max latency and requests per second. Figures depend
//! on the machine: compare levels within one run. Not a criterion bench: percentiles under
//! concurrent load are what matters here.

use std::time::{Duration, Instant};

use serde_json::json;

const CLASSES: usize = 1000;
const REQUESTS_PER_CLIENT: usize = 400;
const QUERY: &str =
    "{ classes(first: 20) { edges { node { id title } } pageInfo { hasNextPage endCursor } } }";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn client_run(client: reqwest::Client, url: String, token: String) -> Vec<Duration> {
    let body = json!({ "query": QUERY }).to_string();
    let mut out = Vec::with_capacity(REQUESTS_PER_CLIENT);
    for _ in 0..REQUESTS_PER_CLIENT {
        let start = Instant::now();
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let bytes = response.bytes().await.expect("body");
        out.push(start.elapsed());
        assert!(
            bytes.starts_with(b"{\"data\""),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "classes_latency".contains(a.as_str())) {
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
    let url = format!("http://{}/graphql", running.local_addr);

    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let gql = |q: serde_json::Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(&url)
                .json(&q)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    gql(json!({ "query": "mutation { signUp(input: {email: \"bench@example.org\", password: \"bench password\", displayName: \"Bench\"}) { id } }" })).await;
    let token = gql(json!({ "query": "mutation { createApiToken(input: {name: \"bench\", scopes: [READ]}) { secret } }" })).await["data"]
        ["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = gql(json!({ "query": "{ me { id } }" })).await["data"]["me"]["id"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    running
        .state()
        .db
        .interact(move |c| {
            let now = schema::now_ms();
            for i in 0..CLASSES {
                let title = format!("Class {i}");
                schema::models::class::create(
                    c,
                    &schema::models::class::NewClass {
                        owner_id: owner,
                        title: &title,
                        description: "",
                        visibility: schema::models::class::UNLISTED,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();

    println!(
        "classes query, SQLite, {CLASSES} classes, page of 20, {REQUESTS_PER_CLIENT} requests per client"
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "clients", "p50", "p90", "p99", "max", "req/s"
    );
    for clients in [1usize, 4, 16, 64] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                tokio::spawn(client_run(
                    reqwest::Client::new(),
                    url.clone(),
                    token.clone(),
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let wall = started.elapsed();
        all.sort();
        println!(
            "{:>8} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.0}",
            clients,
            percentile(&all, 0.50),
            percentile(&all, 0.90),
            percentile(&all, 0.99),
            all[all.len() - 1],
            all.len() as f64 / wall.as_secs_f64()
        );
    }
    running.stop(Duration::from_secs(5)).await;
}
