//! The command line: one subcommand per service, `up` for the whole suite, `keygen`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use telemetry::TelemetryConfig;

#[derive(Debug, clap::Parser)]
#[command(
    name = "notesuite",
    version,
    about = "A gRPC microservice suite: users, notes and a gateway",
    long_about = "A gRPC microservice suite: users, notes and a gateway.\n\n\
        Every setting has a flag and an environment variable (shown in each subcommand's --help).\n\
        Logs go to stderr; their level comes from RUST_LOG (default: info)."
)]
pub struct Cli {
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    #[command(flatten)]
    pub runtime: RuntimeConfig,

    #[command(subcommand)]
    pub command: Command,
}

/// How the process schedules its work.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeConfig {
    /// Async runtime: `auto` runs one thread when the process may use one CPU (as a pod with a
    /// one-CPU limit, or under `taskset`), a thread per CPU otherwise.
    #[arg(long, global = true, env = "NOTESUITE_RUNTIME", value_enum, default_value_t = RuntimeFlavor::Auto)]
    pub runtime: RuntimeFlavor,

    /// Worker threads of the multi-thread runtime (default: one per available CPU).
    #[arg(long, global = true, env = "NOTESUITE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeFlavor {
    Auto,
    /// Everything on one thread: no cross-thread wake-ups, the best latency per core.
    CurrentThread,
    /// A work-stealing pool of worker threads.
    MultiThread,
}

impl RuntimeConfig {
    /// Builds the runtime this configuration asks for.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let flavor = match self.runtime {
            RuntimeFlavor::Auto if cpus == 1 && self.worker_threads.is_none() => {
                RuntimeFlavor::CurrentThread
            }
            RuntimeFlavor::Auto => RuntimeFlavor::MultiThread,
            chosen => chosen,
        };
        let mut builder = match flavor {
            RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            RuntimeFlavor::Auto | RuntimeFlavor::MultiThread => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if let Some(workers) = self.worker_threads {
                    builder.worker_threads(usize::from(workers));
                }
                builder
            }
        };
        builder.enable_all().build()
    }
}

#[derive(Debug, clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value, parsed once at start-up: boxing the service configurations saves nothing"
)]
pub enum Command {
    /// Run the users service.
    Users(users::UsersConfig),
    /// Run the notes service.
    Notes(notes::NotesConfig),
    /// Run the gateway, the suite's public entry point.
    Gateway(gateway::GatewayConfig),
    /// Run the whole suite in one process on three ports, with SQLite files in a data
    /// directory and a throwaway signing key: for local development.
    Up(UpConfig),
    /// Write a new Ed25519 key pair for signing (gateway) and verifying (users, notes)
    /// access tokens.
    Keygen(KeygenConfig),
    /// Ask a running service for its gRPC health: exit 0 when SERVING, 1 otherwise. The
    /// container image has no shell or probe tool, so Docker and compose healthchecks run this.
    Health(HealthConfig),
    /// Check a running deployment as a user would: health of each service, reflection,
    /// then sign up, create, get and delete a note, and delete the account. Exit 0 when every
    /// step passed, 1 otherwise, with a line per step. The Helm chart's `helm test` runs it.
    Check(CheckConfig),
}

impl Command {
    /// The default `service.name` of the process's telemetry.
    pub fn service_name(&self) -> &'static str {
        match self {
            Command::Users(_) => "notesuite-users",
            Command::Notes(_) => "notesuite-notes",
            Command::Gateway(_) => "notesuite-gateway",
            Command::Up(_) | Command::Keygen(_) | Command::Health(_) | Command::Check(_) => {
                "notesuite"
            }
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpConfig {
    /// Directory for the SQLite databases (created if missing).
    #[arg(long, env = "NOTESUITE_DATA_DIR", default_value = "notesuite-data")]
    pub data_dir: PathBuf,

    /// Run on PostgreSQL instead of SQLite: `postgres://HOST/NAME` puts users and notes in the
    /// databases `NAME_users` and `NAME_notes` on that server, created if missing.
    #[arg(long, env = "NOTESUITE_UP_DATABASE_URL", value_parser = database::DatabaseUrlParser)]
    pub database_url: Option<database::DatabaseUrl>,

    /// Address the three services listen on.
    #[arg(long, env = "NOTESUITE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port of the gateway, the public entry point (0 picks a free one).
    #[arg(long, env = "NOTESUITE_GATEWAY_PORT", default_value_t = 50050)]
    pub gateway_port: u16,

    /// Port of the users service (0 picks a free one).
    #[arg(long, env = "NOTESUITE_USERS_PORT", default_value_t = 50051)]
    pub users_port: u16,

    /// Port of the notes service (0 picks a free one).
    #[arg(long, env = "NOTESUITE_NOTES_PORT", default_value_t = 50052)]
    pub notes_port: u16,

    /// Ed25519 private key (PKCS#8 PEM) to sign tokens with. Without it a throwaway key is
    /// generated, and tokens stop working when the suite restarts.
    #[arg(long, env = "NOTESUITE_JWT_PRIVATE_KEY")]
    pub jwt_private_key: Option<PathBuf>,

    /// After Ctrl-C/SIGTERM, how long to keep serving with readiness NOT_SERVING. Nothing
    /// balances load locally, so the default is not to wait.
    #[arg(long, env = "NOTESUITE_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// How long in-flight calls get to finish once the listeners are closed.
    #[arg(long, env = "NOTESUITE_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Connections each of the three ports holds at once; more are closed as soon as they
    /// are accepted (as `--max-connections` of each service).
    #[arg(long, env = "NOTESUITE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// How long a new connection may take to send the HTTP/2 preface before it is closed (as
    /// `--handshake-timeout` of each service).
    #[arg(long, env = "NOTESUITE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// The gateway's rate limits, as in `notesuite gateway`.
    #[command(flatten)]
    pub rate_limits: gateway::RateLimitConfig,

    /// TLS on the gateway's port, as in `notesuite gateway` (users and notes stay plaintext
    /// on --host).
    #[command(flatten)]
    pub gateway_tls: shell::TlsServeConfig,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KeygenConfig {
    /// Directory to write `jwt-private.pem` and `jwt-public.pem` into.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,

    /// Write the private key here instead of OUT_DIR/jwt-private.pem: a place only the
    /// gateway reads, such as a volume no other service mounts.
    #[arg(long)]
    pub private_key_out: Option<PathBuf>,

    /// Write the public key here instead of OUT_DIR/jwt-public.pem.
    #[arg(long)]
    pub public_key_out: Option<PathBuf>,

    /// When both key files already exist and are valid, keep them and exit 0 instead of
    /// failing: for a one-shot container that runs before every start of a stack.
    #[arg(long)]
    pub keep_existing: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HealthConfig {
    /// Address of the service: HOST:PORT, http://HOST:PORT or https://HOST:PORT. Default: the
    /// address in NOTESUITE_LISTEN, the listen setting of a service in the same container
    /// (0.0.0.0 and [::] read as loopback).
    #[arg(long, env = "NOTESUITE_HEALTH_ADDR")]
    pub addr: Option<String>,

    /// Connect with TLS, checking the server's certificate against the CAs in this bundle
    /// (PEM). A probe of a TLS port (`--tls-cert`) needs it: Kubernetes' own gRPC probes
    /// speak plaintext only.
    #[arg(long, env = "NOTESUITE_HEALTH_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Certificate (PEM) to present to a port that requires client certificates
    /// (`--tls-client-ca`), e.g. the service's own `tls.crt`.
    #[arg(long, env = "NOTESUITE_HEALTH_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(long, env = "NOTESUITE_HEALTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The name the server's certificate must carry, when it is not the address's host: a
    /// probe connects to its own pod's loopback, the certificate names the Service.
    #[arg(long, env = "NOTESUITE_HEALTH_TLS_SERVER_NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// Health name to ask about: "" (the process is ready), a service's full name such as
    /// notesuite.users.v1.UsersService (that service is ready), or `liveness`.
    #[arg(long, env = "NOTESUITE_HEALTH_SERVICE", default_value = "")]
    pub service: String,

    /// Deadline for connecting and answering.
    #[arg(long, env = "NOTESUITE_HEALTH_TIMEOUT", default_value = "5s", value_parser = parse_client_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckConfig {
    /// Address of the gateway (HOST:PORT, http://HOST:PORT or https://HOST:PORT). Health,
    /// reflection and a signed-up round trip go through it.
    #[arg(long, env = "NOTESUITE_CHECK_GATEWAY")]
    pub gateway: String,

    /// Reach the gateway over TLS, checking its certificate against the CAs in this bundle.
    #[arg(long, env = "NOTESUITE_CHECK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// The name the gateway's certificate must carry, when it is not `--gateway`'s host (a
    /// public name, while the check dials the in-cluster Service).
    #[arg(long, env = "NOTESUITE_CHECK_TLS_SERVER_NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// Reach users and notes over TLS, checking their certificates against this bundle (as
    /// the gateway's `--backend-ca`).
    #[arg(long, env = "NOTESUITE_CHECK_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,

    /// Certificate (PEM) to present to users and notes when they require client certificates
    /// (as the gateway's `--backend-cert`).
    #[arg(long, env = "NOTESUITE_CHECK_BACKEND_CERT", requires_all = ["backend_key", "backend_ca"])]
    pub backend_cert: Option<PathBuf>,

    /// The private key of `--backend-cert` (PEM).
    #[arg(long, env = "NOTESUITE_CHECK_BACKEND_KEY", requires = "backend_cert")]
    pub backend_key: Option<PathBuf>,

    /// Address of the users service, to check its health and reflection directly.
    #[arg(long, env = "NOTESUITE_CHECK_USERS")]
    pub users: Option<String>,

    /// Address of the notes service, to check its health and reflection directly.
    #[arg(long, env = "NOTESUITE_CHECK_NOTES")]
    pub notes: Option<String>,

    /// Deadline of each step (connecting, and each call).
    #[arg(long, env = "NOTESUITE_CHECK_TIMEOUT", default_value = "10s", value_parser = parse_client_timeout)]
    pub timeout: Duration,
}

fn parse_client_timeout(raw: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err("must be more than 0s and at most 5m".into());
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
