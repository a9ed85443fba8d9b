//! The system `ssh` through skycat's per-cluster SSH config, against a real sshd test host in a
//! network namespace (scripts/testhosts.sh): `ssh CLUSTER cmd` and `ssh -N -L …` work with the
//! host key skycat pinned, and stop resolving once the cluster's block is removed. Needs root,
//! iproute2, openssh-server/-client and python3 (`scripts/ci-setup-sshd.sh`); never skipped.
//!
//! Only loopback and the test host's 10.231.171.2 are dialled: ssh's view of a removed alias is
//! checked with `ssh -G` (prints the resolved config, connects nowhere), not by letting it look
//! the name up in DNS.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use skycat_controller::home::Home;
use skycat_controller::ssh::{SshOptions, SshSession, SshTarget};
use skycat_controller::ssh_config::{config_path, entries_for, remove_cluster, write_cluster_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

mod common;
use common::TestHosts;
const NET: u32 = 170;

const CLUSTER: &str = "sshcfg-e2e";
/// The port the test service listens on inside the namespace (SkyPilot's ttyd example).
const REMOTE_PORT: u16 = 7681;

/// Runs the system ssh with the temp home's config (ssh takes `~` from the passwd entry, not
/// $HOME, so the file carrying the Include is passed with -F).
async fn ssh(user_config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(user_config).args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]).args(args);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(out) => out.expect("run ssh"),
        Err(_) => panic!("ssh {args:?} did not finish within 30s"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ssh -G` (the resolved options for `host`, no connection) as key → value.
async fn resolved(user_config: &Path, host: &str) -> Vec<(String, String)> {
    let out = ssh(user_config, &["-G", host]).await;
    assert!(out.status.success(), "ssh -G {host}: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn opt<'a>(opts: &'a [(String, String)], key: &str) -> &'a str {
    opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// GET /token.txt through 127.0.0.1:port; the body or why it failed.
async fn fetch(port: u16) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    s.write_all(b"GET /token.txt HTTP/1.0\r\nHost: localhost\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "no answer in 5s".to_string())?
        .map_err(|e| e.to_string())?;
    let resp = text(&buf);
    match resp.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("unexpected answer: {resp:?}")),
    }
}

fn free_local_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_ssh_reaches_cluster_by_name_and_forwards_ports() {
    let has = |tool: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(has("ssh") && has("python3"), "ssh client or python3 missing: run scripts/ci-setup-sshd.sh");
    let hosts = TestHosts::up(1, NET, "sc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = Home::at(tmp.path().join("skycat"));
    let user_home = tmp.path().join("me");
    std::fs::create_dir_all(&user_home).expect("mkdir home");
    let user_config = user_home.join(".ssh/config");
    // The user's own config, kept byte for byte behind the Include.
    std::fs::create_dir_all(user_home.join(".ssh")).expect("mkdir .ssh");
    let original = "# my settings\nServerAliveCountMax 9\nHost unrelated\n  HostName 127.0.0.9\n";
    std::fs::write(&user_config, original).expect("write user config");

    // Pin the host key the way skycat does: one russh connection through SshSession.
    let target =
        SshTarget { host: hosts.ip(1), port: 22, user: "root".to_string(), identity_file: hosts.key() };
    let mut opts = SshOptions::new(home.known_hosts());
    opts.connect_timeout = Duration::from_secs(5);
    let session = SshSession::connect(&target, &opts).await.expect("skycat connects and pins the host key");
    session.disconnect().await;
    let pinned = std::fs::read_to_string(home.known_hosts()).expect("known_hosts written");
    assert!(pinned.starts_with(&format!("{} ssh-ed25519 ", hosts.ip(1))), "{pinned}");

    write_cluster_in(&home, Some(user_home.as_path()), CLUSTER, &entries_for(CLUSTER, &[target])).expect("write_cluster");
    let cfg = std::fs::read_to_string(&user_config).expect("read user config");
    assert!(cfg.ends_with(original) && cfg.matches("Include ").count() == 1, "{cfg}");
    println!("--- {}\n{}", config_path(&home).display(), std::fs::read_to_string(config_path(&home)).unwrap());

    // What ssh makes of it, without connecting.
    let o = resolved(&user_config, CLUSTER).await;
    assert_eq!(opt(&o, "hostname"), hosts.ip(1), "{o:?}");
    assert_eq!(opt(&o, "user"), "root");
    assert_eq!(opt(&o, "port"), "22");
    assert_eq!(opt(&o, "identityfile"), hosts.key().display().to_string());
    assert_eq!(opt(&o, "identitiesonly"), "yes");
    assert_eq!(opt(&o, "stricthostkeychecking"), "true");
    assert_eq!(opt(&o, "userknownhostsfile"), home.known_hosts().display().to_string());
    assert_eq!(opt(&o, "serveraliveinterval"), "15");
    // The user's top-level settings after the Include still apply, to skycat's hosts and others.
    assert_eq!(opt(&o, "serveralivecountmax"), "4", "skycat's value comes first");
    let other = resolved(&user_config, "unrelated").await;
    assert_eq!((opt(&other, "hostname"), opt(&other, "serveralivecountmax")), ("127.0.0.9", "9"));

    // `ssh CLUSTER cmd` with the system ssh reaches the test host, verified against the pin.
    let out = ssh(&user_config, &[CLUSTER, "echo host=$SKYCAT_TESTHOST"]).await;
    assert!(out.status.success(), "ssh {CLUSTER}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "host=1");
    assert_eq!(std::fs::read_to_string(home.known_hosts()).unwrap(), pinned, "ssh must not touch the pins");

    // StrictHostKeyChecking yes on skycat's file: an unpinned host is refused, not trusted on
    // first use, and a changed key is refused.
    std::fs::write(home.known_hosts(), "").unwrap();
    let out = ssh(&user_config, &[CLUSTER, "true"]).await;
    assert!(!out.status.success(), "an unpinned host key must be refused");
    assert!(text(&out.stderr).contains("Host key verification failed"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(home.known_hosts()).unwrap(), "", "ssh must not pin keys itself");
    let wrong = format!(
        "{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXqY02bdYqg1BcIf2x08zs60rS6XhlBSQ4qE47o5gb0\n",
        hosts.ip(1)
    );
    std::fs::write(home.known_hosts(), &wrong).unwrap();
    let out = ssh(&user_config, &[CLUSTER, "true"]).await;
    assert!(!out.status.success(), "a changed host key must be refused");
    assert!(text(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"), "{}", text(&out.stderr));
    std::fs::write(home.known_hosts(), &pinned).unwrap();

    // Local port forwarding: a service on 127.0.0.1:REMOTE_PORT inside the namespace, reached
    // through `ssh -N -L <local>:localhost:REMOTE_PORT CLUSTER`.
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let token = format!("skycat-forward-{}-{nanos}", std::process::id());
    std::fs::write(served.join("token.txt"), &token).unwrap();
    let _server = Command::new("ip")
        .args(["netns", "exec", &hosts.ns(1), "python3", "-m", "http.server", &REMOTE_PORT.to_string()])
        .args(["--bind", "127.0.0.1", "--directory"])
        .arg(&served)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the service in the namespace");
    let local = free_local_port();
    let forward = format!("127.0.0.1:{local}:localhost:{REMOTE_PORT}");
    let mut tunnel = Command::new("ssh")
        .arg("-F")
        .arg(&user_config)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ExitOnForwardFailure=yes"])
        .args(["-N", "-L", &forward, CLUSTER])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ssh -L");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(st) = tunnel.try_wait().expect("poll ssh -L") {
            let mut err = String::new();
            if let Some(mut e) = tunnel.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("ssh -L {forward} {CLUSTER} exited with {st}: {err}");
        }
        match fetch(local).await {
            Ok(body) => break body,
            Err(e) if Instant::now() > deadline => panic!("no answer through the forward in 30s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(body, token);
    let _ = tunnel.kill().await;

    // After remove_cluster the alias means nothing to ssh any more: `ssh -G` shows it would look
    // the bare name up (no HostName, default user/port), and the user's config is unchanged.
    let cfg_before = std::fs::read(&user_config).unwrap();
    remove_cluster(&home, CLUSTER).expect("remove_cluster");
    let o = resolved(&user_config, CLUSTER).await;
    assert_eq!(opt(&o, "hostname"), CLUSTER, "{o:?}");
    assert_ne!(opt(&o, "userknownhostsfile"), home.known_hosts().display().to_string());
    assert!(!std::fs::read_to_string(config_path(&home)).unwrap().contains(CLUSTER));
    assert_eq!(std::fs::read(&user_config).unwrap(), cfg_before);
    let backup: PathBuf = user_home.join(".ssh/config.skycat-backup");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), original);
}
