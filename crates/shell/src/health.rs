//! `grpc.health.v1.Health` with the three names every notesuite service answers:
//! `""` (the process is ready), the service's full name (that service is ready) and
//! [`LIVENESS`] (the process is alive; it stays SERVING while draining).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;

/// Health name of the liveness check.
pub const LIVENESS: &str = "liveness";

/// Checks what readiness depends on besides not draining, e.g. that the database answers.
/// The error says what is wrong, for the log.
pub type ReadinessProbe = Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Health {
    reporter: HealthReporter,
    service_name: &'static str,
    /// Set once the drain starts. Every readiness change happens under this lock, so a probe
    /// that finishes late can never flip a draining server back to SERVING.
    draining: Arc<Mutex<bool>>,
}

impl Health {
    pub(crate) async fn new(service_name: &'static str) -> Self {
        let reporter = HealthReporter::new();
        for name in ["", service_name, LIVENESS] {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        Self {
            reporter,
            service_name,
            draining: Arc::new(Mutex::new(false)),
        }
    }

    /// The health service, and the task that keeps readiness following `probe`.
    pub(crate) fn serve(
        &self,
        probe: Option<ReadinessProbe>,
        interval: Duration,
    ) -> (
        HealthServer<impl tonic_health::pb::health_server::Health>,
        JoinHandle<()>,
    ) {
        let service = HealthServer::new(WatchUnknownAsGrpcDoes {
            inner: tonic_health::server::HealthService::from_health_reporter(self.reporter.clone()),
        })
        .max_decoding_message_size(crate::SHELL_MAX_REQUEST_BYTES)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate);
        let health = self.clone();
        let task = tokio::spawn(async move {
            let Some(probe) = probe else { return };
            let mut ready = true;
            loop {
                tokio::time::sleep(interval).await;
                let outcome = match tokio::time::timeout(interval, probe()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("readiness probe took longer than {interval:?}")),
                };
                // Only transitions are published: health Watch clients get one message per
                // change, not a repeat of the same status every interval.
                match (&outcome, ready) {
                    (Err(reason), true) => {
                        tracing::warn!(service = health.service_name, %reason, "not ready");
                    }
                    (Ok(()), false) => tracing::info!(service = health.service_name, "ready again"),
                    _ => continue,
                }
                ready = outcome.is_ok();
                health.set_ready(ready).await;
            }
        });
        (service, task)
    }

    async fn set_ready(&self, ready: bool) {
        let draining = self.draining.lock().await;
        if *draining {
            return;
        }
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.set_readiness(status).await;
    }

    pub(crate) async fn set_draining(&self) {
        let mut draining = self.draining.lock().await;
        *draining = true;
        self.set_readiness(ServingStatus::NotServing).await;
    }

    async fn set_readiness(&self, status: ServingStatus) {
        for name in ["", self.service_name] {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// tonic-health, except that Watch for a name this process does not serve answers
/// SERVICE_UNKNOWN and keeps the stream open, as the health protocol says and grpc-go does
/// (tonic-health ends it with NOT_FOUND, which clients read as a broken server). Check keeps
/// NOT_FOUND, as the protocol says. The names a process serves never change while it runs,
/// so an unknown name stays unknown; nothing is registered for it, so clients cannot grow
/// the table with names of their own.
struct WatchUnknownAsGrpcDoes {
    inner: tonic_health::server::HealthService,
}

type WatchStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for WatchUnknownAsGrpcDoes {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        use futures_util::StreamExt as _;
        match self.inner.watch(request).await {
            Ok(known) => Ok(tonic::Response::new(known.into_inner().boxed())),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let unknown = HealthCheckResponse {
                    status: tonic_health::pb::health_check_response::ServingStatus::ServiceUnknown
                        as i32,
                };
                Ok(tonic::Response::new(
                    futures_util::stream::once(async move { Ok(unknown) })
                        .chain(futures_util::stream::pending())
                        .boxed(),
                ))
            }
            Err(status) => Err(status),
        }
    }
}
