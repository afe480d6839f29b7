//! The monitoring files operators deploy, checked by the tools that will read them: the alert rules pass
//! `promtool check rules` and their `promtool test rules` unit tests (each alert firing and not firing), the
//! PrometheusRule carries exactly the rules file compose loads, compose's Prometheus config loads with those rules,
//! the Kubernetes component renders with kustomize, and the dashboard JSON is what Grafana provisioning expects.
//! (A real Prometheus running the rules and the dashboard's queries against the real servers: `prometheus.rs`.)

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use offload_testkit::prometheus::tool;
use serde_json::Value;

/// `deploy/k8s/components/monitoring`: the rules, their tests, the PrometheusRule, the dashboard.
pub fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/components/monitoring")
}

/// The dashboard's PromQL queries, in panel order.
pub fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(monitoring_dir().join("dashboards/offload.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let mut panels: Vec<Value> = dashboard["panels"].as_array().expect("panels").clone();
    while let Some(panel) = (!panels.is_empty()).then(|| panels.remove(0)) {
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("a target has an expr").to_owned());
        }
    }
    queries
}

/// How prometheusrule.yaml is made from offload.rules.yaml: a header, then the rules file indented under `spec:`.
fn prometheus_rule(rules: &str) -> String {
    let mut out = String::from(
        "# GENERATED from offload.rules.yaml (edit that file, then run\n\
         #   OFFLOAD_BLESS=1 cargo test -p offload-tests --test integration -- monitoring::the_prometheus_rule\n\
         # ): the same groups for the Prometheus operator.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: offload\n  namespace: offload\n  labels:\n    app.kubernetes.io/name: offload\n    \
         app.kubernetes.io/part-of: offload\n    app.kubernetes.io/instance: offload\n    \
         app.kubernetes.io/version: 0.1.0\n    app.kubernetes.io/component: monitoring\n    \
         app.kubernetes.io/managed-by: kustomize\n\
         spec:\n",
    );
    for line in rules.lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_prometheus_rule_embeds_the_rules_file_compose_loads() {
    let rules = std::fs::read_to_string(monitoring_dir().join("offload.rules.yaml")).expect("rules");
    let path = monitoring_dir().join("prometheusrule.yaml");
    let expected = prometheus_rule(&rules);
    if std::env::var_os("OFFLOAD_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write prometheusrule.yaml");
    }
    let actual = std::fs::read_to_string(&path).expect("prometheusrule.yaml");
    assert!(actual == expected, "prometheusrule.yaml is not offload.rules.yaml under spec: rerun with OFFLOAD_BLESS=1");
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        offload_testkit::skip::missing_tool(format_args!("alert rule tests: no promtool (Debian package prometheus)"));
        return;
    };
    for args in [["check", "rules", "offload.rules.yaml"], ["test", "rules", "offload.rules.test.yaml"]] {
        let output = Command::new(&promtool).args(args).current_dir(monitoring_dir()).output().expect("promtool");
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert has unit tests (a firing and a quiet case each are in the file, next to its input).
    let rules = std::fs::read_to_string(monitoring_dir().join("offload.rules.yaml")).expect("rules");
    let tests = std::fs::read_to_string(monitoring_dir().join("offload.rules.test.yaml")).expect("rule tests");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(cases >= 2, "{alert} has {cases} promtool test case(s); want one firing and one quiet at least");
    }
}

#[test]
fn compose_prometheus_loads_the_rules_and_grafana_is_provisioned() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let compose = std::fs::read_to_string(deploy.join("compose.yaml")).expect("compose.yaml");
    // The mounts that make the Kubernetes component's files the compose stack's too.
    for mount in [
        "./k8s/components/monitoring/offload.rules.yaml:/etc/prometheus/offload.rules.yaml:ro",
        "./grafana/provisioning:/etc/grafana/provisioning:ro",
        "./k8s/components/monitoring/dashboards:/var/lib/grafana/dashboards/offload:ro",
    ] {
        assert!(compose.contains(mount), "compose.yaml does not mount {mount}");
    }
    let provider = std::fs::read_to_string(deploy.join("grafana/provisioning/dashboards/offload.yaml")).expect("p");
    assert!(provider.contains("path: /var/lib/grafana/dashboards/offload"), "the provider reads the mounted folder");
    let datasource =
        std::fs::read_to_string(deploy.join("grafana/provisioning/datasources/prometheus.yaml")).expect("d");
    assert!(datasource.contains("url: http://prometheus:9090") && datasource.contains("type: prometheus"));
    // The dashboard: a uid (stable links), every panel and query through the data-source variable (whatever the
    // Prometheus is called where it is imported).
    let text = std::fs::read_to_string(monitoring_dir().join("dashboards/offload.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "offload");
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
        }
    }

    let Some(promtool) = tool("promtool") else {
        offload_testkit::skip::missing_tool(format_args!("compose prometheus config check: no promtool"));
        return;
    };
    // Laid out as compose mounts them, the config and its rule file load.
    let dir = std::env::temp_dir().join(format!("offload-compose-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(deploy.join("prometheus.yml"), dir.join("prometheus.yml")).expect("copy config");
    std::fs::copy(monitoring_dir().join("offload.rules.yaml"), dir.join("offload.rules.yaml")).expect("copy rules");
    let output = Command::new(&promtool).args(["check", "config", "prometheus.yml"]).current_dir(&dir).output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.expect("promtool");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "promtool check config: {said}{}", String::from_utf8_lossy(&output.stderr));
    assert!(said.contains("SUCCESS: 4 rules found"), "{said}");
}

#[test]
fn the_monitoring_component_renders_with_kustomize() {
    if !offload_testkit::apt::kubectl() {
        offload_testkit::skip::missing_tool(format_args!("rendering the monitoring component: no kubectl on PATH"));
        return;
    }
    // An overlay of the base with the component, as an operator would write it. Kustomize takes relative paths
    // only (and no overlay inside the component): it is written for the moment beside the component, and removed.
    let dir = monitoring_dir().join(format!("../.monitoring-render-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("overlay dir");
    let overlay = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                   resources:\n  - ../../base\ncomponents:\n  - ../monitoring\n";
    std::fs::write(dir.join("kustomization.yaml"), overlay).expect("overlay");
    let output = Command::new("kubectl").args(["kustomize"]).arg(&dir).output().expect("kubectl kustomize");
    let _ = std::fs::remove_dir_all(&dir);
    let rendered = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "alert: OffloadRuntimeStalled",
        "name: offload-grafana-dashboard",
        "grafana_dashboard: \"1\"",
        "offload.json: |",
    ] {
        assert!(rendered.contains(expected), "the rendered overlay has no {expected:?}");
    }
    // In the servers' namespace: a PodMonitor selects pods of its own namespace only.
    for object in ["kind: PodMonitor", "kind: PrometheusRule", "name: offload-grafana-dashboard"] {
        let document = rendered.split("\n---\n").find(|d| d.contains(object)).expect("rendered");
        assert!(format!("{document}\n").contains("\n  namespace: offload\n"), "{object} is not in namespace offload");
    }
}
