//! `notesuite up`: the whole suite in one process, for a laptop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use database::{DatabaseUrl, PoolConfig};
use shell::ServeConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::UpConfig;

/// The suite, built and bound, not yet serving.
#[derive(Debug)]
pub struct Suite {
    pub gateway_addr: SocketAddr,
    pub users_addr: SocketAddr,
    pub notes_addr: SocketAddr,
    /// Whether the signing key was generated for this run.
    pub throwaway_key: bool,
    /// Each service with its listener and serving settings (the gateway's carry its TLS).
    services: Vec<(shell::ServiceDefinition, TcpListener, ServeConfig)>,
    /// Whether the gateway's port speaks TLS.
    pub gateway_tls: bool,
}

impl Suite {
    /// Opens the databases, loads or generates the key and binds the three ports. Every
    /// configuration error surfaces here, naming its setting.
    pub async fn build(config: &UpConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "--data-dir {}: cannot create the directory",
                config.data_dir.display()
            )
        })?;
        let (signing_key, throwaway_key) = match &config.jwt_private_key {
            Some(path) => (
                token::SigningKey::read_pem_file(path).context("--jwt-private-key")?,
                false,
            ),
            None => (token::SigningKey::generate()?, true),
        };
        let verifying_key = signing_key.verifying_key();
        // Read now, so that a bad certificate fails before any port is bound.
        let gateway_tls = config
            .gateway_tls
            .load()
            .context("--tls-cert, --tls-key, --tls-client-ca")?
            .is_some();
        let serve_config = ServeConfig {
            drain_delay: config.drain_delay,
            shutdown_grace: config.shutdown_grace,
            connection_limit: config.max_connections,
            handshake_timeout: config.handshake_timeout,
            ..ServeConfig::default()
        };

        let (users_database, notes_database) = databases(config).await?;
        let users_config = users::UsersConfig {
            listen: SocketAddr::new(config.host, config.users_port),
            database_url: users_database,
            database_url_file: None,
            database_pool: PoolConfig::default(),
            jwt_public_key: Default::default(),
            password_hash_concurrency: 2,
            serve: serve_config.clone(),
        };
        let notes_config = notes::NotesConfig {
            listen: SocketAddr::new(config.host, config.notes_port),
            database_url: notes_database,
            database_url_file: None,
            database_pool: PoolConfig::default(),
            jwt_public_key: Default::default(),
            watch: notes::watch::WatchConfig::default(),
            serve: serve_config.clone(),
        };
        let users_definition = users::build(&users_config, &verifying_key)
            .await
            .context("users: cannot open its database")?;
        let notes_definition = notes::build(&notes_config, &verifying_key)
            .await
            .context("notes: cannot open its database")?;

        let users_listener = bind(users_config.listen, "--users-port").await?;
        let notes_listener = bind(notes_config.listen, "--notes-port").await?;
        let users_addr = users_listener.local_addr()?;
        let notes_addr = notes_listener.local_addr()?;
        let gateway_config = gateway::GatewayConfig {
            listen: SocketAddr::new(config.host, config.gateway_port),
            users_url: format!("http://{}", connectable(users_addr)),
            notes_url: format!("http://{}", connectable(notes_addr)),
            jwt_private_key: Default::default(),
            jwt_public_key: None,
            access_token_ttl: std::time::Duration::from_secs(15 * 60),
            default_deadline: std::time::Duration::from_secs(10),
            stream_stall_timeout: std::time::Duration::from_secs(10),
            backends: Default::default(),
            rate_limits: config.rate_limits,
            serve: ServeConfig {
                tls: config.gateway_tls.clone(),
                ..serve_config.clone()
            },
        };
        let gateway_definition = gateway::build(&gateway_config, &signing_key)?;
        let gateway_listener = bind(gateway_config.listen, "--gateway-port").await?;
        let gateway_addr = gateway_listener.local_addr()?;

        Ok(Self {
            gateway_addr,
            users_addr,
            notes_addr,
            throwaway_key,
            services: vec![
                (users_definition, users_listener, serve_config.clone()),
                (notes_definition, notes_listener, serve_config),
                (gateway_definition, gateway_listener, gateway_config.serve),
            ],
            gateway_tls,
        })
    }

    /// Serves all three until `shutdown`, then drains them together.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for (definition, listener, serve_config) in self.services {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let name = definition.name;
                shell::serve(
                    listener,
                    definition,
                    &serve_config,
                    shutdown.cancelled_owned(),
                )
                .await
                .with_context(|| format!("{name} failed"))
            });
        }
        let mut outcome = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .context("a service task panicked")
                .and_then(|served| served);
            if let Err(error) = result {
                // One service failing takes the others down with it: a half suite misleads.
                shutdown.cancel();
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        outcome
    }

    /// What `up` prints on stdout once the ports are bound.
    pub fn write_banner(
        &self,
        out: &mut impl Write,
        metrics: Option<SocketAddr>,
    ) -> std::io::Result<()> {
        let gateway = connectable(self.gateway_addr);
        let suffix: u32 = {
            let mut bytes = [0u8; 4];
            let _ = getrandom::fill(&mut bytes);
            u32::from_le_bytes(bytes) % 100_000
        };
        writeln!(out, "notesuite is up")?;
        let (tls_note, grpcurl) = if self.gateway_tls {
            (", TLS", "grpcurl -cacert CA.pem")
        } else {
            ("", "grpcurl -plaintext")
        };
        writeln!(
            out,
            "  gateway  {gateway}   (the public entry point{tls_note})"
        )?;
        writeln!(out, "  users    {}", connectable(self.users_addr))?;
        writeln!(out, "  notes    {}", connectable(self.notes_addr))?;
        if let Some(metrics) = metrics {
            writeln!(out, "  metrics  http://{}/metrics", connectable(metrics))?;
        }
        if self.throwaway_key {
            writeln!(
                out,
                "  signing key: generated for this run only (tokens stop working on restart; \
                 pass --jwt-private-key to keep one)"
            )?;
        }
        writeln!(out)?;
        writeln!(out, "Try it (grpcurl):")?;
        writeln!(out, "  {grpcurl} {gateway} list")?;
        writeln!(
            out,
            "  {grpcurl} -d '{{\"email\":\"demo{suffix}@example.com\",\"display_name\":\"Demo\",\"password\":\"correct horse battery\"}}' {gateway} notesuite.gateway.v1.GatewayService/SignUp"
        )?;
        writeln!(
            out,
            "  {grpcurl} -H \"authorization: Bearer $TOKEN\" -d '{{\"note\":{{\"title\":\"Hello\",\"tags\":[\"demo\"]}}}}' {gateway} notesuite.notes.v1.NotesService/CreateNote"
        )?;
        writeln!(
            out,
            "  (TOKEN is the accessToken that SignUp or Login returns)"
        )?;
        writeln!(out)?;
        writeln!(out, "Ctrl-C stops the suite.")?;
        out.flush()
    }
}

/// Each service owns its database: SQLite files under the data directory or, with
/// `--database-url postgres://HOST/NAME`, the PostgreSQL databases `NAME_users` and
/// `NAME_notes` on that server, created if missing.
async fn databases(config: &UpConfig) -> anyhow::Result<(DatabaseUrl, DatabaseUrl)> {
    let server = match &config.database_url {
        None => {
            return Ok((
                sqlite_url(&config.data_dir, "users.db"),
                sqlite_url(&config.data_dir, "notes.db"),
            ));
        }
        Some(DatabaseUrl::Postgres(server)) => server,
        Some(DatabaseUrl::Sqlite(_)) => {
            anyhow::bail!(
                "--database-url: must be a postgres:// URL (SQLite files go under --data-dir)"
            )
        }
    };
    let name = database::postgres_database_name(server).unwrap_or("notesuite");
    let mut urls = Vec::new();
    for service in ["users", "notes"] {
        let url = database::postgres_url_with_database(server, &format!("{name}_{service}"))
            .map_err(|reason| anyhow::anyhow!("--database-url: the {service} database {reason}"))?;
        database::create_database_if_missing(&url)
            .await
            .with_context(|| format!("--database-url: cannot create the {service} database"))?;
        urls.push(DatabaseUrl::Postgres(url));
    }
    let notes = urls.pop().context("two databases")?;
    let users = urls.pop().context("two databases")?;
    Ok((users, notes))
}

fn sqlite_url(data_dir: &Path, file: &str) -> DatabaseUrl {
    DatabaseUrl::Sqlite(format!("sqlite://{}", data_dir.join(file).display()))
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    shell::bind(addr)
        .await
        .with_context(|| format!("{flag}: cannot listen on {addr}"))
}

/// An address a client on this machine can dial: `0.0.0.0` becomes `127.0.0.1`.
pub(crate) fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}
