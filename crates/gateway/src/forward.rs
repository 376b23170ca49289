//! Forwarding the public methods of users and notes, without decoding them.
//!
//! The gateway serves `notesuite.users.v1.UsersService` and `notesuite.notes.v1.NotesService`
//! under their own names, so stubs generated for those services work against the gateway.
//! Each call is checked against a per-method policy and its token verified here; then the
//! HTTP/2 request goes to the backend as it came (the token included: the backends verify it
//! again, trusting no network) with its deadline rewritten to the remaining budget. Bodies
//! stream through untouched, so this works for any method shape and never pays for a decode.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower::ServiceExt as _;

use crate::Backend;
use crate::deadline::Deadline;
use crate::relay::{RelayPolicy, relay};
use shell::error_status;

/// Who may call a forwarded method through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Any caller with a valid user token.
    User,
    /// Not reachable through the gateway (service credential only, on the backend itself).
    Internal,
}

/// How long a forwarded call may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One answer: bounded by the client's deadline, or the gateway's default without one.
    Unary,
    /// A stream (watch, import): bounded by the client's deadline only. A watch is meant to
    /// stay open and an import answers only at its end, so a default would cut both short.
    Stream,
}

/// A forwarded method's policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Method {
    pub(crate) name: &'static str,
    pub(crate) access: Access,
    pub(crate) shape: Shape,
    /// The reason a client that stops reading the answer is told.
    pub(crate) stalled_reason: &'static str,
}

impl Method {
    const fn unary(name: &'static str, access: Access) -> Self {
        Self {
            name,
            access,
            shape: Shape::Unary,
            stalled_reason: "CLIENT_TOO_SLOW",
        }
    }

    const fn stream(name: &'static str, stalled_reason: &'static str) -> Self {
        Self {
            name,
            access: Access::User,
            shape: Shape::Stream,
            stalled_reason,
        }
    }
}

/// A backend service whose methods the gateway forwards.
pub(crate) trait Route: Send + Sync + 'static {
    const NAME: &'static str;
    /// The policy of every method; methods not listed are UNIMPLEMENTED.
    const METHODS: &'static [Method];
}

pub(crate) const USERS_SERVICE: &str = "notesuite.users.v1.UsersService";
pub(crate) const NOTES_SERVICE: &str = "notesuite.notes.v1.NotesService";

#[derive(Debug)]
pub(crate) struct UsersRoute;

impl Route for UsersRoute {
    const NAME: &'static str = USERS_SERVICE;
    const METHODS: &'static [Method] = &[
        Method::unary("GetUser", Access::User),
        Method::unary("UpdateUser", Access::User),
        Method::unary("DeleteUser", Access::User),
        Method::unary("CreateUser", Access::Internal),
        Method::unary("BatchGetUsers", Access::Internal),
        Method::unary("ListUsers", Access::Internal),
        Method::unary("VerifyCredentials", Access::Internal),
    ];
}

#[derive(Debug)]
pub(crate) struct NotesRoute;

impl Route for NotesRoute {
    const NAME: &'static str = NOTES_SERVICE;
    const METHODS: &'static [Method] = &[
        Method::unary("CreateNote", Access::User),
        Method::unary("GetNote", Access::User),
        Method::unary("ListNotes", Access::User),
        Method::unary("UpdateNote", Access::User),
        Method::unary("DeleteNote", Access::User),
        Method::stream("WatchNotes", "WATCH_TOO_SLOW"),
        // The answer comes at the end; the request stream's backpressure is HTTP/2's own.
        Method::stream("ImportNotes", "CLIENT_TOO_SLOW"),
    ];
}

/// The tonic service that forwards every call of route `R` to `backend`.
pub(crate) struct Forward<R> {
    backend: Backend,
    verifier: Arc<token::Verifier>,
    default_deadline: Duration,
    stall_timeout: Duration,
    _route: PhantomData<fn() -> R>,
}

impl<R> Forward<R> {
    pub(crate) fn new(
        backend: Backend,
        verifier: Arc<token::Verifier>,
        default_deadline: Duration,
        stall_timeout: Duration,
    ) -> Self {
        Self {
            backend,
            verifier,
            default_deadline,
            stall_timeout,
            _route: PhantomData,
        }
    }
}

impl<R> Clone for Forward<R> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            verifier: self.verifier.clone(),
            default_deadline: self.default_deadline,
            stall_timeout: self.stall_timeout,
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
        let method = match self.admit(&request) {
            Ok(method) => method,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        let deadline = match method.shape {
            Shape::Unary => Some(Deadline::from_headers(
                request.headers(),
                self.default_deadline,
            )),
            Shape::Stream => Deadline::from_client(request.headers()),
        };
        match deadline {
            Some(deadline) => deadline.apply_to(request.headers_mut()),
            // A malformed one means none; the backend must not read it otherwise.
            None => drop(request.headers_mut().remove(crate::deadline::GRPC_TIMEOUT)),
        }
        // `host` is HTTP/1 only; the channel sets the backend's `:authority`.
        request.headers_mut().remove(http::header::HOST);
        let backend = self.backend.clone();
        let policy = RelayPolicy {
            deadline: deadline.map(Deadline::instant),
            stall_timeout: self.stall_timeout,
            stalled_reason: method.stalled_reason,
            backend: R::NAME,
        };
        Box::pin(async move {
            let response = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline.instant(), backend.oneshot(request)).await
                }
                None => Ok(backend.oneshot(request).await),
            };
            let deadline_passed =
                || deadline.is_some_and(|deadline| deadline.remaining().is_zero());
            Ok(match response {
                Ok(Ok(response)) if http_body::Body::is_end_stream(response.body()) => response,
                Ok(Ok(response)) => response.map(|body| relay(body, policy)),
                // The backend reset the call because its deadline passed: that is the
                // deadline's answer, not an outage (a client retrying on UNAVAILABLE would
                // retry a call that already timed out).
                Ok(Err(_)) if deadline_passed() => error_status(
                    Code::DeadlineExceeded,
                    "DEADLINE_EXCEEDED",
                    format!("{} did not answer before the deadline", R::NAME),
                )
                .into_http(),
                Ok(Err(error)) => {
                    tracing::warn!(backend = R::NAME, %error, "backend call failed");
                    error_status(
                        Code::Unavailable,
                        "BACKEND_UNAVAILABLE",
                        format!("{} is unavailable; retry shortly", R::NAME),
                    )
                    .into_http()
                }
                Err(_) => error_status(
                    Code::DeadlineExceeded,
                    "DEADLINE_EXCEEDED",
                    format!("{} did not answer before the deadline", R::NAME),
                )
                .into_http(),
            })
        })
    }
}

impl<R: Route> Forward<R> {
    /// Applies the method's policy and verifies the caller's token.
    fn admit(&self, request: &http::Request<Body>) -> Result<&'static Method, Status> {
        let name = request.uri().path().rsplit('/').next().unwrap_or_default();
        let Some(method) = R::METHODS.iter().find(|method| method.name == name) else {
            return Err(Status::unimplemented(format!(
                "{}/{name} is not served",
                R::NAME
            )));
        };
        match method.access {
            Access::Internal => Err(error_status(
                Code::PermissionDenied,
                "METHOD_NOT_PUBLIC",
                format!(
                    "{}/{name} is internal and not reachable through the gateway",
                    R::NAME
                ),
            )),
            Access::User => match self.verifier.authenticate(request.headers())? {
                token::Principal::User { .. } => Ok(method),
                token::Principal::Service { .. } => Err(error_status(
                    Code::PermissionDenied,
                    "USER_CREDENTIAL_REQUIRED",
                    "this method acts for a user: call it with a user's access token",
                )),
            },
        }
    }
}
