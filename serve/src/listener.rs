//! Binding a listening socket with a backlog that holds a burst of connections.
//!
//! std, mio and so tokio's `TcpListener::bind` ask the kernel for a backlog of 128 completed connections waiting
//! to be accepted. A burst larger than that (a load generator opening its connections at once, a slowloris client
//! opening hundreds) overflows it, and the kernel then drops the handshakes beyond it: those clients connect only
//! when their SYN or ACK is retried, one to several seconds later, and arrive out of order. The servers ask for
//! [`BACKLOG`] instead (the kernel caps it at `net.core.somaxconn`, 4096 on current Linux).

use std::{io, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Completed connections the kernel holds until they are accepted: as many as a large burst, and what nginx
/// (511) and Go (`somaxconn`) use in the same order of magnitude.
pub const BACKLOG: u32 = 1024;

/// Binds `addr` for listening with [`BACKLOG`], address reuse on (a restarted server rebinds its port while
/// the old connections sit in TIME_WAIT), on the current tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
