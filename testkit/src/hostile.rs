//! A gRPC server that misbehaves on purpose, spoken by hand over HTTP/2, for testing a client against the servers
//! a load tester meets: one that never answers, answers a unary call twice or with two statuses, says things in
//! its `grpc-message` that a terminal would obey, compresses replies, or makes reflection endless.
//!
//! Each call is answered as the test's function says ([`Answer`]), by path and call number; every request's path
//! and headers are kept ([`HostileServer::seen`]), and every TCP connection accepted is counted, so a test can
//! check that a client was refused before it connected. The server runs on a runtime of its own, on
//! `127.0.0.1:0`, and stops when dropped.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use prost::Message;
use tonic::codegen::{Bytes, http};
use tonic_reflection::pb::v1::{
    FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// How the server answers one call.
pub enum Answer {
    /// Nothing, ever: the stream stays open and unanswered until the client gives up.
    Silence,
    /// These reply messages (encoded protobuf; compressed with `grpc-encoding: gzip` when `gzip`), then these
    /// trailers exactly as given: a name given twice is sent twice.
    Reply { messages: Vec<Vec<u8>>, gzip: bool, trailers: Vec<(&'static str, String)> },
    /// A conversation: for each request message, the replies the function gives; status OK when the client ends
    /// its side.
    Conversation(Box<Replies>),
}

/// What a conversation sends back for one request message: the reply messages, encoded.
pub type Replies = dyn FnMut(&[u8]) -> Vec<Vec<u8>> + Send;

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Silence => f.write_str("Silence"),
            Self::Reply { messages, gzip, trailers } => f
                .debug_struct("Reply")
                .field("messages", &messages.len())
                .field("gzip", gzip)
                .field("trailers", trailers)
                .finish(),
            Self::Conversation(_) => f.write_str("Conversation"),
        }
    }
}

impl Answer {
    /// One empty reply message (a valid message of any type) and status OK.
    pub fn ok() -> Self {
        Self::Reply { messages: vec![Vec::new()], gzip: false, trailers: vec![("grpc-status", "0".into())] }
    }

    /// No reply message, `code` and `message` (percent-encoded, as the gRPC spec sends it).
    pub fn status(code: i32, message: &str) -> Self {
        Self::Reply {
            messages: Vec::new(),
            gzip: false,
            trailers: vec![("grpc-status", code.to_string()), ("grpc-message", percent_encoded(message))],
        }
    }
}

/// What the server saw of one call.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
}

/// The function that answers each call: its path (`/package.Service/Method`) and its number (from 0, over all
/// calls the server received).
pub type Answering = dyn Fn(&str, u64) -> Answer + Send + Sync;

/// The running server; stops when dropped.
pub struct HostileServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl HostileServer {
    /// Starts the server on `127.0.0.1:0`, answering every call as `answer` says.
    pub fn start(answer: impl Fn(&str, u64) -> Answer + Send + Sync + 'static) -> Self {
        #[allow(clippy::expect_used)] // A test fixture: no runtime or no loopback port is the test's failure.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hostile-server")
            .enable_all()
            .build()
            .expect("a runtime for the hostile server");
        #[allow(clippy::expect_used)]
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        #[allow(clippy::expect_used)]
        let addr = listener.local_addr().expect("local addr");
        let (seen, connections) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicU64::new(0)));
        let shared = Arc::new(Shared { answer: Box::new(answer), seen: Arc::clone(&seen), calls: AtomicU64::new(0) });
        let accepted = Arc::clone(&connections);
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(tcp, Arc::clone(&shared)));
            }
        });
        Self { addr, seen, connections, runtime: Some(runtime) }
    }

    /// `host:port`, as `offload-bench load` takes it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every call received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What every connection's streams share.
struct Shared {
    answer: Box<Answering>,
    seen: Arc<Mutex<Vec<Seen>>>,
    calls: AtomicU64,
}

async fn connection(tcp: tokio::net::TcpStream, shared: Arc<Shared>) {
    let Ok(mut connection) = h2::server::handshake(tcp).await else { return };
    while let Some(Ok((request, respond))) = connection.accept().await {
        tokio::spawn(stream(request, respond, Arc::clone(&shared)));
    }
}

async fn stream(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    shared
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Seen { path: path.clone(), headers: parts.headers });
    let number = shared.calls.fetch_add(1, Ordering::Relaxed);
    let answer = (shared.answer)(&path, number);
    let headers = |gzip: bool| {
        let mut builder = http::Response::builder().status(200).header("content-type", "application/grpc");
        if gzip {
            builder = builder.header("grpc-encoding", "gzip");
        }
        builder.body(())
    };
    match answer {
        Answer::Silence => {
            // Held, unanswered, until the client resets the stream or the server stops.
            let _held = (respond, body);
            std::future::pending::<()>().await;
        }
        Answer::Reply { messages, gzip, trailers } => {
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let Ok(headers) = headers(gzip) else { return };
            let Ok(mut send) = respond.send_response(headers, false) else { return };
            for message in messages {
                let _ = send.send_data(Bytes::from(frame(&message, gzip)), false);
            }
            let mut map = http::HeaderMap::new();
            for (name, value) in trailers {
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    map.append(name, value);
                }
            }
            let _ = send.send_trailers(map);
        }
        Answer::Conversation(mut reply) => {
            let Ok(headers) = headers(false) else { return };
            let Ok(mut send) = respond.send_response(headers, false) else { return };
            let mut pending = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                pending.extend_from_slice(&chunk);
                while let Some(message) = take_frame(&mut pending) {
                    for answer in reply(&message) {
                        if send.send_data(Bytes::from(frame(&answer, false)), false).is_err() {
                            return;
                        }
                    }
                }
            }
            let mut map = http::HeaderMap::new();
            map.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(map);
        }
    }
}

/// A gRPC message frame: compression flag, big-endian length, the bytes (gzip-compressed when `gzip`).
fn frame(message: &[u8], gzip: bool) -> Vec<u8> {
    let body = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(message);
        encoder.finish().unwrap_or_default()
    } else {
        message.to_vec()
    };
    let mut framed = vec![u8::from(gzip)];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// The first whole message frame in `pending`, taken out of it.
fn take_frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(pending.get(1..5)?.try_into().ok()?) as usize;
    let whole = pending.get(5..5 + len)?.to_vec();
    pending.drain(..5 + len);
    Some(whole)
}

/// `text` as the gRPC spec sends a `grpc-message`: bytes outside printable ASCII, and `%`, percent-encoded.
pub fn percent_encoded(text: &str) -> String {
    /// Control bytes and `%`; bytes past ASCII are always encoded by the crate.
    const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    percent_encoding::utf8_percent_encode(text, GRPC_MESSAGE).to_string()
}

/// Server reflection (`grpc.reflection.v1`) that never ends: it lists one service, and every file it gives
/// imports a new one, as long as the client keeps asking.
pub fn endless_imports() -> Answer {
    let mut next = 0u64;
    reflection(move |request| match request {
        MessageRequest::ListServices(_) => MessageResponse::ListServicesResponse(ListServiceResponse {
            service: vec![ServiceResponse { name: "hostile.v1.Endless".into() }],
        }),
        _ => {
            next += 1;
            let file = prost_types::FileDescriptorProto {
                name: Some(format!("hostile/f{next}.proto")),
                package: Some("hostile.v1".into()),
                dependency: vec![format!("hostile/f{}.proto", next + 1)],
                ..Default::default()
            };
            MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
                file_descriptor_proto: vec![file.encode_to_vec()],
            })
        }
    })
}

/// Server reflection (`grpc.reflection.v1`) listing `count` services, each without a file.
pub fn many_services(count: usize) -> Answer {
    reflection(move |request| match request {
        MessageRequest::ListServices(_) => MessageResponse::ListServicesResponse(ListServiceResponse {
            service: (0..count).map(|i| ServiceResponse { name: format!("hostile.v1.S{i}") }).collect(),
        }),
        _ => MessageResponse::FileDescriptorResponse(FileDescriptorResponse::default()),
    })
}

/// A reflection conversation: each request answered by `answer`.
fn reflection(mut answer: impl FnMut(MessageRequest) -> MessageResponse + Send + 'static) -> Answer {
    Answer::Conversation(Box::new(move |bytes| {
        let Ok(request) = ServerReflectionRequest::decode(bytes) else { return Vec::new() };
        let Some(message) = request.message_request.clone() else { return Vec::new() };
        let response = ServerReflectionResponse {
            valid_host: String::new(),
            original_request: Some(request),
            message_response: Some(answer(message)),
        };
        vec![response.encode_to_vec()]
    }))
}
