//! TCP and HTTP/2 settings both servers use, so they behave the same on the wire.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};

/// HTTP/2 PINGs on idle connections every 20 s (and give up after 10 s without an answer): dead peers behind a
/// NAT or a killed pod are noticed in half a minute instead of the kernel's two hours.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accepted-connection stream for an already bound listener (tests bind port 0 and pass the listener in).
/// `TCP_NODELAY` is on: replies are small and latency-bound, Nagle's algorithm would add up to 40 ms.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A tonic server builder with the shared HTTP/2 settings.
pub fn server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}
