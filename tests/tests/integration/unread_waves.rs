//! Slow readers that keep coming back: connections that never read their ~1 MB replies (receive window 0) and send
//! a few new streams every half second, so that each slot `--send-timeout` frees is wanted again at once. An honest
//! caller on its own connection is still served within about one `--send-timeout` (admission is fair across
//! connections), and the server's memory stays within the bound `docs/reliability.md` states as a formula of the
//! flags.
//!
//! The attack lasts [`attack_secs`]: a few seconds in every run, `OFFLOAD_UNREAD_WAVES_SECS=60` for a minute.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use offload_proto::{service_names, v1::FactorialRequest};
use offload_testkit::{
    binaries,
    child::ChildServer,
    raw::{RawConnection, Unread, frame},
};
use offload_tests::{WarmedForLargeReplies, in_flight, wait_serving, warm_for_large_replies};
use prost::Message;
use tonic::Code;

/// ~1 MB replies (200 000! has 973 351 digits).
const N: u64 = 200_000;
const MAX_INFLIGHT: u64 = 4;
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Attacking connections, and the streams each opens every [`WAVE_EVERY`].
const ATTACKERS: usize = 4;
const WAVE: usize = 3;
const WAVE_EVERY: Duration = Duration::from_millis(500);
/// The servers' defaults these flags leave alone (`--max-concurrent-streams`, `--connection-window-bytes`) and
/// the reply chunk HTTP/2 is handed at a time (64 KiB).
const MAX_CONCURRENT_STREAMS: u64 = 100;
const CONNECTION_WINDOW: u64 = 1 << 20;
const CHUNK: u64 = 64 << 10;
/// Allocator arenas, thread stacks and the like grow a little under any load, unrelated to the replies (as in
/// `slow_readers`).
const SLACK: u64 = 16 << 20;
/// What an honest call may take: one `--send-timeout` (the longest an unread reply keeps its slot once it is
/// built), the job that reply came from, and a margin no loaded 2-core machine crosses by noise. Sent as the
/// call's `grpc-timeout`, so a call that is not served within it fails.
const HONEST_BOUND: Duration = Duration::from_secs(12);

/// Seconds the waves last: a few in every run, more with `OFFLOAD_UNREAD_WAVES_SECS`.
fn attack_secs() -> u64 {
    std::env::var("OFFLOAD_UNREAD_WAVES_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6)
}

/// `docs/reliability.md`'s bound for these flags: each slot holds a reply and, while it is built, the job's
/// working memory (about three replies in all); each connection its window of request bytes and a chunk per open
/// stream.
fn stated_bound(reply_bytes: u64) -> u64 {
    let connections = ATTACKERS as u64 + 1;
    MAX_INFLIGHT * 3 * reply_bytes + connections * (CONNECTION_WINDOW + MAX_CONCURRENT_STREAMS * CHUNK) + SLACK
}

/// What the attackers' streams were answered.
#[derive(Debug, Default)]
struct Tally {
    admitted: AtomicUsize,
    refused: AtomicUsize,
}

/// One attacking connection: [`WAVE`] new unread streams every [`WAVE_EVERY`] until `until`, every stream kept
/// open (never read) until the connection is dropped at the end.
async fn attack(server: std::net::SocketAddr, path: &'static str, until: Instant, tally: Arc<Tally>) {
    let connection = RawConnection::connect_never_reading(server).await.expect("connect");
    let request = frame(&FactorialRequest { n: N, ..Default::default() }.encode_to_vec());
    let mut open: Vec<tokio::task::JoinHandle<Option<Unread>>> = Vec::new();
    while Instant::now() < until {
        for _ in 0..WAVE {
            let (connection, request, tally) = (connection.clone(), request.clone(), Arc::clone(&tally));
            open.push(tokio::spawn(async move {
                // The headers of an admitted call come once its job is done; the connection may also be at
                // --max-concurrent-streams, in which case the call waits for a stream, as a client would.
                let call = connection.call_unread(path, request).await.ok()?;
                match call.code {
                    None => tally.admitted.fetch_add(1, Ordering::Relaxed),
                    Some(Code::ResourceExhausted) => tally.refused.fetch_add(1, Ordering::Relaxed),
                    Some(other) => panic!("{path}: unexpected {other:?}"),
                };
                Some(call)
            }));
        }
        tokio::time::sleep(WAVE_EVERY).await;
    }
    for call in open {
        call.abort();
    }
}

/// The attack on `server` at `path`, an honest caller beside it, and the memory it took.
async fn honest_caller_served_and_memory_bounded(server: &ChildServer, path: &'static str) {
    let WarmedForLargeReplies { honest, reply_bytes, .. } =
        warm_for_large_replies(server.addr, path, N, MAX_INFLIGHT).await;
    let before = server.memory().rss;

    let started = Instant::now();
    let until = started + Duration::from_secs(attack_secs());
    let tally = Arc::new(Tally::default());
    let attackers: Vec<_> =
        (0..ATTACKERS).map(|_| tokio::spawn(attack(server.addr, path, until, Arc::clone(&tally)))).collect();
    // The attack has begun once its replies hold every slot.
    while in_flight(server).await < MAX_INFLIGHT as f64 {
        assert!(started.elapsed() < Duration::from_secs(60), "the attackers never held every slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The honest caller: one small call after another, each with HONEST_BOUND as its deadline, for as long as the
    // waves last; the server's memory sampled between calls.
    let small = frame(&FactorialRequest { n: 1_000, ..Default::default() }.encode_to_vec());
    let timeout = format!("{}S", HONEST_BOUND.as_secs());
    let (mut served, mut slowest, mut peak) = (0, Duration::ZERO, before);
    // The growth every 10 s of the attack, to tell a plateau from a leak in a long run.
    let (mut trend, mut next_mark) = (Vec::new(), started + Duration::from_secs(10));
    while Instant::now() < until {
        let asked = Instant::now();
        let reply = honest.call(path, small.clone(), Some(&timeout)).await.expect("an honest call");
        let took = asked.elapsed();
        assert_eq!(
            reply.code,
            Code::Ok,
            "{path}: an honest call on its own connection was not served within {HONEST_BOUND:?} while {ATTACKERS} \
             connections left their replies unread ({:.1} s into the attack, after {took:?}): {}",
            started.elapsed().as_secs_f64(),
            reply.message
        );
        served += 1;
        slowest = slowest.max(took);
        let rss = server.memory().rss;
        peak = peak.max(rss);
        if Instant::now() >= next_mark {
            trend.push(format!(
                "{}s +{:.1}",
                (next_mark - started).as_secs(),
                rss.saturating_sub(before) as f64 / 1048576.0
            ));
            next_mark += Duration::from_secs(10);
        }
    }
    for attacker in attackers {
        attacker.await.expect("an attacker panicked");
    }
    peak = peak.max(server.memory().rss);
    let bound = stated_bound(reply_bytes);
    println!(
        "{path}: {}s of waves ({ATTACKERS} connections, {WAVE} unread {:.2} MB replies each every {WAVE_EVERY:?}): \
         {} admitted, {} refused; {served} honest calls served, slowest {slowest:?} (--send-timeout {SEND_TIMEOUT:?}); \
         RSS {:.1} -> peak {:.1} MiB (+{:.1}, bound +{:.1}; every 10 s: {})",
        attack_secs(),
        reply_bytes as f64 / 1e6,
        tally.admitted.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        peak.saturating_sub(before) as f64 / 1048576.0,
        bound as f64 / 1048576.0,
        trend.join(", ")
    );
    assert!(served > 0, "no honest call was made");
    assert!(peak.saturating_sub(before) <= bound, "{path}: RSS grew by {} bytes, over {bound}", peak - before);
}

fn limits() -> Vec<String> {
    let send_timeout = format!("{}s", SEND_TIMEOUT.as_secs());
    ["--max-inflight", &MAX_INFLIGHT.to_string(), "--send-timeout", &send_timeout, "--metrics-listen", "127.0.0.1:0"]
        .map(str::to_owned)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_serves_an_honest_caller_while_slow_readers_send_waves() {
    let limits = limits();
    let compute = binaries::start("offload-compute", &limits.iter().map(String::as_str).collect::<Vec<_>>());
    honest_caller_served_and_memory_bounded(&compute, "/offload.v1.Compute/Factorial").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_an_honest_caller_while_slow_readers_send_waves() {
    // Compute behind it with room for the gateway's calls: the attack is on the gateway's own slots.
    let compute = binaries::start("offload-compute", &[]);
    let compute_url = compute.url();
    let mut args = vec!["--compute".to_owned(), compute_url];
    args.extend(limits());
    let gateway = binaries::start("offload-gateway", &args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    honest_caller_served_and_memory_bounded(&gateway, "/offload.v1.Gateway/Factorial").await;
}
