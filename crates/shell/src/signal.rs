/// Completes on the first SIGTERM or SIGINT (Ctrl-C) and logs which one arrived.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between the call and the first poll (say, right after a banner that
/// tells a supervisor the process is up) is not the default action's (death) but a drain.
/// Must be called within a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match handlers {
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
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}
