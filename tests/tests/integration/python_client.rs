//! A real foreign client: Python's `grpcio`, installed by this test into a private virtualenv under `target/`,
//! calls the gateway (every mode, bad input, a deadline) and the health service. Skipped, with a message, only
//! where no Python 3 is installed.

use std::{path::Path, process::Command};

use offload_testkit::python::{python3, venv};
use offload_tests::{compute, gateway};

#[test]
fn python_grpcio_calls_the_gateway_and_its_health_service() {
    let Some(python) = python3() else {
        eprintln!("SKIPPED python_grpcio_calls_the_gateway_and_its_health_service: no python3 on PATH");
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = venv(&python, "py-venv", &here.join("python/requirements.txt"));
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
