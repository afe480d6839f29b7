//! Compiles `offload/v1/*.proto` with `protox`, a pure-Rust protobuf compiler, so a fresh machine needs no `protoc`.
//! The encoded descriptor set is written beside the generated code for server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["offload/v1/offload.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(protos, ["."])?;
    fs::write(out_dir.join("offload_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
