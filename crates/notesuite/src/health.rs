//! `notesuite health`: the probe a container without a shell runs against its own service.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;

use crate::cli::HealthConfig;
use crate::client;

/// The variable a service reads its listen address from: `health` without `--addr` asks the
/// service of the same container, whichever subcommand it runs.
const LISTEN_ENV: &str = "NOTESUITE_LISTEN";

/// Checks one health name once. Ok (and a line on stdout) only when it is SERVING.
pub async fn run(config: &HealthConfig) -> anyhow::Result<()> {
    let address = match &config.addr {
        Some(address) => address.clone(),
        None => address_from_listen_env()?,
    };
    let identity = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    let tls = client::tls_connector(
        config.tls_ca.as_deref(),
        identity,
        config.tls_server_name.as_deref(),
    )
    .context("--tls-ca, --tls-cert, --tls-key, --tls-server-name")?;
    let endpoint =
        client::endpoint(&address, config.timeout, tls.as_ref()).map_err(anyhow::Error::msg)?;
    let checked = async {
        let channel = client::connect(&endpoint, config.timeout).await?;
        client::check_health(channel, &config.service).await
    };
    // One deadline for the whole probe, as Docker and Kubernetes give it one.
    let outcome = tokio::time::timeout(config.timeout, checked)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(config.timeout)
            ))
        });
    let service = &config.service;
    match outcome {
        Ok(()) => {
            writeln!(std::io::stdout().lock(), "{address} {service:?}: SERVING")?;
            Ok(())
        }
        Err(reason) => anyhow::bail!("{address} {service:?}: {reason}"),
    }
}

fn address_from_listen_env() -> anyhow::Result<String> {
    let listen = std::env::var(LISTEN_ENV)
        .with_context(|| format!("--addr is not set, and neither is {LISTEN_ENV}"))?;
    let listen: SocketAddr = listen.parse().with_context(|| {
        format!("--addr is not set, and {LISTEN_ENV}={listen:?} is not HOST:PORT")
    })?;
    Ok(crate::up::connectable(listen).to_string())
}
