//! `offload-experiments`: the two experiments behind `offload-bench`, built from the load generator
//! (`offload-loadgen`) and the test kit (`offload-testkit`), run against real server processes.
//!
//! - [`compare`]: the main job: every execution mode and every way of waiting under the same mixed load, as a
//!   table, charts and a report folder.
//! - [`reliability`]: replica loss, rolling restart, overload, deadlines and a soak against a gateway and several
//!   compute replicas.
//! - [`overhead`]: where each microsecond of a trivial call goes: a bare tonic echo, compute and the gateway
//!   under the same h2load load, CPU per call per process, same-run ratios and (`--profile`) flame graphs.
//! - [`stall`]: does any gRPC server block its event loop? Probe latency idle and under a given call, and a
//!   verdict.

pub mod compare;
pub mod goals;
pub mod overhead;
pub mod reliability;
pub mod stall;

/// A server's tokio runtime, as its `--runtime` flag takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerRuntime {
    /// One thread: the seed experiment's single event loop.
    CurrentThread,
    /// A worker per core (tokio's default).
    MultiThread,
    /// A thread per core, each with a runtime of its own serving the connections handed to it (the gateway's
    /// default).
    ThreadPerCore,
}

impl ServerRuntime {
    /// The value of the servers' `--runtime` flag.
    pub fn flag_value(self) -> &'static str {
        match self {
            Self::CurrentThread => "current-thread",
            Self::MultiThread => "multi-thread",
            Self::ThreadPerCore => "thread-per-core",
        }
    }
}

/// Runs an experiment on the load generator's runtime, here rather than in the binary so that the experiment's
/// async code is compiled once, in this crate (`offload_loadgen::runtime` says why).
fn block_on(experiment: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    offload_loadgen::runtime::client(None)?.block_on(experiment)
}

/// The CPUs this process may use (its affinity mask and cgroup quota, as the servers count them).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
