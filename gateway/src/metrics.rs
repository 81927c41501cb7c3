//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Only what is measured: HTTP requests (counted and timed by a middleware), the process (read from
//! `/proc/self` at each scrape), the SFU shards' counters, the database pool and the session hub's
//! counters (resumes, lagged resyncs, superseded offers). Never a placeholder.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AppState;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Route label for requests that matched no API route (static files and the SPA fallback).
const STATIC_ROUTE: &str = "static";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The registry and the metrics the gateway updates itself.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the HTTP metrics and the process collector.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to sending its response head, by method and route",
            durations.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            requests,
            durations,
        }
    }

    /// Adds a collector read at every scrape (SFU shards, database pool).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Middleware: counts and times every request by its matched route (never the raw path, so that
/// label cardinality stays bounded).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(STATIC_ROUTE, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Writes one unlabelled sample.
fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// The standard `process_*` metrics, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process::sample() else {
            // Not Linux, or /proc unreadable: export nothing rather than made-up numbers.
            return Ok(());
        };
        encode_one(
            &mut encoder,
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            &ConstCounter::new(p.cpu_seconds),
        )?;
        encode_one(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            &ConstGauge::new(p.resident_bytes),
        )?;
        encode_one(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            &ConstGauge::new(p.virtual_bytes),
        )?;
        encode_one(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            &ConstGauge::new(p.open_fds),
        )?;
        if let Some(max) = p.max_fds {
            encode_one(
                &mut encoder,
                "process_max_fds",
                "Limit on open file descriptors",
                &ConstGauge::new(max),
            )?;
        }
        encode_one(
            &mut encoder,
            "password_hashing_buffers_held",
            "Password hashing threads holding their working memory (19 MiB each); 0 once a burst of sign-ups or logins is over",
            &ConstGauge::new(crate::auth::password::held_buffers() as i64),
        )?;
        encode_one(
            &mut encoder,
            "process_threads",
            "OS threads in the process",
            &ConstGauge::new(p.threads),
        )?;
        encode_one(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            &ConstGauge::new(p.start_time_seconds),
        )?;
        Ok(())
    }
}

/// Reading `/proc/self`.
mod process {
    /// One reading of the process's resource use.
    pub(super) struct Sample {
        pub cpu_seconds: f64,
        pub resident_bytes: i64,
        pub virtual_bytes: i64,
        pub open_fds: i64,
        pub max_fds: Option<i64>,
        pub threads: i64,
        pub start_time_seconds: f64,
    }

    pub(super) fn sample() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields = parse_stat(&stat)?;
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as i64;
        let boot_time = boot_time_seconds()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        let max_fds = match rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            Some(n) => i64::try_from(n).ok(),
            None => None,
        };
        Some(Sample {
            cpu_seconds: (fields.utime + fields.stime) as f64 / ticks,
            resident_bytes: fields.rss_pages * page,
            virtual_bytes: fields.vsize,
            open_fds,
            max_fds,
            threads: fields.threads,
            start_time_seconds: boot_time + fields.start_ticks as f64 / ticks,
        })
    }

    #[derive(Debug, PartialEq)]
    pub(super) struct StatFields {
        pub utime: u64,
        pub stime: u64,
        pub threads: i64,
        pub start_ticks: u64,
        pub vsize: i64,
        pub rss_pages: i64,
    }

    /// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself contain
    /// spaces and parentheses, so fields are counted from the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<StatFields> {
        let after = &stat[stat.rfind(')')? + 1..];
        // `after` starts at field 3 (state); field n is at index n - 3.
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3).copied();
        Some(StatFields {
            utime: field(14)?.parse().ok()?,
            stime: field(15)?.parse().ok()?,
            threads: field(20)?.parse().ok()?,
            start_ticks: field(22)?.parse().ok()?,
            vsize: field(23)?.parse().ok()?,
            rss_pages: field(24)?.parse().ok()?,
        })
    }

    fn boot_time_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_are_counted_after_the_command_name() {
            let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615";
            assert_eq!(
                parse_stat(line),
                Some(StatFields {
                    utime: 250,
                    stime: 50,
                    threads: 7,
                    start_ticks: 123456,
                    vsize: 104857600,
                    rss_pages: 2560
                })
            );
            assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
        }

        #[test]
        fn a_sample_of_this_process_is_plausible() {
            let s = sample().expect("/proc is readable on Linux");
            assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
            assert!(s.threads >= 1 && s.open_fds >= 3);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(
                s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0 * 365.0
            );
        }
    }
}

/// A per-shard counter family: name, help, and how to read it from a shard's stats.
type ShardCounter = (&'static str, &'static str, fn(&sfu::ShardStats) -> u64);

/// Counters of the SFU shards, read at each scrape.
pub struct SfuCollector(pub sfu::Sfu);

impl std::fmt::Debug for SfuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SfuCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SfuCollectorShard {
    shard: String,
}

impl Collector for SfuCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shards = self.0.shards();
        let running = shards.iter().filter(|s| s.running).count() as i64;
        encode_one(
            &mut encoder,
            "sfu_shards_running",
            "SFU shards whose thread is serving its socket",
            &ConstGauge::new(running),
        )?;
        encode_one(
            &mut encoder,
            "sfu_events_dropped",
            "SFU events lost to a listener whose queue was full",
            &ConstCounter::new(self.0.events_dropped()),
        )?;
        let families: [ShardCounter; 18] = [
            (
                "sfu_shard_packets_received",
                "UDP datagrams read by a shard",
                |s| s.packets_received,
            ),
            (
                "sfu_shard_bytes_received",
                "Bytes of UDP datagrams read by a shard",
                |s| s.bytes_received,
            ),
            (
                "sfu_shard_rtp_received",
                "RTP packets a shard received from publishers (decrypted)",
                |s| s.rtp_received,
            ),
            (
                "sfu_shard_rtp_forwarded",
                "RTP packets a shard sent to subscribers",
                |s| s.rtp_forwarded,
            ),
            (
                "sfu_shard_rtp_piped",
                "RTP packets a shard handed to other shards of their room",
                |s| s.rtp_piped,
            ),
            (
                "sfu_shard_rtp_refused",
                "RTP packets a shard dropped unrouted: from peers without the right to publish",
                |s| s.rtp_refused,
            ),
            (
                "sfu_shard_forward_errors",
                "RTP packets a shard chose to forward but could not write (too large, or not sealable)",
                |s| s.forward_errors,
            ),
            (
                "sfu_shard_rooms_closed_by_fault",
                "Rooms a shard closed because their code panicked",
                |s| s.rooms_closed_by_fault,
            ),
            (
                "sfu_shard_packets_dropped_unknown_peer",
                "Datagrams a shard dropped because they matched no peer",
                |s| s.packets_dropped_unknown_peer,
            ),
            (
                "sfu_shard_rtp_paused",
                "RTP packets a shard dropped because the server paused their track (moderation)",
                |s| s.rtp_paused,
            ),
            (
                "sfu_shard_rtp_retransmitted",
                "RTP packets a shard sent again after a subscriber reported them lost (NACK)",
                |s| s.rtp_retransmitted,
            ),
            (
                "sfu_shard_nacks_unanswered",
                "Packets subscribers reported lost that a shard no longer held",
                |s| s.nacks_unanswered,
            ),
            (
                "sfu_shard_commands_refused",
                "Requests to a shard refused because its queue was full",
                |s| s.commands_refused,
            ),
            (
                "sfu_shard_layer_switches",
                "Simulcast layer changes of a shard's consumers (up, down, paused, resumed)",
                |s| s.layer_switches,
            ),
            (
                "sfu_shard_sender_reports",
                "RTCP sender reports a shard sent for the streams it forwards",
                |s| s.sender_reports,
            ),
            (
                "sfu_shard_media_send_dropped",
                "Forwarded packets a shard dropped because its socket's send buffer was full",
                |s| s.media_send_dropped,
            ),
            (
                "sfu_shard_media_send_calls",
                "sendmmsg calls a shard made for forwarded media",
                |s| s.media_send_calls,
            ),
            (
                "sfu_shard_pipe_batches_dropped",
                "Batches of piped packets a shard dropped because the receiving shard's queue was full",
                |s| s.pipe_batches_dropped,
            ),
        ];
        for (name, help, read) in families {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &shards {
                let labels = SfuCollectorShard {
                    shard: s.index.to_string(),
                };
                ConstCounter::new(read(&s.stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        // Each subscriber's estimate and the layers of its video (from the shards' last review).
        let subscribers = self.0.subscribers();
        let mut family = encoder.encode_descriptor(
            "sfu_subscriber_estimate_bps",
            "Bandwidth the SFU estimates towards a subscriber (once its feedback arrived)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for s in subscribers.iter() {
            if let Some(bps) = s.estimate_bps {
                let labels = SfuCollectorPeer {
                    peer: s.peer.to_string(),
                };
                ConstGauge::new(bps as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "sfu_subscriber_video",
            "Video tracks a subscriber receives, by simulcast layer (q, h, f; none: paused or starting)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for s in subscribers.iter() {
            let counts = [
                ("q", s.video_on_layer[0]),
                ("h", s.video_on_layer[1]),
                ("f", s.video_on_layer[2]),
                ("none", s.video_without_layer),
            ];
            for (layer, count) in counts {
                let labels = SfuCollectorLayer {
                    peer: s.peer.to_string(),
                    layer: layer.to_owned(),
                };
                ConstGauge::new(i64::from(count)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SfuCollectorPeer {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SfuCollectorLayer {
    peer: String,
    layer: String,
}

/// Size of the database pool, read at each scrape.
#[derive(Clone)]
pub struct DbPoolCollector(pub schema::Db);

impl std::fmt::Debug for DbPoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbPoolCollector")
    }
}

impl Collector for DbPoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (open, max) = self.0.pool_status();
        encode_one(
            &mut encoder,
            "db_pool_connections",
            "Database connections open in the pool",
            &ConstGauge::new(open as i64),
        )?;
        encode_one(
            &mut encoder,
            "db_pool_max_connections",
            "Most connections the pool may open",
            &ConstGauge::new(max as i64),
        )?;
        Ok(())
    }
}

/// The session hub's counters, read at each scrape.
#[derive(Clone)]
pub struct LiveCollector(pub crate::live::Live);

impl std::fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCollector")
    }
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        encode_one(
            &mut encoder,
            "live_sessions",
            "Live sessions with someone in them on this node",
            &ConstGauge::new(s.sessions as i64),
        )?;
        let counters: [(&str, &str, u64); 6] = [
            (
                "live_room_events",
                "Room events numbered (joins, leaves, roles, tracks, mutes, speaker, end)",
                s.room_events,
            ),
            (
                "live_lagged_resyncs",
                "Snapshots sent to subscribers that fell behind their session's event log",
                s.lagged_resyncs,
            ),
            (
                "live_resumes",
                "Resubscriptions (since) served from the session's event log",
                s.resumes,
            ),
            (
                "live_resumes_unavailable",
                "Resubscriptions (since) the event log could not serve: a snapshot instead",
                s.resumes_unavailable,
            ),
            (
                "live_directed_superseded",
                "Undelivered directed events replaced by newer ones (server offers, layer changes)",
                s.directed_superseded,
            ),
            (
                "live_directed_dropped",
                "Directed events dropped from a full mailbox (layer changes only)",
                s.directed_dropped,
            ),
        ];
        for (name, help, value) in counters {
            encode_one(&mut encoder, name, help, &ConstCounter::new(value))?;
        }
        Ok(())
    }
}
