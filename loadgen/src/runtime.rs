//! The load generator's own tokio runtime, built in one place for `load` and for the experiments.
//!
//! Why the blocking entry points ([`crate::load::run`], the experiments' `run`) build it themselves instead of
//! leaving `block_on` to the binary: an `async fn`'s body is compiled in the crate that polls it, so a binary that
//! calls `block_on(experiment())` compiles every experiment, and the load generator under it, as the very last step
//! of the build, with nothing to run beside it (21 s of a cold release build; docs/log/build-time-2026.md).

/// A multi-thread runtime like any production client's: `threads` workers, or one per core when `None`.
pub fn client(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    builder.enable_all().thread_name("bench-client").build()
}
