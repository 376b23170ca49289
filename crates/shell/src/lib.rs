//! The serving shell: what every notesuite server does the same way.
//!
//! A service hands over its tonic routes, its name and a readiness probe; the shell adds
//! health (`""`, the service's full name and `liveness`), server reflection v1 and v1alpha,
//! admission control, and the drain on shutdown. [`serve`] takes an already-bound listener and
//! a shutdown future, so tests bind port 0 and never sleep.

mod admission;
mod coalesce;
mod config;
mod connections;
mod deadline;
mod drain;
mod health;
#[cfg(feature = "testing")]
mod in_memory;
mod internal;
mod limit;
mod listen;
mod normalize;
mod reflection;
mod signal;
mod spawn;
mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

use std::future::Future;

use futures_util::StreamExt as _;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

pub use config::{ConcurrencyLimit, ServeConfig, TlsServeConfig};
pub use deadline::{GRPC_TIMEOUT, deadline_exceeded, parse_grpc_timeout};
pub use health::{LIVENESS, ReadinessProbe};
#[cfg(feature = "testing")]
pub use in_memory::{InMemory, spawn_in_memory};
pub use internal::internal_error;
pub use listen::bind;
pub use signal::shutdown_signal;
pub use spawn::{Spawned, spawn};
pub use status::{
    ERROR_DOMAIN, INVALID_FIELDS, Violations, database_unavailable, error_status, invalid_fields,
    retryable_status,
};
pub use tonic_types::FieldViolation;

/// One gRPC service, as the shell needs to know it.
pub struct ServiceDefinition {
    /// Full name of the service, e.g. `notesuite.notes.v1.NotesService`: its health name.
    pub name: &'static str,
    /// The service's own routes (without health and reflection, which the shell adds).
    pub routes: Routes,
    /// Services that reflection lists besides health and reflection itself: usually just
    /// `name`; the gateway lists everything reachable through it.
    pub advertised_services: Vec<&'static str>,
    /// Encoded `FileDescriptorSet`s describing `advertised_services`.
    pub descriptor_sets: Vec<&'static [u8]>,
    /// What "ready" means beyond "not draining", e.g. "the database answers".
    pub readiness: Option<ReadinessProbe>,
    /// How many calls the service can work on at once (its database pool's connections),
    /// which `--concurrency-limit pool` sizes the admission limit from; `None`: no such
    /// bound (the gateway), or unknown (tests that build a service over a store).
    pub capacity: Option<u32>,
}

impl std::fmt::Debug for ServiceDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDefinition")
            .field("name", &self.name)
            .field("advertised_services", &self.advertised_services)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("a descriptor set does not decode: {0}")]
    Descriptor(#[from] prost::DecodeError),
    #[error("--tls-cert, --tls-key, --tls-client-ca: {0}")]
    Tls(#[from] tls::TlsError),
}

/// Largest request the shell's own services (health, reflection) decode, compressed or not:
/// theirs are a service or symbol name. tonic's default, 4 MiB, let each health check carrying a
/// 5 KB gzip bomb take 4 MiB while it was decompressed (200 such calls on one connection: +31 MB
/// of RSS, kept by the allocator after).
const SHELL_MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Flow-control window of one call: what a client may send that its handler has not read.
/// An import pauses its reading while it writes a batch; with 64 KiB the client then waited
/// on window updates (ImportNotes straight to notes, same run: 4,621 vs 6,047 notes/s on
/// SQLite, 4,804 vs 5,314 on PostgreSQL with 256 KiB).
const STREAM_WINDOW: u32 = 256 * 1024;

/// Flow-control window of a connection: every call it may carry can hold its stream window
/// of unread bytes without taking the others' (the protocol's maximum caps it).
fn connection_window(max_concurrent_streams: u32) -> u32 {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    max_concurrent_streams
        .saturating_mul(STREAM_WINDOW)
        .min(MAX_WINDOW)
}

/// Serves `definition` on `listener` until `shutdown` completes, then drains:
///
/// 1. readiness (`""` and the service name) turns NOT_SERVING at once; `liveness` stays
///    SERVING so the orchestrator does not kill a process that is shutting down on purpose;
/// 2. calls keep being served for `drain_delay`, so load balancers notice;
/// 3. the listener closes and every connection gets a GOAWAY; open streams end with
///    UNAVAILABLE so their clients resume elsewhere;
/// 4. in-flight calls get `shutdown_grace` to finish; after that the shell returns anyway.
pub async fn serve(
    listener: TcpListener,
    definition: ServiceDefinition,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let local_addr = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    let tls = config.tls.load()?;
    if let Some(tls) = &tls {
        // Both end with the server: the loop holds the configuration weakly.
        tls.reload_every(config.key_reload_interval);
        let expiry = tls.expiry();
        telemetry::observe_certificate_expiry("server", move || expiry.unix_seconds());
        tracing::info!(
            address = %local_addr,
            client_certificates = if tls.requires_client_certificates() { "required" } else { "none" },
            "serving tls"
        );
    }
    let coalesce = coalesce::enabled();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| {
            accepted.map(|tcp| {
                coalesce::Coalesced::new(transport::Transport::new(tcp, tls.as_ref()), coalesce)
            })
        });
    let incoming = connections::Bounded::new(
        incoming,
        config.connection_limit as usize,
        config.handshake_timeout,
    );
    serve_connections(incoming, &local_addr, definition, config, shutdown).await
}

/// [`serve`] over any stream of connections: a TCP listener's, or in-memory pipes for tests
/// whose clock is paused (a real socket lets a paused clock jump while bytes are in flight).
async fn serve_connections<Connections, Connection, AcceptError>(
    incoming: Connections,
    local_addr: &str,
    definition: ServiceDefinition,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    Connections: futures_util::Stream<Item = Result<Connection, AcceptError>>,
    Connection: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    AcceptError: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ServiceDefinition {
        name,
        routes,
        advertised_services,
        descriptor_sets,
        readiness,
        capacity,
    } = definition;

    let health = health::Health::new(name).await;
    let (health_service, readiness_task) = health.serve(readiness, config.readiness_interval);
    let (reflection_v1, reflection_v1alpha) =
        reflection::services(&descriptor_sets, &advertised_services)?;
    let methods = method_table(&descriptor_sets)?;

    let stop_accepting = CancellationToken::new();
    let end_streams = CancellationToken::new();
    let streaming_paths = std::sync::Arc::new(drain::streaming_paths(&methods));
    let admission = admission::AdmissionLayer::new(
        config.max_concurrent_calls,
        config.concurrency_limit,
        capacity,
        config.fast_shed_rate,
        config.admission_wait,
        config.max_open_streams,
        streaming_paths.clone(),
    );
    let in_flight = admission.in_flight_counter();
    telemetry::observe_admission_limit(admission.unary_limit());

    let server = tonic::transport::Server::builder()
        .max_connection_age(config.max_connection_age)
        .max_connection_age_grace(config.max_connection_age_grace)
        .http2_keepalive_interval(Some(config.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout))
        .max_concurrent_streams(Some(config.max_concurrent_streams))
        // Unread bytes of a call hold its connection's window. hyper's default (1 MiB for
        // the stream and for the whole connection) lets one paused stream, such as an import
        // whose batch is being written, stop every other call on a connection the gateway
        // shares among all its users. A small stream window and a connection window many
        // times larger keep one stream's backpressure on that stream.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(connection_window(config.max_concurrent_streams)))
        // hyper's default of 20 streams reset before they were accepted (its guard against
        // "rapid reset" floods) is too low for a multiplexing peer: when the gateway cancels a
        // burst of forwarded calls, the backend would answer with GOAWAY and fail every other
        // call on that connection. A bound scaled to the allowed streams still stops a flood.
        .http2_max_pending_accept_reset_streams(Some(
            usize::try_from(config.max_concurrent_streams / 4)
                .unwrap_or(256)
                .max(20),
        ))
        // Outermost: the deadline counts from here (see `deadline::ArrivalLayer`).
        .layer(deadline::ArrivalLayer)
        .layer(telemetry::ServerLayer::new(&methods))
        .layer(normalize::NormalizeLayer)
        .layer(deadline::DeadlineLayer)
        .layer(drain::DrainLayer::new(
            &methods,
            streaming_paths,
            end_streams.clone(),
        ))
        .layer(admission)
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, stop_accepting.clone().cancelled_owned());
    tokio::pin!(server);
    tracing::info!(service = name, address = %local_addr, "serving");

    tokio::select! {
        result = &mut server => {
            readiness_task.abort();
            return result.map_err(ServeError::from);
        }
        () = shutdown => {}
    }

    tracing::info!(
        service = name,
        drain_delay = ?config.drain_delay,
        shutdown_grace = ?config.shutdown_grace,
        "draining: readiness is now NOT_SERVING"
    );
    readiness_task.abort();
    health.set_draining().await;

    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = tokio::time::sleep(config.drain_delay) => {}
    }

    tracing::info!(
        service = name,
        in_flight = in_flight.get(),
        "no longer accepting calls"
    );
    stop_accepting.cancel();
    end_streams.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => {
            tracing::info!(service = name, "drained");
            result.map_err(ServeError::from)
        }
        Err(_) => {
            tracing::warn!(
                service = name,
                abandoned_calls = in_flight.get(),
                "shutdown grace period over: leaving without the calls still in flight"
            );
            Ok(())
        }
    }
}

/// Every method the server answers: the service's own and the shell's.
fn method_table(
    descriptor_sets: &[&'static [u8]],
) -> Result<telemetry::MethodTable, prost::DecodeError> {
    let all: Vec<&[u8]> = descriptor_sets
        .iter()
        .chain(reflection::SHELL_DESCRIPTOR_SETS)
        .copied()
        .collect();
    telemetry::MethodTable::from_descriptor_sets(&all)
}
