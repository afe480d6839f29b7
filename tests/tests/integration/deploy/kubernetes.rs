//! Every kustomization under `deploy/k8s` rendered as `kubectl apply -k` would see it, validated against schemas,
//! and held to the rules every object follows whatever its kind: Kubernetes' recommended labels on objects and pod
//! templates, selectors that never change (they are immutable), spread on every Deployment, no `replicas:` where an
//! HPA owns the count, images pinned to the version their pods are labelled with and pulled only when missing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::{Value, json};

use super::{VERSION, check, deploy_dir, python, tools, yaml_documents};

/// Kubernetes' recommended labels: every object and every pod template carries all of them.
pub const RECOMMENDED_LABELS: [&str; 6] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
];

/// One kustomization's rendered objects.
pub struct Rendered {
    /// `base`, `overlays/NAME` or `base+components/NAME`.
    pub name: String,
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    pub fn find(&self, kind: &str, name: &str) -> &Value {
        self.get(kind, name).unwrap_or_else(|| panic!("{}: no {kind} {name}", self.name))
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The environment a Deployment's first container gets from its ConfigMap.
    pub fn config_of(&self, deployment: &Value) -> &Value {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let name = container["envFrom"][0]["configMapRef"]["name"].as_str().expect("envFrom a ConfigMap");
        &self.find("ConfigMap", name)["data"]
    }
}

/// The workloads' pod templates (Deployment, Job, StatefulSet, DaemonSet: `spec.template`; CronJob: one deeper).
pub fn pod_template(object: &Value) -> Option<&Value> {
    match object["kind"].as_str()? {
        "Deployment" | "Job" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some(&object["spec"]["template"]),
        "CronJob" => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

/// Whether a `matchLabels` selector selects pods labelled `labels`.
pub fn selects(match_labels: &Value, labels: &Value) -> bool {
    match_labels.as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

/// Objects of API groups the Kubernetes schemas do not know (`monitoring.coreos.com/v1`, …): custom resources.
fn is_custom_resource(object: &Value) -> bool {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    api_version.split_once('/').is_some_and(|(group, _)| group.contains('.') && !group.ends_with(".k8s.io"))
}

/// Every kustomization rendered once (`None`: no Python or no kubectl here, already reported).
pub fn renders() -> Option<&'static [Rendered]> {
    static RENDERS: OnceLock<Option<Vec<Rendered>>> = OnceLock::new();
    RENDERS.get_or_init(render_all).as_deref()
}

fn render_all() -> Option<Vec<Rendered>> {
    let Some(venv) = tools() else {
        offload_testkit::skip::missing_tool(format_args!("kubernetes manifests: no python3 on PATH"));
        return None;
    };
    if !offload_testkit::apt::kubectl() {
        offload_testkit::skip::missing_tool(format_args!(
            "kubernetes manifests: no kubectl on PATH (kubectl kustomize renders them)"
        ));
        return None;
    }
    let k8s = deploy_dir().join("k8s").canonicalize().expect("deploy/k8s");
    let mut kustomizations = vec![("base".to_owned(), k8s.join("base"))];
    for overlay in subdirectories(&k8s.join("overlays")) {
        kustomizations.push((format!("overlays/{}", file_name(&overlay)), overlay));
    }
    // A component is rendered on the base alone too, so one that no overlay uses yet is still checked.
    let scratch = std::env::temp_dir().join(format!("offload-kustomize-{}", std::process::id()));
    for component in subdirectories(&k8s.join("components")) {
        let dir = scratch.join(file_name(&component));
        std::fs::create_dir_all(&dir).expect("scratch kustomization");
        let dir = dir.canonicalize().expect("scratch dir");
        // kustomize refuses absolute paths: from the scratch directory up to `/`, then down to deploy/k8s.
        let up = "../".repeat(dir.components().count() - 1);
        let relative = |path: &Path| format!("{up}{}", path.strip_prefix("/").expect("absolute").display());
        let kustomization = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
            relative(&k8s.join("base")),
            relative(&component)
        );
        std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write kustomization");
        kustomizations.push((format!("base+components/{}", file_name(&component)), dir));
    }
    let renders = kustomizations
        .into_iter()
        .map(|(name, dir)| {
            let output = Command::new("kubectl").arg("kustomize").arg(&dir).output().expect("kubectl kustomize");
            assert!(output.status.success(), "kubectl kustomize {name}: {}", String::from_utf8_lossy(&output.stderr));
            let yaml = String::from_utf8(output.stdout).expect("utf-8");
            let objects = yaml_documents(venv, &yaml);
            assert!(!objects.is_empty(), "{name} renders nothing");
            Rendered { name, objects }
        })
        .collect();
    let _ = std::fs::remove_dir_all(&scratch);
    Some(renders)
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("a name").to_string_lossy().into_owned()
}

#[test]
fn every_kustomization_renders_and_matches_its_schemas() {
    let (Some(venv), Some(renders)) = (tools(), renders()) else { return };
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
    let names: Vec<&str> = renders.iter().map(|r| r.name.as_str()).collect();
    for expected in [
        "base",
        "overlays/tracing",
        "overlays/blocking-demo",
        "overlays/loadgenerator",
        "overlays/local",
        "overlays/distributed-load",
    ] {
        assert!(names.contains(&expected), "{expected} not rendered (rendered: {names:?})");
    }
    for rendered in renders {
        let name = &rendered.name;
        // Core kinds: the Kubernetes schemas, strict (an unknown field is an error, as the API server's strict
        // field validation makes it at apply time).
        let (custom, core): (Vec<&Value>, Vec<&Value>) = rendered.objects.iter().partition(|o| is_custom_resource(o));
        let file = std::env::temp_dir().join(format!("offload-{}-{}.yaml", name.replace('/', "-"), std::process::id()));
        let stream: Vec<String> = core.iter().map(|o| o.to_string()).collect();
        std::fs::write(&file, stream.join("\n---\n")).expect("write rendered");
        check(venv, "kubernetes-validate", &["--strict", "--quiet", file.to_str().expect("utf-8 path")]);
        let _ = std::fs::remove_file(&file);
        // Custom resources: their operator's schemas where a package ships them, else the fields every object needs.
        if custom.is_empty() {
            continue;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/deploy/custom_resources.py");
        let input = serde_json::to_vec(&custom).expect("json");
        let verdicts: Vec<Value> =
            serde_json::from_slice(&python(venv, &[script.to_str().expect("utf-8")], &input)).expect("verdicts");
        for verdict in verdicts {
            let what = format!("{name}: {} {}", verdict["kind"], verdict["name"]);
            assert_eq!(verdict["errors"], json!([]), "{what} does not match its schema");
            if verdict["schema"] != true {
                eprintln!("{what}: no schema in any installed package, checked for required fields only");
            }
        }
    }
}

#[test]
fn every_object_and_pod_carries_the_recommended_labels_and_selectors_never_change() {
    let Some(renders) = renders() else { return };
    for rendered in renders {
        for object in &rendered.objects {
            let what = format!("{}: {} {}", rendered.name, object["kind"], object["metadata"]["name"]);
            let labels = &object["metadata"]["labels"];
            let templates: Vec<&Value> = pod_template(object).into_iter().collect();
            for label in RECOMMENDED_LABELS {
                assert!(labels[label].as_str().is_some_and(|v| !v.is_empty()), "{what}: no label {label}");
                for template in &templates {
                    assert_eq!(template["metadata"]["labels"][label], labels[label], "{what}: pod label {label}");
                }
            }
            assert_eq!(labels["app.kubernetes.io/part-of"], "offload", "{what}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kustomize", "{what}");
            // What offload runs is labelled with offload's version.
            let offload_image = templates.first().is_some_and(|t| {
                t["spec"]["containers"][0]["command"][0]
                    .as_str()
                    .is_some_and(|c| c.starts_with("/usr/local/bin/offload-"))
            });
            if offload_image {
                assert_eq!(labels["app.kubernetes.io/version"], VERSION, "{what}");
            }
        }
        // A Deployment's (StatefulSet's, DaemonSet's) selector is immutable once applied: each is the one `name`
        // label it was released with, so adding or changing other labels (a new version, an instance) never
        // breaks `kubectl apply`.
        let released = BTreeMap::from([
            ("compute", "compute"),
            ("gateway", "gateway"),
            ("otel-collector", "otel-collector"),
            ("jaeger", "jaeger"),
        ]);
        let immutable = |o: &&Value| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet" | "DaemonSet"));
        for workload in rendered.objects.iter().filter(immutable) {
            let what = format!("{}: {} {}", rendered.name, workload["kind"], workload["metadata"]["name"]);
            let selector = &workload["spec"]["selector"];
            assert_eq!(selector.as_object().map(|s| s.len()), Some(1), "{what}: only matchLabels");
            let name = workload["metadata"]["labels"]["app.kubernetes.io/name"].as_str().expect("name label");
            assert_eq!(selector["matchLabels"], json!({"app.kubernetes.io/name": name}), "{what}: selector changed");
            let pods = &workload["spec"]["template"]["metadata"]["labels"];
            assert!(selects(&selector["matchLabels"], pods), "{what}: selects its pods");
            if let Some(released) = released.get(workload["metadata"]["name"].as_str().expect("name")) {
                assert_eq!(&name, released, "{what}: the released selector");
            }
        }
        // Every Service reaches pods that exist in the same render.
        for service in rendered.of_kind("Service") {
            let selector = &service["spec"]["selector"];
            let found =
                rendered.objects.iter().filter_map(pod_template).any(|t| selects(selector, &t["metadata"]["labels"]));
            assert!(found, "{}: Service {} selects no pods", rendered.name, service["metadata"]["name"]);
        }
    }
}

#[test]
fn every_deployment_spreads_pins_its_image_and_leaves_its_scale_to_its_hpa() {
    let Some(renders) = renders() else { return };
    for rendered in renders {
        for deployment in rendered.of_kind("Deployment") {
            let what = format!("{}: Deployment {}", rendered.name, deployment["metadata"]["name"]);
            let pods = &deployment["spec"]["template"];
            let spread = pods["spec"]["topologySpreadConstraints"].as_array().expect(&what).clone();
            assert!(
                spread.iter().any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                    && selects(&c["labelSelector"]["matchLabels"], &pods["metadata"]["labels"])),
                "{what}: spread over nodes, counting its own pods"
            );
        }
        // An HPA owns its target's replica count: a `replicas:` in the manifest would reset it on every apply.
        let hpas: Vec<&Value> = rendered.of_kind("HorizontalPodAutoscaler").collect();
        assert!(!hpas.is_empty(), "{}: compute is autoscaled", rendered.name);
        for hpa in hpas {
            let target = &hpa["spec"]["scaleTargetRef"];
            let what = format!("{}: HPA {}", rendered.name, hpa["metadata"]["name"]);
            let kind = target["kind"].as_str().expect("target kind");
            let scaled = rendered.find(kind, target["name"].as_str().expect("target name"));
            assert!(scaled["spec"].get("replicas").is_none(), "{what}: {kind} {} sets replicas", target["name"]);
            let (min, max) = (hpa["spec"]["minReplicas"].as_u64(), hpa["spec"]["maxReplicas"].as_u64());
            assert!(min.is_some_and(|min| min >= 2 && max.is_some_and(|max| max > min)), "{what}: 2 ≤ min < max");
        }
        // Images: a pinned tag matching the pods' version label, pulled only when the node lacks it (so an image
        // loaded into kind or minikube is used as is), and a memory limit on every container.
        for template in rendered.objects.iter().filter_map(pod_template) {
            let version = &template["metadata"]["labels"]["app.kubernetes.io/version"];
            for container in template["spec"]["containers"].as_array().expect("containers") {
                let what = format!("{}: container {}", rendered.name, container["name"]);
                let image = container["image"].as_str().expect("image");
                let tag = image.rsplit_once(':').map(|(_, tag)| tag).filter(|t| !t.contains('/'));
                assert!(tag.is_some_and(|t| t != "latest"), "{what}: {image} must have a pinned tag");
                assert_eq!(tag.map(Value::from).as_ref(), Some(version), "{what}: tag = app.kubernetes.io/version");
                assert_eq!(container["imagePullPolicy"], "IfNotPresent", "{what}");
                assert!(container["resources"]["limits"]["memory"].is_string(), "{what}: memory is bounded");
            }
        }
    }
}
