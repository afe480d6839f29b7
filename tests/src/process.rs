//! The real binaries as child processes, for what only a process has: signals, exit codes and its own CPU time.
//!
//! The binaries are found beside the test executable (`target/<profile>/`); `cargo test --workspace` builds them
//! because the compute and gateway packages have integration tests of their own. Process handling itself is
//! `offload_bench::child`, which `compare` uses the same way.

use std::{path::PathBuf, process::Command};

pub use offload_bench::child::ChildServer;

/// Path of a workspace binary built by cargo in the same profile as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} not found: run the tests with `cargo test --workspace`", path.display());
    path
}

/// Starts `name` with `args` plus `--listen 127.0.0.1:0`.
pub fn start(name: &str, args: &[&str]) -> ChildServer {
    let mut command = Command::new(binary(name));
    command.args(args).args(["--listen", "127.0.0.1:0"]);
    ChildServer::start(command).expect("server started")
}
