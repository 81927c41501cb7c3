//! The gateway's one typed configuration.
//!
//! Layers, later ones winning: built-in defaults, then an optional TOML file (`--config`), then
//! environment variables `CLASSROOM_<SECTION>_<KEY>` (for example `CLASSROOM_HTTP_ADDR` sets
//! `http.addr`). Loading validates every value; an error names the key, the value, where it came from
//! and what is allowed. This module never exits the process: `main` decides that.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that configure the gateway.
pub const ENV_PREFIX: &str = "CLASSROOM_";

/// Most shards the SFU may run: well above the cores of any machine this runs on, low enough that a
/// typo (`sfu.shards = 1000`) is caught.
pub const MAX_SHARDS: u16 = 256;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    pub http: HttpConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Object storage for recordings.
    pub storage: StorageConfig,
    /// Recording.
    pub recording: RecordingConfig,
    /// The media plane.
    pub sfu: SfuSection,
    /// Logging.
    pub log: LogConfig,
    /// Sign-in and sessions.
    pub auth: AuthConfig,
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a browser session lasts, in hours.
    pub session_ttl_hours: u32,
    /// Sign-in attempts per minute from one IP address.
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-in attempts per minute for one account from one IP address.
    pub sign_in_per_account_per_minute: u32,
    /// Sign-in attempts per minute for one account from all IP addresses together.
    pub sign_in_per_account_all_ips_per_minute: u32,
    /// Sign-ups per minute from one IP address.
    pub sign_up_per_ip_per_minute: u32,
    /// Chat messages per minute from one user (and, apart, questions asked), a quarter of them
    /// back to back.
    pub chat_per_user_per_minute: u32,
    /// OpenID Connect providers by name (`[auth.oidc.<name>]` in the file).
    pub oidc: std::collections::BTreeMap<String, OidcProviderConfig>,
}

/// `[auth.oidc.<name>]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Issuer URL; its `/.well-known/openid-configuration` is fetched on first use.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Button label in the app; the provider's name when absent.
    pub display_name: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_hours: 720,
            sign_in_per_ip_per_minute: 30,
            sign_in_per_account_per_minute: 5,
            sign_in_per_account_all_ips_per_minute: 50,
            sign_up_per_ip_per_minute: 10,
            chat_per_user_per_minute: 20,
            oidc: Default::default(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port the HTTP server listens on (port 0: any free port).
    pub addr: SocketAddr,
    /// Directory with the built frontend (index.html, JS, wasm), served with SPA fallback.
    pub static_dir: PathBuf,
    /// URL browsers use to reach the gateway (for OIDC redirects and Secure cookies); empty means
    /// `http://<http.addr>`.
    pub public_url: String,
    /// How long a new GraphQL websocket may take to send `connection_init`, in milliseconds;
    /// then it is closed (4408).
    pub ws_init_timeout_ms: u64,
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://<path>`.
    pub url: String,
    /// Most connections the pool opens.
    pub max_connections: usize,
}

/// `[storage]`: where finished recordings are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (a directory, the default) or `s3` (an S3-compatible service).
    pub kind: StorageKind,
    /// Directory of the local object store.
    pub path: PathBuf,
    /// S3: the bucket.
    pub bucket: String,
    /// S3: the endpoint URL (empty: AWS itself).
    pub endpoint: String,
    /// S3: the region.
    pub region: String,
    /// S3: credentials (empty: from the environment, `AWS_ACCESS_KEY_ID` and the rest).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// S3: allow a plain `http://` endpoint (a server on the same machine).
    pub allow_http: bool,
}

/// The kind of object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Local,
    S3,
}

/// `[recording]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Where recordings are written while they last and until they are stored.
    pub spool_dir: PathBuf,
    /// The media node's upload journal (SQLite).
    pub journal: PathBuf,
    /// The picture of a recording.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Video bitrate, in kbit/s.
    pub video_kbps: u32,
    /// Key of the playback URLs' signatures (every node of a deployment shares it). Empty: a
    /// random key per process (URLs then stop working when it restarts).
    pub url_secret: String,
    /// How long a playback URL works, in seconds.
    pub url_ttl_seconds: u64,
    /// Upload attempts before a recording is given up as failed.
    pub upload_max_attempts: u32,
    /// First wait before an upload is tried again, in milliseconds (it doubles each time).
    pub upload_retry_ms: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            spool_dir: PathBuf::from("./data/spool"),
            journal: PathBuf::from("./data/recording-jobs.sqlite"),
            width: 1280,
            height: 720,
            fps: 30,
            video_kbps: 2500,
            url_secret: String::new(),
            url_ttl_seconds: 3600,
            upload_max_attempts: 12,
            upload_retry_ms: 2000,
        }
    }
}

/// `[sfu]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SfuSection {
    /// Number of shards; 0 means one per CPU core.
    pub shards: u16,
    /// Address the shards' UDP sockets bind to.
    pub bind_address: IpAddr,
    /// First UDP port: shard `i` listens on `udp_port_start + i` (0: any free ports).
    pub udp_port_start: u16,
    /// Address announced in ICE candidates: the machine's public address in a real deployment.
    pub ice_address: IpAddr,
    /// STUN/TURN server URLs handed to browsers, comma-separated (empty: none needed).
    pub ice_servers: String,
}

impl SfuSection {
    /// The ICE server URLs, one per comma-separated entry.
    pub fn ice_server_urls(&self) -> Vec<String> {
        self.ice_servers
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// Filter in `tracing` syntax: a level, or `target=level` directives separated by commas.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            static_dir: PathBuf::from("frontend/dist"),
            public_url: String::new(),
            ws_init_timeout_ms: 10_000,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://./data/classroom.db".into(),
            max_connections: 8,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Local,
            path: PathBuf::from("./data/objects"),
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
        }
    }
}

impl Default for SfuSection {
    fn default() -> Self {
        SfuSection {
            shards: 0,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port_start: 50000,
            ice_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ice_servers: String::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// One configuration key, for `--help` and the README.
pub struct KeyDoc {
    /// Dotted key, as in the TOML file.
    pub key: &'static str,
    /// Default, as written in TOML.
    pub default: &'static str,
    /// What it does and what is allowed.
    pub help: &'static str,
}

impl KeyDoc {
    /// The environment variable that sets this key.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.key.replace('.', "_").to_uppercase())
    }
}

/// Every key, in file order. A test checks this list against the defaults and the README.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "http.addr",
        default: "127.0.0.1:8080",
        help: "HTTP listen address (ip:port; port 0 picks a free port)",
    },
    KeyDoc {
        key: "http.static_dir",
        default: "frontend/dist",
        help: "directory of the built frontend, served with SPA fallback",
    },
    KeyDoc {
        key: "http.public_url",
        default: "",
        help: "URL browsers reach the gateway at (https:// makes cookies Secure); empty = http://<http.addr>",
    },
    KeyDoc {
        key: "http.ws_init_timeout_ms",
        default: "10000",
        help: "milliseconds a GraphQL websocket has to send connection_init before it is closed (100-600000)",
    },
    KeyDoc {
        key: "database.url",
        default: "sqlite://./data/classroom.db",
        help: "database URL: sqlite://<path>",
    },
    KeyDoc {
        key: "database.max_connections",
        default: "8",
        help: "most pooled database connections (1-1024)",
    },
    KeyDoc {
        key: "storage.path",
        default: "./data/objects",
        help: "directory of the local object store",
    },
    KeyDoc {
        key: "storage.kind",
        default: "local",
        help: "object store of recordings: local (a directory) or s3 (S3-compatible)",
    },
    KeyDoc {
        key: "storage.bucket",
        default: "",
        help: "s3: the bucket",
    },
    KeyDoc {
        key: "storage.endpoint",
        default: "",
        help: "s3: endpoint URL (empty = AWS)",
    },
    KeyDoc {
        key: "storage.region",
        default: "us-east-1",
        help: "s3: region",
    },
    KeyDoc {
        key: "storage.access_key_id",
        default: "",
        help: "s3: access key id (empty = from the environment)",
    },
    KeyDoc {
        key: "storage.secret_access_key",
        default: "",
        help: "s3: secret access key (empty = from the environment)",
    },
    KeyDoc {
        key: "storage.allow_http",
        default: "false",
        help: "s3: allow a plain http:// endpoint",
    },
    KeyDoc {
        key: "recording.spool_dir",
        default: "./data/spool",
        help: "directory recordings are written to until they are stored",
    },
    KeyDoc {
        key: "recording.journal",
        default: "./data/recording-jobs.sqlite",
        help: "this media node's upload journal (SQLite file)",
    },
    KeyDoc {
        key: "recording.width",
        default: "1280",
        help: "recorded picture width (160-3840, even)",
    },
    KeyDoc {
        key: "recording.height",
        default: "720",
        help: "recorded picture height (120-2160, even)",
    },
    KeyDoc {
        key: "recording.fps",
        default: "30",
        help: "recorded frames per second (1-60)",
    },
    KeyDoc {
        key: "recording.video_kbps",
        default: "2500",
        help: "recorded video bitrate in kbit/s (100-20000)",
    },
    KeyDoc {
        key: "recording.url_secret",
        default: "",
        help: "key signing playback URLs, shared by all nodes (empty = random per process)",
    },
    KeyDoc {
        key: "recording.url_ttl_seconds",
        default: "3600",
        help: "how long a playback URL works (60-604800)",
    },
    KeyDoc {
        key: "recording.upload_max_attempts",
        default: "12",
        help: "upload attempts before a recording fails (1-100)",
    },
    KeyDoc {
        key: "recording.upload_retry_ms",
        default: "2000",
        help: "first wait before an upload is retried, doubling each time (10-600000)",
    },
    KeyDoc {
        key: "sfu.shards",
        default: "0",
        help: "SFU shards, one thread and UDP port each; 0 = one per CPU core (0-256)",
    },
    KeyDoc {
        key: "sfu.bind_address",
        default: "127.0.0.1",
        help: "IP address the shards' UDP sockets bind to",
    },
    KeyDoc {
        key: "sfu.udp_port_start",
        default: "50000",
        help: "UDP port of shard 0; shard i uses start+i (0 = any free; else 1024-65535)",
    },
    KeyDoc {
        key: "sfu.ice_address",
        default: "127.0.0.1",
        help: "IP address announced in ICE candidates (the public address when deployed)",
    },
    KeyDoc {
        key: "sfu.ice_servers",
        default: "",
        help: "STUN/TURN URLs for browsers, comma-separated (stun:, turn: or turns:); empty = none",
    },
    KeyDoc {
        key: "log.format",
        default: "text",
        help: "log format: text or json",
    },
    KeyDoc {
        key: "log.level",
        default: "info",
        help: "log filter: a level (error, warn, info, debug, trace) or target=level,...",
    },
    KeyDoc {
        key: "auth.session_ttl_hours",
        default: "720",
        help: "lifetime of a browser session in hours (1-8760)",
    },
    KeyDoc {
        key: "auth.sign_in_per_ip_per_minute",
        default: "30",
        help: "sign-in attempts allowed per minute from one IP (1-100000)",
    },
    KeyDoc {
        key: "auth.sign_in_per_account_per_minute",
        default: "5",
        help: "sign-in attempts allowed per minute for one account from one IP (1-100000)",
    },
    KeyDoc {
        key: "auth.sign_in_per_account_all_ips_per_minute",
        default: "50",
        help: "sign-in attempts allowed per minute for one account from all IPs together (1-100000)",
    },
    KeyDoc {
        key: "auth.sign_up_per_ip_per_minute",
        default: "10",
        help: "sign-ups allowed per minute from one IP (1-100000)",
    },
    KeyDoc {
        key: "auth.chat_per_user_per_minute",
        default: "20",
        help: "chat messages (and, counted apart, questions) allowed per minute from one user, a quarter of them back to back (1-100000)",
    },
];

/// Keys that are maps of their own (`[auth.oidc.<name>]`), documented apart from [`KEYS`].
pub const MAP_KEYS: &[&str] = &["auth.oidc"];

/// Help text listing every key, its environment variable and default.
pub fn help_table() -> String {
    let mut out = String::from(
        "Configuration (defaults, then --config FILE (TOML), then environment variables):\n",
    );
    for k in KEYS {
        out.push_str(&format!(
            "  {:<26} {:<36} default {}\n      {}\n",
            k.key,
            k.env_var(),
            k.default,
            k.help
        ));
    }
    out
}

/// A configuration that cannot be used. `Display` names the key, the value, its source and what is
/// allowed, one problem per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// One bad value.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key, or empty when the problem is the file itself.
    pub key: String,
    /// The offending value as given, when known.
    pub value: Option<String>,
    /// Where the value came from (file, environment variable).
    pub source: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "invalid configuration: ")?;
            if !p.key.is_empty() {
                write!(f, "`{}`", p.key)?;
            }
            if let Some(v) = &p.value {
                write!(f, " = {v:?}")?;
            }
            if let Some(s) = &p.source {
                write!(f, " (from {s})")?;
            }
            if p.key.is_empty() && p.value.is_none() && p.source.is_none() {
                write!(f, "{}", p.message)?;
            } else {
                write!(f, ": {}", p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError {
                    problems: vec![Problem {
                        key: String::new(),
                        value: None,
                        source: None,
                        message: format!(
                            "config file {} does not exist or is not a file",
                            path.display()
                        ),
                    }],
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // `CLASSROOM_SFU_UDP_PORT_START` -> `sfu.udp_port_start`: the section is the first word.
        let env = Env::prefixed(ENV_PREFIX)
            .ignore(&["config"])
            .map(|key| key.as_str().replacen('_', ".", 1).into());
        figment = figment.merge(env);
        let config: Config = figment.extract().map_err(|e| from_figment(&figment, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, value: String, message: String| {
            problems.push(Problem {
                key: key.into(),
                value: Some(value),
                source: None,
                message,
            })
        };
        if let Err(e) = schema::DatabaseLocation::parse(&self.database.url) {
            bad(
                "database.url",
                self.database.url.clone(),
                format!("{e}; for example sqlite://./data/classroom.db"),
            );
        }
        if !(1..=1024).contains(&self.database.max_connections) {
            bad(
                "database.max_connections",
                self.database.max_connections.to_string(),
                "allowed: 1 to 1024".into(),
            );
        }
        if self.sfu.shards > MAX_SHARDS {
            bad(
                "sfu.shards",
                self.sfu.shards.to_string(),
                format!("allowed: 0 (one per CPU core) to {MAX_SHARDS}"),
            );
        }
        let start = self.sfu.udp_port_start;
        if start != 0 {
            let last = u32::from(start) + u32::from(self.sfu_shards()) - 1;
            if start < 1024 || last > u32::from(u16::MAX) {
                bad(
                    "sfu.udp_port_start",
                    start.to_string(),
                    format!(
                        "allowed: 0 (any free ports) or 1024 to {} so that all {} shard ports fit below 65536",
                        u32::from(u16::MAX) + 1 - u32::from(self.sfu_shards()),
                        self.sfu_shards()
                    ),
                );
            }
        }
        if self.sfu.ice_address.is_unspecified() {
            bad(
                "sfu.ice_address",
                self.sfu.ice_address.to_string(),
                "must be an address browsers can reach (not 0.0.0.0 or ::)".into(),
            );
        }
        for url in self.sfu.ice_server_urls() {
            if !["stun:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                bad(
                    "sfu.ice_servers",
                    self.sfu.ice_servers.clone(),
                    format!("{url:?} is not a stun:, turn: or turns: URL"),
                );
            }
        }
        if self.storage.path.as_os_str().is_empty() {
            bad(
                "storage.path",
                String::new(),
                "must be a directory path".into(),
            );
        }
        if self.storage.kind == StorageKind::S3 && self.storage.bucket.is_empty() {
            bad(
                "storage.bucket",
                String::new(),
                "must name the bucket when storage.kind is s3".into(),
            );
        }
        let r = &self.recording;
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 7] = [
            ("recording.width", r.width.into(), 160..=3840),
            ("recording.height", r.height.into(), 120..=2160),
            ("recording.fps", r.fps.into(), 1..=60),
            ("recording.video_kbps", r.video_kbps.into(), 100..=20_000),
            ("recording.url_ttl_seconds", r.url_ttl_seconds, 60..=604_800),
            (
                "recording.upload_max_attempts",
                r.upload_max_attempts.into(),
                1..=100,
            ),
            ("recording.upload_retry_ms", r.upload_retry_ms, 10..=600_000),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                bad(
                    key,
                    value.to_string(),
                    format!("allowed: {} to {}", range.start(), range.end()),
                );
            }
        }
        if !r.width.is_multiple_of(2) || !r.height.is_multiple_of(2) {
            bad(
                "recording.width",
                format!("{}x{}", r.width, r.height),
                "width and height must be even".into(),
            );
        }
        for (key, path) in [
            ("recording.spool_dir", &r.spool_dir),
            ("recording.journal", &r.journal),
        ] {
            if path.as_os_str().is_empty() {
                bad(key, String::new(), "must be a path".into());
            }
        }
        if self.http.static_dir.as_os_str().is_empty() {
            bad(
                "http.static_dir",
                String::new(),
                "must be a directory path".into(),
            );
        }
        let url = &self.http.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            bad(
                "http.public_url",
                self.http.public_url.clone(),
                "must start with http:// or https://".into(),
            );
        }
        if !(100..=600_000).contains(&self.http.ws_init_timeout_ms) {
            bad(
                "http.ws_init_timeout_ms",
                self.http.ws_init_timeout_ms.to_string(),
                "allowed: 100 to 600000".into(),
            );
        }
        if !(1..=8760).contains(&self.auth.session_ttl_hours) {
            bad(
                "auth.session_ttl_hours",
                self.auth.session_ttl_hours.to_string(),
                "allowed: 1 to 8760".into(),
            );
        }
        for (key, v) in [
            (
                "auth.sign_in_per_ip_per_minute",
                self.auth.sign_in_per_ip_per_minute,
            ),
            (
                "auth.sign_in_per_account_per_minute",
                self.auth.sign_in_per_account_per_minute,
            ),
            (
                "auth.sign_in_per_account_all_ips_per_minute",
                self.auth.sign_in_per_account_all_ips_per_minute,
            ),
            (
                "auth.sign_up_per_ip_per_minute",
                self.auth.sign_up_per_ip_per_minute,
            ),
            (
                "auth.chat_per_user_per_minute",
                self.auth.chat_per_user_per_minute,
            ),
        ] {
            if !(1..=100_000).contains(&v) {
                bad(key, v.to_string(), "allowed: 1 to 100000".into());
            }
        }
        for (name, p) in &self.auth.oidc {
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                bad(
                    &format!("auth.oidc.{name}"),
                    name.clone(),
                    "provider names use letters, digits, - and _".into(),
                );
            }
            if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
                bad(
                    &format!("auth.oidc.{name}.issuer"),
                    p.issuer.clone(),
                    "must be an http(s) URL".into(),
                );
            }
            if p.client_id.is_empty() {
                bad(
                    &format!("auth.oidc.{name}.client_id"),
                    String::new(),
                    "must not be empty".into(),
                );
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            bad(
                "log.level",
                self.log.level.clone(),
                format!("{e}; allowed: error, warn, info, debug, trace or target=level,..."),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The URL browsers reach the gateway at, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.http.public_url.is_empty() {
            format!("http://{}", self.http.addr)
        } else {
            self.http.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// Whether cookies get the `Secure` attribute (served over https).
    pub fn cookies_secure(&self) -> bool {
        self.http.public_url.starts_with("https://")
    }

    /// Shards to run: `sfu.shards`, or one per CPU core when it is 0.
    pub fn sfu_shards(&self) -> u16 {
        if self.sfu.shards > 0 {
            return self.sfu.shards;
        }
        std::thread::available_parallelism()
            .map(|n| u16::try_from(n.get()).unwrap_or(MAX_SHARDS).min(MAX_SHARDS))
            .unwrap_or(1)
    }
}

fn from_figment(figment: &Figment, error: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let problems = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| {
                match &m.source {
                    Some(figment::Source::File(path)) => format!("file {}", path.display()),
                    // The environment provider's own interpolation shows the mapped key; name the
                    // variable the user actually set.
                    _ if m.name.contains("environment") && !e.path.is_empty() => {
                        format!(
                            "environment variable {ENV_PREFIX}{}",
                            e.path.join("_").to_uppercase()
                        )
                    }
                    _ => m.name.to_string(),
                }
            });
            let value = if key.is_empty() {
                None
            } else {
                figment
                    .find_value(&key)
                    .ok()
                    .map(|v| match v.into_string() {
                        Some(s) => s,
                        None => figment
                            .find_value(&key)
                            .map(|v| format!("{v:?}"))
                            .unwrap_or_default(),
                    })
            };
            let message = match &e.kind {
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                    format!("expected {}", allowed_for(&key).unwrap_or(expected))
                }
                Kind::UnknownField(field, allowed) => {
                    let section = if key.ends_with(field.as_str()) {
                        key.trim_end_matches(field.as_str())
                    } else {
                        ""
                    };
                    format!(
                        "unknown key `{section}{field}`; allowed here: {}",
                        allowed.join(", ")
                    )
                }
                Kind::UnknownVariant(_, allowed) => format!("allowed: {}", allowed.join(", ")),
                Kind::Message(m) => {
                    allowed_for(&key).map_or_else(|| m.clone(), |a| format!("{m}; expected {a}"))
                }
                other => other.to_string(),
            };
            Problem {
                key,
                value,
                source,
                message,
            }
        })
        .collect();
    ConfigError { problems }
}

/// Plain words for the types serde names tersely.
fn allowed_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "http.addr" => "an ip:port such as 127.0.0.1:8080",
        "sfu.bind_address" | "sfu.ice_address" => "an IP address such as 127.0.0.1",
        "sfu.shards" => "a whole number from 0 (one per CPU core) to 256",
        "sfu.udp_port_start" => "a port number: 0 (any free) or 1024 to 65535",
        "database.max_connections" => "a whole number from 1 to 1024",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn load_with_vars(file: Option<&Path>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        // The jail serialises tests that touch the process environment and restores it afterwards.
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            result = Some(Config::load(file));
            Ok(())
        });
        result.expect("the jail ran the closure")
    }

    #[test]
    fn defaults_are_valid_and_match_the_documented_table() {
        let config = load_with_vars(None, &[]).unwrap();
        assert_eq!(config, Config::default());
        // Every documented key exists with the documented default, and every key is documented.
        use figment::Provider;
        let value = figment::Figment::from(Serialized::defaults(Config::default()));
        for k in KEYS {
            let v = value
                .find_value(k.key)
                .unwrap_or_else(|_| panic!("documented key {} does not exist", k.key));
            let shown = v.clone().into_string().unwrap_or_else(|| match v {
                figment::value::Value::Num(_, n) => {
                    n.to_u128().map(|n| n.to_string()).unwrap_or_default()
                }
                figment::value::Value::Bool(_, b) => b.to_string(),
                other => format!("{other:?}"),
            });
            assert_eq!(shown, k.default, "default of {}", k.key);
        }
        let dict = value
            .data()
            .unwrap()
            .remove(&figment::Profile::Default)
            .unwrap();
        let count: usize = dict
            .values()
            .map(|section| section.as_dict().map_or(1, |d| d.len()))
            .sum();
        assert_eq!(
            count,
            KEYS.len() + MAP_KEYS.len(),
            "every key of Config is documented in KEYS"
        );
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        for k in KEYS {
            let row = format!("| `{}` | `{}` | `{}` |", k.key, k.env_var(), k.default);
            assert!(
                readme.contains(&row),
                "README's configuration table lacks: {row}"
            );
        }
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("classroom.toml");
        std::fs::write(
            &file,
            "[http]\naddr = \"127.0.0.1:9000\"\n[sfu]\nshards = 3\nudp_port_start = 40000\n",
        )
        .unwrap();
        let config = load_with_vars(
            Some(&file),
            &[
                ("CLASSROOM_SFU_UDP_PORT_START", "41000"),
                ("CLASSROOM_LOG_FORMAT", "json"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.http.addr,
            "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(config.sfu.shards, 3);
        assert_eq!(
            config.sfu.udp_port_start, 41000,
            "environment wins over the file"
        );
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.database, DatabaseConfig::default());
    }

    #[test]
    fn a_non_number_port_names_key_value_source_and_what_is_allowed() {
        let err = load_with_vars(None, &[("CLASSROOM_SFU_UDP_PORT_START", "fifty")]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.key, "sfu.udp_port_start");
        assert_eq!(p.value.as_deref(), Some("fifty"));
        assert!(
            p.source
                .as_deref()
                .unwrap()
                .contains("CLASSROOM_SFU_UDP_PORT_START"),
            "{err}"
        );
        assert!(p.message.contains("1024 to 65535"), "{err}");
    }

    #[test]
    fn semantic_limits_are_checked() {
        let err = load_with_vars(
            None,
            &[
                ("CLASSROOM_SFU_SHARDS", "300"),
                ("CLASSROOM_SFU_UDP_PORT_START", "80"),
            ],
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["sfu.shards", "sfu.udp_port_start"], "{err}");
        assert_eq!(err.problems[0].value.as_deref(), Some("300"));
        assert!(
            err.problems[0]
                .message
                .contains("0 (one per CPU core) to 256"),
            "{err}"
        );

        let mut config = Config::default();
        config.sfu.shards = 4;
        config.sfu.udp_port_start = 65534;
        let err = config.validate().unwrap_err();
        assert!(err.problems[0].message.contains("1024 to 65532"), "{err}");
    }

    #[test]
    fn unknown_keys_and_variants_list_the_allowed_ones() {
        let err = load_with_vars(None, &[("CLASSROOM_LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.problems[0].key, "log.format");
        assert_eq!(err.problems[0].value.as_deref(), Some("xml"));
        assert!(err.problems[0].message.contains("text, json"), "{err}");

        let err = load_with_vars(None, &[("CLASSROOM_HTTP_PORT", "80")]).unwrap_err();
        assert!(
            err.problems[0].message.contains("unknown key `http.port`"),
            "{err}"
        );
        assert!(
            err.problems[0].message.contains("addr, static_dir"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_in_a_file_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[http]\naddr = \"localhost\"\n").unwrap();
        let err = load_with_vars(Some(&file), &[]).unwrap_err();
        let p = &err.problems[0];
        assert_eq!(p.key, "http.addr");
        assert_eq!(p.value.as_deref(), Some("localhost"));
        assert!(p.source.as_deref().unwrap().contains("bad.toml"), "{err}");
        assert!(p.message.contains("ip:port"), "{err}");

        let missing = dir.path().join("missing.toml");
        let err = load_with_vars(Some(&missing), &[]).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn a_bad_log_filter_and_database_url_are_refused() {
        let err = load_with_vars(
            None,
            &[
                ("CLASSROOM_LOG_LEVEL", "info,=nonsense=x"),
                ("CLASSROOM_DATABASE_URL", "mysql://x"),
            ],
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["database.url", "log.level"], "{err}");
    }
}
