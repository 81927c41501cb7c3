//! `loadgen`: load generation for the classroom SFU through the product's own API. See
//! `loadgen --help` and [`benches::loadgen`].

use std::process::ExitCode;

use clap::Parser;

use benches::loadgen::run::{Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            result = run(args) => match result {
                Ok(outcome) if outcome.failed_joins == 0 => ExitCode::SUCCESS,
                Ok(outcome) => {
                    eprintln!("loadgen: {} participant(s) failed to join", outcome.failed_joins);
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("\nloadgen: error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            // Dropping the run stops a gateway it started (its guard).
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nloadgen: interrupted");
                ExitCode::from(130)
            }
        }
    });
    // Peer connections' background tasks need not finish.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
