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
/// virtualenv at once. Panics where it cannot be made: see [`try_venv`] for a caller with another way.
pub fn venv(python: &Path, name: &str, requirements: &Path) -> PathBuf {
    try_venv(python, name, requirements).unwrap_or_else(|e| panic!("{e}"))
}

/// [`venv`], or why it could not be made (no `venv` module, no package index, a package missing for this
/// platform).
pub fn try_venv(python: &Path, name: &str, requirements: &Path) -> Result<PathBuf, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let target = exe.ancestors().nth(3).ok_or("no target dir above the test executable")?; // target/<profile>/deps/<exe>
    let venv = target.join(name);
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    let created = Command::new(python).args(["-m", "venv", "--clear"]).arg(&venv).status();
    if !created.is_ok_and(|s| s.success()) {
        return Err(format!("cannot create a virtualenv at {}", venv.display()));
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        return Err(format!("pip install -r {} failed", requirements.display()));
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(venv)
}
