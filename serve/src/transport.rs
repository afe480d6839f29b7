//! HTTP/2 and TLS settings both servers use (the limits themselves are [`crate::limits`]), so they behave the same on the wire.

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_reflection::server::{v1::ServerReflection as V1, v1alpha::ServerReflection as V1Alpha};

use crate::limits::ConnectionLimits;

/// A tonic server builder with the HTTP/2 settings of `limits`, and HTTP/1 refused (gRPC is HTTP/2 only; an
/// HTTP/1 connection would only be a slower way to hold a connection slot).
pub fn server(limits: &ConnectionLimits) -> Server {
    limits.apply(Server::builder().accept_http1(false))
}

/// A PEM file's contents, with the flag that named it in the error.
pub fn read_pem(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
}

/// The server's TLS: its certificate chain and key (PEM) and, for mutual TLS, the CA whose certificates clients
/// must present (connections without one are refused in the handshake).
pub fn server_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<ServerTlsConfig> {
    let identity = Identity::from_pem(read_pem(cert, "--tls-cert")?, read_pem(key, "--tls-key")?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem(ca, "--tls-client-ca")?));
    }
    Ok(tls)
}

/// Server reflection, v1 (current grpcurl) and v1alpha (ghz and older tools), describing the offload services and
/// the health service, so clients need no proto files.
#[allow(clippy::type_complexity)]
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl V1>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<impl V1Alpha>,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(offload_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
