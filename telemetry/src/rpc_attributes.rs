//! The attributes of gRPC call spans, as OpenTelemetry's RPC semantic conventions name them: every name is a
//! constant of the `opentelemetry-semantic-conventions` crate (our OpenTelemetry release line), none hand-written.
//!
//! The RPC conventions are being stabilised with renames (the crate follows semantic conventions 1.42):
//! `rpc.system` became `rpc.system.name`, `rpc.service` is folded into a fully qualified `rpc.method`
//! (`offload.v1.Compute/Factorial`), and the numeric `rpc.grpc.status_code` became the code's name in
//! `rpc.response.status_code` (`DEADLINE_EXCEEDED`). As the conventions ask of an instrumentation that already
//! emitted the earlier names, the spans keep them (`rpc.system`, `rpc.service`, `rpc.method` = `Factorial`,
//! `rpc.grpc.status_code`: what tracing backends' gRPC views read today) unless `OTEL_SEMCONV_STABILITY_OPT_IN`
//! lists `rpc` (the new names only) or `rpc/dup` (both; `rpc.method` then holds the fully qualified name). Both
//! carry `server.address`/`server.port` and the `network.*` attributes of the connection.
//!
//! Attributes are OpenTelemetry's alone (the log lines do not show them): without export ([`crate::exporting`])
//! they are not built at all.

use std::{net::SocketAddr, sync::LazyLock};

use opentelemetry_semantic_conventions::attribute;
use tonic::{Code, codegen::http};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::code_name;

/// The environment variable the semantic conventions define for opting into stabilised names.
const OPT_IN: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";

/// Which names the spans carry (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// The names RPC spans carried before the renames (the default).
    Established,
    /// Only the stabilised names (`rpc`).
    Stable,
    /// Both (`rpc/dup`).
    Both,
}

impl Names {
    /// The choice `OTEL_SEMCONV_STABILITY_OPT_IN`'s value (a comma-separated list) makes; `rpc/dup` wins over
    /// `rpc`, as the conventions say.
    fn from_opt_in(value: &str) -> Self {
        let listed = |wanted: &str| value.split(',').any(|v| v.trim() == wanted);
        if listed("rpc/dup") {
            Self::Both
        } else if listed("rpc") {
            Self::Stable
        } else {
            Self::Established
        }
    }

    /// The process's choice, read once.
    fn chosen() -> Self {
        static CHOSEN: LazyLock<Names> =
            LazyLock::new(|| Names::from_opt_in(&std::env::var(OPT_IN).unwrap_or_default()));
        *CHOSEN
    }

    fn established(self) -> bool {
        self != Self::Stable
    }

    fn stable(self) -> bool {
        self != Self::Established
    }
}

/// Names the call: the RPC system (`grpc`), the service (`offload.v1.Compute`) and the method (`Factorial`).
#[allow(deprecated)] // The established names, kept by default as the conventions ask (see the module docs).
pub(crate) fn set_call(span: &Span, service: &str, method: &str) {
    if !crate::exporting() {
        return;
    }
    let names = Names::chosen();
    if names.established() {
        span.set_attribute(attribute::RPC_SYSTEM, "grpc");
        span.set_attribute(attribute::RPC_SERVICE, service.to_owned());
    }
    if names.stable() {
        span.set_attribute(attribute::RPC_SYSTEM_NAME, "grpc");
        span.set_attribute(attribute::RPC_METHOD, format!("{service}/{method}"));
    } else {
        span.set_attribute(attribute::RPC_METHOD, method.to_owned());
    }
}

/// The gRPC status the call ended with.
#[allow(deprecated)] // As in [`set_call`].
pub(crate) fn set_status(span: &Span, code: Code) {
    if !crate::exporting() {
        return;
    }
    let names = Names::chosen();
    if names.established() {
        span.set_attribute(attribute::RPC_GRPC_STATUS_CODE, code as i64);
    }
    if names.stable() {
        span.set_attribute(attribute::RPC_RESPONSE_STATUS_CODE, code_name(code));
    }
}

/// The server called (client spans) or calling into (server spans): `server.address` and `server.port`, from a
/// URL or a request's `:authority`. The port is the scheme's when the URL names none.
pub(crate) fn set_server(span: &Span, uri: &http::Uri) {
    if !crate::exporting() {
        return;
    }
    let Some(host) = uri.host() else { return };
    // An IPv6 literal is written in brackets in a URI, but not in the attribute.
    span.set_attribute(attribute::SERVER_ADDRESS, host.trim_start_matches('[').trim_end_matches(']').to_owned());
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    if let Some(port) = port {
        span.set_attribute(attribute::SERVER_PORT, i64::from(port));
    }
}

/// The connection a server span's call came on: the peer's address and port, TCP, and IPv4 or IPv6.
pub(crate) fn set_peer(span: &Span, peer: SocketAddr) {
    if !crate::exporting() {
        return;
    }
    span.set_attribute(attribute::NETWORK_PEER_ADDRESS, peer.ip().to_string());
    span.set_attribute(attribute::NETWORK_PEER_PORT, i64::from(peer.port()));
    span.set_attribute(attribute::NETWORK_TRANSPORT, "tcp");
    span.set_attribute(attribute::NETWORK_TYPE, if peer.is_ipv4() { "ipv4" } else { "ipv6" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_variable_chooses_the_names() {
        assert_eq!(Names::from_opt_in(""), Names::Established);
        assert_eq!(Names::from_opt_in("http"), Names::Established);
        assert_eq!(Names::from_opt_in("http, rpc"), Names::Stable);
        assert_eq!(Names::from_opt_in("rpc,rpc/dup"), Names::Both, "rpc/dup wins");
    }

    #[test]
    fn code_names_are_grpcs() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::from(4)), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::from(16)), "UNAUTHENTICATED");
    }
}
