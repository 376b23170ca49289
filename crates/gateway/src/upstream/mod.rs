//! The gateway's client for one backend service: every replica found, calls balanced over the
//! ready ones, failing ones ejected.
//!
//! - **Discovery** ([`discovery`]): the backend's `--*-url` names one or more `http://HOST:PORT`;
//!   names are looked up again every `--resolve-interval` and when a connection fails, so a
//!   Kubernetes headless Service's pods come and go without a restart.
//! - **Endpoints** ([`endpoint`]): a task per replica keeps it connected (more connections when
//!   one is full, a new one after GOAWAY), admits a connection only after a health check on it,
//!   and ejects a replica that fails, probing it back with backoff.
//! - **Balancing**: power of two choices on calls in flight, per call, over the connected
//!   replicas that are not ejected (all connected ones when every one is ejected: trying beats
//!   refusing).
//!
//! A call is sent on a [`Lease`]: the replica and connection picked for it, counted in flight
//! until its answer ends. Sending goes straight to hyper's HTTP/2 connection: no worker task
//! and no queue in between (tonic's `Channel` passes every call through a `Buffer` task).
//!
//! tonic's `Channel::balance_channel` was not used: it reports a constant load (random picks),
//! runs every call through one worker task and keeps dead endpoints as ready
//! (grpc/grpc-rust#2839); `ginepro` targets an older tonic. DNS is `hickory-resolver`: lookups
//! are async (getaddrinfo would take a blocking thread each) and it can be pointed at a given
//! server (`--dns-server`).

mod discovery;
mod endpoint;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;

pub(crate) use discovery::Target;
use endpoint::{Connection, Endpoint, Outcome};

/// How the upstream connects and looks replicas up.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamConfig {
    /// Health name the replicas answer SERVING to when they take calls.
    pub(crate) service: &'static str,
    pub(crate) targets: Vec<Target>,
    pub(crate) connect_timeout: Duration,
    pub(crate) resolve_interval: Duration,
    /// HTTP/2 PING interval, and how long an unanswered one waits before the connection is
    /// given up: a replica that stopped answering is found within twice this.
    pub(crate) keepalive: Duration,
    pub(crate) dns_server: Option<SocketAddr>,
}

/// What the endpoint tasks share with the upstream.
struct Settings {
    service: &'static str,
    connect_timeout: Duration,
    keepalive: Duration,
    /// Woken when a connection opens or fails: calls waiting for a ready replica look again.
    changed: tokio::sync::Notify,
    /// Asks discovery to look the names up now.
    resolve_now: Arc<tokio::sync::Notify>,
}

struct Shared {
    settings: Arc<Settings>,
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    /// Whether discovery has answered once: until then, calls wait for it.
    discovered: std::sync::atomic::AtomicBool,
    resolve_now: Arc<tokio::sync::Notify>,
    /// Cancelled when the upstream is dropped: its tasks end.
    closed: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.cancel();
        for endpoint in read(&self.endpoints).iter() {
            endpoint.removed.cancel();
        }
    }
}

/// A backend's replicas, as one tower service (for tonic clients) and as leases (for the
/// forwarder, which retries on another replica).
#[derive(Clone)]
pub(crate) struct Upstream {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("service", &self.shared.settings.service)
            .finish_non_exhaustive()
    }
}

/// Why no lease was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoLease {
    #[error("no replica of the backend is reachable")]
    Unavailable,
    /// Every connection of every replica is full of streams.
    #[error("every connection to the backend is full")]
    Saturated,
}

impl Upstream {
    /// Starts discovering and connecting in the background; must be called within a Tokio
    /// runtime.
    pub(crate) fn new(config: UpstreamConfig) -> Self {
        let resolve_now = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new(Shared {
            settings: Arc::new(Settings {
                service: config.service,
                connect_timeout: config.connect_timeout,
                keepalive: config.keepalive,
                changed: tokio::sync::Notify::new(),
                resolve_now: resolve_now.clone(),
            }),
            endpoints: RwLock::new(Arc::from(Vec::new())),
            discovered: std::sync::atomic::AtomicBool::new(false),
            resolve_now,
            closed: CancellationToken::new(),
        });
        tokio::spawn(discovery::discover(
            Arc::downgrade(&shared),
            config.targets,
            config.resolve_interval,
            config.dns_server,
        ));
        Self { shared }
    }

    /// A replica and connection for one call, waiting (until `deadline`, or the connect
    /// timeout) while replicas are still being found or connected. A retry passes the replica
    /// that failed as `avoid`; it is used only when it is the only one left.
    pub(crate) async fn lease(
        &self,
        stream: bool,
        avoid: Option<SocketAddr>,
        deadline: Option<Instant>,
    ) -> Result<Lease, NoLease> {
        let settings = &self.shared.settings;
        let give_up = Instant::now() + settings.connect_timeout;
        let give_up = deadline.map_or(give_up, |deadline| deadline.min(give_up));
        loop {
            let changed = settings.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_lease(stream, avoid) {
                Ok(lease) => return Ok(lease),
                Err(Some(refusal)) => return Err(refusal),
                // Nothing connected yet, but connecting: wait for news.
                Err(None) => {
                    if tokio::time::timeout_at(give_up, changed).await.is_err() {
                        return Err(NoLease::Unavailable);
                    }
                }
            }
        }
    }

    /// A lease now; `Err(None)` when one may come soon.
    fn try_lease(&self, stream: bool, avoid: Option<SocketAddr>) -> Result<Lease, Option<NoLease>> {
        let endpoints = read(&self.shared.endpoints).clone();
        let now = Instant::now();
        let connected = |endpoint: &&Arc<Endpoint>| endpoint.is_connected();
        let mut candidates: Vec<&Arc<Endpoint>> = endpoints
            .iter()
            .filter(connected)
            .filter(|endpoint| Some(endpoint.address) != avoid && !endpoint.is_ejected(now))
            .collect();
        if candidates.is_empty() {
            // Every replica ejected, or only the one to avoid: better it than nothing.
            candidates = endpoints.iter().filter(connected).collect();
        }
        // Power of two choices: the less busy of two picked at random.
        let chosen = match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            count => {
                let first = fastrand::usize(..count);
                let second = (first + 1 + fastrand::usize(..count - 1)) % count;
                let (a, b) = (candidates[first], candidates[second]);
                Some(
                    if a.in_flight.load(Ordering::Relaxed) <= b.in_flight.load(Ordering::Relaxed) {
                        a
                    } else {
                        b
                    },
                )
            }
        };
        if let Some(endpoint) = chosen {
            if let Some(connection) = endpoint.connection(stream) {
                return Ok(Lease::new(
                    endpoint.clone(),
                    connection,
                    self.shared.settings.clone(),
                ));
            }
            // That one is full: any other with room.
            for endpoint in &candidates {
                if let Some(connection) = endpoint.connection(stream) {
                    return Ok(Lease::new(
                        (*endpoint).clone(),
                        connection,
                        self.shared.settings.clone(),
                    ));
                }
            }
            return Err(Some(NoLease::Saturated));
        }
        if !self.shared.discovered.load(Ordering::Acquire) {
            return Err(None);
        }
        // Replicas known but none connected: wait while one may still connect (a fresh one,
        // or an ejected one about to be probed); give up at once when all failed just now.
        let connecting = endpoints.iter().any(|endpoint| !endpoint.is_ejected(now));
        if connecting {
            Err(None)
        } else {
            Err(Some(NoLease::Unavailable))
        }
    }
}

impl Shared {
    /// Makes the endpoint set `addresses`: new ones start connecting, gone ones stop taking
    /// calls (those under way finish on their connections).
    fn set_endpoints(&self, addresses: &BTreeSet<SocketAddr>) {
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unchanged = endpoints.len() == addresses.len()
            && endpoints
                .iter()
                .all(|endpoint| addresses.contains(&endpoint.address));
        if !unchanged {
            let mut kept = Vec::with_capacity(addresses.len());
            for endpoint in endpoints.iter() {
                if addresses.contains(&endpoint.address) {
                    kept.push(endpoint.clone());
                } else {
                    tracing::info!(
                        backend = self.settings.service,
                        endpoint = %endpoint.address,
                        "endpoint left the backend's address list"
                    );
                    endpoint.removed.cancel();
                }
            }
            for address in addresses {
                if kept.iter().any(|endpoint| endpoint.address == *address) {
                    continue;
                }
                let Ok(authority) = http::uri::Authority::try_from(address.to_string()) else {
                    continue;
                };
                tracing::info!(
                    backend = self.settings.service,
                    endpoint = %address,
                    "endpoint joined the backend's address list"
                );
                let endpoint = Arc::new(Endpoint::new(*address, authority));
                tokio::spawn(endpoint.clone().maintain(self.settings.clone()));
                kept.push(endpoint);
            }
            *endpoints = Arc::from(kept);
        }
        drop(endpoints);
        self.discovered.store(true, Ordering::Release);
        self.settings.changed.notify_waiters();
    }
}

/// One call's replica and connection, counted in flight until dropped.
pub(crate) struct Lease {
    endpoint: Arc<Endpoint>,
    connection: Arc<Connection>,
    settings: Arc<Settings>,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>, connection: Arc<Connection>, settings: Arc<Settings>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        connection.in_flight().fetch_add(1, Ordering::Relaxed);
        Self {
            endpoint,
            connection,
            settings,
        }
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.endpoint.address
    }

    /// The lease as a one-call tower service, for the client telemetry layer to wrap.
    pub(crate) fn into_service(self) -> LeasedCall {
        LeasedCall(Some(self))
    }

    /// Sends `request` on the leased connection. The lease moves into the answer's body, so
    /// that the call counts in flight until its answer ends.
    pub(crate) async fn send(
        self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, SendError> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().cloned();
        let mut uri = http::Uri::builder()
            .scheme("http")
            .authority(self.endpoint.authority.clone());
        if let Some(path) = path {
            uri = uri.path_and_query(path);
        }
        if let Ok(uri) = uri.build() {
            parts.uri = uri;
        }
        let request = http::Request::from_parts(parts, body);
        match self.connection.sender().send_request(request).await {
            Ok(response) => {
                let unavailable = response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|status| status.as_bytes() == b"14");
                self.record(if unavailable {
                    Outcome::Failed
                } else {
                    Outcome::Answered
                });
                Ok(response.map(|body| {
                    Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                        let _held = &self;
                        frame
                    }))
                }))
            }
            Err(error) => {
                let refused = never_reached_the_backend(&error);
                self.record(if refused {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                });
                Err(SendError {
                    refused,
                    endpoint: Some(self.endpoint.address),
                    source: Box::new(error),
                })
            }
        }
    }

    fn record(&self, outcome: Outcome) {
        self.endpoint
            .record(&self.connection, outcome, &self.settings);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.connection.in_flight().fetch_sub(1, Ordering::Relaxed);
    }
}

/// A call that got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .endpoint.map_or_else(|| "no endpoint".to_owned(), |endpoint| endpoint.to_string()))]
pub(crate) struct SendError {
    /// The backend never saw the request: safe to send again, whatever the method.
    pub(crate) refused: bool,
    /// The replica it was sent to, if any.
    pub(crate) endpoint: Option<SocketAddr>,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl From<NoLease> for SendError {
    /// No lease could be had: nothing was sent.
    fn from(refusal: NoLease) -> Self {
        Self {
            refused: true,
            endpoint: None,
            source: Box::new(refusal),
        }
    }
}

/// Whether `error` says the request never reached the backend's handler: the connection had
/// closed before sending it, or HTTP/2 refused the stream (REFUSED_STREAM, or a GOAWAY whose
/// last stream id excluded it) — the cases HTTP/2 itself says are safe to retry. A stream the
/// backend had accepted and lost with its connection fails otherwise, and is not retried
/// unless the method is idempotent.
fn never_reached_the_backend(error: &hyper::Error) -> bool {
    if error.is_canceled() {
        // hyper cancels requests a connection closed before sending.
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>()
            && (h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || h2.is_go_away() && h2.is_remote())
        {
            return true;
        }
        source = error.source();
    }
    false
}

impl tower_service::Service<http::Request<Body>> for Upstream {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// One attempt, on the least busy of two replicas. The gateway's own calls (GetProfile's
    /// fan-out, sign-up and login) go this way; their deadlines come from tonic's client.
    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move {
            let lease = upstream
                .lease(false, None, None)
                .await
                .map_err(SendError::from)?;
            Ok(lease.send(request).await?)
        })
    }
}

/// A lease as a tower service that sends one call.
pub(crate) struct LeasedCall(Option<Lease>);

impl tower_service::Service<http::Request<Body>> for LeasedCall {
    type Response = http::Response<Body>;
    type Error = SendError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.0.take() {
            Some(lease) => Box::pin(lease.send(request)),
            // A second call on one lease: it has no connection left to go on.
            None => Box::pin(std::future::ready(Err(NoLease::Unavailable.into()))),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
