//! The client a replica's calls go through: tonic's generated `ComputeClient` on the gateway's own HTTP/2
//! [`Connection`], with the reply limit and the compression the gateway's flags set.
//!
//! tonic's client rather than one of our own: a hand-written unary client saved under 10 % of the gateway's CPU
//! per call, too little to pay for protocol code that every tonic upgrade must be checked against
//! (docs/decisions/0033-gateway-client-tonic-on-own-connection.md). The tests beside it play compute with a raw
//! HTTP/2 peer: what a gRPC client must do with the replies and connection events a real server produces.

use tonic::codec::CompressionEncoding;

use crate::connection::Connection;

/// A client on one connection to one replica. Cheap to clone.
pub type ComputeClient = offload_proto::v1::compute_client::ComputeClient<Connection>;

/// A client on `connection` accepting replies up to `max_message_bytes` (`--max-message-bytes`), compressed only
/// as `accept_compressed` allows (`--compute-compression`): a reply in any other `grpc-encoding` is
/// `UNIMPLEMENTED` as soon as its headers say so.
pub fn on(
    connection: Connection,
    max_message_bytes: usize,
    accept_compressed: Option<CompressionEncoding>,
) -> ComputeClient {
    let client = ComputeClient::new(connection)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    match accept_compressed {
        Some(encoding) => client.accept_compressed(encoding),
        None => client,
    }
}

#[cfg(test)]
mod tests;
