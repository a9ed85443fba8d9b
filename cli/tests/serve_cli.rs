//! `skycat serve token create|list|revoke` and a real `skycat serve` through the binary:
//! the first start makes an admin token and saves it as the CLI's credentials (0600); off-loopback
//! style HTTPS (`--tls` on loopback) with a self-signed certificate kept in $SKYCAT_HOME/tls;
//! `skycat jobs` pins that certificate (the token never crosses the wire in clear) and refuses any
//! other; `skycat login` pins a server by its fingerprint.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

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

/// A TCP relay on loopback to `127.0.0.1:to` that records every byte it carries, both ways: what
/// a packet capture of the connection would show.
fn recording_relay(to: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            for (mut from, mut into) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = into.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (port, seen)
}

fn credentials(home: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(home.join("credentials")).expect("credentials saved")).unwrap()
}

/// The certificate fingerprint `skycat serve` printed at start.
fn printed_fingerprint(seen: &str) -> String {
    let fp = seen.split("certificate SHA-256 ").nth(1).expect("fingerprint printed");
    fp.split_whitespace().next().unwrap().to_string()
}

/// `skycat serve --tls` on a free loopback port with `home`: the server, its URL, the
/// certificate fingerprint it printed, and the port.
fn start_tls(home: &Path) -> (Serve, String, String, u16) {
    let port = skycat_testkit::free_port();
    let (serve, seen) = start_serve(home, &[&format!("127.0.0.1:{port}"), "--tls"], "listening on https://");
    (serve, format!("https://127.0.0.1:{port}"), printed_fingerprint(&seen), port)
}

/// `skycat ARGS` on `home` with `envs` and `stdin`.
fn skycat_with(home: &Path, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
    c.args(args).env("SKYCAT_HOME", home).env_remove("SKYCAT_API_TOKEN").env_remove("SKYCAT_SERVER_URL");
    c.envs(envs.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn first_start_saves_credentials_with_the_pin_and_the_cli_trusts_no_other_certificate() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let (mut child, url, fp, port) = start_tls(home);
    // The admin token went to the credentials file, 0600, with this server and its pin, and is
    // not printed.
    let mode = std::fs::metadata(home.join("credentials")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let cred = credentials(home);
    let token = cred["token"].as_str().unwrap().to_string();
    let printed = child.printed();
    assert!(token.starts_with("skycat_") && !printed.contains(&token), "{printed}");
    assert_eq!((cred["server_url"].as_str(), cred["server_cert_sha256"].as_str()), (Some(url.as_str()), Some(fp.as_str())));
    assert_eq!(std::fs::metadata(home.join("tls/key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read(home.join("tls/cert.pem")).unwrap();

    // `skycat jobs` with no flags: that server, pinned, authenticated.
    let out = skycat(home, &["jobs", "queue"]);
    assert!(out.status.success() && stdout(&out).contains("No managed jobs"), "{}", stderr(&out));
    // On the wire (a relay recording both directions): TLS records, never the token.
    let (relay, wire) = recording_relay(port);
    let via = format!("https://127.0.0.1:{relay}");
    let out = skycat_with(home, &["jobs", "--server-url", &via, "queue"], &[("SKYCAT_SERVER_CERT_SHA256", &fp), ("SKYCAT_API_TOKEN", &token)], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = wire.lock().unwrap().clone();
    assert!(bytes.len() > 1000 && bytes[0] == 0x16, "a TLS handshake went through the relay ({} bytes)", bytes.len());
    for clear in [token.as_bytes(), b"Bearer".as_slice(), b"/v1/jobs".as_slice()] {
        assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{:?} crossed the relay in clear", String::from_utf8_lossy(clear));
    }
    // The saved token does not go to another server, and plain HTTP gets no answer from HTTPS.
    let out = skycat(home, &["jobs", "--server-url", &format!("http://127.0.0.1:{port}"), "queue"]);
    assert!(!out.status.success(), "{}", stdout(&out));

    // Another server (another home: another certificate).
    let home2 = tempfile::tempdir().unwrap();
    let home2 = home2.path();
    let (mut other, url2, fp2, _) = start_tls(home2);
    assert_ne!(fp, fp2);
    let token2 = credentials(home2)["token"].as_str().unwrap().to_string();
    let out = skycat(home, &["jobs", "--server-url", &url2, "queue"]);
    assert!(!out.status.success() && stderr(&out).contains(&format!("skycat login --server-url {url2}")), "{}", stderr(&out));
    // Pinned to the first server's certificate, the second one is refused, naming both.
    let out = skycat_with(home, &["jobs", "--server-url", &url2, "queue"], &[("SKYCAT_SERVER_CERT_SHA256", &fp), ("SKYCAT_API_TOKEN", &token2)], "");
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("pin mismatch") && err.contains(&fp) && err.contains(&fp2), "{err}");

    // `skycat login` to the second server: a wrong fingerprint is refused and nothing is saved;
    // with none, the fingerprint is shown for confirmation; the right one saves URL, pin, token.
    let login = |fingerprint: Option<&str>, tok: &str| {
        let mut args = vec!["login", "--server-url", url2.as_str(), "--token-stdin"];
        if let Some(f) = fingerprint {
            args.extend(["--fingerprint", f]);
        }
        skycat_with(home, &args, &[], tok)
    };
    let before = std::fs::read(home.join("credentials")).unwrap();
    let out = login(Some(&fp), &token2);
    assert!(!out.status.success() && stderr(&out).contains(&fp2) && stderr(&out).contains("refusing"), "{}", stderr(&out));
    let out = login(None, &token2);
    assert!(!out.status.success() && stderr(&out).contains(&format!("--fingerprint {fp2}")), "{}", stderr(&out));
    let out = login(Some(&fp2), "skycat_not_a_real_token");
    assert!(!out.status.success() && stderr(&out).contains("refused the API token"), "{}", stderr(&out));
    assert_eq!(std::fs::read(home.join("credentials")).unwrap(), before, "a failed login changed the credentials");
    let colons: Vec<String> = (0..32).map(|i| fp2[2 * i..2 * i + 2].to_uppercase()).collect();
    let out = login(Some(&colons.join(":")), &token2);
    assert!(out.status.success(), "{}", stderr(&out));
    let cred = credentials(home);
    assert_eq!((cred["server_url"].as_str(), cred["server_cert_sha256"].as_str()), (Some(url2.as_str()), Some(fp2.as_str())));
    assert_eq!(std::fs::metadata(home.join("credentials")).unwrap().permissions().mode() & 0o777, 0o600);
    let out = skycat(home, &["jobs", "queue"]);
    assert!(out.status.success(), "{}", stderr(&out));
    other.kill();

    child.kill();
    // A restart keeps the certificate (pins stay valid) and creates no second admin token.
    let list = json(&skycat(home, &["serve", "token", "list", "--json"]));
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    assert_eq!(list[0]["role"], "admin");
    let (mut again, seen) = start_serve(home, &[&format!("127.0.0.1:{port}"), "--tls"], "listening on https://");
    assert_eq!(printed_fingerprint(&seen), fp);
    assert_eq!(std::fs::read(home.join("tls/cert.pem")).unwrap(), pem);
    let out = skycat_with(home, &["jobs", "--server-url", &url, "queue"], &[("SKYCAT_API_TOKEN", "skycat_not_a_real_token"), ("SKYCAT_SERVER_CERT_SHA256", &fp)], "");
    assert!(!out.status.success() && stderr(&out).contains("unknown or revoked API token"), "{}", stderr(&out));
    again.kill();
    assert_eq!(json(&skycat(home, &["serve", "token", "list", "--json"])).as_array().map(|a| a.len()), Some(1));
}
