//! `offload-bench load` against a tonic service that serves no reflection, reached through `--proto` alone: the
//! same path a user takes with a Rust service whose `.proto` files they have. The service is a bare
//! `offload.v1.Compute` of the test's own (no health, no reflection, none of offload's layers) that records the
//! requests it receives, so the templates are checked from the server's side.

use std::{
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use offload_proto::v1::{
    ExecMode, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse,
    compute_server::{Compute, ComputeServer},
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A bare `offload.v1.Compute` remembering every `SumOfSquares` request it was sent.
#[derive(Debug, Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<SumOfSquaresRequest>>>,
}

#[tonic::async_trait]
impl Compute for Recorder {
    async fn factorial(&self, _: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        Err(Status::unimplemented("only SumOfSquares here"))
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        let request = request.into_inner();
        let value = request.n.to_string();
        self.seen.lock().expect("seen").push(request);
        Ok(Response::new(SumOfSquaresResponse { value, execution: None }))
    }
}

/// `offload-bench load` with `args` (blocking: run it off the runtime): its JSON report, or its error output.
fn load(args: Vec<String>) -> Result<serde_json::Value, String> {
    let output = Command::new(offload_testkit::binaries::path("offload-bench"))
        .args(["load", "--insecure", "--quiet", "-O", "json"])
        .args(args)
        .output()
        .expect("run offload-bench load");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).expect("a JSON report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_service_without_reflection_is_reached_through_its_proto_file() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let recorder = Recorder::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ComputeServer::new(recorder.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );

    let call = ["--call", "offload.v1.Compute/SumOfSquares"].map(str::to_owned);
    // A templated -d needs the method's descriptors (offload's own methods with plain data take the typed path).
    let data = ["-d".to_owned(), r#"{"n": "{{.RequestNumber}}", "mode": "EXEC_MODE_RAYON"}"#.to_owned()];
    let without_proto = [&call[..], &data[..], std::slice::from_ref(&host)].concat();
    let refused = tokio::task::spawn_blocking(move || load(without_proto)).await.expect("join");
    let refused = refused.expect_err("no reflection and no --proto");
    assert!(refused.contains("--proto"), "the refusal says how to go on: {refused}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let proto = root.join("offload/v1/offload.proto");
    let args = [
        &call[..],
        &["--proto".into(), proto.display().to_string(), "-i".into(), root.display().to_string()],
        &data[..],
        &["-n", "10", "-c", "2"].map(str::to_owned),
        &[host],
    ]
    .concat();
    let report = tokio::task::spawn_blocking(move || load(args)).await.expect("join").expect("the load ran");
    assert_eq!(report["statusCodeDistribution"], serde_json::json!({"OK": 10}), "{report}");

    let _ = stop.send(());
    server.await.expect("join").expect("served");
    let seen = recorder.seen.lock().expect("seen").clone();
    let mut numbers: Vec<u64> = seen.iter().map(|r| r.n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..10).collect::<Vec<u64>>(), "one request per RequestNumber, rendered as the uint64 n");
    assert!(seen.iter().all(|r| r.mode == ExecMode::Rayon as i32), "the enum sent by name: {seen:?}");
}
