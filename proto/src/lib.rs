//! The `offload.v1` contract, shared by compute, gateway, bench and tests so that no side can drift from it.
//!
//! The `.proto` source lives in `proto/offload/v1/`; generated code is included from `OUT_DIR` and the encoded
//! `FileDescriptorSet` is exported for `tonic-reflection`.

/// Generated code for package `offload.v1`.
pub mod v1 {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("offload.v1");
}

/// Encoded `FileDescriptorSet` of every offload proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("offload_descriptor");

/// Fully qualified service names, as health checks and reflection name them.
pub mod service_names {
    /// `offload.v1.Compute`
    pub const COMPUTE: &str = "offload.v1.Compute";
    /// `offload.v1.Gateway`
    pub const GATEWAY: &str = "offload.v1.Gateway";
}

/// Largest gRPC message either server sends or accepts, in bytes. The biggest reply is a factorial's decimal
/// string: n = 100 000 has 456 574 digits, so 4 MiB (tonic's default decode limit, which clients such as grpcurl
/// share) leaves room for n up to about 800 000 while keeping a single reply's memory bounded.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl v1::ExecMode {
    /// The mode's short lower-case name, as used on the command line (`rayon`, `spawn-blocking`, …).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Inline => "inline",
            Self::SpawnBlocking => "spawn-blocking",
            Self::BlockInPlace => "block-in-place",
            Self::Rayon => "rayon",
            Self::Adaptive => "adaptive",
            Self::SpawnTask => "spawn-task",
        }
    }

    /// Every concrete mode a client can ask for, in the order reports list them.
    pub const REQUESTABLE: [Self; 6] =
        [Self::Inline, Self::SpawnTask, Self::SpawnBlocking, Self::BlockInPlace, Self::Rayon, Self::Adaptive];
}

impl v1::UpstreamWait {
    /// The style's short lower-case name, as used on the command line (`async`, `spawn-blocking`, …).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Async => "async",
            Self::Blocking => "blocking",
            Self::SpawnBlocking => "spawn-blocking",
            Self::SpawnTask => "spawn-task",
        }
    }

    /// Every concrete style, in the order reports list them.
    pub const REQUESTABLE: [Self; 4] = [Self::Async, Self::Blocking, Self::SpawnBlocking, Self::SpawnTask];
}
