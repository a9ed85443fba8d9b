//! Managed jobs survive `kill -9` of the real `skycat serve` (issue 10, "restart loses nothing"),
//! through the binary and real sshd hosts in network namespaces running the real `skycat-agent`:
//! * killed while a job runs: the restarted server (same $SKYCAT_HOME, same port) re-adopts the
//!   running agent, its heartbeats arrive again, the cost keeps accruing, and the job ends
//!   SUCCEEDED in its one attempt; its secrets (`HF_TOKEN` in `envs:`, one under `secrets:`)
//!   reach the job but are never in clear in $SKYCAT_HOME, the server's output, `jobs queue` or
//!   `jobs logs`;
//! * killed in the middle of a recovery (the cheap spot host cut off, the preemption just seen):
//!   the restarted server finishes that recovery with exactly one more attempt, on the dear pool,
//!   and tears down both clusters;
//! * SIGTERM while a request is in flight (a workdir upload held half-way by a relay): the
//!   request completes and the server exits 0 once it has.
//!
//! `skycat jobs` finds the server and pins its certificate from $SKYCAT_HOME/credentials, as the
//! first start of `skycat serve` wrote them. Needs root, iproute2 and openssh-server
//! (scripts/ci-setup-sshd.sh). Never skipped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::managed::JobView;
use skycat_testkit::output::{json, stderr, stdout};
use skycat_testkit::serve::Serve;

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 200;

const HF_TOKEN: &str = "hf_KillNineSeCrEt_8c41d0e6a3";
const DATASET_URI: &str = "s3://kill9-private-77b0e2";

/// A skycat home, a user home (for ~/.ssh/config), and a folder for task files and the server's
/// output, with the port the server keeps across restarts.
struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    files: tempfile::TempDir,
    /// The `skycat-agent` to install (none: serve's default).
    agent: PathBuf,
    port: u16,
}

impl Env {
    fn new(pools_yaml: Option<String>, agent: PathBuf) -> Env {
        let env = Env {
            home: tempfile::tempdir().expect("tempdir"),
            user_home: tempfile::tempdir().expect("tempdir"),
            files: tempfile::tempdir().expect("tempdir"),
            agent,
            port: skycat_testkit::free_port(),
        };
        if let Some(y) = pools_yaml {
            std::fs::write(env.home.path().join("ssh_node_pools.yaml"), y).expect("write pools");
        }
        env
    }

    fn serve_log(&self) -> PathBuf {
        self.files.path().join("serve.log")
    }

    /// `skycat serve` on 0.0.0.0:port (HTTPS, reachable from the namespaces) with the namespace
    /// suites' fast heartbeats, once it is listening. Returns it and the certificate's pin.
    fn serve(&self) -> (Serve, String) {
        let addr = format!("0.0.0.0:{}", self.port);
        let mut cmd = skycat_testkit::serve::command(env!("CARGO_BIN_EXE_skycat"), self.home.path(), &[&addr]);
        let o = common::fast_managed_options(String::new());
        if !self.agent.as_os_str().is_empty() {
            cmd.env("SKYCAT_AGENT_BIN", &self.agent);
        }
        // Info: the secrets check reads what the server logs at that level too.
        cmd.env("HOME", self.user_home.path())
            .env("RUST_LOG", "info")
            .env("SKYCAT_MANAGED_HEARTBEAT_SECS", o.heartbeat_secs.to_string())
            .env("SKYCAT_MANAGED_DEADLINE_SECS", o.deadline.as_secs_f64().to_string())
            .env("SKYCAT_MANAGED_POLL_SECS", o.poll.as_secs_f64().to_string())
            .env("SKYCAT_TERMINATION_GRACE_SECS", o.termination_grace_secs.to_string())
            .env_remove("SKYCAT_MANAGED_SERVER_URL")
            .env_remove("SKYCAT_METADATA_URL");
        let (serve, seen) = Serve::start(cmd, &self.serve_log(), "certificate SHA-256 ");
        assert!(seen.contains(&format!("listening on https://{addr}")), "skycat serve did not start: {seen}");
        let pin = seen.split("certificate SHA-256 ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string();
        (serve, pin)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.env("SKYCAT_HOME", self.home.path()).env("HOME", self.user_home.path());
        for v in ["SKYCAT_API_TOKEN", "SKYCAT_SERVER_URL", "SKYCAT_SERVER_CERT_SHA256", "RUST_LOG"] {
            c.env_remove(v);
        }
        c
    }

    fn skycat(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run skycat")
    }

    fn task(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.files.path().join(name);
        std::fs::write(&p, yaml).expect("write task");
        p
    }

    /// `skycat jobs launch TASK`: the job's id.
    fn launch(&self, task: &Path) -> i64 {
        let out = self.skycat(&["jobs", "launch", task.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "jobs launch: {}{}", stdout(&out), stderr(&out));
        submitted_id(&stdout(&out))
    }

    /// Job `id` as `skycat jobs queue --json` shows it.
    fn job(&self, id: i64) -> JobView {
        let jobs: Vec<JobView> = serde_json::from_value(json(&self.skycat(&["jobs", "queue", "--json"]))).expect("jobs queue --json: JobViews");
        jobs.into_iter().find(|j| j.id == id).unwrap_or_else(|| panic!("job {id} not in the queue"))
    }

    /// Job `id` once `f` accepts it, read through the CLI; fails after `timeout`, naming `what`.
    fn wait_job(&self, id: i64, what: &str, timeout: Duration, mut f: impl FnMut(&JobView) -> bool) -> JobView {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.job(id);
            if f(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; job: {v:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_terminal(&self, id: i64, timeout: Duration) -> JobView {
        self.wait_job(id, "the job to end", timeout, |v| skycat_controller::managed::status::is_terminal(&v.status))
    }

    fn logs(&self, id: i64) -> String {
        let out = self.skycat(&["jobs", "logs", &id.to_string()]);
        assert!(out.status.success(), "jobs logs: {}", stderr(&out));
        stdout(&out)
    }

    /// No secret in clear in any file under $SKYCAT_HOME (state.db and its WAL included), in
    /// what the servers printed, or in `texts` (CLI output).
    fn assert_no_secret(&self, when: &str, texts: &[&str]) {
        let db_bytes: u64 = ["state.db", "state.db-wal"].iter().filter_map(|f| std::fs::metadata(self.home.path().join(f)).ok()).map(|m| m.len()).sum();
        assert!(db_bytes > 4096, "{when}: no state DB in {}", self.home.path().display());
        let mut files = Vec::new();
        let mut dirs = vec![self.home.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.push(self.serve_log());
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_default();
            for s in [HF_TOKEN, DATASET_URI] {
                assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{when}: {s:?} is in clear in {}", f.display());
            }
        }
        for t in texts {
            assert!(!t.contains(HF_TOKEN) && !t.contains(DATASET_URI), "{when}: a secret in clear in {t:?}");
        }
    }
}

fn submitted_id(out: &str) -> i64 {
    out.split("Managed job ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {out:?}"))
}

/// A task with `HF_TOKEN` (a secret by its name) in `envs:` and `DATASET_URI` under `secrets:`.
fn task_yaml(resources: &str, run: &str) -> String {
    format!(
        "name: train\nresources:\n  infra: ssh\n{resources}envs:\n  HF_TOKEN: {HF_TOKEN}\n  EPOCHS: 3\nsecrets:\n  DATASET_URI: {DATASET_URI}\nrun: |\n  {}\n",
        run.replace('\n', "\n  ")
    )
}

#[test]
fn kill_9_while_a_job_runs_readopts_it_with_its_secrets_and_cost() {
    // The agent is built (or found fresh) before the hosts take the suites' shared lock.
    let agent = agent_bin();
    let hosts = TestHosts::up(1, NET, "mk");
    let env = Env::new(Some(common::pools_yaml(&hosts, &[("od", false, 2.0, &[1])])), agent);
    let (mut serve, pin) = env.serve();
    // The first start saved where the server is and its certificate's pin for `skycat jobs`.
    let cred = std::fs::read_to_string(env.home.path().join("credentials")).expect("credentials saved by the first start");
    assert!(cred.contains(&format!("https://127.0.0.1:{}", env.port)) && cred.contains(&pin), "{cred}");

    let run = "echo \"start rc=$SKYCAT_JOB_RECOVERY_COUNT\"\nsleep 12\necho \"hf=${#HF_TOKEN} ds=${#DATASET_URI} epochs=$EPOCHS\"\necho finished";
    let id = env.launch(&env.task("train.yaml", &task_yaml("", run)));
    let before = env.wait_job(id, "the attempt running with metered cost", Duration::from_secs(40), |v| {
        v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0)
    });
    env.assert_no_secret("while running", &[]);

    // kill -9, and the same server is back 2 s later on the same home and port.
    serve.kill();
    std::thread::sleep(Duration::from_secs(2));
    let (mut serve, again) = env.serve();
    assert_eq!(again, pin, "the certificate changed across the restart");
    let v = env.job(id);
    assert!(v.status == "RUNNING" || v.status == "SUCCEEDED", "re-adopted, not failed: {v:#?}");

    let v = env.wait_terminal(id, Duration::from_secs(40));
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!((v.attempts.len(), v.recovery_count), (1, 0), "the running attempt was re-adopted: {v:#?}");
    let (a, b) = (&v.attempts[0], &before.attempts[0]);
    assert_eq!((a.cluster.as_str(), a.cluster_id.as_str()), (b.cluster.as_str(), b.cluster_id.as_str()));
    assert_eq!(a.outcome, "SUCCEEDED");
    // The attempt's cost kept accruing across the restart.
    assert!(a.cost_usd > b.cost_usd, "cost {} then {}", b.cost_usd, a.cost_usd);
    assert!((v.total_cost_usd - a.cost_usd).abs() < 1e-12, "{v:#?}");

    let log = env.logs(id);
    let want = format!("hf={} ds={} epochs=3", HF_TOKEN.len(), DATASET_URI.len());
    assert!(log.contains("start rc=0") && log.contains(&want) && log.contains("finished"), "{log}");
    assert_eq!(log.matches("=== attempt").count(), 1, "{log}");
    let queue = stdout(&env.skycat(&["jobs", "queue"]));
    let queue_json = stdout(&env.skycat(&["jobs", "queue", "--json"]));
    assert!(queue.contains("SUCCEEDED"), "{queue}");
    env.assert_no_secret("after the job", &[&log, &queue, &queue_json]);

    // SIGTERM with nothing in flight: a clean exit.
    serve.terminate();
    let st = serve.wait_exit(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "skycat serve after SIGTERM: {st:?}; printed: {}", serve.printed());
}

#[test]
fn kill_9_during_a_recovery_finishes_it_with_exactly_one_more_attempt() {
    let agent = agent_bin();
    let hosts = TestHosts::up(2, NET, "mk");
    let yaml = common::pools_yaml(&hosts, &[("cheap", true, 1.8, &[1]), ("dear", true, 3.6, &[2])]);
    let env = Env::new(Some(yaml), agent);
    let (mut serve, _) = env.serve();
    let run = "echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT hf=${#HF_TOKEN}\"\n\
               if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 120; fi\nsleep 2\necho finished";
    let id = env.launch(&env.task("spot.yaml", &task_yaml("  use_spot: true\n", run)));
    let v = env.wait_job(id, "the first attempt running with metered cost", Duration::from_secs(40), |v| {
        v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0)
    });
    assert_eq!(v.attempts[0].pool, "ssh/cheap", "{v:#?}");

    // Preempt host 1, and kill -9 the server as soon as the queue shows it noticed.
    std::thread::sleep(Duration::from_millis(2500));
    hosts.cut(1);
    let v = env.wait_job(id, "the preemption noticed", Duration::from_secs(30), |v| {
        v.attempts[0].outcome == "PREEMPTED" || v.status == "RECOVERING"
    });
    serve.kill();
    assert!(v.status == "RUNNING" || v.status == "RECOVERING", "{v:#?}");
    assert_eq!(v.attempts.len(), 1, "killed before the next attempt started: {v:#?}");
    let (_serve, _) = env.serve();

    let v = env.wait_terminal(id, Duration::from_secs(60));
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!((v.attempts.len(), v.recovery_count), (2, 1), "exactly one more attempt: {v:#?}");
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert_eq!((v.attempts[1].pool.as_str(), v.attempts[1].outcome.as_str()), ("ssh/dear", "SUCCEEDED"), "{v:#?}");
    let log = env.logs(id);
    let last = log.split("=== attempt").last().unwrap_or_default();
    assert!(last.contains(&format!("attempt rc=1 hf={}", HF_TOKEN.len())) && last.contains("finished"), "{log}");

    // Both attempts' clusters are gone (the preempted one's teardown was resumed too).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut status = String::new();
    while Instant::now() < deadline {
        status = stdout(&env.skycat(&["status", "--no-refresh"]));
        if status.contains("No existing clusters") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(status.contains("No existing clusters"), "clusters left: {status}");
    let queue_json = stdout(&env.skycat(&["jobs", "queue", "--json"]));
    env.assert_no_secret("after the job", &[&log, &queue_json]);
}

/// A TCP relay to 127.0.0.1:`to` that stops passing the client's bytes on once `hold_after` of
/// them went through, until released.
struct Relay {
    port: u16,
    held: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
}

impl Relay {
    fn start(to: u16, hold_after: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let (held, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let sent = Arc::new(AtomicU64::new(0));
        let (h, r) = (held.clone(), release.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Write);
                });
                let (h, r, sent) = (h.clone(), r.clone(), sent.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sent.fetch_add(n as u64, Ordering::SeqCst) >= hold_after {
                            h.store(true, Ordering::SeqCst);
                            while !r.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
            }
        });
        Relay { port, held, release }
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    // No hosts: the job finds no pool; only the upload and the server's exit matter here.
    let env = Env::new(None, PathBuf::new());
    let (mut serve, pin) = env.serve();
    let wd = env.files.path().join("wd");
    std::fs::create_dir(&wd).expect("mkdir");
    // 4 MiB that do not compress: the upload is still under way when the relay holds it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(wd.join("data.bin"), &data).expect("write data");
    let task = env.task("wd.yaml", "resources:\n  infra: ssh\nworkdir: wd\nrun: ls -l data.bin\n");

    // Through the relay: another address than the saved one, so the token and pin are given.
    let cred: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(env.home.path().join("credentials")).expect("credentials")).expect("YAML");
    let token = cred["token"].as_str().expect("credentials: token").to_string();
    let relay = Relay::start(env.port, 512 * 1024);
    let mut cli = env
        .cmd()
        .args(["jobs", "launch", task.to_str().expect("utf-8 path")])
        .env("SKYCAT_SERVER_URL", format!("https://127.0.0.1:{}", relay.port))
        .env("SKYCAT_SERVER_CERT_SHA256", &pin)
        .env("SKYCAT_API_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start skycat jobs launch");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !relay.held.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the upload never got half-way; server printed: {}", serve.printed());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The upload is half-way through the server: SIGTERM. It waits for the request…
    serve.terminate();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(serve.wait_exit(Duration::ZERO).is_none(), "skycat serve exited with a request in flight: {}", serve.printed());
    // …which then completes.
    relay.release.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cli.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = cli.kill();
            panic!("skycat jobs launch hung after the server's SIGTERM; server printed: {}", serve.printed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cli.wait_with_output().expect("skycat jobs launch output");
    // The upload in flight was received whole and stored; the connection was then closed, so the
    // job's submission that followed found the server gone.
    assert!(stderr(&out).contains("Uploading workdir"), "{}", stderr(&out));
    let stored: Vec<_> = std::fs::read_dir(env.home.path().join("uploads/admin"))
        .expect("the upload folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(std::fs::metadata(&stored[0]).expect("upload").len() > 4 << 20, "the upload was cut short");
    assert!(!out.status.success() && stderr(&out).contains("cannot reach"), "{}{}", stdout(&out), stderr(&out));
    let st = serve.wait_exit(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "skycat serve after SIGTERM: {st:?}; printed: {}", serve.printed());
}
