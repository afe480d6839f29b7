//! offload compute (work in progress)
pub mod kernel;
