use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{ServeConfig, ServeError, ServiceDefinition};

/// A service serving in the background on a local port; dropping it starts the drain.
///
/// For tests and embedding: `spawn` binds before it returns, so clients can connect at once
/// without sleeping or retrying.
#[derive(Debug)]
pub struct Spawned {
    pub address: SocketAddr,
    server: Background,
}

/// A server task with its shutdown signal: sends it when stopped or dropped.
#[derive(Debug)]
pub(crate) struct Background {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Background {
    /// Runs `serve` (given the shutdown future it must honour) in a background task.
    pub(crate) fn start<F, S>(serve: S) -> Self
    where
        S: FnOnce(oneshot::Receiver<()>) -> F,
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        Self {
            shutdown: Some(shutdown),
            task: tokio::spawn(serve(shutdown_signal)),
        }
    }

    /// Drains and waits until the server has stopped.
    pub(crate) async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Spawned {
    /// `http://ADDRESS`, for a client channel.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Drains and waits until the server has stopped.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.server.stop().await
    }
}

/// Serves `definition` on `127.0.0.1:0` in a background task.
pub async fn spawn(definition: ServiceDefinition, config: ServeConfig) -> std::io::Result<Spawned> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let server = Background::start(|shutdown| async move {
        crate::serve(listener, definition, &config, async {
            let _ = shutdown.await;
        })
        .await
    });
    Ok(Spawned { address, server })
}
