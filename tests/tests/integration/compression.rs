//! gzip as clients use it: both servers take gzip-compressed requests, and reply with gzip exactly when the client
//! accepts it (its `grpc-accept-encoding`); the gateway's hop to compute works compressed
//! (`--compute-compression gzip`) and not. (Python's grpcio checks the same from outside, in `python_client`.)

use offload_proto::{service_names, v1::FactorialRequest};
use offload_tests::{compute, compute_client, gateway, gateway_client, wait_serving};
use tonic::{codec::CompressionEncoding, metadata::MetadataMap};

/// 2000! has 5736 digits: big enough that a reply's compression is visible, small enough to be instant.
const N: u64 = 2000;
const DIGITS: u64 = 5736;

/// The encoding of a reply, from its headers (`None`: uncompressed).
fn encoding(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("grpc-encoding").and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_gzipped_exactly_for_clients_that_accept_it() {
    let compute_server = compute(&[]);
    let hops = [
        gateway(&[&compute_server], &["--compute-compression", "gzip"]),
        gateway(&[&compute_server], &["--compute-compression", "identity"]),
    ];
    for hop in &hops {
        wait_serving(&hop.url(), service_names::GATEWAY).await;
    }
    let request = FactorialRequest { n: N, ..Default::default() };

    let plain = compute_client(&compute_server).await;
    let reply = plain.clone().factorial(request).await.expect("uncompressed call");
    assert_eq!(encoding(reply.metadata()), None, "a client that accepts no compression gets none");
    let expected = reply.into_inner().value;
    assert_eq!(expected.len() as u64, DIGITS);

    let gzip = plain.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
    let reply = gzip.clone().factorial(request).await.expect("gzip call to compute");
    assert_eq!(encoding(reply.metadata()), Some("gzip"), "compute");
    assert_eq!(reply.into_inner().value, expected);

    for hop in &hops {
        let client = gateway_client(hop).await;
        let reply = client.clone().factorial(request).await.expect("uncompressed call to the gateway");
        assert_eq!(encoding(reply.metadata()), None, "{}", hop.url());
        assert_eq!(reply.into_inner().value, expected, "{}", hop.url());
        let mut gzip = client.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
        let reply = gzip.factorial(request).await.expect("gzip call to the gateway");
        assert_eq!(encoding(reply.metadata()), Some("gzip"), "{}", hop.url());
        assert_eq!(reply.into_inner().value, expected, "{}", hop.url());
    }
}
