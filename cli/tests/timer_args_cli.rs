//! `skycat launch --heartbeat-secs` and `-i` out of range fail at argument parsing, with one
//! error naming the flag, before anything is planned or launched (they become the agent's
//! `heartbeat_interval_secs` / `idle_minutes`, which the agent would refuse after the launch).

use std::path::Path;
use std::process::Output;

use skycat_testkit::output::stderr;

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

#[test]
fn huge_or_invalid_heartbeat_and_idle_values_are_refused_with_the_flag_named() {
    let home = tempfile::tempdir().expect("tempdir");
    for (flag, value, needle) in [
        ("--heartbeat-secs", "1e20", "at most 604800 seconds"),
        ("--heartbeat-secs", "inf", "at most 604800 seconds"),
        ("--heartbeat-secs", "NaN", "at most 604800 seconds"),
        ("--heartbeat-secs", "0", "> 0"),
        ("--heartbeat-secs", "-1", "> 0"),
        ("--heartbeat-secs", "soon", "must be a number of seconds"),
        ("--idle-minutes-to-autostop", "1e20", "at most 525600"),
        ("--idle-minutes-to-autostop", "-5", ">= 0"),
    ] {
        let arg = format!("{flag}={value}");
        let out = skycat(home.path(), &["launch", "-c", "t1", "--dryrun", &arg]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{arg}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(flag) && first.contains(needle), "{arg}: {err}");
        assert!(!err.contains("panicked"), "{arg}: {err}");
    }
    // gpunode shares the -i rule.
    let out = skycat(home.path(), &["gpunode", "-i", "1e20", "--print-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 525600"), "{}", stderr(&out));
}

#[test]
fn in_range_values_get_past_argument_parsing() {
    let home = tempfile::tempdir().expect("tempdir");
    // --dryrun with no pools: whatever fails next is not the arguments (exit 2 is clap's).
    let out = skycat(home.path(), &["launch", "-c", "t1", "--dryrun", "--heartbeat-secs", "604800", "-i", "525600"]);
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
