/// Completes on the first SIGTERM or SIGINT (Ctrl-C) and logs which one arrived.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                let name = tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "shutdown requested");
            }
            (Err(error), _) | (_, Err(error)) => {
                // Without signal handlers there is no way to be told to stop; wait forever
                // rather than shut down at once.
                tracing::error!(%error, "cannot install signal handlers");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}
