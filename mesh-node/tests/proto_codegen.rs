//! The checked-in node API code must match what the pure-Rust protobuf
//! compiler (`protox`) and `tonic-prost-build` produce from
//! `proto/node.proto` today. No system `protoc` is involved.
//!
//! Run with `MESH_NODE_REGENERATE=1` to rewrite the checked-in file.

use std::path::Path;

#[test]
fn node_api_generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let fds = protox::compile([root.join("proto/node.proto")], [root.join("proto")])
        .expect("node.proto compiles");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(tmp.path())
        .compile_fds(fds)
        .expect("code generation succeeds");
    let fresh = std::fs::read_to_string(tmp.path().join("meshnode.node.v1.rs")).unwrap();
    let checked_in = root.join("src/proto/generated.rs");
    if std::env::var_os("MESH_NODE_REGENERATE").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "src/proto/generated.rs is stale: rerun this test with MESH_NODE_REGENERATE=1"
    );
}
