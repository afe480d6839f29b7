//! The `offload.v1` contract, shared by compute, gateway, bench and tests so that no side can drift from it.
//!
//! The `.proto` source lives in `proto/offload/v1/`; the code generated from it is checked in under `src/generated/`
//! (kept equal to the source by `tests/generated.rs`, which also says how to regenerate it) and the encoded
//! `FileDescriptorSet` is exported for `tonic-reflection`. The enums people name (`ExecMode`, `UpstreamWait`) carry
//! their names here, once ([`Named`]): command-line values, metric labels and report columns all come from them.

/// Generated code for package `offload.v1`.
pub mod v1 {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
    include!("generated/offload.v1.rs");
}

/// Encoded `FileDescriptorSet` of every offload proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/offload_descriptor.bin");

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

/// A proto enum that people also name: on the command line (`--default-mode rayon`), in metric labels
/// (`mode="rayon"`) and in reports. The names are defined once, here, beside the enum; `Display` writes them and
/// `FromStr` reads them (and the proto's own `EXEC_MODE_RAYON` form), so every flag, label and report agrees.
pub trait Named: Copy + Send + Sync + 'static {
    /// The values a person may choose: every value but `UNSPECIFIED`, in the order reports list them.
    const CHOICES: &'static [Self];

    /// The short lower-case name (`rayon`, `spawn-blocking`, …).
    fn short_name(self) -> &'static str;

    /// The proto's own name (`EXEC_MODE_RAYON`).
    fn proto_name(self) -> &'static str;
}

/// A name that is none of an enum's values; the message lists the ones there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    name: String,
    expected: Vec<&'static str>,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown value {:?}: expected one of {}", self.name, self.expected.join(", "))
    }
}

impl std::error::Error for UnknownName {}

/// Reads a [`Named`] value: its short name or its proto name, in any case, with `_` or `-`.
fn parse_named<T: Named>(name: &str) -> Result<T, UnknownName> {
    let wanted = name.trim().to_ascii_lowercase().replace('_', "-");
    T::CHOICES
        .iter()
        .copied()
        .find(|v| v.short_name() == wanted || v.proto_name().eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| UnknownName {
            name: name.to_owned(),
            expected: T::CHOICES.iter().map(|v| v.short_name()).collect(),
        })
}

impl Named for v1::ExecMode {
    const CHOICES: &'static [Self] = &Self::REQUESTABLE;

    fn short_name(self) -> &'static str {
        v1::ExecMode::short_name(self)
    }

    fn proto_name(self) -> &'static str {
        self.as_str_name()
    }
}

impl v1::ExecMode {
    /// The mode's short lower-case name: its command-line value, metric label and report column (`rayon`,
    /// `spawn-blocking`, …).
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

impl std::fmt::Display for v1::ExecMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}

impl std::str::FromStr for v1::ExecMode {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, UnknownName> {
        parse_named(name)
    }
}

impl Named for v1::UpstreamWait {
    const CHOICES: &'static [Self] = &Self::REQUESTABLE;

    fn short_name(self) -> &'static str {
        v1::UpstreamWait::short_name(self)
    }

    fn proto_name(self) -> &'static str {
        self.as_str_name()
    }
}

impl v1::UpstreamWait {
    /// The style's short lower-case name: its command-line value, metric label and report column (`async`,
    /// `spawn-blocking`, …).
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

impl std::fmt::Display for v1::UpstreamWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}

impl std::str::FromStr for v1::UpstreamWait {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, UnknownName> {
        parse_named(name)
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{ExecMode, UpstreamWait};

    #[test]
    fn names_round_trip_and_accept_the_proto_form() {
        for mode in ExecMode::REQUESTABLE {
            assert_eq!(mode.to_string().parse::<ExecMode>(), Ok(mode));
            assert_eq!(mode.as_str_name().parse::<ExecMode>(), Ok(mode));
        }
        for wait in UpstreamWait::REQUESTABLE {
            assert_eq!(wait.to_string().parse::<UpstreamWait>(), Ok(wait));
        }
        assert_eq!("Spawn_Blocking".parse::<ExecMode>(), Ok(ExecMode::SpawnBlocking));
        let unknown = "fast".parse::<ExecMode>().expect_err("not a mode");
        assert!(unknown.to_string().contains("inline, spawn-task"), "{unknown}");
        assert!("unspecified".parse::<UpstreamWait>().is_err(), "UNSPECIFIED is not a choice");
    }
}
