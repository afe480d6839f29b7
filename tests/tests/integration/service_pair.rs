//! The contract end to end: exact results in every mode, directly and through the gateway, with the execution
//! report filled in, plus health and reflection on both servers.

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest},
};
use offload_tests::{compute, compute_client, gateway, gateway_client, health, wait_serving};
use tonic_health::pb::health_check_response::ServingStatus;

const FACTORIAL_20: &str = "2432902008176640000";
const ALL_MODES: [ExecMode; 7] = [
    ExecMode::Unspecified,
    ExecMode::Inline,
    ExecMode::SpawnTask,
    ExecMode::SpawnBlocking,
    ExecMode::BlockInPlace,
    ExecMode::Rayon,
    ExecMode::Adaptive,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_results_in_every_mode_direct_and_through_the_gateway() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut direct = compute_client(&compute_server).await;
    let mut via_gateway = gateway_client(&gateway_server).await;

    for mode in ALL_MODES {
        let request = FactorialRequest { n: 20, mode: mode as i32, ..Default::default() };
        let a = direct.factorial(request).await.expect("direct factorial").into_inner();
        let b = via_gateway.factorial(request).await.expect("gateway factorial").into_inner();
        for reply in [&a, &b] {
            assert_eq!(reply.value, FACTORIAL_20, "{mode:?}");
            assert_eq!(reply.digits, 19);
        }

        // sum(i*i for i in range(10**8)) in CPython.
        let request = SumOfSquaresRequest { n: 100_000_000, mode: mode as i32, ..Default::default() };
        let a = direct.sum_of_squares(request).await.expect("direct sum").into_inner();
        let b = via_gateway.sum_of_squares(request).await.expect("gateway sum").into_inner();
        assert_eq!(a.value, "333333328333333350000000", "{mode:?}");
        assert_eq!(b.value, a.value);

        for (n, expected) in [(0, "0"), (1, "0"), (2, "1"), (1_000_000, "333332833333500000")] {
            let reply = via_gateway
                .sum_of_squares(SumOfSquaresRequest { n, mode: mode as i32, ..Default::default() })
                .await
                .expect("sum");
            assert_eq!(reply.into_inner().value, expected, "n = {n}, {mode:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_report_says_what_happened() {
    let compute_server = compute(&["--default-mode", "spawn-blocking", "--instance-id", "c-1"]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let client = gateway_client(&gateway_server).await;

    let run = |mode: ExecMode, n: u64| {
        let mut client = client.clone();
        async move {
            let reply = client
                .sum_of_squares(SumOfSquaresRequest { n, mode: mode as i32, ..Default::default() })
                .await
                .expect("sum");
            reply.into_inner().execution.expect("execution report")
        }
    };
    // Explicit modes are honoured; UNSPECIFIED takes the server default; ADAPTIVE resolves by cost.
    assert_eq!(run(ExecMode::Rayon, 1000).await.mode(), ExecMode::Rayon);
    assert_eq!(run(ExecMode::Inline, 1000).await.mode(), ExecMode::Inline);
    assert_eq!(run(ExecMode::Unspecified, 1000).await.mode(), ExecMode::SpawnBlocking);
    assert_eq!(run(ExecMode::Adaptive, 10).await.mode(), ExecMode::Inline);
    assert_eq!(run(ExecMode::Adaptive, 2_000_000_000).await.mode(), ExecMode::Rayon);

    let report = run(ExecMode::Rayon, 500_000_000).await;
    assert_eq!(report.served_by, "c-1");
    assert_eq!(report.upstream_attempts, 1);
    assert!(report.compute_us > 0, "{report:?}");
    assert!(report.upstream_us >= report.compute_us, "{report:?}");
    assert!(report.gateway_total_us >= report.upstream_us, "{report:?}");
    // The reported intervals nest, so their differences (compare's attribution) are never negative.
    assert!(report.gateway_total_us >= report.gateway_before_upstream_us + report.upstream_us, "{report:?}");
    assert!(report.upstream_us >= report.compute_total_us, "{report:?}");
    assert!(report.compute_total_us >= report.queue_us + report.compute_us, "{report:?}");

    let direct = compute_client(&compute_server)
        .await
        .factorial(FactorialRequest { n: 30, mode: ExecMode::Rayon as i32, ..Default::default() })
        .await
        .expect("direct")
        .into_inner();
    let report = direct.execution.expect("report");
    assert_eq!(
        (report.gateway_total_us, report.gateway_before_upstream_us, report.upstream_attempts),
        (0, 0, 0),
        "only the gateway sets these"
    );
    assert!(report.compute_total_us >= report.queue_us + report.compute_us && report.compute_us > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_default_factorial_fits_both_hops() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut client = gateway_client(&gateway_server).await;
    let mut values = Vec::new();
    for mode in [ExecMode::Rayon, ExecMode::Inline] {
        let reply = client
            .factorial(FactorialRequest { n: 100_000, mode: mode as i32, ..Default::default() })
            .await
            .expect("100 000!");
        let reply = reply.into_inner();
        assert_eq!(reply.digits, 456_574);
        assert_eq!(reply.value.len(), 456_574);
        // 100 000! ends in ⌊n/5⌋ + ⌊n/25⌋ + … = 24 999 zeros, preceded by a non-zero digit.
        let zeros = reply.value.bytes().rev().take_while(|&b| b == b'0').count();
        assert_eq!(zeros, 24_999);
        assert!(reply.value.starts_with("28242294079603478742934215780245355184774949260912248505789180865429"));
        values.push(reply.value);
    }
    // The pool's parallel conversion and the serial one agree digit for digit.
    assert_eq!(values[0], values[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_service_and_reflection_lists_them() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    for (url, service) in
        [(compute_server.url(), service_names::COMPUTE), (gateway_server.url(), service_names::GATEWAY)]
    {
        assert_eq!(health(&url, "").await.expect("overall"), ServingStatus::Serving);
        assert_eq!(health(&url, service).await.expect("service"), ServingStatus::Serving);
        // Exactly what the server serves: compute does not list the gateway's service, nor the other way round.
        let mut services = reflection::list_services(&url).await;
        services.sort();
        let mut expected = vec![
            service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        expected.sort();
        assert_eq!(services, expected, "{url}");
    }
}

mod reflection {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    /// Asks the server's reflection v1 service for its services, as grpcurl `list` does.
    pub(super) async fn list_services(url: &str) -> Vec<String> {
        let mut client = ServerReflectionClient::new(offload_tests::channel(url).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies =
            client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflect").into_inner();
        let reply = replies.next().await.expect("one reply").expect("ok");
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("unexpected reflection reply {other:?}"),
        }
    }
}
