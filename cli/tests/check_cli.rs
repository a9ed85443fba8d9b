//! `skycat check` through the real binary, with a temp SKYCAT_HOME and HOME and an environment
//! cleared of every credential: no credentials → exit 0 and "prices only" everywhere; AWS
//! verified against moto's real server (fake keys, `AWS_ENDPOINT_URL_EC2` on loopback) →
//! "enabled (launch)" and cached; a closed loopback port → not verified, exit 0; Lambda against
//! a loopback server that checks the Bearer key. Nothing but 127.0.0.1 is ever dialed.
//!
//! moto must be installed (`scripts/ci-setup-moto.sh`); without it the AWS test fails, saying so.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use skycat_testkit::free_port as closed_port;
use skycat_testkit::moto::start_moto;
use skycat_testkit::output::{json, stderr, stdout};

const CLOUDS: &[&str] = &["aws", "azure", "gcp", "ibm", "kubernetes", "lambda", "oci", "runpod", "scp", "vast"];

/// `skycat ARGS` with only HOME, SKYCAT_HOME, PATH and `env` set.
fn skycat(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skycat"));
    cmd.args(args)
        .env_clear()
        .env("HOME", dir.join("home"))
        .env("SKYCAT_HOME", dir.join("skycat"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run skycat")
}

fn cache(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("skycat/enabled_clouds.json")).expect("cache written");
    serde_json::from_str(&text).expect("cache is JSON")
}

/// The table line of `cloud`.
fn line<'a>(table: &'a str, cloud: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(cloud))
        .unwrap_or_else(|| panic!("no row for {cloud} in:\n{table}"))
}

#[test]
fn no_credentials_exits_0_with_prices_only_everywhere_and_writes_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = skycat(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for c in CLOUDS {
        let l = line(&text, c);
        assert!(l.contains("prices only"), "{c}: {l}");
    }
    assert!(line(&text, "aws").contains("none found"), "{text}");
    // No kubeconfig in the (empty) HOME and no KUBECONFIG: nothing dialed, nothing found.
    assert!(line(&text, "kubernetes").contains("none found"), "{text}");
    assert!(line(&text, "oci").contains("public price list; no credentials needed"), "{text}");
    assert!(line(&text, "ssh").contains("enabled (launch)"), "{text}");
    assert!(
        text.contains("aws: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, then run `skycat check aws`"),
        "{text}"
    );

    let c = cache(dir.path());
    let clouds = c["clouds"].as_object().expect("clouds");
    assert_eq!(clouds.keys().map(String::as_str).collect::<Vec<_>>(), CLOUDS);
    for (name, state) in clouds {
        assert_eq!(state["launch"], false, "{name}: {state}");
        assert_eq!(state["verified"], false, "{name}: {state}");
        assert!(state["status"].as_str().is_some_and(|s| s.starts_with("prices only")), "{name}: {state}");
    }
    assert_eq!(clouds["aws"]["credentials"], "none found");

    // --json: the same, one object per cloud plus ssh.
    let rows = json(&skycat(dir.path(), &["check", "--json"], &[]));
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), CLOUDS.len() + 1);
    for r in rows {
        let launch = r["cloud"] == "ssh";
        assert_eq!(r["launch"], launch, "{r}");
    }
}

#[test]
fn unknown_cloud_is_one_line_listing_the_known_ones_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = skycat(dir.path(), &["check", "aws", "digitalocean"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("unknown cloud `digitalocean`"), "{err}");
    for c in CLOUDS.iter().chain(&["ssh"]) {
        assert!(err.contains(c), "{c} missing from: {err}");
    }
    assert!(!dir.path().join("skycat/enabled_clouds.json").exists(), "nothing is cached on a usage error");
}

#[test]
fn a_corrupt_cache_is_reported_and_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("skycat")).expect("mkdir");
    std::fs::write(dir.path().join("skycat/enabled_clouds.json"), "{ not json").expect("write");
    let out = skycat(dir.path(), &["check", "oci"], &[]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("enabled_clouds.json: unreadable"), "{}", stderr(&out));
    let c = cache(dir.path());
    assert_eq!(c["clouds"].as_object().expect("clouds").len(), 1);
}

// ---- AWS against moto

#[test]
fn aws_verified_against_moto_enables_launch_and_a_closed_port_does_not() {
    let moto = start_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    // Every cloud first, without credentials.
    assert!(skycat(dir.path(), &["check"], &[]).status.success());
    let before = cache(dir.path());

    let keys = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];
    let mut env = keys.to_vec();
    env.push(("AWS_ENDPOINT_URL_EC2", &moto.url));
    let out = skycat(dir.path(), &["check", "aws"], &env);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let l = line(&text, "aws");
    assert!(l.contains("enabled (launch)") && l.contains("ec2:DescribeRegions"), "{text}");
    assert!(l.contains("env AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(!text.contains("lambda"), "only aws was checked:\n{text}");

    let after = cache(dir.path());
    assert_eq!(after["clouds"]["aws"]["launch"], true, "{after}");
    assert_eq!(after["clouds"]["aws"]["verified"], true, "{after}");
    assert_eq!(after["clouds"]["aws"]["status"], "enabled (launch)");
    // Only aws was updated: every other entry is byte-for-byte what the first run wrote.
    for c in CLOUDS.iter().filter(|c| **c != "aws") {
        assert_eq!(after["clouds"][c], before["clouds"][c], "{c}");
    }

    // A profile in the shared credentials file works the same way.
    let aws_dir = dir.path().join("home/.aws");
    std::fs::create_dir_all(&aws_dir).expect("mkdir");
    std::fs::write(aws_dir.join("credentials"), "[ci]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        .expect("write");
    let rows =
        json(&skycat(dir.path(), &["check", "aws", "--json"], &[("AWS_PROFILE", "ci"), ("AWS_ENDPOINT_URL_EC2", &moto.url)]));
    let aws = &rows[0];
    assert_eq!(aws["status"], "enabled (launch)", "{aws}");
    assert!(aws["credentials"].as_str().is_some_and(|c| c.ends_with(".aws/credentials (profile ci)")), "{aws}");

    // Wrong endpoint: a closed loopback port. Not verified, one-line reason, exit 0.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let mut env = keys.to_vec();
    env.push(("AWS_ENDPOINT_URL_EC2", &dead));
    let out = skycat(dir.path(), &["check", "aws", "--json"], &env);
    let rows = json(&out);
    let aws = &rows[0];
    assert_eq!(aws["verified"], false, "{aws}");
    assert_eq!(aws["launch"], false, "{aws}");
    assert_eq!(aws["status"], "prices only (credentials not verified)", "{aws}");
    let error = aws["error"].as_str().expect("an error");
    assert!(!error.is_empty() && !error.contains('\n'), "{error:?}");
    assert_eq!(cache(dir.path())["clouds"]["aws"]["launch"], false);
    let table = skycat(dir.path(), &["check", "aws"], &env);
    assert!(table.status.success());
    assert!(line(&stdout(&table), "aws").contains("not verified (ec2:DescribeRegions"), "{}", stdout(&table));
}

// ---- Lambda against a loopback server that checks the key

/// Answers `GET /api/v1/instance-types`: 200 for `Bearer good-key`, else 401.
fn start_lambda() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = Vec::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                request.push(l.trim_end().to_string());
            }
            let path_ok = request.first().is_some_and(|r| r.starts_with("GET /api/v1/instance-types "));
            let key_ok = request.iter().any(|h| h.eq_ignore_ascii_case("authorization: Bearer good-key"));
            let (status, body) = match (path_ok, key_ok) {
                (true, true) => ("200 OK", r#"{"data":{}}"#),
                (true, false) => ("401 Unauthorized", r#"{"error":{"code":"global/invalid-api-key"}}"#),
                _ => ("404 Not Found", r#"{}"#),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}/")
}

#[test]
fn lambda_key_verified_enables_launch_then_rejected_is_prices_only() {
    let base = start_lambda();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = skycat(dir.path(), &["check", "lambda"], &[("SKYCAT_LAMBDA_ENDPOINT", &base), ("LAMBDA_API_KEY", "good-key")]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let l = stdout(&out);
    let l = line(&l, "lambda");
    assert!(l.contains("verified (GET /api/v1/instance-types)") && l.contains("enabled (launch)"), "{l}");
    assert_eq!(cache(dir.path())["clouds"]["lambda"]["verified"], true);
    assert_eq!(cache(dir.path())["clouds"]["lambda"]["launch"], true);

    let out = skycat(dir.path(), &["check", "lambda"], &[("SKYCAT_LAMBDA_ENDPOINT", &base), ("LAMBDA_API_KEY", "stale")]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let l = line(&text, "lambda");
    assert!(l.contains("credentials rejected") && l.contains("HTTP 401"), "{l}");
    assert!(!text.contains("stale"), "the key never shows: {text}");
    let c = cache(dir.path());
    assert_eq!(c["clouds"]["lambda"]["verified"], false);
    assert_eq!(c["clouds"]["lambda"]["launch"], false);
}
