//! One unary gRPC call to compute on a [`Connection`]: the request framed and sent as one DATA frame, the reply's
//! frames gathered into one message, its status read from the trailers.
//!
//! It replaces tonic's generated client (`ComputeClient<Connection>`) on the gateway's request path. tonic's
//! client runs every call, unary or not, through its streaming machinery: the request as a one-item stream encoded
//! by an `EncodeBody`, the reply read by a `Streaming` decoder that buffers, re-checks its state per frame and
//! parses the trailers as it goes, and the metadata sanitised and merged on the way in and out. Counted with
//! callgrind (docs/overhead.md, "Instructions per call"), that machinery was the largest part of the gateway's
//! client side that is not HTTP/2 itself. A unary call needs none of it: one message out, one message back, then
//! the status.
//!
//! What the gateway relied on tonic's client for is kept: the reply's size limit (`--max-message-bytes`, checked
//! before the frames are gathered), gzip replies when `--compute-compression` allows them, a trailers-only reply's
//! status, an HTTP error status mapped as the gRPC spec says, and transport failures as tonic reports them (a
//! status whose source is the `h2::Error`), which [`crate::upstream_status`] classifies.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tonic::{
    Code, Request, Response, Status,
    codec::CompressionEncoding,
    codegen::http::{self, HeaderMap, HeaderValue, header, uri::PathAndQuery},
    metadata::MetadataMap,
};

use crate::connection::Connection;

/// The five bytes before each gRPC message: a compression flag and the message's length (big-endian).
const PREFIX: usize = 5;

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");
const GRPC_ACCEPT_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-accept-encoding");

/// A unary client on one connection to one replica. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UnaryClient {
    connection: Connection,
    /// The largest reply message accepted, and request message sent (`--max-message-bytes`).
    max_message_bytes: usize,
    /// The compression compute may use for its replies (`--compute-compression`); none when `None`.
    accept_compressed: Option<CompressionEncoding>,
}

impl UnaryClient {
    pub fn new(
        connection: Connection,
        max_message_bytes: usize,
        accept_compressed: Option<CompressionEncoding>,
    ) -> Self {
        Self { connection, max_message_bytes, accept_compressed }
    }

    /// Calls `path` (`/offload.v1.Compute/Factorial`) with `request`'s message and metadata.
    pub async fn call<Q: Message, R: Message + Default>(
        &self,
        path: PathAndQuery,
        request: Request<Q>,
    ) -> Result<Response<R>, Status> {
        let (metadata, _, message) = request.into_parts();
        let body = self.encode(&message)?;
        let mut head = http::Request::post(http::Uri::from(path)).body(()).expect("a POST with a path is valid");
        let headers = head.headers_mut();
        *headers = metadata.into_headers();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        if self.accept_compressed.is_some() {
            headers.insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let (reply, mut recv) = self.connection.send(head, body).await.map_err(Status::from_error)?;
        let (reply, ()) = reply.into_parts();
        if let Some(status) = status_of_headers(&reply) {
            return Err(status);
        }
        let framed = self.gather(&mut recv).await?;
        let trailers = recv.trailers().await.map_err(|e| Status::from_error(Box::new(e)))?;
        let no_status = || Status::internal("compute's reply ended without a grpc-status");
        match &trailers {
            // The answer almost every call gets, checked without building a status.
            Some(trailers) if trailers.get(GRPC_STATUS).is_some_and(|code| code == "0") => {}
            Some(trailers) => match Status::from_header_map(trailers) {
                Some(status) if status.code() == Code::Ok => {}
                Some(status) => return Err(status),
                None => return Err(no_status()),
            },
            // A trailers-only reply whose headers said OK: its missing message is the error below.
            None if reply.headers.contains_key(GRPC_STATUS) => {}
            None => return Err(no_status()),
        }
        let message = self.decode(framed, &reply.headers)?;
        Ok(Response::from_parts(MetadataMap::from_headers(reply.headers), message, Default::default()))
    }

    /// `message` with its prefix, refused (as tonic's client refuses it) if it exceeds the limit.
    fn encode(&self, message: &impl Message) -> Result<Bytes, Status> {
        let len = message.encoded_len();
        if len > self.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            )));
        }
        let mut framed = BytesMut::with_capacity(PREFIX + len);
        framed.put_u8(0);
        framed.put_u32(len as u32);
        message.encode(&mut framed).expect("the buffer holds encoded_len bytes");
        Ok(framed.freeze())
    }

    /// The reply's DATA frames, their flow-control window given back, refused as soon as they exceed one message
    /// of the largest accepted size.
    async fn gather(&self, recv: &mut h2::RecvStream) -> Result<Bytes, Status> {
        let mut first: Option<Bytes> = None;
        let mut more = BytesMut::new();
        while let Some(data) = recv.data().await {
            let data = data.map_err(|e| Status::from_error(Box::new(e)))?;
            // The window only ever grows back by what was received: this cannot fail.
            let _ = recv.flow_control().release_capacity(data.len());
            let gathered = first.as_ref().map_or(0, Bytes::len) + more.len() + data.len();
            if gathered > PREFIX + self.max_message_bytes {
                return Err(too_large(gathered - PREFIX, self.max_message_bytes));
            }
            match &first {
                None => first = Some(data),
                Some(first) => {
                    if more.is_empty() {
                        more.extend_from_slice(first);
                    }
                    more.extend_from_slice(&data);
                }
            }
        }
        Ok(if more.is_empty() { first.unwrap_or_default() } else { more.freeze() })
    }

    /// The one message in `framed`, decompressed if compute compressed it (as `headers` say it may).
    fn decode<R: Message + Default>(&self, mut framed: Bytes, headers: &HeaderMap) -> Result<R, Status> {
        if framed.len() < PREFIX {
            return Err(Status::internal("compute's reply has no message"));
        }
        let compressed = framed.get_u8();
        let len = framed.get_u32() as usize;
        if len > self.max_message_bytes {
            return Err(too_large(len, self.max_message_bytes));
        }
        if framed.len() != len {
            return Err(Status::internal(format!(
                "compute's reply is not one message: {} bytes after a prefix announcing {len}",
                framed.len()
            )));
        }
        let decoded = match compressed {
            0 => R::decode(framed),
            1 => {
                let encoding = headers.get(GRPC_ENCODING).map(HeaderValue::as_bytes);
                if self.accept_compressed.is_none() || encoding != Some(b"gzip") {
                    return Err(Status::internal(format!(
                        "compute compressed its reply with {:?}, which was not asked for",
                        encoding.map(String::from_utf8_lossy)
                    )));
                }
                let mut inflated = Vec::new();
                let limit = self.max_message_bytes as u64 + 1;
                flate2::read::GzDecoder::new(framed.reader())
                    .take(limit)
                    .read_to_end(&mut inflated)
                    .map_err(|e| Status::internal(format!("compute's gzip reply does not inflate: {e}")))?;
                if inflated.len() > self.max_message_bytes {
                    return Err(too_large(inflated.len(), self.max_message_bytes));
                }
                R::decode(inflated.as_slice())
            }
            flag => return Err(Status::internal(format!("compute's reply has compression flag {flag}"))),
        };
        decoded.map_err(|e| Status::internal(format!("compute's reply does not decode: {e}")))
    }
}

/// Tonic's wording for a reply above `--max-message-bytes`.
fn too_large(len: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "decoded message length too large: found {len} bytes, the limit is: {limit} bytes"
    ))
}

/// The status a reply's headers already decide: a trailers-only reply's error, or an HTTP status other than 200,
/// mapped as the gRPC spec says ("HTTP to gRPC Status Code Mapping").
fn status_of_headers(reply: &http::response::Parts) -> Option<Status> {
    if reply.headers.contains_key(GRPC_STATUS)
        && let Some(status) = Status::from_header_map(&reply.headers)
        && status.code() != Code::Ok
    {
        return Some(status);
    }
    if reply.status == http::StatusCode::OK {
        return None;
    }
    let code = match reply.status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Some(Status::new(code, format!("compute answered HTTP {}", reply.status)))
}

#[cfg(test)]
mod tests {
    use std::{future::Future, io::Write, time::Duration};

    use offload_proto::v1::{Execution, FactorialRequest, FactorialResponse};
    use tonic::codegen::http::HeaderMap;

    use super::*;
    use crate::{connection::ConnectSettings, upstream_status};

    const PATH: &str = "/offload.v1.Compute/Factorial";
    const LIMIT: usize = 64 * 1024;

    /// A replica answering every request on its first connection with `answer`, which gets the request's headers,
    /// its body and the stream to reply on.
    async fn replica<F, Fut>(answer: F) -> (UnaryClient, tokio::task::JoinHandle<()>)
    where
        F: Fn(http::request::Parts, Bytes, h2::server::SendResponse<Bytes>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut connection = h2::server::handshake(tcp).await.expect("handshake");
            while let Some(Ok((request, respond))) = connection.accept().await {
                let (parts, mut body) = request.into_parts();
                let mut message = BytesMut::new();
                while let Some(Ok(data)) = body.data().await {
                    let _ = body.flow_control().release_capacity(data.len());
                    message.extend_from_slice(&data);
                }
                tokio::spawn(answer(parts, message.freeze(), respond));
            }
        });
        let settings = ConnectSettings {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(60),
            tls: None,
            http2: crate::connection::Http2Client::Own,
        };
        let connection = Connection::lazy(&format!("http://{addr}"), settings).expect("url");
        (UnaryClient::new(connection, LIMIT, Some(CompressionEncoding::Gzip)), server)
    }

    fn ok_trailers() -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        trailers
    }

    fn grpc_headers() -> http::Response<()> {
        http::Response::builder().header("content-type", "application/grpc").body(()).expect("response")
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

    async fn call(client: &UnaryClient, request: FactorialRequest) -> Result<FactorialResponse, Status> {
        let mut request = Request::new(request);
        request.set_timeout(Duration::from_secs(3));
        client.call(PathAndQuery::from_static(PATH), request).await.map(Response::into_inner)
    }

    #[tokio::test]
    async fn a_call_sends_a_grpc_request_and_reads_a_reply_split_over_frames() {
        let (client, server) = replica(|head, body, mut respond| async move {
            assert_eq!(head.uri.path(), PATH);
            assert_eq!(head.method, http::Method::POST);
            for (name, value) in
                [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-accept-encoding", "gzip")]
            {
                assert_eq!(head.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
            }
            assert!(head.headers.contains_key("grpc-timeout"), "the request's metadata is sent");
            assert!(head.headers.get("user-agent").is_some_and(|v| v.as_bytes().starts_with(b"offload-gateway/")));
            let request = FactorialRequest::decode(&body[PREFIX..]).expect("one framed message");
            assert_eq!(body.len(), PREFIX + request.encoded_len());
            let reply = framed(0, &reply_of(&request.n.to_string().repeat(1000)).encode_to_vec());
            let mut stream = respond.send_response(grpc_headers(), false).expect("headers");
            // Three DATA frames, the message prefix cut in two.
            stream.send_data(reply.slice(..3), false).expect("data");
            stream.send_data(reply.slice(3..100), false).expect("data");
            stream.send_data(reply.slice(100..), false).expect("data");
            stream.send_trailers(ok_trailers()).expect("trailers");
        })
        .await;
        let reply = call(&client, FactorialRequest { n: 7, ..Default::default() }).await.expect("a reply");
        assert_eq!(reply, reply_of(&"7".repeat(1000)));
        server.abort();
    }

    #[tokio::test]
    async fn a_gzip_reply_is_inflated_when_accepted_and_refused_otherwise() {
        let (client, server) = replica(|_, _, mut respond| async move {
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(&reply_of("5040").encode_to_vec()).expect("gzip");
            let headers = http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-encoding", "gzip")
                .body(())
                .expect("response");
            let mut stream = respond.send_response(headers, false).expect("headers");
            stream.send_data(framed(1, &gzip.finish().expect("gzip")), false).expect("data");
            stream.send_trailers(ok_trailers()).expect("trailers");
        })
        .await;
        assert_eq!(call(&client, FactorialRequest::default()).await.expect("inflated"), reply_of("5040"));
        let uncompressing = UnaryClient { accept_compressed: None, ..client };
        let error = call(&uncompressing, FactorialRequest::default()).await.expect_err("not asked for");
        assert_eq!(error.code(), Code::Internal, "{error:?}");
        assert!(error.message().contains("not asked for"), "{error:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_reply_above_the_limit_is_refused_before_it_is_gathered() {
        let (client, server) = replica(|_, _, mut respond| async move {
            let mut stream = respond.send_response(grpc_headers(), false).expect("headers");
            let big = framed(0, &reply_of(&"9".repeat(LIMIT)).encode_to_vec());
            // Sent in pieces as the window allows; the client stops reading past the limit.
            stream.reserve_capacity(big.len());
            let _ = stream.send_data(big, false);
            let _ = stream.send_trailers(ok_trailers());
        })
        .await;
        let error = call(&client, FactorialRequest::default()).await.expect_err("too large");
        assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
        assert!(error.message().contains(&format!("the limit is: {LIMIT} bytes")), "{error:?}");
        server.abort();
    }

    #[tokio::test]
    async fn compute_statuses_reach_the_caller_from_trailers_headers_or_http() {
        let (client, server) = replica(|head, _, mut respond| async move {
            match head.uri.query() {
                // A handler's error: trailers-only.
                Some("trailers-only") => {
                    let headers = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "3")
                        .header("grpc-message", "n%20is%20too%20large")
                        .body(())
                        .expect("response");
                    respond.send_response(headers, true).expect("headers");
                }
                // An error after the headers.
                Some("trailers") => {
                    let mut stream = respond.send_response(grpc_headers(), false).expect("headers");
                    let mut trailers = HeaderMap::new();
                    trailers.insert(GRPC_STATUS, HeaderValue::from_static("8"));
                    stream.send_trailers(trailers).expect("trailers");
                }
                // Not gRPC at all: a proxy's 503.
                Some("http") => {
                    let response = http::Response::builder().status(503).body(()).expect("response");
                    respond.send_response(response, true).expect("headers");
                }
                // A message and then the end, without a status.
                Some("no-status") => {
                    let mut stream = respond.send_response(grpc_headers(), false).expect("headers");
                    stream.send_data(framed(0, &reply_of("1").encode_to_vec()), true).expect("data");
                }
                // The stream refused (a draining replica's GOAWAY race does this).
                _ => respond.send_reset(h2::Reason::REFUSED_STREAM),
            }
        })
        .await;
        let call_with = |query: &'static str| {
            let client = client.clone();
            async move {
                let path = PathAndQuery::try_from(format!("{PATH}?{query}")).expect("path");
                let request = Request::new(FactorialRequest::default());
                client.call::<_, FactorialResponse>(path, request).await.expect_err(query)
            }
        };
        let error = call_with("trailers-only").await;
        assert_eq!((error.code(), error.message()), (Code::InvalidArgument, "n is too large"));
        assert_eq!(call_with("trailers").await.code(), Code::ResourceExhausted);
        assert_eq!(call_with("http").await.code(), Code::Unavailable);
        assert_eq!(call_with("no-status").await.code(), Code::Internal);
        let refused = call_with("reset").await;
        let classified = upstream_status::classify(refused, "replica-a", Duration::ZERO);
        assert!(upstream_status::retryable(&classified), "a refused stream is retried elsewhere: {classified:?}");
        server.abort();
    }
}
