//! The admin port (`--metrics-listen`): served on a thread and a tokio runtime of its own, bounded against the
//! clients it may meet.
//!
//! The admin port is how an operator sees a server in trouble, so it must not share the trouble: on the server's
//! own runtime, `/metrics` would wait behind the very jobs blocking it (`INLINE`), and time out exactly when the
//! scheduling-delay histogram had something to say. Its own runtime (one thread, a few tasks) answers regardless.
//!
//! It speaks HTTP/1 to scrapers and curl, and bounds them: a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`] (which, as hyper starts it whenever it waits for a request, also closes idle keep-alive
//! connections), a connection lives at most [`CONNECTION_LIFETIME`] (a client that does not read its reply), and at
//! most [`MAX_CONNECTIONS`] are open at once: a new connection at the cap closes the oldest that has sent nothing
//! (read or still waiting in the kernel: under a flood the runtime accepts faster than it delivers read events),
//! or else the oldest. A scrape's connection
//! lives milliseconds and a slowloris one until its timeout, so the oldest is almost always an attacker's, and a
//! scraper still gets in while hundreds of them trickle bytes; and they cannot take the file descriptors the gRPC
//! port needs.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    os::fd::AsFd,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::oneshot,
};

/// A scrape's request is one line and a few headers: 5 s is generous on any network and ends a slowloris
/// connection (bytes trickled forever) or an idle one quickly.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A scrape takes milliseconds; a connection older than this is a client that stopped reading. Prometheus
/// reconnects at its next scrape.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Prometheus keeps one connection per target, an operator's curl another: 16 leaves room for several scrapers
/// and costs 32 file descriptors at most (two per connection: see [`FDS_PER_CONNECTION`]).
pub const MAX_CONNECTIONS: usize = 16;

/// Each connection's socket and the duplicate the cap peeks through for a request not read yet.
pub const FDS_PER_CONNECTION: usize = 2;

/// The admin server, stopped (its thread joined) when dropped.
#[derive(Debug)]
pub struct AdminServer {
    /// Where it listens (the real port when the flag said port 0).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds `addr` (here, so a taken port is a start-up error) and serves `routes` on it from a new thread.
///
/// The listener's backlog holds a burst of connections ([`crate::listener`]): with the usual 128, connections
/// beyond it complete their handshake only when the kernel retries it, seconds later, and arrive after a
/// scraper's to close it as "the oldest".
pub fn start(addr: SocketAddr, routes: axum::Router) -> anyhow::Result<AdminServer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("offload-admin")
        .build()
        .context("cannot start the admin port's runtime")?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    // The listener is bound on the admin thread (a tokio listener belongs to the runtime it was made on) and the
    // outcome handed back here.
    let (bound, outcome) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("offload-admin".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match crate::listener::bind(addr).and_then(|l| Ok((l.local_addr()?, l))) {
                    Ok((addr, listener)) => {
                        let _ = bound.send(Ok(addr));
                        listener
                    }
                    Err(e) => return drop(bound.send(Err(e))),
                };
                serve(listener, routes, stopped).await;
            });
            // Connections still open are dropped with the runtime.
            runtime.shutdown_background();
        })
        .context("cannot start the admin port's thread")?;
    let addr = outcome
        .recv()
        .context("the admin port's thread ended before binding")?
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    Ok(AdminServer { addr, stop: Some(stop), thread: Some(thread) })
}

/// An open connection: the sender that closes it, whether its task has read a byte from it, and a second handle
/// on its socket to look for bytes the task has not read yet.
#[derive(Debug)]
struct Connection {
    id: u64,
    close: oneshot::Sender<()>,
    spoke: Arc<AtomicBool>,
    peek: std::net::TcpStream,
}

impl Connection {
    /// Whether the client has sent something: read by its task, or waiting in the kernel. Under a flood the admin
    /// runtime accepts faster than it delivers read events, so a scraper's request may have arrived unread.
    fn has_spoken(&self) -> bool {
        self.spoke.load(Ordering::Relaxed) || matches!(self.peek.peek(&mut [0; 1]), Ok(n) if n > 0)
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    connections: VecDeque<Connection>,
}

impl Open {
    /// At the cap, closes the oldest connection that has sent nothing, or else the oldest (see the module docs).
    fn make_room(&mut self) {
        if self.connections.len() < MAX_CONNECTIONS {
            return;
        }
        let silent = self.connections.iter().position(|c| !c.has_spoken());
        if let Some(connection) = self.connections.remove(silent.unwrap_or(0)) {
            let _ = connection.close.send(());
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's stream that marks, on its first bytes read, that the client has spoken.
    struct Marked<S> {
        #[pin]
        inner: S,
        spoke: Arc<AtomicBool>,
    }
}

impl<S: AsyncRead> AsyncRead for Marked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.spoke.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<S: AsyncWrite> AsyncWrite for Marked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Accepts until `stopped`, each connection bounded as the module docs say.
async fn serve(listener: TcpListener, routes: axum::Router, mut stopped: oneshot::Receiver<()>) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close instead of spinning.
                    tracing::warn!(error = %e, "admin port cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A duplicate of the socket's descriptor, non-blocking like the original: peeking with it never consumes
        // the request nor touches the task's readiness. Dropped with the connection's entry.
        let peek = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => std::net::TcpStream::from(fd),
            Err(e) => {
                tracing::warn!(error = %e, "admin port cannot duplicate a connection's descriptor; closed");
                continue;
            }
        };
        let (close, closed) = oneshot::channel();
        let spoke = Arc::new(AtomicBool::new(false));
        let id = {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            open.make_room();
            let id = open.next_id;
            open.next_id += 1;
            open.connections.push_back(Connection { id, close, spoke: Arc::clone(&spoke), peek });
            id
        };
        let stream = Marked { inner: stream, spoke };
        let (service, open) = (TowerToHyperService::new(routes.clone()), Arc::clone(&open));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                lived = tokio::time::timeout(CONNECTION_LIFETIME, connection) => if lived.is_err() {
                    tracing::debug!("admin connection closed: open longer than its lifetime");
                },
                _ = closed => tracing::debug!(max = MAX_CONNECTIONS, "admin connection closed: one too many"),
            }
            open.lock().unwrap_or_else(PoisonError::into_inner).connections.retain(|c| c.id != id);
        });
        // The new connection's task reads what its client has sent before the next accept, so a scraper, which
        // writes as soon as it connects, has spoken before a flood's next connection asks for room.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        net::{TcpListener, TcpStream},
        time::Instant,
    };

    use super::*;

    /// A full table: the oldest connection's client has sent its request, which no task has read yet (a flood keeps
    /// the admin runtime accepting); every other one is silent. Returns the table, the clients and the receivers
    /// that say which connection was closed.
    fn full_table() -> (Open, Vec<TcpStream>, Vec<oneshot::Receiver<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (mut open, mut clients, mut closed) = (Open::default(), Vec::new(), Vec::new());
        for id in 0..MAX_CONNECTIONS as u64 {
            clients.push(TcpStream::connect(listener.local_addr().expect("addr")).expect("connect"));
            let (server_side, _) = listener.accept().expect("accept");
            server_side.set_nonblocking(true).expect("non-blocking, as tokio's sockets are");
            let (close, receiver) = oneshot::channel();
            closed.push(receiver);
            let spoke = Arc::new(AtomicBool::new(false));
            open.connections.push_back(Connection { id, close, spoke, peek: server_side });
        }
        (open, clients, closed)
    }

    #[test]
    fn at_the_cap_a_request_waiting_unread_saves_its_connection() {
        let (mut open, mut clients, mut closed) = full_table();
        clients[0].write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("the scraper's request");
        let until = Instant::now() + Duration::from_secs(10);
        while !open.connections[0].has_spoken() {
            assert!(Instant::now() < until, "the request never reached the server's socket");
            std::thread::yield_now();
        }
        open.make_room();
        assert_eq!(open.connections.len(), MAX_CONNECTIONS - 1);
        assert!(closed[0].try_recv().is_err(), "the scraper's connection was closed");
        assert!(closed[1].try_recv().is_ok(), "the oldest silent connection stays open");
    }

    #[test]
    fn at_the_cap_with_everyone_silent_the_oldest_is_closed() {
        let (mut open, _clients, mut closed) = full_table();
        open.make_room();
        assert!(closed[0].try_recv().is_ok(), "the oldest silent connection stays open");
        assert!(closed[1..].iter_mut().all(|c| c.try_recv().is_err()));
    }
}
