//! Writes that wait for the end of the runtime's round, so that one system call carries what
//! every call of the round had to send.
//!
//! An HTTP/2 connection's task writes as soon as it is polled with frames queued. When a read
//! wakes a dozen calls, the first one to answer wakes the connection task, and whether it
//! writes one answer or all of them depends on where it sits in the run queue. [`Coalesced`]
//! makes the first write of each batch (up to the flush that ends it) yield once (`tokio::task::yield_now`, which waits for
//! the runtime to look at its sockets and run what that woke): by the time the write goes out,
//! the round's other calls have queued their frames behind it. What it costs is one more turn
//! of the runtime per write; what it saves, under load, is most of the `writev` calls, each of
//! which on loopback also runs the receiver's TCP stack and wakes it — the same trade event
//! loops such as Envoy's make by flushing once per loop iteration.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Set to `off` to write as soon as HTTP/2 asks (the baseline when measuring what this saves).
const COALESCE_WRITES_ENV: &str = "NOTESUITE_COALESCE_WRITES";

/// Whether writes are coalesced (the default).
pub(crate) fn enabled() -> bool {
    std::env::var(COALESCE_WRITES_ENV).map_or(true, |value| value != "off")
}

/// `io`, its writes deferred to the end of the runtime's round (see the module).
pub(crate) struct Coalesced<IO> {
    io: IO,
    enabled: bool,
    /// The yield the next write waits for, once started.
    turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Set once the yield is over: writes go out until the next flush ends the batch.
    may_write: bool,
}

impl<IO> Coalesced<IO> {
    /// `io`, coalesced when `enabled` (otherwise as it is).
    pub(crate) fn new(io: IO, enabled: bool) -> Self {
        Self {
            io,
            enabled,
            turn: None,
            may_write: false,
        }
    }

    /// Ready once this batch has waited for the end of the round.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.may_write || !self.enabled {
            return Poll::Ready(());
        }
        let turn = self
            .turn
            .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
        ready!(turn.as_mut().poll(cx));
        self.turn = None;
        self.may_write = true;
        Poll::Ready(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Coalesced<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesced<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_turn(cx));
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_turn(cx));
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// The end of a batch (HTTP/2 flushes once it has written all it had): the next write
    /// waits for a round again. The writes of one batch (a large answer's frames) go out one
    /// after the other without waiting.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = ready!(Pin::new(&mut self.io).poll_flush(cx));
        self.may_write = false;
        Poll::Ready(flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for Coalesced<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn writes_arrive_whole_and_wait_for_the_end_of_the_round() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut near = Coalesced::new(near, true);
        // A write yields once before it goes out: the other task's write, queued behind it in
        // the same round, reaches the pipe first.
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let first = {
            let order = order_tx.clone();
            async move {
                near.write_all(b"coalesced").await.expect("write");
                near.flush().await.expect("flush");
                order.send("coalesced").expect("send");
                near
            }
        };
        let second = async move {
            order_tx.send("plain").expect("send");
        };
        let (near, ()) = tokio::join!(first, second);
        assert_eq!(order.recv().await, Some("plain"));
        assert_eq!(order.recv().await, Some("coalesced"));
        let mut read = vec![0; 9];
        far.read_exact(&mut read).await.expect("read");
        assert_eq!(read, b"coalesced");
        // Every later batch goes out too.
        let mut near = near;
        for round in 0..100u8 {
            near.write_all(&[round; 3]).await.expect("write");
            near.flush().await.expect("flush");
            let mut got = [0; 3];
            far.read_exact(&mut got).await.expect("read");
            assert_eq!(got, [round; 3]);
        }
        // Switched off, a write is the inner write.
        let (near, mut far) = tokio::io::duplex(64);
        let mut near = Coalesced::new(near, false);
        near.write_all(b"now").await.expect("write");
        let mut got = [0; 3];
        far.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"now");
    }
}
