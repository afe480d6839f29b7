//! The `offload-compute` binary's command line: every flag documented with its environment variable, durations in
//! Go's syntax (as every offload binary reads them), and a bad configuration refused at start-up with a message
//! and a non-zero exit.

use std::{process::Command, time::Duration};

use offload_testkit::child::ChildServer;
use offload_tests::refused_naming;

fn bin() -> std::path::PathBuf {
    offload_testkit::binaries::path("offload-compute")
}

#[test]
fn help_documents_every_flag_with_its_env_var() {
    let out = Command::new(bin()).arg("--help").output().expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    for flag in [
        "--listen",
        "--default-mode",
        "--runtime",
        "--workers",
        "--rayon-threads",
        "--max-inflight",
        "--max-factorial-n",
        "--max-sum-of-squares-n",
        "--max-message-bytes",
        "--drain-timeout",
        "--rayon-priority",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!("OFFLOAD_COMPUTE_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn impossible_limit_fails_at_start_up() {
    let out = Command::new(bin())
        .args(["--listen", "127.0.0.1:0", "--max-sum-of-squares-n", "99999999999999999"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-sum-of-squares-n"), "{stderr}");
}

#[test]
fn durations_in_go_syntax_are_taken_from_flags_and_environment() {
    let mut command = Command::new(bin());
    command
        .args(["--listen", "127.0.0.1:0", "--drain-timeout", "1m30s"])
        .env("OFFLOAD_COMPUTE_STALL_THRESHOLD", "2500us");
    let mut compute = ChildServer::start(command).expect("compute starts with --drain-timeout 1m30s");
    compute.terminate();
    assert_eq!(compute.wait_exit(Duration::from_secs(30)), Some(0), "an idle server drains at once");
    // Read once it has exited, when every line it wrote is in.
    let serving = compute.log_lines().into_iter().find(|line| line.contains(" addr=")).expect("the serving line");
    assert!(serving.contains("drain_timeout=90s"), "{serving}");
    assert!(serving.contains("stall_threshold=2.5ms"), "{serving}");
}

#[test]
fn a_duration_not_in_go_syntax_is_refused_naming_its_flag() {
    refused_naming(Command::new(bin()).args(["--listen", "127.0.0.1:0", "--drain-timeout", "soon"]), "--drain-timeout");
    // A unitless number (the servers once read it as seconds), from the environment.
    refused_naming(
        Command::new(bin()).args(["--listen", "127.0.0.1:0"]).env("OFFLOAD_COMPUTE_LAME_DUCK", "5"),
        "--lame-duck",
    );
}
