//! TCP, HTTP/2 and TLS settings both servers use, so they behave the same on the wire.

use std::{path::Path, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{
    codec::CompressionEncoding,
    transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_reflection::server::{v1::ServerReflection as V1, v1alpha::ServerReflection as V1Alpha};

/// The compression every service of both servers accepts, and uses for replies to clients that accept it: gzip,
/// the one ghz, grpcurl, grpc-go and grpcio clients all implement.
pub const COMPRESSION: CompressionEncoding = CompressionEncoding::Gzip;

/// HTTP/2 PINGs on idle connections every 20 s (and give up after 10 s without an answer): dead peers behind a
/// NAT or a killed pod are noticed in half a minute instead of the kernel's two hours.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accepted-connection stream for an already bound listener (tests bind port 0 and pass the listener in).
/// `TCP_NODELAY` is on: replies are small and latency-bound, Nagle's algorithm would add up to 40 ms.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A tonic server builder with the shared HTTP/2 settings.
pub fn server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
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
