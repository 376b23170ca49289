//! The `notesuite` binary's wiring: parse, set up telemetry, build, bind, serve, drain.

pub mod check;
pub mod cli;
mod client;
pub mod health;
pub mod up;

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use telemetry::MetricsListen;

use crate::cli::{Cli, Command, KeygenConfig};

/// Runs the command to completion. Configuration problems fail before any port is bound.
/// `registry` holds the metrics that `/metrics` serves.
pub async fn run(cli: Cli, registry: prometheus::Registry) -> anyhow::Result<()> {
    let metrics = match (&cli.command, cli.telemetry.metrics_listen) {
        (_, Some(MetricsListen::Off))
        | (Command::Keygen(_) | Command::Health(_) | Command::Check(_), _) => None,
        (_, Some(MetricsListen::At(address))) => Some(address),
        (Command::Up(config), None) => Some(SocketAddr::new(
            config.host,
            telemetry::DEFAULT_METRICS_PORT,
        )),
        (_, None) => Some(SocketAddr::from((
            [0, 0, 0, 0],
            telemetry::DEFAULT_METRICS_PORT,
        ))),
    }
    .map(|address| (address, registry));
    match cli.command {
        Command::Users(mut config) => {
            if let Some(path) = &config.database_url_file {
                config.database_url = read_database_url(path)?;
            }
            let keys = token::VerifyingKeys::read(&[config.jwt_public_key.clone()], &[])
                .context("--jwt-public-key")?;
            keys.reload_every(config.serve.key_reload_interval);
            let definition = users::build(&config, keys)
                .await
                .context("--database-url")?;
            serve_metrics(metrics).await?;
            serve_one(config.listen, definition, &config.serve).await
        }
        Command::Notes(mut config) => {
            if let Some(path) = &config.database_url_file {
                config.database_url = read_database_url(path)?;
            }
            let keys = token::VerifyingKeys::read(&[config.jwt_public_key.clone()], &[])
                .context("--jwt-public-key")?;
            keys.reload_every(config.serve.key_reload_interval);
            let definition = notes::build(&config, keys)
                .await
                .context("--database-url")?;
            serve_metrics(metrics).await?;
            serve_one(config.listen, definition, &config.serve).await
        }
        Command::Gateway(config) => {
            let signing =
                token::SigningKeys::read(&config.jwt_private_key).context("--jwt-private-key")?;
            let verifying = token::VerifyingKeys::read(
                config.jwt_public_key.as_slice(),
                std::slice::from_ref(&config.jwt_private_key),
            )
            .context("--jwt-private-key, --jwt-public-key")?;
            signing.reload_every(config.serve.key_reload_interval);
            verifying.reload_every(config.serve.key_reload_interval);
            let definition = gateway::build_with_keys(&config, signing, verifying)?;
            serve_metrics(metrics).await?;
            serve_one(config.listen, definition, &config.serve).await
        }
        Command::Up(config) => {
            let suite = up::Suite::build(&config).await?;
            let metrics_addr = serve_metrics(metrics).await?;
            // Handlers first: a SIGTERM right after the banner must drain, not kill.
            let shutdown_signal = shell::shutdown_signal();
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal.await;
                signal.cancel();
            });
            suite.write_banner(&mut std::io::stdout().lock(), metrics_addr)?;
            suite.serve(shutdown).await
        }
        Command::Keygen(config) => keygen(&config),
        Command::Health(config) => health::run(&config).await,
        Command::Check(config) => check::run(&config).await,
    }
}

/// The database URL from `--database-url-file` (a mounted Secret), checked like
/// `--database-url`. Surrounding whitespace is ignored: `kubectl create secret --from-file`
/// keeps the file's trailing newline.
fn read_database_url(path: &std::path::Path) -> anyhow::Result<database::DatabaseUrl> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("--database-url-file {}: cannot read it", path.display()))?;
    database::DatabaseUrl::parse(raw.trim())
        .map_err(|reason| anyhow::anyhow!("--database-url-file {}: {reason}", path.display()))
}

/// Runs a client subcommand (`health`, `check`) on a small runtime of its own, without
/// telemetry: a healthcheck every few seconds must not open an OTLP connection or an admin
/// port. Its report is its output; a failure is one plain line on stderr and exit code 1.
pub fn run_client(
    name: &str,
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(command));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("notesuite {name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds the admin endpoint and serves `/metrics` in the background; returns its address.
/// Called after the service is built, so that bad configuration fails before any bind.
async fn serve_metrics(
    metrics: Option<(SocketAddr, prometheus::Registry)>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some((address, registry)) = metrics else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics-listen: cannot listen on {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving metrics at /metrics");
    tokio::spawn(async move {
        // The endpoint lives as long as the process: scrapes during the drain still work.
        if let Err(error) =
            telemetry::serve_metrics(listener, registry, std::future::pending()).await
        {
            tracing::error!(%error, "the metrics endpoint failed");
        }
    });
    Ok(Some(bound))
}

async fn serve_one(
    listen: SocketAddr,
    definition: shell::ServiceDefinition,
    serve: &shell::ServeConfig,
) -> anyhow::Result<()> {
    let listener = shell::bind(listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    shell::serve(listener, definition, serve, shell::shutdown_signal()).await?;
    Ok(())
}

fn keygen(config: &KeygenConfig) -> anyhow::Result<()> {
    let private_path = config
        .private_key_out
        .clone()
        .unwrap_or_else(|| config.out_dir.join("jwt-private.pem"));
    let public_path = config
        .public_key_out
        .clone()
        .unwrap_or_else(|| config.out_dir.join("jwt-public.pem"));
    if config.keep_existing {
        match (private_path.exists(), public_path.exists()) {
            (true, true) => {
                token::SigningKey::read_pem_file(&private_path)
                    .with_context(|| format!("--keep-existing: {}", private_path.display()))?;
                token::VerifyingKey::read_pem_file(&public_path)
                    .with_context(|| format!("--keep-existing: {}", public_path.display()))?;
                writeln!(
                    std::io::stdout().lock(),
                    "kept the existing {} and {}",
                    private_path.display(),
                    public_path.display()
                )?;
                return Ok(());
            }
            (false, false) => {}
            // Half a pair cannot be completed: a new private key would not match the old
            // public one.
            (true, false) | (false, true) => anyhow::bail!(
                "--keep-existing: only one of {} and {} exists; remove it to make a new pair",
                private_path.display(),
                public_path.display()
            ),
        }
    }
    for path in [&private_path, &public_path] {
        let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
            continue;
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    }
    let key = token::SigningKey::generate()?;
    write_new(&private_path, &key.to_pkcs8_pem()?, 0o600)?;
    write_new(
        &public_path,
        &key.verifying_key().to_public_key_pem()?,
        0o644,
    )?;
    writeln!(
        std::io::stdout().lock(),
        "wrote {} (gateway: --jwt-private-key) and {} (users, notes: --jwt-public-key)",
        private_path.display(),
        public_path.display()
    )?;
    Ok(())
}

/// Writes a file that must not exist yet, so that keygen never overwrites a key in use.
fn write_new(path: &std::path::Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (keygen never overwrites a key)",
            path.display()
        )
    })?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
