//! `notesuite`: parse the command line, start telemetry, run, and exit.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = notesuite::cli::Cli::parse();
    let _telemetry = match telemetry::init(&cli.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("notesuite: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(notesuite::run(cli));
    // Blocking work still running (a password hash) must not hold the exit hostage.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "notesuite failed");
            ExitCode::FAILURE
        }
    }
}
