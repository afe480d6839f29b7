//! The stall detector, on the real binaries: an `INLINE` job is named (method, mode, trace id) in a `WARN` line
//! while it still blocks its worker, with the cause (`cpu`) and the kernel's frame, served at `/debug/stalls` with
//! its whole stack, and counted in `offload_runtime_stalls_total{cause}`; `RAYON` jobs stall nothing; a gateway
//! waiting in the `BLOCKING` style is named the same way, with what its synchronous wait is stuck on;
//! `--stall-threshold 0` turns the detector off.

use std::{future::Future, net::SocketAddr, time::Duration};

use offload_proto::{
    service_names,
    v1::{ExecMode, SumOfSquaresRequest, UpstreamWait, compute_client::ComputeClient, gateway_client::GatewayClient},
};
use offload_testkit::{
    binaries::start,
    child::ChildServer,
    job::JobSizer,
    scrape::{Scrape, value},
};
use offload_tests::channel;
use tonic::Request;

/// The tests' threshold: above the default so that the OS preempting a worker on a busy 2-core machine is not
/// taken for a stall, and far below the jobs' length.
const THRESHOLD: &str = "20ms";
/// Milliseconds of one core per job: five thresholds, so every `INLINE` job is a stall and the watchdog has time
/// to say so while it runs.
const JOB_MS: f64 = 100.0;
/// How often the test reads the server's log while a call is in flight.
const LOG_POLL: Duration = Duration::from_millis(5);
/// How long a line may take from the server's stdout to the test (a generous bound for a loaded machine).
const LOG_LAG: Duration = Duration::from_secs(5);

fn scrape(addr: SocketAddr) -> Scrape {
    offload_testkit::scrape::scrape(addr).expect("GET /metrics")
}

/// The sum of `name`'s samples whose labels include `labels` (0 if none).
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .filter_map(|s| {
            // This sample's own full label set, which only it has.
            let own: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            value(scrape, name, &own)
        })
        .sum()
}

/// A request carrying a `traceparent` of trace `trace_id`.
fn traced<T>(message: T, trace_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ascii"));
    request
}

/// Awaits `call` while reading `server`'s log; with its output, the first line that says a stall of trace
/// `trace_id` is still running, if one was read before the call returned.
async fn warned_while_running<F: Future>(
    server: &mut ChildServer,
    trace_id: &str,
    call: F,
) -> (F::Output, Option<String>) {
    tokio::pin!(call);
    let mut seen = None;
    loop {
        tokio::select! {
            output = &mut call => return (output, seen),
            () = tokio::time::sleep(LOG_POLL) => {
                if seen.is_none() {
                    seen = server.log_lines().into_iter().find(|l| l.contains(trace_id) && l.contains("still stuck"));
                }
            }
        }
    }
}

/// The first line of `server`'s log that `matches`, waiting up to [`LOG_LAG`] for it: the log is read from a pipe
/// by a thread of this process, so a line the server wrote before answering may be read after the answer.
async fn logged(server: &mut ChildServer, matches: impl Fn(&str) -> bool) -> Option<String> {
    let until = std::time::Instant::now() + LOG_LAG;
    loop {
        let line = server.log_lines().into_iter().find(|l| matches(l));
        if line.is_some() || std::time::Instant::now() > until {
            return line;
        }
        tokio::time::sleep(LOG_POLL).await;
    }
}

/// `admin`'s `/debug/stalls`: the stalls going on and the last that ended.
fn debug_stalls(admin: SocketAddr) -> serde_json::Value {
    let body = offload_testkit::scrape::get(admin, "/debug/stalls").expect("GET /debug/stalls");
    serde_json::from_str(&body).expect("JSON")
}

/// The stall of trace `trace_id` that `/debug/stalls` lists, once its stack is taken.
fn debug_stall(admin: SocketAddr, trace_id: &str) -> serde_json::Value {
    let until = std::time::Instant::now() + LOG_LAG;
    loop {
        let json = debug_stalls(admin);
        let all = json["stalls"].as_array().into_iter().chain(json["ongoing"].as_array()).flatten();
        if let Some(found) = all.into_iter().find(|s| s["call"]["trace_id"] == trace_id && s["stack_note"].is_null()) {
            return found.clone();
        }
        assert!(std::time::Instant::now() < until, "no stall of trace {trace_id} at /debug/stalls: {json}");
        std::thread::sleep(LOG_POLL);
    }
}

/// Returns once no stall is going on at `admin`'s `/debug/stalls`. A stall is counted when it ends, a watchdog tick
/// after its call may have returned: a count taken while one is going on may yet move for it.
fn no_stall_going_on(admin: SocketAddr) {
    let until = std::time::Instant::now() + LOG_LAG;
    loop {
        let json = debug_stalls(admin);
        if json["ongoing"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(std::time::Instant::now() < until, "a stall still going on at /debug/stalls: {json}");
        std::thread::sleep(LOG_POLL);
    }
}

async fn sized_n(compute: &ChildServer) -> u64 {
    sized_n_ms(compute, JOB_MS).await
}

async fn sized_n_ms(compute: &ChildServer, ms: f64) -> u64 {
    JobSizer::connect(&compute.url()).await.expect("sizer").sum_of_squares_n(ms).await.expect("n")
}

/// A scrape of `admin` once `name{labels}` has moved by `expected` since `before` (or, past [`LOG_LAG`], the last
/// scrape): the watchdog counts a stall when it sees the worker move again, a tick after the reply may be sent.
fn settled(admin: SocketAddr, before: &Scrape, name: &str, labels: &[(&str, &str)], expected: f64) -> Scrape {
    let until = std::time::Instant::now() + LOG_LAG;
    loop {
        let now = scrape(admin);
        if total(&now, name, labels) - total(before, name, labels) >= expected || std::time::Instant::now() > until {
            return now;
        }
        std::thread::sleep(LOG_POLL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_spawned_jobs_are_named_while_they_stall_and_counted_rayon_jobs_are_not() {
    let mut compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0", "--stall-threshold", THRESHOLD]);
    let metrics = compute.metrics_addr.expect("metrics");
    let n = sized_n(&compute).await;
    // The traced job runs longer than the others: its WARN is written once the stack is unwound and symbolized,
    // and on a loaded 2-core machine that (and the pipe to this test) can take more than a 100 ms job.
    let traced_n = sized_n_ms(&compute, JOB_MS * 4.0).await;
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    let inline = [("method", "SumOfSquares"), ("mode", "inline")];
    // Sizing runs short inline jobs, and one may stall past the threshold (a first one once took 79 ms): the count
    // compared against is taken once any such stall has ended and been counted.
    no_stall_going_on(metrics);
    let before = scrape(metrics);

    let trace_id = "5a1100000000000000000000000000a1";
    let request = SumOfSquaresRequest { n: traced_n, mode: ExecMode::Inline as i32, ..Default::default() };
    let (reply, warned) =
        warned_while_running(&mut compute, trace_id, client.sum_of_squares(traced(request, trace_id))).await;
    reply.expect("inline job");
    let warned = warned.expect("a WARN naming the trace before the call returned");
    for expected in ["WARN", "SumOfSquares", "inline", &format!("{traced_n}"), "thread", "sum_of_squares"] {
        assert!(warned.contains(expected), "{expected:?} not in {warned}");
    }
    // The job computes: on the CPU, or waiting for it on a machine whose other core the client keeps busy.
    assert!(warned.contains("cause=cpu") || warned.contains("cause=descheduled"), "no CPU cause in {warned}");
    let stall = debug_stall(metrics, trace_id);
    assert!(["cpu", "descheduled"].contains(&stall["cause"]["kind"].as_str().unwrap_or("")), "{stall}");
    assert_eq!(stall["call"]["mode"], "inline", "{stall}");
    let frames: Vec<&str> =
        stall["stack"].as_array().expect("stack").iter().filter_map(|f| f["function"].as_str()).collect();
    assert!(frames.iter().any(|f| f.contains("kernel::sum_of_squares")), "the kernel's frame in {frames:?}");
    assert!(frames.iter().any(|f| f.contains("tokio::runtime")), "the whole stack, down to the runtime: {frames:?}");
    let ended = logged(&mut compute, |l| l.contains(trace_id) && l.contains("stall ended")).await;
    assert!(ended.is_some_and(|l| l.contains("SumOfSquares")), "no end-of-stall line for the trace");
    client
        .sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::Inline as i32, ..Default::default() })
        .await
        .expect("a second inline job");
    let after_inline = settled(metrics, &before, "offload_runtime_stalls_total", &inline, 2.0);
    let moved =
        |name: &str, b: &Scrape, a: &Scrape, labels: &[(&str, &str)]| total(a, name, labels) - total(b, name, labels);
    assert_eq!(moved("offload_runtime_stalls_total", &before, &after_inline, &inline), 2.0, "one stall per inline job");
    assert_eq!(moved("offload_runtime_stall_seconds_count", &before, &after_inline, &inline), 2.0);

    // SPAWN_TASK moves the job into a task of its own, on a worker all the same: its stall is the call's too.
    for _ in 0..2 {
        client
            .sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::SpawnTask as i32, ..Default::default() })
            .await
            .expect("spawn-task job");
    }
    let spawn_task = [("method", "SumOfSquares"), ("mode", "spawn-task")];
    let after_spawn_task = settled(metrics, &after_inline, "offload_runtime_stalls_total", &spawn_task, 2.0);
    assert_eq!(
        moved("offload_runtime_stalls_total", &after_inline, &after_spawn_task, &spawn_task),
        2.0,
        "one stall per spawned job, named after its call"
    );

    for _ in 0..3 {
        client
            .sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() })
            .await
            .expect("rayon job");
    }
    let after_rayon = scrape(metrics);
    let sum_of_squares = [("method", "SumOfSquares")];
    assert_eq!(
        moved("offload_runtime_stalls_total", &after_spawn_task, &after_rayon, &sum_of_squares),
        0.0,
        "rayon jobs stall nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_gateway_is_named_by_its_wait_style() {
    let compute = start("offload-compute", &[]);
    // Longer than the compute tests' jobs: the first stall of a debug-built gateway waits for its stack to be
    // symbolized from the binary's line tables before its WARN is written.
    let n = sized_n_ms(&compute, JOB_MS * 4.0).await;
    let mut gateway = start(
        "offload-gateway",
        &["--compute", &compute.url(), "--metrics-listen", "127.0.0.1:0", "--stall-threshold", THRESHOLD],
    );
    let metrics = gateway.metrics_addr.expect("metrics");
    offload_tests::wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    let before = scrape(metrics);

    let trace_id = "5a1100000000000000000000000000b2";
    let request = SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, upstream_wait: UpstreamWait::Blocking as i32 };
    let (reply, warned) =
        warned_while_running(&mut gateway, trace_id, client.sum_of_squares(traced(request, trace_id))).await;
    reply.expect("blocking call");
    let warned = warned.expect("a WARN naming the trace before the call returned");
    for expected in ["WARN", "SumOfSquares", "blocking"] {
        assert!(warned.contains(expected), "{expected:?} not in {warned}");
    }
    // The synchronous client parks its thread until the reply comes: a futex wait.
    let stall = debug_stall(metrics, trace_id);
    assert_eq!(stall["cause"]["kind"], "lock", "{stall}");
    let frames: Vec<&str> =
        stall["stack"].as_array().expect("stack").iter().filter_map(|f| f["function"].as_str()).collect();
    assert!(frames.iter().any(|f| f.contains("offload_gateway::")), "the gateway's own frames in {frames:?}");
    let blocking = [("method", "SumOfSquares"), ("mode", "blocking")];
    let after = settled(metrics, &before, "offload_runtime_stalls_total", &blocking, 1.0);
    assert_eq!(
        total(&after, "offload_runtime_stalls_total", &blocking)
            - total(&before, "offload_runtime_stalls_total", &blocking),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_zero_turns_the_detector_off() {
    let mut compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0", "--stall-threshold", "0"]);
    let n = sized_n(&compute).await;
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    client
        .sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::Inline as i32, ..Default::default() })
        .await
        .expect("inline job");
    let scraped = scrape(compute.metrics_addr.expect("metrics"));
    assert_eq!(total(&scraped, "offload_runtime_stalls_total", &[]), 0.0);
    assert!(!compute.log_lines().iter().any(|l| l.contains("runtime stall")), "no stall lines when off");
}

/// Seconds of `INLINE` load in the soak below: a few in every test run; `OFFLOAD_STALL_SOAK_SECS=30` for the long
/// run docs/stall.md reports.
fn soak_seconds() -> u64 {
    std::env::var("OFFLOAD_STALL_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4)
}

/// Anonymous resident memory (the heap, not the binary's pages) the detector may add over the soak: its history
/// (64 reports of up to 128 frames) and one stack copy buffer are a few MiB; the rest is the allocator's slack
/// under load. File-backed pages are left out: naming frames reads the binary's line tables through a mapping,
/// whose pages count in RSS as they are read and are the kernel's to drop.
const SOAK_RSS_GROWTH: u64 = 32 * 1024 * 1024;

/// `RssAnon` of process `pid`, in bytes.
fn anonymous_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("RssAnon");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_with_stacks_for_seconds_leave_the_server_healthy_bounded_and_rate_limited() {
    let mut compute = start("offload-compute", &["--metrics-listen", "127.0.0.1:0", "--stall-threshold", "10ms"]);
    let admin = compute.metrics_addr.expect("metrics");
    let n = sized_n_ms(&compute, 20.0).await;
    let client = ComputeClient::new(channel(&compute.url()).await);
    let inline = SumOfSquaresRequest { n, mode: ExecMode::Inline as i32, ..Default::default() };
    client.clone().sum_of_squares(inline).await.expect("warm-up");
    let before = anonymous_rss(compute.pid());
    let seconds = soak_seconds();
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while tokio::time::Instant::now() < until {
                    client.sum_of_squares(inline).await.expect("inline job under the soak");
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for task in loops {
        calls += task.await.expect("loop");
    }
    offload_tests::wait_serving(&compute.url(), service_names::COMPUTE).await;
    assert!(compute.is_running(), "the server survived {seconds} s of stalls with stacks");
    let after = anonymous_rss(compute.pid());
    assert!(
        after.saturating_sub(before) < SOAK_RSS_GROWTH,
        "the heap grew by {} MiB over the soak",
        (after - before) >> 20
    );

    let body = offload_testkit::scrape::get(admin, "/debug/stalls").expect("GET /debug/stalls");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let skipped = json["stacks_skipped"].as_u64().expect("stacks_skipped");
    assert!(skipped > 0, "{calls} blocking calls and no stack skipped: the rate limit never engaged");
    // At most four stacks a second, and a burst of four: eight in any second of the history.
    let with_stacks: Vec<f64> = json["stalls"]
        .as_array()
        .expect("stalls")
        .iter()
        .filter(|s| s["stack"].as_array().is_some_and(|f| !f.is_empty()))
        .map(|s| seconds_of_day(s["time"].as_str().expect("time")))
        .collect();
    for (i, start) in with_stacks.iter().enumerate() {
        let within = with_stacks[i..].iter().take_while(|t| **t < start + 1.0).count();
        assert!(within <= 8, "{within} stacks within a second of {start}: {with_stacks:?}");
    }
    let lines = compute.log_lines().iter().filter(|l| l.contains("runtime stall") && !l.contains("stack=")).count();
    let allowed = 20 * (seconds as usize + 2) + 20;
    assert!(lines <= allowed, "{lines} stall lines in {seconds} s (at most 20 a second)");
    println!(
        "soak: {seconds} s, {calls} INLINE calls, {skipped} stacks skipped, {lines} stall lines, anonymous RSS {} → {} MiB",
        before >> 20,
        after >> 20
    );
}

/// Seconds since midnight of an RFC 3339 UTC time (`…T00:36:35.551Z`): enough to order and space a test's stalls.
fn seconds_of_day(time: &str) -> f64 {
    let clock = time.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
    clock.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0)).fold(0.0, |acc, p| acc * 60.0 + p)
}

#[test]
fn a_threshold_below_the_minimum_is_refused_by_name_at_start_up() {
    for (server, more) in [("offload-compute", &[][..]), ("offload-gateway", &["--compute", "http://127.0.0.1:1"][..])]
    {
        let output = std::process::Command::new(offload_testkit::binaries::path(server))
            .args(["--listen", "127.0.0.1:0", "--stall-threshold", "0.001ms"])
            .args(more)
            .output()
            .expect("run the server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{server} started with a 1 µs threshold");
        assert!(stderr.contains("--stall-threshold") && stderr.contains("minimum"), "{server}: {stderr}");
    }
}
