//! Link the `skycat` binary with packed relative relocations (DT_RELR) where the toolchain can.
//!
//! A position-independent `skycat` carries ~180k relative relocations (vtables, string tables of
//! the SDKs); the dynamic loader applies each of them at every start, which is a third of the
//! time of a command that otherwise answers in a few milliseconds. RELR encodes them as a bitmap
//! that the loader walks an order of magnitude faster. It needs GNU ld 2.38+ (or lld) and glibc
//! 2.36+: the linker is probed once here, and without support the binary links as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.contains("linux-gnu") {
        return;
    }
    if linker_supports_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether `cc` links a position-independent program with `-z pack-relative-relocs`.
fn linker_supports_relr() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return false };
    let src = out.join("relr_probe.c");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .args(["-pie", "-fPIE", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(out.join("relr_probe"))
        .arg(&src)
        .output()
        .is_ok_and(|o| o.status.success())
}
