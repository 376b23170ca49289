use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shell::ServeConfig;

/// Settings of `notesuite gateway`. Every one has a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Address to serve gRPC on.
    #[arg(long, env = "NOTESUITE_LISTEN", default_value = "0.0.0.0:50050")]
    pub listen: SocketAddr,

    /// The users service: `http://HOST:PORT`, or several separated by commas. A host name is
    /// looked up again and again and every address it resolves to gets calls (a Kubernetes
    /// headless Service). `https://HOST:PORT` connects with TLS (see `--backend-ca`): each
    /// replica's certificate must name HOST.
    #[arg(long, env = "NOTESUITE_USERS_URL", default_value = "http://127.0.0.1:50051", value_parser = parse_backend_urls)]
    pub users_url: String,

    /// The notes service, as `--users-url`.
    #[arg(long, env = "NOTESUITE_NOTES_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_backend_urls)]
    pub notes_url: String,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens, e.g. from
    /// `openssl genpkey -algorithm ed25519` or `notesuite keygen`; or a directory of such
    /// `.pem` files: the newest signs (latest modification time, then greatest name), and
    /// tokens of every one are accepted. Read again every `--key-reload-interval`.
    #[arg(long, env = "NOTESUITE_JWT_PRIVATE_KEY")]
    pub jwt_private_key: PathBuf,

    /// More public keys (SPKI PEM file, or directory) whose tokens the gateway accepts besides
    /// its own keys': during a rotation, the keys other gateway replicas may already sign with.
    #[arg(long, env = "NOTESUITE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Lifetime of the access tokens SignUp and Login hand out.
    #[arg(long, env = "NOTESUITE_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_token_ttl)]
    pub access_token_ttl: Duration,

    /// Deadline given to calls whose client set none.
    #[arg(long, env = "NOTESUITE_DEFAULT_DEADLINE", default_value = "10s", value_parser = parse_deadline)]
    pub default_deadline: Duration,

    /// A forwarded call whose client has not read the next part of the answer for this long
    /// is ended (RESOURCE_EXHAUSTED; `WATCH_TOO_SLOW` for a watch), so that a client that
    /// stops reading holds no backend resources.
    #[arg(long, env = "NOTESUITE_STREAM_STALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub stream_stall_timeout: Duration,

    #[command(flatten)]
    pub backends: BackendOptions,

    #[command(flatten)]
    pub rate_limits: crate::limits::RateLimitConfig,

    #[command(flatten)]
    pub serve: ServeConfig,
}

/// How the gateway finds and watches its backends' replicas.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendOptions {
    /// How often backend host names are looked up again (also at once when a connection to a
    /// replica fails): a replica added to or removed from the answer gets or stops getting
    /// calls within this.
    #[arg(long, env = "NOTESUITE_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub resolve_interval: Duration,

    /// HTTP/2 PING interval on backend connections, and how long an unanswered PING waits: a
    /// replica that stopped answering (hung, or its host gone) is left within twice this.
    #[arg(long, env = "NOTESUITE_BACKEND_KEEPALIVE", default_value = "10s", value_parser = parse_interval)]
    pub backend_keepalive: Duration,

    /// DNS server (IP:PORT) to look backend host names up with, instead of the system's
    /// (`/etc/resolv.conf`, `/etc/hosts`).
    #[arg(long, env = "NOTESUITE_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,

    /// CA bundle (PEM) that `https://` backends' certificates must chain to, e.g. the
    /// `ca.crt` of a cert-manager Secret; during a CA rotation, the old and the new CA.
    /// Required when a backend URL is `https://`. Read again every `--key-reload-interval`.
    #[arg(long, env = "NOTESUITE_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,

    /// Certificate (PEM) the gateway presents to `https://` backends that require client
    /// certificates (mutual TLS), e.g. `tls.crt`. Read again every `--key-reload-interval`.
    #[arg(long, env = "NOTESUITE_BACKEND_CERT", requires_all = ["backend_key", "backend_ca"])]
    pub backend_cert: Option<PathBuf>,

    /// The private key of `--backend-cert` (PEM), e.g. `tls.key`.
    #[arg(long, env = "NOTESUITE_BACKEND_KEY", requires = "backend_cert")]
    pub backend_key: Option<PathBuf>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            resolve_interval: Duration::from_secs(5),
            backend_keepalive: Duration::from_secs(10),
            dns_server: None,
            backend_ca: None,
            backend_cert: None,
            backend_key: None,
        }
    }
}

impl BackendOptions {
    /// The TLS client configuration for `https://` backends, read from disk; None without
    /// `--backend-ca`.
    pub fn load_tls(&self) -> Result<Option<tls::ClientTls>, tls::TlsError> {
        let Some(ca) = &self.backend_ca else {
            return Ok(None);
        };
        let identity = match (&self.backend_cert, &self.backend_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        tls::ClientTls::load(ca, identity).map(Some)
    }
}

fn parse_backend_urls(raw: &str) -> Result<String, String> {
    crate::upstream::Target::parse_list(raw)?;
    Ok(raw.to_owned())
}

fn parse_interval(raw: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(600) {
        return Err("must be between 100ms and 10m".into());
    }
    Ok(interval)
}

fn parse_token_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(24 * 3600) {
        return Err("must be between 1m and 24h".into());
    }
    Ok(ttl)
}

fn parse_deadline(raw: &str) -> Result<Duration, String> {
    let deadline = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if deadline.is_zero() || deadline > Duration::from_secs(300) {
        return Err("must be more than 0s and at most 5m".into());
    }
    Ok(deadline)
}
