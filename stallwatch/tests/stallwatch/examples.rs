//! The examples, run as the programs they are: each one's stalls, printed as JSON, name the blocking code, its
//! cause, and (behind the tower layer) the request. A plain tokio program's unwrapped task that sleeps; an axum
//! handler waiting on a `std::sync::Mutex` another thread holds; a tonic handler that sleeps on a current-thread
//! runtime.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

/// The example's binary, as `cargo test` builds examples (into `target/<profile>/examples/`, with this test); built
/// here when missing or older than the crate's sources (`cargo test --test examples` builds no example).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile.join("examples").join(name);
    if built_after_sources(&path, name) {
        return path;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "stallwatch", "--features", "tower", "--example", name]);
    if profile.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build --example");
    assert!(status.success(), "cannot build example {name}");
    path
}

/// Whether `binary` exists and is newer than the example's source and every file of the crate's `src/`.
fn built_after_sources(binary: &std::path::Path, name: &str) -> bool {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else { return false };
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![crate_dir.join("examples").join(format!("{name}.rs")), crate_dir.join("Cargo.toml")];
    let mut folders = vec![crate_dir.join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { folders.push(path) } else { sources.push(path) }
        }
    }
    sources.iter().all(|source| modified(source).is_none_or(|m| m <= built))
}

/// Runs example `name` to its end and parses the stalls it printed.
fn stalls_of(name: &str) -> Vec<Value> {
    let output = Command::new(example(name)).output().expect("run the example");
    assert!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let stalls: Value = serde_json::from_str(stdout.trim()).expect("the example prints its stalls as JSON");
    stalls.as_array().expect("an array of stalls").clone()
}

fn functions(stall: &Value) -> Vec<&str> {
    stall["stack"].as_array().expect("stack").iter().filter_map(|f| f["function"].as_str()).collect()
}

#[test]
fn a_plain_tokio_programs_unwrapped_task_is_caught_with_its_frame() {
    let stalls = stalls_of("plain_tokio");
    let stall = stalls.first().expect("one stall");
    assert_eq!(stall["cause"]["kind"], "syscall", "{stall}");
    assert_eq!(stall["cause"]["syscall"], "clock_nanosleep", "{stall}");
    assert!(stall["call"].is_null(), "a task of no request: {stall}");
    assert!(functions(stall).iter().any(|f| f.ends_with("refresh_cache")), "{:?}", functions(stall));
}

#[test]
fn an_axum_handler_on_a_std_mutex_is_a_lock_stall_named_by_its_request() {
    let stalls = stalls_of("axum_server");
    let stall = stalls.first().expect("one stall");
    assert_eq!(stall["cause"]["kind"], "lock", "{stall}");
    assert_eq!(stall["call"]["method"], "orders", "{stall}");
    assert!(functions(stall).iter().any(|f| f.ends_with("count_orders")), "{:?}", functions(stall));
}

#[test]
fn a_tonic_handler_that_sleeps_is_a_syscall_stall_named_by_its_method_and_mode() {
    let stalls = stalls_of("tonic_server");
    assert_eq!(stalls.len(), 3, "one stall per call: {stalls:?}");
    for stall in &stalls {
        assert_eq!(stall["cause"]["syscall"], "clock_nanosleep", "{stall}");
        assert_eq!(stall["call"]["method"], "grpc.health.v1.Health/Check", "{stall}");
        assert_eq!(stall["call"]["mode"], "sleep", "{stall}");
        assert!(functions(stall).iter().any(|f| f.contains("std::thread") && f.contains("sleep")), "{stall}");
    }
}

/// The crate packages as a crate of its own: what `cargo package` would upload holds its README, its sources and
/// its examples. (The full `cargo package -p stallwatch`, which also builds the package alone, is run by hand.)
#[test]
fn the_crate_packages_with_its_readme_sources_and_examples() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["package", "-p", "stallwatch", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo package --list");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed = String::from_utf8(output.stdout).expect("UTF-8");
    for file in [
        "README.md",
        "Cargo.toml",
        "src/lib.rs",
        "src/capture.rs",
        "examples/axum_server.rs",
        "tests/stallwatch/detect.rs",
    ] {
        assert!(listed.lines().any(|l| l == file), "{file} not packaged: {listed}");
    }
}
