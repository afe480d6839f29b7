//! The gRPC port's accepted connections, each bounded before HTTP/2 starts: at most `--max-connections` at once,
//! and each must send its first bytes within `--preface-timeout`.
//!
//! HTTP/2 keepalive (PINGs with a timeout) closes connections whose peer stops answering, but only once the
//! handshake is done: a connection that never sends the preface would otherwise hold a file descriptor and a task
//! forever. And the kernel has no cap on accepted connections short of the file-descriptor limit, where every new
//! connection, honest ones included, fails; so the cap closes the excess at once, while honest clients still
//! connect elsewhere or later.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{
    codegen::http,
    transport::server::{Connected, TcpConnectInfo, TcpIncoming, TlsConnectInfo},
};

use crate::batched_writes::BatchedWrites;

/// The peer address of the connection a request came on (tonic puts the connection's details in every request's
/// extensions, in plaintext or over TLS): what tells the calls of one connection from another's, as admission's
/// fair share needs. `None` for a request that came on no TCP connection.
pub fn peer(extensions: &http::Extensions) -> Option<SocketAddr> {
    let tcp = extensions
        .get::<TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref));
    tcp?.remote_addr()
}

/// The HTTP/2 client preface (`PRI * HTTP/2.0…`) is 24 bytes; a TLS ClientHello is longer. Once this many bytes
/// have arrived the peer speaks, and keepalive takes over.
const PREFACE_BYTES: usize = 24;

/// The accepted connections of `listener` (with `TCP_NODELAY`: replies are small and latency-bound, Nagle's
/// algorithm would add up to 40 ms), at most `max_connections` at once, each closed if it sends nothing within
/// `preface_timeout`.
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
    preface_timeout: Duration,
) -> impl Stream<Item = io::Result<Guarded>> {
    accepted(listener, max_connections).map(move |accepted| accepted.map(|a| a.guard(preface_timeout)))
}

/// The accepted connections of `listener` as [`incoming`] takes them, before the preface timeout starts: what
/// [`crate::shards`] hands to the thread that will serve each.
pub fn accepted(listener: TcpListener, max_connections: usize) -> impl Stream<Item = io::Result<Accepted>> {
    let slots = Arc::new(Semaphore::new(max_connections));
    TcpIncoming::from(listener).with_nodelay(Some(true)).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => return Some(Err(e)),
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Some(Ok(Accepted { stream, slot })),
            Err(_) => {
                // Dropping the stream closes it: the client gets a reset now rather than a hang.
                tracing::warn!(
                    peer = ?stream.peer_addr().ok(),
                    max_connections,
                    "connection refused: --max-connections reached"
                );
                None
            }
        }
    })
}

/// An accepted connection and its `--max-connections` slot, not yet guarded.
#[derive(Debug)]
pub struct Accepted {
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
}

impl Accepted {
    /// The connection, failing its reads once `preface_timeout` passes before its first bytes.
    pub fn guard(self, preface_timeout: Duration) -> Guarded {
        Guarded::new(self.stream, self.slot, preface_timeout)
    }

    /// The connection out of this runtime's reactor, to be guarded on another runtime's thread ([`crate::shards`]).
    pub fn detach(self) -> io::Result<Detached> {
        Ok(Detached { stream: self.stream.into_std()?, slot: self.slot })
    }
}

/// An accepted connection registered with no runtime, on its way to the thread that will serve it.
#[derive(Debug)]
pub struct Detached {
    stream: std::net::TcpStream,
    slot: OwnedSemaphorePermit,
}

impl Detached {
    /// The connection registered with the calling thread's runtime and guarded there.
    pub fn guard(self, preface_timeout: Duration) -> io::Result<Guarded> {
        let stream = TcpStream::from_std(self.stream)?;
        Ok(Accepted { stream, slot: self.slot }.guard(preface_timeout))
    }
}

/// An accepted connection holding its `--max-connections` slot, failing its reads once `--preface-timeout`
/// passes before its first [`PREFACE_BYTES`] bytes.
#[derive(Debug)]
pub struct Guarded {
    /// Its replies written a scheduler turn late, together ([`crate::batched_writes`]).
    stream: BatchedWrites<TcpStream>,
    /// Running until the peer has sent its preface; `None` afterwards. Boxed so the connection stays `Unpin`, as
    /// the server needs.
    preface_due: Option<Pin<Box<Sleep>>>,
    received: usize,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, preface_timeout: Duration) -> Self {
        Self {
            stream: BatchedWrites::new(stream),
            preface_due: Some(Box::pin(tokio::time::sleep(preface_timeout))),
            received: 0,
            _slot: slot,
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.get_ref().connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(due) = this.preface_due.as_mut() {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_BYTES {
                this.preface_due = None;
            } else if read.is_pending() && due.as_mut().poll(cx).is_ready() {
                tracing::debug!("connection closed: no HTTP/2 preface within --preface-timeout");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no preface within --preface-timeout",
                )));
            }
        }
        read
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_the_cap_closes_the_excess() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut accepted = Box::pin(incoming(listener, 1, Duration::from_millis(50)));
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let mut first = accepted.next().await.expect("a connection").expect("accepted");
        let mut buf = [0; 8];
        let error = first.read(&mut buf).await.expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // The slot is still held by `first`: a second connection is accepted and closed at once.
        let mut excess = TcpStream::connect(addr).await.expect("connect");
        let refused = tokio::time::timeout(Duration::from_millis(200), accepted.next()).await;
        assert!(refused.is_err(), "the excess connection is not handed to the server");
        assert!(matches!(excess.read(&mut buf).await, Ok(0) | Err(_)), "the excess connection was closed");
        drop(first);
        let mut speaking = TcpStream::connect(addr).await.expect("connect");
        let mut second = accepted.next().await.expect("a connection").expect("accepted");
        speaking.write_all(&[b'x'; PREFACE_BYTES]).await.expect("write");
        let mut preface = [0; PREFACE_BYTES];
        second.read_exact(&mut preface).await.expect("a speaking peer is read");
        tokio::time::sleep(Duration::from_millis(100)).await;
        speaking.write_all(b"more").await.expect("write");
        second.read_exact(&mut buf[..4]).await.expect("no timeout once the preface arrived");
    }
}
