//! The workspace's binaries (`offload-compute`, `offload-gateway`, `offload-bench`), found where cargo puts them
//! for the profile the caller was built in, and built first.
//!
//! Cargo builds a package's binaries only for that package's own integration tests, and the tests here live in
//! other packages; so the first call runs `cargo build` for every binary once per process. When they are up to
//! date that costs cargo's freshness check alone (well under a second); after a code change it relinks them, so a
//! test never runs a stale server.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The binaries built on demand.
const BINARIES: [&str; 3] = ["offload-compute", "offload-gateway", "offload-bench"];

/// Path of workspace binary `name`, built in the same profile (and target folder) as the running executable.
///
/// Panics with cargo's own message if the build fails: nothing can be tested then.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build);
    let path = dir.join(name);
    assert!(path.exists(), "{} not found after `cargo build`", path.display());
    path
}

/// `target/<profile>/`, from the running executable (`target/<profile>/deps/<exe>` for tests and benchmarks,
/// `target/<profile>/<exe>` for a binary).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let parent = exe.parent().expect("executable's folder");
    if parent.ends_with("deps") { parent.parent().expect("profile folder").to_owned() } else { parent.to_owned() }
}

/// Builds every binary in [`BINARIES`] into the profile folder of the running executable; that folder.
fn build() -> PathBuf {
    let dir = profile_dir();
    let target = dir.parent().expect("target folder");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build").arg("--target-dir").arg(target).current_dir(workspace_root());
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
        None => panic!("no profile folder in {}", dir.display()),
    }
    // The whole workspace, tests included, so features resolve exactly as under `cargo test --workspace` (which
    // unifies every member's and every dev-dependency's features): the libraries the tests were built against are
    // reused and only the binaries are linked. Built alone, the three binaries would resolve fewer features and
    // recompile half the dependency tree (85 s in a cold CI run).
    command.args(["--workspace", "--tests"]);
    for bin in BINARIES {
        command.args(["--bin", bin]);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "`{command:?}` failed: see its output above");
    dir
}

/// The workspace root: this crate's manifest folder's parent.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

/// Starts workspace binary `name` with `args` plus `--listen 127.0.0.1:0`, and waits until it serves.
pub fn start(name: &str, args: &[&str]) -> crate::child::ChildServer {
    let mut command = Command::new(path(name));
    command.args(args).args(["--listen", "127.0.0.1:0"]);
    crate::child::ChildServer::start(command).expect("server started")
}
