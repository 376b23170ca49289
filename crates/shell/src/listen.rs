//! Binding the service's port with a backlog a busy server needs.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). The standard
/// library and tokio ask for 128: a proxy opening ~1,000 connections at once (nginx's
/// `grpc_pass` uses one per call in flight) overflowed it and some were reset.
const BACKLOG: u32 = 4096;

/// A listener on `address`, as `TcpListener::bind` makes it but with a deeper backlog.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted process gets its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}
