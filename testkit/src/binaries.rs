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
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_this_test) {
            command.env_remove(key);
        }
    }
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

/// The variables cargo sets for the test process it runs (this package's folder, name, version, …), which the
/// top-level `cargo test` itself does not have. Passed on to the nested build they would differ from what the
/// dependencies were built with, and the build scripts that watch them (ring's watches `CARGO_MANIFEST_DIR` and
/// `CARGO_PKG_*`) would rerun: ring, rustls, tonic and everything above them recompiled, ~30 s per test process
/// that starts a binary. The user's own cargo settings (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, …)
/// are kept.
fn set_by_cargo_for_this_test(key: &str) -> bool {
    const EXACT: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
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

#[cfg(test)]
mod tests {
    use super::set_by_cargo_for_this_test;

    #[test]
    fn only_what_cargo_sets_for_the_running_test_is_dropped() {
        for dropped in
            ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_PKG_VERSION_MAJOR", "CARGO_BIN_EXE_offload-bench"]
        {
            assert!(set_by_cargo_for_this_test(dropped), "{dropped}");
        }
        for kept in ["CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_PROFILE_RELEASE_DEBUG", "CARGO_INCREMENTAL"] {
            assert!(!set_by_cargo_for_this_test(kept), "{kept}");
        }
    }
}
