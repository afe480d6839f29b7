//! A real foreign client: Python's `grpcio`, installed by this test into a private virtualenv under `target/`,
//! calls the gateway (every mode, bad input, a deadline) and the health service. Skipped, with a message, only
//! where no Python 3 is installed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use offload_tests::{compute, gateway};

fn python3() -> Option<PathBuf> {
    let found = Command::new("python3").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("python3"))
}

/// `target/py-venv`, created and filled once; `requirements.txt` changing triggers a reinstall.
fn venv(python: &Path, requirements: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe.ancestors().nth(3).expect("target dir"); // target/<profile>/deps/<exe>
    let venv = target.join("py-venv");
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

#[test]
fn python_grpcio_calls_the_gateway_and_its_health_service() {
    let Some(python) = python3() else {
        eprintln!("SKIPPED python_grpcio_calls_the_gateway_and_its_health_service: no python3 on PATH");
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = venv(&python, &here.join("python/requirements.txt"));
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    let stubs = std::env::temp_dir().join(format!("offload-py-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).expect("stub dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(offload_tests::wait_serving(&gateway_server.url(), offload_proto::service_names::GATEWAY));
    let output = Command::new(venv.join("bin/python"))
        .arg(here.join("python/client.py"))
        .arg(gateway_server.addr.to_string())
        .arg(here.join("../proto"))
        .arg(&stubs)
        .output()
        .expect("run the python client");
    let _ = std::fs::remove_dir_all(&stubs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
