//! `skycat serve token create|list|revoke` and a real `skycat serve` through the binary:
//! the first start makes an admin token and saves it as the CLI's credentials (0600); off-loopback
//! style HTTPS (`--tls` on loopback) with a self-signed certificate kept in $SKYCAT_HOME/tls;
//! `skycat jobs queue` works with the saved token and is refused with an unknown one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use skycat_testkit::output::{json, stderr, stdout};
use skycat_testkit::serve::Serve;

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

/// Starts `skycat serve --addr ARGS…` on `home` (its stderr kept in `home`/serve.log); returns
/// it once it printed `ready` (within 2 minutes), with what it printed so far.
fn start_serve(home: &Path, addr_and_flags: &[&str], ready: &str) -> (Serve, String) {
    let cmd = skycat_testkit::serve::command(env!("CARGO_BIN_EXE_skycat"), home, addr_and_flags);
    Serve::start(cmd, &home.join("serve.log"), ready)
}

#[test]
fn tokens_are_shown_once_listed_without_values_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    // A home that does not exist yet: made owner-only.
    let home = tmp.path().join("sky");
    let home = home.as_path();
    let out = skycat(home, &["serve", "token", "create", "--name", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("skycat_") && token.len() == 71, "{token}");
    let out = skycat(home, &["serve", "token", "create", "--name", "alice"]);
    assert!(!out.status.success() && stderr(&out).contains("exists"), "{}", stderr(&out));
    let out = skycat(home, &["serve", "token", "create", "--name", "x", "--role", "root"]);
    assert!(!out.status.success() && stderr(&out).contains("--role"), "{}", stderr(&out));
    let list = json(&skycat(home, &["serve", "token", "list", "--json"]));
    assert_eq!(list[0]["name"], "alice");
    assert_eq!(list[0]["role"], "user");
    assert!(!list.to_string().contains(&token[7..]), "a listed value: {list}");
    let out = skycat(home, &["serve", "token", "revoke", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&skycat(home, &["serve", "token", "list", "--json"]));
    assert!(list[0]["revoked_at"].is_string(), "{list}");
    let mode = std::fs::metadata(home).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "home mode {mode:o}");
}

#[test]
fn first_start_saves_an_admin_token_and_serves_https_with_a_kept_certificate() {
    let home = tempfile::tempdir().unwrap();
    let port = skycat_testkit::free_port();
    let (mut child, seen) = start_serve(home.path(), &[&format!("127.0.0.1:{port}"), "--tls"], "listening on https://");
    assert!(seen.contains("listening on https://") && seen.contains("certificate SHA-256"), "{seen}");
    // The admin token went to the credentials file, 0600, and is not printed.
    let cred = home.path().join("credentials");
    let mode = std::fs::metadata(&cred).expect("credentials saved").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved = std::fs::read_to_string(&cred).unwrap();
    let token = saved.trim().trim_start_matches("token:").trim().trim_matches('"').to_string();
    assert!(token.starts_with("skycat_") && !seen.contains(&token), "{seen}");
    assert_eq!(std::fs::metadata(home.path().join("tls/key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read(home.path().join("tls/cert.pem")).unwrap();

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let out = skycat(home.path(), &["jobs", "--server-url", &format!("http://127.0.0.1:{port}"), "queue"]);
    assert!(!out.status.success(), "{}", stdout(&out));

    child.kill();
    // A restart keeps the certificate (pins stay valid) and creates no second admin token.
    let out = skycat(home.path(), &["serve", "token", "list", "--json"]);
    let list = json(&out);
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    assert_eq!(list[0]["role"], "admin");
    // Restarted on plain loopback HTTP: the same certificate stays for later, no second admin
    // token is made, and `skycat jobs` authenticates with the saved credentials.
    let port2 = skycat_testkit::free_port();
    let (mut again, seen) = start_serve(home.path(), &[&format!("127.0.0.1:{port2}")], "listening on http://");
    assert!(seen.contains("listening on http://"), "{seen}");
    let url = format!("http://127.0.0.1:{port2}");
    let out = skycat(home.path(), &["jobs", "--server-url", &url, "queue"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No managed jobs"), "{}", stdout(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_skycat"))
        .args(["jobs", "--server-url", &url, "queue"])
        .env("SKYCAT_HOME", home.path())
        .env("SKYCAT_API_TOKEN", "skycat_not_a_real_token")
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("unknown or revoked API token"), "{}", stderr(&out));
    again.kill();
    assert_eq!(std::fs::read(home.path().join("tls/cert.pem")).unwrap(), pem);
    assert_eq!(json(&skycat(home.path(), &["serve", "token", "list", "--json"])).as_array().map(|a| a.len()), Some(1));
}
