//! Clients that ask for large replies and never read them (an HTTP/2 receive window of 0): the memory the real
//! binaries hold stays under the bound the README states as a formula of their flags, and `--send-timeout` gives
//! the admission slots back so honest clients are served again.

use std::time::{Duration, Instant};

use offload_proto::service_names;
use offload_testkit::{binaries, child::ChildServer, raw::RawConnection};
use offload_tests::{WarmedForLargeReplies, in_flight, wait_serving, warm_for_large_replies};
use tonic::Code;

/// ~1 MB replies (200 000! has 973 351 digits), the figure.
const N: u64 = 200_000;
const STREAMS: usize = 150;
/// Three connections of 50 streams: under the default 100 streams per connection.
const CONNECTIONS: usize = 3;
const MAX_INFLIGHT: u64 = 8;
/// The servers' default HTTP/2 connection window (`--connection-window-bytes`) and reply chunk (64 KiB).
const CONNECTION_WINDOW: u64 = 1 << 20;
const CHUNK: u64 = 64 << 10;
/// Allocator arenas, thread stacks and the like grow a little under any load, unrelated to the replies.
const SLACK: u64 = 16 << 20;

/// The README's worst case for these flags ("Worst case under hostile clients"): each admitted call holds its
/// reply (and, while it is built, the kernel's working memory and the digits: about three replies), each connection
/// its window of request bytes and a chunk per stream.
fn stated_bound(reply_bytes: u64) -> u64 {
    let streams_per_connection = (STREAMS / CONNECTIONS) as u64;
    MAX_INFLIGHT * 3 * reply_bytes + CONNECTIONS as u64 * (CONNECTION_WINDOW + streams_per_connection * CHUNK) + SLACK
}

/// Opens [`STREAMS`] calls of `request` to `path` that never read their reply; returns the ones admitted, still
/// open, how many were refused, and the most slots seen taken (after each connection's streams). Admission is fair
/// across connections, so a later connection's calls may wait for the slots `--send-timeout` frees: more than
/// `--max-inflight` are admitted over the run, never more at once.
async fn open_unread(
    server: &ChildServer,
    path: &str,
    request: &[u8],
) -> (Vec<offload_testkit::raw::Unread>, usize, u64) {
    let (mut unread, mut refused, mut most_in_flight) = (Vec::new(), 0, 0);
    for _ in 0..CONNECTIONS {
        let connection = RawConnection::connect_never_reading(server.addr).await.expect("connect");
        for _ in 0..STREAMS / CONNECTIONS {
            let call = connection.call_unread(path, request.to_vec()).await.expect("an answer's headers");
            match call.code {
                None => unread.push(call),
                Some(Code::ResourceExhausted) => refused += 1,
                Some(other) => panic!("{path}: unexpected {other:?}"),
            }
        }
        let held = in_flight(server).await as u64;
        assert!(held <= MAX_INFLIGHT, "{held} replies held past --max-inflight");
        most_in_flight = most_in_flight.max(held);
    }
    (unread, refused, most_in_flight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_nobody_reads_hold_memory_only_up_to_the_stated_bound() {
    let inflight = MAX_INFLIGHT.to_string();
    let limits = ["--max-inflight", &inflight, "--metrics-listen", "127.0.0.1:0", "--send-timeout", "10s"];
    let compute = binaries::start("offload-compute", &limits);
    // The gateway's half has a compute of its own, so the two halves run side by side (each mostly waits out
    // `--send-timeout`) without taking each other's slots or memory.
    let upstream = binaries::start("offload-compute", &limits);
    let upstream_url = upstream.url();
    let mut gateway_args = vec!["--compute", &upstream_url];
    gateway_args.extend_from_slice(&limits);
    let gateway = binaries::start("offload-gateway", &gateway_args);
    // Until the gateway has seen compute healthy it refuses calls UNAVAILABLE: wait as an orchestrator would.
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    tokio::join!(
        unread_replies_stay_bounded(&compute, "/offload.v1.Compute/Factorial"),
        unread_replies_stay_bounded(&gateway, "/offload.v1.Gateway/Factorial"),
    );
}

/// One server's half: [`STREAMS`] unread replies hold memory within the bound, and `--send-timeout` frees their
/// slots for an honest caller.
async fn unread_replies_stay_bounded(server: &ChildServer, path: &str) {
    let WarmedForLargeReplies { honest, request, reply_bytes } =
        warm_for_large_replies(server.addr, path, N, MAX_INFLIGHT).await;
    let before = server.memory().rss;
    let (unread, refused, most_in_flight) = open_unread(server, path, &request).await;
    let during = server.memory().rss;
    let bound = stated_bound(reply_bytes);
    println!(
        "{path}: {STREAMS} unread replies of {:.2} MB: {} admitted, at most {most_in_flight} at once, {refused} \
         refused; RSS {:.1} -> {:.1} MiB (+{:.1}, bound +{:.1})",
        reply_bytes as f64 / 1e6,
        unread.len(),
        before as f64 / 1048576.0,
        during as f64 / 1048576.0,
        during.saturating_sub(before) as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    assert_eq!(unread.len() + refused, STREAMS);
    assert!(most_in_flight > 0, "unsent replies hold slots");
    assert!(during.saturating_sub(before) <= bound, "{path}: RSS grew by {} bytes, over {bound}", during - before);

    // --send-timeout: the unread replies are dropped with their slots while their streams stay open, and
    // honest calls are served again. Bounded wait: the timeout plus a generous margin.
    let waited = Instant::now();
    while in_flight(server).await > 0.0 {
        assert!(waited.elapsed() < Duration::from_secs(60), "slots not freed after --send-timeout");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reply = honest.call(path, request, Some("60S")).await.expect("an honest call");
    assert_eq!(reply.code, Code::Ok, "served again while {} unread streams stay open", unread.len());
    drop(unread);
}
