//! The `offload-gateway` binary's command line: every flag documented with its environment variable, durations in
//! Go's syntax (as every offload binary reads them), and a bad configuration refused at start-up with a message
//! and a non-zero exit.

use std::{net::TcpListener, process::Command, time::Duration};

use offload_testkit::child::ChildServer;
use offload_tests::refused_naming;

fn bin() -> std::path::PathBuf {
    offload_testkit::binaries::path("offload-gateway")
}

#[test]
fn help_documents_every_flag_with_its_env_var() {
    let out = Command::new(bin()).arg("--help").output().expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    for flag in
        ["--listen", "--compute", "--runtime", "--workers", "--max-inflight", "--default-timeout", "--drain-timeout"]
    {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!("OFFLOAD_GATEWAY_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn bad_compute_url_fails_at_start_up() {
    let out = Command::new(bin()).args(["--listen", "127.0.0.1:0", "--compute", "not a url"]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--compute"), "{stderr}");
}

#[test]
fn durations_in_go_syntax_are_taken_from_flags_and_environment() {
    // A compute address that is ours and refuses connections (nothing listens once the listener is dropped): the
    // gateway starts without one, and reaches nobody else's server.
    let closed = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let mut command = Command::new(bin());
    command
        .args(["--listen", "127.0.0.1:0", "--compute", &format!("http://{closed}"), "--drain-timeout", "1m30s"])
        .env("OFFLOAD_GATEWAY_STALL_THRESHOLD", "1500µs");
    let mut gateway = ChildServer::start(command).expect("the gateway starts with --drain-timeout 1m30s");
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(30)), Some(0), "an idle server drains at once");
    // Read once it has exited, when every line it wrote is in.
    let serving = gateway.log_lines().into_iter().find(|line| line.contains(" addr=")).expect("the serving line");
    assert!(serving.contains("drain_timeout=90s"), "{serving}");
    assert!(serving.contains("stall_threshold=1.5ms"), "{serving}");
}

#[test]
fn a_duration_not_in_go_syntax_is_refused_naming_its_flag() {
    refused_naming(Command::new(bin()).args(["--listen", "127.0.0.1:0", "--drain-timeout", "1m30"]), "--drain-timeout");
    refused_naming(
        Command::new(bin()).args(["--listen", "127.0.0.1:0"]).env("OFFLOAD_GATEWAY_DEFAULT_TIMEOUT", "-5s"),
        "--default-timeout",
    );
}
