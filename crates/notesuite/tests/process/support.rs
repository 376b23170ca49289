//! Running the real binary as an operator does.
//!
//! A child's stdout and stderr are pipes read line by line as the child writes them; tests
//! wait on those lines (its banner, its "serving" log line) and on its exit, never on a poll.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_notesuite");
/// Upper bound for waits that must end; only a hang reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The lines a child writes to one of its pipes, as they come.
#[derive(Debug, Clone)]
pub(crate) struct Lines(watch::Receiver<Vec<String>>);

impl Lines {
    /// Reads `pipe` on a thread of its own, so the child never blocks on a full pipe whatever
    /// the test is doing. The channel closes when the child closes its end (at exit).
    fn capture(pipe: std::io::PipeReader) -> Self {
        let (sender, receiver) = watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sender.send_modify(|lines| lines.push(line));
            }
        });
        Self(receiver)
    }

    /// Everything read so far.
    pub(crate) fn text(&self) -> String {
        self.0.borrow().join("\n")
    }

    /// Waits until `done` holds for the lines read so far; `None` if the child closed the pipe
    /// (exited) first.
    pub(crate) async fn wait_for(&self, done: impl Fn(&[String]) -> bool) -> Option<Vec<String>> {
        let mut receiver = self.0.clone();
        let waited = tokio::time::timeout(PATIENCE, receiver.wait_for(|lines| done(lines))).await;
        match waited {
            Ok(Ok(lines)) => Some(lines.clone()),
            Ok(Err(_closed)) => None,
            Err(_) => panic!("waited {PATIENCE:?} for a line; got:\n{}", self.text()),
        }
    }

    /// Waits for the first JSON log entry that `matches`.
    pub(crate) async fn wait_for_entry(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let find = |lines: &[String]| {
            lines.iter().find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                matches(&entry).then_some(entry)
            })
        };
        let lines = self.wait_for(|lines| find(lines).is_some()).await?;
        find(&lines)
    }

    /// Everything the child wrote, once it has closed the pipe.
    pub(crate) async fn all(&self) -> String {
        // Nothing satisfies `|_| false`: this returns when the pipe closes.
        let _ = self.wait_for(|_| false).await;
        self.text()
    }
}

/// The environment variables of the gateway's rate limits.
const RATE_LIMITS: [&str; 8] = [
    "NOTESUITE_RATE_LIMIT_READ",
    "NOTESUITE_RATE_LIMIT_WRITE",
    "NOTESUITE_RATE_LIMIT_STREAM",
    "NOTESUITE_RATE_LIMIT_LOGIN_ADDRESS",
    "NOTESUITE_RATE_LIMIT_LOGIN_ACCOUNT",
    "NOTESUITE_RATE_LIMIT_SIGN_UP_ADDRESS",
    "NOTESUITE_RATE_LIMIT_CALLS_IN_FLIGHT",
    "NOTESUITE_RATE_LIMIT_STREAMS_OPEN",
];

/// Spawns `command` with stdout and stderr captured; the child is killed on drop.
fn spawn(mut command: Command) -> (tokio::process::Child, Lines, Lines) {
    // These tests sign many accounts up from one address and drive one user hard: the rate
    // limits have tests of their own (a flag in a test's command still sets one).
    for limit in RATE_LIMITS {
        command.env(limit, "off");
    }
    let (stdout, stdout_writer) = std::io::pipe().expect("pipe");
    let (stderr, stderr_writer) = std::io::pipe().expect("pipe");
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(Stdio::null())
        .stdout(stdout_writer)
        .stderr(stderr_writer)
        .kill_on_drop(true);
    let child = command.spawn().expect("spawn notesuite");
    // The command holds the parent's copies of the write ends: without dropping them the
    // pipes would never report the child's exit.
    drop(command);
    (child, Lines::capture(stdout), Lines::capture(stderr))
}

/// `notesuite up` on ports 0, killed on drop.
pub(crate) struct Up {
    child: tokio::process::Child,
    pub(crate) gateway: SocketAddr,
    pub(crate) users: Option<SocketAddr>,
    pub(crate) notes: Option<SocketAddr>,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) data_dir: tempfile::TempDir,
    pub(crate) logs: Lines,
}

impl Up {
    pub(crate) async fn start(extra_args: &[&str]) -> Self {
        Self::start_with_env(extra_args, &[]).await
    }

    pub(crate) async fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(BINARY);
        command
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
            .envs(env.iter().copied());
        let (child, stdout, logs) = spawn(command);
        // The banner comes after the ports are bound.
        let banner = stdout
            .wait_for(|lines| {
                lines
                    .iter()
                    .any(|line| line.starts_with("Ctrl-C stops the suite"))
            })
            .await;
        let Some(banner) = banner else {
            panic!("notesuite up did not start: {}", logs.all().await);
        };
        let mut gateway = None;
        let mut users = None;
        let mut notes = None;
        let mut metrics = None;
        for line in banner {
            if let Some(rest) = line.trim_start().strip_prefix("gateway") {
                let address = rest.split_whitespace().next().expect("address");
                gateway = Some(address.parse().expect("socket address"));
            }
            // With the space: "notesuite is up" also starts with "notes".
            for (name, slot) in [("users ", &mut users), ("notes ", &mut notes)] {
                if let Some(rest) = line.trim_start().strip_prefix(name) {
                    let address = rest.split_whitespace().next().expect("address");
                    *slot = Some(address.parse().expect("socket address"));
                }
            }
            if let Some(rest) = line.trim_start().strip_prefix("metrics") {
                let url = rest.trim();
                let address = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics");
                metrics = Some(address.parse().expect("metrics address"));
            }
        }
        Self {
            child,
            gateway: gateway.expect("the banner names the gateway"),
            users,
            notes,
            metrics,
            data_dir,
            logs,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the process is still running")
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.gateway))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub(crate) async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the process exits")
            .expect("wait")
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
    _child: tokio::process::Child,
    pub(crate) address: SocketAddr,
    /// Its log lines (JSON), as it writes them.
    pub(crate) logs: Lines,
}

impl Service {
    pub(crate) fn pid(&self) -> u32 {
        self._child.id().expect("the process is still running")
    }

    /// Sends `signal` (e.g. `-TERM`, `-KILL`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Starts `notesuite <args>` with `env`, and waits for its "serving" log line, which comes
    /// once its port is bound.
    pub(crate) async fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env("NOTESUITE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        let (child, _stdout, logs) = spawn(command);
        let serving = logs
            .wait_for_entry(|entry| entry["message"] == "serving")
            .await;
        let Some(address) = serving.as_ref().and_then(|entry| entry["address"].as_str()) else {
            panic!("{args:?} did not start: {}", logs.all().await);
        };
        Self {
            _child: child,
            address: address.parse().expect("socket address"),
            logs,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits for the process to exit (after a signal).
    pub(crate) async fn exited(mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self._child.wait())
            .await
            .expect("the process exits")
            .expect("wait")
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }
}

/// `notesuite users` or `notes` (`kind`) on `listen`, metrics off, on `database`, verifying
/// tokens with `public_key`; `extra` flags after those.
pub(crate) async fn start_backend(
    kind: &str,
    listen: &str,
    database: &str,
    public_key: &str,
    extra: &[&str],
) -> Service {
    let mut args = vec![
        kind,
        "--listen",
        listen,
        "--metrics-listen",
        "off",
        "--database-url",
        database,
        "--jwt-public-key",
        public_key,
    ];
    args.extend(extra);
    Service::start(&args, &[]).await
}

/// `notesuite gateway` on a free loopback port, metrics off, in front of `users_url` and
/// `notes_url`, signing with `private_key`; `extra` flags after those.
pub(crate) async fn start_gateway(
    users_url: &str,
    notes_url: &str,
    private_key: &str,
    extra: &[&str],
) -> Service {
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--users-url",
        users_url,
        "--notes-url",
        notes_url,
        "--jwt-private-key",
        private_key,
    ];
    args.extend(extra);
    Service::start(&args, &[]).await
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
