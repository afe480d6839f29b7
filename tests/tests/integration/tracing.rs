//! End-to-end tracing with the real binaries and a real OTLP receiver: a request through the gateway yields one
//! trace whose spans, from both processes and from the rayon thread that did the work, share the trace id and link
//! to the right parents; a client's `traceparent` is continued; JSON log lines of the request name the trace; and
//! the spans arrive because SIGTERM flushes the exporter (the batch delay is left at the SDK's 5 s default, longer
//! than this test waits before stopping the servers).

use std::{
    collections::HashMap,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use offload_proto::{
    service_names,
    v1::{ExecMode, SumOfSquaresRequest, UpstreamWait, gateway_client::GatewayClient},
};
use offload_testkit::{binaries::path as binary, child::ChildServer};
use offload_tests::{channel, wait_serving};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::span::SpanKind,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Channel};

/// An OTLP/gRPC trace receiver keeping everything it is sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.exports.lock().expect("lock").push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// A span as the test reads it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: SpanKind,
    trace_id: String,
    span_id: String,
    parent: String,
    trace_state: String,
    attributes: HashMap<String, String>,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let receiver = Self::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (receiver, url)
    }

    fn spans(&self) -> Vec<Span> {
        let exports = self.exports.lock().expect("lock");
        let mut spans = Vec::new();
        for resource_spans in exports.iter().flat_map(|e| &e.resource_spans) {
            let resource = resource_spans.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name.clone(),
                    kind: span.kind(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    trace_state: span.trace_state.clone(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
        spans
    }
}

/// Starts `name` exporting to `otlp` under `service` (OTEL_SERVICE_NAME), logging JSON.
fn start_traced(name: &str, args: &[&str], otlp: &str, service: &str) -> ChildServer {
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_SERVICE_NAME", service)
        .env("RUST_LOG", "info,offload_compute=debug");
    ChildServer::start(command).expect("server started")
}

/// The one span named `name` of `kind` among `spans`.
fn one_of<'a>(spans: &'a [Span], name: &str, kind: SpanKind) -> &'a Span {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name && s.kind == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind:?} span {name:?}, got {found:#?}\nall: {spans:#?}");
    found[0]
}

/// The one internal span named `name` among `spans`.
fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    one_of(spans, name, SpanKind::Internal)
}

/// One `SumOfSquares(1000)` per wait style through the gateway, the i-th in trace `i + 1` (as 32 hex digits) under
/// the caller's span `client_span`, with `tracestate` when given.
async fn call_in_every_wait_style(client: &mut GatewayClient<Channel>, client_span: &str, tracestate: Option<&str>) {
    for (i, style) in UpstreamWait::REQUESTABLE.into_iter().enumerate() {
        let mut request =
            Request::new(SumOfSquaresRequest { n: 1000, mode: ExecMode::Inline as i32, upstream_wait: style as i32 });
        let traceparent = format!("00-{:032x}-{client_span}-01", i + 1);
        request.metadata_mut().insert("traceparent", traceparent.parse().expect("ascii"));
        if let Some(tracestate) = tracestate {
            request.metadata_mut().insert("tracestate", tracestate.parse().expect("ascii"));
        }
        client.sum_of_squares(request).await.expect("served");
    }
}

/// SIGTERM to both servers, which must exit 0 (their exporters flushed: no span lost on a clean shutdown).
fn stop_cleanly(gateway: &mut ChildServer, compute: &mut ChildServer) {
    gateway.terminate();
    compute.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(20)), Some(0), "gateway exits cleanly");
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), Some(0), "compute exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_gateway_compute_and_the_rayon_thread() {
    let (receiver, otlp) = Receiver::start().await;
    let mut compute = start_traced("offload-compute", &["--rayon-threads", "2"], &otlp, "compute-under-test");
    let compute_url = compute.url();
    let mut gateway = start_traced("offload-gateway", &["--compute", &compute_url], &otlp, "gateway-under-test");
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);

    // With the client's own trace context: the trace continues under the client's span.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let mut request =
        Request::new(SumOfSquaresRequest { n: 20_000_000, mode: ExecMode::Rayon as i32, ..Default::default() });
    request.metadata_mut().insert("traceparent", format!("00-{client_trace}-{client_span}-01").parse().expect("ascii"));
    let reply = client.sum_of_squares(request).await.expect("served").into_inner();
    assert_eq!(reply.value, "2666666466666670000000");
    // Every way the gateway can wait for compute keeps the trace whole (spawned tasks and threads carry the span).
    call_in_every_wait_style(&mut client, client_span, None).await;
    // Without: the gateway starts a trace of its own.
    let request = SumOfSquaresRequest { n: 1001, mode: ExecMode::Inline as i32, ..Default::default() };
    client.sum_of_squares(request).await.expect("served");

    // SIGTERM flushes the exporters: no span may be lost on a clean shutdown.
    stop_cleanly(&mut gateway, &mut compute);
    let spans = receiver.spans();

    // The client-supplied trace: every span of both services, linked parent to child.
    let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == client_trace).cloned().collect();
    let gateway_server = one_of(&trace, "offload.v1.Gateway/SumOfSquares", SpanKind::Server);
    assert_eq!((gateway_server.service.as_str(), gateway_server.kind), ("gateway-under-test", SpanKind::Server));
    assert_eq!(gateway_server.parent, client_span, "the gateway continues the client's span");
    assert_eq!(gateway_server.attributes.get("rpc.grpc.status_code").map(String::as_str), Some("0"));
    let gateway_client = one_of(&trace, "offload.v1.Compute/SumOfSquares", SpanKind::Client);
    let compute_server = one_of(&trace, "offload.v1.Compute/SumOfSquares", SpanKind::Server);
    assert_eq!(gateway_client.service, "gateway-under-test");
    assert_eq!(gateway_client.parent, gateway_server.span_id, "client span under the gateway's server span");
    assert_eq!(compute_server.service, "compute-under-test");
    assert_eq!(compute_server.parent, gateway_client.span_id, "compute continues the gateway's client span");
    // OpenTelemetry's RPC conventions (the established names, the default): the call, the server, the peer.
    let compute_url: tonic::codegen::http::Uri = compute_url.parse().expect("compute url");
    for span in [&gateway_server, &gateway_client, &compute_server] {
        let attribute = |key: &str| span.attributes.get(key).map(String::as_str);
        assert_eq!(attribute("rpc.system"), Some("grpc"), "{span:#?}");
        assert_eq!(attribute("rpc.method"), Some("SumOfSquares"), "{span:#?}");
        assert_eq!(attribute("rpc.grpc.status_code"), Some("0"), "{span:#?}");
        assert_eq!(attribute("server.address"), Some("127.0.0.1"), "{span:#?}");
        assert!(!span.attributes.contains_key("peer"), "no custom peer field: {span:#?}");
    }
    assert_eq!(gateway_server.attributes.get("rpc.service").map(String::as_str), Some("offload.v1.Gateway"));
    assert_eq!(gateway_client.attributes.get("rpc.service").map(String::as_str), Some("offload.v1.Compute"));
    let port = compute_url.port_u16().map(|p| p.to_string());
    assert_eq!(gateway_client.attributes.get("server.port"), port.as_ref(), "the replica called");
    assert_eq!(compute_server.attributes.get("server.port"), port.as_ref(), "the :authority called");
    for server in [&gateway_server, &compute_server] {
        assert_eq!(server.attributes.get("network.peer.address").map(String::as_str), Some("127.0.0.1"));
        assert_eq!(server.attributes.get("network.transport").map(String::as_str), Some("tcp"));
        assert!(server.attributes.contains_key("network.peer.port"), "{server:#?}");
    }
    let job = one(&trace, "job");
    assert_eq!(job.parent, compute_server.span_id);
    assert_eq!(job.attributes.get("n").map(String::as_str), Some("20000000"));
    assert_eq!(job.attributes.get("mode.requested").map(String::as_str), Some("rayon"));
    assert_eq!(job.attributes.get("mode").map(String::as_str), Some("rayon"));
    assert!(job.attributes.contains_key("queue_us") && job.attributes.contains_key("compute_us"), "{job:#?}");
    let queue = one(&trace, "queue");
    assert_eq!(queue.parent, job.span_id);
    let work = one(&trace, "compute");
    assert_eq!(work.parent, job.span_id, "the span on the rayon thread is the request's");
    let thread = work.attributes.get("thread.name").cloned().unwrap_or_default();
    assert!(thread.starts_with("offload-rayon-"), "compute span ran on {thread:?}");

    for (i, style) in UpstreamWait::REQUESTABLE.into_iter().enumerate() {
        let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == format!("{:032x}", i + 1)).cloned().collect();
        let server = one_of(&trace, "offload.v1.Gateway/SumOfSquares", SpanKind::Server);
        let client = one_of(&trace, "offload.v1.Compute/SumOfSquares", SpanKind::Client);
        let compute = one_of(&trace, "offload.v1.Compute/SumOfSquares", SpanKind::Server);
        assert_eq!(server.parent, client_span, "{style:?}");
        assert_eq!(client.parent, server.span_id, "{style:?}: client span under the request's");
        assert_eq!(compute.parent, client.span_id, "{style:?}: compute continues the gateway's client span");
        // INLINE: the kernel ran on compute's own runtime worker.
        let thread = one(&trace, "compute").attributes.get("thread.name").cloned();
        assert_eq!(thread.as_deref(), Some("offload-compute"), "{style:?}");
    }

    // The request without a traceparent: one trace of its own, rooted at the gateway, reaching compute.
    let inline_job = spans
        .iter()
        .find(|s| s.name == "job" && s.attributes.get("n").map(String::as_str) == Some("1001"))
        .unwrap_or_else(|| panic!("no job span for n = 1001 in {spans:#?}"));
    let own: Vec<Span> = spans.iter().filter(|s| s.trace_id == inline_job.trace_id).cloned().collect();
    let root = one_of(&own, "offload.v1.Gateway/SumOfSquares", SpanKind::Server);
    assert_eq!(root.parent, "", "a trace started by the gateway has a root span there");
    assert!(own.iter().any(|s| s.service == "compute-under-test" && s.kind == SpanKind::Server), "{own:#?}");

    // Logs: compute's "job done" line for the traced request carries the trace id (JSON, in its span list).
    let lines = compute.log_lines();
    let job_line = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "job done" && l.to_string().contains("\"n\":20000000"))
        .unwrap_or_else(|| panic!("no JSON 'job done' line in {lines:#?}"));
    assert!(job_line.to_string().contains(client_trace), "trace id missing from {job_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_does_not_export_passes_the_callers_trace_on_to_compute() {
    // Only compute exports: the gateway builds no span of its own for the trace, so it must hand the caller's
    // `traceparent` on unchanged, or compute would start a second trace and the caller's would stop at the gateway.
    let (receiver, otlp) = Receiver::start().await;
    let mut compute = start_traced("offload-compute", &[], &otlp, "compute-under-test");
    let mut gateway = ChildServer::start({
        let mut command = Command::new(binary("offload-gateway"));
        command
            .args(["--compute", &compute.url(), "--listen", "127.0.0.1:0"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        command
    })
    .expect("gateway started");
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    let client_span = "00f067aa0ba902b7";
    // Every wait style: the synchronous ones reach compute from another thread.
    call_in_every_wait_style(&mut client, client_span, Some("vendor=kept")).await;
    stop_cleanly(&mut gateway, &mut compute);
    let spans = receiver.spans();
    assert!(spans.iter().all(|s| s.service == "compute-under-test"), "only compute exports: {spans:#?}");
    for (i, style) in UpstreamWait::REQUESTABLE.into_iter().enumerate() {
        let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == format!("{:032x}", i + 1)).cloned().collect();
        let server = one_of(&trace, "offload.v1.Compute/SumOfSquares", SpanKind::Server);
        assert_eq!(server.parent, client_span, "{style:?}: compute continues the caller's span\nall: {spans:#?}");
        assert_eq!(server.trace_state, "vendor=kept", "{style:?}: the caller's tracestate is passed on too");
    }
}
