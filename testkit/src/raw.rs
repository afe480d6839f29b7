//! gRPC spoken by hand over HTTP/2, for what a well-behaved client library never sends: garbage bodies, frames
//! whose length lies, streams that never finish.

use std::net::SocketAddr;

use h2::client::SendRequest;
use tonic::codegen::{Bytes, http};

/// One HTTP/2 connection to a gRPC server.
#[derive(Debug, Clone)]
pub struct RawConnection {
    addr: SocketAddr,
    send: SendRequest<Bytes>,
}

/// What the server answered: its gRPC status code (from headers or trailers) and the reply body.
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
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (send, connection) = h2::client::handshake(tcp).await?;
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

    /// Sends `body` (already framed, or deliberately not) to `path` and reads the whole answer.
    pub async fn call(&self, path: &str, body: Vec<u8>, timeout: Option<&str>) -> anyhow::Result<RawReply> {
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(self.request(path, timeout), false)?;
        stream.send_data(Bytes::from(body), true)?;
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
        Ok(RawReply { code, message: header("grpc-message").unwrap_or_default(), body })
    }
}
