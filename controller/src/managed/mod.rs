//! Managed jobs: a job that skycat keeps running through spot preemptions.
//!
//! The controller runs inside `skycat serve` ([`Managed`], one tokio task per job; its state is in
//! the server's SQLite store, tables `managed_jobs`, `managed_attempts`, `managed_blocks`). For
//! every attempt it picks the cheapest launchable placement (SSH node pools; a pool with
//! `spot: true` is spot), launches a cluster there, submits the task with `SKYCAT_TASK_ID` fixed
//! for the whole job and `SKYCAT_JOB_RECOVERY_COUNT` = the number of recoveries so far, and then
//! watches the agents' heartbeats and the provider's view of the nodes.
//!
//! Preemption (never a non-zero exit, which is a user failure) is either
//! * an interruption notice reported by any node's agent (an `interruption` heartbeat, or the job
//!   ending `INTERRUPTED`), or
//! * a node whose heartbeats stopped for longer than the deadline while the provider reports the
//!   node gone (for SSH pools: the host does not answer SSH).
//!
//! On preemption the preempted zone (the host) is blocked for the rest of the job; with
//! `EAGER_NEXT_REGION` (default) its region (the pool) is also avoided: other pools are tried
//! first, the preempted pool's other hosts only when nothing else is free. With `FAILOVER` the
//! same region is retried first, then the others by price. `max_restarts_on_errors` relaunches
//! after that many user failures. Every attempt is recorded with placement, times and the
//! agent-metered cost of its cluster.
//!
//! Restarts: the whole request of a job (secret envs included) is stored sealed
//! ([`crate::secret_box`], column `managed_jobs.request_sealed`, bound to the job's id). When
//! `skycat serve` starts again ([`Managed::new`]) every job that was not terminal is resumed from
//! the DB: a running attempt is re-adopted (watched again, same cluster and agent job), otherwise
//! the next attempt is launched. A job whose request cannot be opened (key changed, or a job from
//! before sealing) is marked `FAILED_CONTROLLER` naming why (its cluster stays, see `skycat status`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::secret_box::SecretBox;

use skycat_optimizer::TaskSpec;

mod attempt;
mod budget;
mod policy;
mod request;
pub use request::STORAGE_IN_MANAGED_JOBS;
mod replica;
mod resume;
mod uploads;

pub use budget::DEFAULT_PROJECTED_HOURS;
pub use policy::Strategy;
pub use request::{is_upload_id, parse_request, FieldError, ParsedRequest};
pub use uploads::Uploads;
use request::field_err;

/// Why a managed-job call was refused; the HTTP routes map each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("managed job {0} not found")]
    NotFound(i64),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The owner's monthly budget would be exceeded (`budgets:` in config.yaml).
    #[error("{0}")]
    OverBudget(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl JobError {
    /// Whether the state database was unreachable (the server answers 503: try again later).
    pub fn is_unavailable(&self) -> bool {
        let JobError::Internal(e) = self else { return false };
        e.chain().any(|c| {
            c.downcast_ref::<sqlx::Error>().is_some_and(crate::store::is_connection_error)
                || c.downcast_ref::<crate::store::StoreError>().is_some_and(crate::store::StoreError::is_unavailable)
        })
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Internal(e.into())
    }
}

use crate::lifecycle::{Controller, TaskRun};

/// Managed job states (`skycat jobs queue`).
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const STARTING: &str = "STARTING";
    pub const RUNNING: &str = "RUNNING";
    pub const RECOVERING: &str = "RECOVERING";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const FAILED_SETUP: &str = "FAILED_SETUP";
    pub const FAILED_NO_RESOURCE: &str = "FAILED_NO_RESOURCE";
    pub const FAILED_CONTROLLER: &str = "FAILED_CONTROLLER";
    pub const CANCELLING: &str = "CANCELLING";
    pub const CANCELLED: &str = "CANCELLED";

    pub fn is_terminal(s: &str) -> bool {
        matches!(s, SUCCEEDED | FAILED | FAILED_SETUP | FAILED_NO_RESOURCE | FAILED_CONTROLLER | CANCELLED)
    }
}

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRequest {
    #[serde(default)]
    pub name: Option<String>,
    pub task: TaskRun,
    #[serde(default)]
    pub use_spot: bool,
    /// `EAGER_NEXT_REGION` (default) or `FAILOVER`.
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub max_restarts_on_errors: u32,
    /// The task as parsed (its `resources` are what each attempt plans over). Absent: a
    /// CPU-only task with SkyPilot's defaults.
    #[serde(default)]
    pub spec: Option<TaskSpec>,
}

/// Where managed jobs get the catalog they plan over (the server's current catalog).
pub type CatalogSource = Arc<dyn Fn() -> Vec<skycat_catalog::Offer> + Send + Sync>;

/// Knobs of the managed-jobs controller.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// Heartbeat receiver as the nodes reach it; `{controller_ip}` is replaced per node.
    pub server_url: Option<String>,
    pub heartbeat_secs: f64,
    /// Heartbeats missing this long make the controller ask the provider about the node.
    pub deadline: Duration,
    pub poll: Duration,
    /// Instance metadata URL the agents poll for interruption notices; `{controller_ip}`,
    /// `{host}` and `{pool}` are replaced per node. None = the agents do not poll.
    pub metadata_url: Option<String>,
    pub metadata_poll_secs: f64,
    pub termination_grace_secs: f64,
    /// How long to keep retrying when no placement is free before FAILED_NO_RESOURCE.
    pub launch_retry_for: Duration,
    pub ssh_connect_timeout: Duration,
}

impl Default for ManagedOptions {
    fn default() -> Self {
        ManagedOptions {
            server_url: None,
            heartbeat_secs: 10.0,
            deadline: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            metadata_url: None,
            metadata_poll_secs: 5.0,
            termination_grace_secs: 30.0,
            launch_retry_for: Duration::from_secs(600),
            ssh_connect_timeout: Duration::from_secs(5),
        }
    }
}

impl ManagedOptions {
    /// Options for `skycat serve` listening on `port`, from the environment:
    /// `SKYCAT_MANAGED_SERVER_URL` (default `http://{controller_ip}:PORT`: the address each node
    /// sees the controller's SSH connection come from; serve must then listen on it, e.g.
    /// `--addr 0.0.0.0:PORT`), `SKYCAT_MANAGED_HEARTBEAT_SECS` (10), `SKYCAT_MANAGED_DEADLINE_SECS`
    /// (60), `SKYCAT_MANAGED_POLL_SECS` (2), `SKYCAT_METADATA_URL` (none; `{controller_ip}`,
    /// `{host}`, `{pool}` are replaced per node), `SKYCAT_TERMINATION_GRACE_SECS` (30).
    pub fn from_env(port: u16) -> std::result::Result<ManagedOptions, FieldError> {
        let num = |name: &str, default: f64| -> std::result::Result<f64, FieldError> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| field_err(name, format!("must be a positive number of seconds, got {v:?}"))),
                _ => Ok(default),
            }
        };
        let text = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let d = ManagedOptions::default();
        Ok(ManagedOptions {
            server_url: Some(text("SKYCAT_MANAGED_SERVER_URL").unwrap_or_else(|| format!("http://{{controller_ip}}:{port}"))),
            heartbeat_secs: num("SKYCAT_MANAGED_HEARTBEAT_SECS", d.heartbeat_secs)?,
            deadline: Duration::from_secs_f64(num("SKYCAT_MANAGED_DEADLINE_SECS", d.deadline.as_secs_f64())?),
            poll: Duration::from_secs_f64(num("SKYCAT_MANAGED_POLL_SECS", d.poll.as_secs_f64())?),
            metadata_url: text("SKYCAT_METADATA_URL"),
            termination_grace_secs: num("SKYCAT_TERMINATION_GRACE_SECS", d.termination_grace_secs)?,
            ..d
        })
    }
}

/// One attempt of a managed job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptView {
    pub attempt: u32,
    pub cluster: String,
    pub cluster_id: String,
    pub pool: String,
    pub hosts: Vec<String>,
    pub spot: bool,
    pub price_per_hour: f64,
    pub recovery_count: u32,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_secs: f64,
    /// RUNNING, SUCCEEDED, PREEMPTED, FAILED, FAILED_SETUP, CANCELLED.
    pub outcome: String,
    pub reason: Option<String>,
    pub cost_usd: f64,
}

/// A managed job as `jobs queue` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobView {
    pub id: i64,
    pub name: Option<String>,
    /// The API token (its name) that submitted the job; empty for jobs submitted in-process.
    #[serde(default)]
    pub owner: String,
    pub status: String,
    pub strategy: String,
    pub use_spot: bool,
    pub max_restarts_on_errors: u32,
    pub recovery_count: u32,
    pub restarts_on_errors: u32,
    pub task_id: String,
    /// `ssh/POOL (hosts)` of the current (or last) attempt.
    pub placement: Option<String>,
    pub submitted_at: String,
    pub ended_at: Option<String>,
    pub failure_reason: Option<String>,
    pub total_cost_usd: f64,
    pub attempts: Vec<AttemptView>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// What ended an attempt.
#[derive(Debug, Clone)]
enum Outcome {
    Succeeded,
    UserFailed { setup: bool, reason: String },
    /// `pool` = `cloud/region`, `host` = the zone or pool host; `gone`: the node no longer
    /// answers (nothing to wait for before the teardown).
    Preempted { pool: String, host: String, reason: String, gone: bool },
    Cancelled,
}

/// A launched attempt being watched.
#[derive(Debug, Clone)]
struct Attempt {
    no: u32,
    cluster: String,
    cluster_id: String,
    pool: String,
    agent_job_id: u64,
    started: Instant,
    num_nodes: u32,
}

/// Where a job's controller starts: a new job starts from zero; a job resumed after a restart
/// of `skycat serve` from its counters in the DB and, when its last attempt was running, that
/// attempt (re-adopted: watched again).
#[derive(Debug, Default)]
struct DriveState {
    recovery: u32,
    restarts: u32,
    prev_region: Option<String>,
    live: Option<Attempt>,
    /// Clusters of ended attempts still up: torn down in the background.
    leftovers: Vec<String>,
    /// The cluster of a launch cut short (no attempt row): torn down before the next launch,
    /// which takes its name.
    orphan: Option<String>,
}

/// Aborts a helper task when the job's controller ends or is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The associated data a job's sealed request is bound to: a blob copied to another row does not
/// open.
fn request_purpose(id: i64) -> String {
    format!("managed_job:{id}")
}

/// The managed-jobs controller. Cheap to clone.
#[derive(Clone)]
pub struct Managed {
    inner: Arc<Inner>,
}

struct Inner {
    ctl: Controller,
    opts: ManagedOptions,
    catalog: CatalogSource,
    secrets: SecretBox,
    /// The jobs' controller tasks (and their background teardowns), for [`Managed::shutdown`].
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Several replicas on one database: only the leader drives jobs (see `replica.rs`).
    replica: Option<replica::Replica>,
}

impl Managed {
    /// Loads the sealing key ([`SecretBox::load`]) and resumes the jobs a previous server left
    /// unfinished (see the module docs); a job that cannot be resumed is marked
    /// FAILED_CONTROLLER with the reason. `catalog` gives the offers each attempt plans over (SSH
    /// pools come from their YAML).
    pub async fn new(ctl: Controller, opts: ManagedOptions, catalog: CatalogSource) -> Result<Managed> {
        let secrets = SecretBox::load(&ctl.home).context("managed jobs: the key that seals job requests")?;
        let ctl = ctl.with_ssh_connect_timeout(opts.ssh_connect_timeout);
        let m = Managed { inner: Arc::new(Inner { ctl, opts, catalog, secrets, tasks: std::sync::Mutex::new(Vec::new()), replica: None }) };
        m.resume_all().await?;
        Ok(m)
    }

    /// Stops every job controller of this instance (their jobs stay as they are in the DB, their
    /// clusters keep running): what a stopped `skycat serve` leaves for the next one to resume.
    pub fn shutdown(&self) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }

    fn track(&self, h: &tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(h.abort_handle());
        }
    }

    fn spawn_drive(&self, id: i64, req: JobRequest, strategy: Strategy, task_id: String, st: DriveState) {
        let me = self.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = me.drive(id, &req, strategy, &task_id, st).await {
                tracing::warn!(job = id, "managed job controller failed: {e:#}");
                let _ = me.finish(id, status::FAILED_CONTROLLER, Some(&format!("{e:#}"))).await;
            }
            // Ended (not merely stopped by a shutdown, which aborts this task before here): its
            // uploads will not be unpacked again.
            if matches!(me.job(id).await, Ok(Some(v)) if status::is_terminal(&v.status)) {
                uploads::remove_archives(&req.task);
            }
        });
        self.track(&h);
    }

    /// Tears a cluster down in the background (tracked like the controllers).
    fn spawn_down(&self, name: String) {
        let me = self.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = me.inner.ctl.down(&name, true).await {
                tracing::warn!(cluster = %name, "teardown: {e:#}");
            }
        });
        self.track(&h);
    }

    fn db(&self) -> &sqlx::AnyPool {
        self.inner.ctl.store.db()
    }

    /// Submits a managed job owned by nobody (in-process callers); see [`Managed::submit_as`].
    pub async fn submit(&self, req: JobRequest) -> std::result::Result<i64, JobError> {
        self.submit_as(req, "").await
    }

    /// Submits a managed job owned by the API token `owner`; it runs in the background. Returns
    /// its id.
    pub async fn submit_as(&self, req: JobRequest, owner: &str) -> std::result::Result<i64, JobError> {
        let strategy = match req.strategy.as_deref() {
            None => Strategy::default(),
            Some(s) => Strategy::parse(s).ok_or_else(|| field_err("strategy", format!("unknown recovery strategy {s:?}")))?,
        };
        if req.task.run.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(field_err("task.run", "a managed job needs a non-empty `run` command").into());
        }
        // The row and its sealed request (bound to the row's id) appear together.
        let mut tx = self.db().begin().await?;
        let r = sqlx::query(
            "INSERT INTO managed_jobs (name, task_json, use_spot, strategy, max_restarts_on_errors, status, task_id, submitted_at, owner)
             VALUES ($1,$2,$3,$4,$5,$6,'',$7,$8) RETURNING id",
        )
        .bind(&req.name)
        .bind(req.task.redacted_json())
        .bind(req.use_spot as i64)
        .bind(strategy.as_str())
        .bind(req.max_restarts_on_errors as i64)
        .bind(status::PENDING)
        .bind(now())
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = r.try_get("id")?;
        let task_id = format!(
            "skycat-managed-{}-{id}",
            req.name.as_deref().or(req.task.name.as_deref()).unwrap_or("job").replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        );
        let sealed = self.seal_request(id, &req)?;
        sqlx::query("UPDATE managed_jobs SET task_id = $1, request_sealed = $2 WHERE id = $3")
            .bind(&task_id)
            .bind(sealed)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // A follower only records the job: the leader claims it within a beat and drives it.
        if !self.claim_new(&mut tx, id).await? {
            tx.commit().await?;
            return Ok(id);
        }
        tx.commit().await?;
        self.spawn_drive(id, req, strategy, task_id, DriveState::default());
        Ok(id)
    }

    /// Requests cancellation; the job's controller cancels the task and tears the cluster down.
    pub async fn cancel(&self, id: i64) -> std::result::Result<JobView, JobError> {
        let v = self.job(id).await?.ok_or(JobError::NotFound(id))?;
        if !status::is_terminal(&v.status) {
            sqlx::query("UPDATE managed_jobs SET cancel_requested = 1, status = 'CANCELLING' WHERE id = $1 AND status NOT IN ('SUCCEEDED','FAILED','FAILED_SETUP','FAILED_NO_RESOURCE','FAILED_CONTROLLER','CANCELLED')")
                .bind(id)
                .execute(self.db())
                .await?;
        }
        self.job(id).await?.ok_or(JobError::NotFound(id))
    }

    async fn cancel_requested(&self, id: i64) -> Result<bool> {
        let v: i64 = sqlx::query_scalar("SELECT cancel_requested FROM managed_jobs WHERE id = $1").bind(id).fetch_one(self.db()).await?;
        Ok(v != 0)
    }

    async fn set_status(&self, id: i64, s: &str) -> Result<()> {
        // A cancel request wins over progress reports.
        sqlx::query("UPDATE managed_jobs SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLING' ELSE $1 END WHERE id = $2")
            .bind(s)
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    async fn finish(&self, id: i64, s: &str, reason: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE managed_jobs SET status = $1, ended_at = $2, failure_reason = COALESCE($3, failure_reason) WHERE id = $4")
            .bind(s)
            .bind(now())
            .bind(reason)
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    // ---- views ---------------------------------------------------------------------------

    /// All managed jobs, newest first.
    pub async fn jobs(&self) -> Result<Vec<JobView>> {
        self.jobs_of(None).await
    }

    /// The managed jobs of `owner` (all with None), newest first.
    pub async fn jobs_of(&self, owner: Option<&str>) -> Result<Vec<JobView>> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM managed_jobs WHERE $1 IS NULL OR owner = $2 ORDER BY id DESC")
            .bind(owner)
            .bind(owner)
            .fetch_all(self.db())
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(v) = self.job(id).await? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Agent-metered cost of one attempt's cluster: the ledger, or the nodes' running totals
    /// when the last records have not arrived yet.
    async fn cluster_cost(&self, cluster_id: &str) -> Result<f64> {
        let ledger: f64 = sqlx::query_scalar("SELECT COALESCE(SUM(usd), 0.0) FROM cost_ledger WHERE cluster_id = $1")
            .bind(cluster_id)
            .fetch_one(self.db())
            .await?;
        let totals: f64 = sqlx::query_scalar("SELECT COALESCE(SUM(accrued_usd), 0.0) FROM nodes WHERE cluster_id = $1")
            .bind(cluster_id)
            .fetch_one(self.db())
            .await?;
        Ok(ledger.max(totals))
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobView>> {
        let Some(r) = sqlx::query("SELECT * FROM managed_jobs WHERE id = $1").bind(id).fetch_optional(self.db()).await? else {
            return Ok(None);
        };
        let rows = sqlx::query("SELECT * FROM managed_attempts WHERE job_id = $1 ORDER BY attempt").bind(id).fetch_all(self.db()).await?;
        let mut attempts = Vec::new();
        for a in &rows {
            let cluster_id: String = a.get("cluster_id");
            let started_at: String = a.get("started_at");
            let ended_at: Option<String> = a.get("ended_at");
            let end = ended_at.as_deref().and_then(parse_ts).unwrap_or_else(chrono::Utc::now);
            let duration_secs =
                parse_ts(&started_at).map(|s| (end - s).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0).max(0.0);
            attempts.push(AttemptView {
                attempt: a.get::<i64, _>("attempt") as u32,
                cluster: a.get("cluster_name"),
                cost_usd: self.cluster_cost(&cluster_id).await?,
                cluster_id,
                pool: a.get("pool"),
                hosts: a.get::<String, _>("hosts").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                spot: a.get::<i64, _>("spot") != 0,
                price_per_hour: a.get("price_per_hour"),
                recovery_count: a.get::<i64, _>("recovery_count") as u32,
                started_at,
                ended_at,
                duration_secs,
                outcome: a.get("outcome"),
                reason: a.get("reason"),
            });
        }
        let placement = attempts.last().map(|a| {
            // Rows written before cloud backends hold the bare pool name.
            let infra = if a.pool.contains('/') { a.pool.clone() } else { format!("ssh/{}", a.pool) };
            format!("{infra} ({})", a.hosts.join(","))
        });
        Ok(Some(JobView {
            id,
            name: r.get("name"),
            owner: r.get("owner"),
            status: r.get("status"),
            strategy: r.get("strategy"),
            use_spot: r.get::<i64, _>("use_spot") != 0,
            max_restarts_on_errors: r.get::<i64, _>("max_restarts_on_errors") as u32,
            recovery_count: r.get::<i64, _>("recovery_count") as u32,
            restarts_on_errors: r.get::<i64, _>("restarts_on_errors") as u32,
            task_id: r.get("task_id"),
            placement,
            submitted_at: r.get("submitted_at"),
            ended_at: r.get("ended_at"),
            failure_reason: r.get("failure_reason"),
            total_cost_usd: attempts.iter().fold(0.0, |t, a| t + a.cost_usd),
            attempts,
        }))
    }

    /// Zones (`pool`, `host`) and regions (`pool`, "") blocked for this job.
    pub async fn blocks(&self, id: i64) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT pool, host, scope FROM managed_blocks WHERE job_id = $1 ORDER BY at").bind(id).fetch_all(self.db()).await?;
        Ok(rows.iter().map(|r| (r.get("pool"), r.get("host"), r.get("scope"))).collect())
    }

    /// Logs of every attempt: finished attempts as saved when they ended, the running one read
    /// from its nodes now.
    pub async fn logs(&self, id: i64) -> std::result::Result<(JobView, Vec<(u32, String)>), JobError> {
        let v = self.job(id).await?.ok_or(JobError::NotFound(id))?;
        let rows = sqlx::query("SELECT attempt, cluster_name, agent_job_id, ended_at, log FROM managed_attempts WHERE job_id = $1 ORDER BY attempt")
            .bind(id)
            .fetch_all(self.db())
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let attempt = r.get::<i64, _>("attempt") as u32;
            let ended: Option<String> = r.get("ended_at");
            let saved: Option<String> = r.get("log");
            let text = match (ended, saved) {
                (Some(_), s) => s.unwrap_or_default(),
                (None, _) => {
                    let name: String = r.get("cluster_name");
                    let job: i64 = r.get("agent_job_id");
                    self.fetch_log(&name, job as u64).await.unwrap_or_default()
                }
            };
            out.push((attempt, text));
        }
        Ok((v, out))
    }

    async fn fetch_log(&self, cluster: &str, job: u64) -> Result<String> {
        let buf = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let b2 = buf.clone();
        let sink: crate::lifecycle::OutputSink = Arc::new(move |bytes: &[u8]| {
            if let Ok(mut b) = b2.lock() {
                b.extend_from_slice(bytes);
            }
        });
        tokio::time::timeout(Duration::from_secs(10), self.inner.ctl.logs(cluster, Some(job), false, sink))
            .await
            .map_err(|_| anyhow!("reading the log of {cluster} timed out"))??;
        let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until the job is terminal (for tests and `--wait`-style callers).
    pub async fn wait(&self, id: i64, timeout: Duration) -> Result<JobView> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.job(id).await?.ok_or_else(|| anyhow!("managed job {id} not found"))?;
            if status::is_terminal(&v.status) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(anyhow!("managed job {id} still {} after {timeout:?}", v.status));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // ---- the job's controller ----------------------------------------------------------------

    /// The job's controller, from `st` (a new job: zero; a resumed one: see `resume_state`).
    async fn drive(&self, id: i64, req: &JobRequest, strategy: Strategy, task_id: &str, mut st: DriveState) -> Result<()> {
        for name in std::mem::take(&mut st.leftovers) {
            self.spawn_down(name);
        }
        if let Some(name) = st.orphan.take() {
            tracing::info!(job = id, cluster = %name, "tearing down the cluster of a launch cut short by the restart");
            if let Err(e) = self.inner.ctl.down(&name, true).await {
                tracing::warn!(job = id, cluster = %name, "teardown: {e:#}");
            }
        }
        loop {
            let att = match st.live.take() {
                Some(att) => att,
                None => {
                    if self.cancel_requested(id).await? {
                        self.finish(id, status::CANCELLED, None).await?;
                        return Ok(());
                    }
                    self.set_status(id, if st.recovery == 0 { status::STARTING } else { status::RECOVERING }).await?;
                    let launched = self.launch_attempt(id, req, strategy, st.prev_region.as_deref(), st.recovery, task_id).await?;
                    let Some(att) = launched else {
                        return Ok(());
                    };
                    att
                }
            };
            self.set_status(id, status::RUNNING).await?;
            // Keep a copy of the running attempt's log, so a node that vanishes leaves its log.
            let cacher = {
                let me = self.clone();
                let att = att.clone();
                AbortOnDrop(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if let Ok(log) = me.fetch_log(&att.cluster, att.agent_job_id).await {
                            let _ = sqlx::query(
                                "UPDATE managed_attempts SET log = $1 WHERE job_id = $2 AND attempt = $3 AND ended_at IS NULL",
                            )
                            .bind(log)
                            .bind(id)
                            .bind(att.no as i64)
                            .execute(me.db())
                            .await;
                        }
                    }
                }))
            };
            let outcome = self.watch(id, &att).await;
            drop(cacher);
            let outcome = outcome?;
            tracing::info!(job = id, attempt = att.no, "attempt ended: {outcome:?}");
            let (label, reason) = match &outcome {
                Outcome::Succeeded => ("SUCCEEDED", None),
                Outcome::UserFailed { setup, reason } => (if *setup { "FAILED_SETUP" } else { "FAILED" }, Some(reason.clone())),
                Outcome::Preempted { reason, .. } => ("PREEMPTED", Some(reason.clone())),
                Outcome::Cancelled => ("CANCELLED", None),
            };
            self.end_attempt(id, att.no, label, reason.as_deref()).await?;
            if let Outcome::Preempted { reason, .. } = &outcome {
                self.set_status(id, status::RECOVERING).await?;
                if reason.contains("interruption") {
                    // The agents are stopping the job gracefully (SIGTERM, then SIGKILL after the
                    // grace period): let it checkpoint before the teardown.
                    self.wait_job_end(&att, Duration::from_secs_f64(self.inner.opts.termination_grace_secs + 3.0)).await;
                }
            }
            if matches!(outcome, Outcome::Cancelled) {
                let _ = tokio::time::timeout(Duration::from_secs(20), self.inner.ctl.cancel(&att.cluster, att.agent_job_id)).await;
            }
            let node_gone = matches!(&outcome, Outcome::Preempted { gone: true, .. });
            // Save the attempt's log while its nodes may still answer, then tear down.
            let log = if node_gone { None } else { self.fetch_log(&att.cluster, att.agent_job_id).await.ok() };
            sqlx::query("UPDATE managed_attempts SET log = COALESCE($1, log) WHERE job_id = $2 AND attempt = $3")
                .bind(&log)
                .bind(id)
                .bind(att.no as i64)
                .execute(self.db())
                .await?;
            if node_gone {
                // Nothing to wait for on a vanished node: tear down in the background (its hosts
                // stay reserved until then; the preempted zone is blocked for this job anyway).
                self.spawn_down(att.cluster.clone());
            } else if let Err(e) = self.inner.ctl.down(&att.cluster, true).await {
                tracing::warn!(job = id, cluster = %att.cluster, "teardown: {e:#}");
            }
            match outcome {
                Outcome::Succeeded => {
                    self.finish(id, status::SUCCEEDED, None).await?;
                    return Ok(());
                }
                Outcome::Cancelled => {
                    self.finish(id, status::CANCELLED, None).await?;
                    return Ok(());
                }
                Outcome::UserFailed { setup, reason } => {
                    if st.restarts < req.max_restarts_on_errors {
                        st.restarts += 1;
                        st.recovery += 1;
                        self.save_counters(id, &st).await?;
                        st.prev_region = Some(att.pool.clone());
                        continue;
                    }
                    let s = if setup { status::FAILED_SETUP } else { status::FAILED };
                    self.finish(id, s, Some(&reason)).await?;
                    return Ok(());
                }
                Outcome::Preempted { pool, host, reason, .. } => {
                    let at = now();
                    for (h, scope) in [(host.as_str(), "zone"), ("", "region")] {
                        if scope == "region" && strategy == Strategy::Failover {
                            continue;
                        }
                        sqlx::query("INSERT INTO managed_blocks (job_id, pool, host, scope, reason, at) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING")
                            .bind(id)
                            .bind(&pool)
                            .bind(h)
                            .bind(scope)
                            .bind(&reason)
                            .bind(&at)
                            .execute(self.db())
                            .await?;
                    }
                    st.recovery += 1;
                    self.save_counters(id, &st).await?;
                    st.prev_region = Some(pool);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
