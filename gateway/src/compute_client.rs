//! The client a replica's calls go through: the gateway's own unary client ([`crate::unary`]) or tonic's
//! generated `ComputeClient`, each on the gateway's [`Connection`]. Both exist only while `offload-bench overhead
//! --client-stacks` prices them against each other (docs/overhead.md); `--compute-client-stack` picks one.

use offload_proto::v1::compute_client::ComputeClient as Generated;
use tonic::codec::CompressionEncoding;

use crate::{config::ClientStack, connection::Connection, unary::UnaryClient};

/// A client on one connection to one replica. Cheap to clone.
#[derive(Debug, Clone)]
pub enum ComputeClient {
    Unary(UnaryClient),
    Generated(Generated<Connection>),
}

impl ComputeClient {
    /// The client `stack` names on `connection`, with the reply limit and compression the gateway's flags set.
    pub fn new(
        stack: ClientStack,
        connection: Connection,
        max_message_bytes: usize,
        accept_compressed: Option<CompressionEncoding>,
    ) -> Self {
        match stack {
            ClientStack::UnaryOwn => Self::Unary(UnaryClient::new(connection, max_message_bytes, accept_compressed)),
            ClientStack::TonicOwn | ClientStack::TonicHyper => {
                let mut client = Generated::new(connection)
                    .max_decoding_message_size(max_message_bytes)
                    .max_encoding_message_size(max_message_bytes);
                if let Some(encoding) = accept_compressed {
                    client = client.accept_compressed(encoding);
                }
                Self::Generated(client)
            }
        }
    }
}

#[cfg(test)]
mod tests;
