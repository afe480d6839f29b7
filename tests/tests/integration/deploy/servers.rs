//! compute and gateway as every kustomization deploys them: native gRPC probes on the right services, hardened
//! pods, a grace period longer than the drain, the gateway finding compute through the headless Service, only the
//! gateway reaching compute, and each overlay's settings (tracing, the blocking demo).

use std::time::Duration;

use offload_duration::parse as parse_duration;
use serde_json::{Value, json};

use super::kubernetes::{Rendered, renders, selects};

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
    check_hardened(&what, pod);
    // The kubelet's SIGKILL comes after the drain (and any preStop pause) has had its time.
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().expect("grace period"));
    let drain = seconds(&rendered.config_of(deployment)[drain_key]);
    let pre_stop = Duration::from_secs(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0));
    assert!(grace > drain + pre_stop, "{what}: grace {grace:?} must exceed drain {drain:?} + preStop {pre_stop:?}");
}

/// Non-root, seccomp, no token, read-only root, no capabilities, no escalation: every pod offload's image runs in.
pub fn check_hardened(what: &str, pod: &Value) {
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{what}: the image's nonroot user");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
    let security = &pod["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{what}");
}

fn check_servers(rendered: &Rendered) {
    let name = &rendered.name;
    check_server(rendered, "compute", "offload.v1.Compute", "OFFLOAD_COMPUTE_DRAIN_TIMEOUT");
    check_server(rendered, "gateway", "offload.v1.Gateway", "OFFLOAD_GATEWAY_DRAIN_TIMEOUT");

    // Compute: Guaranteed CPU (requests = limits), headless Service, found by the gateway through its DNS name.
    let compute = rendered.find("Deployment", "compute");
    let compute_pods = &compute["spec"]["template"]["metadata"]["labels"];
    let resources = &compute["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], resources["limits"]["cpu"], "{name}: compute CPU requests = limits");
    let compute_service = rendered.find("Service", "compute");
    assert_eq!(compute_service["spec"]["clusterIP"], "None", "{name}: compute Service must be headless");
    assert_eq!(compute_service["spec"]["selector"], compute["spec"]["selector"]["matchLabels"], "{name}");
    let compute_port = compute_service["spec"]["ports"][0]["port"].as_i64().expect("port");
    let gateway = rendered.find("Deployment", "gateway");
    let gateway_pods = &gateway["spec"]["template"]["metadata"]["labels"];
    let target = rendered.config_of(gateway)["OFFLOAD_GATEWAY_COMPUTE"].as_str().expect("compute target");
    assert_eq!(target, format!("dns:///compute:{compute_port}"), "{name}: the gateway resolves the headless name");
    assert_eq!(rendered.find("Service", "gateway")["spec"]["type"], "ClusterIP", "{name}");

    // Only the gateway reaches compute's gRPC port.
    let policy = rendered.find("NetworkPolicy", "compute-ingress");
    assert!(selects(&policy["spec"]["podSelector"]["matchLabels"], compute_pods), "{name}: the policy is compute's");
    let grpc_rules: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .filter(|rule| rule["ports"].as_array().is_some_and(|ports| ports.iter().any(|p| p["port"] == "grpc")))
        .collect();
    assert_eq!(grpc_rules.len(), 1, "{name}: one rule opens the gRPC port");
    assert_eq!(
        grpc_rules[0]["from"],
        json!([{"podSelector": {"matchLabels": gateway["spec"]["selector"]["matchLabels"]}}]),
        "{name}: and only to the gateway's pods"
    );
    assert!(selects(&gateway["spec"]["selector"]["matchLabels"], gateway_pods), "{name}");

    // Disruptions and scaling.
    let pdb = rendered.find("PodDisruptionBudget", "compute");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], compute["spec"]["selector"]["matchLabels"], "{name}");
    let hpa = rendered.find("HorizontalPodAutoscaler", "compute");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "compute", "{name}");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu", "{name}");
}

#[test]
fn every_kustomization_deploys_the_servers_as_operators_rely_on() {
    let Some(renders) = renders() else { return };
    let compute_config = |r: &Rendered| r.config_of(r.find("Deployment", "compute")).clone();
    let adaptive_limit =
        |r: &Rendered| r.config_of(r.find("Deployment", "gateway"))["OFFLOAD_GATEWAY_ADAPTIVE_CONCURRENCY"].clone();
    for rendered in renders {
        let name = &rendered.name;
        check_servers(rendered);
        // The blocking demo lets the load through: shedding it would hide what blocking costs. Everything else
        // keeps the base's ADAPTIVE default and the gateway's adaptive limit.
        let (mode, adaptive) = if name.contains("blocking-demo") { ("inline", "false") } else { ("adaptive", "true") };
        assert_eq!(compute_config(rendered)["OFFLOAD_COMPUTE_DEFAULT_MODE"], mode, "{name}");
        assert_eq!(adaptive_limit(rendered), adaptive, "{name}");

        let traced = rendered.get("Service", "otel-collector");
        let must_trace = name.contains("tracing") || name == "overlays/blocking-demo";
        assert_eq!(traced.is_some(), must_trace, "{name}: tracing comes with its component only");
        let Some(collector) = traced else {
            assert!(compute_config(rendered).get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none(), "{name}");
            continue;
        };
        // Both servers export to the collector, which exists and listens where they send.
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
