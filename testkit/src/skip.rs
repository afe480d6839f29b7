//! A test whose tool is missing (python3, promtool, Prometheus, Chromium, kubectl): on a developer's machine it is
//! skipped, saying so; under `CI=true` it fails, since CI's machine is root with apt and installs what its tests
//! need, so a missing tool there is a broken install step, not a reason to pass.

/// Whether this run is CI's (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test that cannot run for `why`: a `SKIPPED` line off CI; a panic, failing the test, under `CI=true`.
///
/// # Panics
/// Under `CI=true`.
pub fn missing_tool(why: std::fmt::Arguments<'_>) {
    assert!(!in_ci(), "{why}: under CI=true a test whose tool is missing fails (CI installs its tools)");
    eprintln!("SKIPPED {why}");
}
