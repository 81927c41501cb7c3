//! The run: options, setup (gateway, host, rooms, accounts), joins, warm-up, the measured
//! window, the live progress line, the summary and its JSON.

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::api::{Api, Auth};
use super::local::{self, LocalGateway};
use super::media;
use super::peer::{self, Account, Participant, Role, Shared};
use super::stats::{self, Counters, Stats, percentile};

/// Load generator for the classroom SFU, like `lk load-test`: R rooms, each with N publishers
/// (VP8 simulcast q/h/f or one layer, plus Opus) and M subscribers, joined through the
/// gateway's GraphQL API and signaling. Starts its own gateway unless --url is given.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Rooms (each a class with a live session).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishers per room (camera and microphone each).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per room (receive only).
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Seconds measured, after everyone joined and the warm-up.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds between the last join and the measured window.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Three simulcast layers, rids q, h, f (the default).
    #[arg(long, overrides_with = "no_simulcast")]
    pub simulcast: bool,
    /// One video layer at --video-kbps.
    #[arg(long, overrides_with = "simulcast")]
    pub no_simulcast: bool,
    /// Bitrates of the q, h, f layers in kbit/s.
    #[arg(long, value_delimiter = ',', value_name = "Q,H,F", default_values_t = [150u32, 500, 1200])]
    pub layer_kbps: Vec<u32>,
    /// Bitrate of the single layer with --no-simulcast, kbit/s.
    #[arg(long, default_value_t = 1000)]
    pub video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Seconds between periodic keyframes (a PLI or FIR also gets one at once).
    #[arg(long, default_value_t = 2.0)]
    pub keyframe_interval: f64,
    /// The highest layer subscribers ask for (setPreferredLayer, as the app does for the size
    /// it shows a video at); `unset`: they never ask, and get the SFU's default.
    #[arg(long, value_enum, default_value_t = SubscriberLayer::High)]
    pub subscriber_layer: SubscriberLayer,
    /// Publish video only.
    #[arg(long)]
    pub no_audio: bool,
    /// A running gateway (http://host:port) instead of starting one.
    #[arg(long, env = "LOADGEN_URL")]
    pub url: Option<String>,
    /// API token (READ and WRITE) of a user who may create classes, for --url. Without it
    /// loadgen signs up a host account itself.
    #[arg(long, env = "LOADGEN_TOKEN", requires = "url", hide_env_values = true)]
    pub token: Option<String>,
    /// The gateway binary to start (default: `gateway` next to this executable).
    #[arg(long, conflicts_with = "url")]
    pub gateway_bin: Option<PathBuf>,
    /// SFU shards of the started gateway (0: one per core).
    #[arg(long, default_value_t = 0, conflicts_with = "url")]
    pub shards: u32,
    /// Log filter of the started gateway (its log is in its data directory).
    #[arg(long, default_value = "warn", conflicts_with = "url")]
    pub gateway_log: String,
    /// Keep the started gateway's data directory (database, log) after the run.
    #[arg(long, conflicts_with = "url")]
    pub keep_gateway_data: bool,
    /// Participants joining at once.
    #[arg(long, default_value_t = 4)]
    pub join_concurrency: usize,
    /// Seconds one join may take (joinSession to connected).
    #[arg(long, default_value_t = 30.0)]
    pub join_timeout: f64,
    /// Local IP the peers' UDP sockets bind to (default: 127.0.0.1 for a started gateway, else
    /// the address of the route to --url's host).
    #[arg(long)]
    pub bind_ip: Option<IpAddr>,
    /// Print one line per second of the measured window to stdout.
    #[arg(long)]
    pub per_second: bool,
    /// Write the parameters and every figure as JSON to this file (`-`: stdout).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
}

/// `--subscriber-layer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubscriberLayer {
    Low,
    Medium,
    High,
    Unset,
}

impl SubscriberLayer {
    fn graphql(self) -> Option<&'static str> {
        match self {
            SubscriberLayer::Low => Some("LOW"),
            SubscriberLayer::Medium => Some("MEDIUM"),
            SubscriberLayer::High => Some("HIGH"),
            SubscriberLayer::Unset => None,
        }
    }
}

const AFTER_HELP: &str = "\
Examples:
  loadgen --rooms 1 --publishers 1 --subscribers 5 --duration 10
  loadgen --rooms 4 --publishers 2 --subscribers 25 --no-simulcast --json run.json
  loadgen --url http://10.0.0.5:8080 --token \"$TOKEN\" --subscribers 50

Figures: forwarded packets/s from the gateway's /metrics (sfu_shard_rtp_forwarded_total, all
shards); received packets/s and loss (sequence gaps after NACK repair) at the subscribers;
NACKs the subscribers sent; join time (joinSession to connected) and time to first frame
(joinSession to the first packet of a video keyframe); with a started gateway its CPU per
forwarded packet and RSS per subscriber from /proc/<pid> (with --url: from its /metrics).";

/// A room: its class and live session.
struct Room {
    class: String,
    session: String,
}

/// One reading of everything, once a second.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    forwarded: Option<f64>,
    retransmitted: Option<f64>,
    sfu_received: Option<f64>,
    gateway_cpu: Option<f64>,
    gateway_rss: Option<f64>,
    self_cpu: Option<f64>,
    counters: Counters,
}

/// Where the gateway's process figures come from.
enum Process {
    /// A child of ours: `/proc/<pid>`.
    Local(u32),
    /// Its own `/metrics` (process_cpu_seconds_total, process_resident_memory_bytes).
    Remote,
}

struct Sampler {
    api: Api,
    process: Process,
    stats: Arc<Stats>,
}

impl Sampler {
    /// Waits (up to 5 s) until the gateway's password hashing threads hold no working memory.
    /// A gateway without that gauge is taken as done.
    async fn hashing_done(&self) {
        for _ in 0..100 {
            let held = match self.api.metrics().await {
                Ok(text) => stats::metric_sum(&text, "password_hashing_buffers_held"),
                Err(_) => None,
            };
            if held.is_none_or(|h| h == 0.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("loadgen: the gateway still holds password hashing memory after 5 s");
    }

    async fn sample(&self) -> Sample {
        let text = self.api.metrics().await.ok();
        let metric = |name: &str| text.as_deref().and_then(|t| stats::metric_sum(t, name));
        let (gateway_cpu, gateway_rss) = match self.process {
            Process::Local(pid) => match stats::proc_usage(&pid.to_string()) {
                Some((cpu, rss)) => (Some(cpu), Some(rss as f64)),
                None => (None, None),
            },
            Process::Remote => (
                metric("process_cpu_seconds_total"),
                metric("process_resident_memory_bytes"),
            ),
        };
        Sample {
            at: Instant::now(),
            forwarded: metric("sfu_shard_rtp_forwarded_total"),
            retransmitted: metric("sfu_shard_rtp_retransmitted_total"),
            sfu_received: metric("sfu_shard_rtp_received_total"),
            gateway_cpu,
            gateway_rss,
            self_cpu: stats::proc_usage("self").map(|(cpu, _)| cpu),
            counters: self.stats.counters(),
        }
    }
}

/// Rates between two samples.
#[derive(Debug, Clone, Copy)]
struct Rates {
    seconds: f64,
    forwarded: Option<f64>,
    retransmitted: Option<f64>,
    sfu_received: Option<f64>,
    sub_rx: f64,
    pub_rx: f64,
    tx: f64,
    nacks: f64,
    keyframe_requests: f64,
    /// Percent of expected packets missing at subscribers.
    loss_percent: Option<f64>,
    /// Gateway CPU, percent of one core.
    gateway_cpu_percent: Option<f64>,
    /// Gateway CPU microseconds per forwarded packet.
    cpu_us_per_forwarded: Option<f64>,
    self_cpu_percent: Option<f64>,
    /// Received video packets by layer (q, h, f, unknown).
    video_by_layer: [u64; 4],
}

fn rates(a: &Sample, b: &Sample) -> Rates {
    let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let per = |x: Option<f64>, y: Option<f64>| Some((y? - x?) / seconds);
    let (ca, cb) = (&a.counters, &b.counters);
    let d = |f: fn(&Counters) -> u64| f(cb).saturating_sub(f(ca)) as f64;
    let expected = d(|c| c.expected);
    let received = d(|c| c.received);
    let forwarded = per(a.forwarded, b.forwarded);
    let cpu = b
        .gateway_cpu
        .zip(a.gateway_cpu)
        .map(|(y, x)| (y - x).max(0.0));
    let mut by_layer = [0; 4];
    for (i, v) in by_layer.iter_mut().enumerate() {
        *v = cb.video_by_layer[i].saturating_sub(ca.video_by_layer[i]);
    }
    Rates {
        seconds,
        forwarded,
        retransmitted: per(a.retransmitted, b.retransmitted),
        sfu_received: per(a.sfu_received, b.sfu_received),
        sub_rx: d(|c| c.sub_rx) / seconds,
        pub_rx: d(|c| c.pub_rx) / seconds,
        tx: d(|c| c.tx) / seconds,
        nacks: d(|c| c.nacks) / seconds,
        keyframe_requests: d(|c| c.keyframe_requests) / seconds,
        loss_percent: (expected > 0.0).then(|| (100.0 * (1.0 - received / expected)).max(0.0)),
        gateway_cpu_percent: cpu.map(|c| 100.0 * c / seconds),
        cpu_us_per_forwarded: cpu.zip(forwarded).and_then(|(c, f)| {
            let packets = f * seconds;
            (packets > 0.0).then(|| c * 1e6 / packets)
        }),
        self_cpu_percent: b
            .self_cpu
            .zip(a.self_cpu)
            .map(|(y, x)| 100.0 * (y - x) / seconds),
        video_by_layer: by_layer,
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The live progress line on stderr, and per-second lines.
struct Progress {
    sampler: Sampler,
    last: Sample,
    started: Instant,
    total: usize,
    tty: bool,
    ticks: u64,
}

impl Progress {
    async fn tick(&mut self, phase: &str) -> (Sample, Rates) {
        let now = self.sampler.sample().await;
        let r = rates(&self.last, &now);
        self.last = now;
        self.ticks += 1;
        let s = &self.sampler.stats;
        let line = format!(
            "[{phase} {:>4.0}s] joined {}/{} connected {} failed {} | fwd {}/s | rx {:.0}/s | loss {}% | nack {:.1}/s",
            self.started.elapsed().as_secs_f64(),
            s.joined.load(Ordering::Relaxed),
            self.total,
            s.connected.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            fmt_opt(r.forwarded, 0),
            r.sub_rx,
            fmt_opt(r.loss_percent, 2),
            r.nacks,
        );
        if self.tty {
            eprint!("\r{line:<120}");
            let _ = std::io::stderr().flush();
        } else if self.ticks.is_multiple_of(5) {
            eprintln!("{line}");
        }
        (now, r)
    }

    /// Ends the progress line before other output.
    fn clear(&self) {
        if self.tty {
            eprint!("\r{:<120}\r", "");
        }
    }

    /// Runs `work` while ticking once a second.
    async fn during<T>(&mut self, phase: &str, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = every.tick() => {
                    self.tick(phase).await;
                }
            }
        }
    }
}

/// Now as RFC 3339 (UTC), for `scheduleSession`.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The local address of the route to `url`'s host.
fn route_ip(url: &str) -> Result<IpAddr> {
    let host_port = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .ok_or_else(|| anyhow!("{host_port} resolves to nothing"))?;
    let socket = std::net::UdpSocket::bind(if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    socket.connect(addr)?;
    Ok(socket.local_addr()?.ip())
}

/// Signs up one account and creates its API token.
async fn account(api: &Api, email: String, name: String) -> Result<Account> {
    let password = format!("loadgen-{:032x}", rand::random::<u128>());
    let (cookie, user_id) = api.sign_up(&email, &name, &password).await?;
    let token = api.create_token(&cookie, "loadgen").await?;
    Ok(Account {
        email,
        user_id,
        token,
    })
}

/// What the run measured, for the exit code.
pub struct Outcome {
    pub failed_joins: u64,
}

pub async fn run(mut args: Args) -> Result<Outcome> {
    args.simulcast = !args.no_simulcast;
    if args.rooms == 0 || args.publishers == 0 {
        bail!("--rooms and --publishers must be at least 1");
    }
    if args.layer_kbps.len() != 3 || args.layer_kbps.contains(&0) {
        bail!("--layer-kbps takes three bitrates above 0 (q,h,f), e.g. 150,500,1200");
    }
    if !(1..=120).contains(&args.fps) {
        bail!("--fps must be 1 to 120");
    }
    if [args.duration, args.warmup, args.join_timeout]
        .iter()
        .any(|v| !v.is_finite())
    {
        bail!("--duration, --warmup and --join-timeout take numbers of seconds");
    }
    if args.duration <= 0.0 || args.warmup < 0.0 || args.join_timeout <= 0.0 {
        bail!("--duration and --join-timeout must be above 0, --warmup at least 0");
    }
    if !args.keyframe_interval.is_finite() || args.keyframe_interval <= 0.0 {
        bail!("--keyframe-interval must be above 0");
    }
    let join_concurrency = args.join_concurrency.max(1);
    let layer_kbps = [args.layer_kbps[0], args.layer_kbps[1], args.layer_kbps[2]];
    let layers = media::layers(args.simulcast, &layer_kbps, args.video_kbps);
    let gop = ((args.keyframe_interval * f64::from(args.fps)).round() as u32).max(1);

    // The gateway.
    let mut local: Option<LocalGateway> = None;
    let base = match &args.url {
        Some(url) => url.clone(),
        None => {
            let binary = local::find_binary(args.gateway_bin.as_deref())?;
            eprintln!("loadgen: starting {}", binary.display());
            let gateway = LocalGateway::start(
                &binary,
                args.shards,
                &args.gateway_log,
                args.keep_gateway_data,
            )
            .await?;
            eprintln!(
                "loadgen: gateway pid {} at {} (data and log in {})",
                gateway.pid,
                gateway.url,
                gateway.data_dir().display()
            );
            let url = gateway.url.clone();
            local = Some(gateway);
            url
        }
    };
    let api = Api::new(&base)?;
    let bind_ip = match (args.bind_ip, &local) {
        (Some(ip), _) => ip,
        (None, Some(_)) => IpAddr::from([127, 0, 0, 1]),
        (None, None) => route_ip(&api.base)?,
    };
    let run_id = format!("{:08x}", rand::random::<u32>());

    // The host and the rooms.
    let host_token = match &args.token {
        Some(t) => t.clone(),
        None => {
            eprintln!("loadgen: signing up a host");
            account(
                &api,
                format!("loadgen-{run_id}-host@example.org"),
                "Loadgen Host".into(),
            )
            .await
            .context("signing up the host")?
            .token
        }
    };
    let host = Auth::Bearer(&host_token);
    let mut rooms = Vec::new();
    for r in 0..args.rooms {
        let class = api
            .gql(
                host,
                "mutation($i: CreateClassInput!) { createClass(input: $i) { id } }",
                json!({ "i": { "title": format!("loadgen {run_id} room {r}") } }),
            )
            .await
            .context("createClass (does the token have the WRITE scope?)")?["createClass"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("createClass answered no id"))?
            .to_owned();
        let session = api
            .gql(
                host,
                "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
                json!({ "i": { "classId": class, "start": rfc3339_now() } }),
            )
            .await
            .context("scheduleSession")?["scheduleSession"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("scheduleSession answered no id"))?
            .to_owned();
        api.gql(
            host,
            "mutation($id: ID!) { startSession(id: $id) { id } }",
            json!({ "id": session }),
        )
        .await
        .context("startSession")?;
        rooms.push(Room { class, session });
    }

    // One account per participant: (room, role, index in the room).
    let per_room = args.publishers + args.subscribers;
    let total = args.rooms * per_room;
    let plan: Vec<(usize, Role, usize)> = (0..args.rooms)
        .flat_map(|r| {
            (0..per_room).map(move |i| {
                if i < args.publishers {
                    (r, Role::Publisher, i)
                } else {
                    (r, Role::Subscriber, i - args.publishers)
                }
            })
        })
        .collect();
    eprintln!("loadgen: signing up {total} accounts");
    let signup_started = Instant::now();
    let accounts: Vec<Account> = futures_util::stream::iter(plan.iter().map(|&(r, role, i)| {
        let api = api.clone();
        let kind = if role == Role::Publisher {
            "pub"
        } else {
            "sub"
        };
        let email = format!("loadgen-{run_id}-r{r}-{kind}{i}@example.org");
        let name = format!("Loadgen r{r} {kind} {i}");
        async move { account(&api, email, name).await }
    }))
    .buffered(4)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let signup_seconds = signup_started.elapsed().as_secs_f64();
    for ((r, role, _), a) in plan.iter().zip(&accounts) {
        if *role == Role::Publisher {
            api.gql(
                host,
                "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: SPEAKER) }",
                json!({ "c": rooms[*r].class, "u": a.user_id }),
            )
            .await
            .context("assignRole SPEAKER for a publisher")?;
        }
    }

    let stats = Arc::new(Stats::default());
    let sampler = Sampler {
        api: api.clone(),
        process: match &local {
            Some(g) => Process::Local(g.pid),
            None => Process::Remote,
        },
        stats: Arc::clone(&stats),
    };
    // The sign-ups' password hashing memory (19 MiB per hashing thread) is given back just after
    // the last hash: measure after that, or it would count as the gateway's baseline.
    sampler.hashing_done().await;
    let before_media = sampler.sample().await;
    let shared = Arc::new(Shared {
        api: api.clone(),
        stats: Arc::clone(&stats),
        layers: layers.clone(),
        fps: args.fps,
        gop,
        audio: !args.no_audio,
        bind_ip: bind_ip.to_string(),
        join_timeout: Duration::from_secs_f64(args.join_timeout),
        subscriber_layer: args.subscriber_layer.graphql(),
    });
    let mut progress = Progress {
        last: before_media,
        sampler,
        started: Instant::now(),
        total,
        tty: std::io::stderr().is_terminal(),
        ticks: 0,
    };

    // Publishers first (so subscribers find tracks to receive), then subscribers.
    let mut participants: Vec<Participant> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for wanted in [Role::Publisher, Role::Subscriber] {
        let joins = plan
            .iter()
            .zip(&accounts)
            .enumerate()
            .filter(|(_, ((_, role, _), _))| *role == wanted)
            .map(|(n, ((r, role, _), account))| {
                let (shared, session) = (Arc::clone(&shared), rooms[*r].session.clone());
                let (account, role) = (account.clone(), *role);
                async move { peer::join(&shared, &account, &session, role, n).await }
            });
        let phase = if wanted == Role::Publisher {
            "publishers"
        } else {
            "subscribers"
        };
        let results: Vec<Result<Participant>> = progress
            .during(
                phase,
                futures_util::stream::iter(joins)
                    .buffer_unordered(join_concurrency)
                    .collect(),
            )
            .await;
        for result in results {
            match result {
                Ok(p) => participants.push(p),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        if wanted == Role::Publisher && participants.is_empty() {
            progress.clear();
            bail!(
                "no publisher could join: {}",
                failures.first().map_or("", String::as_str)
            );
        }
    }

    // Warm-up, then the measured window.
    progress
        .during(
            "warm-up",
            tokio::time::sleep(Duration::from_secs_f64(args.warmup)),
        )
        .await;
    let (start, _) = progress.tick("measure").await;
    let mut per_second = Vec::new();
    let window_end = start.at + Duration::from_secs_f64(args.duration);
    let mut previous = start;
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        tokio::select! {
            _ = every.tick() => {}
            _ = tokio::time::sleep(window_end - now) => {}
        }
        let (sample, _) = progress.tick("measure").await;
        let r = rates(&previous, &sample);
        previous = sample;
        if args.per_second {
            progress.clear();
            println!(
                "t={:>5.1}s fwd {:>8}/s rx {:>8.0}/s tx {:>7.0}/s loss {:>6}% nack {:>6.1}/s retx {:>6}/s gw-cpu {:>5}% loadgen-cpu {:>5}%",
                sample.at.duration_since(start.at).as_secs_f64(),
                fmt_opt(r.forwarded, 0),
                r.sub_rx,
                r.tx,
                fmt_opt(r.loss_percent, 3),
                r.nacks,
                fmt_opt(r.retransmitted, 1),
                fmt_opt(r.gateway_cpu_percent, 1),
                fmt_opt(r.self_cpu_percent, 1),
            );
        }
        per_second.push(r);
    }
    let end = previous;
    progress.clear();
    let window = rates(&start, &end);

    let outcome = Outcome {
        failed_joins: stats.failed.load(Ordering::Relaxed),
    };
    let gateway_alive = local.as_mut().is_none_or(LocalGateway::running);
    let report = Report {
        args: &args,
        local: local.is_some(),
        gop,
        layers: &layers,
        signup_seconds,
        before_media,
        end,
        window,
        per_second: &per_second,
        stats: &stats,
        failures: &failures,
        gateway_alive,
    };
    report.print();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
            eprintln!("loadgen: wrote {path}");
        }
    }

    // Teardown: participants leave, the sessions end, a started gateway stops (its guard).
    futures_util::stream::iter(participants.into_iter().map(Participant::close))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    for room in &rooms {
        let _ = api
            .gql(
                host,
                "mutation($id: ID!) { endSession(id: $id) { id } }",
                json!({ "id": room.session }),
            )
            .await;
    }
    if !gateway_alive && let Some(g) = &local {
        eprintln!(
            "loadgen: the gateway died during the run; its log:\n{}",
            g.log_tail()
        );
    }
    drop(local);
    Ok(outcome)
}

struct Report<'a> {
    args: &'a Args,
    local: bool,
    gop: u32,
    layers: &'a [media::Layer],
    signup_seconds: f64,
    before_media: Sample,
    end: Sample,
    window: Rates,
    per_second: &'a [Rates],
    stats: &'a Stats,
    failures: &'a [String],
    gateway_alive: bool,
}

impl Report<'_> {
    fn subscribers(&self) -> usize {
        self.args.rooms * self.args.subscribers
    }

    fn rss_per_subscriber(&self) -> Option<f64> {
        let (before, end) = (self.before_media.gateway_rss?, self.end.gateway_rss?);
        (self.subscribers() > 0).then(|| (end - before) / self.subscribers() as f64)
    }

    fn print(&self) {
        let a = self.args;
        let w = &self.window;
        let mb = |b: Option<f64>| fmt_opt(b.map(|b| b / 1_048_576.0), 1);
        let kb = |b: Option<f64>| fmt_opt(b.map(|b| b / 1024.0), 0);
        let video = if a.simulcast {
            format!(
                "simulcast q/h/f {}/{}/{} kbit/s",
                a.layer_kbps[0], a.layer_kbps[1], a.layer_kbps[2]
            )
        } else {
            format!("one layer {} kbit/s", a.video_kbps)
        };
        let join_sub = Stats::snapshot_list(&self.stats.join_ms_subscribers);
        let join_pub = Stats::snapshot_list(&self.stats.join_ms_publishers);
        let first = Stats::snapshot_list(&self.stats.first_frame_ms);
        let p = |v: &[f64], q: f64| fmt_opt(percentile(v, q), 0);
        let layer_total: u64 = w.video_by_layer.iter().sum();
        let share = |i: usize| {
            if layer_total == 0 {
                "n/a".to_owned()
            } else {
                format!(
                    "{:.0}%",
                    100.0 * w.video_by_layer[i] as f64 / layer_total as f64
                )
            }
        };
        println!(
            "loadgen: {} room(s) x ({} publisher(s) + {} subscriber(s)), VP8 {video} @ {} fps, keyframe every {} frames, {}; {} gateway",
            a.rooms,
            a.publishers,
            a.subscribers,
            a.fps,
            self.gop,
            if a.no_audio {
                "no audio"
            } else {
                "Opus 50 packets/s"
            },
            if self.local { "local" } else { "remote" },
        );
        println!(
            "  window                {:.1} s after {:.0} s warm-up; sign-ups took {:.1} s",
            w.seconds, a.warmup, self.signup_seconds
        );
        println!(
            "  forwarded (SFU)       {} packets/s   retransmitted {}/s",
            fmt_opt(w.forwarded, 0),
            fmt_opt(w.retransmitted, 1)
        );
        println!(
            "  received              {:.0} packets/s at subscribers, {:.0}/s at publishers",
            w.sub_rx, w.pub_rx
        );
        println!(
            "  sent by publishers    {:.0} packets/s (SFU received {}/s); keyframe requests {:.2}/s ({} in the whole run, {} keyframes sent)",
            w.tx,
            fmt_opt(w.sfu_received, 0),
            w.keyframe_requests,
            self.end.counters.keyframe_requests,
            self.end.counters.keyframes,
        );
        println!(
            "  loss at subscribers   {}% (sequence gaps after NACK repair); NACKs sent {:.1}/s",
            fmt_opt(w.loss_percent, 3),
            w.nacks
        );
        if self.layers.len() > 1 {
            println!(
                "  video received        q {} h {} f {} (by the last keyframe's width; unknown {})",
                share(0),
                share(1),
                share(2),
                share(3)
            );
        }
        println!(
            "  join                  subscribers p50 {} ms p99 {} ms ({} joined); publishers p50 {} ms p99 {} ms",
            p(&join_sub, 50.0),
            p(&join_sub, 99.0),
            join_sub.len(),
            p(&join_pub, 50.0),
            p(&join_pub, 99.0),
        );
        println!(
            "  first frame           p50 {} ms p99 {} ms ({} of {} subscribers)",
            p(&first, 50.0),
            p(&first, 99.0),
            first.len(),
            self.subscribers()
        );
        println!(
            "  gateway CPU           {}% of a core = {} us per forwarded packet{}",
            fmt_opt(w.gateway_cpu_percent, 1),
            fmt_opt(w.cpu_us_per_forwarded, 2),
            if self.local { "" } else { " (its /metrics)" }
        );
        println!(
            "  gateway RSS           {} MB before media, {} MB at the end: {} KB per subscriber",
            mb(self.before_media.gateway_rss),
            mb(self.end.gateway_rss),
            kb(self.rss_per_subscriber())
        );
        println!(
            "  loadgen CPU           {}% of a core (same machine as a local gateway)",
            fmt_opt(w.self_cpu_percent, 1)
        );
        let errors = self.stats.errors.load(Ordering::Relaxed);
        if !self.failures.is_empty() || errors > 0 || !self.gateway_alive {
            println!(
                "  problems              {} failed join(s), {} error(s){}",
                self.failures.len(),
                errors,
                if self.gateway_alive {
                    ""
                } else {
                    "; the gateway died"
                }
            );
            for f in self.failures.iter().take(5) {
                println!("    join: {f}");
            }
            for e in Stats::snapshot_list_strings(&self.stats.first_errors) {
                println!("    {e}");
            }
        }
    }

    fn json(&self) -> Value {
        let a = self.args;
        let w = &self.window;
        let list = |l: &std::sync::Mutex<Vec<f64>>| {
            let v = Stats::snapshot_list(l);
            json!({ "count": v.len(), "p50": percentile(&v, 50.0), "p99": percentile(&v, 99.0),
                    "max": percentile(&v, 100.0) })
        };
        let rates_json = |r: &Rates| {
            json!({
                "seconds": r.seconds,
                "forwarded_per_s": r.forwarded,
                "retransmitted_per_s": r.retransmitted,
                "sfu_received_per_s": r.sfu_received,
                "subscriber_received_per_s": r.sub_rx,
                "publisher_received_per_s": r.pub_rx,
                "publisher_sent_per_s": r.tx,
                "loss_percent": r.loss_percent,
                "nacks_per_s": r.nacks,
                "keyframe_requests_per_s": r.keyframe_requests,
                "gateway_cpu_percent": r.gateway_cpu_percent,
                "gateway_cpu_us_per_forwarded": r.cpu_us_per_forwarded,
                "loadgen_cpu_percent": r.self_cpu_percent,
                "subscriber_video_packets_by_layer": { "q": r.video_by_layer[0], "h": r.video_by_layer[1],
                    "f": r.video_by_layer[2], "unknown": r.video_by_layer[3] },
            })
        };
        json!({
            "parameters": {
                "rooms": a.rooms,
                "publishers_per_room": a.publishers,
                "subscribers_per_room": a.subscribers,
                "duration_s": a.duration,
                "warmup_s": a.warmup,
                "simulcast": a.simulcast,
                "layers": self.layers.iter().map(|l| json!({
                    "rid": l.rid, "width": l.width, "height": l.height, "bitrate": l.bitrate,
                    "packets_per_s": media::packets_per_second(l, a.fps, self.gop),
                })).collect::<Vec<_>>(),
                "fps": a.fps,
                "keyframe_every_frames": self.gop,
                "audio": !a.no_audio,
                "gateway": if self.local { "local" } else { "remote" },
                "url": a.url,
                "shards": if self.local { Some(a.shards) } else { None },
                "join_concurrency": a.join_concurrency,
                "subscriber_layer": a.subscriber_layer.graphql(),
            },
            "window": rates_json(w),
            "per_second": self.per_second.iter().map(rates_json).collect::<Vec<_>>(),
            "join_ms_subscribers": list(&self.stats.join_ms_subscribers),
            "join_ms_publishers": list(&self.stats.join_ms_publishers),
            "first_frame_ms": list(&self.stats.first_frame_ms),
            "gateway_rss_bytes_before_media": self.before_media.gateway_rss,
            "gateway_rss_bytes_end": self.end.gateway_rss,
            "gateway_rss_bytes_per_subscriber": self.rss_per_subscriber(),
            "signup_seconds": self.signup_seconds,
            "keyframe_requests_total": self.end.counters.keyframe_requests,
            "keyframes_sent_total": self.end.counters.keyframes,
            "failed_joins": self.failures.len(),
            "join_failures": self.failures.iter().take(20).collect::<Vec<_>>(),
            "errors": self.stats.errors.load(Ordering::Relaxed),
            "gateway_alive": self.gateway_alive,
        })
    }
}
