//! Telemetry for every notesuite process: `tracing` logs (JSON lines carrying `trace_id` and
//! `span_id`, or pretty text), OpenTelemetry traces and metrics exported over OTLP when the
//! standard `OTEL_*` variables name an endpoint, Prometheus text at `/metrics`, and the tower
//! layers that give every gRPC call (served or made) a span and its metrics.
//!
//! Configuration is the OpenTelemetry standard: `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
//! `_TRACES_`/`_METRICS_` variants) turns export on, `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` describe the process, `OTEL_TRACES_SAMPLER(_ARG)` samples,
//! `OTEL_BSP_*` and `OTEL_METRIC_EXPORT_INTERVAL` tune the exporters. Without an endpoint
//! nothing is exported, but every call still gets a trace id for its logs and errors.

mod admission;
mod certificates;
mod grpc;
mod logs;
mod methods;
mod metrics_endpoint;
mod pool;

use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::{Layer as _, fmt, prelude::*};

pub use admission::observe_admission_limit;
pub use certificates::observe_certificate_expiry;
pub use grpc::{
    ClientLayer, ClientTelemetry, RPC_TELEMETRY_ENV, ServerLayer, ServerTelemetry,
    TRACE_HEALTH_CHECKS_ENV,
};
pub use methods::{Method, MethodTable};
pub use metrics_endpoint::serve_metrics;
pub use pool::PoolMetrics;

/// Instrumentation scope of everything notesuite records.
pub const SCOPE: &str = "notesuite";

/// How log events are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Pretty text when stderr is a terminal, JSON lines otherwise.
    Auto,
    /// One JSON object per line, with `trace_id` and `span_id` inside a call.
    Json,
    /// Human-readable text.
    Pretty,
}

/// Telemetry settings shared by every subcommand. Traces and metrics export follow the
/// standard `OTEL_*` environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, env = "NOTESUITE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Address of the admin HTTP endpoint serving `/metrics` (Prometheus text), or `off`.
    /// Default: port 9464 on all interfaces (`up`: on its `--host`).
    #[arg(long, global = true, env = "NOTESUITE_METRICS_LISTEN", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<MetricsListen>,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(std::net::SocketAddr),
}

/// The port OpenTelemetry's Prometheus exporters use by convention.
pub const DEFAULT_METRICS_PORT: u16 = 9464;

fn parse_metrics_listen(raw: &str) -> Result<MetricsListen, String> {
    if raw == "off" {
        return Ok(MetricsListen::Off);
    }
    raw.parse()
        .map(MetricsListen::At)
        .map_err(|_| "must be HOST:PORT (an IP address) or off".to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot build the Prometheus exporter: {0}")]
    Prometheus(#[from] opentelemetry_sdk::error::OTelSdkError),
}

/// Keeps telemetry running. [`Telemetry::shutdown`] flushes what is buffered; call it on
/// every exit path, the drain included.
#[derive(Debug)]
#[must_use = "telemetry stops when the guard is dropped"]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

impl Telemetry {
    /// The Prometheus registry `/metrics` renders.
    pub fn registry(&self) -> prometheus::Registry {
        self.registry.clone()
    }

    /// Flushes and stops the exporters. Bounded: the SDK gives each export its timeout.
    pub fn shutdown(self) {
        if let Err(error) = self.tracer_provider.shutdown() {
            tracing::warn!(%error, "flushing traces failed");
        }
        if let Err(error) = self.meter_provider.shutdown() {
            tracing::warn!(%error, "flushing metrics failed");
        }
    }
}

/// Installs logs, traces and metrics for the process. Call once, from `main`, inside the
/// Tokio runtime (the OTLP exporter connects with tonic).
pub fn init(
    config: &TelemetryConfig,
    default_service_name: &'static str,
) -> Result<Telemetry, TelemetryError> {
    let resource = resource(default_service_name);
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

    let mut tracer_provider = SdkTracerProvider::builder().with_resource(resource.clone());
    if exporting("TRACES") {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        tracer_provider = tracer_provider.with_batch_exporter(exporter);
    } else {
        // Nothing records spans without an exporter, but ids are still minted (and parents
        // honoured), so logs and INTERNAL errors carry a trace id all the same.
        tracer_provider = tracer_provider.with_sampler(Sampler::AlwaysOff);
    }
    let tracer_provider = tracer_provider.build();

    let registry = prometheus::Registry::new();
    let prometheus_reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()?;
    let mut meter_provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(prometheus_reader);
    if exporting("METRICS") {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        meter_provider = meter_provider
            .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build());
    }
    let meter_provider = meter_provider.build();
    opentelemetry::global::set_meter_provider(meter_provider.clone());

    let log_filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new("info"),
    };
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let log_layer = if json {
        fmt::layer()
            .event_format(logs::JsonLines)
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    };
    // Spans follow their own filter: RUST_LOG=warn quiets the logs, not the traces. The
    // per-call spans are DEBUG, so that the log layer does not format them on every call.
    let trace_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer_provider.tracer(SCOPE))
        // Busy/idle timings cost two clock reads per poll of every call's future; thread and
        // code location attributes cost more than they tell about an RPC span.
        .with_tracked_inactivity(false)
        // Entering a span would also make its OpenTelemetry context current, on every poll of
        // every call; nothing here reads that context (propagation and log correlation ask
        // the span itself), so the push and pop are pure cost.
        .with_context_activation(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(
            Targets::new()
                .with_target("notesuite::grpc", LevelFilter::DEBUG)
                .with_default(LevelFilter::INFO),
        );
    tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init()?;

    Ok(Telemetry {
        tracer_provider,
        meter_provider,
        registry,
    })
}

/// Whether OTLP export of `signal` (`TRACES` or `METRICS`) is configured.
pub(crate) fn exporting(signal: &str) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled =
        std::env::var(format!("OTEL_{signal}_EXPORTER")).is_ok_and(|value| value == "none");
    !disabled
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
}

/// The process's resource: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), with `default_service_name` when neither names the service.
fn resource(default_service_name: &'static str) -> Resource {
    let named_by_environment = std::env::var("OTEL_SERVICE_NAME").is_ok()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    let builder = Resource::builder();
    if named_by_environment {
        builder.build()
    } else {
        builder.with_service_name(default_service_name).build()
    }
}

/// The trace id of the current span, as 32 hex digits, if there is one.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
