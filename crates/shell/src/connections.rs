//! Bounds on connections, before HTTP/2 sees them: how many a process holds at once, and how
//! long a new one may take to say it speaks HTTP/2.
//!
//! - A connection over `--max-connections` is closed as soon as it is accepted, so that a
//!   flood of connections cannot take the process's file descriptors or memory (an idle
//!   connection costs about 21 KB: 4,096 of them stay under 90 MB).
//! - A connection must finish its TLS handshake (on a TLS port) and send the 24-byte HTTP/2
//!   preface within `--handshake-timeout`; one that does not (a port scanner, a slowloris, a
//!   client speaking HTTP/1, or TLS to a plaintext port) is closed. hyper would otherwise wait
//!   for it for ever.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what an HTTP/2 client sends first.
const PREFACE_BYTES: usize = 24;

pin_project_lite::pin_project! {
    /// The accepted connections of `inner` that fit under the limit, each with its deadline
    /// for the preface.
    pub(crate) struct Bounded<S> {
        #[pin]
        inner: S,
        permits: Arc<Semaphore>,
        handshake_timeout: Duration,
        refused: u64,
    }
}

impl<S> Bounded<S> {
    pub(crate) fn new(inner: S, max_connections: usize, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            handshake_timeout,
            refused: 0,
        }
    }
}

impl<S, IO, E> Stream for Bounded<S>
where
    S: Stream<Item = Result<IO, E>>,
{
    type Item = Result<Guarded<IO>, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let connection = match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(connection)) => connection,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(None),
            };
            let Ok(permit) = this.permits.clone().try_acquire_owned() else {
                // Dropped: closed at once. Logged at the first and every 1,000th after.
                if (*this.refused).is_multiple_of(1000) {
                    tracing::warn!(
                        refused = *this.refused + 1,
                        "connection limit reached: new connections are closed (--max-connections)"
                    );
                }
                *this.refused += 1;
                continue;
            };
            return Poll::Ready(Some(Ok(Guarded {
                inner: connection,
                _permit: permit,
                preface: Some(Box::pin(tokio::time::sleep(*this.handshake_timeout))),
                read: 0,
            })));
        }
    }
}

/// A connection holding its place under the limit until it closes.
pub(crate) struct Guarded<IO> {
    inner: IO,
    _permit: OwnedSemaphorePermit,
    /// Until the preface has arrived: when it must have.
    preface: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if self.preface.is_some() {
                    self.read += buf.filled().len() - before;
                    if self.read >= PREFACE_BYTES {
                        self.preface = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.pending_before_deadline(cx),
        }
    }
}

impl<IO> Guarded<IO> {
    /// An operation that could not go on: Pending, unless the preface's deadline has passed.
    /// Writes count too: over TLS every write waits for the handshake, and hyper writes its
    /// SETTINGS before it reads the preface.
    fn pending_before_deadline<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let expired = self
            .preface
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no TLS handshake and HTTP/2 preface within the handshake timeout",
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending_before_deadline(cx),
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending_before_deadline(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending_before_deadline(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
