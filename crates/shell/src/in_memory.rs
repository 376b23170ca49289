//! Serving over in-memory pipes instead of TCP (feature `testing`), so that drains, grace
//! periods and readiness intervals can be tested on a paused clock.
//!
//! A paused tokio clock jumps to the next timer whenever the runtime has nothing to run. Bytes
//! in flight on a real socket leave it with nothing to run, so the clock would jump while a
//! call is on the wire; bytes written to an in-memory pipe wake the reader at once, so the
//! clock only moves when every task is waiting on a timer.

use std::future::Ready;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::spawn::Background;
use crate::{ServeConfig, ServeError, ServiceDefinition};

/// Bytes a pipe buffers in each direction: larger than any message the tests send.
const PIPE_CAPACITY: usize = 1 << 20;

/// A service serving in the background on in-memory connections; dropping it starts the
/// drain, like [`crate::Spawned`].
#[derive(Debug)]
pub struct InMemory {
    connector: Connector,
    server: Background,
}

/// Serves `definition` in a background task on connections that [`InMemory::channel`] opens.
pub fn spawn_in_memory(definition: ServiceDefinition, config: ServeConfig) -> InMemory {
    let (connections, accepted) = mpsc::unbounded_channel::<DuplexStream>();
    let incoming = futures_util::stream::unfold(accepted, |mut accepted| async move {
        let connection = accepted.recv().await?;
        Some((Ok::<_, std::io::Error>(connection), accepted))
    });
    let server = Background::start(|shutdown| async move {
        crate::serve_connections(incoming, "in-memory", definition, &config, async {
            let _ = shutdown.await;
        })
        .await
    });
    InMemory {
        connector: Connector(connections),
        server,
    }
}

impl InMemory {
    /// A client channel; it opens a new in-memory connection whenever it (re)connects.
    pub fn channel(&self) -> Channel {
        Endpoint::from_static("http://in-memory.invalid")
            .connect_with_connector_lazy(self.connector.clone())
    }

    /// Drains and waits until the server has stopped.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.server.stop().await
    }
}

/// Dials the server: one pipe per connection, its far end handed to the server's accept loop.
#[derive(Debug, Clone)]
struct Connector(mpsc::UnboundedSender<DuplexStream>);

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<DuplexStream>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        let accepted = self.0.send(server).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "the in-memory server has stopped accepting",
            )
        });
        std::future::ready(accepted.map(|()| TokioIo::new(client)))
    }
}
