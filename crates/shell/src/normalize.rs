//! Answers that tonic itself produces, before any notesuite code runs, brought in line with
//! the rest: the right code and an `ErrorInfo` clients can branch on.
//!
//! - a message over the size limit: tonic says OUT_OF_RANGE; gRPC's status code table (and
//!   every other gRPC stack) says RESOURCE_EXHAUSTED;
//! - bytes that do not decode: tonic says INTERNAL, but the fault is the client's:
//!   INVALID_ARGUMENT;
//! - an unknown method: tonic says UNIMPLEMENTED with no message; the message names the path;
//! - a request whose client went away before it was read (its connection closed while the call
//!   waited for admission): tonic says UNKNOWN "h2 protocol error: …"; the client is gone, and
//!   the call counts as CANCELLED, as one it reset does.
//!
//! These only ever come as trailers-only answers (status in the headers), which is all this
//! layer looks at. notesuite's own code never answers OUT_OF_RANGE, and its INTERNAL answers
//! say "internal error (trace id …)", so nothing of ours is rewritten.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tonic::body::Body;
use tonic::{Code, Status};

use crate::error_status;

/// Prefix of tonic's message for a request that does not decode.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";
/// Prefix of tonic's message for a request body that could not be read: the stream or the
/// connection broke under it.
const BROKEN_STREAM: &str = "h2 protocol error";

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NormalizeLayer;

impl<S> tower_layer::Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Normalize { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Normalize<S> {
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for Normalize<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = NormalizeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // A reference-counted copy of the path, not an allocation: it is only read on the rare
        // answers that get rewritten.
        let path = request.uri().path_and_query().cloned();
        NormalizeFuture {
            inner: self.inner.call(request),
            path,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct NormalizeFuture<F> {
        #[pin]
        inner: F,
        path: Option<http::uri::PathAndQuery>,
    }
}

impl<F, E> Future for NormalizeFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let path = this.path.as_ref().map_or("", http::uri::PathAndQuery::path);
        if let Some(replacement) = replacement(response.headers(), path) {
            let headers = response.headers_mut();
            headers.remove(Status::GRPC_MESSAGE);
            headers.remove(Status::GRPC_STATUS_DETAILS);
            if replacement.add_header(headers).is_err() {
                headers.insert(
                    Status::GRPC_STATUS,
                    http::HeaderValue::from(replacement.code() as i32),
                );
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// The status to answer instead of the one in `headers`, if it is one of tonic's own.
fn replacement(headers: &http::HeaderMap, path: &str) -> Option<Status> {
    let code = headers.get(Status::GRPC_STATUS)?;
    let code = match code.as_bytes() {
        b"2" => Code::Unknown,
        b"11" => Code::OutOfRange,
        b"12" => Code::Unimplemented,
        b"13" => Code::Internal,
        _ => return None,
    };
    let status = Status::from_header_map(headers)?;
    match code {
        Code::OutOfRange => Some(error_status(
            Code::ResourceExhausted,
            "MESSAGE_TOO_LARGE",
            status.message(),
        )),
        Code::Internal if status.message().starts_with(DECODE_FAILURE) => Some(error_status(
            Code::InvalidArgument,
            "MALFORMED_MESSAGE",
            format!(
                "the request is not a valid message for {path}: {}",
                status.message()
            ),
        )),
        Code::Unknown if status.message().starts_with(BROKEN_STREAM) => {
            tracing::debug!(
                error = status.message(),
                "the client went away before its request was read"
            );
            Some(Status::cancelled(
                "the client went away before its request was read",
            ))
        }
        Code::Unimplemented if status.message().is_empty() => Some(error_status(
            Code::Unimplemented,
            "UNKNOWN_METHOD",
            format!("{path} is not a method this server serves; `grpcurl list` shows what is"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: &Status) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).expect("valid status");
        headers
    }

    #[test]
    fn our_own_internal_errors_are_left_alone() {
        let ours = Status::internal("internal error (trace id 0123)");
        assert!(replacement(&headers_of(&ours), "/a.B/C").is_none());
    }

    #[test]
    fn codec_answers_get_codes_and_reasons() {
        let too_large = replacement(&headers_of(&Status::out_of_range("too big")), "/a.B/C")
            .expect("rewritten");
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        let malformed = Status::internal("failed to decode Protobuf message: invalid varint");
        let malformed = replacement(&headers_of(&malformed), "/a.B/C").expect("rewritten");
        assert_eq!(malformed.code(), Code::InvalidArgument);
        let unknown =
            replacement(&headers_of(&Status::unimplemented("")), "/a.B/C").expect("rewritten");
        assert!(unknown.message().contains("/a.B/C"));
        let gone = Status::unknown("h2 protocol error: error reading a body from connection");
        let gone = replacement(&headers_of(&gone), "/a.B/C").expect("rewritten");
        assert_eq!(gone.code(), Code::Cancelled);
        assert!(
            replacement(&headers_of(&Status::unknown("something else")), "/a.B/C").is_none(),
            "only the broken stream's UNKNOWN"
        );
    }
}
