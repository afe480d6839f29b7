//! The gateway's HTTP/2 connection to one compute replica: calls go from the request's own task straight onto the
//! connection (the `h2` crate's client), which is opened on first use and opened again after it breaks.
//!
//! It replaces tonic's `Channel`, measured (`offload-bench overhead`, a bare proxy in front of the bare echo, the
//! same server with each client, interleaved): a `Channel` hands every call to a `tower::Buffer` worker task, which
//! hands it to hyper's dispatch task, which hands it to the `h2` connection task; one call at a time on two cores
//! each hand-off is a thread wake-up. Here the caller's task writes the request into the connection's stream state
//! and wakes only the connection task. What `Channel` did for the gateway is done here too: the connect timeout,
//! `TCP_NODELAY`, HTTP/2 keepalive PINGs also while idle (an unanswered one closes the connection, failing its
//! calls and the health stream that shares it), TLS and mTLS with ALPN `h2`, reconnecting after a failure, and the
//! request's `:scheme` and `:authority`.
//!
//! Failures keep the shapes [`crate::upstream_status`] classifies: an unreachable replica is `UNAVAILABLE`, a
//! connection or stream that breaks is an `h2::Error` (tonic's `INTERNAL`/`UNKNOWN` with it as the source).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use offload_serve::batched_writes::BatchedWrites;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tonic::{
    Status,
    codegen::http::{self, HeaderValue, Uri, uri::Scheme},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/2 windows as hyper's client (and so tonic's `Channel`) sets them: a large reply (a factorial's half a
/// megabyte of digits) streams without waiting on WINDOW_UPDATEs.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// The largest header block accepted from compute (hyper's client default).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// What the gateway says it is, as gRPC clients do.
const USER_AGENT: &str = concat!("offload-gateway/", env!("CARGO_PKG_VERSION"));

/// How connections to replicas are made (the gateway's flags).
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// How long the TCP connect (and the TLS handshake) may take.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval, also while idle (`--compute-keepalive-interval`), and how long a PING may go
    /// unanswered before the connection is closed (`--compute-keepalive-timeout`). A replica that went silent
    /// without a reset (a partition, a dead node) is thus noticed within their sum: its calls in flight fail as a
    /// transport failure (retried elsewhere) and its health stream, which shares the connection, breaks at the same
    /// moment, taking it out of rotation.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// TLS towards compute; plaintext when `None`.
    pub tls: Option<TlsClient>,
}

/// TLS (and mTLS) towards compute: rustls on ring, the CA the gateway trusts, its own certificate if any.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// The name compute's certificate must carry (`--compute-tls-server-name`); the URL's host when `None`.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusting the CA certificates in `ca_pem`, presenting `identity` (certificate chain and key, PEM) if given,
    /// and expecting `server_name` on compute's certificate if given. `Err` names the flag whose file is unusable.
    pub fn new(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>, server_name: Option<&str>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("--compute-tls-ca: not PEM certificates: {e}"))?;
            roots.add(cert).map_err(|e| format!("--compute-tls-ca: an unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("--compute-tls-ca: no certificate in the file".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--compute-tls-cert: not PEM certificates: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|e| format!("--compute-tls-key: not a PEM private key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--compute-tls-cert/--compute-tls-key: {e}"))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|e| format!("--compute-tls-server-name={name:?}: {e}"))
            })
            .transpose()?;
        Ok(Self { config: Arc::new(config), server_name })
    }
}

/// The connection to one replica, a tower service of HTTP requests that tonic's generated clients call on (the
/// calls' [`crate::compute_client`] and the health stream's); clones share it.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port` to connect to, and what the requests' `:authority` says.
    authority: http::uri::Authority,
    scheme: Scheme,
    settings: ConnectSettings,
    /// The open connection, if any: cleared by its driver task when it ends.
    current: Mutex<Option<Open>>,
    /// Held while connecting, so that the calls that find no connection open one between them; it keeps why the
    /// last attempt failed, if it did.
    connecting: tokio::sync::Mutex<Option<String>>,
    /// Connection attempts finished so far: a call that waited for another's attempt shares its failure rather
    /// than queueing one more (an unreachable replica costs its waiting calls one connect timeout, not one each).
    attempts: AtomicU64,
}

/// An open connection's request handle, and which connection it is (so its end clears only itself).
#[derive(Clone)]
struct Open {
    send: h2::client::SendRequest<Bytes>,
    id: u64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("authority", &self.shared.authority).finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection to `url` (`http://host:port` or `https://…`), opened on the first call.
    pub fn lazy(url: &str, settings: ConnectSettings) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| format!("{url:?} has no scheme"))?;
        let authority = uri.authority().cloned().ok_or_else(|| format!("{url:?} has no host:port"))?;
        if authority.port_u16().is_none() {
            return Err(format!("{url:?} has no port"));
        }
        match (scheme.as_str(), &settings.tls) {
            ("http", None) | ("https", Some(_)) => {}
            ("https", None) => return Err(format!("{url:?} is https but no TLS is configured")),
            ("http", Some(_)) => return Err(format!("{url:?} is plaintext but TLS is configured")),
            (other, _) => return Err(format!("{url:?}: unknown scheme {other}")),
        }
        let shared = Shared {
            authority,
            scheme,
            settings,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The open connection's handle, if there is one.
    fn open(&self) -> Option<Open> {
        self.shared.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Forgets connection `id` (it failed), so that the next call opens another.
    fn forget(shared: &Shared, id: u64) {
        let mut current = shared.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|open| open.id == id) {
            *current = None;
        }
    }

    /// A handle ready for one more stream: the open connection's, or a new connection's. A connection that turns
    /// out to be closed (its replica went away or sent GOAWAY) before the request was written is replaced once.
    async fn ready(&self) -> Result<h2::client::SendRequest<Bytes>, BoxError> {
        let mut reopened = false;
        loop {
            let open = match self.open() {
                Some(open) => open,
                None => self.connect().await?,
            };
            match open.send.ready().await {
                Ok(send) => return Ok(send),
                Err(error) => {
                    Self::forget(&self.shared, open.id);
                    if reopened {
                        return Err(error.into());
                    }
                    reopened = true;
                }
            }
        }
    }

    /// Opens a connection, unless another call just did.
    async fn connect(&self) -> Result<Open, BoxError> {
        let attempts = self.shared.attempts.load(Ordering::Acquire);
        let mut last_failure = self.shared.connecting.lock().await;
        if let Some(open) = self.open() {
            return Ok(open);
        }
        if self.shared.attempts.load(Ordering::Acquire) != attempts
            && let Some(failure) = last_failure.as_ref()
        {
            return Err(Box::new(Status::unavailable(failure.clone())));
        }
        let settings = &self.shared.settings;
        let connected = tokio::time::timeout(settings.connect_timeout, self.handshake()).await;
        self.shared.attempts.fetch_add(1, Ordering::Release);
        let (send, connection) = match connected {
            Ok(Ok(connected)) => connected,
            failed => {
                let failure = match failed {
                    Ok(Err(error)) => format!("cannot connect: {error}"),
                    _ => format!("cannot connect within --connect-timeout={:?}", settings.connect_timeout),
                };
                *last_failure = Some(failure.clone());
                return Err(Box::new(Status::unavailable(failure)));
            }
        };
        *last_failure = None;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let open = Open { send, id };
        *self.shared.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(open.clone());
        let keepalive = (settings.keepalive_interval, settings.keepalive_timeout);
        tokio::spawn(drive(connection, keepalive, Arc::downgrade(&self.shared), id));
        Ok(open)
    }

    /// TCP (and TLS), then the HTTP/2 handshake.
    async fn handshake(&self) -> Result<(h2::client::SendRequest<Bytes>, H2Connection), BoxError> {
        let shared = &self.shared;
        let tcp = TcpStream::connect(shared.authority.as_str()).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &shared.settings.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = match &tls.server_name {
                    Some(name) => name.clone(),
                    // An IPv6 host is written in brackets in a URL, without them in a certificate.
                    None => ServerName::try_from(shared.authority.host().trim_matches(['[', ']']).to_owned())?,
                };
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config)).connect(name, tcp).await?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("compute's TLS did not negotiate HTTP/2 (ALPN h2)".into());
                }
                Box::new(stream)
            }
        };
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            // Requests written a scheduler turn late, together ([`BatchedWrites`]).
            .handshake(BatchedWrites::new(io))
            .await?;
        Ok((send, connection))
    }
}

/// What the connection is carried over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An open connection's I/O, driven by its own task ([`drive`]).
type H2Connection = h2::client::Connection<BatchedWrites<Box<dyn Io>>, Bytes>;

/// Runs the connection until it ends or a keepalive PING goes unanswered, then drops it (which fails every stream
/// still open on it) and forgets it.
async fn drive(mut connection: H2Connection, keepalive: (Duration, Duration), shared: Weak<Shared>, id: u64) {
    let (interval, timeout) = keepalive;
    let pings = connection.ping_pong();
    let alive = async move {
        let Some(mut pings) = pings else { return std::future::pending().await };
        loop {
            tokio::time::sleep(interval).await;
            match tokio::time::timeout(timeout, pings.ping(h2::Ping::opaque())).await {
                Ok(Ok(_pong)) => {}
                Ok(Err(_)) => return "the connection failed",
                Err(_) => return "a keepalive PING went unanswered",
            }
        }
    };
    tokio::select! {
        ended = &mut connection => {
            if let Err(error) = ended {
                tracing::debug!(%error, "compute connection failed");
            }
        }
        why = alive => tracing::warn!(why, "closing the connection to compute"),
    }
    drop(connection);
    if let Some(shared) = shared.upgrade() {
        Connection::forget(&shared, id);
    }
}

/// A reply's body as tonic reads it: the data frames (returning their flow-control window), then the trailers.
#[derive(Debug)]
pub struct ReplyBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The window only ever grows back by what was received: this cannot fail.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data_done && self.recv.is_end_stream()
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ReplyBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: a call waits for the connection (and for a free stream) in its own future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // Every request the gateway sends (a call's, the health watch's) is one encoded message, already
            // bounded by its client: sent whole, in one DATA frame.
            let message = body.collect().await?.to_bytes();
            let (reply, recv) = this.send(parts, message).await?;
            Ok(reply.map(|()| ReplyBody { recv, data_done: false }))
        })
    }
}

impl Connection {
    /// Sends a request whose body is `message` (one DATA frame, ending the stream; none if empty) and waits for
    /// the reply's headers. The request's URI needs only its path: the scheme and `:authority` are the replica's.
    async fn send(
        &self,
        mut parts: http::request::Parts,
        message: Bytes,
    ) -> Result<(http::Response<()>, h2::RecvStream), BoxError> {
        let mut uri = parts.uri.into_parts();
        uri.scheme = Some(self.shared.scheme.clone());
        uri.authority = Some(self.shared.authority.clone());
        parts.uri = Uri::from_parts(uri)?;
        parts.headers.entry(http::header::USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT));
        let mut send = self.ready().await?;
        let (response, mut stream) = send.send_request(http::Request::from_parts(parts, ()), message.is_empty())?;
        if !message.is_empty() {
            stream.send_data(message, true)?;
        }
        let (parts, recv) = response.await?.into_parts();
        Ok((http::Response::from_parts(parts, ()), recv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext() -> ConnectSettings {
        ConnectSettings {
            connect_timeout: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            tls: None,
        }
    }

    #[test]
    fn urls_must_name_a_port_and_agree_with_the_tls_settings() {
        assert!(Connection::lazy("http://127.0.0.1:50051", plaintext()).is_ok());
        for (url, says) in [
            ("http://127.0.0.1", "no port"),
            ("127.0.0.1:50051", "no scheme"),
            ("https://127.0.0.1:50051", "no TLS is configured"),
            ("ftp://127.0.0.1:50051", "unknown scheme"),
        ] {
            let error = Connection::lazy(url, plaintext()).expect_err(url);
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn unusable_tls_files_are_refused_naming_their_flag() {
        let error = TlsClient::new(b"not a certificate", None, None).expect_err("no CA");
        assert!(error.starts_with("--compute-tls-ca:"), "{error}");
    }

    /// A CA certificate (PEM) the gateway would trust.
    fn some_ca() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("CA").pem()
    }

    #[tokio::test]
    async fn calls_waiting_for_a_connect_that_times_out_share_its_failure() {
        // A replica that accepts TCP and never answers the TLS handshake: each attempt lasts the connect timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&accepted);
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(tcp);
            }
        });
        let tls = TlsClient::new(some_ca().as_bytes(), None, Some("compute.offload.test")).expect("tls");
        let settings = ConnectSettings { connect_timeout: Duration::from_millis(300), tls: Some(tls), ..plaintext() };
        let connection = Connection::lazy(&format!("https://{addr}"), settings).expect("url");
        let calls = (0..4).map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { connection.ready().await.map(drop).map_err(|e| e.to_string()) })
        });
        for call in calls.collect::<Vec<_>>() {
            let error = call.await.expect("task").expect_err("never connects");
            assert!(error.contains("--connect-timeout"), "{error}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one attempt for the four calls waiting on it");
        // Once that failure is known, the next call tries again.
        connection.ready().await.map(drop).expect_err("still silent");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        silent.abort();
    }

    #[tokio::test]
    async fn an_unreachable_replica_is_unavailable_and_a_later_call_connects() {
        // A port nothing listens on: bind, note it, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let connection = Connection::lazy(&format!("http://{addr}"), plaintext()).expect("url");
        let error = connection.ready().await.expect_err("nothing listens");
        let status = error.downcast::<Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");

        // Something answers HTTP/2 there now: the next call connects (nothing was cached from the failure).
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut connection = h2::server::handshake(tcp).await.expect("handshake");
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                let response = http::Response::builder().header("grpc-status", "0").body(()).expect("response");
                respond.send_response(response, true).expect("send");
            }
        });
        connection.ready().await.expect("connects now");
        server.abort();
    }
}
