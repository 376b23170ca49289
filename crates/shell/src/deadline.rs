//! The caller's deadline, answered the way gRPC says: DEADLINE_EXCEEDED (reason
//! `DEADLINE_EXCEEDED`), never tonic's CANCELLED "Timeout expired", and a call whose deadline
//! has already passed when it arrives is not run at all — a write a client gave up on must not
//! happen behind its back (its retry, without a `request_id`, would make a duplicate).
//!
//! tonic's own `grpc-timeout` timer wraps every server from the outside and cannot be turned
//! off; it starts a few microseconds before this layer sees the call. This layer's timer is set
//! a little earlier than the caller's deadline, so it always fires first and tonic's never
//! answers: timers tick in milliseconds, and on a tick this (inner) future is polled first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tonic::Code;
use tonic::body::Body;

use crate::error_status;

/// The header a caller's deadline comes in.
pub static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// How much earlier than the caller's deadline this layer gives up: more than the time
/// between tonic's timer starting and this layer seeing the call (on a loaded machine,
/// hundreds of microseconds when the task is preempted in between), and at most half of a
/// short deadline. A millisecond is a small share of any deadline a database call can meet.
const MAX_HEADSTART: Duration = Duration::from_millis(1);

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), as the gRPC HTTP/2
/// protocol defines it; anything else is no deadline.
pub fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    let (digits, unit) = raw.split_at_checked(raw.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The answer to a call whose deadline passed.
pub fn deadline_exceeded() -> tonic::Status {
    error_status(
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
        "the call's deadline passed before it was answered",
    )
}

/// When a call reached the server's own layers: stamped by [`ArrivalLayer`], the outermost,
/// as close as a layer can get to the moment tonic started its own timer.
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

/// Stamps each call's [`Arrival`]. Whatever the layers between it and [`DeadlineLayer`] spend
/// (telemetry opens a span, a busy machine preempts the task) then counts against the call's
/// deadline here as it does in tonic's timer; measured from [`DeadlineLayer`] instead, tonic's
/// timer could fire first on a loaded machine and answer CANCELLED "Timeout expired".
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ArrivalLayer;

impl<S> tower_layer::Layer<S> for ArrivalLayer {
    type Service = Arrived<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Arrived { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Arrived<S> {
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for Arrived<S>
where
    S: tower_service::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        request.extensions_mut().insert(Arrival(Instant::now()));
        self.inner.call(request)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeadlineLayer;

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for Deadline<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let timeout = request
            .headers()
            .get(&GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let Some(timeout) = timeout else {
            return DeadlineFuture::Unbounded {
                inner: self.inner.call(request),
            };
        };
        let headstart = MAX_HEADSTART.min(timeout / 2);
        let budget = timeout.saturating_sub(headstart);
        let arrived = request
            .extensions()
            .get::<Arrival>()
            .map_or_else(Instant::now, |arrival| arrival.0);
        // Too little left to do anything but answer (what the layers above spent counts):
        // the call is not run.
        if budget.saturating_sub(arrived.elapsed()) < MIN_BUDGET {
            return DeadlineFuture::Expired;
        }
        DeadlineFuture::Bounded {
            inner: self.inner.call(request),
            sleep: tokio::time::sleep_until(arrived + budget),
            deadline: arrived + timeout,
        }
    }
}

/// How close to its deadline a call still waiting is given up when polled.
const CLOCK_SLACK: Duration = Duration::from_micros(100);

/// Below this, a call cannot even be decoded before its deadline.
const MIN_BUDGET: Duration = Duration::from_micros(10);

pin_project_lite::pin_project! {
    #[project = DeadlineFutureProjection]
    pub(crate) enum DeadlineFuture<F> {
        Unbounded { #[pin] inner: F },
        Bounded { #[pin] inner: F, #[pin] sleep: Sleep, deadline: Instant },
        Expired,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DeadlineFutureProjection::Unbounded { inner } => inner.poll(cx),
            DeadlineFutureProjection::Bounded {
                inner,
                sleep,
                deadline,
            } => {
                if let Poll::Ready(response) = inner.poll(cx) {
                    // Timers tick in milliseconds: an answer may be ready after the deadline
                    // before the timer fires. The caller has stopped waiting by then.
                    if Instant::now() >= *deadline {
                        return Poll::Ready(Ok(deadline_exceeded().into_http()));
                    }
                    return Poll::Ready(response);
                }
                // Dropping the inner future when the deadline passes cancels the call's work
                // (a transaction not yet committed rolls back).
                //
                // tonic's timer started a moment before the call's arrival was stamped; should
                // that moment exceed the head start (the task preempted in between), tonic's
                // timer tick can come first. It polls this future before answering: close
                // enough to this deadline, the call is over here and answered properly.
                if Instant::now() + CLOCK_SLACK >= sleep.deadline() {
                    return Poll::Ready(Ok(deadline_exceeded().into_http()));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Ok(deadline_exceeded().into_http())),
                    Poll::Pending => Poll::Pending,
                }
            }
            DeadlineFutureProjection::Expired => Poll::Ready(Ok(deadline_exceeded().into_http())),
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_defines_them() {
        assert_eq!(parse_grpc_timeout("1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for raw in ["", "m", "123456789S", "1x", "-1S", "1.5S", " 1S", "é"] {
            assert_eq!(parse_grpc_timeout(raw), None, "{raw:?}");
        }
    }
}
