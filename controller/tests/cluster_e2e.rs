//! End-to-end tests of the cluster lifecycle against real sshd test hosts in network namespaces
//! (scripts/testhosts.sh) running the real `skycat-agent`. Needs root, iproute2 and
//! openssh-server: `scripts/ci-setup-sshd.sh` installs them. Never skipped: missing tools fail.
//!
//! Tests serialize on a file lock (they share the 10.231.100+i.0/30 addresses) and remove their
//! namespaces in a Drop guard, so a failing test cleans up too.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_controller::home::Home;
use skycat_controller::lifecycle::{wait_job_state, Controller, LaunchRequest, TaskRun};

/// Points the request at the pool through the planner, as `skycat launch --infra ssh/POOL` does.
fn on_pool(ctl: &Controller, req: &mut LaunchRequest, pool: &str) {
    let spec = skycat_optimizer::parse_task_yaml(&format!("resources:\n  infra: ssh/{pool}\n")).expect("task");
    let lp = ctl.plan_launch(&spec, &[], &skycat_optimizer::PlanOptions::default()).expect("plan on the pool");
    req.placements = lp.plan.failover;
}
use skycat_controller::store::{status, Store};
use skycat_protocol::{AgentStatus, JobState};

mod common;
use common::{agent_bin, TestHosts};
const NET: u32 = 100;

struct Env {
    _home: tempfile::TempDir,
    home_path: PathBuf,
    ctl: Controller,
    lines: Arc<Mutex<Vec<String>>>,
}

async fn controller(pools_yaml: &str) -> Env {
    let home = tempfile::tempdir().expect("tempdir");
    let home_path = home.path().to_path_buf();
    std::fs::write(home_path.join("ssh_node_pools.yaml"), pools_yaml).expect("write pools");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    // Agents report over HTTPS and pin the receiver's certificate.
    let (_, pin) = common::agent_cert(&home_path);
    let ctl = Controller::open(Home::at(&home_path))
        .await
        .expect("open controller")
        .with_agent_bin(agent_bin())
        .with_server_cert_sha256(pin)
        .with_ssh_connect_timeout(Duration::from_secs(5))
        .with_progress(Arc::new(move |s: &str| l2.lock().unwrap().push(s.to_string())));
    Env { _home: home, home_path, ctl, lines }
}

/// The heartbeat receiver (the server's route), stoppable: over HTTPS on 0.0.0.0:port for the
/// agents (with the certificate in `home/tls`, which the controller pins), and over plain HTTP on
/// loopback for the test's own posts.
struct Receiver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    plain: tokio::task::JoinHandle<()>,
}

async fn receiver(store: Store, home: &std::path::Path, port: u16) -> (Receiver, u16, u16) {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = skycat_server::routes::heartbeat::router(store);
    let (tls, _) = common::agent_cert(home);
    let task = common::spawn_tls(listener, app.clone(), &tls, async move {
        let _ = rx.await;
    });
    let loopback = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind receiver");
    let plain_port = loopback.local_addr().expect("addr").port();
    let plain = tokio::spawn(async move {
        let _ = axum::serve(loopback, app).await;
    });
    (Receiver { stop: Some(tx), task, plain }, port, plain_port)
}

impl Receiver {
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        self.task.abort();
        self.plain.abort();
    }
}

/// POSTs `body` to the heartbeat endpoint with raw HTTP/1.1; returns the status code.
fn post_heartbeat(port: u16, token: Option<&str>, body: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect receiver");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST /v1/agents/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pool_yaml(hosts: &TestHosts, entries: &[String], price: f64) -> String {
    format!(
        "testpool:\n  hosts:\n{}\n  user: root\n  identity_file: {}\n  price_per_hour: {price}\n",
        entries.iter().map(|e| format!("    - {e}")).collect::<Vec<_>>().join("\n"),
        hosts.key().display()
    )
}

async fn agent_status(env: &Env, cluster: &str, rank: u32) -> AgentStatus {
    let c = env.ctl.store.require_cluster(cluster).await.expect("cluster");
    let nodes = env.ctl.store.nodes(&c.id).await.expect("nodes");
    let n = &nodes[rank as usize];
    let s = env.ctl.connect(&c, n).await.expect("ssh");
    let out = s
        .run_ok(&format!("{} status --state-dir {} --json", n.agent_bin, n.state_dir), None)
        .await
        .expect("agent status");
    s.close().await;
    serde_json::from_str(out.trim()).expect("AgentStatus json")
}

const SECRET: &str = "hf_SuperSecret_8675309";
const NAMED_SECRET: &str = "acme-entity-4471";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_launch_setup_env_logs_heartbeats_cost_autostop_down() {
    let hosts = TestHosts::up(2, NET, "");
    let env = controller(&pool_yaml(&hosts, &[hosts.ip(1), hosts.ip(2)], 36.0)).await;
    let (rx, port, plain_port) = receiver(env.ctl.store.clone(), &env.home_path, 0).await;

    let workdir = tempfile::tempdir().expect("workdir");
    std::fs::write(workdir.path().join("data.txt"), "workdir-synced\n").expect("write");
    // Packed as SkyPilot does: .gitignore'd files stay behind.
    std::fs::write(workdir.path().join(".gitignore"), "local-only.bin\n").expect("write");
    std::fs::write(workdir.path().join("local-only.bin"), "not-uploaded\n").expect("write");
    // file_mounts: a folder and a single file (renamed at its destination) from this machine.
    let mount_src = tempfile::tempdir().expect("mount src");
    std::fs::create_dir_all(mount_src.path().join("data/sub")).expect("mkdir");
    std::fs::write(mount_src.path().join("data/a.txt"), "mounted-a\n").expect("write");
    std::fs::write(mount_src.path().join("data/sub/b.txt"), "mounted-b\n").expect("write");
    std::fs::write(mount_src.path().join("local.yaml"), "lr: 0.25\n").expect("write");
    let file_mounts: BTreeMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "~/mnt/data": "./data",
        "~/cfg/train.yaml": "local.yaml",
    }))
    .unwrap();
    let file_mounts = skycat_controller::mounts::parse(&file_mounts, Some(mount_src.path()), None).expect("file_mounts");
    let task = TaskRun {
        name: Some("e2e".into()),
        num_nodes: 2,
        setup: Some("echo setup-ran >> \"$HOME/setup-count\"; echo SETUP rank=$SKYCAT_NODE_RANK".into()),
        run: Some(
            "echo RANK=$SKYCAT_NODE_RANK NUM=$SKYCAT_NUM_NODES SP=$SKYPILOT_NODE_RANK SPNUM=$SKYPILOT_NUM_NODES \
             IPS=$(echo $SKYCAT_NODE_IPS | tr ' ' ,) TASK=${SKYCAT_TASK_ID:+set}; echo tok=$HF_TOKEN model=$MODEL ent=$WANDB_ENTITY; \
             cat data.txt; test -e local-only.bin || echo IGNORED-STAYED-LOCAL; \
             echo MOUNTS $(cat ~/mnt/data/a.txt ~/mnt/data/sub/b.txt ~/cfg/train.yaml); sleep 1"
                .into(),
        ),
        envs: BTreeMap::from([
            ("HF_TOKEN".into(), SECRET.into()),
            ("MODEL".into(), "tiny".into()),
            ("WANDB_ENTITY".into(), NAMED_SECRET.into()),
        ]),
        workdir: Some(workdir.path().to_path_buf()),
        workdir_archive: None,
        gpus_per_node: 0.0,
        // `--secret WANDB_ENTITY`: a secret by the user's word, not by its name.
        secret_envs: vec!["WANDB_ENTITY".into()],
        file_mounts,
        storage_envs: BTreeMap::new(),
    };
    let mut req = LaunchRequest::new("e2e", task.clone());
    on_pool(&env.ctl, &mut req, "testpool");
    req.server_url = Some(format!("https://{{controller_ip}}:{port}"));
    req.heartbeat_interval_secs = Some(0.5);
    req.idle_seconds = Some(6.0);
    let out = env.ctl.launch(&req).await.expect("launch");
    assert_eq!(out.job_id, Some(1));
    assert_eq!(out.hosts, vec![format!("root@{}:22", hosts.ip(1)), format!("root@{}:22", hosts.ip(2))]);
    let lines = env.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("uploading agent")), "progress: {lines:?}");

    let job = wait_job_state(&env.ctl, "e2e", 1, |s| s.is_terminal(), Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.per_node.len(), 2);

    // Logs of both ranks, with the right env, the synced workdir and the secret redacted.
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let b2 = buf.clone();
    let shown = env
        .ctl
        .logs("e2e", None, false, Arc::new(move |chunk: &[u8]| b2.lock().unwrap().extend_from_slice(chunk)))
        .await
        .expect("logs");
    assert_eq!(shown, 1);
    let logs = String::from_utf8(buf.lock().unwrap().clone()).expect("utf8 logs");
    let ips = format!("{},{}", hosts.ip(1), hosts.ip(2));
    for r in 0..2 {
        let want = format!("(rank {r}) RANK={r} NUM=2 SP={r} SPNUM=2 IPS={ips} TASK=set");
        assert!(logs.contains(&want), "missing {want:?} in logs:\n{logs}");
    }
    assert!(logs.contains("(rank 1) workdir-synced"), "{logs}");
    assert!(logs.contains("(rank 1) IGNORED-STAYED-LOCAL"), "{logs}");
    for r in 0..2 {
        assert!(logs.contains(&format!("(rank {r}) MOUNTS mounted-a mounted-b lr: 0.25")), "file mounts on rank {r}:\n{logs}");
    }
    assert!(logs.contains("tok=<redacted> model=tiny ent=<redacted>"), "{logs}");
    assert!(!logs.contains(SECRET) && !logs.contains(NAMED_SECRET), "secret leaked into logs:\n{logs}");

    // Relaunch on the same cluster: agents reused, setup not run again, next job id.
    let mut again = req.clone();
    again.task.run = Some("echo second".into());
    let out2 = env.ctl.launch(&again).await.expect("relaunch");
    assert_eq!(out2.job_id, Some(2));
    assert_eq!(out2.reused_agents, 2);
    wait_job_state(&env.ctl, "e2e", 2, |s| s == JobState::Succeeded, Duration::from_secs(30)).await.expect("job 2");
    for i in 1..=2 {
        let count = std::fs::read_to_string(hosts.home(i).join("setup-count")).expect("setup-count");
        assert_eq!(count.lines().count(), 1, "setup ran {} times on host {i}", count.lines().count());
    }

    // Heartbeats arrive, and cost grows.
    let c = env.ctl.store.require_cluster("e2e").await.expect("cluster");
    wait_until("heartbeats from both nodes", Duration::from_secs(20), || async {
        let n = env.ctl.store.nodes(&c.id).await.unwrap();
        n.iter().all(|n| n.last_seq >= 2)
    })
    .await;
    let cost0: f64 = env.ctl.store.nodes(&c.id).await.unwrap().iter().map(|n| n.accrued_usd).sum();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cost1: f64 = env.ctl.store.nodes(&c.id).await.unwrap().iter().map(|n| n.accrued_usd).sum();
    assert!(cost1 > cost0 && cost0 > 0.0, "cost did not grow: {cost0} -> {cost1}");

    // The endpoint: a wrong or missing token gets 401; the right one, a replay, is deduplicated.
    let body: String = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.home_path.join("state.db").display()))
            .await
            .expect("db");
        let b = sqlx::query_scalar("SELECT body FROM heartbeats WHERE cluster_id = $1 ORDER BY seq LIMIT 1")
            .bind(&c.id)
            .fetch_one(&pool)
            .await
            .expect("a heartbeat body");
        pool.close().await;
        b
    };
    let nodes = env.ctl.store.nodes(&c.id).await.unwrap();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hosts.home(1).join(".skycat-agent/clusters/e2e/config.json")).expect("node config"),
    )
    .expect("config json");
    let token = cfg["token"].as_str().expect("token in node config").to_string();
    let before = env.ctl.store.heartbeat_count(&c.id).await.unwrap();
    let (b2, t2) = (body.clone(), token.clone());
    let codes = tokio::task::spawn_blocking(move || {
        (
            post_heartbeat(plain_port, Some("not-the-token"), &b2),
            post_heartbeat(plain_port, None, &b2),
            post_heartbeat(plain_port, Some(&t2), "{not json"),
            post_heartbeat(plain_port, Some(&t2), &b2),
        )
    })
    .await
    .unwrap();
    assert_eq!(codes, (401, 401, 400, 200));
    assert!(env.ctl.store.heartbeat_count(&c.id).await.unwrap() >= before);
    assert_eq!(nodes.len(), 2);

    // Autostop (idle 6 s, test knob of -i): the router marks the cluster STOPPED and the stop
    // action stops the agents.
    wait_until("autostop", Duration::from_secs(40), || async {
        env.ctl.store.require_cluster("e2e").await.unwrap().status == status::STOPPED
    })
    .await;
    wait_until("agents stopped by autostop", Duration::from_secs(20), || async {
        !agent_status(&env, "e2e", 0).await.daemon_running && !agent_status(&env, "e2e", 1).await.daemon_running
    })
    .await;

    // Secrets never reach the state DB (nor status) in clear.
    let views = env.ctl.status(true).await.expect("status");
    assert!(!format!("{views:?}").contains(SECRET) && !format!("{views:?}").contains(NAMED_SECRET));
    let report = env.ctl.store.cost_report().await.expect("cost report");
    let line = report.iter().find(|l| l.name == "e2e").expect("e2e in report");
    assert!(line.usd > 0.0 && line.records > 0, "{line:?}");

    // Down: agents and their files gone, hosts free, cluster gone (still in the cost report).
    env.ctl.down("e2e", false).await.expect("down");
    for i in 1..=2 {
        assert!(!hosts.home(i).join(".skycat-agent").exists(), "agent files left on host {i}");
        let procs = hosts.process_names(i);
        assert!(!procs.iter().any(|p| p.starts_with("skycat-agent")), "agent still running on host {i}: {procs:?}");
    }
    assert!(env.ctl.store.cluster("e2e").await.unwrap().is_none());
    assert!(env.ctl.store.reserved_hosts("testpool").await.unwrap().is_empty());
    assert!(env.ctl.store.cost_report().await.unwrap().iter().any(|l| l.name == "e2e" && l.status == "TERMINATED"));
    rx.shutdown().await;
    let mut db = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(b) = std::fs::read(env.home_path.join(f)) {
            db.extend(b);
        }
    }
    assert!(!db.is_empty());
    assert!(!String::from_utf8_lossy(&db).contains(SECRET), "secret stored in clear in the state DB");
    assert!(!String::from_utf8_lossy(&db).contains(NAMED_SECRET), "--secret value stored in clear in the state DB");
    assert!(!String::from_utf8_lossy(&db).contains(&token), "cluster token stored in clear in the state DB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_is_skipped_and_changed_host_key_refused() {
    let hosts = TestHosts::up(1, NET, "");
    // First entry: our own test host on a port where nothing listens (connection refused).
    let entries = [format!("{{ip: {}, port: 2222}}", hosts.ip(1)), hosts.ip(1)];
    let env = controller(&pool_yaml(&hosts, &entries, 0.0)).await;
    let mut req = LaunchRequest::new("f1", TaskRun { num_nodes: 1, run: Some("echo hi".into()), ..Default::default() });
    on_pool(&env.ctl, &mut req, "testpool");
    let out = env.ctl.launch(&req).await.expect("launch skips the dead host");
    assert_eq!(out.hosts, vec![format!("root@{}:22", hosts.ip(1))]);
    assert_eq!(out.skipped.len(), 1, "{:?}", out.skipped);
    let (h, why) = &out.skipped[0];
    assert_eq!(h, &format!("root@{}:2222", hosts.ip(1)));
    assert!(why.contains("cannot reach") && why.contains("refused"), "{why}");
    let lines = env.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("trying the next host")), "{lines:?}");
    env.ctl.down("f1", false).await.expect("down");

    // The host is reinstalled (new host key): the pinned key no longer matches.
    hosts.script(&["up", "1"]);
    let mut req = LaunchRequest::new("f2", TaskRun { num_nodes: 1, run: Some("echo hi".into()), ..Default::default() });
    on_pool(&env.ctl, &mut req, "testpool");
    let err = env.ctl.launch(&req).await.expect_err("changed host key must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("host key of {} changed", hosts.ip(1))), "{msg}");
    assert!(msg.matches("SHA256:").count() >= 2, "both fingerprints expected: {msg}");
    assert!(env.ctl.store.cluster("f2").await.unwrap().is_none());
    assert!(env.ctl.store.reserved_hosts("testpool").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_job_comes_back_and_reports_truthfully() {
    let hosts = TestHosts::up(1, NET, "");
    let env = controller(&pool_yaml(&hosts, &[hosts.ip(1)], 0.0)).await;
    let task = TaskRun { num_nodes: 1, run: Some("echo started; sleep 4; echo finished".into()), ..Default::default() };
    let mut req = LaunchRequest::new("k1", task);
    on_pool(&env.ctl, &mut req, "testpool");
    env.ctl.launch(&req).await.expect("launch");
    wait_job_state(&env.ctl, "k1", 1, |s| s == JobState::Running, Duration::from_secs(20)).await.expect("running");
    let pid_file = hosts.home(1).join(".skycat-agent/clusters/k1/agent.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("agent.pid");
    let pid = pid.split_whitespace().next().expect("pid").to_string();
    assert!(Command::new("kill").args(["-9", &pid]).status().expect("kill").success());
    wait_until("agent dead", Duration::from_secs(10), || async { !agent_status(&env, "k1", 0).await.daemon_running }).await;
    // `skycat start` brings the agent back; it re-adopts the still-running job.
    env.ctl.start("k1").await.expect("start");
    let job = wait_job_state(&env.ctl, "k1", 1, |s| s.is_terminal(), Duration::from_secs(30)).await.expect("ends");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.per_node[0].1.exit_code, Some(0));
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let b2 = buf.clone();
    env.ctl.logs("k1", Some(1), false, Arc::new(move |c: &[u8]| b2.lock().unwrap().extend_from_slice(c))).await.expect("logs");
    let logs = String::from_utf8_lossy(&buf.lock().unwrap()).to_string();
    assert!(logs.contains("started") && logs.contains("finished"), "{logs}");
    env.ctl.down("k1", false).await.expect("down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_survive_server_outage_without_loss() {
    let hosts = TestHosts::up(1, NET, "");
    let env = controller(&pool_yaml(&hosts, &[hosts.ip(1)], 3.6)).await;
    let (rx, port, _) = receiver(env.ctl.store.clone(), &env.home_path, 0).await;
    let mut req = LaunchRequest::new("hb", TaskRun { num_nodes: 1, run: Some("sleep 1".into()), ..Default::default() });
    on_pool(&env.ctl, &mut req, "testpool");
    req.server_url = Some(format!("https://{{controller_ip}}:{port}"));
    req.heartbeat_interval_secs = Some(0.3);
    env.ctl.launch(&req).await.expect("launch");
    let c = env.ctl.store.require_cluster("hb").await.unwrap();
    wait_until("first heartbeats", Duration::from_secs(20), || async {
        env.ctl.store.heartbeat_count(&c.id).await.unwrap() >= 3
    })
    .await;
    rx.shutdown().await;
    let during = env.ctl.store.heartbeat_count(&c.id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let made = agent_status(&env, "hb", 0).await;
    assert!(made.heartbeat_seq > made.heartbeat_acked_seq + 3, "agent should be journaling: {} made, {} acked", made.heartbeat_seq, made.heartbeat_acked_seq);
    assert_eq!(env.ctl.store.heartbeat_count(&c.id).await.unwrap(), during, "server was down");
    let (rx, _, _) = receiver(env.ctl.store.clone(), &env.home_path, port).await;
    let target = made.heartbeat_seq;
    wait_until("replay after the outage", Duration::from_secs(30), || async {
        let seqs = env.ctl.store.heartbeat_seqs(&c.id).await.unwrap();
        seqs.last().is_some_and(|(_, s)| *s >= target)
    })
    .await;
    let seqs: Vec<u64> = env.ctl.store.heartbeat_seqs(&c.id).await.unwrap().into_iter().map(|(_, s)| s).collect();
    let expect: Vec<u64> = (1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, expect, "heartbeats lost or duplicated across the outage");
    let report = env.ctl.store.cost_report().await.unwrap();
    assert!(report.iter().any(|l| l.name == "hb" && l.usd > 0.0), "{report:?}");
    env.ctl.down("hb", false).await.expect("down");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostop_with_down_tears_the_cluster_down() {
    let hosts = TestHosts::up(1, NET, "");
    let env = controller(&pool_yaml(&hosts, &[hosts.ip(1)], 0.0)).await;
    let (rx, port, _) = receiver(env.ctl.store.clone(), &env.home_path, 0).await;
    let mut req = LaunchRequest::new("ad", TaskRun { num_nodes: 1, run: Some("echo quick".into()), ..Default::default() });
    on_pool(&env.ctl, &mut req, "testpool");
    req.server_url = Some(format!("https://{{controller_ip}}:{port}"));
    req.heartbeat_interval_secs = Some(0.5);
    req.idle_seconds = Some(2.0);
    req.down_on_idle = true;
    env.ctl.launch(&req).await.expect("launch");
    wait_until("autostop --down removes the cluster", Duration::from_secs(40), || async {
        env.ctl.store.cluster("ad").await.unwrap().is_none()
    })
    .await;
    assert!(!hosts.home(1).join(".skycat-agent").exists(), "agent files left after autostop --down");
    assert!(env.ctl.store.reserved_hosts("testpool").await.unwrap().is_empty());
    let report = env.ctl.store.cost_report().await.unwrap();
    assert!(report.iter().any(|l| l.name == "ad" && l.status == "TERMINATED"), "{report:?}");
    rx.shutdown().await;
}

/// A TCP relay on 0.0.0.0:`port` (0: any) to `127.0.0.1:to`: each namespace host reaches this
/// machine only at its own point-to-point address, so a loopback-only server (moto) is offered
/// to all of them there, as `{controller_ip}:port`.
fn relay(to: u16) -> u16 {
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else { continue };
            for (mut from, mut into) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// `file_mounts` from a bucket, `mode: COPY`, on two nodes: moto's S3 (the real emulator) holds
/// a prefix; each node's agent downloads it with the credentials passed on its stdin, which
/// never land in the state DB, the agents' files or the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_copy_mounts_on_two_nodes_with_credentials_as_secrets() {
    const KEY_SECRET: &str = "moto-secret-3f9a1c77e2";
    let moto = skycat_testkit::moto::start_moto();
    skycat_testkit::storage::s3_create_bucket(&moto.url, "train-data");
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    skycat_testkit::storage::s3_put(&moto.url, "train-data", "ds/a.txt", b"bucket-a\n");
    skycat_testkit::storage::s3_put(&moto.url, "train-data", "ds/sub/b.bin", &big);
    skycat_testkit::storage::s3_put(&moto.url, "train-data", "other/x.txt", b"not under the prefix\n");
    let port = relay(moto.url.rsplit(':').next().unwrap().parse().unwrap());

    let hosts = TestHosts::up(2, NET, "");
    let env = controller(&pool_yaml(&hosts, &[hosts.ip(1), hosts.ip(2)], 2.0)).await;
    // A storage object: a bucket skycat makes from a local folder, deleted on down.
    let made_src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(made_src.path().join("cfg")).unwrap();
    std::fs::write(made_src.path().join("cfg/made.txt"), b"made-by-skycat\n").unwrap();
    let file_mounts: BTreeMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "~/data": "s3://train-data/ds",
        "/tmp/skycat-e2e-copy-one.txt": {"source": "s3://train-data/ds/a.txt", "mode": "COPY"},
        "~/made": {"name": "skycat-e2e-made", "store": "s3", "source": made_src.path(), "persistent": false, "mode": "COPY"},
        // MOUNT: rclone over FUSE on each node (scripts/ci-setup-storage.sh installs both).
        "~/mnt": {"source": "s3://train-data/ds", "mode": "MOUNT"},
    }))
    .unwrap();
    let file_mounts = skycat_controller::mounts::parse(&file_mounts, None, None).expect("file_mounts");
    let lookup: BTreeMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", KEY_SECRET.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://{{controller_ip}}:{port}")),
    ]
    .into();
    let storage_envs = skycat_controller::mounts::credentials_for(&file_mounts, |k| lookup.get(k).cloned()).expect("credentials");
    assert_eq!(storage_envs.len(), 4);
    let task = TaskRun {
        num_nodes: 2,
        run: Some(
            "echo COPIED $(cat ~/data/a.txt) $(wc -c < ~/data/sub/b.bin) $(sha256sum < ~/data/sub/b.bin | cut -c1-16); \
             test -e ~/data/x.txt || test -e ~/data/other || echo ONLY-THE-PREFIX; echo ONE $(cat /tmp/skycat-e2e-copy-one.txt); \
             echo MADE $(cat ~/made/cfg/made.txt); echo MOUNTED $(cat ~/mnt/a.txt) $(wc -c < ~/mnt/sub/b.bin)"
                .into(),
        ),
        file_mounts,
        storage_envs,
        ..Default::default()
    };
    let mut req = LaunchRequest::new("bk", task);
    on_pool(&env.ctl, &mut req, "testpool");
    let out = env.ctl.launch(&req).await.expect("launch");
    let job = wait_job_state(&env.ctl, "bk", out.job_id.unwrap(), |s| s.is_terminal(), Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let b2 = buf.clone();
    env.ctl.logs("bk", None, false, Arc::new(move |c: &[u8]| b2.lock().unwrap().extend_from_slice(c))).await.expect("logs");
    let logs = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&big).iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
    };
    for r in 0..2 {
        assert!(logs.contains(&format!("(rank {r}) COPIED bucket-a {} {digest}", big.len())), "rank {r}:\n{logs}");
        assert!(logs.contains(&format!("(rank {r}) ONLY-THE-PREFIX")) && logs.contains(&format!("(rank {r}) ONE bucket-a")), "{logs}");
        assert!(logs.contains(&format!("(rank {r}) MADE made-by-skycat")), "{logs}");
        assert!(logs.contains(&format!("(rank {r}) MOUNTED bucket-a {}", big.len())), "{logs}");
    }
    // The storage object is recorded, its bucket holds the source.
    let rows = env.ctl.store.storage_rows().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].name.as_str(), rows[0].url.as_str(), rows[0].persistent, rows[0].status.as_str()), ("skycat-e2e-made", "s3://skycat-e2e-made", false, "READY"));
    assert_eq!(rows[0].cluster.as_deref(), Some("bk"));
    let (status, listing) = skycat_testkit::storage::http(&moto.url, "GET", "/skycat-e2e-made?list-type=2", &[], b"");
    assert!(status == 200 && listing.contains("<Key>cfg/made.txt</Key>"), "{status} {listing}");
    // The secret key is nowhere at rest: not in the state DB (nor its WAL), not in the nodes'
    // agent state, and not in the logs.
    assert!(!logs.contains(KEY_SECRET));
    let mut at_rest = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        at_rest.push(env.home_path.join(f));
    }
    for i in 1..=2 {
        at_rest.extend(walk_files(&hosts.home(i)));
    }
    for f in at_rest {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!bytes.windows(KEY_SECRET.len()).any(|w| w == KEY_SECRET.as_bytes()), "{} holds the secret key", f.display());
    }
    env.ctl.down("bk", true).await.expect("down");
    let _ = std::fs::remove_file("/tmp/skycat-e2e-copy-one.txt");
    // Down unmounted the nodes' FUSE mounts.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for i in 1..=2 {
        let mnt = hosts.home(i).join("mnt");
        assert!(!mounts.contains(&mnt.display().to_string()), "{} is still mounted after down", mnt.display());
    }
    // `persistent: false`: down deleted the bucket and its record; the user's bucket stays.
    let (status, _) = skycat_testkit::storage::http(&moto.url, "HEAD", "/skycat-e2e-made", &[], b"");
    assert_eq!(status, 404, "the storage bucket outlived down");
    assert!(env.ctl.store.storage_rows().await.unwrap().is_empty());
    let (status, _) = skycat_testkit::storage::http(&moto.url, "HEAD", "/train-data", &[], b"");
    assert_eq!(status, 200);
}

fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk_files(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}
