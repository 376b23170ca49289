use std::path::PathBuf;
use std::time::Duration;

/// Serving settings every service shares. Each has a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// After SIGTERM/SIGINT, how long to keep serving with readiness NOT_SERVING so that load
    /// balancers stop routing here before the listener closes.
    #[arg(long, env = "NOTESUITE_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// How long in-flight calls get to finish once the listener is closed. After it the
    /// process exits anyway.
    #[arg(long, env = "NOTESUITE_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Age after which a client connection is asked to reconnect (GOAWAY), so that long-lived
    /// HTTP/2 connections rebalance across replicas.
    #[arg(long, env = "NOTESUITE_MAX_CONNECTION_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// How long calls on a connection past its maximum age may still run before it is closed.
    #[arg(long, env = "NOTESUITE_MAX_CONNECTION_AGE_GRACE", default_value = "1m", value_parser = humantime::parse_duration)]
    pub max_connection_age_grace: Duration,

    /// Most unary calls served at once (health checks excepted), and the ceiling of the
    /// pool-sized and adaptive limits. Calls over the current limit are shed with
    /// RESOURCE_EXHAUSTED and a retry delay (see `--fast-shed-rate` and `--admission-wait`).
    #[arg(long, env = "NOTESUITE_MAX_CONCURRENT_CALLS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_calls: u32,

    /// How the limit on unary calls is set. `pool` (the default): sized from what the
    /// service can work on at once, its database pool — `--database-max-connections` x 8 —
    /// and never above `--max-concurrent-calls`, so that under overload an admitted call waits
    /// behind a few others per connection rather than behind a thousand, and the surplus is
    /// shed at once with a retry delay (a service without a database, the gateway, uses
    /// `--max-concurrent-calls`). `fixed`: `--max-concurrent-calls` itself, so that a load
    /// test keeping 1,000 calls in flight on one process is served, queueing in the database
    /// pool, rather than shed. `adaptive`: follows latency, between 16 calls and
    /// `--max-concurrent-calls`. See docs/benchmarks.md, "overload".
    #[arg(long, env = "NOTESUITE_CONCURRENCY_LIMIT", value_enum, default_value_t = ConcurrencyLimit::Pool)]
    pub concurrency_limit: ConcurrencyLimit,

    /// Calls over the limit shed at once per second: beyond this rate (clients retrying a shed
    /// call at once, ignoring its retry delay, would otherwise spend the whole CPU on being
    /// shed) a call over the limit waits up to `--admission-wait` for a slot before it is shed.
    /// 0: every call over the limit waits.
    #[arg(long, env = "NOTESUITE_FAST_SHED_RATE", default_value_t = 10_000)]
    pub fast_shed_rate: u32,

    /// How long a unary call over the limit, past `--fast-shed-rate`, waits for a slot before
    /// it is shed. The newest waiting call gets the next slot, so admitted calls stay fast
    /// while the oldest are shed; a client retrying at once comes back at most once per wait.
    /// 0: calls over the limit are always shed at once.
    #[arg(long, env = "NOTESUITE_ADMISSION_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub admission_wait: Duration,

    /// Streaming calls (watches, imports, reflection) open at once, health watches excepted;
    /// more are shed at once with RESOURCE_EXHAUSTED. Counted apart from
    /// `--max-concurrent-calls`, for as long as each stream stays open.
    #[arg(long, env = "NOTESUITE_MAX_OPEN_STREAMS", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_open_streams: u32,

    /// Connections held at once; more are closed as soon as they are accepted. An idle
    /// connection costs about 21 KB, so the default stays under 90 MB.
    #[arg(long = "max-connections", env = "NOTESUITE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connection_limit: u32,

    /// How long a new connection may take to finish its TLS handshake (with `--tls-cert`) and
    /// send the HTTP/2 preface before it is closed (port scanners, slowloris, a client
    /// speaking HTTP/1, or TLS to a plaintext port).
    #[arg(long, env = "NOTESUITE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(long, env = "NOTESUITE_MAX_CONCURRENT_STREAMS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Interval of the server's HTTP/2 keepalive pings, which find dead peers.
    #[arg(long, env = "NOTESUITE_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "NOTESUITE_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// How often readiness re-checks the service's dependencies (e.g. its database).
    /// A database outage turns readiness NOT_SERVING within about this long.
    #[arg(long, env = "NOTESUITE_READINESS_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub readiness_interval: Duration,

    /// How often token key files and TLS certificate files are read again: keys and
    /// certificates changed on disk take effect within this, with no restart (rotation).
    #[arg(long, env = "NOTESUITE_KEY_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub key_reload_interval: Duration,

    #[command(flatten)]
    pub tls: TlsServeConfig,
}

/// TLS on the service's port. Off unless `--tls-cert` is given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsServeConfig {
    /// Serve TLS with this certificate (PEM, leaf first, then any intermediates), e.g. the
    /// `tls.crt` of a cert-manager Secret. Read again every `--key-reload-interval`: new
    /// connections get a renewed certificate, open ones carry on.
    #[arg(long, env = "NOTESUITE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1), e.g. `tls.key`.
    #[arg(long, env = "NOTESUITE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by a CA in this bundle (PEM, one or more CA
    /// certificates, e.g. `ca.crt`): mutual TLS. Clients without one are refused in the
    /// handshake. During a CA rotation, put the old and the new CA in the bundle.
    #[arg(long, env = "NOTESUITE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsServeConfig {
    /// The TLS configuration these flags ask for, read from disk; None without `--tls-cert`.
    pub fn load(&self) -> Result<Option<tls::ServerTls>, tls::TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        tls::ServerTls::load(cert, key, self.tls_client_ca.as_deref()).map(Some)
    }
}

/// See [`ServeConfig::concurrency_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConcurrencyLimit {
    Adaptive,
    Fixed,
    Pool,
}

/// Unary calls admitted per pooled database connection with `--concurrency-limit pool`: enough
/// to keep every connection busy while the next calls decode and wait, few enough that an
/// admitted call waits for at most a handful of others on its connection.
pub(crate) const CALLS_PER_CONNECTION: u32 = 8;

impl ConcurrencyLimit {
    /// The limit on unary calls for a service that can work on `capacity` calls at once
    /// (its pool's connections; `None` without a database), under the ceiling `max`.
    pub fn unary_limit(self, max: u32, capacity: Option<u32>) -> u32 {
        match (self, capacity) {
            (ConcurrencyLimit::Pool, Some(connections)) => connections
                .saturating_mul(CALLS_PER_CONNECTION)
                .clamp(1, max),
            _ => max,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
            max_connection_age: Duration::from_secs(600),
            max_connection_age_grace: Duration::from_secs(60),
            max_concurrent_calls: 1024,
            concurrency_limit: ConcurrencyLimit::Pool,
            fast_shed_rate: 10_000,
            admission_wait: Duration::from_millis(250),
            max_open_streams: 16_384,
            connection_limit: 4096,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
            http2_keepalive_interval: Duration::from_secs(60),
            http2_keepalive_timeout: Duration::from_secs(20),
            readiness_interval: Duration::from_secs(2),
            key_reload_interval: Duration::from_secs(10),
            tls: TlsServeConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_limit_follows_the_pool_under_the_ceiling() {
        // 8 connections: 64 calls; the ceiling still caps it; no database: the ceiling.
        assert_eq!(ConcurrencyLimit::Pool.unary_limit(1024, Some(8)), 64);
        assert_eq!(ConcurrencyLimit::Pool.unary_limit(16, Some(8)), 16);
        assert_eq!(ConcurrencyLimit::Pool.unary_limit(1024, None), 1024);
        assert_eq!(ConcurrencyLimit::Fixed.unary_limit(1024, Some(8)), 1024);
        assert_eq!(ConcurrencyLimit::Adaptive.unary_limit(512, Some(8)), 512);
    }
}
