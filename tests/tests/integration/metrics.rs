//! `/metrics` on both servers, scraped over HTTP from the real binaries and parsed as Prometheus text: request
//! counters move as requests flow, the runtime gauges, build info and process metrics are there, `promtool check
//! metrics` has nothing to say about either server's exposition, and the scheduling-delay histogram shows a blocked
//! runtime (`INLINE`) as larger than an offloading one (`RAYON`), as a ratio.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use offload_proto::v1::{
    ExecMode, FactorialRequest, SumOfSquaresRequest, compute_client::ComputeClient, gateway_client::GatewayClient,
};
use offload_testkit::binaries::start;
use offload_testkit::scrape::{Scrape, histogram_delta, value};
use offload_tests::channel;

fn scrape(addr: SocketAddr) -> Scrape {
    offload_testkit::scrape::scrape(addr).expect("GET /metrics answers valid Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counters_move_and_runtime_gauges_are_exposed() {
    let compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0"]);
    let gateway = start("offload-gateway", &["--compute", &compute.url(), "--metrics-listen", "127.0.0.1:0"]);
    let (compute_metrics, gateway_metrics) =
        (compute.metrics_addr.expect("compute metrics"), gateway.metrics_addr.expect("gateway metrics"));
    offload_tests::wait_serving(&gateway.url(), offload_proto::service_names::GATEWAY).await;

    let ok_compute = [("method", "Factorial"), ("mode", "rayon"), ("code", "OK")];
    let ok_gateway = [("method", "Factorial"), ("mode", "async"), ("code", "OK")];
    let bad_gateway = [("method", "Factorial"), ("mode", "async"), ("code", "INVALID_ARGUMENT")];
    let before = (scrape(compute_metrics), scrape(gateway_metrics));
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    for _ in 0..3 {
        client
            .factorial(FactorialRequest { n: 20, mode: ExecMode::Rayon as i32, ..Default::default() })
            .await
            .expect("ok");
    }
    client.factorial(FactorialRequest { n: u64::MAX, ..Default::default() }).await.expect_err("over the limit");
    let after = (scrape(compute_metrics), scrape(gateway_metrics));

    let moved = |b: &Scrape, a: &Scrape, name: &str, labels: &[(&str, &str)]| {
        value(a, name, labels).unwrap_or(0.0) - value(b, name, labels).unwrap_or(0.0)
    };
    assert_eq!(moved(&before.0, &after.0, "offload_requests_total", &ok_compute), 3.0);
    assert_eq!(moved(&before.1, &after.1, "offload_requests_total", &ok_gateway), 3.0);
    assert_eq!(moved(&before.1, &after.1, "offload_requests_total", &bad_gateway), 1.0);
    for scrape in [&after.0, &after.1] {
        assert!(value(scrape, "offload_runtime_workers", &[]).expect("workers gauge") >= 1.0);
        assert!(value(scrape, "offload_runtime_schedule_delay_seconds_count", &[]).expect("probe count") > 0.0);
        assert!(value(scrape, "offload_in_flight", &[]).is_some());
        assert!(value(scrape, "offload_shed_total", &[]).is_some());
        assert_eq!(value(scrape, "offload_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
        // The standard process metrics, as every Prometheus client library exports them.
        assert!(value(scrape, "process_cpu_seconds_total", &[]).is_some_and(|cpu| cpu >= 0.0));
        assert!(value(scrape, "process_resident_memory_bytes", &[]).is_some_and(|rss| rss > 0.0));
        assert!(value(scrape, "process_open_fds", &[]).is_some_and(|fds| fds > 0.0));
        assert!(value(scrape, "process_start_time_seconds", &[]).is_some_and(|t| t > 1.7e9));
        // Neither server adapts its limit here: it is the --max-inflight default.
        assert!(value(scrape, "offload_concurrency_limit", &[]).is_some_and(|limit| limit >= 256.0));
    }
    assert!(value(&after.0, "offload_rayon_queue_depth", &[]).is_some());
    // The gateway's view of its replicas: the one it was given, healthy (it just served through it).
    assert_eq!(value(&after.1, "offload_compute_endpoints", &[]), Some(1.0));
    assert_eq!(value(&after.1, "offload_compute_endpoints_healthy", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_is_clean_on_both_servers() {
    let Some(promtool) = offload_testkit::prometheus::tool("promtool") else {
        offload_testkit::skip::missing_tool(format_args!(
            "promtool_check_metrics_is_clean_on_both_servers: no promtool (Debian package prometheus)"
        ));
        return;
    };
    // A low stall threshold, so one INLINE call fills the stall families too: every family is linted.
    let compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0", "--stall-threshold", "5ms"]);
    let gateway = start("offload-gateway", &["--compute", &compute.url(), "--metrics-listen", "127.0.0.1:0"]);
    offload_tests::wait_serving(&gateway.url(), offload_proto::service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    let inline = SumOfSquaresRequest { n: 300_000_000, mode: ExecMode::Inline as i32, ..Default::default() };
    client.sum_of_squares(inline).await.expect("inline call");
    client.factorial(FactorialRequest { n: u64::MAX, ..Default::default() }).await.expect_err("over the limit");
    for (server, addr) in [("compute", compute.metrics_addr), ("gateway", gateway.metrics_addr)] {
        let text = offload_testkit::scrape::get(addr.expect("metrics"), "/metrics").expect("GET /metrics");
        for family in ["offload_requests_total", "offload_request_duration_seconds_bucket", "process_cpu_seconds_total"]
        {
            assert!(text.contains(family), "{server} exposes no {family}");
        }
        if let Err(said) = offload_testkit::prometheus::check_metrics(&promtool, &text) {
            panic!("promtool check metrics on {server}'s /metrics:\n{said}");
        }
    }
    let compute_text = offload_testkit::scrape::get(compute.metrics_addr.expect("metrics"), "/metrics").expect("GET");
    assert!(compute_text.contains("offload_runtime_stalls_total"), "the INLINE call stalled a worker past 5 ms");
}

/// The mean scheduling delay while four heavy jobs in `mode` keep compute busy for about a second and a half.
async fn schedule_delay_under(mode: ExecMode, compute_url: &str, metrics: SocketAddr) -> f64 {
    let before = scrape(metrics);
    let client = ComputeClient::new(channel(compute_url).await);
    let until = Instant::now() + Duration::from_millis(1500);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                while Instant::now() < until {
                    let request = SumOfSquaresRequest { n: 300_000_000, mode: mode as i32, ..Default::default() };
                    client.sum_of_squares(request).await.expect("heavy job");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("join");
    }
    let after = scrape(metrics);
    let delay = histogram_delta(&before, &after, "offload_runtime_schedule_delay_seconds", 99.0);
    delay.unwrap_or_else(|| panic!("the probe never ran during {mode:?}")).mean
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduling_delay_shows_a_blocked_runtime() {
    let compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = compute.metrics_addr.expect("metrics");
    let inline = schedule_delay_under(ExecMode::Inline, &compute.url(), metrics).await;
    let rayon = schedule_delay_under(ExecMode::Rayon, &compute.url(), metrics).await;
    assert!(inline > 3.0 * rayon, "mean scheduling delay: INLINE {inline:.6} s vs RAYON {rayon:.6} s");
}
