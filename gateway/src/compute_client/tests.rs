//! The compute client against a raw HTTP/2 peer playing compute: what a gRPC client must do with the replies and
//! connection events a real server (or the network) produces.

use std::{
    future::Future,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use offload_proto::v1::{Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::{
    Code, Request, Status,
    codec::CompressionEncoding,
    codegen::http::{self, HeaderMap, HeaderValue},
};
use tonic_types::{ErrorDetails, StatusExt};

use super::*;
use crate::{
    connection::{ConnectSettings, Connection},
    upstream_status,
};

const PATH: &str = "/offload.v1.Compute/Factorial";
const LIMIT: usize = 64 * 1024;
/// How long any one call may take before the test calls it hung: far above a loopback call.
const HUNG: Duration = Duration::from_secs(10);

/// What the peer's connection is asked to do besides answering streams.
enum GoAway {
    /// GOAWAY naming every stream open so far: they finish, no new one is accepted (a draining server).
    Graceful,
    /// GOAWAY and the connection closed at once: streams in flight fail.
    Abrupt,
}

/// One call as the peer received it: the request's head and body, the stream to answer on, and a handle to its
/// connection.
struct Call {
    head: http::request::Parts,
    body: Bytes,
    respond: h2::server::SendResponse<Bytes>,
    goaway: mpsc::UnboundedSender<GoAway>,
}

/// An HTTP/2 server on `127.0.0.1:0` answering every stream with `answer`, counting TCP connections.
struct Peer {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn peer<F, Fut>(answer: F) -> Peer
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicU64::new(0));
    let (counted, answer) = (Arc::clone(&connections), Arc::new(answer));
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, Arc::clone(&answer)));
        }
    });
    Peer { addr, connections, server }
}

async fn serve<F, Fut>(tcp: tokio::net::TcpStream, answer: Arc<F>)
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(mut connection) = h2::server::handshake(tcp).await else { return };
    let (goaway, mut asked) = mpsc::unbounded_channel();
    let mut streams = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = connection.accept() => {
                let Some(Ok((request, respond))) = accepted else { break };
                let (head, mut recv) = request.into_parts();
                let (answer, goaway) = (Arc::clone(&answer), goaway.clone());
                streams.spawn(async move {
                    let mut body = BytesMut::new();
                    while let Some(Ok(data)) = recv.data().await {
                        let _ = recv.flow_control().release_capacity(data.len());
                        body.extend_from_slice(&data);
                    }
                    answer(Call { head, body: body.freeze(), respond, goaway }).await;
                });
            }
            Some(how) = asked.recv() => match how {
                GoAway::Graceful => connection.graceful_shutdown(),
                GoAway::Abrupt => {
                    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                    // The GOAWAY flushed (within a bound), the connection is dropped with its streams.
                    let closed = std::future::poll_fn(|cx| connection.poll_closed(cx));
                    let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
                    return;
                }
            },
        }
    }
    // After a graceful GOAWAY `accept` ends only once every stream is answered; the set aborts any left.
    drop(streams);
}

/// The client under test, and the connection under it (for calls at paths of the test's own).
#[derive(Clone)]
struct Client {
    compute: ComputeClient,
    connection: Connection,
    gzip: bool,
}

/// A client calling the peer, accepting gzip replies when `gzip`.
fn client(peer: &Peer, gzip: bool) -> Client {
    let settings = ConnectSettings {
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(60),
        tls: None,
    };
    let connection = Connection::lazy(&format!("http://{}", peer.addr), settings).expect("url");
    let compute = on(connection.clone(), LIMIT, gzip.then_some(CompressionEncoding::Gzip));
    Client { compute, connection, gzip }
}

impl Client {
    /// `Factorial(n)`, as the gateway makes it; a call still unanswered after [`HUNG`] fails the test.
    async fn call(&self, n: u64) -> Result<FactorialResponse, Status> {
        let mut request = Request::new(FactorialRequest { n, ..Default::default() });
        request.set_timeout(Duration::from_secs(3));
        let mut compute = self.compute.clone();
        let reply = async move { compute.factorial(request).await };
        tokio::time::timeout(HUNG, reply).await.expect("the call hung").map(tonic::Response::into_inner)
    }

    /// `Factorial` at its path with `?query` added (the peer answers by it): what the generated client's method
    /// does, at that path, with the same settings.
    async fn call_at(&self, query: &str) -> Result<FactorialResponse, Status> {
        let path = http::uri::PathAndQuery::try_from(format!("{PATH}?{query}")).expect("path");
        let mut request = Request::new(FactorialRequest::default());
        request.set_timeout(Duration::from_secs(3));
        let mut grpc = tonic::client::Grpc::new(self.connection.clone())
            .max_decoding_message_size(LIMIT)
            .max_encoding_message_size(LIMIT);
        if self.gzip {
            grpc = grpc.accept_compressed(CompressionEncoding::Gzip);
        }
        let reply = async {
            grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
            grpc.unary(request, path, tonic_prost::ProstCodec::default()).await
        };
        let reply = tokio::time::timeout(HUNG, reply).await.unwrap_or_else(|_| panic!("{query}: hung"));
        reply.map(tonic::Response::into_inner)
    }
}

fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut framed = BytesMut::new();
    framed.put_u8(flag);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(message);
    framed.freeze()
}

fn reply_of(value: &str) -> FactorialResponse {
    let execution = Execution { served_by: "replica-a".into(), compute_us: 7, ..Default::default() };
    FactorialResponse { value: value.into(), digits: value.len() as u64, execution: Some(execution) }
}

fn grpc_headers(encoding: Option<&str>) -> http::Response<()> {
    let mut builder = http::Response::builder().header("content-type", "application/grpc");
    if let Some(encoding) = encoding {
        builder = builder.header("grpc-encoding", encoding);
    }
    builder.body(()).expect("response")
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

/// Answers with `body` as the reply's DATA (as given: no framing added), then status OK.
async fn reply_raw(mut respond: h2::server::SendResponse<Bytes>, body: Bytes) {
    let Ok(mut stream) = respond.send_response(grpc_headers(None), false) else { return };
    let _ = stream.send_data(body, false);
    let _ = stream.send_trailers(ok_trailers());
}

#[tokio::test]
async fn a_call_sends_a_grpc_request_and_reads_a_reply_split_over_frames() {
    let peer = peer(|call: Call| async move {
        let Call { head, body, mut respond, .. } = call;
        assert_eq!(head.uri.path(), PATH);
        assert_eq!(head.method, http::Method::POST);
        for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
            assert_eq!(head.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
        }
        assert!(head.headers.contains_key("grpc-timeout"), "the request's metadata is sent");
        assert!(head.headers.get("user-agent").is_some_and(|v| v.as_bytes().starts_with(b"offload-gateway/")));
        let request = FactorialRequest::decode(&body[5..]).expect("one framed message");
        assert_eq!(body.len(), 5 + request.encoded_len());
        let reply = framed(0, &reply_of(&request.n.to_string().repeat(1000)).encode_to_vec());
        let mut stream = respond.send_response(grpc_headers(None), false).expect("headers");
        // Three DATA frames, the message prefix cut in two.
        stream.send_data(reply.slice(..3), false).expect("data");
        stream.send_data(reply.slice(3..100), false).expect("data");
        stream.send_data(reply.slice(100..), false).expect("data");
        stream.send_trailers(ok_trailers()).expect("trailers");
    })
    .await;
    let reply = client(&peer, true).call(7).await.expect("a reply");
    assert_eq!(reply, reply_of(&"7".repeat(1000)));
}

#[tokio::test]
async fn a_gzip_reply_is_inflated_when_accepted_and_refused_otherwise() {
    let peer = peer(|call: Call| async move {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&reply_of("5040").encode_to_vec()).expect("gzip");
        let mut respond = call.respond;
        let mut stream = respond.send_response(grpc_headers(Some("gzip")), false).expect("headers");
        let _ = stream.send_data(framed(1, &gzip.finish().expect("gzip")), false);
        let _ = stream.send_trailers(ok_trailers());
    })
    .await;
    assert_eq!(client(&peer, true).call(1).await.expect("inflated"), reply_of("5040"));
    let error = client(&peer, false).call(1).await.expect_err("not asked for");
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
}

/// A reply compressed in a way the gateway did not offer is refused as soon as its headers say so: its body
/// (here: never sent) is not waited for.
#[tokio::test]
async fn an_unsupported_grpc_encoding_is_unimplemented_at_the_headers() {
    let peer = peer(|call: Call| async move {
        let encoding = call.head.uri.query().expect("an encoding").to_owned();
        let mut respond = call.respond;
        // Nothing after the headers: the stream stays open until the client resets it.
        if let Ok(mut stream) = respond.send_response(grpc_headers(Some(&encoding)), false) {
            let _ = std::future::poll_fn(|cx| stream.poll_reset(cx)).await;
        }
    })
    .await;
    // Brotli, never offered; gzip, when compression is off (--compute-compression identity).
    for (encoding, gzip) in [("br", true), ("gzip", false)] {
        let error = client(&peer, gzip).call_at(encoding).await.expect_err("not offered");
        assert_eq!(error.code(), Code::Unimplemented, "{encoding}: {error:?}");
        assert!(error.message().contains(encoding), "{error:?}");
        let classified = upstream_status::classify(error, "replica-a", Duration::ZERO);
        assert!(!upstream_status::retryable(&classified), "compute's answer, not a transport failure");
    }
}

#[tokio::test]
async fn a_reply_above_the_limit_is_refused() {
    let peer = peer(|call: Call| async move {
        let mut respond = call.respond;
        let Ok(mut stream) = respond.send_response(grpc_headers(None), false) else { return };
        let big = framed(0, &reply_of(&"9".repeat(LIMIT)).encode_to_vec());
        // Sent in pieces as the window allows; the client may stop reading past the limit.
        stream.reserve_capacity(big.len());
        let _ = stream.send_data(big, false);
        let _ = stream.send_trailers(ok_trailers());
    })
    .await;
    let error = client(&peer, true).call(1).await.expect_err("too large");
    assert_eq!(error.code(), Code::OutOfRange, "{error:?}");
    assert!(error.message().contains(&LIMIT.to_string()), "{error:?}");
}

/// Replies whose gRPC framing is broken: each is an INTERNAL error (compute's fault, not retried), never a
/// reply, a panic or a hang.
#[tokio::test]
async fn malformed_or_length_mismatched_frames_are_internal_errors() {
    let message = reply_of("120").encode_to_vec();
    let whole = framed(0, &message);
    let cases: Vec<(&'static str, Bytes)> = vec![
        // The prefix announces more than the body carries.
        ("short", whole.slice(..whole.len() - 3)),
        // The prefix announces nothing, and a message follows anyway.
        ("long", [framed(0, &[]), Bytes::from(message.clone())].concat().into()),
        // Not even a whole prefix.
        ("partial-prefix", whole.slice(..3)),
        // A compression flag gRPC does not define.
        ("flag", framed(7, &message)),
        // A flagged-compressed message when no compression was named.
        ("compressed-unnamed", framed(1, &message)),
        // Not protobuf.
        ("garbage", framed(0, &[0xff; 16])),
        // No message at all, status OK.
        ("empty", Bytes::new()),
    ];
    let bodies: std::collections::HashMap<_, _> = cases.iter().cloned().collect();
    let peer = peer(move |call: Call| {
        let body = bodies[call.head.uri.query().expect("a case")].clone();
        reply_raw(call.respond, body)
    })
    .await;
    let client = client(&peer, true);
    for (case, _) in cases {
        let error = client.call_at(case).await.expect_err(case);
        assert_eq!(error.code(), Code::Internal, "{case}: {error:?}");
        let classified = upstream_status::classify(error, "replica-a", Duration::ZERO);
        assert!(!upstream_status::retryable(&classified), "{case}: not a transport failure");
    }
}

/// Compute's error details (`grpc-status-details-bin`) reach the gateway's caller byte for byte, from a
/// trailers-only reply and from trailers after the headers.
#[tokio::test]
async fn status_details_pass_through_to_the_caller() {
    let mut details = ErrorDetails::with_bad_request_violation("n", "n = 7 is above --max-factorial-n=5");
    details.set_retry_info(Some(Duration::from_millis(20)));
    let answer = Status::with_error_details(Code::InvalidArgument, "n = 7 is above 5", details);
    let sent = answer.clone();
    let peer = peer(move |call: Call| {
        let status = sent.clone();
        async move {
            let mut respond = call.respond;
            // The status as tonic's server sends it: grpc-status, grpc-message, grpc-status-details-bin.
            let mut headers = status.into_http::<()>().into_parts().0.headers;
            headers.remove("content-type");
            if call.head.uri.query() == Some("trailers-only") {
                let mut reply = grpc_headers(None);
                reply.headers_mut().extend(headers.drain());
                let _ = respond.send_response(reply, true);
            } else {
                let Ok(mut stream) = respond.send_response(grpc_headers(None), false) else { return };
                let _ = stream.send_trailers(headers);
            }
        }
    })
    .await;
    let client = client(&peer, true);
    for trailers_only in [false, true] {
        let status = client
            .call_at(if trailers_only { "trailers-only" } else { "trailers" })
            .await
            .expect_err("compute's error");
        let passed = Status::from(upstream_status::classify(status, "replica-a", Duration::ZERO));
        assert_eq!((passed.code(), passed.message()), (answer.code(), answer.message()));
        assert_eq!(passed.details(), answer.details(), "trailers-only {trailers_only}");
        let violations = passed.get_details_bad_request().map(|b| b.field_violations.len());
        assert_eq!(violations, Some(1));
    }
}

/// A caller that goes away (its call future dropped: the gateway's own client cancelled, or its deadline
/// passed) resets its stream to compute with CANCEL, so compute can stop the job; the connection stays.
#[tokio::test]
async fn a_caller_going_away_resets_its_stream_upstream() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<oneshot::Receiver<h2::Reason>>();
    let peer = peer(move |call: Call| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut respond = call.respond;
            if call.head.uri.path().ends_with("/SumOfSquares") {
                return reply_raw(respond, framed(0, &[])).await;
            }
            let (reset_tx, reset_rx) = oneshot::channel();
            let _ = seen_tx.send(reset_rx);
            // Never answered: wait for the client to reset the stream.
            if let Ok(reason) = std::future::poll_fn(|cx| respond.poll_reset(cx)).await {
                let _ = reset_tx.send(reason);
            }
        }
    })
    .await;
    let client = client(&peer, true);
    let caller = tokio::spawn({
        let client = client.clone();
        async move { client.call(1).await }
    });
    let reset = tokio::time::timeout(HUNG, seen.recv()).await.expect("the call reached compute").expect("seen");
    caller.abort();
    let reason = tokio::time::timeout(HUNG, reset).await.expect("no RST_STREAM from the client");
    assert_eq!(reason.expect("reset seen"), h2::Reason::CANCEL);
    // The same connection still serves calls.
    let mut request = Request::new(SumOfSquaresRequest::default());
    request.set_timeout(Duration::from_secs(3));
    let mut compute = client.compute.clone();
    let next = async move { compute.sum_of_squares(request).await };
    tokio::time::timeout(HUNG, next).await.expect("hung").expect("the next call");
    assert_eq!(peer.connections.load(Ordering::SeqCst), 1, "one connection for both calls");
}

/// A draining replica's GOAWAY while a call is in flight: the call still gets its reply, and the next call
/// opens a new connection.
#[tokio::test]
async fn a_graceful_goaway_lets_the_call_in_flight_finish() {
    let peer = peer(|call: Call| async move {
        let _ = call.goaway.send(GoAway::Graceful);
        // Answered a moment after the GOAWAY is queued, so that it is usually on the wire first; that the client
        // got it is checked by the next call's new connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply_raw(call.respond, framed(0, &reply_of("1").encode_to_vec())).await;
    })
    .await;
    let client = client(&peer, true);
    assert_eq!(client.call(1).await.expect("the call in flight finishes"), reply_of("1"));
    assert_eq!(client.call(1).await.expect("the next call"), reply_of("1"));
    assert_eq!(peer.connections.load(Ordering::SeqCst), 2, "the next call on a new connection");
}

/// A GOAWAY that closes the connection under a call in flight: a transport failure, retried on another
/// replica; the next call connects again.
#[tokio::test]
async fn an_abrupt_goaway_fails_the_call_in_flight_as_retryable() {
    let peer = peer(|call: Call| async move {
        if call.head.uri.query().is_some() {
            let _ = call.goaway.send(GoAway::Abrupt);
            // Never answered: the connection goes first.
            let _held = call.respond;
            return std::future::pending::<()>().await;
        }
        reply_raw(call.respond, framed(0, &reply_of("1").encode_to_vec())).await;
    })
    .await;
    let client = client(&peer, true);
    let status = client.call_at("goaway").await.expect_err("the connection closed under the call");
    let classified = upstream_status::classify(status, "replica-a", Duration::ZERO);
    assert!(upstream_status::retryable(&classified), "{classified:?}");
    assert_eq!(client.call(1).await.expect("the next call"), reply_of("1"));
    assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
}

/// Statuses that do not come as compute's trailers: an HTTP error (a proxy's 503), a reply that ends without a
/// status, a stream refused (a draining replica's GOAWAY race): each an error, the refusal retried elsewhere.
#[tokio::test]
async fn statuses_from_http_a_missing_status_or_a_refused_stream_are_errors() {
    let peer = peer(|call: Call| async move {
        let mut respond = call.respond;
        match call.head.uri.query() {
            Some("http") => {
                let response = http::Response::builder().status(503).body(()).expect("response");
                let _ = respond.send_response(response, true);
            }
            Some("no-status") => {
                let Ok(mut stream) = respond.send_response(grpc_headers(None), false) else { return };
                let _ = stream.send_data(framed(0, &reply_of("1").encode_to_vec()), true);
            }
            _ => respond.send_reset(h2::Reason::REFUSED_STREAM),
        }
    })
    .await;
    let client = client(&peer, true);
    let http = client.call_at("http").await.expect_err("a 503");
    assert_eq!(http.code(), Code::Unavailable, "{http:?}");
    let no_status = client.call_at("no-status").await.expect_err("no grpc-status");
    // UNKNOWN, as grpc-go answers a stream that ended without its status (possibly cut short by a proxy).
    assert_eq!(no_status.code(), Code::Unknown, "{no_status:?}");
    let refused = client.call_at("reset").await.expect_err("refused");
    let classified = upstream_status::classify(refused, "replica-a", Duration::ZERO);
    assert!(upstream_status::retryable(&classified), "a refused stream is retried elsewhere: {classified:?}");
}
