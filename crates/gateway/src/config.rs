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

    /// URL of the users service.
    #[arg(long, env = "NOTESUITE_USERS_URL", default_value = "http://127.0.0.1:50051", value_parser = parse_backend_url)]
    pub users_url: String,

    /// URL of the notes service.
    #[arg(long, env = "NOTESUITE_NOTES_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_backend_url)]
    pub notes_url: String,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens, e.g. from
    /// `openssl genpkey -algorithm ed25519`.
    #[arg(long, env = "NOTESUITE_JWT_PRIVATE_KEY")]
    pub jwt_private_key: PathBuf,

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
    pub serve: ServeConfig,
}

fn parse_backend_url(raw: &str) -> Result<String, String> {
    let uri: http::Uri = raw.parse().map_err(|error| format!("{error}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(raw.to_owned()),
        (Some("https"), _) => {
            Err("TLS to backends is not supported yet; use http://HOST:PORT".into())
        }
        _ => Err("must look like http://HOST:PORT".into()),
    }
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
