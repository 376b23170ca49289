//! `notesuite`: parse the command line, start telemetry, run, flush, and exit.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use notesuite::cli::Command;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = notesuite::cli::Cli::parse();
    match &cli.command {
        Command::Health(config) => {
            return notesuite::run_client("health", notesuite::health::run(config));
        }
        Command::Check(config) => {
            return notesuite::run_client("check", notesuite::check::run(config));
        }
        _ => {}
    }
    let runtime = match cli.runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("notesuite: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        // Inside the runtime: the OTLP exporter connects with tonic.
        let telemetry = match telemetry::init(&cli.telemetry, cli.command.service_name()) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("notesuite: {error}");
                return Err(());
            }
        };
        let outcome = notesuite::run(cli, telemetry.registry()).await;
        if let Err(error) = &outcome {
            tracing::error!(error = format!("{error:#}"), "notesuite failed");
        }
        // Every exit path, the drain included, flushes what the exporters still hold.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        outcome.map_err(drop)
    });
    // Blocking work still running (a password hash) must not hold the exit hostage.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    }
}
