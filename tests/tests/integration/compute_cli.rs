//! The `offload-compute` binary's command line: every flag documented with its environment variable, and a bad
//! configuration refused at start-up with a message and a non-zero exit.

use std::process::Command;

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
