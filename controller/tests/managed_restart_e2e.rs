//! End-to-end tests of managed jobs across a restart of the controller (`skycat serve` stopped
//! and started again on the same home): the job's sealed request is opened again, a running
//! attempt is re-adopted, an interrupted recovery is continued, and no secret is ever in clear in
//! `state.db` or its WAL. Real sshd test hosts in network namespaces (scripts/testhosts.sh)
//! running the real `skycat-agent`; needs root, iproute2 and openssh-server
//! (`scripts/ci-setup-sshd.sh`). Never skipped: missing tools fail.
//!
//! Serialized with the other controller e2e suites on the same file lock; namespaces are removed
//! in a Drop guard.

use std::path::Path;
use std::time::Duration;

use skycat_controller::home::Home;
use skycat_controller::lifecycle::{Controller, TaskRun};
use skycat_controller::managed::{JobRequest, JobView, Managed};

mod common;
use common::{agent_bin, TestHosts};
const NET: u32 = 190;

const HF_TOKEN: &str = "hf_RestartSeCrEt_5d2b8e71c0";
const DATASET_URI: &str = "s3://restart-private-4a7f19";

/// A running `skycat serve` equivalent on `home`: the heartbeat router on 0.0.0.0:port (0: any)
/// and the managed-jobs controller.
struct Service {
    managed: Managed,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

async fn start(home: &Path, port: u16) -> Service {
    let (tls, pin) = common::agent_cert(home);
    let ctl = Controller::open(Home::at(home)).await.expect("open controller").with_agent_bin(agent_bin()).with_server_cert_sha256(pin);
    let store = ctl.store.clone();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let opts = common::fast_managed_options(format!("https://{{controller_ip}}:{port}"));
    let managed = Managed::new(ctl, opts, std::sync::Arc::new(Vec::new)).await.expect("managed");
    let app = skycat_server::routes::heartbeat::router(store);
    let task = common::spawn_tls(listener, app, &tls, std::future::pending());
    Service { managed, port, task }
}

impl Service {
    /// The controller process dies: the HTTP server and every job controller stop; the clusters
    /// and the DB stay. Returns the port, for the next server.
    async fn kill(self) -> u16 {
        self.task.abort();
        let _ = self.task.await;
        self.managed.shutdown();
        drop(self.managed);
        // Aborted tasks stop at their next await.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.port
    }
}

fn pools(hosts: &TestHosts, pools: &[(&str, bool, f64, &[u32])]) -> String {
    common::pools_yaml(hosts, pools)
}

/// A job whose secrets are `HF_TOKEN` (secret by its name) and `DATASET_URI` (declared secret).
fn request(run: &str, use_spot: bool) -> JobRequest {
    let mut task = TaskRun::command(run);
    task.name = Some("train".into());
    task.envs.insert("HF_TOKEN".into(), HF_TOKEN.into());
    task.envs.insert("DATASET_URI".into(), DATASET_URI.into());
    task.envs.insert("EPOCHS".into(), "3".into());
    task.secret_envs = vec!["DATASET_URI".into()];
    JobRequest { name: Some("train".into()), task, use_spot, strategy: None, max_restarts_on_errors: 0, spec: None }
}

/// No secret value in clear in the state DB or its WAL.
fn assert_no_secret_in_db(home: &Path, when: &str) {
    let db = Home::at(home).state_db();
    let mut bytes = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        bytes.extend(std::fs::read(db.with_file_name(f)).unwrap_or_default());
    }
    assert!(bytes.len() > 4096, "{when}: the state DB was not read");
    for s in [HF_TOKEN, DATASET_URI] {
        assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{when}: {s:?} is in clear in state.db or its WAL");
    }
}

async fn wait_for(what: &str, timeout: Duration, f: impl FnMut(&JobView) -> bool, m: &Managed, id: i64) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_readopts_the_running_attempt_with_its_secrets() {
    let hosts = TestHosts::up(1, NET, "mr");
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join("ssh_node_pools.yaml"), pools(&hosts, &[("od", false, 2.0, &[1])])).expect("write pools");
    let svc = start(home.path(), 0).await;
    let run = "echo \"start rc=$SKYCAT_JOB_RECOVERY_COUNT\"; sleep 8; echo \"hf=${#HF_TOKEN} ds=${#DATASET_URI} epochs=$EPOCHS\"; echo finished";
    let id = svc.managed.submit(request(run, false)).await.expect("submit");
    let before = wait_for(
        "the attempt running with metered cost",
        Duration::from_secs(40),
        |v| v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0),
        &svc.managed,
        id,
    )
    .await;
    assert_no_secret_in_db(home.path(), "while running");

    // The controller dies mid-attempt and comes back 2 s later on the same home and port.
    let port = svc.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let svc = start(home.path(), port).await;
    let m = &svc.managed;
    let v = m.job(id).await.expect("job").expect("exists");
    assert!(v.status == "RUNNING" || v.status == "SUCCEEDED", "re-adopted, not failed: {v:#?}");

    let v = m.wait(id, Duration::from_secs(40)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!((v.attempts.len(), v.recovery_count), (1, 0), "the running attempt was re-adopted: {v:#?}");
    let a = &v.attempts[0];
    assert_eq!((a.cluster.as_str(), a.cluster_id.as_str()), (before.attempts[0].cluster.as_str(), before.attempts[0].cluster_id.as_str()));
    assert_eq!(a.outcome, "SUCCEEDED");
    // The attempt's cost kept accruing across the restart.
    assert!(a.cost_usd > before.attempts[0].cost_usd, "cost {} then {}", before.attempts[0].cost_usd, a.cost_usd);
    assert!(v.total_cost_usd > 0.0 && (v.total_cost_usd - a.cost_usd).abs() < 1e-12);

    let (_, logs) = m.logs(id).await.expect("logs");
    assert_eq!(logs.len(), 1);
    let log = &logs[0].1;
    let want = format!("hf={} ds={} epochs=3", HF_TOKEN.len(), DATASET_URI.len());
    assert!(log.contains("start rc=0") && log.contains(&want) && log.contains("finished"), "{log:?}");
    assert!(!log.contains(HF_TOKEN) && !log.contains(DATASET_URI), "{log:?}");
    assert_no_secret_in_db(home.path(), "after the job");
    let _ = svc.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_recovery_continues_it_with_exactly_one_more_attempt() {
    let hosts = TestHosts::up(2, NET, "mr");
    let home = tempfile::tempdir().expect("tempdir");
    let yaml = pools(&hosts, &[("cheap", true, 1.8, &[1]), ("dear", true, 3.6, &[2])]);
    std::fs::write(home.path().join("ssh_node_pools.yaml"), yaml).expect("write pools");
    let svc = start(home.path(), 0).await;
    let run = "echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT hf=${#HF_TOKEN}\"; \
               if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 120; fi; sleep 2; echo finished";
    let id = svc.managed.submit(request(run, true)).await.expect("submit");
    let v = wait_for(
        "the first attempt running with metered cost",
        Duration::from_secs(40),
        |v| v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0),
        &svc.managed,
        id,
    )
    .await;
    assert_eq!(v.attempts[0].pool, "ssh/cheap");

    // Preempt host 1, and kill the controller as soon as it has noticed (recovery under way).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    hosts.cut(1);
    let v = wait_for("the preemption noticed", Duration::from_secs(30), |v| v.attempts[0].outcome == "PREEMPTED", &svc.managed, id).await;
    // Killed at once: the job may not even be marked RECOVERING, nor its recovery counted yet.
    assert!(v.status == "RUNNING" || v.status == "RECOVERING", "{v:#?}");
    let port = svc.kill().await;
    let svc = start(home.path(), port).await;
    let m = &svc.managed;

    let v = m.wait(id, Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!((v.attempts.len(), v.recovery_count), (2, 1), "exactly one more attempt: {v:#?}");
    assert_eq!(v.attempts[0].outcome, "PREEMPTED");
    assert_eq!((v.attempts[1].pool.as_str(), v.attempts[1].outcome.as_str()), ("ssh/dear", "SUCCEEDED"));
    let (_, logs) = m.logs(id).await.expect("logs");
    let last = &logs[1].1;
    assert!(last.contains(&format!("attempt rc=1 hf={}", HF_TOKEN.len())) && last.contains("finished"), "{last:?}");
    // Both attempts' clusters are gone (the preempted one's teardown was resumed too).
    let ctl = Controller::open(Home::at(home.path())).await.expect("open");
    let live: Vec<String> = ctl.store.clusters().await.expect("clusters").into_iter().map(|c| c.name).collect();
    for _ in 0..50 {
        if ctl.store.clusters().await.expect("clusters").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ctl.store.clusters().await.expect("clusters").is_empty(), "clusters left: {live:?}");
    assert_no_secret_in_db(home.path(), "after the job");
    let _ = svc.kill().await;
}
