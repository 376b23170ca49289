//! Telemetry for every notesuite process: `tracing` logs as JSON lines (for machines) or
//! pretty text (for a terminal), filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log events are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Pretty text when stderr is a terminal, JSON lines otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Pretty,
}

/// Telemetry settings shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "NOTESUITE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps telemetry alive; dropping it flushes whatever is buffered.
#[derive(Debug)]
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber. Call once, from `main`, before anything logs.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new("info"),
    };
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?;
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()?;
    }
    Ok(TelemetryGuard { _private: () })
}
