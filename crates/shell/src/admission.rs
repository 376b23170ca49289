//! Admission control: a bound on calls served at once. A call over the bound is shed at once
//! with RESOURCE_EXHAUSTED and a retry delay, never queued: a queue only turns overload into
//! latency for everyone. Health checks are exempt, so that an overloaded but healthy process
//! is not restarted by its orchestrator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";
const RETRY_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl AdmissionLayer {
    pub(crate) fn new(max_concurrent_calls: u32) -> Self {
        let capacity = max_concurrent_calls as usize;
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    pub(crate) fn in_flight_counter(&self) -> InFlight {
        InFlight {
            permits: self.permits.clone(),
            capacity: self.capacity,
        }
    }
}

/// Calls admitted and not yet answered.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    pub(crate) fn get(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> tower_service::Service<http::Request<Body>> for Admission<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = AdmissionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path().starts_with(HEALTH_PATH_PREFIX) {
            return AdmissionFuture::Admitted {
                inner: self.inner.call(request),
                _permit: None,
            };
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => AdmissionFuture::Admitted {
                inner: self.inner.call(request),
                _permit: Some(permit),
            },
            Err(_) => AdmissionFuture::Shed,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = AdmissionFutureProjection]
    pub(crate) enum AdmissionFuture<F> {
        Admitted { #[pin] inner: F, _permit: Option<OwnedSemaphorePermit> },
        Shed,
    }
}

impl<F, E> Future for AdmissionFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmissionFutureProjection::Admitted { inner, .. } => {
                Poll::Ready(ready!(inner.poll(cx)))
            }
            AdmissionFutureProjection::Shed => Poll::Ready(Ok(overloaded().into_http())),
        }
    }
}

fn overloaded() -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(RETRY_DELAY));
    details.set_error_info("OVERLOADED", "notesuite", []);
    Status::with_error_details(
        Code::ResourceExhausted,
        "server is at its concurrent call limit; retry after the given delay",
        details,
    )
}
