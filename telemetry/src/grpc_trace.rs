//! Spans and W3C trace context for gRPC, written once for both servers and the gateway's client.
//!
//! - Incoming: [`ServerTraceLayer`] (a tower layer in front of a tonic server's routes) opens each call's server
//!   span, continuing the caller's trace when the request carries `traceparent`/`tracestate`, and records the gRPC
//!   status the call ended with.
//! - Outgoing: [`client_span`] opens the client span of one upstream attempt and [`inject`] writes its context into
//!   the request's metadata, so the next service continues the same trace; without export there is no client span,
//!   and the caller's own context ([`CallerTrace`]) is passed on unchanged instead.
//!
//! Span names and attributes follow OpenTelemetry's RPC conventions (`otel.name` = `package.Service/Method`; the
//! attributes, `rpc.*`, `server.*` and `network.*`, are set in [`crate::rpc_attributes`]). Every server span also
//! carries `trace_id` as a plain field, so each log line written during a request names its trace (a client's
//! `traceparent` is read even when export is off). `grpc.*` services (health, reflection) are infrastructure,
//! polled constantly by probes and balancers: they pass untraced.
//!
//! Without export ([`crate::exporting`]) only what a log line shows is built, and only when a line can be written
//! during a call: the server span is a `DEBUG` span with its name and `trace_id` (no OpenTelemetry attributes, no
//! parent context, no client spans). At the default `info` the only line a call writes is a stall's, which names
//! its call and trace itself, so nothing at all is built per call: on a trivial call a span costs about a fifth of
//! what the server adds to a bare tonic echo (`docs/log/overhead-2026.md` has the measurements).

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::future::Either;
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TraceId},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::{
    codegen::http,
    metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue},
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tracing::{Instrument, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::rpc_attributes;

/// Paths under this prefix (`grpc.health.v1`, `grpc.reflection.*`) are not traced.
const UNTRACED_PREFIX: &str = "/grpc.";

/// Reads trace context from HTTP/2 request headers (gRPC metadata is headers).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes trace context into a tonic request's metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(mut value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(&value)) {
            if key == TRACEPARENT {
                never_index(&mut value);
            }
            self.0.insert(key, value);
        }
    }
}

/// The trace context a request carries (`traceparent`, `tracestate`), or an empty context (most calls: without a
/// `traceparent` there is nothing to parse).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    if !headers.contains_key(TRACEPARENT_HEADER) {
        return opentelemetry::Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The trace context a call came with (`traceparent`, `tracestate` as received), kept by a process that does not
/// export to pass on unchanged: it has no span of its own in the trace, so the service it calls continues the
/// caller's span and the trace stays one trace. Empty when exporting (the client span's context is sent instead).
#[derive(Debug, Clone, Default)]
pub struct CallerTrace {
    traceparent: Option<MetadataValue<Ascii>>,
    tracestate: Option<MetadataValue<Ascii>>,
}

impl CallerTrace {
    /// What `incoming` carries to pass on, if this process does not export.
    pub fn of(incoming: &MetadataMap) -> Self {
        if crate::exporting() {
            return Self::default();
        }
        Self { traceparent: incoming.get(TRACEPARENT).cloned(), tracestate: incoming.get(TRACESTATE).cloned() }
    }
}

/// Marks `value` "sensitive", which HTTP/2 sends as a literal that no HPACK table keeps: for a header new on every
/// call (`traceparent`, `grpc-timeout`), whose indexing only filled both ends' tables with values never seen again,
/// each insertion after a comparison with every earlier value of the name.
pub fn never_index(value: &mut MetadataValue<Ascii>) {
    value.set_sensitive(true);
}

/// The W3C trace context headers.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// `traceparent` as a header name made at compile time: a lookup by `&str` parses the name again on every call.
pub const TRACEPARENT_HEADER: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
/// The gRPC status of a trailers-only reply (a handler's error), read from its headers.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Writes the trace context of an outgoing call into its `metadata`: `span`'s (a client span) when export is on,
/// else `caller`'s as it arrived.
pub fn inject(span: &Span, caller: &CallerTrace, metadata: &mut MetadataMap) {
    if crate::exporting() {
        TraceContextPropagator::new().inject_context(&span.context(), &mut MetadataInjector(metadata));
        return;
    }
    if let Some(traceparent) = &caller.traceparent {
        let mut traceparent = traceparent.clone();
        never_index(&mut traceparent);
        metadata.insert(TRACEPARENT, traceparent);
        if let Some(tracestate) = &caller.tracestate {
            metadata.insert(TRACESTATE, tracestate.clone());
        }
    }
}

/// The span of one outgoing call to `service/method` (e.g. `offload.v1.Compute`, `Factorial`) at `server` (the
/// replica's URL, when the client knows which it calls), a child of the current span. Record the outcome with
/// [`record_status`].
pub fn client_span(service: &str, method: &str, server: Option<&str>) -> Span {
    if !crate::exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.client",
        otel.name = format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = field::Empty,
    );
    rpc_attributes::set_call(&span, service, method);
    if let Some(uri) = server.and_then(|url| url.parse::<http::Uri>().ok()) {
        rpc_attributes::set_server(&span, &uri);
    }
    span
}

/// Records a call's gRPC status on its span. Server spans mark only the codes that mean the server failed as
/// errors (OpenTelemetry's RPC conventions: a client's bad argument is not the server's error); client spans mark
/// every non-OK code.
pub fn record_status(span: &Span, code: tonic::Code, server: bool) {
    use tonic::Code;
    rpc_attributes::set_status(span, code);
    let server_fault = matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    );
    if code != Code::Ok && (server_fault || !server) {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace a span belongs to: its OpenTelemetry trace when export is on, else the caller's (from `parent`), if
/// any.
fn trace_id_of(span: &Span, parent: &opentelemetry::Context) -> Option<TraceId> {
    let remote = || Some(parent.span().span_context().clone()).filter(|c| c.is_valid());
    if !crate::exporting() {
        return remote().map(|c| c.trace_id());
    }
    let own = span.context().span().span_context().clone();
    Some(own).filter(|c| c.is_valid()).or_else(remote).map(|c| c.trace_id())
}

/// The trace of a request, for a line logged outside its span (a watchdog on another thread): `span`'s trace when
/// export is on, else the one the request's `traceparent` header names, if any.
pub fn trace_id(span: &Span, traceparent: Option<&http::HeaderValue>) -> Option<TraceId> {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = traceparent {
        headers.insert(TRACEPARENT_HEADER, value.clone());
    }
    trace_id_of(span, &extract(&headers))
}

/// The address of the client a request came from (tonic records the connection's, in plaintext or over TLS).
fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    let tcp = extensions
        .get::<TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref));
    tcp?.remote_addr()
}

/// A tower layer that opens a server span per gRPC call (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> tower::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service [`ServerTraceLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A call's future: the routes' own when no span was built for it, else boxed with its span.
type TracedFuture<F, T> = Either<F, BoxFuture<T>>;

impl<S, B, R> tower::Service<http::Request<B>> for ServerTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TracedFuture<S::Future, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(UNTRACED_PREFIX) {
            return Either::Left(self.inner.call(request));
        }
        let rpc = path.trim_start_matches('/');
        let span = if crate::exporting() {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %rpc,
                otel.kind = "server",
                trace_id = field::Empty,
                otel.status_code = field::Empty,
            );
            let (service, method) = rpc.split_once('/').unwrap_or((rpc, ""));
            rpc_attributes::set_call(&span, service, method);
            rpc_attributes::set_server(&span, request.uri());
            if let Some(peer) = peer_addr(request.extensions()) {
                rpc_attributes::set_peer(&span, peer);
            }
            span
        } else {
            // What a log line written during the call shows of it: the call and its trace. At `debug`: at `info`
            // no line is written during a call but a stall's, which names them itself.
            tracing::debug_span!("grpc.server", otel.name = %rpc, trace_id = field::Empty)
        };
        if span.is_disabled() {
            // Filtered out (the default `info` without export): nothing is built per call.
            return Either::Left(self.inner.call(request));
        }
        let parent = extract(request.headers());
        if crate::exporting() {
            // Fails only when the span is filtered out: nothing to continue.
            let _ = span.set_parent(parent.clone());
        }
        if let Some(trace_id) = trace_id_of(&span, &parent) {
            span.record("trace_id", field::display(trace_id));
        }
        let response = span.in_scope(|| self.inner.call(request));
        Either::Right(Box::pin(async move {
            let response = response.instrument(span.clone()).await;
            // A handler's error travels in the headers (a trailers-only response); an OK reply's status is in the
            // trailers, which only a successful reply has.
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get(GRPC_STATUS)
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            record_status(&span, code, true);
            response
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_metadata() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static(traceparent));
        let cx = extract(&headers);
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(&mut metadata));
        assert_eq!(metadata.get("traceparent").and_then(|v| v.to_str().ok()), Some(traceparent));
    }

    #[test]
    fn garbage_traceparent_is_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static("not-a-trace"));
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
