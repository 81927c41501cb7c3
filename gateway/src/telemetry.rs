//! Logging: `tracing` to stdout, human-readable text (colours on a terminal) or JSON lines.
//!
//! webrtc-rs logs warnings for every connection that are noise for an operator; the default filter
//! keeps its crates at `error` unless the configured filter names them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};

/// Crates whose per-connection warnings are noise at the default level.
const QUIET_CRATES: &[&str] = &[
    "rtc_dtls", "rtc_ice", "rtc_sctp", "rtc_srtp", "rtc", "webrtc",
];

/// The filter for a configured level: the level, plus quiet webrtc-rs crates unless named.
pub fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut directives = level.to_owned();
    for krate in QUIET_CRATES {
        if !level.contains(krate) {
            directives.push_str(&format!(",{krate}=error"));
        }
    }
    EnvFilter::builder().parse(directives)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &LogConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = filter(&config.level)?;
    let registry = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init()?,
    }
    Ok(())
}
