//! Running the real binary as an operator does.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_notesuite");
/// Upper bound for waits that must end; only a hang reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// `notesuite up` on ports 0, killed on drop.
pub(crate) struct Up {
    pub(crate) child: Child,
    pub(crate) gateway: SocketAddr,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) data_dir: tempfile::TempDir,
}

impl Up {
    pub(crate) fn start(extra_args: &[&str]) -> Self {
        Self::start_with_env(extra_args, &[])
    }

    pub(crate) fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Self {
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
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env("NOTESUITE_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(data_dir.path().join("stderr.log")).expect("log file"),
            ))
            .spawn()
            .expect("spawn notesuite up");
        let stdout = child.stdout.take().expect("stdout");
        let mut gateway = None;
        let mut metrics = None;
        // The banner comes after the ports are bound: no polling needed.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner line");
            if let Some(rest) = line.trim_start().strip_prefix("gateway") {
                let address = rest.split_whitespace().next().expect("address");
                gateway = Some(address.parse().expect("socket address"));
            }
            if let Some(rest) = line.trim_start().strip_prefix("metrics") {
                let url = rest.trim();
                let address = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics");
                metrics = Some(address.parse().expect("metrics address"));
            }
            if line.starts_with("Ctrl-C stops the suite") {
                break;
            }
        }
        let Some(gateway) = gateway else {
            let logs =
                std::fs::read_to_string(data_dir.path().join("stderr.log")).unwrap_or_default();
            panic!("notesuite up did not start: {logs}");
        };
        Self {
            child,
            gateway,
            metrics,
            data_dir,
        }
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.gateway))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("stderr.log")).expect("read logs")
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, without blocking the async runtime.
    pub(crate) async fn exit_status(&mut self) -> ExitStatus {
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
pub(crate) fn held_call<Req, Resp>(
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

/// Runs the binary to completion and returns its exit code and stderr.
pub(crate) fn run(args: &[&str]) -> (Option<i32>, String) {
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

/// One service subcommand (`users`, `notes`, `gateway`) as its own process, killed on drop.
pub(crate) struct Service {
    child: Child,
    pub(crate) address: SocketAddr,
}

impl Service {
    /// Starts `notesuite <args>` with `env`, and waits for its "serving" log line, which comes
    /// once its port is bound.
    pub(crate) fn start(args: &[&str], env: &[(&str, String)], log_dir: &std::path::Path) -> Self {
        let log_path = log_dir.join(format!("{}.log", args[0]));
        let child = Command::new(BINARY)
            .args(args)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env("NOTESUITE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&log_path).expect("log file"),
            ))
            .spawn()
            .expect("spawn notesuite");
        let started = Instant::now();
        let address = loop {
            let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
            let serving = logs.lines().find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                (entry["message"] == "serving")
                    .then(|| entry["address"].as_str().map(str::to_owned))?
            });
            if let Some(address) = serving {
                break address.parse().expect("socket address");
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{args:?} did not start: {logs}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Self { child, address }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a fresh key pair into `dir` with `notesuite keygen`.
pub(crate) fn keygen(dir: &std::path::Path) -> (String, String) {
    let (code, stderr) = run(&["keygen", "--out-dir", dir.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(0), "{stderr}");
    (
        dir.join("jwt-private.pem").display().to_string(),
        dir.join("jwt-public.pem").display().to_string(),
    )
}

/// `GET http://address/metrics`, parsed by a real Prometheus text parser.
pub(crate) fn scrape(address: SocketAddr) -> prometheus_parse::Scrape {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase().contains("content-type: text/plain"),
        "{head}"
    );
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned())))
        .expect("valid exposition format")
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}
