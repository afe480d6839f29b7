//! The tokio runtime, built by hand rather than by `#[tokio::main]`, so that its flavour and size are
//! command-line choices: `current-thread` reproduces the single event loop of the Python experiment this project
//! grew from, `multi-thread` is tokio's production default.

use std::{future::Future, io, net::SocketAddr, pin::Pin};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::drain;

/// Which tokio scheduler runs the server's async tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    /// One thread runs every task, like asyncio's event loop: one blocked task blocks them all.
    CurrentThread,
    /// A work-stealing pool of `--workers` threads.
    MultiThread,
    /// `--workers` threads, each with a current-thread runtime serving the connections handed to it
    /// ([`crate::shards`]); the process's main thread accepts them and runs health, the admin port and the drain; a busy
    /// connection's calls spill over to the other shards ([`crate::spread`]).
    ThreadPerCore,
}

impl Flavor {
    /// The shards a server with this flavour serves its connections on, if it shards them.
    pub fn shards(self, workers: usize) -> Option<usize> {
        (self == Self::ThreadPerCore).then_some(workers.max(1))
    }
}

/// The number of CPUs this process may use: the default size of every pool, so a 2-core container gets 2 workers.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Builds the process's runtime for the given flavour. `workers` is ignored for `CurrentThread`, and for
/// `ThreadPerCore`, whose main runtime is a current-thread one (the shards have their own).
/// `stalls`, if given, watches it (and every runtime it builds).
pub fn build(
    flavor: Flavor,
    workers: usize,
    thread_name: &str,
    stalls: Option<&crate::stall::Detector>,
) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = match flavor {
        Flavor::CurrentThread | Flavor::ThreadPerCore => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers.max(1));
            b
        }
    };
    builder.enable_all().thread_name(thread_name);
    if let Some(detector) = stalls {
        detector.instrument(&mut builder, thread_name);
    }
    builder.build()
}

/// What a server binary does after parsing its configuration: build the runtime (watched for stalls past
/// `stall_threshold`, unless 0), bind `listen`, run the server until SIGTERM/SIGINT and its drain, then shut the
/// runtime down with a bound. `run` is the server's `run(listener, shutdown)`.
pub fn serve_process<F, Fut>(
    flavor: Flavor,
    workers: usize,
    name: &str,
    listen: SocketAddr,
    stall_threshold: std::time::Duration,
    run: F,
) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::stall::validate_threshold("--stall-threshold", stall_threshold).map_err(anyhow::Error::msg)?;
    let stalls = crate::stall::for_process(stall_threshold).map(|p| &p.detector);
    let runtime = build(flavor, workers, name, stalls).context("cannot start the tokio runtime")?;
    let result = runtime.block_on(async {
        // Signals first: from the moment the address is printed, a SIGTERM drains.
        let shutdown = Box::pin(drain::signal());
        let listener = crate::listener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        run(listener, shutdown).await
    });
    // Requests abandoned by an expired drain are dropped here (which cancels their jobs); threads stuck in a job
    // that cannot notice cancellation (INLINE) must not keep the process alive.
    runtime.shutdown_timeout(drain::RUNTIME_SHUTDOWN);
    result
}
