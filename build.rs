//! Compiles `proto/` with a pure-Rust protobuf compiler (protox), so a fresh machine needs no
//! `protoc`, and generates the canonical proto3 JSON mapping with pbjson.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/avlgate/v1/telemetry.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("avlgate_descriptor.bin");

    let fds = protox::compile(protos, ["proto"])?;
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(&descriptor_path, &bytes)?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        // Our Timestamp writes canonical JSON (`Z`); pbjson-types' writes `+00:00`.
        .extern_path(
            ".google.protobuf.Timestamp",
            "crate::event::timestamp::Timestamp",
        )
        // Ordered attribute maps: stable JSON output and stable protobuf bytes.
        .btree_map(["."])
        // `Telemetry` is large (~1 KB of optional fields): boxed, events stay small to move,
        // and records without normalized values pay nothing for it.
        .boxed(".avlgate.v1.TelemetryEvent.telemetry")
        .compile_protos(&protos, &["proto"])?;

    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .btree_map(["."])
        .build(&[".avlgate"])?;
    Ok(())
}
