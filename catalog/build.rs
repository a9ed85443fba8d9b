//! Embeds the shipped default catalog (`catalog-data/*.parquet`, their `*.idx` query indexes
//! and `manifest.json`) when the `embedded-default` feature is on, so `skycat` works from any
//! directory.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let data = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../catalog-data");
    println!("cargo:rerun-if-changed={}", data.display());
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut indexes: Vec<(String, PathBuf)> = Vec::new();
    let mut manifest = None;
    if std::env::var_os("CARGO_FEATURE_EMBEDDED_DEFAULT").is_some() {
        if let Ok(entries) = std::fs::read_dir(&data) {
            for entry in entries.flatten() {
                let path = entry.path();
                println!("cargo:rerun-if-changed={}", path.display());
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(cloud) = name.strip_suffix(".parquet") {
                    files.push((cloud.to_string(), path.canonicalize().unwrap_or(path)));
                } else if let Some(cloud) = name.strip_suffix(".idx") {
                    indexes.push((cloud.to_string(), path.canonicalize().unwrap_or(path)));
                } else if name == "manifest.json" {
                    manifest = Some(path.canonicalize().unwrap_or(path));
                }
            }
        }
    }
    files.sort();
    let mut code = String::from("/// (cloud, Parquet bytes) of the shipped default catalog.\npub static EMBEDDED_CLOUDS: &[(&str, &[u8])] = &[\n");
    for (cloud, path) in &files {
        let _ = writeln!(code, "    ({cloud:?}, include_bytes!({:?})),", path.display().to_string());
    }
    indexes.sort();
    code.push_str("];\n/// (cloud, index bytes) of the shipped default catalog (see `crate::index`).\n#[allow(dead_code)]\npub static EMBEDDED_INDEXES: &[(&str, &[u8])] = &[\n");
    for (cloud, path) in &indexes {
        let _ = writeln!(code, "    ({cloud:?}, include_bytes!({:?})),", path.display().to_string());
    }
    code.push_str("];\n/// The shipped manifest.json, if any.\npub static EMBEDDED_MANIFEST: Option<&str> = ");
    match manifest {
        Some(p) => {
            let _ = writeln!(code, "Some(include_str!({:?}));", p.display().to_string());
        }
        None => code.push_str("None;\n"),
    }
    std::fs::write(out.join("embedded.rs"), code).expect("write embedded.rs");
}
