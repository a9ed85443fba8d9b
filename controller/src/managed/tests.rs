//! Sealing and resuming, without hosts.

use super::*;
use crate::home::Home;

const TOKEN: &str = "hf_unitSeCrEt_7c1e9a";
const DATASET: &str = "s3://private-bucket-91f3";

fn request(run: &str) -> JobRequest {
    let mut task = TaskRun::command(run);
    task.envs.insert("HF_TOKEN".into(), TOKEN.into());
    task.envs.insert("DATASET".into(), DATASET.into());
    task.envs.insert("PLAIN".into(), "visible".into());
    task.secret_envs = vec!["DATASET".into()];
    JobRequest { name: Some("t".into()), task, use_spot: false, strategy: None, max_restarts_on_errors: 0, spec: None }
}

async fn managed(home: &std::path::Path) -> Managed {
    let ctl = Controller::open(Home::at(home)).await.unwrap();
    let opts = ManagedOptions { launch_retry_for: Duration::from_secs(1), poll: Duration::from_millis(100), ..ManagedOptions::default() };
    Managed::new(ctl, opts, Arc::new(Vec::new)).await.unwrap()
}

fn db_bytes(home: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        all.extend(std::fs::read(Home::at(home).state_db().with_file_name(f)).unwrap_or_default());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn sealed_of(m: &Managed, id: i64) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT request_sealed FROM managed_jobs WHERE id = $1").bind(id).fetch_one(m.db()).await.unwrap()
}

#[tokio::test]
async fn the_request_is_sealed_bound_to_its_job_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let m = managed(dir.path()).await;
    let id = m.submit(request("echo hi")).await.unwrap();
    let other = m.submit(request("echo other")).await.unwrap();
    // No pools: nothing to launch on.
    assert_eq!(m.wait(id, Duration::from_secs(20)).await.unwrap().status, status::FAILED_NO_RESOURCE);
    m.wait(other, Duration::from_secs(20)).await.unwrap();

    let sealed = sealed_of(&m, id).await.expect("a sealed request");
    let back = m.open_request(id, &sealed).unwrap();
    assert_eq!(back.task.envs, request("echo hi").task.envs, "the secrets come back");
    assert_eq!(back.task.secret_envs, vec!["DATASET".to_string()]);
    assert_eq!(back.task.run.as_deref(), Some("echo hi"));
    // Bound to the job's id: copied into another row it does not open.
    assert!(m.open_request(other, &sealed).is_err());
    sqlx::query("UPDATE managed_jobs SET request_sealed = $1 WHERE id = $2").bind(&sealed).bind(other).execute(m.db()).await.unwrap();
    let copied = sealed_of(&m, other).await.unwrap();
    assert!(m.open_request(other, &copied).is_err());

    let task_json: String = sqlx::query_scalar("SELECT task_json FROM managed_jobs WHERE id = $1").bind(id).fetch_one(m.db()).await.unwrap();
    assert!(!task_json.contains(TOKEN) && !task_json.contains(DATASET) && task_json.contains("visible"), "{task_json}");
    let bytes = db_bytes(dir.path());
    assert!(contains(&bytes, "visible"), "the check reads the DB files");
    assert!(!contains(&bytes, TOKEN) && !contains(&bytes, DATASET), "a secret is in clear in state.db or its WAL");
    // The key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keys/secret.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

async fn insert_job(m: &Managed, status_: &str, sealed: Option<Vec<u8>>) -> i64 {
    let r = sqlx::query(
        "INSERT INTO managed_jobs (name, task_json, use_spot, strategy, max_restarts_on_errors, status, task_id, submitted_at, request_sealed)
         VALUES ('t', '{}', 0, 'EAGER_NEXT_REGION', 0, $1, 'skycat-managed-t', $2, $3) RETURNING id",
    )
    .bind(status_)
    .bind(now())
    .bind(sealed)
    .fetch_one(m.db())
    .await
    .unwrap();
    sqlx::Row::get(&r, "id")
}

#[tokio::test]
async fn a_restart_resumes_jobs_it_can_open_and_fails_the_others_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let m = managed(dir.path()).await;
    // Before sealing existed: no request stored.
    let legacy = insert_job(&m, status::RUNNING, None).await;
    // A blob sealed for another job.
    let foreign = m.seal_request(999, &request("x")).unwrap();
    let moved = insert_job(&m, status::RUNNING, Some(foreign)).await;
    // Openable, no attempt yet: resumed (and, with no pools, ends FAILED_NO_RESOURCE).
    let pending = insert_job(&m, status::PENDING, None).await;
    let blob = m.seal_request(pending, &request("echo resumed")).unwrap();
    sqlx::query("UPDATE managed_jobs SET request_sealed = $1 WHERE id = $2").bind(blob).bind(pending).execute(m.db()).await.unwrap();
    // Its attempt had succeeded when the server stopped, before the job was marked.
    let done = insert_job(&m, status::RUNNING, None).await;
    let blob = m.seal_request(done, &request("echo done")).unwrap();
    sqlx::query("UPDATE managed_jobs SET request_sealed = $1 WHERE id = $2").bind(blob).bind(done).execute(m.db()).await.unwrap();
    sqlx::query(
        "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
           agent_job_id, started_at, ended_at, outcome) VALUES ($1, 0, 'mj-x-0', 'gone', 'ssh/p', '10.0.0.1', 0, 1.0, 0, 1, $2, $3, 'SUCCEEDED')",
    )
    .bind(done)
    .bind(now())
    .bind(now())
    .execute(m.db())
    .await
    .unwrap();
    m.shutdown();
    drop(m);

    let m = managed(dir.path()).await;
    let v = m.job(legacy).await.unwrap().unwrap();
    assert_eq!(v.status, status::FAILED_CONTROLLER);
    assert!(v.failure_reason.as_deref().unwrap_or("").contains("before job requests were kept"), "{:?}", v.failure_reason);
    let v = m.job(moved).await.unwrap().unwrap();
    assert_eq!(v.status, status::FAILED_CONTROLLER);
    assert!(v.failure_reason.as_deref().unwrap_or("").contains("does not open"), "{:?}", v.failure_reason);
    assert_eq!(m.job(done).await.unwrap().unwrap().status, status::SUCCEEDED);
    let v = m.wait(pending, Duration::from_secs(20)).await.unwrap();
    assert_eq!(v.status, status::FAILED_NO_RESOURCE, "{v:?}");

    // A changed key: nothing opens, the job fails naming the key.
    let again = insert_job(&m, status::PENDING, None).await;
    let blob = m.seal_request(again, &request("echo again")).unwrap();
    sqlx::query("UPDATE managed_jobs SET request_sealed = $1 WHERE id = $2").bind(blob).bind(again).execute(m.db()).await.unwrap();
    m.shutdown();
    drop(m);
    let key = dir.path().join("keys/secret.key");
    std::fs::remove_file(&key).unwrap();
    let m = managed(dir.path()).await;
    let v = m.job(again).await.unwrap().unwrap();
    assert_eq!(v.status, status::FAILED_CONTROLLER);
    assert!(v.failure_reason.as_deref().unwrap_or("").contains("secret.key changed"), "{:?}", v.failure_reason);
}

/// Alice's job, its attempt on cluster `cluster_id`, and `usd` metered there at `at`.
async fn metered(m: &Managed, owner: &str, cluster_id: &str, usd: f64, at: chrono::DateTime<chrono::Utc>) {
    let job: i64 = sqlx::query_scalar(
        "INSERT INTO managed_jobs (name, task_json, use_spot, strategy, max_restarts_on_errors, status, task_id, submitted_at, owner)
         VALUES ('old', '{}', 0, 'EAGER_NEXT_REGION', 0, 'SUCCEEDED', 'skycat-managed-old', $1, $2) RETURNING id",
    )
    .bind(now())
    .bind(owner)
    .fetch_one(m.db())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
                                       agent_job_id, started_at, outcome)
         VALUES ($1, 1, 'old', $2, 'ssh/box', '', 0, 2.5, 0, 1, $3, 'SUCCEEDED')",
    )
    .bind(job)
    .bind(cluster_id)
    .bind(now())
    .execute(m.db())
    .await
    .unwrap();
    let ts = crate::costs::ledger_ts(&at);
    sqlx::query(
        "INSERT INTO cost_ledger (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
         VALUES ($1, 'old', 'n0', 'l1', $2, $3, 3600, 2.5, $4, 'compute', 'test')",
    )
    .bind(cluster_id)
    .bind(&ts)
    .bind(&ts)
    .bind(usd)
    .execute(m.db())
    .await
    .unwrap();
}

async fn count(m: &Managed, table: &'static str) -> i64 {
    let sql = match table {
        "managed_jobs" => "SELECT COUNT(*) FROM managed_jobs",
        "managed_attempts" => "SELECT COUNT(*) FROM managed_attempts",
        "clusters" => "SELECT COUNT(*) FROM clusters",
        "host_reservations" => "SELECT COUNT(*) FROM host_reservations",
        other => panic!("no count for {other}"),
    };
    sqlx::query_scalar(sql).fetch_one(m.db()).await.unwrap()
}

#[tokio::test]
async fn a_job_over_its_owners_monthly_budget_is_refused_at_submission_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    // One pool at $2.50 per host-hour (nothing listens at its address: nothing may be launched).
    std::fs::write(
        dir.path().join("ssh_node_pools.yaml"),
        "box:\n  hosts: [192.0.2.10]\n  user: root\n  identity_file: /nonexistent\n  price_per_hour: 2.5\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("config.yaml"), "budgets:\n  users: {alice: 10}\n").unwrap();
    let m = managed(dir.path()).await;
    m.budgets().unwrap();
    let now = chrono::Utc::now();
    // $6 this month, and $100 last month (which does not count).
    metered(&m, "alice", "c-this", 6.0, now).await;
    metered(&m, "alice", "c-last", 100.0, crate::costs::month_start(now) - chrono::Duration::hours(1)).await;
    // Bob's spending is not Alice's.
    metered(&m, "bob", "c-bob", 50.0, now).await;
    let (jobs, attempts) = (count(&m, "managed_jobs").await, count(&m, "managed_attempts").await);

    // $6 + $2.50 × 1 h = $8.50 ≤ $10: allowed.
    m.check_budget(&request("echo hi"), "alice", 1.0).await.expect("within budget");
    // $6 + $2.50 × 2 h = $11 > $10: refused, naming the figures.
    let e = m.submit_within_budget(request("echo hi"), "alice", Some(2.0)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, JobError::OverBudget(_)), "{e:?}");
    assert!(!msg.contains('\n'), "{msg}");
    for part in ["alice's monthly budget of $10.00", "$6.00 metered since", "$5.00 projected", "$2.5000/h × 2 h", "= $11.00"] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    // Refused at launch, not after: no job row, no attempt, no cluster, no host reserved.
    assert_eq!(count(&m, "managed_jobs").await, jobs);
    assert_eq!(count(&m, "managed_attempts").await, attempts);
    assert_eq!(count(&m, "clusters").await, 0);
    assert_eq!(count(&m, "host_reservations").await, 0);
    // Users without a budget, and in-process submissions, are not checked.
    m.check_budget(&request("echo hi"), "bob", 100.0).await.expect("bob has no budget");
    m.check_budget(&request("echo hi"), "", 100.0).await.expect("in-process");
    // A default for everyone else applies to bob ($50 metered > $20).
    std::fs::write(dir.path().join("config.yaml"), "budgets:\n  monthly_usd: 20\n  users: {alice: 10}\n").unwrap();
    let e = m.check_budget(&request("echo hi"), "bob", 1.0).await.unwrap_err();
    assert!(e.to_string().contains("bob's monthly budget of $20.00"), "{e}");
    // A bad budget is an error naming its key.
    std::fs::write(dir.path().join("config.yaml"), "budgets:\n  users: {alice: lots}\n").unwrap();
    let e = m.check_budget(&request("echo hi"), "alice", 1.0).await.unwrap_err();
    assert!(e.to_string().contains("budgets.users.alice"), "{e}");
    m.shutdown();
}
