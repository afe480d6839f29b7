//! HTTP/2 and TLS settings both servers use (the limits themselves are [`crate::limits`]), so they behave the same on the wire.

use std::path::Path;

use anyhow::Context;
use tonic::{
    codec::CompressionEncoding,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tonic_reflection::server::{v1::ServerReflection as V1, v1alpha::ServerReflection as V1Alpha};

use crate::limits::ConnectionLimits;

/// The compression every service of both servers accepts, and uses for replies to clients that accept it: gzip,
/// the one ghz, grpcurl, grpc-go and grpcio clients all implement.
pub const COMPRESSION: CompressionEncoding = CompressionEncoding::Gzip;

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

/// Server reflection, v1 (current grpcurl) and v1alpha (ghz and older tools), listing exactly what this server
/// serves: `service` (`offload.v1.Compute` or `offload.v1.Gateway`), health and reflection itself. The offload
/// descriptor set holds both offload services; without the explicit list compute would also advertise the
/// gateway's service, which it answers with `UNIMPLEMENTED`. Every descriptor stays registered, so the messages
/// both services share still resolve.
#[allow(clippy::type_complexity)]
pub fn reflection(
    service: &str,
) -> Result<
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
            // Each build adds its own version's descriptor only: both are registered so either version can
            // describe the other, which it lists.
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
            // A server serves both reflection versions, so it lists both.
            .with_service_name(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME)
            .with_service_name(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME)
    };
    let v1 = builder().build_v1()?.accept_compressed(COMPRESSION).send_compressed(COMPRESSION);
    let v1alpha = builder().build_v1alpha()?.accept_compressed(COMPRESSION).send_compressed(COMPRESSION);
    Ok((v1, v1alpha))
}
