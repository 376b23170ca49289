//! Ending open streams when the server drains.
//!
//! Closing the listener and sending GOAWAY lets unary calls finish, but a stream (health
//! Watch, reflection, a notes watch) would keep its connection open until the grace period
//! runs out. Once the drain cuts off, every streaming response still open ends with
//! UNAVAILABLE, which tells its client to reconnect (to another replica) and resume.
//!
//! Which methods stream is read from the descriptor sets, so unary responses are never
//! touched: a unary call whose handler is still running when the cutoff comes completes
//! normally.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Frame;
use telemetry::MethodTable;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;
use tonic::body::Body;

#[derive(Debug, Clone)]
pub(crate) struct DrainLayer {
    streaming_paths: Arc<HashSet<String>>,
    /// Of those, the ones whose answer is a stream: an import's answer is its summary, which
    /// the cutoff must never replace once it is ready.
    server_streaming_paths: Arc<HashSet<String>>,
    cutoff: CancellationToken,
}

impl DrainLayer {
    pub(crate) fn new(
        methods: &MethodTable,
        streaming_paths: Arc<HashSet<String>>,
        cutoff: CancellationToken,
    ) -> Self {
        Self {
            streaming_paths,
            server_streaming_paths: Arc::new(
                methods
                    .iter()
                    .filter(|method| method.server_streaming)
                    .map(|method| method.path.clone())
                    .collect(),
            ),
            cutoff,
        }
    }
}

/// Paths (`/package.Service/Method`) of every streaming method.
pub(crate) fn streaming_paths(methods: &MethodTable) -> HashSet<String> {
    methods
        .iter()
        .filter(|method| method.streaming)
        .map(|method| method.path.clone())
        .collect()
}

impl<S> tower_layer::Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Drain<S> {
    inner: S,
    layer: DrainLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for Drain<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let cutoff = self
            .layer
            .streaming_paths
            .contains(path)
            .then(|| self.layer.cutoff.clone());
        let cut_answer = self.layer.server_streaming_paths.contains(path);
        DrainFuture {
            inner: self.inner.call(request),
            cutoff,
            cut_answer,
            waiting: None,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct DrainFuture<F> {
        #[pin]
        inner: F,
        cutoff: Option<CancellationToken>,
        cut_answer: bool,
        waiting: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    }
}

impl<F, E> Future for DrainFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Ready(response) => response?,
            // A client stream (an import) answers only at its end: cut off before then, it is
            // answered UNAVAILABLE at once rather than held until the grace period ends.
            // Dropping the handler is safe: what it wrote is whole transactions, and retried
            // items are recognised by their request ids.
            Poll::Pending => match this.cutoff {
                Some(cutoff) if cutoff.is_cancelled() => {
                    *this.cutoff = None;
                    return Poll::Ready(Ok(shutting_down().into_http()));
                }
                Some(cutoff) => {
                    let cancelled = this
                        .waiting
                        .get_or_insert_with(|| Box::pin(cutoff.clone().cancelled_owned()));
                    ready!(cancelled.as_mut().poll(cx));
                    *this.cutoff = None;
                    return Poll::Ready(Ok(shutting_down().into_http()));
                }
                None => return Poll::Pending,
            },
        };
        Poll::Ready(Ok(match this.cutoff.take() {
            Some(cutoff) if *this.cut_answer => {
                response.map(|body| Body::new(CutOffBody::new(body, cutoff)))
            }
            _ => response,
        }))
    }
}

/// A streaming response body that ends with UNAVAILABLE once the drain cuts off.
struct CutOffBody {
    inner: Body,
    cutoff: Pin<Box<WaitForCancellationFutureOwned>>,
    finished: bool,
}

impl CutOffBody {
    fn new(inner: Body, cutoff: CancellationToken) -> Self {
        Self {
            inner,
            cutoff: Box::pin(cutoff.cancelled_owned()),
            finished: false,
        }
    }
}

impl http_body::Body for CutOffBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.cutoff.as_mut().poll(cx).is_ready() {
            self.finished = true;
            let mut trailers = http::HeaderMap::new();
            let status = shutting_down();
            if status.add_header(&mut trailers).is_err() {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) if frame.is_trailers() => self.finished = true,
            None => self.finished = true,
            _ => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }
}

/// How a stream cut off by the drain ends.
fn shutting_down() -> Status {
    crate::error_status(
        tonic::Code::Unavailable,
        "SERVER_DRAINING",
        "server is shutting down: reconnect (to another replica) and resume",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_streaming_methods_are_found() {
        let methods = crate::method_table(&[]).expect("descriptor sets decode");
        let paths = streaming_paths(&methods);
        assert!(paths.contains("/grpc.health.v1.Health/Watch"));
        assert!(paths.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!paths.contains("/grpc.health.v1.Health/Check"));
    }
}
