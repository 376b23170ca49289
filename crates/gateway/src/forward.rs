//! Forwarding the public methods of users and notes, without decoding them.
//!
//! The gateway serves `notesuite.users.v1.UsersService` and `notesuite.notes.v1.NotesService`
//! under their own names, so stubs generated for those services work against the gateway.
//! Each call is checked against its row of the policy table ([`crate::policy`]) and its token
//! verified here; then the HTTP/2 request goes to the backend as it came (the token included:
//! the backends verify it again, trusting no network) with its deadline rewritten to the
//! remaining budget. Payloads are never decoded.
//!
//! A unary request is read whole first (it is bounded by the method's size limit), so that it
//! can be sent again, to another replica ([`crate::upstream`]): whatever the method when the
//! first one refused it before the backend saw it (no replica reachable, GOAWAY,
//! REFUSED_STREAM), and after an UNAVAILABLE answer or a lost connection when the table says
//! the method is idempotent. Retries back off with jitter, never outlast the
//! caller's deadline, and draw on a budget so that they cannot multiply an outage. Streams go
//! through as they come, both ways, with their backpressure.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt as _, Full, Limited};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower::Layer as _;
use tower::ServiceExt as _;
use tower::retry::budget::Budget as _;

use crate::deadline::{Deadline, GRPC_TIMEOUT};
use crate::deletions::AccountDeletions;
use crate::limits::InFlightPermit;
use crate::policy::{self, Access, Idempotency, MethodPolicy, Shape};
use crate::relay::{RelayPolicy, backend_broke, relay, trailers};
use crate::upstream::retry::{MAX_ATTEMPTS, backoff, is_unavailable};
use crate::upstream::{NoLease, SendError, Upstream};
use shell::error_status;

/// A backend service whose methods the gateway forwards.
pub(crate) trait Route: Send + Sync + 'static {
    const NAME: &'static str;
}

pub(crate) const USERS_SERVICE: &str = "notesuite.users.v1.UsersService";
pub(crate) const NOTES_SERVICE: &str = "notesuite.notes.v1.NotesService";

#[derive(Debug)]
pub(crate) struct UsersRoute;

impl Route for UsersRoute {
    const NAME: &'static str = USERS_SERVICE;
}

#[derive(Debug)]
pub(crate) struct NotesRoute;

impl Route for NotesRoute {
    const NAME: &'static str = NOTES_SERVICE;
}

/// What forwarding needs besides the backend: shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct ForwardSettings {
    pub(crate) verifier: Arc<token::Verifier>,
    pub(crate) default_deadline: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) limits: Arc<crate::limits::RateLimits>,
    /// Told of each DeleteUser that succeeds through here (none in tests of forwarding
    /// alone).
    pub(crate) deletions: Option<Arc<AccountDeletions>>,
}

impl ForwardSettings {
    pub(crate) fn new(
        verifier: Arc<token::Verifier>,
        default_deadline: Duration,
        stall_timeout: Duration,
        limits: Arc<crate::limits::RateLimits>,
        deletions: Option<Arc<AccountDeletions>>,
    ) -> Self {
        Self {
            verifier,
            default_deadline,
            stall_timeout,
            limits,
            deletions,
        }
    }
}

/// The method whose success ends an account.
const DELETE_USER: &str = "/notesuite.users.v1.UsersService/DeleteUser";

/// The tonic service that forwards every call of route `R` to its backend's replicas.
pub(crate) struct Forward<R> {
    upstream: Upstream,
    /// Traces and measures each attempt as a client call.
    telemetry: telemetry::ClientLayer,
    settings: Arc<ForwardSettings>,
    _route: PhantomData<fn() -> R>,
}

impl<R> Forward<R> {
    pub(crate) fn new(
        upstream: Upstream,
        telemetry: telemetry::ClientLayer,
        settings: Arc<ForwardSettings>,
    ) -> Self {
        Self {
            upstream,
            telemetry,
            settings,
            _route: PhantomData,
        }
    }
}

impl<R> Clone for Forward<R> {
    fn clone(&self) -> Self {
        Self {
            upstream: self.upstream.clone(),
            telemetry: self.telemetry.clone(),
            settings: self.settings.clone(),
            _route: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Forward<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward").finish_non_exhaustive()
    }
}

impl<R: Route> NamedService for Forward<R> {
    const NAME: &'static str = R::NAME;
}

impl<R: Route> tower_service::Service<http::Request<Body>> for Forward<R> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the backend is awaited per call (`oneshot`), within its deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let (method, caller, permit) = match self.admit(&request) {
            Ok(admitted) => admitted,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        // users lets a user delete only their own account: the caller is the account.
        let deleting = (method.path == DELETE_USER)
            .then_some(caller)
            .zip(self.settings.deletions.clone());
        let deadline = match method.default_deadline(self.settings.default_deadline) {
            Some(default) => Some(Deadline::from_headers(request.headers(), default)),
            None => Deadline::from_client(request.headers()),
        };
        if deadline.is_none() {
            // A malformed one means none; the backend must not read it otherwise.
            request.headers_mut().remove(&GRPC_TIMEOUT);
        }
        // `host` is HTTP/1 only; the channel sets the backend's `:authority`.
        request.headers_mut().remove(http::header::HOST);
        let call = Call {
            upstream: self.upstream.clone(),
            telemetry: self.telemetry.clone(),
            settings: self.settings.clone(),
            method,
            deadline,
            service: R::NAME,
        };
        Box::pin(async move {
            let response = match method.shape {
                Shape::Unary => {
                    let response = call.unary(request).await;
                    match deleting {
                        Some((user_id, deletions)) => {
                            account_deleted(response, &user_id, &deletions).await
                        }
                        None => response,
                    }
                }
                Shape::Stream => call.stream(request).await,
            };
            Ok(match permit {
                // The call counts as in flight until its answer is sent (or dropped).
                Some(permit) => response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _in_flight = &permit;
                        frame
                    }))
                }),
                None => response,
            })
        })
    }
}

impl<R: Route> Forward<R> {
    /// Applies the method's policy and verifies the caller's token: the method, and the
    /// calling user.
    fn admit(
        &self,
        request: &http::Request<Body>,
    ) -> Result<(&'static MethodPolicy, String, Option<InFlightPermit>), Status> {
        let path = request.uri().path();
        let Some(method) = policy::lookup(path).filter(|method| {
            method
                .path
                .strip_prefix('/')
                .is_some_and(|rest| rest.starts_with(R::NAME))
        }) else {
            return Err(Status::unimplemented(format!("{path} is not served")));
        };
        match method.access {
            Access::Internal => Err(error_status(
                Code::PermissionDenied,
                "METHOD_NOT_PUBLIC",
                format!("{path} is internal and not reachable through the gateway"),
            )),
            // Forwarded methods all act for a user; the anonymous ones are the gateway's own.
            Access::User | Access::Anonymous => {
                match self.settings.verifier.authenticate(request.headers())? {
                    token::Principal::User { user_id } => {
                        self.settings
                            .limits
                            .check_user(method.rate_class, &user_id)?;
                        let permit = self
                            .settings
                            .limits
                            .enter(method.shape == Shape::Stream, &user_id)?;
                        Ok((method, user_id, permit))
                    }
                    token::Principal::Service { .. } => Err(error_status(
                        Code::PermissionDenied,
                        "USER_CREDENTIAL_REQUIRED",
                        "this method acts for a user: call it with a user's access token",
                    )),
                }
            }
        }
    }
}

/// One forwarded call.
struct Call {
    upstream: Upstream,
    telemetry: telemetry::ClientLayer,
    settings: Arc<ForwardSettings>,
    method: &'static MethodPolicy,
    deadline: Option<Deadline>,
    service: &'static str,
}

/// How one attempt went.
enum Attempt {
    Answered(http::Response<Body>),
    /// The backend never saw the request: safe to send again, whatever the method.
    Refused(SendError),
    /// Lost with its connection: the backend may have acted.
    Failed(SendError),
    /// Answered with headers, then the backend went away before the answer was whole (and
    /// before any of it went to the client): the backend may have acted.
    Broke,
    /// Every connection is full of streams.
    Saturated,
    DeadlineExceeded,
}

impl Call {
    /// A stream goes through as it comes: no buffering, so no retry.
    async fn stream(mut self, mut request: http::Request<Body>) -> http::Response<Body> {
        if let Some(deadline) = self.deadline {
            deadline.apply_to(request.headers_mut());
        }
        let (attempt, _) = self.attempt(request, None).await;
        self.answer(attempt).await
    }

    async fn unary(mut self, request: http::Request<Body>) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        // The gRPC frame's 5-byte prefix comes on top of the message. A unary call always has
        // a deadline here, and it bounds the wait for the request too: a client that never
        // finishes its request must not hold a call slot for ever.
        let collect = Limited::new(body, self.method.max_request_bytes + 5).collect();
        let collected = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.instant(), collect).await,
            None => Ok(collect.await),
        };
        let Ok(collected) = collected else {
            return self.answer(Attempt::DeadlineExceeded).await;
        };
        let bytes = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return error_status(
                    Code::ResourceExhausted,
                    "MESSAGE_TOO_LARGE",
                    format!(
                        "the request is larger than the {} bytes {} accepts",
                        self.method.max_request_bytes, self.method.path
                    ),
                )
                .into_http();
            }
            // The client went away or broke the stream: nobody reads this answer.
            Err(_) => return Status::cancelled("the request did not arrive whole").into_http(),
        };
        self.upstream.retry_budget().deposit();
        let idempotent = match self.method.idempotency {
            Idempotency::Always => true,
            // A create with a request id answers a retry with its first result (AIP-155).
            Idempotency::WithRequestId => carries_request_id(&bytes),
            Idempotency::Never => false,
        };
        let mut attempts = 0;
        let mut avoid = None;
        loop {
            attempts += 1;
            let mut request = resend(&parts, Body::new(Full::new(bytes.clone())));
            if let Some(deadline) = self.deadline {
                deadline.apply_to(request.headers_mut());
            }
            let (attempt, endpoint) = self.attempt(request, avoid).await;
            // Read here, not when answering: an answer that breaks before it is whole has
            // sent the client nothing yet, so an idempotent call can still go elsewhere.
            let attempt = match attempt {
                // (Trailers only — grpc-status in the headers — is whole as it is.)
                Attempt::Answered(response)
                    if !http_body::Body::is_end_stream(response.body())
                        && !response.headers().contains_key(Status::GRPC_STATUS) =>
                {
                    let (parts, body) = response.into_parts();
                    match self.read_answer(body).await {
                        Some(body) => Attempt::Answered(http::Response::from_parts(parts, body)),
                        None => Attempt::Broke,
                    }
                }
                other => other,
            };
            let retry = match &attempt {
                Attempt::Refused(_) => true,
                Attempt::Answered(response) => idempotent && is_unavailable(response),
                // Lost with its connection: the backend may have acted, which only an
                // idempotent call can shrug off.
                Attempt::Failed(_) | Attempt::Broke => idempotent,
                Attempt::Saturated | Attempt::DeadlineExceeded => false,
            };
            // The next attempt goes to another replica, if there is one.
            avoid = endpoint;
            if !retry || attempts >= MAX_ATTEMPTS {
                return self.answer(attempt).await;
            }
            let backoff = backoff(attempts);
            let in_time = self
                .deadline
                .is_none_or(|deadline| deadline.remaining() > backoff);
            if !in_time || !self.upstream.retry_budget().withdraw() {
                return self.answer(attempt).await;
            }
            tracing::debug!(
                backend = self.service,
                method = self.method.path,
                attempts,
                ?backoff,
                "retrying"
            );
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sends `request` to a replica other than `avoid` (when there is one); how it went, and
    /// the replica it went to.
    async fn attempt(
        &self,
        request: http::Request<Body>,
        avoid: Option<SocketAddr>,
    ) -> (Attempt, Option<SocketAddr>) {
        let stream = self.method.shape == Shape::Stream;
        let deadline = self.deadline.map(Deadline::instant);
        let lease = match self.upstream.lease(stream, avoid, deadline).await {
            Ok(lease) => lease,
            Err(NoLease::Saturated) => return (Attempt::Saturated, None),
            Err(NoLease::Unavailable) if self.deadline_passed() => {
                return (Attempt::DeadlineExceeded, None);
            }
            Err(refusal @ NoLease::Unavailable) => return (Attempt::Refused(refusal.into()), None),
        };
        let endpoint = Some(lease.address());
        let call = self.telemetry.layer(lease.into_service()).oneshot(request);
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result,
                Err(_) => return (Attempt::DeadlineExceeded, endpoint),
            },
            None => call.await,
        };
        let attempt = match result {
            Ok(response) => Attempt::Answered(response),
            // The backend reset the call because its deadline passed: that is the deadline's
            // answer, not an outage (a client retrying on UNAVAILABLE would retry a call that
            // already timed out).
            Err(_) if self.deadline_passed() => Attempt::DeadlineExceeded,
            Err(error) if error.refused => Attempt::Refused(error),
            Err(error) => Attempt::Failed(error),
        };
        (attempt, endpoint)
    }

    fn deadline_passed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| deadline.remaining().is_zero())
    }

    async fn answer(&mut self, attempt: Attempt) -> http::Response<Body> {
        match attempt {
            Attempt::Answered(response) if http_body::Body::is_end_stream(response.body()) => {
                response
            }
            // A unary answer was read in `unary`; a stream's is relayed as it comes.
            Attempt::Answered(response) => match self.method.shape {
                Shape::Unary => response,
                Shape::Stream => {
                    let (parts, body) = response.into_parts();
                    http::Response::from_parts(parts, relay(body, Vec::new(), self.relay_policy()))
                }
            },
            Attempt::Broke => backend_broke(self.service).into_http(),
            Attempt::Refused(error) | Attempt::Failed(error) => {
                tracing::warn!(backend = self.service, %error, "backend call failed");
                error_status(
                    Code::Unavailable,
                    "BACKEND_UNAVAILABLE",
                    format!("{} is unavailable; retry shortly", self.service),
                )
                .into_http()
            }
            Attempt::Saturated => too_many_streams().into_http(),
            Attempt::DeadlineExceeded => shell::deadline_exceeded().into_http(),
        }
    }
}

impl Call {
    fn relay_policy(&self) -> RelayPolicy {
        RelayPolicy {
            deadline: self.deadline.map(Deadline::instant),
            stall_timeout: self.settings.stall_timeout,
            stalled_reason: self.method.stalled_reason,
            backend: self.service,
        }
    }

    /// Reads a unary answer within the deadline. Nearly every answer is whole after a frame
    /// or two and goes back as it was read: the backend's stream is then over, and nothing
    /// waits on the client. A larger one (a ListNotes page of big notes) is relayed from
    /// where the reading stopped, with the relay's bound on a client that does not read.
    /// `None`: the backend went away before the answer was whole, none of it sent on.
    async fn read_answer(&self, mut body: Body) -> Option<Body> {
        let mut read = Vec::new();
        let mut bytes = 0;
        loop {
            let frame = match self.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.instant(), body.frame()).await,
                None => Ok(body.frame().await),
            };
            let status = match frame {
                Ok(Some(Ok(frame))) => {
                    let last = frame.is_trailers();
                    bytes += frame.data_ref().map_or(0, bytes::Bytes::len);
                    read.push(frame);
                    if last {
                        return Some(Body::new(Buffered(read.into())));
                    }
                    if bytes > READ_AHEAD_BYTES {
                        return Some(relay(body, read, self.relay_policy()));
                    }
                    continue;
                }
                Err(_) => shell::deadline_exceeded(),
                Ok(None | Some(Err(_))) => return None,
            };
            read.extend(trailers(&status));
            return Some(Body::new(Buffered(read.into())));
        }
    }
}

/// The request `parts` came as, with `body`: its method, URI and headers, not the extensions
/// the server stack attached on the way in (nothing on the way out reads them).
fn resend(parts: &http::request::Parts, body: Body) -> http::Request<Body> {
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// After a forwarded DeleteUser: when users answered OK, the account's tokens are refused
/// here at once and its notes purged before the answer goes back (see `deletions`).
async fn account_deleted(
    response: http::Response<Body>,
    user_id: &str,
    deletions: &AccountDeletions,
) -> http::Response<Body> {
    let ok = |headers: &http::HeaderMap| {
        headers
            .get(Status::GRPC_STATUS)
            .is_some_and(|status| status.as_bytes() == b"0")
    };
    if response.headers().contains_key(Status::GRPC_STATUS) {
        // Trailers only: an error (an OK answer carries a message).
        if ok(response.headers()) {
            deletions.deleted(user_id).await;
        }
        return response;
    }
    // A DeleteUser answer is a few bytes, already read whole (`read_answer`).
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return backend_broke(USERS_SERVICE).into_http();
    };
    let trailers = collected.trailers().cloned();
    if trailers.as_ref().is_some_and(ok) {
        deletions.deleted(user_id).await;
    }
    let mut frames =
        std::collections::VecDeque::from([http_body::Frame::data(collected.to_bytes())]);
    frames.extend(trailers.map(http_body::Frame::trailers));
    http::Response::from_parts(parts, Body::new(Buffered(frames)))
}

/// How much of a unary answer is read before the rest is relayed instead.
const READ_AHEAD_BYTES: usize = 64 * 1024;

/// An answer read whole.
struct Buffered(std::collections::VecDeque<http_body::Frame<bytes::Bytes>>);

impl http_body::Body for Buffered {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// The answer when every connection to the backend is full of streams.
fn too_many_streams() -> Status {
    let mut details = tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
    details.set_error_info("TOO_MANY_STREAMS", shell::ERROR_DOMAIN, []);
    <Status as tonic_types::StatusExt>::with_error_details(
        Code::ResourceExhausted,
        "the gateway relays as many streams as it can: retry after the given delay (or on \
         another gateway replica)",
        details,
    )
}

/// Whether a gRPC frame holding a CreateNoteRequest carries a `request_id` (field 2, a
/// non-empty string), read off the wire format without decoding the note. A compressed or
/// malformed frame counts as without one: the call is then not retried, the safe side.
fn carries_request_id(frame: &[u8]) -> bool {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    const REQUEST_ID: u32 = 2;
    let Some((&0, rest)) = frame.split_first() else {
        return false;
    };
    let Some(mut message) = rest.get(4..) else {
        return false;
    };
    // The last occurrence of a field wins, as a decoder would read it.
    let mut carries = false;
    while !message.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut message) else {
            return false;
        };
        if tag == REQUEST_ID && wire_type == WireType::LengthDelimited {
            let Ok(length) = decode_varint(&mut message) else {
                return false;
            };
            let Some(rest) = usize::try_from(length)
                .ok()
                .and_then(|length| message.get(length..))
            else {
                return false;
            };
            carries = length > 0;
            message = rest;
        } else if skip_field(wire_type, tag, &mut message, DecodeContext::default()).is_err() {
            return false;
        }
    }
    carries
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A notes backend that answers UNAVAILABLE to its first `failures` calls, then OK; with
    /// `mid_answer`, its failures are answers cut off after their headers and a first frame
    /// (the stream reset, as when the process dies), and its OK answers carry a message.
    #[derive(Clone)]
    struct FlakyNotes {
        calls: Arc<AtomicU32>,
        failures: u32,
        mid_answer: bool,
    }

    impl NamedService for FlakyNotes {
        const NAME: &'static str = NOTES_SERVICE;
    }

    impl tower_service::Service<http::Request<Body>> for FlakyNotes {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let failing = call <= self.failures;
            if !self.mid_answer {
                let status = if failing {
                    Status::unavailable("not now")
                } else {
                    Status::new(Code::Ok, "")
                };
                return std::future::ready(Ok(status.into_http()));
            }
            let message = http_body::Frame::data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
            let last = if failing {
                Err(Status::internal("the process died"))
            } else {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                Ok(http_body::Frame::trailers(trailers))
            };
            // The end comes a moment later: the gateway has the headers by then.
            let frames = futures_util::StreamExt::chain(
                futures_util::stream::iter([Ok(message)]),
                futures_util::stream::once(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    last
                }),
            );
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(Body::new(http_body_util::StreamBody::new(frames)))
                .expect("response");
            std::future::ready(Ok(response))
        }
    }

    fn telemetry_layer(url: &str) -> telemetry::ClientLayer {
        let methods = telemetry::MethodTable::from_descriptor_sets(&[proto::FILE_DESCRIPTOR_SET])
            .expect("descriptors");
        telemetry::ClientLayer::new(&methods).for_server(url)
    }

    fn test_upstream(url: &str) -> Upstream {
        Upstream::new(crate::upstream::UpstreamConfig {
            service: NOTES_SERVICE,
            targets: crate::upstream::Target::parse_list(url).expect("url"),
            connect_timeout: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            dns_server: None,
            tls: None,
        })
    }

    struct Harness {
        forward: Forward<NotesRoute>,
        calls: Arc<AtomicU32>,
        token: String,
    }

    async fn harness(failures: u32) -> Harness {
        harness_with(failures, false).await
    }

    async fn harness_with(failures: u32, mid_answer: bool) -> Harness {
        let calls = Arc::new(AtomicU32::new(0));
        let backend = FlakyNotes {
            calls: calls.clone(),
            failures,
            mid_answer,
        };
        harness_over(backend, calls).await
    }

    /// The forwarder in front of `backend`, a notes service.
    async fn harness_over<S>(backend: S, calls: Arc<AtomicU32>) -> Harness
    where
        S: tower_service::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(NOTES_SERVICE, tonic_health::ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(backend)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let upstream = test_upstream(&url);
        let key = token::SigningKey::generate().expect("key");
        let settings = Arc::new(ForwardSettings::new(
            Arc::new(token::Verifier::new(&key.verifying_key())),
            Duration::from_secs(5),
            Duration::from_secs(10),
            crate::limits::RateLimits::start(&crate::limits::RateLimitConfig::default()),
            None,
        ));
        let token = token::Issuer::new(&key, Duration::from_secs(60))
            .user_token("01900000-0000-7000-8000-000000000001")
            .expect("token")
            .token;
        Harness {
            forward: Forward::new(upstream, telemetry_layer(&url), settings),
            calls,
            token,
        }
    }

    impl Harness {
        /// Calls `method` with a message of `size` bytes; returns the grpc-status answered.
        async fn call(&self, method: &str, size: usize) -> String {
            let mut frame = vec![0u8];
            frame.extend_from_slice(&u32::try_from(size).expect("size").to_be_bytes());
            frame.resize(5 + size, 0);
            self.send(method, frame).await
        }

        /// Calls `method` with `frame` as the request body; returns the grpc-status answered.
        async fn send(&self, method: &str, frame: Vec<u8>) -> String {
            let request = http::Request::post(format!("/notesuite.notes.v1.NotesService/{method}"))
                .header("content-type", "application/grpc")
                .header("authorization", format!("Bearer {}", self.token))
                .body(Body::new(Full::new(bytes::Bytes::from(frame))))
                .expect("request");
            let response = self
                .forward
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = |headers: &http::HeaderMap| {
                headers
                    .get("grpc-status")
                    .map(|status| status.to_str().expect("ascii").to_owned())
            };
            if let Some(status) = status(response.headers()) {
                return status;
            }
            match response.into_body().collect().await {
                Ok(whole) => whole.trailers().and_then(status).unwrap_or_default(),
                Err(_) => "broken".into(),
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    /// A notes backend that says when a call reaches it, then reads the request body to its
    /// end and says how it ended: whole (`true`) or cut off (`false`).
    #[derive(Clone)]
    struct RecordingNotes {
        started: tokio::sync::mpsc::UnboundedSender<()>,
        ended: tokio::sync::mpsc::UnboundedSender<bool>,
    }

    impl NamedService for RecordingNotes {
        const NAME: &'static str = NOTES_SERVICE;
    }

    impl tower_service::Service<http::Request<Body>> for RecordingNotes {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let _ = self.started.send(());
            let ended = self.ended.clone();
            Box::pin(async move {
                let whole = request.into_body().collect().await.is_ok();
                let _ = ended.send(whole);
                Ok(Status::new(Code::Ok, "").into_http())
            })
        }
    }

    #[tokio::test]
    async fn a_client_stream_whose_caller_went_away_is_cut_off_at_the_backend() {
        let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
        let (ended, mut endings) = tokio::sync::mpsc::unbounded_channel();
        let backend = RecordingNotes { started, ended };
        let harness = harness_over(backend, Arc::new(AtomicU32::new(0))).await;
        let (items, body) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, Status>>(4);
        let request = http::Request::post("/notesuite.notes.v1.NotesService/ImportNotes")
            .header("content-type", "application/grpc")
            .header("authorization", format!("Bearer {}", harness.token))
            .body(Body::new(http_body_util::StreamBody::new(
                tokio_stream::wrappers::ReceiverStream::new(body),
            )))
            .expect("request");
        let item = || {
            Ok(http_body::Frame::data(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 1, 0,
            ])))
        };
        items.send(item()).await.expect("first item");
        let call = tokio::spawn(harness.forward.clone().oneshot(request));
        // Once the call is under way (the backend waits for the rest of the import), its
        // caller goes away.
        tokio::time::timeout(Duration::from_secs(5), starts.recv())
            .await
            .expect("the call reaches the backend")
            .expect("a start");
        call.abort();
        let _ = call.await;
        // The client's side is still open (it may send the rest later, or never): the
        // backend's stream is reset now, not left open for the client's pace — and never
        // completed by what the client sends after its call was abandoned.
        let whole = tokio::time::timeout(Duration::from_secs(5), endings.recv())
            .await
            .expect("the backend's stream ended while the client's was still open")
            .expect("an ending");
        assert!(!whole, "the backend's stream was reset, not ended");
        drop(items);
    }

    #[tokio::test]
    async fn an_idempotent_call_answered_unavailable_is_retried() {
        let harness = harness(2).await;
        assert_eq!(harness.call("GetNote", 10).await, "0");
        assert_eq!(harness.calls(), 3, "two retries");
    }

    #[tokio::test]
    async fn an_answer_cut_off_before_it_is_whole_is_retried_only_when_idempotent() {
        let harness = harness_with(1, true).await;
        assert_eq!(harness.call("GetNote", 10).await, "0");
        assert_eq!(harness.calls(), 2, "sent again");
        let harness = harness_with(1, true).await;
        assert_eq!(
            harness.call("DeleteNote", 10).await,
            "14",
            "UNAVAILABLE: the backend may have acted"
        );
        assert_eq!(harness.calls(), 1, "not sent again");
    }

    #[tokio::test]
    async fn retries_stop_after_three_attempts() {
        let harness = harness(10).await;
        assert_eq!(harness.call("ListNotes", 10).await, "14");
        assert_eq!(harness.calls(), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_create_with_a_request_id_is_retried_and_one_without_is_not() {
        use prost::Message as _;
        let create = |request_id: &str| {
            let message = proto::notes::CreateNoteRequest {
                note: Some(proto::notes::Note {
                    title: "t".into(),
                    content: "c".repeat(100),
                    ..Default::default()
                }),
                request_id: request_id.into(),
            }
            .encode_to_vec();
            let mut frame = vec![0u8];
            frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
            frame.extend_from_slice(&message);
            frame
        };
        assert!(carries_request_id(&create(
            "0f8c2a4e-3b1d-4e5f-9a6b-7c8d9e0f1a2b"
        )));
        assert!(!carries_request_id(&create("")));
        assert!(!carries_request_id(&[1, 0, 0, 0, 0]), "compressed: unknown");
        assert!(
            !carries_request_id(&[0, 0, 0, 0, 3, 0x12, 0x05, b'a']),
            "truncated"
        );

        let with_id = harness(1).await;
        let frame = create("0f8c2a4e-3b1d-4e5f-9a6b-7c8d9e0f1a2b");
        assert_eq!(with_id.send("CreateNote", frame).await, "0");
        assert_eq!(with_id.calls(), 2, "retried once");
        let without = harness(1).await;
        assert_eq!(without.send("CreateNote", create("")).await, "14");
        assert_eq!(without.calls(), 1, "not retried");
    }

    #[tokio::test]
    async fn a_call_that_may_have_acted_is_not_retried() {
        for method in ["CreateNote", "UpdateNote", "DeleteNote"] {
            let harness = harness(1).await;
            assert_eq!(harness.call(method, 10).await, "14", "{method}");
            assert_eq!(harness.calls(), 1, "{method}");
        }
    }

    #[tokio::test]
    async fn a_request_above_the_methods_limit_never_reaches_the_backend() {
        let harness = harness(0).await;
        assert_eq!(harness.call("GetNote", 64 * 1024 + 1).await, "8");
        assert_eq!(harness.call("CreateNote", 320 * 1024).await, "0");
        assert_eq!(harness.call("CreateNote", 320 * 1024 + 1).await, "8");
        assert_eq!(harness.calls(), 1);
    }

    #[tokio::test]
    async fn a_backend_nobody_listens_at_is_unavailable_at_once_and_never_called() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address");
        let upstream = test_upstream(&format!("http://{closed}"));
        let refused = upstream.lease(false, None, None).await.err();
        assert_eq!(refused, Some(NoLease::Unavailable));
    }
}
