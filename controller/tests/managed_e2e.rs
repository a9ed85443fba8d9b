//! End-to-end tests of managed jobs (preemption recovery) on real sshd test hosts in network
//! namespaces (scripts/testhosts.sh) running the real `skycat-agent`, with the heartbeat router
//! and the managed-jobs HTTP API served on the host side of the veth pairs. Needs root, iproute2
//! and openssh-server (`scripts/ci-setup-sshd.sh`). Never skipped: missing tools fail.
//!
//! Serialized with cluster_e2e.rs on the same file lock; namespaces are removed in a Drop guard.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_controller::home::Home;
use skycat_controller::lifecycle::Controller;
use skycat_controller::managed::{JobView, Managed, ManagedOptions};

mod common;
use common::{agent_bin, TestHosts};
const NET: u32 = 140;

/// A running `skycat serve` equivalent: heartbeat router + managed-jobs API on 0.0.0.0:port.
struct Service {
    _home: tempfile::TempDir,
    managed: Managed,
    port: u16,
    /// An admin API token of this service.
    token: String,
    task: tokio::task::JoinHandle<()>,
    /// The same routes over HTTPS on 0.0.0.0, for the agents.
    tls_task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
        self.tls_task.abort();
    }
}

async fn service(pools_yaml: &str, tune: impl FnOnce(&mut ManagedOptions)) -> Service {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join("ssh_node_pools.yaml"), pools_yaml).expect("write pools");
    let (tls, pin) = common::agent_cert(home.path());
    let ctl = Controller::open(Home::at(home.path())).await.expect("open controller").with_agent_bin(agent_bin()).with_server_cert_sha256(pin);
    let store = ctl.store.clone();
    let token = store.create_api_token("tester", skycat_controller::api_tokens::Role::Admin).await.expect("token");
    let auth = skycat_server::Auth { verifier: std::sync::Arc::new(store.clone()) };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let agents = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.expect("bind");
    let agents_port = agents.local_addr().expect("addr").port();
    let mut opts = common::fast_managed_options(format!("https://{{controller_ip}}:{agents_port}"));
    tune(&mut opts);
    let managed = Managed::new(ctl, opts, std::sync::Arc::new(Vec::new)).await.expect("managed");
    let app = skycat_server::routes::heartbeat::router(store).merge(skycat_server::routes::jobs::router(managed.clone(), auth));
    let tls_task = common::spawn_tls(agents, app.clone(), &tls, std::future::pending());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Service { _home: home, managed, port, token, task, tls_task }
}

impl Service {
    /// Raw HTTP/1.1 against the service with its admin token; returns (status, JSON body).
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        http_as(self.port, Some(&self.token), method, path, body)
    }
}

/// Raw HTTP/1.1 against the service, with `token` when given; returns (status, JSON body).
fn http_as(port: u16, token: Option<&str>, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect service");
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = resp.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
    (code, json)
}

async fn wait_for(what: &str, timeout: Duration, f: impl FnMut(&JobView) -> bool, m: &Managed, id: i64) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

fn pools(hosts: &TestHosts, pools: &[(&str, bool, f64, &[u32])]) -> String {
    common::pools_yaml(hosts, pools)
}

fn job_body(run: &str, extra: &str) -> String {
    format!(r#"{{"name": "train", "use_spot": true, "task": {{"name": "train", "run": {}}}{extra}}}"#, serde_json::to_string(run).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_preemption_recovers_in_the_next_region_with_cost_of_both_attempts() {
    let hosts = TestHosts::up(3, NET, "mj");
    // `cheap` (hosts 1, 2) is the cheapest spot region; `dear` (host 3) costs more.
    let svc = service(&pools(&hosts, &[("cheap", true, 1.8, &[1, 2]), ("dear", true, 3.6, &[3])]), |_| {}).await;

    // API errors name the field.
    let (code, err) = svc.http("POST", "/v1/jobs", Some(r#"{"task": {"run": "x"}, "strategy": "NEAREST"}"#));
    assert_eq!((code, err["field"].as_str()), (422, Some("strategy")), "{err}");
    let (code, err) = svc.http("GET", "/v1/jobs/abc", None);
    assert_eq!((code, err["field"].as_str()), (400, Some("id")), "{err}");

    let run = "echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT task=$SKYCAT_TASK_ID\"; \
               if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 120; fi; sleep 2; echo finished";
    let (code, created) = svc.http("POST", "/v1/jobs", Some(&job_body(run, "")));
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["strategy"], "EAGER_NEXT_REGION");
    let m = &svc.managed;

    let v = wait_for(
        "the first attempt running with metered cost",
        Duration::from_secs(40),
        |v| v.status == "RUNNING" && v.attempts.first().is_some_and(|a| a.cost_usd > 0.0),
        m,
        id,
    )
    .await;
    assert_eq!(v.attempts[0].pool, "ssh/cheap");
    assert_eq!(v.attempts[0].hosts, vec![hosts.ip(1)]);
    assert!(v.attempts[0].spot);

    // Preempt: host 1 vanishes from the network (after the log of attempt 0 has been copied).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let cut_at = Instant::now();
    hosts.cut(1);
    let v = wait_for("a second attempt running", Duration::from_secs(40), |v| v.attempts.len() == 2 && v.status == "RUNNING", m, id).await;
    let recovered = cut_at.elapsed();
    eprintln!("MEASURED preemption -> next attempt running: {:.2}s (heartbeat 1 s, deadline 3 s)", recovered.as_secs_f64());
    assert_eq!(v.recovery_count, 1);
    assert_eq!(v.attempts[0].outcome, "PREEMPTED");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("does not answer SSH"), "{:?}", v.attempts[0].reason);
    // EAGER_NEXT_REGION: the preempted region is avoided although host 2 there is free and cheaper.
    assert_eq!(v.attempts[1].pool, "ssh/dear");
    assert_eq!(v.attempts[1].hosts, vec![hosts.ip(3)]);
    let blocks: BTreeSet<_> = m.blocks(id).await.expect("blocks").into_iter().collect();
    assert!(blocks.contains(&("ssh/cheap".to_string(), format!("root@{}:22", hosts.ip(1)), "zone".to_string())), "{blocks:?}");
    assert!(blocks.contains(&("ssh/cheap".to_string(), String::new(), "region".to_string())), "{blocks:?}");

    let v = m.wait(id, Duration::from_secs(40)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!(v.recovery_count, 1);
    assert_eq!(v.attempts[1].outcome, "SUCCEEDED");
    assert!(v.attempts.iter().all(|a| a.cost_usd > 0.0 && a.ended_at.is_some()), "{v:#?}");
    assert!((v.total_cost_usd - v.attempts.iter().map(|a| a.cost_usd).sum::<f64>()).abs() < 1e-12);
    // Second attempt: same task id, recovery count 1.
    let (code, logs) = svc.http("GET", &format!("/v1/jobs/{id}/logs"), None);
    assert_eq!(code, 200, "{logs}");
    let first = logs["attempts"][0]["log"].as_str().unwrap_or("").to_string();
    assert!(first.contains(&format!("attempt rc=0 task={}", v.task_id)), "the vanished node's log was kept: {first:?}");
    let last = logs["attempts"][1]["log"].as_str().unwrap_or("").to_string();
    assert!(last.contains(&format!("attempt rc=1 task={}", v.task_id)) && last.contains("finished"), "{last}");

    // `jobs queue` over HTTP: status, recovery count, placement, total cost.
    let (code, list) = svc.http("GET", "/v1/jobs", None);
    assert_eq!(code, 200);
    let j = &list[0];
    assert_eq!((j["status"].as_str(), j["recovery_count"].as_u64()), (Some("SUCCEEDED"), Some(1)));
    assert!(j["placement"].as_str().unwrap_or("").starts_with("ssh/dear"), "{j}");
    assert!(j["total_cost_usd"].as_f64().unwrap_or(0.0) > 0.0);
}

/// A metadata server answering AWS's spot/instance-action for the hosts in `notice`.
async fn metadata_server(notice: Arc<Mutex<BTreeSet<String>>>) -> (u16, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path as P, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    async fn action(State(n): State<Arc<Mutex<BTreeSet<String>>>>, P(host): P<String>) -> axum::response::Response {
        if n.lock().unwrap().contains(&host) {
            (StatusCode::OK, r#"{"action": "terminate", "time": "2026-11-28T19:00:00Z"}"#).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    }
    let app = axum::Router::new().route("/{host}/latest/meta-data/spot/instance-action", axum::routing::get(action)).with_state(notice);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (port, tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_notice_sigterms_and_recovers_before_heartbeats_are_lost_failover_blocks_the_zone() {
    let hosts = TestHosts::up(3, NET, "mj");
    let notice = Arc::new(Mutex::new(BTreeSet::new()));
    let (mport, mtask) = metadata_server(notice.clone()).await;
    // Deadline 60 s: only the notice can start this recovery within the test's bounds.
    let svc = service(&pools(&hosts, &[("cheap", true, 1.8, &[1, 2]), ("dear", true, 3.6, &[3])]), |o| {
        o.deadline = Duration::from_secs(60);
        o.metadata_url = Some(format!("http://{{controller_ip}}:{mport}/{{host}}/latest/meta-data/spot/instance-action"));
    })
    .await;
    let m = &svc.managed;
    let run = "trap 'echo got-sigterm; exit 143' TERM; echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT\"; \
               if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 120 & wait; fi; echo finished";
    let (code, created) = svc.http("POST", "/v1/jobs", Some(&job_body(run, r#", "strategy": "FAILOVER""#)));
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let v = wait_for("the first attempt running", Duration::from_secs(40), |v| v.status == "RUNNING" && !v.attempts.is_empty(), m, id).await;
    assert_eq!(v.attempts[0].hosts, vec![hosts.ip(1)]);
    // Let a few heartbeats flow, then the provider announces the interruption.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = Instant::now();
    notice.lock().unwrap().insert(hosts.ip(1));
    let v = wait_for("recovery to start", Duration::from_secs(20), |v| v.attempts[0].outcome != "RUNNING", m, id).await;
    let noticed = t0.elapsed();
    eprintln!("MEASURED notice -> recovery started: {:.2}s (metadata poll 0.5 s, heartbeat 1 s)", noticed.as_secs_f64());
    assert!(noticed < Duration::from_secs(15), "recovery took {noticed:?}");
    assert_eq!(v.attempts[0].outcome, "PREEMPTED");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("interruption"), "{:?}", v.attempts[0].reason);

    let v = m.wait(id, Duration::from_secs(40)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!(v.recovery_count, 1);
    // FAILOVER: same region first, but the preempted zone (host 1, free and reachable again) is
    // blocked.
    assert_eq!((v.attempts[1].pool.as_str(), v.attempts[1].hosts.clone()), ("ssh/cheap", vec![hosts.ip(2)]));
    let (_, logs) = m.logs(id).await.expect("logs");
    assert!(logs[0].1.contains("got-sigterm"), "first attempt's job got no SIGTERM: {:?}", logs[0].1);
    assert!(logs[1].1.contains("attempt rc=1") && logs[1].1.contains("finished"), "{:?}", logs[1].1);
    let blocks = m.blocks(id).await.expect("blocks");
    assert_eq!(blocks.len(), 1, "FAILOVER blocks the zone only: {blocks:?}");
    mtask.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_failure_is_not_a_preemption_restarts_on_errors_and_cancel() {
    let hosts = TestHosts::up(1, NET, "mj");
    let svc = service(&pools(&hosts, &[("od", false, 2.0, &[1])]), |_| {}).await;
    let m = &svc.managed;
    let body = |run: &str, extra: &str| job_body(run, extra).replace(r#""use_spot": true"#, r#""use_spot": false"#);

    // exit 1: FAILED, not recovered.
    let (code, created) = svc.http("POST", "/v1/jobs", Some(&body("echo working; exit 1", "")));
    assert_eq!(code, 201, "{created}");
    let v = m.wait(created["id"].as_i64().unwrap(), Duration::from_secs(40)).await.expect("ends");
    assert_eq!(v.status, "FAILED", "{v:#?}");
    assert_eq!((v.recovery_count, v.attempts.len()), (0, 1));
    assert_eq!(v.attempts[0].outcome, "FAILED");
    assert!(v.failure_reason.as_deref().unwrap_or("").contains("exit code 1"), "{:?}", v.failure_reason);
    assert!(m.blocks(v.id).await.unwrap().is_empty(), "a user failure blocks nothing");

    // max_restarts_on_errors: 1 → the failure is retried once, then it succeeds.
    let run = "echo \"rc=$SKYCAT_JOB_RECOVERY_COUNT\"; [ \"$SKYCAT_JOB_RECOVERY_COUNT\" != 0 ] || exit 3; echo ok";
    let (code, created) = svc.http("POST", "/v1/jobs", Some(&body(run, r#", "max_restarts_on_errors": 1"#)));
    assert_eq!(code, 201, "{created}");
    let v = m.wait(created["id"].as_i64().unwrap(), Duration::from_secs(40)).await.expect("ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    assert_eq!((v.restarts_on_errors, v.attempts.len()), (1, 2));
    assert_eq!(v.attempts[0].outcome, "FAILED");

    // Cancel a running job.
    let (_, created) = svc.http("POST", "/v1/jobs", Some(&body("sleep 120", "")));
    let id = created["id"].as_i64().unwrap();
    wait_for("running", Duration::from_secs(30), |v| v.status == "RUNNING", m, id).await;
    let (code, c) = svc.http("POST", &format!("/v1/jobs/{id}/cancel"), None);
    assert_eq!(code, 200, "{c}");
    let v = m.wait(id, Duration::from_secs(40)).await.expect("ends");
    assert_eq!(v.status, "CANCELLED");
    assert_eq!(v.attempts[0].outcome, "CANCELLED");
    let (code, e) = svc.http("POST", "/v1/jobs/999/cancel", None);
    assert_eq!((code, e["field"].as_str()), (404, Some("id")));
}
