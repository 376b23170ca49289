use std::net::SocketAddr;
use std::path::PathBuf;

use shell::ServeConfig;

/// Settings of `notesuite notes`. Every one has a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct NotesConfig {
    /// Address to serve gRPC on.
    #[arg(long, env = "NOTESUITE_LISTEN", default_value = "0.0.0.0:50052")]
    pub listen: SocketAddr,

    /// Database URL. `sqlite://PATH` opens (or creates) a SQLite file.
    #[arg(long, env = "NOTESUITE_DATABASE_URL", default_value = "sqlite://notes.db", value_parser = parse_database_url)]
    pub database_url: String,

    /// Most database connections open at once.
    #[arg(long, env = "NOTESUITE_DATABASE_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// Ed25519 public key (SPKI PEM) that verifies access tokens.
    #[arg(long, env = "NOTESUITE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: PathBuf,

    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Accepts the database URLs this build can open, so that a typo fails before any port is
/// bound, with the flag's name in the message.
pub fn parse_database_url(raw: &str) -> Result<String, String> {
    if raw.starts_with("sqlite:") {
        return Ok(raw.to_owned());
    }
    if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
        return Err("PostgreSQL is not supported by this build yet; use sqlite://PATH".into());
    }
    Err("must be a sqlite://PATH URL".into())
}
