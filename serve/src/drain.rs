//! Graceful shutdown: the signal, then a drain bounded in time.
//!
//! Order matters (and mirrors what Kubernetes expects of a pod): first tell health checkers we are going
//! (`NOT_SERVING`, so balancers stop sending new work), keep serving for a short lame-duck period while that news
//! travels, then stop accepting connections and let in-flight requests finish, but only for a bounded grace
//! period: a minute-long job must not hold a rolling restart hostage.

use std::{future::Future, pin::Pin, time::Duration};

use tokio::sync::oneshot;

/// After the drain, how long the runtime may take to drop what is left (connection tasks, abandoned requests)
/// before the process exits anyway.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// The future a server's `serve_with_shutdown` waits on: resolves when the drain begins.
pub type StopAccepting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a served server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished within the grace period.
    Complete,
    /// The grace period ran out; the remaining requests were dropped.
    GraceExpired,
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (accepting, or a fatal I/O error).
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A shard of a `--runtime thread-per-core` server could not start or failed.
    #[error("{0}")]
    Shard(String),
}

/// Listens for SIGINT and SIGTERM from now on, and resolves on the first of them (Ctrl-C only, where there are no
/// Unix signals). The handlers are installed before this returns, not when the future is first polled: a server
/// calls it before it binds and says where it listens, so a SIGTERM sent as soon as it is up (a launcher that stops
/// what it just started, an orchestrator scaling down) starts the drain instead of killing the process undrained.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match streams {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                        _ = int.recv() => tracing::info!("SIGINT received"),
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("cannot listen for signals ({e}); only Ctrl-C will stop the server");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `serve` until `shutdown` resolves, then calls `before_drain` (set health to `NOT_SERVING`), keeps serving
/// for `lame_duck` (at most `grace`), tells the server to stop accepting, and waits at most `grace` for in-flight
/// requests.
///
/// `serve` receives the future that tells it to stop accepting; pass it to tonic's
/// `serve_with_incoming_shutdown`.
pub async fn serve_until<S, Fut>(
    serve: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    lame_duck: Duration,
    before_drain: impl Future<Output = ()>,
) -> Result<Drained, ServeError>
where
    S: FnOnce(StopAccepting) -> Fut,
    Fut: Future<Output = Result<(), ServeError>> + Send + 'static,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut server = tokio::spawn(serve(Box::pin(async move {
        let _ = stop_rx.await;
    })));
    tokio::select! {
        ended = &mut server => {
            // The server stopped on its own: that is a failure, not a shutdown.
            ended??;
            return Ok(Drained::Complete);
        }
        () = shutdown => {}
    }
    before_drain.await;
    // Lame duck: keep accepting for a moment after saying NOT_SERVING, so that balancers watching health stop
    // sending here before new streams are refused. Without it a call picked just before the update arrives
    // after the GOAWAY and fails in the transport (found by the rolling-restart scenario).
    tokio::time::sleep(lame_duck.min(grace)).await;
    let _ = stop_tx.send(());
    tracing::info!(grace_ms = grace.as_millis() as u64, "draining in-flight requests");
    match tokio::time::timeout(grace, &mut server).await {
        Ok(ended) => {
            ended??;
            tracing::info!("drained");
            Ok(Drained::Complete)
        }
        Err(_) => {
            tracing::warn!("grace period expired; dropping the requests still in flight");
            server.abort();
            Ok(Drained::GraceExpired)
        }
    }
}
