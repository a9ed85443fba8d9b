//! Three `skycat serve` replicas (the real binary, as an operator runs it) on one throwaway
//! PostgreSQL (testkit::postgres, `--state postgres://…`), sharing the keys and the certificate
//! as docs/replicas.md asks (issue 15):
//! * the leader is SIGKILLed while a managed spot job, submitted to a follower, is being
//!   recovered from a preemption (its host cut off, on a network-namespace sshd host running the
//!   real `skycat-agent`, whose heartbeats go through a round-robin TCP balancer in front of the
//!   replicas): another replica leads within `--lease-takeover` plus a margin, resumes the
//!   recovery, and the job succeeds with exactly one attempt per preemption; the killed replica,
//!   restarted on the same database, stays a follower and drives nothing;
//! * heartbeats sent to random replicas, each retried on other replicas (at once and later), are
//!   each stored exactly once.
//!
//! Needs PostgreSQL's server (scripts/ci-setup-postgres.sh); the first test also needs root,
//! iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skycat_controller::managed::JobView;
use skycat_testkit::output::{json as stdout_json, stderr, stdout};
use skycat_testkit::postgres::Postgres;
use skycat_testkit::serve::Serve;

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 110;
/// `--lease-takeover`: a follower leads at most this long after the leader died.
const TAKEOVER: Duration = Duration::from_secs(3);
/// What the takeover may take beyond `TAKEOVER` as seen from outside: /healthz polls over HTTPS
/// on a 2-core machine that is also running the recovery.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(2);

/// This file's tests one at a time: each runs three servers and a PostgreSQL, and side by side
/// on a small machine the takeover bound would measure CPU contention.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three replicas of `skycat serve` on one database, each with its own $SKYCAT_HOME holding the
/// same `keys/` and `tls/` (copied from the first replica's first start), the same pools file.
struct Replicas {
    pg: Postgres,
    db: String,
    url: String,
    homes: Vec<tempfile::TempDir>,
    /// Logs, task files and the CLI's own home.
    files: tempfile::TempDir,
    ports: Vec<u16>,
    servers: Vec<Option<Serve>>,
    /// Off loopback (HTTPS with the shared self-signed certificate) or on it (plain HTTP).
    tls: bool,
    env: Vec<(String, String)>,
    pin: String,
    token: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Replicas {
    /// PostgreSQL with an empty database, three homes (with `pools_yaml`, if any), three ports;
    /// no server yet.
    fn new(db: &str, tls: bool, pools_yaml: Option<&str>, env: Vec<(String, String)>) -> Replicas {
        let pg = Postgres::start();
        let url = pg.create_database(db);
        let homes: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        if let Some(y) = pools_yaml {
            for h in &homes {
                std::fs::write(h.path().join("ssh_node_pools.yaml"), y).expect("write pools");
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        Replicas {
            pg,
            db: db.to_string(),
            url,
            homes,
            files: tempfile::tempdir().expect("tempdir"),
            ports: (0..3).map(|_| skycat_testkit::free_port()).collect(),
            servers: vec![None, None, None],
            tls,
            env,
            pin: String::new(),
            token: String::new(),
            rt,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self, i: usize, run: usize) -> PathBuf {
        self.files.path().join(format!("serve-{i}-{run}.log"))
    }

    /// Starts replica `i` (its `run`-th start, logged apart) once it listens; what it printed.
    fn start(&mut self, i: usize, run: usize) -> String {
        let addr = format!("{}:{}", if self.tls { "0.0.0.0" } else { "127.0.0.1" }, self.ports[i]);
        let takeover = TAKEOVER.as_secs_f64().to_string();
        let mut cmd = skycat_testkit::serve::command(
            env!("CARGO_BIN_EXE_skycat"),
            self.homes[i].path(),
            &[&addr, "--state", &self.url, "--lease-takeover", &takeover],
        );
        // Info: the checks below read what a replica logs about claiming and resuming jobs.
        cmd.env("RUST_LOG", "info").env("HOME", self.files.path()).env_remove("SKYCAT_STATE").env_remove("SKYCAT_METADATA_URL");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let scheme = if self.tls { "https" } else { "http" };
        let (serve, seen) = Serve::start(cmd, &self.log(i, run), &format!("listening on {scheme}://{addr}"));
        assert!(seen.contains(&format!("listening on {scheme}://{addr}")), "replica {i} did not start: {seen}");
        self.servers[i] = Some(serve);
        seen
    }

    /// Starts the first replica (which makes the keys, the certificate and the admin token),
    /// waits until it leads, gives the others its keys and certificate, and starts them.
    fn start_all(&mut self) {
        let seen = self.start(0, 0);
        if self.tls {
            self.pin = seen.split("certificate SHA-256 ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string();
            assert_eq!(self.pin.len(), 64, "no certificate pin in {seen}");
        }
        let cred: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(self.homes[0].path().join("credentials")).expect("credentials of the first start")).expect("YAML");
        self.token = cred["token"].as_str().expect("credentials: token").to_string();
        let at = Instant::now();
        while self.role(0).as_deref() != Some("leader") {
            assert!(at.elapsed() < TAKEOVER * 3, "the only replica does not lead: {:?}", self.health(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        for i in 1..3 {
            for dir in ["keys", "tls"] {
                let from = self.homes[0].path().join(dir);
                if from.exists() {
                    let st = Command::new("cp").arg("-a").arg(&from).arg(self.homes[i].path()).status().expect("run cp");
                    assert!(st.success(), "copying {} to replica {i}", from.display());
                }
            }
            self.start(i, 0);
        }
    }

    fn base(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.ports[i])
    }

    /// A client that trusts the replicas' one certificate (plain on loopback).
    fn client(&self) -> reqwest::Client {
        if !self.tls {
            return self.http.clone();
        }
        let pin: skycat_tls_pin::Fingerprint = self.pin.parse().expect("pin");
        let cfg = skycat_tls_pin::PinVerifier::pinned(pin).client_config().expect("TLS setup");
        reqwest::Client::builder().use_preconfigured_tls(cfg).timeout(Duration::from_secs(5)).build().expect("client")
    }

    /// `GET /healthz` of replica `i`; None when it does not answer.
    fn health(&self, i: usize) -> Option<Value> {
        let c = self.client();
        let url = format!("{}/healthz", self.base(i));
        self.rt.block_on(async move {
            let r = c.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
            r.json::<Value>().await.ok()
        })
    }

    fn role(&self, i: usize) -> Option<String> {
        self.health(i).and_then(|h| h["role"].as_str().map(str::to_string))
    }

    /// `skycat_heartbeats_ingested_total` of replica `i` (its `/metrics`, with the admin token).
    fn ingested(&self, i: usize) -> u64 {
        let c = self.client();
        let (url, token) = (format!("{}/metrics", self.base(i)), self.token.clone());
        let text = self.rt.block_on(async move { c.get(url).bearer_auth(token).send().await.expect("GET /metrics").text().await.expect("metrics") });
        text.lines()
            .find_map(|l| l.strip_prefix("skycat_heartbeats_ingested_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no skycat_heartbeats_ingested_total in replica {i}'s /metrics: {text}"))
    }

    /// The `skycat` CLI of a user whose server is replica `i` (by URL, pin and token).
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.files.path().join("cli-home"))
            .env("HOME", self.files.path())
            .env("SKYCAT_SERVER_URL", self.base(i))
            .env("SKYCAT_SERVER_CERT_SHA256", &self.pin)
            .env("SKYCAT_API_TOKEN", &self.token)
            .env_remove("RUST_LOG")
            .env_remove("SKYCAT_STATE");
        c.output().expect("run skycat")
    }

    /// Job `id` as `skycat jobs queue --json` on replica `i` shows it.
    fn job(&self, i: usize, id: i64) -> JobView {
        let jobs: Vec<JobView> = serde_json::from_value(stdout_json(&self.cli(i, &["jobs", "queue", "--json"]))).expect("jobs queue --json: JobViews");
        jobs.into_iter().find(|j| j.id == id).unwrap_or_else(|| panic!("job {id} not in replica {i}'s queue"))
    }

    /// Job `id` (read through replica `i`) once `f` accepts it; fails after `timeout`.
    fn wait_job(&self, i: usize, id: i64, what: &str, timeout: Duration, mut f: impl FnMut(&JobView) -> bool) -> JobView {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.job(i, id);
            if f(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; job: {v:#?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One SQL statement's result, read in the replicas' database.
    fn sql(&self, q: &str) -> String {
        self.pg.psql(&self.db, q)
    }

    /// Every replica's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.files.path()).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        names.sort();
        for p in names.into_iter().filter(|p| p.extension().is_some_and(|x| x == "log")) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: String = text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            out.push_str(&format!("--- {} (last 40 lines)\n{tail}\n", p.display()));
        }
        out
    }
}

/// A TCP load balancer on every address, in front of the replicas: each connection goes to the
/// next replica in turn, or the one after when it refuses (a dead replica), as a health-checked
/// balancer would. Counts connections per replica.
struct Balancer {
    port: u16,
    conns: Arc<Vec<AtomicU64>>,
}

impl Balancer {
    fn start(backends: Vec<u16>) -> Balancer {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind balancer");
        let port = listener.local_addr().expect("addr").port();
        let conns: Arc<Vec<AtomicU64>> = Arc::new(backends.iter().map(|_| AtomicU64::new(0)).collect());
        let counts = conns.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming().flatten() {
                let n = backends.len();
                let picked = (0..n).map(|k| (next + k) % n).find_map(|b| {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], backends[b]));
                    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok().map(|s| (b, s))
                });
                next = (next + 1) % n;
                let Some((b, server)) = picked else { continue };
                counts[b].fetch_add(1, Ordering::SeqCst);
                pipe(client, server);
            }
        });
        Balancer { port, conns }
    }

    fn connections(&self) -> Vec<u64> {
        self.conns.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }
}

/// Copies bytes both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        if std::io::Write::write_all(&mut to, &buf[..k]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    }
}

fn submitted_id(out: &str) -> i64 {
    out.split("Managed job ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {out:?}"))
}

/// The replicas (other than `except`) that say they lead, polled until one does or `within`.
fn leaders_within(r: &Replicas, except: usize, within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    loop {
        let leaders: Vec<usize> = (0..3).filter(|&i| i != except && r.role(i).as_deref() == Some("leader")).collect();
        if !leaders.is_empty() || Instant::now() > deadline {
            return leaders;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The claim tag (`<replica>:<term>`) a replica logged when it claimed jobs as leader.
fn claims_logged(log: &Path) -> Vec<String> {
    strip_ansi(&std::fs::read_to_string(log).unwrap_or_default())
        .lines()
        .filter(|l| l.contains("claimed as leader"))
        .filter_map(|l| l.split("claim=").nth(1).and_then(|s| s.split_whitespace().next()).map(str::to_string))
        .collect()
}

/// `text` without terminal colour escapes (the log's fields may be coloured).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn leader_sigkilled_during_a_recovery_another_leads_and_finishes_it_with_one_attempt_per_preemption() {
    let _serial = one_at_a_time();
    // The agent is built (or found fresh) before the hosts take the suites' shared lock.
    let agent = agent_bin();
    let hosts = TestHosts::up(2, NET, "rp");
    let yaml = common::pools_yaml(&hosts, &[("cheap", true, 1.8, &[1]), ("dear", true, 3.6, &[2])]);
    let o = common::fast_managed_options(String::new());
    let ports: Vec<u16> = (0..3).map(|_| skycat_testkit::free_port()).collect();
    // The agents report to the balancer, never to one replica.
    let lb = Balancer::start(ports.clone());
    let env: Vec<(String, String)> = vec![
        ("SKYCAT_AGENT_BIN".into(), agent.display().to_string()),
        ("SKYCAT_MANAGED_SERVER_URL".into(), format!("https://{{controller_ip}}:{}", lb.port)),
        ("SKYCAT_MANAGED_HEARTBEAT_SECS".into(), o.heartbeat_secs.to_string()),
        ("SKYCAT_MANAGED_DEADLINE_SECS".into(), o.deadline.as_secs_f64().to_string()),
        ("SKYCAT_MANAGED_POLL_SECS".into(), o.poll.as_secs_f64().to_string()),
        ("SKYCAT_TERMINATION_GRACE_SECS".into(), o.termination_grace_secs.to_string()),
    ];
    let mut r = Replicas::new("failover", true, Some(&yaml), env);
    r.ports = ports;
    r.start_all();
    let leader = 0;
    assert_eq!(leaders_within(&r, usize::MAX, Duration::ZERO), vec![leader], "replica 0 (started first) leads alone");
    for i in 1..3 {
        let h = r.health(i).expect("follower answers /healthz");
        assert_eq!((h["role"].as_str(), h["database"].as_str()), (Some("follower"), Some("reachable")), "replica {i}: {h}");
    }

    // Submitted to a follower: recorded there, claimed and driven by the leader.
    let follower = 1;
    let run = "echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT\"\n\
               if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 120; fi\nsleep 2\necho finished";
    let task = r.files.path().join("spot.yaml");
    std::fs::write(&task, format!("name: train\nresources:\n  infra: ssh\n  use_spot: true\nrun: |\n  {}\n", run.replace('\n', "\n  "))).expect("write task");
    let out = r.cli(follower, &["jobs", "launch", task.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "jobs launch on the follower: {}{}", stdout(&out), stderr(&out));
    let id = submitted_id(&stdout(&out));
    let v = r.wait_job(follower, id, "the first attempt running with metered cost", Duration::from_secs(60), |v| {
        v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0)
    });
    assert_eq!(v.attempts[0].pool, "ssh/cheap", "{v:#?}");
    let first_claim = r.sql(&format!("SELECT claimed_by FROM managed_jobs WHERE id = {id}"));
    assert_eq!(claims_logged(&r.log(leader, 0)), vec![first_claim.clone()], "the leader claimed the follower's job\n{}", r.logs());
    for i in 1..3 {
        assert!(claims_logged(&r.log(i, 0)).is_empty(), "follower {i} claimed a job\n{}", r.logs());
    }

    // Preempt the cheap host; SIGKILL the leader as soon as the queue shows the preemption seen.
    std::thread::sleep(Duration::from_millis(2500));
    hosts.cut(1);
    let v = r.wait_job(follower, id, "the preemption noticed", Duration::from_secs(30), |v| {
        v.attempts[0].outcome == "PREEMPTED" || v.status == "RECOVERING"
    });
    let killed_at = Instant::now();
    r.servers[leader].as_mut().expect("leader runs").kill();
    assert!(v.status == "RUNNING" || v.status == "RECOVERING", "{v:#?}");
    assert_eq!(v.attempts.len(), 1, "killed before the next attempt started: {v:#?}");
    // What the survivors had stored by then (their counters only grow).
    let ingested_before: u64 = (0..3).filter(|&i| i != leader).map(|i| r.ingested(i)).sum();

    // One survivor leads within the takeover time (plus the margin of polling from outside).
    let next = leaders_within(&r, leader, TAKEOVER + TAKEOVER_MARGIN);
    let took = killed_at.elapsed();
    assert_eq!(next.len(), 1, "exactly one survivor leads after {took:?}: {next:?}\n{}", r.logs());
    let new_leader = next[0];
    eprintln!("replica {new_leader} leads {took:?} after the leader's SIGKILL (--lease-takeover {TAKEOVER:?})");
    assert!(took <= TAKEOVER + TAKEOVER_MARGIN, "takeover took {took:?}");

    // The killed replica comes back on the same database and home: it follows.
    r.start(leader, 1);
    let h = r.health(leader).expect("the restarted replica answers");
    assert_eq!(h["role"], "follower", "the restarted replica: {h}");

    let v = r.wait_job(2, id, "the job to end", Duration::from_secs(90), |v| skycat_controller::managed::status::is_terminal(&v.status));
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}\n{}", r.logs());
    assert_eq!((v.attempts.len(), v.recovery_count), (2, 1), "exactly one more attempt: {v:#?}");
    assert_eq!((v.attempts[0].pool.as_str(), v.attempts[0].outcome.as_str()), ("ssh/cheap", "PREEMPTED"), "{v:#?}");
    assert_eq!((v.attempts[1].pool.as_str(), v.attempts[1].outcome.as_str()), ("ssh/dear", "SUCCEEDED"), "{v:#?}");
    // The database agrees: one row per attempt number, two in all.
    assert_eq!(r.sql(&format!("SELECT COUNT(*), COUNT(DISTINCT attempt) FROM managed_attempts WHERE job_id = {id}")), "2|2");
    // The new leader took the job over under its own claim; the restarted replica claimed nothing.
    let last_claim = r.sql(&format!("SELECT claimed_by FROM managed_jobs WHERE id = {id}"));
    assert_ne!(last_claim, first_claim, "the job was re-claimed");
    assert_eq!(claims_logged(&r.log(new_leader, 0)), vec![last_claim], "the new leader claimed it\n{}", r.logs());
    let other = 3 - leader - new_leader;
    assert!(claims_logged(&r.log(other, 0)).is_empty(), "replica {other} (still a follower) claimed a job");
    let restarted = std::fs::read_to_string(r.log(leader, 1)).unwrap_or_default();
    assert!(!restarted.contains("claimed as leader") && !restarted.contains("resuming managed job"), "the restarted follower drove a job: {restarted}");
    assert_eq!(r.role(leader).as_deref(), Some("follower"));
    assert_eq!(r.role(new_leader).as_deref(), Some("leader"));

    // The new leader resumed the recovery (it did not start the job over).
    let resumed = strip_ansi(&std::fs::read_to_string(r.log(new_leader, 0)).unwrap_or_default());
    assert!(resumed.contains("resuming managed job (recovery 1,"), "the new leader resumed the recovery\n{}", r.logs());
    // The agents' heartbeats reached live replicas through the balancer after the kill.
    let ingested_after: u64 = (0..3).map(|i| r.ingested(i)).sum();
    assert!(
        ingested_after > ingested_before,
        "no heartbeat stored after the kill ({ingested_before} then {ingested_after}); balancer connections {:?}",
        lb.connections()
    );
    // Both attempts' clusters are torn down (the preempted one's teardown resumed too).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = String::new();
    while Instant::now() < deadline {
        left = r.sql("SELECT COALESCE(string_agg(name || '=' || status, ','), '') FROM clusters WHERE status <> 'TERMINATED'");
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(left.is_empty(), "clusters left: {left}\n{}", r.logs());
}

/// A heartbeat of node `node` of cluster `c`, as the agent sends it (protocol version included).
fn heartbeat(node: &str, seq: u64) -> Value {
    let t = "2026-12-01T00:00:00Z";
    json!({"protocol_version": skycat_protocol::PROTOCOL_VERSION, "agent_version": "t", "cluster": "c",
        "node_id": node, "node_rank": 0, "seq": seq, "created_at": t, "reason": "periodic", "agent_started_at": t,
        "facts": {"hostname": "h", "cpus": 1, "memory_total_bytes": 1, "memory_available_bytes": 1, "gpus_for_jobs": 0.0},
        "jobs": [], "setup": {"state": "NONE", "log_path": "x"},
        "cost": {"price_per_hour": 1.0, "pinned_at": t, "metered_seconds": 0.0, "accrued_usd": 0.0}, "idle_seconds": 0.0})
}

/// xorshift64: the spread of heartbeats over replicas, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn heartbeats_sent_to_random_replicas_and_retried_on_others_are_stored_exactly_once() {
    let _serial = one_at_a_time();
    let mut r = Replicas::new("heartbeats", false, None, Vec::new());
    r.start_all();
    let home = tempfile::tempdir().expect("tempdir");
    let agent_token = "agent-token-of-c";
    r.rt.block_on(async {
        use skycat_controller::store::{hash_token, ClusterRow, Store};
        let store = Store::connect_postgres(&r.url, home.path()).await.expect("connect");
        let now = chrono::Utc::now().to_rfc3339();
        let row = ClusterRow {
            id: "cid".into(), name: "c".into(), status: "UP".into(), infra: "ssh/p".into(), pool: "p".into(), num_nodes: 3,
            price_per_hour: 1.0, spot: false, idle_minutes: None, down_on_idle: false, server_url: None, agent_version: None,
            task_json: None, autostopped_at: None, created_at: now.clone(), updated_at: now, terminated_at: None,
            instance_type: None, ports: None,
        };
        store.insert_cluster(&row, &hash_token(agent_token)).await.expect("insert cluster");
    });

    // Each (node, seq) goes to a random replica; half are also sent at the same moment to
    // another replica (an agent that timed out and retried elsewhere), and a quarter again at the
    // end (a journal replayed), each retry to a replica other than the first.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    let mut rng = Rng(seed);
    let (nodes, seqs) = (3u64, 60u64);
    let mut sends: Vec<Vec<(String, u64, usize)>> = Vec::new();
    let mut replays = Vec::new();
    for seq in 1..=seqs {
        for n in 0..nodes {
            let node = format!("n{n}");
            let a = rng.below(3) as usize;
            let mut group = vec![(node.clone(), seq, a)];
            if rng.below(2) == 0 {
                group.push((node.clone(), seq, (a + 1 + rng.below(2) as usize) % 3));
            }
            if rng.below(4) == 0 {
                replays.push(vec![(node.clone(), seq, (a + 1 + rng.below(2) as usize) % 3)]);
            }
            sends.push(group);
        }
    }
    sends.extend(replays);
    let bases: Vec<String> = (0..3).map(|i| r.base(i)).collect();
    let http = r.http.clone();
    // Four agents' worth of senders at once, each sending its groups in order.
    let answers: Vec<(String, u64, usize, u16, Value)> = r.rt.block_on(async {
        let chunks: Vec<Vec<Vec<(String, u64, usize)>>> = (0..4).map(|k| sends.iter().skip(k).step_by(4).cloned().collect()).collect();
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|groups| {
                let (http, bases) = (http.clone(), bases.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for group in groups {
                        let sent = group.into_iter().map(|(node, seq, to)| {
                            let (http, url) = (http.clone(), format!("{}/v1/agents/heartbeat", bases[to]));
                            async move {
                                let resp = http.post(url).bearer_auth(agent_token).json(&heartbeat(&node, seq)).send().await.expect("POST heartbeat");
                                let status = resp.status().as_u16();
                                let body: Value = resp.json().await.unwrap_or(Value::Null);
                                (node, seq, to, status, body)
                            }
                        });
                        got.extend(futures_join_all(sent.collect()).await);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("sender"));
        }
        all
    });

    let total = (nodes * seqs) as usize;
    assert!(answers.len() > total, "retries were sent (seed {seed})");
    let mut stored = std::collections::BTreeMap::<(String, u64), usize>::new();
    let mut per_replica = [0usize; 3];
    for (node, seq, to, status, body) in &answers {
        assert_eq!(*status, 200, "heartbeat {node}/{seq} to replica {to}: {body} (seed {seed})");
        match body["status"].as_str() {
            Some("stored") => {
                *stored.entry((node.clone(), *seq)).or_default() += 1;
                per_replica[*to] += 1;
            }
            Some("duplicate") => {}
            other => panic!("heartbeat {node}/{seq} to replica {to}: status {other:?} (seed {seed})"),
        }
    }
    assert_eq!(stored.len(), total, "every heartbeat was stored by some replica (seed {seed})");
    assert!(stored.values().all(|&k| k == 1), "a heartbeat acknowledged as stored twice: {:?} (seed {seed})", stored.iter().filter(|(_, &k)| k > 1).collect::<Vec<_>>());
    assert!(per_replica.iter().all(|&k| k > 0), "each replica stored some: {per_replica:?} (seed {seed})");
    // The database holds each (node, seq) exactly once, and nothing else.
    assert_eq!(r.sql("SELECT COUNT(*), COUNT(DISTINCT (node_id, seq)) FROM heartbeats WHERE cluster_id = 'cid'"), format!("{total}|{total}"), "seed {seed}");
    let want: Vec<String> = (0..nodes).map(|n| format!("n{n}|{seqs}|1|{seqs}")).collect();
    assert_eq!(r.sql("SELECT node_id, COUNT(*), MIN(seq), MAX(seq) FROM heartbeats GROUP BY node_id ORDER BY node_id"), want.join("\n"), "seed {seed}");
    // Each replica's ingest counter counts what it stored, and together they count each once.
    let counted: Vec<u64> = (0..3).map(|i| r.ingested(i)).collect();
    assert_eq!(counted, per_replica.iter().map(|&k| k as u64).collect::<Vec<_>>(), "seed {seed}");
}

/// Runs the futures at once; their outputs in order (no futures crate in this package).
async fn futures_join_all<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
