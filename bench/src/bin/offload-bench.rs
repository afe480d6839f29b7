//! `offload-bench`: its allocator and `main`; the command line and what each command runs are the library
//! (`bench/src/lib.rs`).

use clap::Parser;

/// The servers' allocator, for the servers this executable runs as child processes and for the load generator
/// (why: the workspace manifest, beside the dependency).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<std::process::ExitCode> {
    offload_bench::run(offload_bench::Cli::parse())
}
