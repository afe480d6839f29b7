//! The loadgenerator component: a bounded `offload-bench load` Job from the servers' own image, aimed at the
//! gateway Service's gRPC port, whose request is proto3 JSON of the called method's input (decoded here from the
//! proto crate's descriptors, as offload-bench decodes it) and is answered OK by a real gateway and compute on
//! loopback. The distributed-load overlay's Indexed Job is held to the same rules, and its shards to its indexes.

use std::{collections::BTreeMap, time::Duration};

use offload_duration::parse as parse_duration;
use offload_proto::v1::{FactorialRequest, SumOfSquaresRequest};
use offload_tests::{compute, gateway, gateway_client, wait_serving};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;

use super::{
    kubernetes::{Rendered, renders, selects},
    package_of_binary,
    servers::check_hardened,
};

/// Most calls one run may send (rate × duration): the report keeps a record per call, and the Job's memory
/// limit is sized for tens of thousands.
const MAX_CALLS: f64 = 100_000.0;

/// The Job's `load` flags: `--name=value` (or a bare `--name`) and the one positional argument, the host.
struct LoadFlags {
    flags: BTreeMap<String, Option<String>>,
    host: String,
}

impl LoadFlags {
    fn parse(args: &[Value]) -> Self {
        let args: Vec<&str> = args.iter().map(|a| a.as_str().expect("string args")).collect();
        assert_eq!(args.first(), Some(&"load"), "the loadgenerator runs `offload-bench load`");
        let mut flags = BTreeMap::new();
        let mut hosts = Vec::new();
        for arg in &args[1..] {
            match arg.strip_prefix("--") {
                Some(flag) => {
                    let (name, value) = flag.split_once('=').map_or((flag, None), |(n, v)| (n, Some(v.to_owned())));
                    assert!(flags.insert(name.to_owned(), value).is_none(), "--{name} given twice");
                }
                None => hosts.push(arg.to_string()),
            }
        }
        assert_eq!(hosts.len(), 1, "one host: {args:?}");
        Self { flags, host: hosts.remove(0) }
    }

    fn value(&self, name: &str) -> &str {
        self.flags.get(name).and_then(Option::as_deref).unwrap_or_else(|| panic!("the Job sets no --{name}=…"))
    }

    fn duration(&self, name: &str) -> Duration {
        parse_duration(self.value(name)).unwrap_or_else(|e| panic!("--{name}: {e}"))
    }

    fn number(&self, name: &str) -> f64 {
        self.value(name).parse().unwrap_or_else(|e| panic!("--{name}: {e}"))
    }
}

/// The Job `job_name`, checked against the render it is in; returns the method called and its request.
fn check_job(rendered: &Rendered, job_name: &str) -> (String, DynamicMessage) {
    let name = &rendered.name;
    let job = rendered.find("Job", job_name);
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    check_hardened(&format!("{name}: loadgenerator"), pod);
    assert_ne!(pod["restartPolicy"], "Always", "{name}: a Job");
    let gateway = rendered.find("Deployment", "gateway");
    let gateway_pods = &gateway["spec"]["template"]["metadata"]["labels"];
    // The same image as the servers (whatever `images:` says), running the binary the Dockerfile installs.
    assert_eq!(container["image"], gateway["spec"]["template"]["spec"]["containers"][0]["image"], "{name}");
    let command = container["command"][0].as_str().expect("command");
    let binary = command.strip_prefix("/usr/local/bin/").expect("a binary the image installs in /usr/local/bin");
    assert_eq!(package_of_binary(binary), "offload-bench", "{name}: the loadgenerator runs offload-bench");
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][bound][resource].is_string(), "{name}: {bound}.{resource}");
        }
    }

    let load = LoadFlags::parse(container["args"].as_array().expect("args"));
    // Aimed at the gateway Service's gRPC port, by the Service's name (same namespace).
    let (host, port) = load.host.rsplit_once(':').expect("host:port");
    let service = rendered.find("Service", host);
    assert!(selects(&service["spec"]["selector"], gateway_pods), "{name}: {host} is the gateway's Service");
    let grpc = service["spec"]["ports"].as_array().expect("ports").iter().find(|p| p["name"] == "grpc");
    assert_eq!(grpc.map(|p| p["port"].to_string()).as_deref(), Some(port), "{name}: the gateway's gRPC port");
    assert!(load.flags.contains_key("insecure"), "{name}: the manifests serve plaintext");
    // Bounded: open loop at a fixed rate for a fixed time, within the Job's deadline and the gateway's limits.
    let (rps, duration) = (load.number("rps"), load.duration("duration"));
    assert!(rps > 0.0 && rps * duration.as_secs_f64() <= MAX_CALLS, "{name}: {rps}/s for {duration:?} is too many");
    let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().expect("activeDeadlineSeconds");
    assert!(Duration::from_secs(deadline) > duration, "{name}: the Job's deadline must outlast --duration");
    assert!(job["spec"]["backoffLimit"].is_u64() && job["spec"]["ttlSecondsAfterFinished"].is_u64(), "{name}");
    let gateway_config = rendered.config_of(gateway);
    let in_flight: f64 =
        gateway_config["OFFLOAD_GATEWAY_MAX_INFLIGHT"].as_str().expect("max in flight").parse().expect("n");
    assert!(load.number("concurrency") <= in_flight, "{name}: more calls in flight than the gateway admits");
    let default_timeout = parse_duration(gateway_config["OFFLOAD_GATEWAY_DEFAULT_TIMEOUT"].as_str().expect("t"));
    assert!(load.duration("timeout") <= default_timeout.expect("timeout"), "{name}: --timeout");

    // The call: a method the gateway serves, with proto3 JSON of its input, within compute's limits.
    let pool = DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let (service_name, method_name) = load.value("call").split_once('/').expect("package.Service/Method");
    assert_eq!(service_name, offload_proto::service_names::GATEWAY, "{name}: the load goes through the gateway");
    let service = pool.get_service_by_name(service_name).expect("the gateway's service");
    let method = service.methods().find(|m| m.name() == method_name).expect("a method of the gateway");
    let data: Value = serde_json::from_str(load.value("data")).expect("--data is JSON");
    let request = DynamicMessage::deserialize(method.input(), &data).expect("--data is the method's input");
    let compute_config = rendered.config_of(rendered.find("Deployment", "compute"));
    let limit = format!("OFFLOAD_COMPUTE_MAX_{}_N", snake_upper(method_name));
    let limit: u64 = compute_config[&limit].as_str().map(str::parse).expect(&limit).expect("a number");
    let n = request.get_field_by_name("n").and_then(|n| n.as_u64()).expect("n");
    assert!(n <= limit, "{name}: n = {n} is above compute's limit {limit}");
    (method_name.to_owned(), request)
}

#[test]
fn distributed_load_is_an_indexed_job_whose_pods_are_the_shards() {
    let Some(renders) = renders() else { return };
    let rendered = renders.iter().find(|r| r.name == "overlays/distributed-load").expect("distributed-load renders");
    let job = rendered.find("Job", "distributed-load");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed", "each pod knows its shard by its index");
    let completions = spec["completions"].as_u64().expect("completions");
    assert!(completions >= 2, "a split run has shards");
    assert_eq!(spec["parallelism"].as_u64(), Some(completions), "the shards run together");
    assert_eq!(
        spec["template"]["spec"]["restartPolicy"], "Never",
        "a failed try keeps its pod; the report is in the succeeded one's log"
    );
    let load = LoadFlags::parse(spec["template"]["spec"]["containers"][0]["args"].as_array().expect("args"));
    assert_eq!(load.number("shards") as u64, completions, "--shards is the Job's number of indexes");
    assert_eq!(load.value("format"), "json", "each pod prints the JSON report merge reads");
    assert!(!load.flags.contains_key("shard") && !load.flags.contains_key("start-at"), "the index comes from the pod");
    // Every shard gets a worker per connection: -c divided by the shards is at least --connections.
    assert!(load.number("concurrency") / completions as f64 >= load.number("connections"), "-c over the shards");
}

/// `SumOfSquares` → `SUM_OF_SQUARES`, as the limits' settings are named.
fn snake_upper(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgenerator_aims_at_the_gateway_with_a_request_it_answers() {
    let Some(renders) = tokio::task::spawn_blocking(renders).await.expect("render") else { return };
    let with_job: Vec<&Rendered> = renders.iter().filter(|r| r.get("Job", "loadgenerator").is_some()).collect();
    let names: Vec<&str> = with_job.iter().map(|r| r.name.as_str()).collect();
    for overlay in ["overlays/loadgenerator", "overlays/local"] {
        assert!(names.contains(&overlay), "{overlay} runs it: {names:?}");
    }
    assert!(!names.contains(&"base"), "the base runs no load");
    let mut calls: Vec<(String, DynamicMessage)> = with_job.iter().map(|r| check_job(r, "loadgenerator")).collect();
    let distributed = renders.iter().find(|r| r.name == "overlays/distributed-load").expect("distributed-load renders");
    calls.push(check_job(distributed, "distributed-load"));

    // Every other policy that guards the gateway's pods lets the loadgenerator's in.
    for rendered in &with_job {
        let gateway_pods = &rendered.find("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"];
        let load_pods = &rendered.find("Job", "loadgenerator")["spec"]["template"]["metadata"]["labels"];
        for policy in rendered
            .of_kind("NetworkPolicy")
            .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], gateway_pods))
        {
            let admitted = policy["spec"]["ingress"].as_array().into_iter().flatten().any(|rule| {
                rule["from"]
                    .as_array()
                    .is_none_or(|from| from.iter().any(|peer| selects(&peer["podSelector"]["matchLabels"], load_pods)))
            });
            assert!(
                admitted,
                "{}: NetworkPolicy {} shuts the loadgenerator out",
                rendered.name, policy["metadata"]["name"]
            );
        }
    }

    // What the Job sends, sent once to a real gateway in front of a real compute: answered OK.
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), offload_proto::service_names::GATEWAY).await;
    let mut client = gateway_client(&gateway_server).await;
    for (method, request) in calls {
        match method.as_str() {
            "Factorial" => {
                let request: FactorialRequest = request.transcode_to().expect("a FactorialRequest");
                let reply = client.factorial(request).await.expect("Factorial answered").into_inner();
                assert!(reply.digits > 0 && reply.value.len() as u64 == reply.digits, "a factorial came back");
            }
            "SumOfSquares" => {
                let request: SumOfSquaresRequest = request.transcode_to().expect("a SumOfSquaresRequest");
                client.sum_of_squares(request).await.expect("SumOfSquares answered");
            }
            other => panic!("the loadgenerator calls {other}: send it here too"),
        }
    }
    drop(client);
    gateway_server.stop().expect("gateway stops");
    compute_server.stop().expect("compute stops");
}
