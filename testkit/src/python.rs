//! Python tools the tests use as real peers and checkers (a `grpcio` client; kubernetes-validate, yamllint,
//! hadolint, check-jsonschema), installed into private virtualenvs under `target/`, pinned by requirements files.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// `python3`, if installed (tests that need it skip, with a message, where it is not).
pub fn python3() -> Option<PathBuf> {
    let found = Command::new("python3").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("python3"))
}

/// `target/<name>`, a virtualenv created and filled once from `requirements`; a changed requirements file
/// triggers a reinstall. Calls in one process take turns, so tests running in parallel never fill the same
/// virtualenv at once.
pub fn venv(python: &Path, name: &str, requirements: &Path) -> PathBuf {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let exe = std::env::current_exe().expect("current exe");
    let target = exe.ancestors().nth(3).expect("target dir"); // target/<profile>/deps/<exe>
    let venv = target.join(name);
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(requirements).expect("requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    let status = Command::new(python).args(["-m", "venv", "--clear"]).arg(&venv).status().expect("python3 -m venv");
    assert!(status.success(), "cannot create a virtualenv at {}", venv.display());
    let pip = venv.join("bin/pip");
    let status = Command::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status()
        .expect("pip");
    assert!(status.success(), "pip install -r {} failed", requirements.display());
    std::fs::write(&stamp, wanted).expect("stamp");
    venv
}
