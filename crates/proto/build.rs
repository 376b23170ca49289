//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into `OUT_DIR`, and writes the
//! encoded descriptor set (with imports and comments) that reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "notesuite/users/v1/users.proto",
    "notesuite/notes/v1/notes.proto",
    "notesuite/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    // Imports (google.protobuf.*) are included so that reflection clients can resolve every
    // type; source info carries the comments that `grpcurl describe` shows.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    std::fs::write(
        out_dir.join("notesuite_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
