//! What a finished child process (the `skycat` binary) printed.

use std::path::Path;
use std::process::{Command, Output};

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as JSON; the process must have succeeded (else its stderr is the failure).
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Runs the binary `bin` (a test's `env!("CARGO_BIN_EXE_skycat")`) with `args`, on the skycat
/// home `home`, without the caller's log filter or API token; waits for it.
pub fn run_in(bin: &str, home: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("SKYCAT_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("SKYCAT_API_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"))
}
