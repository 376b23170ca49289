//! The gateway's client for one backend service: every replica found, calls balanced over the
//! ready ones, failing ones ejected.
//!
//! - **Discovery** ([`discovery`]): the backend's `--*-url` names one or more `http://HOST:PORT`
//!   (or `https://`: TLS, the certificate checked against HOST, the gateway's own presented);
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
//! until its answer ends. The call opens its HTTP/2 stream itself, in the caller's task
//! ([`stream`]): no worker task and no queue in between (tonic's `Channel` passes every call
//! through a `Buffer` task, hyper's client through the connection's task and a task per call).
//!
//! tonic's `Channel::balance_channel` was not used: it reports a constant load (random picks),
//! runs every call through one worker task and keeps dead endpoints as ready
//! (grpc/grpc-rust#2839); `ginepro` targets an older tonic. DNS is `hickory-resolver`: lookups
//! are async (getaddrinfo would take a blocking thread each) and it can be pointed at a given
//! server (`--dns-server`).

mod discovery;
mod endpoint;
pub(crate) mod retry;
mod stream;

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
    /// How `https://` targets are connected to: the CA bundle their certificates must chain
    /// to, and the certificate the gateway presents (reloaded: new connections use the
    /// configuration in force).
    pub(crate) tls: Option<tls::ClientTls>,
}

/// What the endpoint tasks share with the upstream.
struct Settings {
    service: &'static str,
    connect_timeout: Duration,
    keepalive: Duration,
    tls: Option<tls::ClientTls>,
    /// Woken when a connection opens or fails: calls waiting for a ready replica look again.
    changed: tokio::sync::Notify,
    /// Asks discovery to look the names up now.
    resolve_now: Arc<tokio::sync::Notify>,
}

struct Shared {
    settings: Arc<Settings>,
    retry_budget: tower::retry::budget::TpsBudget,
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    /// Whether discovery has answered once: until then, calls wait for it.
    discovered: std::sync::atomic::AtomicBool,
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
        let shared = Arc::new(Shared {
            settings: Arc::new(Settings {
                service: config.service,
                connect_timeout: config.connect_timeout,
                keepalive: config.keepalive,
                tls: config.tls,
                changed: tokio::sync::Notify::new(),
                resolve_now: Arc::new(tokio::sync::Notify::new()),
            }),
            retry_budget: retry::budget(),
            endpoints: RwLock::new(Arc::from(Vec::new())),
            discovered: std::sync::atomic::AtomicBool::new(false),
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

    /// The budget every retry to this backend draws on.
    pub(crate) fn retry_budget(&self) -> &tower::retry::budget::TpsBudget {
        &self.shared.retry_budget
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
        let mut probed = false;
        loop {
            let changed = settings.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_lease(stream, avoid) {
                Ok(lease) => return Ok(lease),
                // Every replica failed to connect just now: ask each to try again at once
                // (a backend that was starting may be up now) and wait for that round.
                Err(Some(NoLease::Unavailable)) if !probed => {
                    probed = true;
                    for endpoint in read(&self.shared.endpoints).iter() {
                        endpoint.probe_now();
                    }
                    if tokio::time::timeout_at(give_up, changed).await.is_err() {
                        return Err(NoLease::Unavailable);
                    }
                }
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
    fn set_endpoints(&self, addresses: &discovery::Addresses) {
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unchanged = endpoints.len() == addresses.len()
            && endpoints
                .iter()
                .all(|endpoint| addresses.contains_key(&endpoint.address));
        if !unchanged {
            let mut kept = Vec::with_capacity(addresses.len());
            for endpoint in endpoints.iter() {
                if addresses.contains_key(&endpoint.address) {
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
            for (address, server_name) in addresses {
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
                let endpoint = Arc::new(Endpoint::new(*address, authority, server_name.clone()));
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
            .scheme(self.endpoint.scheme())
            .authority(self.endpoint.authority.clone());
        if let Some(path) = path {
            uri = uri.path_and_query(path);
        }
        if let Ok(uri) = uri.build() {
            parts.uri = uri;
        }
        // Whatever HTTP version the caller spoke, this goes out as HTTP/2.
        parts.version = http::Version::HTTP_2;
        let head = http::Request::from_parts(parts, ());
        match stream::send(self.connection.sender(), head, body).await {
            Ok(response) => {
                self.record(if retry::is_unavailable(&response) {
                    Outcome::Failed
                } else {
                    Outcome::Answered
                });
                Ok(response.map(|recv| stream::answer_body(recv, self)))
            }
            Err(error) => {
                let refused = error.never_processed();
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

impl tower_service::Service<http::Request<Body>> for Upstream {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The gateway's own calls (GetProfile's fan-out, sign-up, login): sent to the least busy
    /// of two replicas, and again to another when refused, or when lost or answered
    /// UNAVAILABLE if the policy table says the method is idempotent. Their deadlines come
    /// from the gateway's API, which sets them on every call.
    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move { upstream.call_with_retries(request).await })
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

impl Upstream {
    async fn call_with_retries(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
        use http_body_util::BodyExt as _;
        use tower::retry::budget::Budget as _;
        let idempotent = crate::policy::lookup(request.uri().path())
            .is_some_and(|method| method.idempotency == crate::policy::Idempotency::Always);
        let (parts, body) = request.into_parts();
        // The gateway's own requests are small messages it encoded itself.
        let bytes = body.collect().await?.to_bytes();
        self.retry_budget().deposit();
        let mut avoid = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = attempts >= retry::MAX_ATTEMPTS;
            let request = http::Request::from_parts(
                parts.clone(),
                Body::new(http_body_util::Full::new(bytes.clone())),
            );
            let sent = match self.lease(false, avoid, None).await {
                Ok(lease) => {
                    avoid = Some(lease.address());
                    lease.send(request).await
                }
                Err(refusal) => Err(SendError::from(refusal)),
            };
            let retry = match &sent {
                Ok(response) => idempotent && retry::is_unavailable(response),
                Err(error) => error.refused || idempotent,
            };
            if !retry || last || !self.retry_budget().withdraw() {
                return Ok(sent?);
            }
            tokio::time::sleep(retry::backoff(attempts)).await;
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use tonic::server::NamedService;

    use super::*;

    const SERVICE: &str = "notesuite.notes.v1.NotesService";

    /// A replica answering OK to everything, counting the calls.
    #[derive(Clone)]
    struct Replica {
        calls: Arc<AtomicU32>,
    }

    impl NamedService for Replica {
        const NAME: &'static str = SERVICE;
    }

    impl tower_service::Service<http::Request<Body>> for Replica {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(tonic::Status::new(tonic::Code::Ok, "").into_http()))
        }
    }

    struct Running {
        address: SocketAddr,
        calls: Arc<AtomicU32>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }

        /// Drains as a replica does on SIGTERM: GOAWAY, then the calls under way finish.
        async fn drain(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        }
    }

    async fn replica() -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        replica_on(listener).await
    }

    /// A replica serving on `listener`.
    async fn replica_on(listener: tokio::net::TcpListener) -> Running {
        let address = listener.local_addr().expect("address");
        let calls = Arc::new(AtomicU32::new(0));
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
            .await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let calls = calls.clone();
            async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(health_service)
                    .add_service(Replica { calls })
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await;
            }
        });
        Running {
            address,
            calls,
            stop: Some(stop),
            server,
        }
    }

    fn upstream(addresses: &[SocketAddr]) -> Upstream {
        let list = addresses
            .iter()
            .map(|address| format!("http://{address}"))
            .collect::<Vec<_>>()
            .join(",");
        upstream_to(&list, None)
    }

    fn upstream_to(list: &str, tls: Option<tls::ClientTls>) -> Upstream {
        Upstream::new(UpstreamConfig {
            service: SERVICE,
            targets: Target::parse_list(list).expect("targets"),
            connect_timeout: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            dns_server: None,
            tls,
        })
    }

    /// A replica served by the shell over mTLS with the certificate in `dir`: clients need a
    /// certificate of `dir`'s CA bundle.
    async fn tls_replica(dir: &tls::testing::SecretDir) -> (shell::Spawned, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let definition = shell::ServiceDefinition {
            name: SERVICE,
            routes: tonic::service::Routes::new(Replica {
                calls: calls.clone(),
            }),
            advertised_services: vec![],
            descriptor_sets: vec![],
            readiness: None,
            capacity: None,
        };
        let config = shell::ServeConfig {
            drain_delay: Duration::ZERO,
            tls: shell::TlsServeConfig {
                tls_cert: Some(dir.cert()),
                tls_key: Some(dir.key()),
                tls_client_ca: Some(dir.ca()),
            },
            ..shell::ServeConfig::default()
        };
        let spawned = shell::spawn(definition, config).await.expect("serve");
        (spawned, calls)
    }

    #[tokio::test]
    async fn an_https_backend_is_called_only_when_its_certificate_names_the_url_host() {
        use tls::testing::{SecretDir, TestCa};
        let ca = TestCa::new("internal CA");
        let gateway_dir = SecretDir::new();
        gateway_dir.write(&[&ca], &ca.issue(&["gateway"], 2031));
        let client = tls::ClientTls::load(
            &gateway_dir.ca(),
            Some((&gateway_dir.cert(), &gateway_dir.key())),
        )
        .expect("client tls");

        // Signed by the trusted CA, but for another name than the URL's host.
        let wrong_dir = SecretDir::new();
        wrong_dir.write(&[&ca], &ca.issue(&["users.notesuite.svc"], 2031));
        let (wrong, wrong_calls) = tls_replica(&wrong_dir).await;
        let upstream = upstream_to(
            &format!("https://127.0.0.1:{}", wrong.address.port()),
            Some(client.clone()),
        );
        assert_eq!(
            upstream.lease(false, None, None).await.err(),
            Some(NoLease::Unavailable),
            "a replica whose certificate names another host was connected to"
        );
        assert_eq!(wrong_calls.load(Ordering::SeqCst), 0);

        // The URL's host, as an IP SAN and as a DNS name.
        let right_dir = SecretDir::new();
        right_dir.write(&[&ca], &ca.issue(&["localhost", "127.0.0.1"], 2031));
        let (right, right_calls) = tls_replica(&right_dir).await;
        for url in [
            format!("https://127.0.0.1:{}", right.address.port()),
            format!("https://localhost:{}", right.address.port()),
        ] {
            let upstream = upstream_to(&url, Some(client.clone()));
            for _ in 0..5 {
                call(&upstream).await.expect("answered over mTLS");
            }
        }
        assert_eq!(right_calls.load(Ordering::SeqCst), 10);

        // Without the gateway's certificate the replica refuses the connection.
        let anonymous = tls::ClientTls::load(&gateway_dir.ca(), None).expect("client tls");
        let upstream = upstream_to(
            &format!("https://127.0.0.1:{}", right.address.port()),
            Some(anonymous),
        );
        assert!(call(&upstream).await.is_err());
        assert_eq!(right_calls.load(Ordering::SeqCst), 10);
    }

    fn request() -> http::Request<Body> {
        http::Request::post(format!("/{SERVICE}/GetNote"))
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .expect("request")
    }

    /// One call, as the forwarder makes it: retried on another replica when refused.
    async fn call(upstream: &Upstream) -> Result<(), String> {
        let mut avoid = None;
        for _ in 0..3 {
            let lease = upstream
                .lease(false, avoid, None)
                .await
                .map_err(|refusal| refusal.to_string())?;
            avoid = Some(lease.address());
            match lease.send(request()).await {
                Ok(response) => {
                    let status = response.headers().get("grpc-status").cloned();
                    return match status {
                        Some(status) if status == "0" => Ok(()),
                        other => Err(format!("grpc-status {other:?}")),
                    };
                }
                Err(error) if error.refused => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("refused three times".into())
    }

    #[tokio::test]
    async fn calls_are_spread_over_every_replica() {
        let (a, b) = (replica().await, replica().await);
        let upstream = upstream(&[a.address, b.address]);
        for _ in 0..200 {
            call(&upstream).await.expect("answered");
        }
        assert_eq!(a.calls() + b.calls(), 200);
        assert!(
            a.calls() >= 40 && b.calls() >= 40,
            "{} and {}",
            a.calls(),
            b.calls()
        );
    }

    #[tokio::test]
    async fn a_draining_replica_gets_no_new_calls_and_none_fails() {
        let (a, b) = (replica().await, replica().await);
        let upstream = upstream(&[a.address, b.address]);
        for _ in 0..20 {
            call(&upstream).await.expect("answered");
        }
        let b_calls = b.calls();
        a.drain().await;
        for _ in 0..100 {
            call(&upstream)
                .await
                .expect("answered by the other replica");
        }
        assert_eq!(b.calls(), b_calls + 100);
    }

    #[tokio::test]
    async fn a_replica_that_accepts_connections_but_never_answers_gets_no_call() {
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let hole_address = hole.local_addr().expect("address");
        // Accepts, holds the connections, never reads or writes.
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hole.accept().await {
                held.push(socket);
            }
        });
        let good = replica().await;
        let upstream = upstream(&[hole_address, good.address]);
        for _ in 0..50 {
            tokio::time::timeout(Duration::from_secs(10), call(&upstream))
                .await
                .expect("not held by the black hole")
                .expect("answered");
        }
        assert_eq!(good.calls(), 50);
        held.abort();
    }

    #[tokio::test]
    async fn a_backend_that_starts_after_the_gateway_serves_the_first_call_made_once_it_is_up() {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address");
        let upstream = upstream(&[address]);
        assert_eq!(
            upstream.lease(false, None, None).await.err(),
            Some(NoLease::Unavailable),
            "nothing listens yet"
        );
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("rebind");
        let back = replica_on(listener).await;
        // Not after the ejection's backoff: the call asks for a connection attempt at once.
        call(&upstream).await.expect("the first call is served");
        assert_eq!(back.calls(), 1);
    }

    #[tokio::test]
    async fn a_replica_that_went_away_is_ejected_and_probed_back() {
        let (a, b) = (replica().await, replica().await);
        let a_address = a.address;
        let upstream = upstream(&[a.address, b.address]);
        call(&upstream).await.expect("answered");
        a.drain().await;
        for _ in 0..50 {
            call(&upstream)
                .await
                .expect("answered by the other replica");
        }
        // The replica comes back at the same address: it is probed and gets calls again.
        let listener = loop {
            if let Ok(listener) = tokio::net::TcpListener::bind(a_address).await {
                break listener;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let back = replica_on(listener).await;
        let served = tokio::time::timeout(Duration::from_secs(60), async {
            while back.calls() == 0 {
                call(&upstream).await.expect("answered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(served.is_ok(), "the replica never got a call again");
        drop(b);
    }
}
