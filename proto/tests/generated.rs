//! The contract's generated code is checked in (`src/generated/`), as tonic's own health and reflection crates
//! check theirs in: building `offload-proto` then needs no build script, and a cold build of the binaries no
//! protobuf compiler (protox, prost-build and their dependencies, about 15 s of a cold release build's CPU, all of
//! it before any crate of ours could start). This test keeps the copy honest: it generates the code again from
//! `offload/v1/*.proto`, exactly as the build script did, and fails when the checked-in files differ.
//! `OFFLOAD_REGENERATE_PROTO=1 cargo test -p offload-proto --test generated` writes them after a `.proto` change.

use std::{fs, path::Path};

use prost::Message;

/// The proto files, relative to the crate's root (their names inside the descriptor set).
const PROTOS: [&str; 1] = ["offload/v1/offload.proto"];

#[test]
fn checked_in_code_is_what_the_proto_files_generate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join("offload-proto-generated");
    let _ = fs::remove_dir_all(&fresh);
    fs::create_dir_all(&fresh).expect("a scratch folder");
    let descriptors = protox::compile(PROTOS, [root]).expect("the .proto files compile");
    fs::write(fresh.join("offload_descriptor.bin"), descriptors.encode_to_vec()).expect("descriptor set written");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&fresh)
        .compile_fds(descriptors)
        .expect("code generated");

    let checked_in = root.join("src/generated");
    let regenerate = std::env::var_os("OFFLOAD_REGENERATE_PROTO").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for name in ["offload.v1.rs", "offload_descriptor.bin"] {
        let generated = fs::read(fresh.join(name)).expect("generated file");
        if regenerate {
            fs::write(checked_in.join(name), &generated).expect("checked-in file written");
        } else if fs::read(checked_in.join(name)).ok().as_deref() != Some(generated.as_slice()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "proto/src/generated/{{{}}} differ from what proto/offload/v1/*.proto generate: run \
         `OFFLOAD_REGENERATE_PROTO=1 cargo test -p offload-proto --test generated` and commit the result",
        stale.join(",")
    );
}
