//! Admission control: a bound on calls served at once. A call over the bound is shed at once
//! with RESOURCE_EXHAUSTED and a retry delay, never queued: a queue only turns overload into
//! latency for everyone. Health checks are exempt, so that an overloaded but healthy process
//! is not restarted by its orchestrator.
//!
//! Shedding is not free (HTTP/2 and the layers outside admission: ~8 µs a call here), and
//! clients that retry a shed call at once, ignoring its retry delay, come straight back: a
//! crowd of them spent the whole core on being shed and goodput fell to a tenth. So only
//! `--fast-shed-rate` calls a second are shed at once; past that rate a unary call over the
//! bound waits a moment (`--admission-wait`, 250 ms) for a slot and is shed only then, so that
//! a crowd retrying at once comes back at most once per wait per call. The newest waiter gets
//! the next slot (last in, first out): under sustained overload the calls admitted are those
//! that waited least, and the oldest are shed. Streaming calls are always shed at once.
//!
//! The bound on unary calls adapts to what the process really serves (see `crate::limit`),
//! with `--max-concurrent-calls` as its ceiling: a fixed bound above capacity queues calls
//! below it (in the database pool) instead of shedding them.
//!
//! Streaming calls have a budget of their own, held until the stream ends: a unary call's
//! permit goes back when its answer is ready, which would let open streams (a watch lasts
//! hours) escape the bound, while counting them against the unary bound would let idle
//! watches starve short calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::collections::HashSet;

use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ConcurrencyLimit;
use crate::limit::{AdaptiveLimit, Slot, Wait, Waiter};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Unary calls that may wait for a slot at once, per call the ceiling admits: enough for a
/// crowd of 16x the ceiling to wait rather than be answered at once (and retry at once). A
/// waiting call holds what HTTP/2 holds for any open stream, bounded by the connections'
/// flow-control windows, and a few hundred bytes more.
const WAITING_PER_CALL: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    unary: Arc<AdaptiveLimit>,
    /// Calls over the limit shed at once, before the others wait; `None`: none are.
    fast_sheds: Option<Arc<governor::DefaultDirectRateLimiter>>,
    /// How long a unary call over the limit waits for a slot before it is shed.
    wait: Duration,
    /// Unary calls admitted whose answer has not been sent whole: a call leaves the limit
    /// when its answer is ready, but the drain must still count it until its body is out.
    unary_unfinished: Arc<AtomicUsize>,
    stream_permits: Arc<Semaphore>,
    stream_capacity: usize,
    streaming_paths: Arc<HashSet<String>>,
}

impl AdmissionLayer {
    pub(crate) fn new(
        max_concurrent_calls: u32,
        concurrency_limit: ConcurrencyLimit,
        capacity: Option<u32>,
        fast_shed_rate: u32,
        wait: Duration,
        max_open_streams: u32,
        streaming_paths: Arc<HashSet<String>>,
    ) -> Self {
        let unary_limit = concurrency_limit.unary_limit(max_concurrent_calls, capacity) as usize;
        let max_waiting = if wait.is_zero() {
            0
        } else {
            (max_concurrent_calls as usize).saturating_mul(WAITING_PER_CALL)
        };
        Self {
            unary: match concurrency_limit {
                ConcurrencyLimit::Adaptive => AdaptiveLimit::new(unary_limit, max_waiting),
                ConcurrencyLimit::Fixed | ConcurrencyLimit::Pool => {
                    AdaptiveLimit::fixed(unary_limit, max_waiting)
                }
            },
            fast_sheds: std::num::NonZeroU32::new(fast_shed_rate).map(|rate| {
                let burst = std::num::NonZeroU32::new(rate.get().div_ceil(10)).unwrap_or(rate);
                Arc::new(governor::RateLimiter::direct(
                    governor::Quota::per_second(rate).allow_burst(burst),
                ))
            }),
            wait,
            unary_unfinished: Arc::new(AtomicUsize::new(0)),
            stream_permits: Arc::new(Semaphore::new(max_open_streams as usize)),
            stream_capacity: max_open_streams as usize,
            streaming_paths,
        }
    }

    pub(crate) fn in_flight_counter(&self) -> InFlight {
        InFlight {
            layer: self.clone(),
        }
    }

    /// The unary calls' current limit, for the metrics.
    pub(crate) fn unary_limit(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let unary = self.unary.clone();
        move || unary.limit()
    }
}

/// Calls admitted whose answer is not yet sent whole (or whose client has not yet left), and
/// streams still open: what a drain that gives up abandons.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    layer: AdmissionLayer,
}

impl InFlight {
    pub(crate) fn get(&self) -> usize {
        let layer = &self.layer;
        layer.unary_unfinished.load(Ordering::Relaxed)
            + (layer.stream_capacity - layer.stream_permits.available_permits())
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for Admission<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = AdmissionFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(HEALTH_PATH_PREFIX) {
            return AdmissionFuture::Admitted {
                inner: self.inner.call(request),
                permit: None,
            };
        }
        if self.layer.streaming_paths.contains(path) {
            return match self.layer.stream_permits.clone().try_acquire_owned() {
                Ok(permit) => AdmissionFuture::Admitted {
                    inner: self.inner.call(request),
                    permit: Some(Permit::UntilStreamEnds(permit)),
                },
                Err(_) => AdmissionFuture::Shed,
            };
        }
        let slot = match self.layer.unary.try_acquire() {
            Some(slot) => slot,
            None if self.layer.shed_at_once() => return AdmissionFuture::Shed,
            None => match self.layer.unary.wait() {
                Wait::Admitted(slot) => slot,
                Wait::Waiting(waiter) => {
                    // The service polled ready goes with the call; this one keeps a clone.
                    let clone = self.inner.clone();
                    return AdmissionFuture::Waiting {
                        waiter,
                        timeout: tokio::time::sleep(self.layer.wait),
                        call: Some((std::mem::replace(&mut self.inner, clone), request)),
                        unfinished: self.layer.unary_unfinished.clone(),
                    };
                }
                Wait::Full => return AdmissionFuture::Shed,
            },
        };
        AdmissionFuture::Admitted {
            inner: self.inner.call(request),
            permit: Some(unary_permit(slot, &self.layer.unary_unfinished)),
        }
    }
}

impl AdmissionLayer {
    /// Whether a unary call over the limit is shed at once: while the fast-shed rate allows.
    fn shed_at_once(&self) -> bool {
        self.fast_sheds
            .as_ref()
            .is_some_and(|fast_sheds| fast_sheds.check().is_ok())
    }
}

fn unary_permit(slot: Slot, unfinished: &Arc<AtomicUsize>) -> Permit {
    Permit::UntilAnswered(slot, Unfinished::new(unfinished))
}

pin_project_lite::pin_project! {
    #[project = AdmissionFutureProjection]
    pub(crate) enum AdmissionFuture<S>
    where
        S: tower_service::Service<http::Request<Body>>,
    {
        Admitted { #[pin] inner: S::Future, permit: Option<Permit> },
        Waiting {
            #[pin] waiter: Waiter,
            #[pin] timeout: tokio::time::Sleep,
            call: Option<(S, http::Request<Body>)>,
            unfinished: Arc<AtomicUsize>,
        },
        Shed,
    }
}

impl<S> Future for AdmissionFuture<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Output = Result<http::Response<Body>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                AdmissionFutureProjection::Admitted { inner, permit } => {
                    let response = ready!(inner.poll(cx))?;
                    return Poll::Ready(Ok(match permit.take() {
                        // The permit lives in the body, and goes when the stream ends or its
                        // client leaves.
                        Some(Permit::UntilStreamEnds(permit)) => response.map(|body| {
                            Body::new(body.map_frame(move |frame| {
                                let _held = &permit;
                                frame
                            }))
                        }),
                        Some(Permit::UntilAnswered(slot, unfinished)) => {
                            slot.answered();
                            // Counted until the body is sent whole or dropped: an answer stuck
                            // behind a client that does not read is still a call in flight.
                            response.map(|body| {
                                Body::new(body.map_frame(move |frame| {
                                    let _unfinished = &unfinished;
                                    frame
                                }))
                            })
                        }
                        None => response,
                    }));
                }
                AdmissionFutureProjection::Waiting {
                    waiter,
                    timeout,
                    call,
                    unfinished,
                } => {
                    let slot = match waiter.poll(cx) {
                        Poll::Ready(slot) => slot,
                        Poll::Pending => {
                            ready!(timeout.poll(cx));
                            self.set(AdmissionFuture::Shed);
                            continue;
                        }
                    };
                    // Taken only here, and the state changes right after: always there.
                    let Some((mut service, request)) = call.take() else {
                        return Poll::Ready(Ok(shed_response()));
                    };
                    let permit = unary_permit(slot, unfinished);
                    let inner = service.call(request);
                    self.set(AdmissionFuture::Admitted {
                        inner,
                        permit: Some(permit),
                    });
                }
                AdmissionFutureProjection::Shed => return Poll::Ready(Ok(shed_response())),
            }
        }
    }
}

/// An admitted call's place, and how long it holds it.
#[derive(Debug)]
pub(crate) enum Permit {
    /// A unary call's, under the adaptive limit: its answer's latency feeds the limit.
    UntilAnswered(Slot, Unfinished),
    UntilStreamEnds(OwnedSemaphorePermit),
}

/// One unary call counted in `AdmissionLayer::unary_unfinished` while it lives.
#[derive(Debug)]
pub(crate) struct Unfinished(Arc<AtomicUsize>);

impl Unfinished {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer to a shed call, its headers encoded once: under overload the process sheds tens
/// of thousands of calls a second on the core its admitted calls need, and encoding the same
/// status details (protobuf, then base64) for each was a measurable part of that (perf: the
/// base64 encoder alone 1.6 % of the samples at 3x overload).
///
/// Besides RetryInfo (for clients that read status details), the delay goes out as
/// `grpc-retry-pushback-ms` (gRFC A6), which the gRPC libraries' own retry policies obey: a
/// client configured to retry RESOURCE_EXHAUSTED waits that long instead of its backoff.
fn shed_response() -> http::Response<Body> {
    static HEADERS: std::sync::LazyLock<http::HeaderMap> = std::sync::LazyLock::new(|| {
        let mut headers = overloaded().into_http::<Body>().into_parts().0.headers;
        headers.insert(
            "grpc-retry-pushback-ms",
            http::HeaderValue::from(u64::try_from(RETRY_DELAY.as_millis()).unwrap_or(u64::MAX)),
        );
        headers
    });
    let mut response = http::Response::new(Body::default());
    *response.headers_mut() = HEADERS.clone();
    response
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use super::*;
    use tower_layer::Layer as _;
    use tower_service::Service as _;

    /// Answers every call at once with a body that never ends: an answer whose body is still
    /// being sent (its client does not read).
    #[derive(Clone)]
    struct EndlessAnswer;

    impl tower_service::Service<http::Request<Body>> for EndlessAnswer {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            let never =
                futures_util::stream::pending::<Result<http_body::Frame<bytes::Bytes>, Status>>();
            std::future::ready(Ok(http::Response::new(Body::new(
                http_body_util::StreamBody::new(never),
            ))))
        }
    }

    #[tokio::test]
    async fn a_unary_call_counts_as_in_flight_until_its_answer_is_sent_whole() {
        let layer = AdmissionLayer::new(
            8,
            ConcurrencyLimit::Adaptive,
            None,
            0,
            Duration::ZERO,
            8,
            Arc::new(HashSet::new()),
        );
        let in_flight = layer.in_flight_counter();
        let mut service = layer.layer(EndlessAnswer);
        let request = http::Request::builder()
            .uri("/a.B/C")
            .body(Body::empty())
            .expect("request");
        let response = service.call(request).await.expect("answer");
        assert_eq!(
            in_flight.get(),
            1,
            "the answer is ready, its body is not sent"
        );
        drop(response);
        assert_eq!(in_flight.get(), 0, "a dropped body ends the call");
    }
}
