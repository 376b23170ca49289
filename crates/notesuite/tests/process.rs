//! The real binary, run as an operator runs it: signals, exit codes, configuration errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

const BINARY: &str = env!("CARGO_BIN_EXE_notesuite");
/// Upper bound for waits that must end; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// `notesuite up` on ports 0, killed on drop.
struct Up {
    child: Child,
    gateway: SocketAddr,
    data_dir: tempfile::TempDir,
}

impl Up {
    fn start(extra_args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(BINARY)
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args([
                "--gateway-port",
                "0",
                "--users-port",
                "0",
                "--notes-port",
                "0",
            ])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env("NOTESUITE_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(data_dir.path().join("stderr.log")).expect("log file"),
            ))
            .spawn()
            .expect("spawn notesuite up");
        let stdout = child.stdout.take().expect("stdout");
        let mut gateway = None;
        // The banner comes after the ports are bound: no polling needed.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner line");
            if let Some(rest) = line.trim_start().strip_prefix("gateway") {
                let address = rest.split_whitespace().next().expect("address");
                gateway = Some(address.parse().expect("socket address"));
            }
            if line.starts_with("Ctrl-C stops the suite") {
                break;
            }
        }
        Self {
            child,
            gateway: gateway.expect("banner names the gateway"),
            data_dir,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.gateway))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("stderr.log")).expect("read logs")
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, without blocking the async runtime.
    async fn exit_status(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "the process did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unary call whose request message is held back until the returned sender is used: until
/// then the call is in flight on the server, waiting for its request.
fn held_call<Req, Resp>(
    channel: Channel,
    path: &'static str,
) -> (
    mpsc::Sender<Req>,
    tokio::task::JoinHandle<Result<Resp, tonic::Status>>,
)
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(1);
    let call = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        grpc.client_streaming(
            Request::new(ReceiverStream::new(receiver)),
            http::uri::PathAndQuery::from_static(path),
            ProstCodec::<Req, Resp>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
    });
    (sender, call)
}

async fn check(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status()
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let mut up = Up::start(&["--drain-delay", "2s", "--shutdown-grace", "10s"]);
    let channel = up.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        watch
            .message()
            .await
            .expect("message")
            .expect("open")
            .status(),
        ServingStatus::Serving
    );
    let (release, in_flight) = held_call::<HealthCheckRequest, HealthCheckResponse>(
        channel.clone(),
        "/grpc.health.v1.Health/Check",
    );

    up.terminate();

    assert_eq!(
        watch
            .message()
            .await
            .expect("message")
            .expect("open")
            .status(),
        ServingStatus::NotServing,
        "readiness turns off first"
    );
    assert_eq!(check(&mut health, "liveness").await, ServingStatus::Serving);

    release
        .send(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("release the held call");
    drop(release);
    let answered = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the in-flight call ends")
        .expect("task")
        .expect("the in-flight call succeeds");
    assert_eq!(answered.status(), ServingStatus::NotServing);

    let ended = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the stream ends")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable);

    assert_eq!(up.exit_status().await.code(), Some(0));
}

#[tokio::test]
async fn a_call_that_never_finishes_does_not_hold_the_exit() {
    let mut up = Up::start(&["--drain-delay", "0s", "--shutdown-grace", "500ms"]);
    let channel = up.channel().await;
    let (_never_released, _stuck) =
        held_call::<proto::gateway::LoginRequest, proto::gateway::LoginResponse>(
            channel.clone(),
            "/notesuite.gateway.v1.GatewayService/Login",
        );
    // Two round trips on the same connection: the first lets the held call be sent, the
    // second is answered only after the server has taken the held call's stream.
    let mut health = HealthClient::new(channel);
    check(&mut health, "").await;
    check(&mut health, "").await;
    up.terminate();
    assert_eq!(up.exit_status().await.code(), Some(0));
    let logs = up.logs();
    assert!(
        logs.lines()
            .any(|line| line.contains("shutdown grace period over")
                && line.contains("\"abandoned_calls\":1")),
        "the abandoned call is reported: {logs}"
    );
}

/// Runs the binary to completion and returns its exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "error")
        .env("NOTESUITE_LOG_FORMAT", "pretty")
        .output()
        .expect("run notesuite");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_fails_before_binding_and_names_the_setting() {
    // Hold the port: if the process bound before validating, it would fail on the port.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = occupied.local_addr().expect("address").to_string();

    let (code, stderr) = run(&[
        "notes",
        "--listen",
        &listen,
        "--database-url",
        "mysql://db",
        "--jwt-public-key",
        "x.pem",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--database-url"), "{stderr}");

    let (code, stderr) = run(&[
        "users",
        "--listen",
        &listen,
        "--jwt-public-key",
        "/no/such/key.pem",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--jwt-public-key"), "{stderr}");
    assert!(!stderr.contains("in use"), "{stderr}");

    let (code, stderr) = run(&[
        "gateway",
        "--listen",
        &listen,
        "--users-url",
        "ftp://users",
        "--jwt-private-key",
        "k.pem",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--users-url"), "{stderr}");

    let (code, stderr) = run(&["up", "--drain-delay", "soon"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--drain-delay"), "{stderr}");
}

#[test]
fn a_port_in_use_is_reported_with_its_setting() {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = occupied.local_addr().expect("address").port().to_string();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = run(&[
        "up",
        "--data-dir",
        data_dir.path().to_str().expect("utf-8 path"),
        "--gateway-port",
        &port,
        "--users-port",
        "0",
        "--notes-port",
        "0",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--gateway-port"), "{stderr}");
}

#[test]
fn keygen_writes_a_key_pair_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().to_str().expect("utf-8 path");
    let (code, stderr) = run(&["keygen", "--out-dir", out_dir]);
    assert_eq!(code, Some(0), "{stderr}");
    let private = dir.path().join("jwt-private.pem");
    let public = dir.path().join("jwt-public.pem");
    token::SigningKey::read_pem_file(&private).expect("a valid private key");
    token::VerifyingKey::read_pem_file(&public).expect("a valid public key");

    let (code, _) = run(&["keygen", "--out-dir", out_dir]);
    assert_eq!(
        code,
        Some(1),
        "a second keygen must not overwrite the first key"
    );
}
