//! A real Prometheus (Debian's package) on loopback, scraping the real compute and gateway binaries every second
//! and evaluating the shipped alert rules: under `INLINE` load on compute the stall alert goes pending or firing,
//! under `RAYON` load it stays quiet, and every query of the Grafana dashboard returns data.
//!
//! The rules are the shipped file with only its time windows shortened ([`short_windows`]): `for:` and the rate
//! windows are sized for a 15–30 s production scrape and minutes of trouble, this test scrapes every second and has
//! seconds to spare. The expressions, thresholds and metric names are the production ones, which is what this test
//! proves against real data; the production timing is proven by the `promtool test rules` unit tests
//! (`monitoring.rs`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use offload_proto::v1::{ExecMode, SumOfSquaresRequest, gateway_client::GatewayClient};
use offload_testkit::{
    cluster::{Cluster, Launcher},
    job::JobSizer,
    prometheus::{PrometheusServer, tool},
};
use serde_json::Value;

use crate::monitoring::{dashboard_queries, monitoring_dir};

/// The test's rate window: ten scrapes.
const WINDOW: &str = "10s";
/// The test's `for:`: two evaluations.
const FOR: &str = "2s";
/// How long a job holds a core: long enough that a blocked runtime is far past the 100 ms threshold.
const JOB_MS: f64 = 400.0;
/// Calls in flight during a load phase: two per tokio worker of a two-worker compute.
const CONCURRENCY: usize = 4;
/// The longest the INLINE phase runs (it stops early once the alert is seen).
const PHASE: Duration = Duration::from_secs(20);
/// The RAYON phase: the rate window and two scrapes, so the window the alert reads holds only RAYON load.
const RAYON_PHASE: Duration = Duration::from_secs(12);

/// The shipped rules with every `for:` and rate window shortened; panics if there were none to shorten (the
/// rules changed shape and this test would no longer test them).
fn short_windows(rules: &str) -> String {
    let mut windows = 0;
    let mut out = String::new();
    for line in rules.lines() {
        let mut line = line.to_owned();
        if let Some(rest) = line.trim_start().strip_prefix("for: ") {
            line = line.replace(&format!("for: {rest}"), &format!("for: {FOR}"));
            windows += 1;
        }
        for range in ["[2m]", "[5m]"] {
            windows += line.matches(range).count();
            line = line.replace(range, &format!("[{WINDOW}]"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert!(windows >= 8, "expected a for: and a rate window per alert, found {windows} to shorten");
    out
}

/// Keeps `CONCURRENCY` calls of `n` in `mode` in flight through the gateway until `stop` (or for `phase`).
fn load(
    gateway: String,
    mode: ExecMode,
    n: u64,
    phase: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let client = GatewayClient::new(offload_tests::channel(&gateway).await);
        let until = Instant::now() + phase;
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (mut client, stop) = (client.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut calls = 0;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        let request = SumOfSquaresRequest { n, mode: mode as i32, ..Default::default() };
                        client.sum_of_squares(request).await.expect("a loaded call still succeeds");
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        let mut calls = 0;
        for worker in workers {
            calls += worker.await.expect("join");
        }
        calls
    })
}

/// The stall alerts on compute now: their states (`pending`, `firing`).
fn compute_stall_alerts(prometheus: &PrometheusServer) -> Vec<String> {
    let alerts = prometheus.alerts().expect("GET /api/v1/alerts");
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "OffloadRuntimeStalled" && a["labels"]["server"] == "compute")
        .map(|a| a["state"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_sees_the_stall_alert_under_inline_not_rayon_and_every_dashboard_query() {
    let (Some(prometheus), Some(_)) = (tool("prometheus"), tool("promtool")) else {
        offload_testkit::skip::missing_tool(format_args!(
            "real Prometheus test: no prometheus binary (Debian package prometheus)"
        ));
        return;
    };
    // Two tokio workers on compute, as on a two-core pod: four INLINE calls block both.
    let cluster = Cluster::start(Launcher::binaries(), 1, &["--workers", "2"], &[]).await.expect("cluster");
    let compute = cluster.replicas[0].process.as_ref().expect("running");
    let (compute_metrics, gateway_metrics) =
        (compute.metrics_addr.expect("compute metrics"), cluster.gateway.metrics_addr.expect("gateway metrics"));
    let n = JobSizer::connect(&format!("http://{}", compute.addr))
        .await
        .expect("sizer")
        .sum_of_squares_n(JOB_MS)
        .await
        .expect("job size");

    let rules = std::fs::read_to_string(monitoring_dir().join("offload.rules.yaml")).expect("rules");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - offload.rules.yaml\n\
         scrape_configs:\n  - job_name: offload-compute\n    static_configs:\n      - targets: ['{compute_metrics}']\n\
         \x20 - job_name: offload-gateway\n    static_configs:\n      - targets: ['{gateway_metrics}']\n"
    );
    let server = PrometheusServer::start(&prometheus, &config, &[("offload.rules.yaml", &short_windows(&rules))])
        .expect("prometheus starts");
    // Both targets up before any load: the windows below then hold only what the load did.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.targets().expect("targets").iter().filter(|(_, health)| health == "up").count() < 2 {
        assert!(Instant::now() < deadline, "targets never up: {:?}\n{}", server.targets(), server.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // RAYON: the jobs run on rayon's threads; the runtime stays responsive and the alert quiet, throughout the
    // phase and until its window has passed.
    let stop = Arc::new(AtomicBool::new(false));
    let rayon = load(cluster.url(), ExecMode::Rayon, n, RAYON_PHASE, Arc::clone(&stop));
    let mut rayon_states = Vec::new();
    while !rayon.is_finished() {
        rayon_states.extend(compute_stall_alerts(&server));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rayon_calls = rayon.await.expect("rayon load");
    for _ in 0..3 {
        rayon_states.extend(compute_stall_alerts(&server));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rayon_p99 = server
        .query(&format!(
            "histogram_quantile(0.99, sum by (le) (rate(offload_runtime_schedule_delay_seconds_bucket{{server=\"compute\"}}[{WINDOW}])))"
        ))
        .expect("p99");
    assert!(rayon_calls > 0, "no RAYON call finished");
    assert!(rayon_states.is_empty(), "the stall alert went {rayon_states:?} under RAYON load (p99 now {rayon_p99:?})");

    // INLINE: the jobs hold compute's tokio workers; the alert goes pending, then firing. The load stops as soon as
    // the alert is seen and every dashboard query answered (or after PHASE).
    let inline = load(cluster.url(), ExecMode::Inline, n, PHASE, Arc::clone(&stop));
    let mut inline_states = Vec::new();
    let mut missing: Vec<String> = dashboard_queries();
    assert!(missing.len() >= 12, "the dashboard has {} queries", missing.len());
    while !inline.is_finished() && (inline_states.is_empty() || !missing.is_empty()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        inline_states.extend(compute_stall_alerts(&server));
        missing.retain(|expr| {
            let expr = expr.replace("$__rate_interval", WINDOW);
            server.query(&expr).unwrap_or_else(|e| panic!("dashboard query {expr}: {e}")).is_empty()
        });
    }
    stop.store(true, Ordering::Relaxed);
    let inline_calls = inline.await.expect("inline load");
    let stalls = server.query("sum(offload_runtime_stalls_total{server=\"compute\",mode=\"inline\"})").expect("q");
    let printed = |v: &[Value]| serde_json::to_string(v).unwrap_or_default();
    eprintln!(
        "RAYON: {rayon_calls} calls, alert states {rayon_states:?}; INLINE: {inline_calls} calls, alert states \
         {inline_states:?}, stalls {}",
        printed(&stalls)
    );
    assert!(
        inline_states.iter().any(|s| s == "pending" || s == "firing"),
        "the stall alert never went pending under INLINE load\n{}",
        server.log()
    );
    assert!(missing.is_empty(), "dashboard queries that returned no data: {missing:#?}");
    drop(server);
    cluster.stop();
}
