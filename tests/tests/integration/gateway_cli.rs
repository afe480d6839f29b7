//! The `offload-gateway` binary's command line: every flag documented with its environment variable, and a bad
//! configuration refused at start-up with a message and a non-zero exit.

use std::process::Command;

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
