//! A real foreign client: Python's `grpcio`, installed by these tests into a private virtualenv under `target/`,
//! calls the gateway (every mode, bad input, a deadline) and the health service, and checks the gRPC details such
//! a client relies on against both servers: reflection, gzip, and error details (`google.rpc.BadRequest`,
//! `ErrorInfo`, `RetryInfo`, read by `grpc_status`). Skipped, with a message, only where no Python 3 is installed.

use std::{path::Path, process::Command};

use offload_testkit::python::{python3, venv};
use offload_tests::{compute, gateway};

#[test]
fn python_grpcio_calls_the_gateway_and_its_health_service() {
    let Some(python) = python3() else {
        offload_testkit::skip::missing_tool(format_args!(
            "python_grpcio_calls_the_gateway_and_its_health_service: no python3 on PATH"
        ));
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = venv(&python, "py-venv", &here.join("python/requirements.txt"));
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(offload_tests::wait_serving(&gateway_server.url(), offload_proto::service_names::GATEWAY));
    let stdout = run_script(&venv, "client.py", &[gateway_server.addr.to_string()], &[]);
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn python_grpcio_reads_reflection_gzip_replies_and_error_details() {
    let Some(python) = python3() else {
        offload_testkit::skip::missing_tool(format_args!(
            "python_grpcio_reads_reflection_gzip_replies_and_error_details: no python3 on PATH"
        ));
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = venv(&python, "py-venv", &here.join("python/requirements.txt"));
    // One slot, so that a long call makes the next one RESOURCE_EXHAUSTED; a limit the script checks by value.
    let max_factorial_n = "150000";
    let compute_server = compute(&["--max-inflight", "1", "--max-factorial-n", max_factorial_n]);
    let gateway_server = gateway(&[&compute_server], &["--compute-compression", "gzip"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(offload_tests::wait_serving(&gateway_server.url(), offload_proto::service_names::GATEWAY));
    let addresses = [compute_server.addr.to_string(), gateway_server.addr.to_string()];
    let stdout = run_script(&venv, "grpc_details.py", &addresses, &[max_factorial_n]);
    assert!(stdout.contains("python grpc details: all checks passed"), "{stdout}");
}

/// Runs `tests/python/<script> <addresses…> <proto dir> <stub dir> <extra…>` in `venv`, the stubs generated into a
/// folder of its own (removed afterwards); its standard output, once it exited successfully.
fn run_script(venv: &Path, script: &str, addresses: &[String], extra: &[&str]) -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stem = script.trim_end_matches(".py");
    let stubs = std::env::temp_dir().join(format!("offload-py-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).expect("stub dir");
    let output = Command::new(venv.join("bin/python"))
        .arg(here.join("python").join(script))
        .args(addresses)
        .arg(here.join("../proto"))
        .arg(&stubs)
        .args(extra)
        .output()
        .expect("run the python client");
    let _ = std::fs::remove_dir_all(&stubs);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python {script} failed:\n{stdout}\n{stderr}");
    stdout
}
