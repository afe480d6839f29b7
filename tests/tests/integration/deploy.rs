//! Everything in `deploy/`, validated as far as a machine without a container engine or a cluster allows: the
//! Dockerfile linted (hadolint); every Kubernetes overlay rendered (`kubectl kustomize`), checked against the
//! Kubernetes schemas (kubernetes-validate, strict) and for the invariants an operator relies on; the compose file
//! checked against the compose spec; all YAML linted. Skipped, with a message, where `python3` (or, for the
//! manifests, `kubectl`) is missing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use offload_serve::flags::parse_duration;
use offload_testkit::python::{python3, venv};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

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

/// Every document of a YAML stream, as JSON (PyYAML does the parsing).
fn yaml_documents(venv: &Path, yaml: &str) -> Vec<Value> {
    let script = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), yaml.as_bytes()).expect("write yaml");
    let output = child.wait_with_output().expect("python output");
    assert!(output.status.success(), "YAML did not parse");
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_passes_hadolint() {
    let Some(venv) = tools() else {
        eprintln!("SKIPPED dockerfile check: no python3 on PATH");
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
    let ignore = std::fs::read_to_string(deploy_dir().join("../.dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "the build context leaves target/ out");
}

/// A rendered overlay's objects.
struct Rendered {
    name: &'static str,
    objects: Vec<Value>,
}

impl Rendered {
    fn find(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.name))
    }

    /// The environment a Deployment's first container gets from its ConfigMap.
    fn config_of(&self, deployment: &Value) -> &Value {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let name = container["envFrom"][0]["configMapRef"]["name"].as_str().expect("envFrom a ConfigMap");
        &self.find("ConfigMap", name)["data"]
    }
}

fn port_named(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no port {name} in {container}"))
}

fn seconds(value: &Value) -> Duration {
    parse_duration(value.as_str().expect("a duration string")).expect("a duration")
}

/// What every server Deployment must satisfy.
fn check_server(rendered: &Rendered, name: &str, service: &str, drain_key: &str) {
    let what = format!("{}: {name}", rendered.name);
    let deployment = rendered.find("Deployment", name);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let grpc = port_named(container, "grpc");
    // Native gRPC probes on the health service, on the serving port.
    assert_eq!(container["readinessProbe"]["grpc"]["port"], grpc, "{what}: readiness on the gRPC port");
    assert_eq!(container["readinessProbe"]["grpc"]["service"], service, "{what}: readiness is the service's");
    assert_eq!(container["livenessProbe"]["grpc"]["port"], grpc, "{what}: liveness on the gRPC port");
    // Hardened.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{what}");
    // The kubelet's SIGKILL comes after the drain (and any preStop pause) has had its time.
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().expect("grace period"));
    let drain = seconds(&rendered.config_of(deployment)[drain_key]);
    let pre_stop = Duration::from_secs(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0));
    assert!(grace > drain + pre_stop, "{what}: grace {grace:?} must exceed drain {drain:?} + preStop {pre_stop:?}");
    assert!(container["resources"]["limits"]["memory"].is_string(), "{what}: memory is bounded");
}

fn check_overlay(venv: &Path, name: &'static str, dir: &str) -> Option<Rendered> {
    let dir = deploy_dir().join(dir);
    let output = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(output) => output,
        Err(_) => {
            eprintln!("SKIPPED rendering {name}: no kubectl on PATH");
            return None;
        }
    };
    assert!(output.status.success(), "kubectl kustomize {name}: {}", String::from_utf8_lossy(&output.stderr));
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    let file = std::env::temp_dir().join(format!("offload-{name}-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).expect("write rendered");
    check(venv, "kubernetes-validate", &["--strict", "--quiet", file.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&file);
    let rendered = Rendered { name, objects: yaml_documents(venv, &yaml) };

    check_server(&rendered, "compute", "offload.v1.Compute", "OFFLOAD_COMPUTE_DRAIN_TIMEOUT");
    check_server(&rendered, "gateway", "offload.v1.Gateway", "OFFLOAD_GATEWAY_DRAIN_TIMEOUT");

    // Compute: Guaranteed CPU (requests = limits), headless Service, found by the gateway through its DNS name.
    let compute = rendered.find("Deployment", "compute");
    let resources = &compute["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], resources["limits"]["cpu"], "{name}: compute CPU requests = limits");
    let compute_service = rendered.find("Service", "compute");
    assert_eq!(compute_service["spec"]["clusterIP"], "None", "{name}: compute Service must be headless");
    assert_eq!(compute_service["spec"]["selector"], compute["spec"]["selector"]["matchLabels"], "{name}");
    let compute_port = compute_service["spec"]["ports"][0]["port"].as_i64().expect("port");
    let gateway = rendered.find("Deployment", "gateway");
    let target = rendered.config_of(gateway)["OFFLOAD_GATEWAY_COMPUTE"].as_str().expect("compute target");
    assert_eq!(target, format!("dns:///compute:{compute_port}"), "{name}: the gateway resolves the headless name");
    assert_eq!(rendered.find("Service", "gateway")["spec"]["type"], "ClusterIP", "{name}");

    // Only the gateway reaches compute's gRPC port.
    let policy = rendered.find("NetworkPolicy", "compute-ingress");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], compute["spec"]["selector"]["matchLabels"], "{name}");
    let grpc_rules: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .filter(|rule| rule["ports"].as_array().is_some_and(|ports| ports.iter().any(|p| p["port"] == "grpc")))
        .collect();
    assert_eq!(grpc_rules.len(), 1, "{name}: one rule opens the gRPC port");
    assert_eq!(
        grpc_rules[0]["from"],
        serde_json::json!([{"podSelector": {"matchLabels": gateway["spec"]["selector"]["matchLabels"]}}]),
        "{name}: and only to the gateway's pods"
    );

    // Disruptions and scaling.
    let pdb = rendered.find("PodDisruptionBudget", "compute");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], compute["spec"]["selector"]["matchLabels"], "{name}");
    let hpa = rendered.find("HorizontalPodAutoscaler", "compute");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "compute", "{name}");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu", "{name}");
    Some(rendered)
}

#[test]
fn every_kubernetes_overlay_renders_validates_and_keeps_its_invariants() {
    let Some(venv) = tools() else {
        eprintln!("SKIPPED kubernetes manifests: no python3 on PATH");
        return;
    };
    check(
        venv,
        "yamllint",
        &[
            "--strict",
            "-c",
            &deploy_dir().join(".yamllint.yaml").display().to_string(),
            &deploy_dir().display().to_string(),
        ],
    );
    let Some(base) = check_overlay(venv, "base", "k8s/base") else { return };
    let compute_config = |r: &Rendered| r.config_of(r.find("Deployment", "compute")).clone();
    let adaptive_limit =
        |r: &Rendered| r.config_of(r.find("Deployment", "gateway"))["OFFLOAD_GATEWAY_ADAPTIVE_CONCURRENCY"].clone();
    assert_eq!(compute_config(&base)["OFFLOAD_COMPUTE_DEFAULT_MODE"], "adaptive");
    assert_eq!(adaptive_limit(&base), "true", "the gateway sheds overload by its latency");
    assert!(compute_config(&base).get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none(), "tracing is a component");

    for (name, dir, mode, adaptive) in [
        ("tracing", "k8s/overlays/tracing", "adaptive", "true"),
        // The demo lets the load through: shedding it would hide what blocking costs.
        ("blocking-demo", "k8s/overlays/blocking-demo", "inline", "false"),
    ] {
        let Some(rendered) = check_overlay(venv, name, dir) else { return };
        assert_eq!(compute_config(&rendered)["OFFLOAD_COMPUTE_DEFAULT_MODE"], mode, "{name}");
        assert_eq!(adaptive_limit(&rendered), adaptive, "{name}");
        // Both servers export to the collector, which exists and listens where they send.
        let collector = rendered.find("Service", "otel-collector");
        let port = collector["spec"]["ports"][0]["port"].as_i64().expect("collector port");
        for server in ["compute", "gateway"] {
            let config = rendered.config_of(rendered.find("Deployment", server));
            assert_eq!(
                config["OTEL_EXPORTER_OTLP_ENDPOINT"],
                format!("http://otel-collector:{port}"),
                "{name}: {server}"
            );
            assert_eq!(config["OTEL_SERVICE_NAME"], format!("offload-{server}"), "{name}: {server}");
        }
        rendered.find("Deployment", "jaeger");
    }
}

#[test]
fn compose_file_follows_the_compose_spec_and_wires_the_stack() {
    let Some(venv) = tools() else {
        eprintln!("SKIPPED compose file: no python3 on PATH");
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
