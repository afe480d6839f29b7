//! Deadlines count from a call's arrival: calls that queued behind a blocked runtime past their deadline are
//! answered at once without starting their job; a call that arrives already expired (`grpc-timeout: 0m`, `1n`)
//! or already reset by its client never starts.
//!
//! Raw HTTP/2 calls, so that the server's own answer (and its message) is what is read: a tonic client's timer for
//! the same deadline would race it.

use std::time::{Duration, Instant};

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest, UpstreamWait},
};
use offload_testkit::{
    binaries,
    child::ChildServer,
    raw::{RawConnection, RawReply, frame},
    scrape,
};
use offload_tests::wait_serving;
use prost::Message;
use tonic::Code;

const DEADLINE: &str = "300m";
const DEADLINE_MS: u64 = 300;
/// What the admission layer says of a call that waited out its deadline before it could start.
const NEVER_STARTED: &str = "before the call could start";

/// A minute-long job: it ends only at its deadline.
fn endless(mode: ExecMode, upstream_wait: UpstreamWait) -> Vec<u8> {
    let request = SumOfSquaresRequest { n: 1_000_000_000_000, mode: mode as i32, upstream_wait: upstream_wait as i32 };
    frame(&request.encode_to_vec())
}

/// Sends `calls` copies of `body` at once on one connection, then a probe (a health check on another connection)
/// once they are all sent; returns the replies and how long the probe and the whole batch took.
async fn queue(server: &ChildServer, path: &str, body: Vec<u8>, calls: usize) -> (Vec<RawReply>, Duration, Duration) {
    let connection = RawConnection::connect(server.addr).await.expect("connect");
    let probe = RawConnection::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    let batch: Vec<_> = (0..calls)
        .map(|_| {
            let (connection, path, body) = (connection.clone(), path.to_owned(), body.clone());
            tokio::spawn(async move { connection.call(&path, body, Some(DEADLINE)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let probed = Instant::now();
    let health = probe.call("/grpc.health.v1.Health/Check", frame(&[]), None).await.expect("health");
    assert_eq!(health.code, Code::Ok);
    let probe_took = probed.elapsed();
    let mut replies = Vec::new();
    for call in batch {
        replies.push(call.await.expect("join").expect("an answer"));
    }
    (replies, probe_took, started.elapsed())
}

/// Checks the batch: every call ended at its deadline, all but the few that ran before the deadline passed never
/// started, and the whole batch took a few deadlines, not one per call.
fn check(what: &str, replies: &[RawReply], probe: Duration, batch: Duration) {
    let never_started = replies.iter().filter(|r| r.message.contains(NEVER_STARTED)).count();
    println!(
        "{what}: {} calls of {DEADLINE_MS} ms: probe waited {probe:?}, batch took {batch:?}, {never_started} never \
         started",
        replies.len()
    );
    for reply in replies {
        assert_eq!(reply.code, Code::DeadlineExceeded, "{what}: {reply:?}");
    }
    // One call blocks the runtime for its deadline; the others queued behind it past theirs. On a loaded machine
    // this test's client sends the batch over a few milliseconds, and a call whose bytes arrive while the runtime
    // is blocked is stamped (by the connection's task, on that runtime) only when the block ends: it starts and
    // blocks in turn. Seen on a cold CI run: 3 blocks of 300 ms, 7 of 10 never started. Before deadlines counted
    // from arrival, none of them was refused unstarted.
    assert!(never_started * 3 >= replies.len() * 2, "{what}: only {never_started} of {} never started", replies.len());
    // Generous: before, the batch took one whole deadline per call.
    let deadline = Duration::from_millis(DEADLINE_MS);
    assert!(batch < deadline * replies.len() as u32 / 2, "{what}: the batch took {batch:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_calls_queued_on_a_current_thread_compute_do_not_each_wait_their_deadline() {
    let compute = binaries::start("offload-compute", &["--runtime", "current-thread"]);
    let body = endless(ExecMode::Inline, UpstreamWait::Unspecified);
    let (replies, probe, batch) = queue(&compute, "/offload.v1.Compute/SumOfSquares", body, 10).await;
    check("compute, current-thread, INLINE", &replies, probe, batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_waits_queued_on_a_current_thread_gateway_do_not_each_wait_their_deadline() {
    let compute = binaries::start("offload-compute", &[]);
    let gateway = binaries::start("offload-gateway", &["--compute", &compute.url(), "--runtime", "current-thread"]);
    // Ready first, as an orchestrator would wait: until both of the gateway's clients (the async one and the
    // synchronous one BLOCKING uses) have seen compute healthy, a call is refused UNAVAILABLE, not queued.
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let body = endless(ExecMode::Rayon, UpstreamWait::Blocking);
    let (replies, probe, batch) = queue(&gateway, "/offload.v1.Gateway/SumOfSquares", body, 20).await;
    check("gateway, current-thread, BLOCKING", &replies, probe, batch);
}

/// The `offload_requests_total` of `method`, whatever their mode and status.
fn requests(server: &ChildServer, method: &str) -> f64 {
    let scrape = scrape::scrape(server.metrics_addr.expect("--metrics-listen")).expect("scrape");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "offload_requests_total" && s.labels.get("method") == Some(method))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_expired_on_arrival_or_reset_by_their_client_never_start() {
    let compute =
        binaries::start("offload-compute", &["--runtime", "current-thread", "--metrics-listen", "127.0.0.1:0"]);
    let raw = RawConnection::connect(compute.addr).await.expect("connect");
    let small = frame(&FactorialRequest { n: 10, mode: ExecMode::Inline as i32, ..Default::default() }.encode_to_vec());
    for timeout in ["0m", "1n", "0n"] {
        let reply = raw.call("/offload.v1.Compute/Factorial", small.clone(), Some(timeout)).await.expect("answer");
        // tonic's own timer may answer CANCELLED first; either way no reply was computed.
        assert!(matches!(reply.code, Code::DeadlineExceeded | Code::Cancelled), "{timeout}: {reply:?}");
        assert!(reply.body.is_empty(), "{timeout}: served anyway");
    }

    // Block the runtime with one INLINE job, then send calls and reset them while they queue behind it.
    let blocker = {
        let raw = raw.clone();
        let body = endless(ExecMode::Inline, UpstreamWait::Unspecified);
        tokio::spawn(async move { raw.call("/offload.v1.Compute/SumOfSquares", body, Some("1S")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = requests(&compute, "Factorial");
    let impatient = RawConnection::connect(compute.addr).await.expect("connect");
    let heavy =
        frame(&FactorialRequest { n: 100_000, mode: ExecMode::Inline as i32, ..Default::default() }.encode_to_vec());
    for _ in 0..5 {
        impatient.call_and_reset("/offload.v1.Compute/Factorial", heavy.clone()).await.expect("sent and reset");
    }
    assert_eq!(blocker.await.expect("join").expect("answer").code, Code::DeadlineExceeded);
    // Streams of one connection are dispatched in order: once this call is answered, the reset ones were seen.
    let after = impatient.call("/offload.v1.Compute/Factorial", small, None).await.expect("answer");
    assert_eq!(after.code, Code::Ok);
    let counted = requests(&compute, "Factorial") - before;
    assert_eq!(counted, 1.0, "only the last call ran: the 5 reset ones never started");
}
