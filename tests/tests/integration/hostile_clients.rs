//! Clients no gRPC library would be: streams opened and never finished, bodies that are not protobuf, frames whose
//! length lies, messages over the size limit, and random bytes (a bounded fuzz run with an oracle). Each gets a
//! status or is dropped, and the servers serve everyone else throughout.

use std::time::Duration;

use offload_proto::v1::{ExecMode, FactorialRequest, FactorialResponse, SumOfSquaresRequest};
use offload_testkit::raw::{RawConnection, frame};
use offload_tests::{compute, compute_client, gateway};
use proptest::{prelude::*, test_runner::TestRunner};
use prost::Message;
use tonic::Code;

const FACTORIAL: &str = "/offload.v1.Compute/Factorial";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_streams_do_not_lock_out_other_clients() {
    // Far more unfinished streams than --max-inflight: if a stream that has not sent its request yet held an
    // admission slot, every honest call below would be refused with RESOURCE_EXHAUSTED.
    let server = compute(&["--max-inflight", "8"]);
    let hostile = RawConnection::connect(server.addr).await.expect("connect");
    let mut open = Vec::new();
    for _ in 0..64 {
        // Half a frame header: the server can never decode a request from it.
        open.push(hostile.open_unfinished(FACTORIAL, &[0, 0]).await.expect("stream opened"));
    }
    // HTTP/2 frames of one connection are read in order: once this call on the same connection is answered, the
    // server has seen (and dispatched) every stream opened before it.
    let health = hostile.call("/grpc.health.v1.Health/Check", frame(&[]), Some("5S")).await.expect("health");
    assert_eq!(health.code, Code::Ok);
    let mut client = compute_client(&server).await;
    for n in 0..20 {
        let request = FactorialRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() };
        client.factorial(request).await.expect("an honest call is served while 64 streams hang");
    }
    drop(open);
    drop(hostile);
    client.factorial(FactorialRequest { n: 5, ..Default::default() }).await.expect("still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_a_status_and_the_server_keeps_serving() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    for (server, path) in [(&compute_server, FACTORIAL), (&gateway_server, "/offload.v1.Gateway/Factorial")] {
        let raw = RawConnection::connect(server.addr).await.expect("connect");
        let valid = FactorialRequest { n: 10, ..Default::default() }.encode_to_vec();
        let mut compressed = frame(&valid);
        compressed[0] = 1; // "compressed", with no grpc-encoding announced
        let mut lying = frame(&valid);
        lying[1..5].copy_from_slice(&1000u32.to_be_bytes()); // says 1000 bytes, carries 2
        let cases: [(&str, Vec<u8>, &[Code]); 7] = [
            // Not protobuf at all (field 0 / truncated varint): the request cannot be decoded.
            ("garbage", frame(&[0xff; 32]), &[Code::Internal]),
            ("truncated varint", frame(&[0x08, 0xff]), &[Code::Internal]),
            ("compressed flag without encoding", compressed, &[Code::Internal, Code::Unimplemented]),
            ("frame longer than its body", lying, &[Code::Internal]),
            ("half a frame header", vec![0, 0], &[Code::Internal]),
            // Over the 4 KiB request limit: refused before it is buffered.
            ("oversized", frame(&vec![0x0a; 64 * 1024]), &[Code::OutOfRange, Code::ResourceExhausted]),
            // An empty message is a valid request: n = 0, mode unspecified.
            ("empty message", frame(&[]), &[Code::Ok]),
        ];
        for (what, body, expected) in cases {
            let reply = raw.call(path, body, Some("5S")).await.unwrap_or_else(|e| panic!("{path} {what}: {e}"));
            assert!(expected.contains(&reply.code), "{path} {what}: got {:?} {:?}", reply.code, reply.message);
        }
        // An empty message really answered 0! = 1.
        let reply = raw.call(path, frame(&[]), None).await.expect("empty");
        let answer = FactorialResponse::decode(&reply.body[5..]).expect("a reply message");
        assert_eq!(answer.value, "1");
    }
    let mut client = compute_client(&compute_server).await;
    client.factorial(FactorialRequest { n: 20, ..Default::default() }).await.expect("still serving");
}

/// Random request bodies against the real handler, with an oracle: whatever decodes as a small valid request must
/// be answered exactly as the same request sent properly; anything else gets a definite status (never `UNKNOWN`,
/// never a dropped connection), and the server stays up. Bounded: 256 cases, each with a 500 ms deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_request_bytes_never_crash_or_confuse_the_server() {
    let server = compute(&["--max-factorial-n", "5000"]);
    let raw = RawConnection::connect(server.addr).await.expect("connect");
    let mut client = compute_client(&server).await;
    let handle = tokio::runtime::Handle::current();
    let config = proptest::test_runner::Config { cases: 256, failure_persistence: None, ..Default::default() };
    let mut runner = TestRunner::new(config);
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // Mostly well-formed: valid field tags with random values, so the oracle gets exercised.
        (any::<u64>(), any::<i32>(), 0u64..3000).prop_map(|(n, mode, small)| {
            let n = if n % 2 == 0 { small } else { n };
            FactorialRequest { n, mode: mode.rem_euclid(9), ..Default::default() }.encode_to_vec()
        }),
    ];
    let result = tokio::task::block_in_place(|| {
        runner.run(&bodies, |body| {
            let reply = handle.block_on(raw.call(FACTORIAL, frame(&body), Some("500m"))).expect("an answer");
            prop_assert_ne!(reply.code, Code::Unknown, "{:?}", reply.message);
            if let Ok(request) = FactorialRequest::decode(body.as_slice()) {
                let proper = handle.block_on(async {
                    let mut proper = tonic::Request::new(request);
                    proper.set_timeout(Duration::from_millis(500));
                    client.clone().factorial(proper).await
                });
                match proper {
                    Ok(expected) => {
                        prop_assert_eq!(reply.code, Code::Ok);
                        let answer = FactorialResponse::decode(&reply.body[5..]).expect("reply");
                        prop_assert_eq!(answer.value, expected.into_inner().value);
                    }
                    Err(status) if status.code() == Code::InvalidArgument => {
                        prop_assert_eq!(reply.code, Code::InvalidArgument, "{:?}", reply.message)
                    }
                    Err(_) => {} // a deadline or a refusal: timing-dependent, either answer is fine
                }
            } else {
                prop_assert_eq!(reply.code, Code::Internal, "undecodable bodies are INTERNAL: {:?}", reply.message);
            }
            Ok(())
        })
    });
    result.expect("fuzz run");
    let reply = client.sum_of_squares(SumOfSquaresRequest { n: 100, ..Default::default() }).await.expect("alive");
    assert_eq!(reply.into_inner().value, "328350");
}
