//! The `gateway` binary: loads the configuration, sets up logging, runs until SIGINT or SIGTERM.
//!
//! Exit codes: 0 after a clean shutdown, 1 when starting failed, 2 for a bad configuration or
//! command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gateway::config::{self, Config};

/// How long in-flight requests may run after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Classroom gateway: serves the app, the API and health/metrics, and runs the SFU shards.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = config::help_table(), after_help = "Run with --help to list every configuration key.")]
struct Cli {
    /// TOML configuration file (keys as listed below, in [sections]).
    #[arg(long, value_name = "FILE", env = "CLASSROOM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Print the GraphQL schema (SDL) and exit.
    PrintSchema,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if matches!(cli.command, Some(Command::PrintSchema)) {
        print!("{}", gateway::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("Run `gateway --help` to list every key and what it allows.");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gateway::telemetry::init(&config.log) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match gateway::start(config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutdown requested");
        running.stop(SHUTDOWN_GRACE).await;
        ExitCode::SUCCESS
    })
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM and says which arrived.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}
