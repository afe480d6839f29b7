//! A TCP proxy that plays an unlucky network between two processes (the gateway and one compute replica), its
//! fault switchable while connections are open.
//!
//! SIGKILL is the kind failure: the kernel resets every connection at once and the peer knows immediately. What
//! a real network does is often worse and silent: a partition drops packets without a reset (the peer learns
//! nothing until a timer of its own fires), a congested or distant link is slow but works. [`Fault`] names what
//! the proxy does to the bytes it carries:
//!
//! | fault              | new connections                          | established connections                      |
//! |--------------------|------------------------------------------|----------------------------------------------|
//! | `Pass`             | forwarded                                | forwarded                                    |
//! | `Latency(d)`       | forwarded, each byte `d` late each way   | the same, from the next byte                 |
//! | `Blackhole`        | accepted, then never answered            | nothing more forwarded, nothing reset        |
//! | `Reset`            | reset at once (TCP RST)                  | reset at once, mid-stream                    |
//! | `Bandwidth(b)`     | forwarded at `b` bytes/s each way        | the same, from the next byte                 |
//!
//! A blackhole that heals (back to `Pass`) delivers what it held, as TCP would after a partition; a reset is
//! final for the connections it hit. Latency keeps throughput (bytes in flight are pipelined, not serialised);
//! the bandwidth is shared by all connections of a direction, as on one link.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};

/// Largest chunk read at once: a few TCP segments, so that latency and pacing apply at a fine grain.
const CHUNK_BYTES: usize = 16 * 1024;

/// Chunks read but not yet delivered, per direction of a connection: with [`CHUNK_BYTES`] this bounds what the
/// proxy holds per connection (2 × 64 × 16 KiB = 2 MiB) while letting a latency of a few hundred milliseconds
/// still carry several MB/s.
const CHUNKS_IN_FLIGHT: usize = 64;

/// Under a bandwidth limit, a chunk is at most this share of a second's bytes, so the pacing stays smooth.
const PACING_STEPS_PER_SECOND: u64 = 50;

/// What the proxy does to the bytes it carries (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Deliver every byte this much later, in each direction.
    Latency(Duration),
    /// Accept connections and never answer; forward nothing on established ones, and reset nothing.
    Blackhole,
    /// Reset (TCP RST) every connection, established ones included, and every new one.
    Reset,
    /// Carry at most this many bytes per second in each direction (all connections together).
    Bandwidth(u64),
}

/// Bytes carried so far, and connections accepted.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// What every connection of the proxy shares.
#[derive(Debug)]
struct Link {
    fault: watch::Receiver<Fault>,
    counters: Counters,
    /// Per direction (to upstream, to the client): when the link is next free under a bandwidth limit.
    free_at: [Mutex<Instant>; 2],
}

/// A running proxy from its own `127.0.0.1` port to one upstream address. Stops (closing every connection it
/// carries) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    link: Arc<Link>,
    /// The accept loop; it owns every connection's task, so aborting it ends them all.
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on `127.0.0.1:0` forwarding to `upstream`, passing everything until told otherwise. Must be called
    /// inside a tokio runtime, which runs it.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, watched) = watch::channel(Fault::Pass);
        let now = Instant::now();
        let link = Arc::new(Link { fault: watched, counters: Counters::default(), free_at: [now.into(), now.into()] });
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&link)));
        Ok(Self { addr, fault, link, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, as the gateway's `--compute` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches to `fault`, for new and established connections alike.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.link.counters.accepted.load(Ordering::Relaxed)
    }

    /// Bytes delivered so far: to the upstream, and back to clients.
    pub fn bytes(&self) -> (u64, u64) {
        let counters = &self.link.counters;
        (counters.to_upstream.load(Ordering::Relaxed), counters.to_client.load(Ordering::Relaxed))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, link: Arc<Link>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                link.counters.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(carry(client, upstream, Arc::clone(&link)));
            }
            // Reap finished connections so the set does not grow with every one ever carried.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Carries one connection until either side closes it, or resets it if the fault says so.
async fn carry(client: TcpStream, upstream: SocketAddr, link: Arc<Link>) {
    let _ = client.set_nodelay(true);
    let (mut healing, mut resetting) = (link.fault.clone(), link.fault.clone());
    // A blackhole accepts and never answers: the upstream is not even dialled until it heals.
    let upstream = tokio::select! {
        healed = until(&mut healing, |f| !matches!(f, Fault::Blackhole | Fault::Reset)) => {
            if !healed { return; }
            TcpStream::connect(upstream).await
        }
        _ = until(&mut resetting, |f| f == Fault::Reset) => return reset(&client),
    };
    let Ok(upstream) = upstream else { return reset(&client) };
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    tokio::select! {
        () = async {
            tokio::join!(
                pump(&mut client_read, &mut upstream_write, &link, Direction::ToUpstream),
                pump(&mut upstream_read, &mut client_write, &link, Direction::ToClient),
            );
        } => {}
        _ = until(&mut resetting, |f| f == Fault::Reset) => {
            reset(client_read.as_ref());
            reset(upstream_read.as_ref());
            // Dropped, a write half would first send a FIN: closed without one, the close is the reset alone.
            client_write.forget();
            upstream_write.forget();
        }
    }
}

/// Waits until the fault satisfies `wanted`; `false` if the proxy is gone.
async fn until(fault: &mut watch::Receiver<Fault>, wanted: impl FnMut(Fault) -> bool) -> bool {
    let mut wanted = wanted;
    fault.wait_for(|f| wanted(*f)).await.is_ok()
}

/// Makes the coming close of `stream` a TCP reset instead of an orderly FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    ToUpstream = 0,
    ToClient = 1,
}

/// Moves bytes from `from` to `to` under the fault in force, then passes the end of the stream on.
async fn pump(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, link: &Link, direction: Direction) {
    let (chunks, mut pending) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let read = async {
        let mut fault = link.fault.clone();
        loop {
            // Under a blackhole nothing is read: the sender's buffers fill, as behind a partition.
            if !until(&mut fault, |f| f != Fault::Blackhole).await {
                break;
            }
            let mut buf = vec![0; chunk_size(*fault.borrow())];
            let Ok(n) = from.read(&mut buf).await else { break };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let delay = match *fault.borrow() {
                Fault::Latency(delay) => delay,
                _ => Duration::ZERO,
            };
            if chunks.send((Instant::now() + delay, buf)).await.is_err() {
                break;
            }
        }
        drop(chunks);
    };
    let write = async {
        let mut fault = link.fault.clone();
        while let Some((due, chunk)) = pending.recv().await {
            loop {
                if !until(&mut fault, |f| f != Fault::Blackhole).await {
                    return;
                }
                tokio::time::sleep_until(due).await;
                let now = *fault.borrow();
                pace(link, direction, chunk.len(), now).await;
                // A blackhole that began meanwhile holds this chunk too.
                if *fault.borrow() != Fault::Blackhole {
                    break;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let counter = match direction {
                Direction::ToUpstream => &link.counters.to_upstream,
                Direction::ToClient => &link.counters.to_client,
            };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        // The sender finished: pass its FIN on.
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// How much to read at once under `fault`.
fn chunk_size(fault: Fault) -> usize {
    match fault {
        Fault::Bandwidth(rate) => (rate / PACING_STEPS_PER_SECOND).clamp(1, CHUNK_BYTES as u64) as usize,
        _ => CHUNK_BYTES,
    }
}

/// Under a bandwidth limit, waits until the link has carried `bytes` more in `direction`.
async fn pace(link: &Link, direction: Direction, bytes: usize, fault: Fault) {
    let Fault::Bandwidth(rate) = fault else { return };
    let done = {
        let mut free_at = link.free_at[direction as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = (*free_at).max(Instant::now());
        *free_at = start + Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        *free_at
    };
    tokio::time::sleep_until(done).await;
}

#[cfg(test)]
mod tests;
