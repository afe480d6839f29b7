//! The proxy in front of an echo server: every fault does to the bytes what its table says. Times are only ever
//! checked from below (a delay the proxy must have added), never against a ceiling.

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::{Instant, timeout},
};

use super::{Fault, FaultProxy};

/// How long "nothing arrives" is watched for: long enough that a forwarded echo on loopback would have come.
const SILENCE: Duration = Duration::from_millis(300);

/// An echo server on `127.0.0.1:0`, running until the test's runtime ends.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.expect("write");
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).await.expect("read");
    reply
}

async fn proxied() -> (FaultProxy, TcpStream) {
    let proxy = FaultProxy::start(echo().await).await.expect("proxy");
    let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    (proxy, stream)
}

#[tokio::test]
async fn pass_carries_both_ways_and_counts() {
    let (proxy, mut stream) = proxied().await;
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.bytes(), (5, 5));
    // The end of the stream is passed on: the echo server closes, and so does the proxy.
    stream.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("orderly end");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let (proxy, mut stream) = proxied().await;
    let delay = Duration::from_millis(100);
    proxy.set(Fault::Latency(delay));
    let started = Instant::now();
    assert_eq!(round_trip(&mut stream, b"slow").await, b"slow");
    assert!(started.elapsed() >= 2 * delay, "there and back, each {delay:?} late: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_blackhole_accepts_and_never_answers_then_heals() {
    let (proxy, mut established) = proxied().await;
    assert_eq!(round_trip(&mut established, b"before").await, b"before");
    proxy.set(Fault::Blackhole);

    // A new connection is accepted, yet nothing comes back.
    let mut fresh = TcpStream::connect(proxy.addr()).await.expect("a blackhole still accepts");
    fresh.write_all(b"anyone?").await.expect("write");
    let mut buf = [0; 16];
    assert!(timeout(SILENCE, fresh.read(&mut buf)).await.is_err(), "no answer, no reset, no end");
    // An established one falls silent, without being reset or closed.
    established.write_all(b"during").await.expect("write");
    assert!(timeout(SILENCE, established.read(&mut buf)).await.is_err(), "no answer, no reset, no end");

    // Healed, both get what was held.
    proxy.set(Fault::Pass);
    let mut reply = [0; 6];
    established.read_exact(&mut reply).await.expect("delivered after the heal");
    assert_eq!(&reply, b"during");
    let mut reply = [0; 7];
    fresh.read_exact(&mut reply).await.expect("delivered after the heal");
    assert_eq!(&reply, b"anyone?");
}

#[tokio::test]
async fn reset_breaks_established_and_new_connections() {
    let (proxy, mut established) = proxied().await;
    assert_eq!(round_trip(&mut established, b"ok").await, b"ok");
    proxy.set(Fault::Reset);
    let mut buf = [0; 16];
    let error = established.read(&mut buf).await.expect_err("reset mid-stream, not an orderly end");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    let mut fresh = TcpStream::connect(proxy.addr()).await.expect("the handshake is the kernel's");
    let outcome = fresh.read(&mut buf).await;
    assert!(matches!(&outcome, Err(e) if e.kind() == ErrorKind::ConnectionReset), "{outcome:?}");
}

#[tokio::test]
async fn bandwidth_paces_the_link() {
    let (proxy, mut stream) = proxied().await;
    let rate = 64 * 1024;
    proxy.set(Fault::Bandwidth(rate));
    let message = vec![7; 32 * 1024];
    let started = Instant::now();
    // The echo carries the bytes twice over the limited link, each direction at `rate`: half a second each way,
    // pipelined, so at least half a second in all.
    let (mut read, mut write) = stream.split();
    let (_, reply) = tokio::join!(async { write.write_all(&message).await.expect("write") }, async {
        let mut reply = vec![0; message.len()];
        read.read_exact(&mut reply).await.expect("read");
        reply
    });
    assert_eq!(reply, message);
    let least = Duration::from_secs_f64(message.len() as f64 / rate as f64);
    assert!(started.elapsed() >= least, "{:?} < {least:?}", started.elapsed());
}
