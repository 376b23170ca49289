//! What a service port speaks under HTTP/2: plain TCP, or TLS over TCP (`--tls-cert`).
//!
//! A TLS connection comes out of the accept stream at once, its handshake not started: the
//! handshake runs inside the connection's first reads and writes, in the connection's own
//! task, so that a slow or silent client never holds up the accepts behind it. Its deadline is
//! the preface's (`connections::Guarded` sits above this type and counts decrypted bytes): the
//! handshake and the HTTP/2 preface together get `--handshake-timeout`.
//!
//! Each handshake takes the TLS configuration in force when the connection is accepted: a
//! reloaded certificate serves new connections while open ones carry on with theirs.
//!
//! The peer's address stays the TCP one ([`TcpConnectInfo`]), captured at accept, so telemetry
//! reads it the same way over TLS as without.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tls::tokio_rustls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection.
pub(crate) struct Transport {
    info: TcpConnectInfo,
    state: State,
}

enum State {
    Plain(TcpStream),
    /// Boxed: a rustls connection is a few kilobytes, and most of a server's life is spent in
    /// the other states.
    Handshaking(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// The handshake failed: every read and write fails.
    Failed,
}

impl Transport {
    /// `tcp` as it is, or with a TLS handshake to make under `tls`'s configuration in force.
    pub(crate) fn new(tcp: TcpStream, tls: Option<&tls::ServerTls>) -> Self {
        let info = tcp.connect_info();
        let state = match tls {
            None => State::Plain(tcp),
            Some(tls) => State::Handshaking(Box::new(tls.acceptor().accept(tcp))),
        };
        Self { info, state }
    }

    /// Drives the handshake, if one is under way; Ready(Ok) once the connection carries data.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Handshaking(accept) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        match ready!(Pin::new(accept.as_mut()).poll(cx)) {
            Ok(stream) => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let (_, connection) = stream.get_ref();
                    let client = connection
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| tls::CertificateSummary::parse(leaf).ok())
                        .map(|summary| summary.subject);
                    tracing::debug!(
                        peer = ?self.info.remote_addr(),
                        client_certificate = client.as_deref().unwrap_or(""),
                        "tls handshake done"
                    );
                }
                self.state = State::Tls(Box::new(stream));
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                // Common and harmless (port scanners, clients without a certificate on an mTLS
                // port): not worth more than debug.
                tracing::debug!(peer = ?self.info.remote_addr(), %error, "tls handshake failed");
                self.state = State::Failed;
                Poll::Ready(Err(error))
            }
        }
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_handshake(cx))?;
        match &mut self.state {
            State::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            State::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_handshake(cx))?;
        match &mut self.state {
            State::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            State::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_handshake(cx))?;
        match &mut self.state {
            State::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            State::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.state {
            State::Plain(tcp) => tcp.is_write_vectored(),
            State::Tls(stream) => stream.is_write_vectored(),
            State::Handshaking(_) | State::Failed => false,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_handshake(cx))?;
        match &mut self.state {
            State::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            State::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            State::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            State::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            // Nothing was said yet: dropping the socket closes it.
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }
}

impl Connected for Transport {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}
