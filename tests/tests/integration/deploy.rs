//! Everything in `deploy/`, validated as far as a machine without a container engine or a cluster allows: the
//! Dockerfile linted (hadolint) and checked to ship what the manifests run; every kustomization (the base, every
//! overlay, the base with each component) rendered with `kubectl kustomize`, its core objects checked against the
//! Kubernetes schemas (kubernetes-validate, strict) and its custom resources against their operator's schemas,
//! then the invariants an operator relies on; the compose file checked against the compose spec; all YAML linted.
//! Skipped, with a message, where `python3` (or, for the manifests, `kubectl`) is missing.
//!
//! - [`kubernetes`]: rendering, schemas, and the rules every object follows (labels, selectors, spread, HPA, images).
//! - [`servers`]: compute and gateway as each overlay deploys them (probes, hardening, drain, policies).
//! - [`loadgenerator`]: the in-cluster load test aims at the gateway and sends a request the gateway accepts.

mod kubernetes;
mod loadgenerator;
mod servers;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use offload_testkit::python::{python3, venv};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The workspace's version: what the image is tagged and its objects labelled with.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The checkers' virtualenv, made once for all tests of this file (`None`: no Python here).
fn tools() -> Option<&'static Path> {
    static TOOLS: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let python = python3()?;
            Some(venv(&python, "deploy-venv", &deploy_dir().join("requirements-check.txt")))
        })
        .as_deref()
}

/// Runs a checker from the venv; panics with its output if it fails.
fn check(venv: &Path, tool: &str, args: &[&str]) {
    let output = Command::new(venv.join("bin").join(tool)).args(args).output().expect("run checker");
    assert!(
        output.status.success(),
        "{tool} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a Python script from the venv with `input` on stdin; its stdout (panics if it fails).
fn python(venv: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(venv.join("bin/python"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input).expect("write stdin");
    let output = child.wait_with_output().expect("python output");
    assert!(output.status.success(), "python {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Every document of a YAML stream, as JSON (PyYAML does the parsing).
fn yaml_documents(venv: &Path, yaml: &str) -> Vec<Value> {
    let script = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    serde_json::from_slice(&python(venv, &["-c", script], yaml.as_bytes())).expect("json")
}

#[test]
fn dockerfile_is_multi_stage_non_root_ships_every_binary_and_passes_hadolint() {
    let Some(venv) = tools() else {
        offload_testkit::skip::missing_tool(format_args!("dockerfile check: no python3 on PATH"));
        return;
    };
    let dockerfile = deploy_dir().join("Dockerfile");
    check(venv, "hadolint", &["--failure-threshold", "warning", dockerfile.to_str().expect("utf-8 path")]);
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    // Dependencies are cooked from the recipe before the sources are copied: their layer survives source edits.
    let cook = text.find("cargo chef cook").expect("a dependency layer");
    let sources = text.rfind("COPY . .").expect("sources copied");
    assert!(cook < sources, "the dependency layer must come before the sources");
    let runtime_stage = &text[text.rfind("\nFROM ").expect("stages")..];
    assert!(runtime_stage.contains("distroless"), "minimal runtime base");
    assert!(runtime_stage.contains("USER 65532"), "runs as non-root");
    for label in ["title", "source", "licenses", "version"] {
        assert!(runtime_stage.contains(&format!("org.opencontainers.image.{label}")), "OCI label {label}");
    }
    assert!(runtime_stage.contains(&format!("ARG VERSION={VERSION}")), "the image's version is the workspace's");
    assert!(runtime_stage.contains("COPY --from=build /out/ /usr/local/bin/"), "binaries land in /usr/local/bin");
    // Every binary the manifests run (the servers, and offload-bench for the loadgenerator) is cooked, built
    // and installed, under the package and binary names cargo knows.
    for binary in ["offload-compute", "offload-gateway", "offload-bench"] {
        let package = package_of_binary(binary);
        let cook_line = text.lines().find(|l| l.contains("cargo chef cook")).expect("cook line");
        assert!(cook_line.contains(&format!("-p {package} ")) || cook_line.ends_with(&format!("-p {package}")));
        let build = &text[text.find("RUN cargo build").expect("build step")..];
        let build = &build[..build.find("\n\n").unwrap_or(build.len())];
        assert!(build.contains(&format!("-p {package}")), "the build step builds {package}");
        assert!(
            build.contains(&format!("target/release/{binary} /out/{binary}")),
            "the build step installs {binary} into /out"
        );
    }
    let ignore = std::fs::read_to_string(deploy_dir().join("../.dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "the build context leaves target/ out");
}

/// The workspace package whose binary target is `binary` (from `cargo metadata`, so a renamed package or
/// binary fails here rather than in `docker build`).
fn package_of_binary(binary: &str) -> String {
    static METADATA: OnceLock<Value> = OnceLock::new();
    let metadata = METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata");
        assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("metadata json")
    });
    let packages = metadata["packages"].as_array().expect("packages");
    let package = packages
        .iter()
        .find(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets
                    .iter()
                    .any(|t| t["name"] == binary && t["kind"].as_array().is_some_and(|k| k.contains(&"bin".into())))
            })
        })
        .unwrap_or_else(|| panic!("no workspace package has a binary {binary}"));
    package["name"].as_str().expect("name").to_owned()
}

#[test]
fn compose_file_follows_the_compose_spec_and_wires_the_stack() {
    let Some(venv) = tools() else {
        offload_testkit::skip::missing_tool(format_args!("compose file: no python3 on PATH"));
        return;
    };
    let compose = deploy_dir().join("compose.yaml");
    check(
        venv,
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec", compose.to_str().expect("utf-8 path")],
    );
    let doc = &yaml_documents(venv, &std::fs::read_to_string(&compose).expect("compose.yaml"))[0];
    let services = &doc["services"];
    for service in ["gateway", "compute", "jaeger", "prometheus"] {
        assert!(services.get(service).is_some(), "compose has no {service}");
    }
    // Two compute replicas, found by the gateway through compose's DNS (one address per replica).
    assert_eq!(services["compute"]["deploy"]["replicas"], 2);
    let targets = services["gateway"]["environment"]["OFFLOAD_GATEWAY_COMPUTE"].as_str().expect("gateway targets");
    assert_eq!(targets, "dns:///compute:50051");
    for service in ["gateway", "compute"] {
        assert_eq!(services[service]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4317", "{service}");
    }
    // Prometheus scrapes every compute replica (by the same DNS name) and the gateway, on the image's metrics port.
    let prometheus = std::fs::read_to_string(deploy_dir().join("prometheus.yml")).expect("prometheus.yml");
    let scrape = &yaml_documents(venv, &prometheus)[0]["scrape_configs"];
    let job = |name: &str| {
        scrape.as_array().expect("scrape configs").iter().find(|j| j["job_name"] == name).cloned().expect("job")
    };
    let compute = job("offload-compute");
    assert_eq!(compute["dns_sd_configs"][0]["names"], serde_json::json!(["compute"]));
    assert_eq!(compute["dns_sd_configs"][0]["port"], 9090);
    assert_eq!(job("offload-gateway")["static_configs"][0]["targets"], serde_json::json!(["gateway:9090"]));
}
