use std::net::SocketAddr;
use std::path::PathBuf;

use database::{DatabaseUrl, DatabaseUrlParser, PoolConfig};
use shell::ServeConfig;

/// Settings of `notesuite users`. Every one has a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct UsersConfig {
    /// Address to serve gRPC on.
    #[arg(long, env = "NOTESUITE_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Database URL: `postgres://USER@HOST/NAME` (or `postgresql://`) for PostgreSQL, which
    /// several replicas may share; `sqlite://PATH` or a plain path opens (or creates) a SQLite
    /// file, for one replica.
    #[arg(long, env = "NOTESUITE_DATABASE_URL", default_value = "sqlite://users.db", value_parser = DatabaseUrlParser)]
    pub database_url: DatabaseUrl,

    /// File holding the database URL, such as a mounted Kubernetes Secret. When set it takes
    /// the place of --database-url, so that the password is in neither the environment nor
    /// the command line.
    #[arg(long, env = "NOTESUITE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    #[command(flatten)]
    pub database_pool: PoolConfig,

    /// Ed25519 public key (SPKI PEM) that verifies access tokens, or a directory of such
    /// `.pem` files: tokens signed with any of them are accepted (key rotation). Read again
    /// every `--key-reload-interval`.
    #[arg(long, env = "NOTESUITE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: PathBuf,

    /// Password hashes computed at once; each takes ~19 MiB and a core for tens of ms.
    #[arg(long, env = "NOTESUITE_PASSWORD_HASH_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub password_hash_concurrency: u32,

    #[command(flatten)]
    pub serve: ServeConfig,
}
