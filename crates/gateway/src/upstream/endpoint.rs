//! One replica of a backend: its HTTP/2 connections, the calls it carries, and whether it is
//! fit to take more.
//!
//! A task per endpoint keeps it connected: one connection, more when every one is full (up to
//! [`MAX_CONNECTIONS`]), a new one when the backend closes one (GOAWAY on `max_connection_age`
//! or a drain). A connection only takes calls once the backend has answered a health check on
//! it: a process that accepts TCP but never speaks HTTP/2 (hung, or a black hole) never gets a
//! call, and neither does one reporting NOT_SERVING (starting, or draining). An endpoint whose
//! connections fail, or whose calls keep failing UNAVAILABLE, is ejected for a backoff that
//! doubles while it keeps failing, then probed back by connecting again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http_body_util::{BodyExt as _, Full};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;

use super::Settings;

/// Connections to one replica at most.
pub(super) const MAX_CONNECTIONS: usize = 8;

/// Calls a full connection keeps for unary calls: streams (watches last hours) may not take
/// these, and a connection is opened beside it when they are taken.
const STREAMS_MARGIN: usize = 24;

/// UNAVAILABLE answers or lost calls in a row that eject an endpoint.
const FAILURES_TO_EJECT: u32 = 3;
const FIRST_EJECTION: Duration = Duration::from_millis(250);
/// Connection attempts a waiting call can ask for come at least this far apart.
const MIN_PROBE_GAP: Duration = Duration::from_millis(100);
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// Flow-control window of each call on a backend connection: what the backend may send that
/// the gateway's client has not read yet.
const STREAM_WINDOW: u32 = 64 * 1024;
/// Calls one backend connection carries at once: the backends' `--max-concurrent-streams`
/// default, which they announce in their HTTP/2 settings. The connection window leaves room
/// for every call's full window, so that clients that stop reading can never use up the
/// window the others need (6 stalled ~1 MiB ListNotes used to freeze every user). The window
/// is a bound, not an allocation: bytes are held only while a client stalls.
const BACKEND_STREAMS: u32 = 1024;

pub(super) struct Endpoint {
    pub(super) address: SocketAddr,
    /// `host:port` of the request URIs sent to it.
    pub(super) authority: http::uri::Authority,
    /// For a replica serving TLS: the name its certificate must carry (its target's host, not
    /// this address).
    server_name: Option<tls::ServerName<'static>>,
    connections: Mutex<Vec<Arc<Connection>>>,
    /// Calls on this endpoint now, over all its connections: what balancing compares.
    pub(super) in_flight: AtomicUsize,
    failures: AtomicU32,
    ejection: Mutex<Ejection>,
    /// Asks the endpoint's task for another connection (or to replace a closed one).
    more: tokio::sync::Notify,
    /// Asks the endpoint's task to try connecting now rather than at the end of its backoff:
    /// a call is waiting and no replica is connected.
    probe: tokio::sync::Notify,
    pub(super) removed: CancellationToken,
}

#[derive(Default)]
struct Ejection {
    until: Option<Instant>,
    /// The last ejection's length; the next one doubles it.
    last: Option<Duration>,
}

pub(super) struct Connection {
    sender: SendRequest<Bytes>,
    in_flight: AtomicUsize,
    /// Calls it carries before it counts as full: the backends' default
    /// `--max-concurrent-streams` (a backend announcing fewer makes HTTP/2 queue the rest).
    capacity: usize,
    /// Set when the connection ended, or refused a call: no new call goes on it.
    closed: AtomicBool,
}

/// How a call on an endpoint went, for its ejection count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Answered,
    /// UNAVAILABLE answered, or the call lost with its connection.
    Failed,
    /// The connection turned the call away (closed, GOAWAY): the connection is done for.
    Refused,
}

impl Endpoint {
    pub(super) fn new(
        address: SocketAddr,
        authority: http::uri::Authority,
        server_name: Option<tls::ServerName<'static>>,
    ) -> Self {
        Self {
            address,
            authority,
            server_name,
            connections: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejection: Mutex::new(Ejection::default()),
            more: tokio::sync::Notify::new(),
            probe: tokio::sync::Notify::new(),
            removed: CancellationToken::new(),
        }
    }

    /// The scheme of the request URIs sent to it.
    pub(super) fn scheme(&self) -> http::uri::Scheme {
        if self.server_name.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        }
    }

    /// Whether a connection is open to take calls.
    pub(super) fn is_connected(&self) -> bool {
        lock(&self.connections)
            .iter()
            .any(|connection| !connection.closed.load(Ordering::Relaxed))
    }

    /// Tries to connect now (at most every [`MIN_PROBE_GAP`]) instead of waiting out the
    /// backoff: a replica that was down when the gateway started is used as soon as it is up.
    pub(super) fn probe_now(&self) {
        self.probe.notify_one();
    }

    pub(super) fn is_ejected(&self, now: Instant) -> bool {
        lock(&self.ejection).until.is_some_and(|until| until > now)
    }

    /// The least busy open connection with room for a call (for a stream: with room beyond
    /// what unary calls keep for themselves), asking for one more when all are full. A unary
    /// call goes on the least busy one even when all are full: HTTP/2 queues it for a moment.
    pub(super) fn connection(&self, stream: bool) -> Option<Arc<Connection>> {
        let connections = lock(&self.connections);
        let least_busy = connections
            .iter()
            .filter(|connection| !connection.closed.load(Ordering::Relaxed))
            .min_by_key(|connection| connection.in_flight.load(Ordering::Relaxed))?;
        let busy = least_busy.in_flight.load(Ordering::Relaxed);
        let room = least_busy
            .capacity
            .saturating_sub(if stream { STREAMS_MARGIN } else { 0 });
        if busy + 1 >= room {
            self.more.notify_one();
            if stream || busy >= least_busy.capacity {
                return None;
            }
        }
        Some(least_busy.clone())
    }

    pub(super) fn record(&self, connection: &Connection, outcome: Outcome, upstream: &Settings) {
        match outcome {
            Outcome::Answered => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failed => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= FAILURES_TO_EJECT {
                    self.eject(upstream, "calls keep failing");
                }
            }
            Outcome::Refused => {
                connection.closed.store(true, Ordering::Relaxed);
                self.more.notify_one();
            }
        }
    }

    fn eject(&self, upstream: &Settings, why: &str) {
        let length = {
            let mut ejection = lock(&self.ejection);
            let length = ejection
                .last
                .map_or(FIRST_EJECTION, |last| (last * 2).min(MAX_EJECTION));
            // Jitter, so that gateways do not probe a recovering replica in step.
            let length = length.mul_f64(0.75 + fastrand::f64() / 2.0);
            ejection.until = Some(Instant::now() + length);
            ejection.last = Some(length);
            length
        };
        self.failures.store(0, Ordering::Relaxed);
        tracing::warn!(
            backend = upstream.service,
            endpoint = %self.address,
            ejected_for = ?length,
            "{why}: endpoint ejected"
        );
    }

    fn readmit(&self, upstream: &Settings) {
        let mut ejection = lock(&self.ejection);
        if ejection.last.take().is_some() {
            ejection.until = None;
            tracing::info!(
                backend = upstream.service,
                endpoint = %self.address,
                "endpoint healthy again"
            );
        }
    }

    /// Keeps the endpoint connected until it is removed. `changed` hears of every connection
    /// opened or lost, for calls waiting for a ready endpoint.
    pub(super) async fn maintain(self: Arc<Self>, upstream: Arc<Settings>) {
        loop {
            let wanted = {
                let mut connections = lock(&self.connections);
                connections.retain(|connection| !connection.closed.load(Ordering::Relaxed));
                let all_full = connections.iter().all(|connection| {
                    connection.in_flight.load(Ordering::Relaxed) + STREAMS_MARGIN
                        >= connection.capacity
                });
                connections.is_empty() || all_full && connections.len() < MAX_CONNECTIONS
            };
            if !wanted {
                tokio::select! {
                    () = self.more.notified() => continue,
                    () = self.removed.cancelled() => return,
                }
            }
            let attempted = Instant::now();
            let connected = tokio::select! {
                connected = connect(&self, &upstream) => connected,
                () = self.removed.cancelled() => return,
            };
            match connected {
                Ok(connection) => {
                    lock(&self.connections).push(connection);
                    self.readmit(&upstream);
                    upstream.changed.notify_waiters();
                }
                Err(error) => {
                    tracing::warn!(
                        backend = upstream.service,
                        endpoint = %self.address,
                        %error,
                        "cannot connect"
                    );
                    self.eject(&upstream, "cannot connect");
                    upstream.changed.notify_waiters();
                    // The replica may be gone for good: look the name up again.
                    upstream.resolve_now.notify_one();
                    let until = lock(&self.ejection).until.unwrap_or_else(Instant::now);
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = self.probe.notified() => {
                            tokio::time::sleep_until(attempted + MIN_PROBE_GAP).await;
                        }
                        () = self.removed.cancelled() => return,
                    }
                }
            }
        }
    }
}

impl Connection {
    pub(super) fn sender(&self) -> &SendRequest<Bytes> {
        &self.sender
    }

    pub(super) fn in_flight(&self) -> &AtomicUsize {
        &self.in_flight
    }
}

/// Why a connection could not be made ready.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("TCP connect: {0}")]
    Tcp(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP/2: {0}")]
    Http(#[from] h2::Error),
    #[error("health check: {0}")]
    Call(#[from] super::stream::CallError),
    #[error("health check answered {0}")]
    NotServing(String),
}

/// Opens a connection and checks the backend's health on it.
async fn connect(
    endpoint: &Arc<Endpoint>,
    upstream: &Arc<Settings>,
) -> Result<Arc<Connection>, ConnectError> {
    let timeout = upstream.connect_timeout;
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect(endpoint.address)
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let (sender, mut end) = match (&endpoint.server_name, &upstream.tls) {
            (None, _) => start_http2(tcp, upstream).await?,
            (Some(server_name), Some(tls)) => {
                // The configuration in force now: a reloaded certificate or CA bundle serves
                // the connections opened after it, the open ones carry on.
                let stream = tls
                    .connector()
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                start_http2(stream, upstream).await?
            }
            // The gateway refuses to start with an https target and no CA bundle.
            (Some(_), None) => {
                return Err(ConnectError::Tls(std::io::Error::other(
                    "an https backend, but no --backend-ca",
                )));
            }
        };
        let status = tokio::select! {
            status = check_health(&sender, endpoint, upstream.service) => status?,
            _ = &mut end => return Err(ConnectError::NotServing("a closed connection".into())),
        };
        if status != SERVING {
            return Err(ConnectError::NotServing(format!("status {status}")));
        }
        let connection = Arc::new(Connection {
            sender,
            in_flight: AtomicUsize::new(0),
            capacity: BACKEND_STREAMS as usize,
            closed: AtomicBool::new(false),
        });
        let watched = Arc::downgrade(&connection);
        let owner = Arc::downgrade(endpoint);
        tokio::spawn(async move {
            let _ = end.await;
            if let Some(connection) = watched.upgrade() {
                connection.closed.store(true, Ordering::Relaxed);
            }
            if let Some(endpoint) = owner.upgrade() {
                endpoint.more.notify_one();
            }
        });
        Ok(connection)
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// An HTTP/2 connection over `io`, driven by a task of its own that also pings the backend
/// every `keepalive` (busy or idle) and closes the connection when a ping goes unanswered for
/// as long: its sender, and a signal that the connection ended.
async fn start_http2<IO>(
    io: IO,
    upstream: &Settings,
) -> Result<(SendRequest<Bytes>, tokio::sync::oneshot::Receiver<()>), ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(STREAM_WINDOW * BACKEND_STREAMS)
        // As hyper's client: no server push, at most 100 streams until the backend's
        // SETTINGS say how many (the health check waits for them anyway), 16 KiB of headers.
        .enable_push(false)
        .initial_max_send_streams(100)
        .max_header_list_size(16 * 1024)
        .handshake::<_, Bytes>(io)
        .await?;
    let keepalive = upstream.keepalive;
    let mut ping_pong = connection.ping_pong();
    let (ended, end) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let unanswered = async {
            let Some(ping_pong) = ping_pong.as_mut() else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(keepalive).await;
                match tokio::time::timeout(keepalive, ping_pong.ping(h2::Ping::opaque())).await {
                    Ok(Ok(_pong)) => {}
                    // The connection ended: the other branch sees it.
                    Ok(Err(_)) => return std::future::pending().await,
                    Err(_) => return,
                }
            }
        };
        // Ends on GOAWAY (the calls under way carry on), on a lost connection, or when every
        // sender is dropped; or is dropped, closing the socket, when a ping goes unanswered
        // (the calls on it then fail at once).
        tokio::select! {
            _ = &mut connection => {}
            () = unanswered => {
                tracing::warn!(?keepalive, "backend connection closed: a ping went unanswered");
            }
        }
        let _ = ended.send(());
    });
    Ok((sender, end))
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Asks `grpc.health.v1.Health/Check` about `service`; the status answered.
async fn check_health(
    sender: &SendRequest<Bytes>,
    endpoint: &Endpoint,
    service: &str,
) -> Result<u64, ConnectError> {
    // HealthCheckRequest { service = 1 }, in a gRPC frame.
    let mut message = vec![0x0a];
    prost::encoding::encode_varint(service.len() as u64, &mut message);
    message.extend_from_slice(service.as_bytes());
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let uri = http::Uri::builder()
        .scheme(endpoint.scheme())
        .authority(endpoint.authority.clone())
        .path_and_query("/grpc.health.v1.Health/Check")
        .build()
        .map_err(|error| ConnectError::NotServing(error.to_string()))?;
    let head = http::Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|error| ConnectError::NotServing(error.to_string()))?;
    let body = Body::new(Full::new(Bytes::from(frame)));
    let response = super::stream::send(sender, head, body).await?;
    let (parts, body) = response.into_parts();
    let body = super::stream::answer_body(body, ());
    let collected = body
        .collect()
        .await
        .map_err(|status| ConnectError::NotServing(status.to_string()))?;
    let grpc_status = collected
        .trailers()
        .and_then(|trailers| trailers.get(tonic::Status::GRPC_STATUS))
        .or_else(|| parts.headers.get(tonic::Status::GRPC_STATUS))
        .map(http::HeaderValue::as_bytes);
    if grpc_status != Some(b"0") {
        let status = grpc_status.map(String::from_utf8_lossy).unwrap_or_default();
        return Err(ConnectError::NotServing(format!("grpc-status {status}")));
    }
    // HealthCheckResponse { status = 1 (varint) }, after the 5-byte frame prefix.
    let bytes = collected.to_bytes();
    let mut message = bytes.get(5..).unwrap_or_default();
    let mut status = 0;
    while !message.is_empty() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut message)
            .map_err(|error| ConnectError::NotServing(error.to_string()))?;
        if tag == 1 && wire_type == prost::encoding::WireType::Varint {
            status = prost::encoding::decode_varint(&mut message)
                .map_err(|error| ConnectError::NotServing(error.to_string()))?;
        } else {
            prost::encoding::skip_field(
                wire_type,
                tag,
                &mut message,
                prost::encoding::DecodeContext::default(),
            )
            .map_err(|error| ConnectError::NotServing(error.to_string()))?;
        }
    }
    Ok(status)
}

/// A lock whose holder cannot leave its data half-changed (no code under these locks panics);
/// a poisoned one is used as it stands.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
