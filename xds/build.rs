//! Compiles `../proto` (Legate's wire-compatible subset of Envoy's v3 API,
//! plus Legate's own gRPC APIs) with prost and tonic. protoc comes from
//! `protoc-bin-vendored`, so no system protoc is needed.

use std::path::{Path, PathBuf};

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let mut files = Vec::new();
    protos(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = prost_build::Config::new();
    // `Any.type_url`s are `type.googleapis.com/<full name>`, as Envoy's.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    config.include_file("wire.rs");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &files, &[root, well_known])?;
    Ok(())
}
