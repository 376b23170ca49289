//! The shell served for real on port 0: health, readiness, admission and the drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::future::BoxFuture;
use shell::{ServeConfig, ServeError, ServiceDefinition};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

const SERVICE: &str = "test.v1.SlowService";
const WAIT_PATH: &str = "/test.v1.SlowService/Wait";
/// Upper bound for waits that must end; only a hang would reach it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A unary method that answers once the test lets it, announcing when a call has arrived.
#[derive(Clone)]
struct SlowService {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

impl NamedService for SlowService {
    const NAME: &'static str = SERVICE;
}

struct Wait(SlowService);

impl UnaryService<()> for Wait {
    type Response = ();
    type Future = BoxFuture<'static, Result<Response<()>, Status>>;

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        let slow = self.0.clone();
        Box::pin(async move {
            let _ = slow.entered.send(());
            slow.gate
                .acquire()
                .await
                .map_err(|_| Status::internal("gate closed"))?
                .forget();
            Ok(Response::new(()))
        })
    }
}

impl tower_service::Service<http::Request<Body>> for SlowService {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = Wait(self.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// Where the test server listens.
enum Server {
    /// A real TCP port: what production does.
    Tcp(shell::Spawned),
    /// In-memory pipes, for tests on a paused clock (see `shell::spawn_in_memory`).
    InMemory(shell::InMemory),
}

impl Server {
    async fn stop(self) -> Result<(), ServeError> {
        match self {
            Server::Tcp(server) => server.stop().await,
            Server::InMemory(server) => server.stop().await,
        }
    }
}

struct TestServer {
    channel: Channel,
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedReceiver<()>,
    ready: Arc<AtomicBool>,
    server: Server,
}

impl TestServer {
    /// On a TCP port.
    async fn spawn(config: ServeConfig) -> Self {
        let (definition, test_server) = Self::definition();
        let server = shell::spawn(definition, config).await.expect("bind port 0");
        // The listener is bound already: connecting cannot race the server's start.
        let channel = Channel::from_shared(server.url())
            .expect("valid uri")
            .connect()
            .await
            .expect("connect");
        test_server(channel, Server::Tcp(server))
    }

    /// On in-memory connections, for tests whose clock is paused: time moves only when every
    /// task waits on a timer, so durations are exact and cost no wall-clock time.
    fn spawn_in_memory(config: ServeConfig) -> Self {
        let (definition, test_server) = Self::definition();
        let server = shell::spawn_in_memory(definition, config);
        test_server(server.channel(), Server::InMemory(server))
    }

    fn definition() -> (ServiceDefinition, impl FnOnce(Channel, Server) -> Self) {
        let gate = Arc::new(Semaphore::new(0));
        let (entered_sender, entered) = mpsc::unbounded_channel();
        let ready = Arc::new(AtomicBool::new(true));
        let probe_ready = ready.clone();
        let definition = ServiceDefinition {
            name: SERVICE,
            routes: Routes::new(SlowService {
                gate: gate.clone(),
                entered: entered_sender,
            }),
            advertised_services: vec![],
            descriptor_sets: vec![],
            readiness: Some(Box::new(move || {
                let ready = probe_ready.load(Ordering::SeqCst);
                Box::pin(async move {
                    if ready {
                        Ok(())
                    } else {
                        Err("probe says no".into())
                    }
                })
            })),
            capacity: None,
        };
        let test_server = move |channel, server| Self {
            channel,
            gate,
            entered,
            ready,
            server,
        };
        (definition, test_server)
    }

    fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    async fn check(&self, service: &str) -> Result<ServingStatus, Status> {
        check(&self.health(), service).await
    }

    /// Starts a call of the slow method on its own connection and waits until the server is
    /// running it.
    async fn start_slow_call(&mut self) -> JoinHandle<Result<(), Status>> {
        let channel = self.channel.clone();
        let call = tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready()
                .await
                .map_err(|error| Status::unavailable(error.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(WAIT_PATH);
            grpc.unary(Request::new(()), path, ProstCodec::<(), ()>::default())
                .await
                .map(|_| ())
        });
        tokio::time::timeout(PATIENCE, self.entered.recv())
            .await
            .expect("the call reaches the handler");
        call
    }

    /// Starts the drain; the returned task ends when the server has stopped.
    fn shut_down(self) -> (JoinHandle<Result<(), ServeError>>, Arc<Semaphore>, Channel) {
        (tokio::spawn(self.server.stop()), self.gate, self.channel)
    }
}

async fn check(health: &HealthClient<Channel>, service: &str) -> Result<ServingStatus, Status> {
    let response = health
        .clone()
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

fn config() -> ServeConfig {
    ServeConfig {
        drain_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(10),
        readiness_interval: Duration::from_millis(20),
        ..ServeConfig::default()
    }
}

/// Production-like durations: on a paused clock they cost nothing.
fn paused_config() -> ServeConfig {
    ServeConfig {
        drain_delay: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(10),
        readiness_interval: Duration::from_secs(5),
        ..ServeConfig::default()
    }
}

async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("a status change")
        .expect("message")
        .expect("open")
        .status()
}

#[tokio::test]
async fn health_answers_for_the_process_the_service_and_liveness() {
    let server = TestServer::spawn(config()).await;
    for name in ["", SERVICE, "liveness"] {
        assert_eq!(
            server.check(name).await.expect("check"),
            ServingStatus::Serving,
            "{name:?}"
        );
    }
    let unknown = server
        .check("no.such.Service")
        .await
        .expect_err("unknown name");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(start_paused = true)]
async fn watching_an_unknown_service_says_service_unknown_and_keeps_the_stream_open() {
    let server = TestServer::spawn_in_memory(paused_config());
    let mut watch = server
        .health()
        .watch(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect("the watch is accepted, as the health protocol says")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::ServiceUnknown);
    // Minutes later (a paused clock: no real wait, and well within the connection's maximum
    // age) the stream is still open, with nothing new.
    let later = tokio::time::timeout(Duration::from_secs(300), watch.message()).await;
    assert!(later.is_err(), "the stream stays open and quiet: {later:?}");
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_probe_at_its_interval_and_liveness_does_not() {
    let config = paused_config();
    let interval = config.readiness_interval;
    let server = TestServer::spawn_in_memory(config);
    let mut watch = server
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    // The probe fails from now on: readiness follows at the next probe, not before.
    let failing_since = Instant::now();
    server.ready.store(false, Ordering::SeqCst);
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    let noticed_after = failing_since.elapsed();
    assert!(
        noticed_after > Duration::ZERO && noticed_after <= interval,
        "noticed after {noticed_after:?}, probing every {interval:?}"
    );
    assert_eq!(
        server.check(SERVICE).await.expect("check"),
        ServingStatus::NotServing
    );
    assert_eq!(
        server.check("liveness").await.expect("check"),
        ServingStatus::Serving
    );

    let passing_since = Instant::now();
    server.ready.store(true, Ordering::SeqCst);
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    assert_eq!(
        passing_since.elapsed(),
        interval,
        "one interval after the last probe"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_turns_readiness_off_serves_for_the_delay_then_ends_streams_and_finishes_calls() {
    let config = paused_config();
    let drain_delay = config.drain_delay;
    let mut server = TestServer::spawn_in_memory(config);
    let in_flight = server.start_slow_call().await;
    let mut watch = server
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    let health = server.health();
    let drain_started = Instant::now();
    let (served, gate, _channel) = server.shut_down();

    // Readiness turns off at once; liveness stays on.
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    assert_eq!(drain_started.elapsed(), Duration::ZERO);
    assert_eq!(
        check(&health, "liveness").await.expect("check"),
        ServingStatus::Serving
    );

    // Up to the last moment of the delay, new calls are still served and streams stay open.
    tokio::time::advance(drain_delay - Duration::from_millis(1)).await;
    assert_eq!(
        check(&health, "")
            .await
            .expect("still serving during the delay"),
        ServingStatus::NotServing
    );
    assert!(!served.is_finished());

    // Once the delay is over, streams end with UNAVAILABLE so clients resume elsewhere.
    let ended = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the stream ends")
        .expect_err("ends with a status");
    assert_eq!(ended.code(), Code::Unavailable);
    assert_eq!(drain_started.elapsed(), drain_delay);

    // The call that was in flight completes normally.
    gate.add_permits(1);
    tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("in-flight call finishes")
        .expect("task")
        .expect("in-flight call succeeds");
    tokio::time::timeout(PATIENCE, served)
        .await
        .expect("serve returns after the drain")
        .expect("task")
        .expect("clean drain");
    assert_eq!(
        drain_started.elapsed(),
        drain_delay,
        "no wait past the calls"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_on_calls_still_running_after_the_grace_period() {
    let config = paused_config();
    let grace = config.shutdown_grace;
    let mut server = TestServer::spawn_in_memory(config);
    let _stuck = server.start_slow_call().await;
    let mut watch = server
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let (served, _gate, _channel) = server.shut_down();

    // Streams are cut off when the drain delay is over, the moment the grace period starts.
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    let cut_off = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the stream ends")
        .expect_err("ends with a status");
    assert_eq!(cut_off.code(), Code::Unavailable);
    let grace_started = Instant::now();

    tokio::time::advance(grace - Duration::from_millis(1)).await;
    assert!(
        !served.is_finished(),
        "the call gets its whole grace period"
    );
    tokio::time::timeout(PATIENCE, served)
        .await
        .expect("serve returns although a call never finishes")
        .expect("task")
        .expect("a drain that ran out of time is still a clean exit");
    assert_eq!(grace_started.elapsed(), grace);
}

#[tokio::test]
async fn calls_over_the_limit_are_shed_with_resource_exhausted_but_health_checks_are_not() {
    let mut server = TestServer::spawn(ServeConfig {
        max_concurrent_calls: 1,
        ..config()
    })
    .await;
    let first = server.start_slow_call().await;

    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("ready");
    let shed = grpc
        .unary(
            Request::new(()),
            http::uri::PathAndQuery::from_static(WAIT_PATH),
            ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("over the limit");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    let details = tonic_types::StatusExt::get_error_details(&shed);
    assert!(
        details.retry_info().is_some(),
        "tells the client when to retry"
    );
    assert_eq!(
        details.error_info().map(|info| info.reason.as_str()),
        Some("OVERLOADED")
    );
    assert_eq!(
        shed.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|value| value.to_str().ok()),
        Some("50"),
        "and gRPC retry policies when (gRFC A6)"
    );
    assert_eq!(
        server.check("").await.expect("health is exempt"),
        ServingStatus::Serving
    );

    server.gate.add_permits(1);
    first
        .await
        .expect("task")
        .expect("the admitted call succeeds");
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_limit_waits_for_a_slot_and_the_newest_waiter_gets_it() {
    let mut server = TestServer::spawn_in_memory(ServeConfig {
        max_concurrent_calls: 1,
        fast_shed_rate: 0,
        admission_wait: Duration::from_secs(30),
        ..paused_config()
    });
    let first = server.start_slow_call().await;
    // Two calls over the limit wait (neither is shed: the wait is long); the slot the first
    // gives back goes to the newer one, which the handler then holds in its turn. The clock
    // is paused: a sleep ends only once every task waits on a timer, so the older call is
    // queued for a slot before the newer one is sent, however slow the machine.
    let older = tokio::spawn(call_wait(server.channel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = tokio::spawn(call_wait(server.channel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!older.is_finished() && !newer.is_finished(), "both wait");

    server.gate.add_permits(1);
    first.await.expect("task").expect("the first call");
    tokio::time::timeout(PATIENCE, server.entered.recv())
        .await
        .expect("a waiting call is admitted when the slot is given back");
    server.gate.add_permits(1);
    tokio::time::timeout(PATIENCE, newer)
        .await
        .expect("the newest waiter went first")
        .expect("task")
        .expect("served, not shed");
    assert!(!older.is_finished(), "the older one still waits");
    server.gate.add_permits(1);
    tokio::time::timeout(PATIENCE, older)
        .await
        .expect("then the older one")
        .expect("task")
        .expect("served, not shed");
}

#[tokio::test]
async fn calls_over_the_limit_are_shed_at_once_up_to_the_fast_shed_rate_then_wait() {
    let mut server = TestServer::spawn(ServeConfig {
        max_concurrent_calls: 1,
        fast_shed_rate: 1,
        admission_wait: Duration::from_secs(30),
        ..config()
    })
    .await;
    let first = server.start_slow_call().await;
    let started = std::time::Instant::now();
    let shed = call_wait(server.channel.clone())
        .await
        .expect_err("the first call over the limit");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shed at once, not after the wait"
    );
    // The rate spent (1 a second, a burst of 1): the next one waits for a slot instead.
    let waiting = tokio::spawn(call_wait(server.channel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "waits past the fast-shed rate");
    server.gate.add_permits(2);
    first.await.expect("task").expect("the first call");
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("admitted when the slot is given back")
        .expect("task")
        .expect("served, not shed");
}

#[tokio::test]
async fn a_call_that_waits_out_its_admission_wait_is_shed() {
    let mut server = TestServer::spawn(ServeConfig {
        max_concurrent_calls: 1,
        fast_shed_rate: 0,
        admission_wait: Duration::from_millis(200),
        ..config()
    })
    .await;
    let first = server.start_slow_call().await;
    let started = std::time::Instant::now();
    let shed = call_wait(server.channel.clone())
        .await
        .expect_err("over the limit for longer than the wait");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "shed only once its wait ran out"
    );
    server.gate.add_permits(1);
    first.await.expect("task").expect("the admitted call");
}

async fn call_wait(channel: Channel) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    grpc.unary(
        Request::new(()),
        http::uri::PathAndQuery::from_static(WAIT_PATH),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

/// A reflection stream (bidirectional) held open: it counts against the streams' budget for
/// as long as it lasts.
async fn open_reflection_stream(
    channel: &Channel,
) -> Result<
    (
        mpsc::Sender<tonic_reflection::pb::v1::ServerReflectionRequest>,
        tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>,
    ),
    Status,
> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let (requests, receiver) = mpsc::channel(1);
    let mut client = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    requests.send(request).await.expect("queued");
    let mut answers = client
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    // The stream is open and served once its first answer is here.
    answers.message().await?.expect("an answer");
    Ok((requests, answers))
}

#[tokio::test]
async fn open_streams_have_a_budget_of_their_own_held_until_they_end() {
    let server = TestServer::spawn(ServeConfig {
        max_open_streams: 2,
        max_concurrent_calls: 1,
        ..config()
    })
    .await;
    let first = open_reflection_stream(&server.channel)
        .await
        .expect("first");
    let second = open_reflection_stream(&server.channel)
        .await
        .expect("second");
    // Their answers went out long ago: a unary permit would be back by now.
    let shed = open_reflection_stream(&server.channel)
        .await
        .expect_err("over the streams' budget");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert_eq!(
        tonic_types::StatusExt::get_error_details(&shed)
            .error_info()
            .map(|info| info.reason.clone()),
        Some("OVERLOADED".to_owned())
    );
    // Streams do not take the unary calls' slots, nor health's.
    assert_eq!(
        server.check("").await.expect("health"),
        ServingStatus::Serving
    );

    // A stream that ends gives its place back.
    drop(first);
    let reopened = tokio::time::timeout(PATIENCE, async {
        loop {
            match open_reflection_stream(&server.channel).await {
                Ok(stream) => return stream,
                // The server has not seen the client leave yet.
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(status) => panic!("reopen: {status:?}"),
            }
        }
    })
    .await
    .expect("the ended stream's place is given back");
    drop((second, reopened));
}

/// Waits until the server closes `socket` (a read returns end of file or an error).
async fn closed_by_server(socket: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, socket.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn connections_that_never_send_the_http2_preface_are_closed() {
    let server = TestServer::spawn(ServeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let Server::Tcp(spawned) = &server.server else {
        unreachable!("a TCP server")
    };
    let address = spawned.address;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(
            tokio::net::TcpStream::connect(address)
                .await
                .expect("connect"),
        );
    }
    // Half a preface, then nothing: closed too.
    let mut halfway = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut halfway, b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    silent.push(halfway);
    for socket in &mut silent {
        assert!(
            closed_by_server(socket).await,
            "a silent connection stays open"
        );
    }
    // Clients that speak HTTP/2 are served as ever, however long they then stay idle.
    let health = HealthClient::new(server.channel.clone());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        check(&health, "").await.expect("check"),
        ServingStatus::Serving
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_room_comes_back() {
    let server = TestServer::spawn(ServeConfig {
        // The test's own channel holds one.
        connection_limit: 3,
        ..config()
    })
    .await;
    let Server::Tcp(spawned) = &server.server else {
        unreachable!("a TCP server")
    };
    let address = spawned.address;
    let connect = || async {
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut socket, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        socket
    };
    let held = vec![connect().await, connect().await];
    let mut over = connect().await;
    assert!(closed_by_server(&mut over).await, "over the limit: closed");
    drop(held);
    // The server sees the two close and gives their places back.
    let health = HealthClient::new(
        Channel::from_shared(spawned.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            if check(&health, "").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "a place freed is taken again");
}
