//! Debian packages a test or an experiment needs (chromium, h2load, perf), installed on the spot when that is
//! possible: as root (nothing ever asks for a password) and where `apt-get` exists. Otherwise the error says what
//! to install, and the caller prints it and skips.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// `apt-get install -y package`, refreshing the package lists once if the first attempt does not find it. `what`
/// names the tool the package provides, for the messages.
pub fn install(package: &str, what: &str) -> anyhow::Result<()> {
    let uid = Command::new("id").arg("-u").output().context("id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("not root, so {what} cannot be installed here: install Debian's `{package}`");
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!("no apt-get: install {what} (Debian's `{package}`)");
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if apt(&["install", "-y", package]) || (apt(&["update"]) && apt(&["install", "-y", package])) {
        Ok(())
    } else {
        bail!("apt-get install -y {package} failed")
    }
}

/// Whether `kubectl` runs here, installed first (Debian's `kubectl`) if it does not and that is possible.
pub fn kubectl() -> bool {
    let runs = || std::process::Command::new("kubectl").args(["version", "--client"]).output().is_ok();
    runs() || (install("kubectl", "kubectl").is_ok() && runs())
}
