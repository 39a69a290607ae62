//! The checked-in generated code must match what the pure-Rust protobuf
//! compiler (`protox`) and `tonic-prost-build` produce from
//! `proto/workload.proto` today. No system `protoc` is involved.
//!
//! Run with `WORKLOAD_API_REGENERATE=1` to rewrite the checked-in file.

use std::path::{Path, PathBuf};

fn generate(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/workload.proto")], [root.join("proto")])
        .expect("workload.proto compiles");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_fds(fds)
        .expect("code generation succeeds");
    // No `package` in the proto: prost-build names the file `_.rs`.
    out.join("_.rs")
}

#[test]
fn generated_code_is_current() {
    let tmp = std::env::temp_dir().join(format!("workload-api-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let fresh = std::fs::read_to_string(generate(&tmp)).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto/generated.rs");
    if std::env::var_os("WORKLOAD_API_REGENERATE").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "src/proto/generated.rs is stale: rerun this test with WORKLOAD_API_REGENERATE=1"
    );
}

#[test]
fn service_paths_have_no_package() {
    let generated = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto/generated.rs"),
    )
    .unwrap();
    for method in [
        "FetchX509SVID",
        "FetchX509Bundles",
        "FetchJWTSVID",
        "FetchJWTBundles",
        "ValidateJWTSVID",
    ] {
        let path = format!("\"/SpiffeWorkloadAPI/{method}\"");
        assert!(generated.contains(&path), "missing {path}");
    }
}
