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
    sqlx::query_scalar("SELECT request_sealed FROM managed_jobs WHERE id = ?").bind(id).fetch_one(m.db()).await.unwrap()
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
    sqlx::query("UPDATE managed_jobs SET request_sealed = ? WHERE id = ?").bind(&sealed).bind(other).execute(m.db()).await.unwrap();
    let copied = sealed_of(&m, other).await.unwrap();
    assert!(m.open_request(other, &copied).is_err());

    let task_json: String = sqlx::query_scalar("SELECT task_json FROM managed_jobs WHERE id = ?").bind(id).fetch_one(m.db()).await.unwrap();
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
         VALUES ('t', '{}', 0, 'EAGER_NEXT_REGION', 0, ?, 'skycat-managed-t', ?, ?)",
    )
    .bind(status_)
    .bind(now())
    .bind(sealed)
    .execute(m.db())
    .await
    .unwrap();
    r.last_insert_rowid()
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
    sqlx::query("UPDATE managed_jobs SET request_sealed = ? WHERE id = ?").bind(blob).bind(pending).execute(m.db()).await.unwrap();
    // Its attempt had succeeded when the server stopped, before the job was marked.
    let done = insert_job(&m, status::RUNNING, None).await;
    let blob = m.seal_request(done, &request("echo done")).unwrap();
    sqlx::query("UPDATE managed_jobs SET request_sealed = ? WHERE id = ?").bind(blob).bind(done).execute(m.db()).await.unwrap();
    sqlx::query(
        "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
           agent_job_id, started_at, ended_at, outcome) VALUES (?, 0, 'mj-x-0', 'gone', 'ssh/p', '10.0.0.1', 0, 1.0, 0, 1, ?, ?, 'SUCCEEDED')",
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
    sqlx::query("UPDATE managed_jobs SET request_sealed = ? WHERE id = ?").bind(blob).bind(again).execute(m.db()).await.unwrap();
    m.shutdown();
    drop(m);
    let key = dir.path().join("keys/secret.key");
    std::fs::remove_file(&key).unwrap();
    let m = managed(dir.path()).await;
    let v = m.job(again).await.unwrap().unwrap();
    assert_eq!(v.status, status::FAILED_CONTROLLER);
    assert!(v.failure_reason.as_deref().unwrap_or("").contains("secret.key changed"), "{:?}", v.failure_reason);
}
