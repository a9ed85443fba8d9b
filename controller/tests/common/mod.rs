//! Test hosts shared by the end-to-end suites: network namespaces running Debian's sshd
//! (scripts/testhosts.sh), serialized across test binaries on one file lock and removed on drop,
//! the workspace's `skycat-agent` binary, and waiting on a managed job. moto comes from the
//! workspace's skycat-testkit.
#![allow(dead_code)] // each suite uses a subset

pub mod aws_hosts;
pub mod ec2_faults;
pub use skycat_testkit::moto;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("controller/ has a parent").to_path_buf()
}

pub fn preflight() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        uid.as_deref().unwrap_or("?"),
        "0",
        "these tests create network namespaces and must run as root (CI does); then run scripts/ci-setup-sshd.sh"
    );
    let ip_ok = Command::new("sh").args(["-c", "command -v ip"]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        ip_ok && Path::new("/usr/sbin/sshd").exists() && Path::new("/usr/bin/ssh-keygen").exists(),
        "iproute2 / openssh-server missing: run scripts/ci-setup-sshd.sh (as root) first"
    );
}

/// Test hosts 1..=n, removed on drop. Holds the cross-process test lock.
pub struct TestHosts {
    prefix: String,
    /// Third octet base of the hosts' /30 networks (10.231.<net + i>.0), distinct per test file.
    net: u32,
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl TestHosts {
    /// Brings up hosts 1..=n on networks 10.231.<net+i>.0/30, named `skycat-test-<tag>…`.
    pub fn up(n: u32, net: u32, tag: &str) -> TestHosts {
        let hosts = TestHosts::empty(net, tag);
        hosts.script(&["up", &n.to_string()]);
        hosts
    }

    /// No hosts yet: they come with `up-at` (cloud instances appearing).
    pub fn empty(net: u32, tag: &str) -> TestHosts {
        preflight();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/skycat-controller-e2e.lock")
            .expect("open lock file");
        lock.lock().expect("lock");
        let prefix = format!("skycat-test-{tag}{}-{}-", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let dir = tempfile::Builder::new().prefix("skycat-testhosts").tempdir().expect("tempdir");
        TestHosts { prefix, net, dir, _lock: lock }
    }

    pub fn net(&self) -> u32 {
        self.net
    }

    /// Adds an OpenSSH public key to the hosts' authorized_keys (shared by every host).
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write;
        let path = self.dir.path().join("authorized_keys");
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have.lines().any(|l| l.trim() == public_key.trim()) {
            return;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("authorized_keys");
        writeln!(f, "{}", public_key.trim()).expect("append key");
    }

    pub fn script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testhosts.sh"))
            .args(args)
            .env("SKYCAT_TESTHOSTS_DIR", self.dir.path())
            .env("SKYCAT_TESTHOSTS_PREFIX", &self.prefix)
            .env("SKYCAT_TESTHOSTS_NET", self.net.to_string())
            .output()
            .expect("run scripts/testhosts.sh");
        assert!(
            out.status.success(),
            "testhosts.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn ip(&self, i: u32) -> String {
        format!("10.231.{}.2", self.net + i)
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }
    pub fn home(&self, i: u32) -> PathBuf {
        self.dir.path().join(format!("host{i}/home"))
    }
    pub fn ns(&self, i: u32) -> String {
        format!("{}{i}", self.prefix)
    }
    /// Cuts host i off the network: every link in its namespace goes down (a preempted VM).
    pub fn cut(&self, i: u32) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), "sh", "-c"])
            .arg("for l in $(ls /sys/class/net); do [ \"$l\" = lo ] || ip link set \"$l\" down; done")
            .status()
            .expect("ip netns exec");
        assert!(st.success(), "cutting host {i} off failed");
    }
    /// Names of the processes running in host i's namespace.
    pub fn process_names(&self, i: u32) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "pids", &self.ns(i)]).output().expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/testhosts.sh"))
            .arg("down")
            .env("SKYCAT_TESTHOSTS_DIR", self.dir.path())
            .env("SKYCAT_TESTHOSTS_PREFIX", &self.prefix)
            .env("SKYCAT_TESTHOSTS_NET", self.net.to_string())
            .output();
    }
}

/// The workspace's `skycat-agent` binary (built by `cargo test --workspace`; built here if not).
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let target_debug = exe.parent().and_then(|d| d.parent()).expect("target/debug").to_path_buf();
    let bin = target_debug.join("skycat-agent");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // Always ask cargo: it is a no-op when the binary is fresh, and rebuilds a stale one.
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "skycat-agent"])
        .current_dir(repo_root())
        .status()
        .expect("cargo build -p skycat-agent");
    assert!(st.success(), "building skycat-agent failed");
    assert!(bin.is_file(), "{} missing after build", bin.display());
    bin
}

/// Managed job `id` once `f` accepts it, read every 100 ms; fails after `timeout`, naming `what`.
pub async fn wait_for_job(m: &Managed, id: i64, what: &str, timeout: Duration, mut f: impl FnMut(&JobView) -> bool) -> JobView {
    let deadline = Instant::now() + timeout;
    loop {
        let v = m.job(id).await.expect("job").expect("job exists");
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; job: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The certificate agents pin, as `skycat serve` makes it off loopback: self-signed, kept in
/// `home/tls` (made once). Returns the files and the pin.
pub fn agent_cert(home: &Path) -> (skycat_server::tls::TlsFiles, String) {
    let files = skycat_server::tls::self_signed(&home.join("tls"), &[]).expect("self-signed certificate");
    let pin = skycat_server::tls::fingerprint(&files).expect("certificate fingerprint");
    (files, pin)
}

/// Serves `app` over HTTPS with `files` on `listener` until `stop` resolves (agents refuse to send
/// their token over plain HTTP off loopback).
pub fn spawn_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    files: &skycat_server::tls::TlsFiles,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let cfg = skycat_server::tls::server_config(files).expect("TLS configuration");
    tokio::spawn(async move {
        let _ = skycat_server::tls::serve_tls(listener, app, cfg, stop, Duration::from_secs(2)).await;
    })
}

/// `ssh_node_pools.yaml` for pools (name, spot, $/h, host indexes) of `hosts`.
pub fn pools_yaml(hosts: &TestHosts, pools: &[(&str, bool, f64, &[u32])]) -> String {
    let mut y = String::new();
    for (name, spot, price, ids) in pools {
        y.push_str(&format!("{name}:\n  hosts:\n"));
        for i in *ids {
            y.push_str(&format!("    - {}\n", hosts.ip(*i)));
        }
        y.push_str(&format!(
            "  user: root\n  identity_file: {}\n  price_per_hour: {price}\n  spot: {spot}\n",
            hosts.key().display()
        ));
    }
    y
}

/// Managed-job settings for the namespace suites: 1 s heartbeats, a 3 s deadline, agents
/// reporting to `server_url`.
pub fn fast_managed_options(server_url: String) -> skycat_controller::managed::ManagedOptions {
    skycat_controller::managed::ManagedOptions {
        server_url: Some(server_url),
        heartbeat_secs: 1.0,
        deadline: Duration::from_secs(3),
        poll: Duration::from_millis(300),
        metadata_url: None,
        metadata_poll_secs: 0.5,
        termination_grace_secs: 2.0,
        launch_retry_for: Duration::from_secs(20),
        ssh_connect_timeout: Duration::from_secs(3),
    }
}

/// What `skycat check CLOUD` writes when its read-only `call` answers: `cloud` enabled for
/// launch (the suites of the `check` command cover the command itself).
pub fn mark_enabled(home: &Path, cloud: &str, credentials: &str, call: &str) {
    use skycat_controller::enabled::{self, CloudState, EnabledClouds};
    let mut cache: EnabledClouds = enabled::load(&skycat_controller::home::Home::at(home));
    cache.clouds.insert(
        cloud.into(),
        CloudState {
            launch: true,
            status: enabled::ENABLED.into(),
            credentials: credentials.into(),
            verified: true,
            call: Some(call.into()),
            error: None,
            checked_at: chrono::Utc::now(),
        },
    );
    enabled::save(&skycat_controller::home::Home::at(home), &cache).unwrap();
}

/// The shipped catalog, as a managed job's planner sees it with no user catalog.
pub fn embedded_catalog() -> Vec<skycat_catalog::Offer> {
    let empty = tempfile::tempdir().unwrap();
    skycat_catalog::Catalog::load(&skycat_catalog::SkycatHome::new(empty.path())).expect("embedded catalog").catalog.into_offers()
}

/// Managed jobs as `skycat serve` runs them, over a controller on `home`: the agents' heartbeat
/// and the jobs routes served over TLS (the agents pin the certificate) on a port of this host,
/// fast clocks ([`fast_managed_options`], a 4 s silence deadline), planning over the
/// shipped catalog. Returns the controller's state store too; `abort` the server at the end.
pub async fn managed_harness(home: &Path) -> (Managed, skycat_controller::store::Store, tokio::task::JoinHandle<()>) {
    use std::sync::Arc;

    use skycat_controller::home::Home;
    use skycat_controller::lifecycle::Controller;
    use skycat_controller::managed::ManagedOptions;

    let (tls, pin) = agent_cert(home);
    let ctl = Controller::open(Home::at(home)).await.expect("controller").with_agent_bin(agent_bin()).with_server_cert_sha256(pin);
    let store = ctl.store.clone();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    // A cloud launch (with its failover walk) takes longer than a pool's: more time to retry.
    let opts = ManagedOptions {
        deadline: Duration::from_secs(4),
        launch_retry_for: Duration::from_secs(60),
        ..fast_managed_options(format!("https://{{controller_ip}}:{port}"))
    };
    let offers = Arc::new(embedded_catalog());
    let catalog: skycat_controller::managed::CatalogSource = Arc::new(move || offers.as_ref().clone());
    let managed = Managed::new(ctl, opts, catalog).await.expect("managed");
    let app = skycat_server::routes::heartbeat::router(store.clone()).merge(skycat_server::routes::jobs::router(
        managed.clone(),
        skycat_server::Auth { verifier: Arc::new(store.clone()) },
    ));
    let server = spawn_tls(listener, app, &tls, std::future::pending());
    (managed, store, server)
}

/// Submits the job the recovery suites run: `resources` (YAML lines under `resources:`), a run
/// that prints the recovery count, blocks on the first attempt (so only a recovery finishes
/// it) and prints `finished` on the next; FAILOVER strategy, no restarts on errors.
pub async fn submit_recovering_job(m: &Managed, resources: &str, use_spot: bool) -> i64 {
    let spec = skycat_optimizer::parse_task_yaml(&format!(
        "resources:\n{resources}run: |\n  echo rc=$SKYCAT_JOB_RECOVERY_COUNT\n  \
         if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 300; fi\n  echo finished\n"
    ))
    .expect("task");
    let req = skycat_controller::managed::JobRequest {
        name: Some("train".into()),
        task: skycat_controller::TaskRun { name: Some("train".into()), num_nodes: 1, run: spec.run.clone(), ..Default::default() },
        use_spot,
        strategy: Some("FAILOVER".into()),
        max_restarts_on_errors: 0,
        spec: Some(spec),
    };
    m.submit(req).await.expect("submit")
}

/// Waits for the job of [`submit_recovering_job`] to end: it must have succeeded, and its
/// output must come from the recovered attempt (`rc=1`, then `finished`).
pub async fn assert_finished_after_recovery(m: &Managed, id: i64) {
    let v = m.wait(id, Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    let logs = m.logs(id).await.unwrap().1;
    assert!(logs.iter().any(|(_, l)| l.contains("rc=1") && l.contains("finished")), "{logs:?}");
}
