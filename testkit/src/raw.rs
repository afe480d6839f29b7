//! gRPC spoken by hand over HTTP/2, for what a well-behaved client library never sends: garbage bodies, frames
//! whose length lies, streams that never finish, replies never read (a receive window of 0), streams reset before
//! their call starts.

use std::net::SocketAddr;

use h2::client::SendRequest;
use tonic::codegen::{Bytes, http};

/// One HTTP/2 connection to a gRPC server.
#[derive(Debug, Clone)]
pub struct RawConnection {
    addr: SocketAddr,
    send: SendRequest<Bytes>,
}

/// What the server answered: its gRPC status code and message (from headers or trailers) and the reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub code: tonic::Code,
    pub message: String,
    pub body: Vec<u8>,
}

/// A gRPC message frame: compression flag 0, big-endian length, the bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

impl RawConnection {
    /// Connects and completes the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::connect_with(addr, h2::client::Builder::new()).await
    }

    /// Connects with a stream receive window of 0: the server can send headers and trailers but never one byte of
    /// a reply message.
    pub async fn connect_never_reading(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut builder = h2::client::Builder::new();
        builder.initial_window_size(0);
        Self::connect_with(addr, builder).await
    }

    async fn connect_with(addr: SocketAddr, builder: h2::client::Builder) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (send, connection) = builder.handshake(tcp).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { addr, send })
    }

    fn request(&self, path: &str, timeout: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            builder = builder.header("grpc-timeout", timeout);
        }
        #[allow(clippy::expect_used)] // Constant, valid parts.
        builder.body(()).expect("valid request")
    }

    /// Opens a stream to `path` and sends `body` without ever ending it. The stream stays open (holding whatever
    /// the server gave it) until the returned handle, or the connection, is dropped.
    pub async fn open_unfinished(&self, path: &str, body: &[u8]) -> anyhow::Result<h2::SendStream<Bytes>> {
        let mut send = self.send.clone().ready().await?;
        let (_response, mut stream) = send.send_request(self.request(path, None), false)?;
        stream.send_data(Bytes::copy_from_slice(body), false)?;
        Ok(stream)
    }

    /// Sends `body` to `path` and waits for the reply's headers only, reading nothing of its body.
    pub async fn call_unread(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Unread> {
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(self.request(path, None), false)?;
        stream.send_data(Bytes::from(body), true)?;
        let (parts, received) = response.await?.into_parts();
        // A call refused or failed at once is answered trailers-only: its status is in the headers.
        let code = parts
            .headers
            .get("grpc-status")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.parse::<i32>().ok())
            .map(tonic::Code::from);
        Ok(Unread { code, _received: received, _stream: stream })
    }

    /// Sends `body` to `path` without ending the stream, and reads whatever the server answers (the stream stays
    /// open from this side all the while).
    pub async fn call_unfinished(&self, path: &str, body: &[u8]) -> anyhow::Result<RawReply> {
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(self.request(path, None), false)?;
        stream.send_data(Bytes::copy_from_slice(body), false)?;
        let reply = read_reply(response).await;
        drop(stream);
        reply
    }

    /// Sends a whole request to `path`, then resets the stream at once (a client that gave up).
    pub async fn call_and_reset(&self, path: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let mut send = self.send.clone().ready().await?;
        let (_response, mut stream) = send.send_request(self.request(path, None), false)?;
        stream.send_data(Bytes::from(body), true)?;
        stream.send_reset(h2::Reason::CANCEL);
        Ok(())
    }

    /// Sends `body` (already framed, or deliberately not) to `path` and reads the whole answer.
    pub async fn call(&self, path: &str, body: Vec<u8>, timeout: Option<&str>) -> anyhow::Result<RawReply> {
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(self.request(path, timeout), false)?;
        stream.send_data(Bytes::from(body), true)?;
        read_reply(response).await
    }
}

/// Reads a whole answer: status (from headers or trailers), message and body.
async fn read_reply(response: h2::client::ResponseFuture) -> anyhow::Result<RawReply> {
    let (parts, mut received) = response.await?.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk?;
        let _ = received.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = received.trailers().await?.unwrap_or_default();
    let header = |name: &str| {
        trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let code =
        header("grpc-status").and_then(|c| c.parse::<i32>().ok()).map_or(tonic::Code::Unknown, tonic::Code::from);
    let message = header("grpc-message").map(|m| percent_decoded(&m)).unwrap_or_default();
    Ok(RawReply { code, message, body })
}

/// `grpc-message` as the server meant it: the gRPC spec percent-encodes it on the wire.
fn percent_decoded(message: &str) -> String {
    percent_encoding::percent_decode_str(message).decode_utf8_lossy().into_owned()
}

/// A call whose reply is left unread (see [`RawConnection::call_unread`]); the stream stays open while this lives.
#[derive(Debug)]
pub struct Unread {
    /// The status, if the call was answered trailers-only (refused or failed before any reply message).
    pub code: Option<tonic::Code>,
    _received: h2::RecvStream,
    _stream: h2::SendStream<Bytes>,
}
