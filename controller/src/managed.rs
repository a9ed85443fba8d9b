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
//! Secret task envs are held in memory only: if `skycat serve` restarts, jobs that were running
//! are marked `FAILED_CONTROLLER` (their clusters stay, see `skycat status`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use skycat_protocol::{AgentConfig, JobSpec, JobState, PROTOCOL_VERSION};
use sqlx::Row;

use crate::lifecycle::{aggregate, Controller, LaunchRequest, TaskRun};
use crate::ssh::{shell_quote, SshSession};
use crate::store::{self, NodeRow};

/// Recovery strategy, as SkyPilot's `job_recovery.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Avoid the preempted region: other regions first, the preempted one only as a last resort.
    #[default]
    EagerNextRegion,
    /// Retry the preempted region first (other zones of it), then the other regions.
    Failover,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "EAGER_NEXT_REGION" => Some(Strategy::EagerNextRegion),
            "FAILOVER" => Some(Strategy::Failover),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::EagerNextRegion => "EAGER_NEXT_REGION",
            Strategy::Failover => "FAILOVER",
        }
    }
}

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
}

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

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS managed_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        task_json TEXT NOT NULL,
        use_spot INTEGER NOT NULL,
        strategy TEXT NOT NULL,
        max_restarts_on_errors INTEGER NOT NULL,
        status TEXT NOT NULL,
        recovery_count INTEGER NOT NULL DEFAULT 0,
        restarts_on_errors INTEGER NOT NULL DEFAULT 0,
        task_id TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        submitted_at TEXT NOT NULL,
        ended_at TEXT,
        failure_reason TEXT
    )",
    "CREATE TABLE IF NOT EXISTS managed_attempts (
        job_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        cluster_name TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        pool TEXT NOT NULL,
        hosts TEXT NOT NULL,
        spot INTEGER NOT NULL,
        price_per_hour REAL NOT NULL,
        recovery_count INTEGER NOT NULL,
        agent_job_id INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        log TEXT,
        PRIMARY KEY (job_id, attempt)
    )",
    "CREATE TABLE IF NOT EXISTS managed_blocks (
        job_id INTEGER NOT NULL,
        pool TEXT NOT NULL,
        host TEXT NOT NULL,
        scope TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, pool, host, scope)
    )",
];

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
    Preempted { pool: String, host: String, reason: String },
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

/// The managed-jobs controller. Cheap to clone.
#[derive(Clone)]
pub struct Managed {
    inner: Arc<Inner>,
}

struct Inner {
    ctl: Controller,
    opts: ManagedOptions,
}

/// Errors of the HTTP API, naming the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TaskIn {
    name: Option<String>,
    num_nodes: Option<u32>,
    setup: Option<String>,
    run: Option<String>,
    envs: BTreeMap<String, String>,
    workdir: Option<std::path::PathBuf>,
    gpus_per_node: f64,
}

/// Validates a `POST /v1/jobs` body; errors name the field.
pub fn parse_request(body: &[u8]) -> std::result::Result<JobRequest, FieldError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| field_err("body", format!("not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| field_err("body", "must be a JSON object"))?;
    let task = obj.get("task").ok_or_else(|| field_err("task", "missing"))?;
    if !task.is_object() {
        return Err(field_err("task", "must be an object (the parsed task)"));
    }
    match task.get("run") {
        Some(serde_json::Value::String(r)) if !r.trim().is_empty() => {}
        _ => return Err(field_err("task.run", "a managed job needs a non-empty `run` command")),
    }
    if let Some(n) = task.get("num_nodes") {
        if n.as_u64().is_none_or(|n| n == 0 || n > 1024) {
            return Err(field_err("task.num_nodes", "must be an integer between 1 and 1024"));
        }
    }
    if let Some(s) = obj.get("strategy").filter(|s| !s.is_null()) {
        let ok = s.as_str().and_then(Strategy::parse).is_some();
        if !ok {
            return Err(field_err("strategy", format!("unknown recovery strategy {s}; use EAGER_NEXT_REGION or FAILOVER")));
        }
    }
    if let Some(m) = obj.get("max_restarts_on_errors").filter(|s| !s.is_null()) {
        if m.as_u64().is_none_or(|m| m > u32::MAX as u64) {
            return Err(field_err("max_restarts_on_errors", "must be a non-negative integer"));
        }
    }
    if let Some(b) = obj.get("use_spot").filter(|s| !s.is_null()) {
        if !b.is_boolean() {
            return Err(field_err("use_spot", "must be true or false"));
        }
    }
    if let Some(n) = obj.get("name").filter(|s| !s.is_null()) {
        let ok = n.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 63 && !s.chars().any(char::is_control));
        if !ok {
            return Err(field_err("name", "must be a string of 1 to 63 printable characters"));
        }
    }
    let t: TaskIn = serde_json::from_value(task.clone()).map_err(|e| field_err("task", e.to_string()))?;
    Ok(JobRequest {
        name: obj.get("name").and_then(|n| n.as_str()).map(str::to_string),
        task: TaskRun {
            name: t.name,
            num_nodes: t.num_nodes.unwrap_or(1).max(1),
            setup: t.setup,
            run: t.run,
            envs: t.envs,
            workdir: t.workdir,
            gpus_per_node: t.gpus_per_node,
        },
        use_spot: obj.get("use_spot").and_then(|b| b.as_bool()).unwrap_or(false),
        strategy: obj.get("strategy").and_then(|s| s.as_str()).map(str::to_string),
        max_restarts_on_errors: obj.get("max_restarts_on_errors").and_then(|m| m.as_u64()).unwrap_or(0) as u32,
    })
}

impl Managed {
    /// Creates the tables, marks jobs left running by a previous server as FAILED_CONTROLLER.
    pub async fn new(mut ctl: Controller, opts: ManagedOptions) -> Result<Managed> {
        for stmt in SCHEMA {
            sqlx::query(sqlx::AssertSqlSafe(*stmt)).execute(ctl.store.db()).await.context("creating managed-job tables")?;
        }
        sqlx::query(
            "UPDATE managed_jobs SET status = 'FAILED_CONTROLLER', ended_at = ?,
               failure_reason = 'skycat serve restarted while the job ran (task secrets are held in memory only); its cluster is kept: see `skycat status`'
             WHERE status NOT IN ('SUCCEEDED','FAILED','FAILED_SETUP','FAILED_NO_RESOURCE','FAILED_CONTROLLER','CANCELLED')",
        )
        .bind(now())
        .execute(ctl.store.db())
        .await?;
        ctl.ssh.connect_timeout = opts.ssh_connect_timeout;
        Ok(Managed { inner: Arc::new(Inner { ctl, opts }) })
    }

    fn db(&self) -> &sqlx::SqlitePool {
        self.inner.ctl.store.db()
    }

    /// Submits a managed job; it runs in the background. Returns its id.
    pub async fn submit(&self, req: JobRequest) -> Result<i64> {
        let strategy = match req.strategy.as_deref() {
            None => Strategy::default(),
            Some(s) => Strategy::parse(s).ok_or_else(|| anyhow!("strategy: unknown recovery strategy {s:?}"))?,
        };
        if req.task.run.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(anyhow!("task.run: a managed job needs a non-empty `run` command"));
        }
        let r = sqlx::query(
            "INSERT INTO managed_jobs (name, task_json, use_spot, strategy, max_restarts_on_errors, status, task_id, submitted_at)
             VALUES (?,?,?,?,?,?,'',?)",
        )
        .bind(&req.name)
        .bind(req.task.redacted_json())
        .bind(req.use_spot as i64)
        .bind(strategy.as_str())
        .bind(req.max_restarts_on_errors as i64)
        .bind(status::PENDING)
        .bind(now())
        .execute(self.db())
        .await?;
        let id = r.last_insert_rowid();
        let task_id = format!(
            "skycat-managed-{}-{id}",
            req.name.as_deref().or(req.task.name.as_deref()).unwrap_or("job").replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        );
        sqlx::query("UPDATE managed_jobs SET task_id = ? WHERE id = ?").bind(&task_id).bind(id).execute(self.db()).await?;
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.drive(id, &req, strategy, &task_id).await {
                tracing::warn!(job = id, "managed job controller failed: {e:#}");
                let _ = me.finish(id, status::FAILED_CONTROLLER, Some(&format!("{e:#}"))).await;
            }
        });
        Ok(id)
    }

    /// Requests cancellation; the job's controller cancels the task and tears the cluster down.
    pub async fn cancel(&self, id: i64) -> Result<JobView> {
        let v = self.job(id).await?.ok_or_else(|| anyhow!("managed job {id} not found"))?;
        if !status::is_terminal(&v.status) {
            sqlx::query("UPDATE managed_jobs SET cancel_requested = 1, status = 'CANCELLING' WHERE id = ? AND status NOT IN ('SUCCEEDED','FAILED','FAILED_SETUP','FAILED_NO_RESOURCE','FAILED_CONTROLLER','CANCELLED')")
                .bind(id)
                .execute(self.db())
                .await?;
        }
        self.job(id).await?.ok_or_else(|| anyhow!("managed job {id} not found"))
    }

    async fn cancel_requested(&self, id: i64) -> Result<bool> {
        let v: i64 = sqlx::query_scalar("SELECT cancel_requested FROM managed_jobs WHERE id = ?").bind(id).fetch_one(self.db()).await?;
        Ok(v != 0)
    }

    async fn set_status(&self, id: i64, s: &str) -> Result<()> {
        // A cancel request wins over progress reports.
        sqlx::query("UPDATE managed_jobs SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLING' ELSE ? END WHERE id = ?")
            .bind(s)
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    async fn finish(&self, id: i64, s: &str, reason: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE managed_jobs SET status = ?, ended_at = ?, failure_reason = COALESCE(?, failure_reason) WHERE id = ?")
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
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM managed_jobs ORDER BY id DESC").fetch_all(self.db()).await?;
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
        let ledger: f64 = sqlx::query_scalar("SELECT COALESCE(SUM(usd), 0.0) FROM cost_ledger WHERE cluster_id = ?")
            .bind(cluster_id)
            .fetch_one(self.db())
            .await?;
        let totals: f64 = sqlx::query_scalar("SELECT COALESCE(SUM(accrued_usd), 0.0) FROM nodes WHERE cluster_id = ?")
            .bind(cluster_id)
            .fetch_one(self.db())
            .await?;
        Ok(ledger.max(totals))
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobView>> {
        let Some(r) = sqlx::query("SELECT * FROM managed_jobs WHERE id = ?").bind(id).fetch_optional(self.db()).await? else {
            return Ok(None);
        };
        let rows = sqlx::query("SELECT * FROM managed_attempts WHERE job_id = ? ORDER BY attempt").bind(id).fetch_all(self.db()).await?;
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
        let placement = attempts.last().map(|a| format!("ssh/{} ({})", a.pool, a.hosts.join(",")));
        Ok(Some(JobView {
            id,
            name: r.get("name"),
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
        let rows = sqlx::query("SELECT pool, host, scope FROM managed_blocks WHERE job_id = ? ORDER BY at").bind(id).fetch_all(self.db()).await?;
        Ok(rows.iter().map(|r| (r.get("pool"), r.get("host"), r.get("scope"))).collect())
    }

    /// Logs of every attempt: finished attempts as saved when they ended, the running one read
    /// from its nodes now.
    pub async fn logs(&self, id: i64) -> Result<(JobView, Vec<(u32, String)>)> {
        let v = self.job(id).await?.ok_or_else(|| anyhow!("managed job {id} not found"))?;
        let rows = sqlx::query("SELECT attempt, cluster_name, agent_job_id, ended_at, log FROM managed_attempts WHERE job_id = ? ORDER BY attempt")
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

    async fn drive(&self, id: i64, req: &JobRequest, strategy: Strategy, task_id: &str) -> Result<()> {
        let mut recovery: u32 = 0;
        let mut restarts: u32 = 0;
        let mut prev_pool: Option<String> = None;
        loop {
            if self.cancel_requested(id).await? {
                self.finish(id, status::CANCELLED, None).await?;
                return Ok(());
            }
            self.set_status(id, if recovery == 0 { status::STARTING } else { status::RECOVERING }).await?;
            let Some(att) = self.launch_attempt(id, req, strategy, prev_pool.as_deref(), recovery, task_id).await? else {
                return Ok(());
            };
            self.set_status(id, status::RUNNING).await?;
            // Keep a copy of the running attempt's log, so a node that vanishes leaves its log.
            let cacher = {
                let me = self.clone();
                let att = att.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if let Ok(log) = me.fetch_log(&att.cluster, att.agent_job_id).await {
                            let _ = sqlx::query(
                                "UPDATE managed_attempts SET log = ? WHERE job_id = ? AND attempt = ? AND ended_at IS NULL",
                            )
                            .bind(log)
                            .bind(id)
                            .bind(att.no as i64)
                            .execute(me.db())
                            .await;
                        }
                    }
                })
            };
            let outcome = self.watch(id, &att).await;
            cacher.abort();
            let outcome = outcome?;
            tracing::info!(job = id, attempt = att.no, "attempt ended: {outcome:?}");
            let (label, reason) = match &outcome {
                Outcome::Succeeded => ("SUCCEEDED", None),
                Outcome::UserFailed { setup, reason } => (if *setup { "FAILED_SETUP" } else { "FAILED" }, Some(reason.clone())),
                Outcome::Preempted { reason, .. } => ("PREEMPTED", Some(reason.clone())),
                Outcome::Cancelled => ("CANCELLED", None),
            };
            sqlx::query("UPDATE managed_attempts SET ended_at = ?, outcome = ?, reason = ? WHERE job_id = ? AND attempt = ?")
                .bind(now())
                .bind(label)
                .bind(&reason)
                .bind(id)
                .bind(att.no as i64)
                .execute(self.db())
                .await?;
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
            let node_gone = matches!(&outcome, Outcome::Preempted { reason, .. } if reason.contains("SSH"));
            // Save the attempt's log while its nodes may still answer, then tear down.
            let log = if node_gone { None } else { self.fetch_log(&att.cluster, att.agent_job_id).await.ok() };
            sqlx::query("UPDATE managed_attempts SET log = COALESCE(?, log) WHERE job_id = ? AND attempt = ?")
                .bind(&log)
                .bind(id)
                .bind(att.no as i64)
                .execute(self.db())
                .await?;
            if node_gone {
                // Nothing to wait for on a vanished node: tear down in the background (its hosts
                // stay reserved until then; the preempted zone is blocked for this job anyway).
                let me = self.clone();
                let name = att.cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.inner.ctl.down(&name, true).await {
                        tracing::warn!(cluster = %name, "teardown: {e:#}");
                    }
                });
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
                    if restarts < req.max_restarts_on_errors {
                        restarts += 1;
                        recovery += 1;
                        sqlx::query("UPDATE managed_jobs SET restarts_on_errors = ?, recovery_count = ? WHERE id = ?")
                            .bind(restarts as i64)
                            .bind(recovery as i64)
                            .bind(id)
                            .execute(self.db())
                            .await?;
                        prev_pool = Some(att.pool.clone());
                        continue;
                    }
                    let s = if setup { status::FAILED_SETUP } else { status::FAILED };
                    self.finish(id, s, Some(&reason)).await?;
                    return Ok(());
                }
                Outcome::Preempted { pool, host, reason } => {
                    let at = now();
                    for (h, scope) in [(host.as_str(), "zone"), ("", "region")] {
                        if scope == "region" && strategy == Strategy::Failover {
                            continue;
                        }
                        sqlx::query("INSERT OR IGNORE INTO managed_blocks (job_id, pool, host, scope, reason, at) VALUES (?,?,?,?,?,?)")
                            .bind(id)
                            .bind(&pool)
                            .bind(h)
                            .bind(scope)
                            .bind(&reason)
                            .bind(&at)
                            .execute(self.db())
                            .await?;
                    }
                    recovery += 1;
                    sqlx::query("UPDATE managed_jobs SET recovery_count = ? WHERE id = ?")
                        .bind(recovery as i64)
                        .bind(id)
                        .execute(self.db())
                        .await?;
                    prev_pool = Some(pool);
                }
            }
        }
    }

    /// Picks the placement, launches the cluster there, submits the task. `None` when the job
    /// ended meanwhile (cancelled, or no resources within `launch_retry_for`).
    async fn launch_attempt(
        &self,
        id: i64,
        req: &JobRequest,
        strategy: Strategy,
        prev_pool: Option<&str>,
        recovery: u32,
        task_id: &str,
    ) -> Result<Option<Attempt>> {
        let ctl = &self.inner.ctl;
        let opts = &self.inner.opts;
        let need = req.task.num_nodes.max(1) as usize;
        let give_up = Instant::now() + opts.launch_retry_for;
        let mut failed_now: BTreeSet<String> = BTreeSet::new();
        let mut last_err = String::from("no launchable placement");
        loop {
            if self.cancel_requested(id).await? {
                self.finish(id, status::CANCELLED, None).await?;
                return Ok(None);
            }
            let blocks = self.blocks(id).await?;
            let blocked_hosts: BTreeSet<(String, String)> =
                blocks.iter().filter(|b| b.2 == "zone").map(|b| (b.0.clone(), b.1.clone())).collect();
            let blocked_pools: BTreeSet<String> = blocks.iter().filter(|b| b.2 == "region").map(|b| b.0.clone()).collect();
            let pools = ctl.pools()?;
            let market = if req.use_spot { "spot" } else { "on-demand" };
            if !pools.pools.values().any(|p| p.spot == req.use_spot && p.hosts.len() >= need) {
                let why = format!(
                    "no {market} SSH pool in {} has {need} host(s){}",
                    pools.path.display(),
                    if req.use_spot { " (mark spot pools with `spot: true`)" } else { "" }
                );
                self.finish(id, status::FAILED_NO_RESOURCE, Some(&why)).await?;
                return Ok(None);
            }
            let mut candidates = Vec::new();
            for p in pools.pools.values() {
                if p.spot != req.use_spot || failed_now.contains(&p.name) {
                    continue;
                }
                let taken = ctl.store.reserved_hosts(&p.name).await?;
                let free = p
                    .hosts
                    .iter()
                    .filter(|h| !taken.contains(&h.display()) && !blocked_hosts.contains(&(p.name.clone(), h.display())))
                    .count();
                if free >= need {
                    let tier = match strategy {
                        Strategy::EagerNextRegion => blocked_pools.contains(&p.name) as u8,
                        Strategy::Failover => (prev_pool != Some(p.name.as_str())) as u8,
                    };
                    candidates.push((tier, p.price_per_hour, p.clone()));
                }
            }
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.name.cmp(&b.2.name)));
            let Some((_, _, pool)) = candidates.into_iter().next() else {
                if Instant::now() > give_up {
                    let why = format!(
                        "no {market} SSH pool with {need} free, unblocked host(s) within {:?} (last: {last_err})",
                        opts.launch_retry_for
                    );
                    self.finish(id, status::FAILED_NO_RESOURCE, Some(&why)).await?;
                    return Ok(None);
                }
                failed_now.clear();
                tokio::time::sleep(opts.poll.max(Duration::from_millis(500))).await;
                continue;
            };
            let no: u32 = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM managed_attempts WHERE job_id = ?")
                .bind(id)
                .fetch_one(self.db())
                .await? as u32;
            let cluster = format!("mj-{id}-{no}");
            // Blocked zones of this pool are held by a placeholder reservation during the launch,
            // so the provisioner's host walk skips them.
            let holder = format!("managed-block-{id}-{}", store::random_hex(4));
            for h in &pool.hosts {
                if blocked_hosts.contains(&(pool.name.clone(), h.display())) {
                    let _ = ctl.store.reserve_host(&pool.name, &h.display(), &holder).await;
                }
            }
            let mut task = req.task.clone();
            task.run = None; // submitted below, with the job's task id and recovery count
            let mut lr = LaunchRequest::new(&cluster, task);
            lr.pool = Some(pool.name.clone());
            lr.server_url = opts.server_url.clone();
            lr.heartbeat_interval_secs = Some(opts.heartbeat_secs);
            let t0 = Instant::now();
            let launched = ctl.launch(&lr).await;
            let _ = ctl.store.release_cluster_hosts(&holder).await;
            let out = match launched {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(job = id, pool = %pool.name, "launch failed: {e:#}");
                    last_err = format!("{}: {e:#}", pool.name);
                    failed_now.insert(pool.name.clone());
                    continue;
                }
            };
            let c = ctl.store.cluster_by_id(&out.cluster_id).await?.ok_or_else(|| anyhow!("cluster {cluster} vanished"))?;
            let nodes = ctl.store.nodes(&c.id).await?;
            let submitted = self.prepare_and_submit(&nodes, req, recovery, task_id).await;
            let agent_job_id = match submitted {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(job = id, cluster = %cluster, "submit failed: {e:#}");
                    last_err = format!("{}: {e:#}", pool.name);
                    let _ = ctl.down(&cluster, true).await;
                    failed_now.insert(pool.name.clone());
                    continue;
                }
            };
            sqlx::query(
                "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
                   agent_job_id, started_at, outcome) VALUES (?,?,?,?,?,?,?,?,?,?,?, 'RUNNING')",
            )
            .bind(id)
            .bind(no as i64)
            .bind(&cluster)
            .bind(&c.id)
            .bind(&pool.name)
            .bind(nodes.iter().map(|n| n.ip.clone()).collect::<Vec<_>>().join(","))
            .bind(c.spot as i64)
            .bind(c.price_per_hour)
            .bind(recovery as i64)
            .bind(agent_job_id as i64)
            .bind(now())
            .execute(self.db())
            .await?;
            tracing::info!(job = id, cluster = %cluster, pool = %pool.name, "attempt {no} running ({:.1}s to launch)", t0.elapsed().as_secs_f64());
            return Ok(Some(Attempt {
                no,
                cluster,
                cluster_id: c.id,
                pool: pool.name.clone(),
                agent_job_id,
                started: Instant::now(),
                num_nodes: nodes.len() as u32,
            }));
        }
    }

    /// Waits (at most `limit`) until every node reports the attempt's job terminal.
    async fn wait_job_end(&self, att: &Attempt, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let done = match self.inner.ctl.store.jobs(&att.cluster_id).await {
                Ok(rows) => {
                    let rows: Vec<_> = rows.into_iter().filter(|j| j.job_id == att.agent_job_id).collect();
                    rows.len() as u32 >= att.num_nodes
                        && rows.iter().all(|r| !matches!(r.state.as_str(), "PENDING" | "RUNNING"))
                }
                Err(_) => false,
            };
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Points the agents at the metadata URL (when configured) and submits the job on every
    /// node, with the job's task id and recovery count.
    async fn prepare_and_submit(&self, nodes: &[NodeRow], req: &JobRequest, recovery: u32, task_id: &str) -> Result<u64> {
        let opts = &self.inner.opts;
        let ssh = &self.inner.ctl.ssh;
        let spec = JobSpec {
            protocol_version: PROTOCOL_VERSION,
            name: req.name.clone().or(req.task.name.clone()),
            run: req.task.run.clone().unwrap_or_default(),
            envs: req.task.envs.clone(),
            gpus: req.task.gpus_per_node,
            workdir: None,
            task_id: Some(task_id.to_string()),
            recovery_count: recovery,
            submission_id: Some(store::random_hex(8)),
        };
        let body = serde_json::to_vec(&spec)?;
        let mut ids = BTreeMap::new();
        for n in nodes {
            let s = SshSession::connect(&n.target(), ssh).await?;
            let b = shell_quote(&n.agent_bin);
            let d = shell_quote(&n.state_dir);
            if let Some(tpl) = &opts.metadata_url {
                let out = s.run_ok(&format!("cat {d}/config.json; printf '\\n@@CONN=%s\\n' \"$SSH_CONNECTION\""), None).await?;
                let (cfg_text, conn) = out.split_once("\n@@CONN=").ok_or_else(|| anyhow!("{}: cannot read the agent config", n.host_key()))?;
                let mut cfg: AgentConfig = serde_json::from_str(cfg_text.trim())
                    .with_context(|| format!("{}: agent config.json", n.host_key()))?;
                let controller_ip = conn.split_whitespace().next().unwrap_or("127.0.0.1");
                cfg.metadata_url = Some(tpl.replace("{controller_ip}", controller_ip).replace("{host}", &n.ip).replace("{pool}", &n.pool));
                cfg.metadata_poll_secs = opts.metadata_poll_secs;
                cfg.termination_grace_secs = opts.termination_grace_secs;
                let json = serde_json::to_vec_pretty(&cfg)?;
                s.run_ok(
                    &format!(
                        "umask 077; cat > {d}/config.json.tmp && mv -f {d}/config.json.tmp {d}/config.json && \
                         {b} stop --state-dir {d} >/dev/null && {b} daemon --state-dir {d} --detach >/dev/null"
                    ),
                    Some(&json),
                )
                .await
                .with_context(|| format!("{}: restarting the agent with the metadata URL", n.host_key()))?;
            }
            let out = s.run_ok(&format!("{b} submit --state-dir {d} --json"), Some(&body)).await?;
            s.close().await;
            let v: serde_json::Value =
                serde_json::from_str(out.trim()).with_context(|| format!("{}: agent answered {out:?} to submit", n.host_key()))?;
            let jid = v["job_id"].as_u64().ok_or_else(|| anyhow!("{}: no job_id in {out:?}", n.host_key()))?;
            ids.insert(n.rank, jid);
        }
        let first = *ids.values().next().ok_or_else(|| anyhow!("cluster has no nodes"))?;
        if ids.values().any(|j| *j != first) {
            return Err(anyhow!("nodes assigned different job ids {ids:?}"));
        }
        Ok(first)
    }

    /// Watches one attempt until it ends.
    async fn watch(&self, id: i64, att: &Attempt) -> Result<Outcome> {
        let ctl = &self.inner.ctl;
        let opts = &self.inner.opts;
        let launched_at = chrono::Utc::now();
        let mut probed: BTreeMap<u32, Instant> = BTreeMap::new();
        loop {
            tokio::time::sleep(opts.poll).await;
            if self.cancel_requested(id).await? {
                return Ok(Outcome::Cancelled);
            }
            let nodes = ctl.store.nodes(&att.cluster_id).await?;
            let node_of = |node_id: &str| nodes.iter().find(|n| n.node_id == node_id).cloned();
            // 1. An interruption notice from any node: recover now, heartbeats still flowing.
            let notice: Option<String> = sqlx::query_scalar(
                "SELECT node_id FROM heartbeats WHERE cluster_id = ? AND reason = 'interruption' ORDER BY received_at LIMIT 1",
            )
            .bind(&att.cluster_id)
            .fetch_optional(self.db())
            .await?;
            if let Some(node_id) = notice {
                let n = node_of(&node_id);
                return Ok(Outcome::Preempted {
                    pool: n.as_ref().map(|n| n.pool.clone()).unwrap_or_else(|| att.pool.clone()),
                    host: n.as_ref().map(|n| n.host_key()).unwrap_or_default(),
                    reason: format!("interruption notice reported by {node_id}"),
                });
            }
            // 2. The job's state on every node.
            let rows: Vec<_> = ctl.store.jobs(&att.cluster_id).await?.into_iter().filter(|j| j.job_id == att.agent_job_id).collect();
            let states: Vec<(u32, JobState, Option<i64>, Option<String>)> = rows
                .iter()
                .filter_map(|r| {
                    serde_json::from_value::<JobState>(serde_json::Value::String(r.state.clone()))
                        .ok()
                        .map(|s| (r.node_rank, s, r.exit_code, r.reason.clone()))
                })
                .collect();
            if let Some((rank, ..)) = states.iter().find(|s| s.1 == JobState::Interrupted) {
                let n = nodes.iter().find(|n| n.rank == *rank);
                return Ok(Outcome::Preempted {
                    pool: n.map(|n| n.pool.clone()).unwrap_or_else(|| att.pool.clone()),
                    host: n.map(|n| n.host_key()).unwrap_or_default(),
                    reason: format!("job interrupted on rank {rank} (interruption notice)"),
                });
            }
            if let Some((rank, s, code, why)) = states.iter().find(|s| matches!(s.1, JobState::Failed | JobState::FailedSetup)) {
                return Ok(Outcome::UserFailed {
                    setup: *s == JobState::FailedSetup,
                    reason: format!(
                        "rank {rank}: {}{}",
                        code.map(|c| format!("exit code {c}")).unwrap_or_else(|| "failed".into()),
                        why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
                    ),
                });
            }
            if states.len() as u32 >= att.num_nodes && aggregate(states.iter().map(|s| s.1)) == JobState::Succeeded {
                return Ok(Outcome::Succeeded);
            }
            if states.iter().any(|s| s.1 == JobState::Cancelled) {
                return Ok(Outcome::UserFailed { setup: false, reason: "job cancelled on a node outside the controller".into() });
            }
            // 3. Heartbeats: a silent node is preempted if the provider says it is gone.
            for n in &nodes {
                let last = n.last_heartbeat_at.as_deref().and_then(parse_ts).unwrap_or(launched_at).max(launched_at);
                let silent = (chrono::Utc::now() - last).to_std().unwrap_or_default();
                if silent < opts.deadline {
                    continue;
                }
                if probed.get(&n.rank).is_some_and(|t| t.elapsed() < opts.deadline / 2) {
                    continue;
                }
                probed.insert(n.rank, Instant::now());
                match self.provider_view(n).await {
                    NodeView::Gone(why) => {
                        return Ok(Outcome::Preempted {
                            pool: n.pool.clone(),
                            host: n.host_key(),
                            reason: format!("no heartbeat from rank {} for {:.1}s and {why}", n.rank, silent.as_secs_f64()),
                        });
                    }
                    NodeView::AgentRestarted => {
                        tracing::warn!(job = id, host = %n.host_key(), "agent was down on a reachable host: restarted it");
                    }
                    NodeView::Alive => {}
                }
            }
            let _ = att.started;
        }
    }

    /// The SSH provider's view of a node: gone when it does not answer SSH. A reachable host
    /// whose agent died gets the agent restarted (jobs are re-adopted): not a preemption.
    async fn provider_view(&self, n: &NodeRow) -> NodeView {
        let s = match SshSession::connect(&n.target(), &self.inner.ctl.ssh).await {
            Ok(s) => s,
            Err(e) => return NodeView::Gone(format!("the host does not answer SSH ({e})")),
        };
        let cmd = format!(
            "{b} status --state-dir {d} --json 2>/dev/null | grep -q '\"daemon_running\": *true' || {{ {b} daemon --state-dir {d} --detach >/dev/null && echo RESTARTED; }}",
            b = shell_quote(&n.agent_bin),
            d = shell_quote(&n.state_dir)
        );
        let r = tokio::time::timeout(Duration::from_secs(15), s.exec(&cmd, None)).await;
        s.close().await;
        match r {
            Ok(Ok(out)) if out.stdout_str().contains("RESTARTED") => NodeView::AgentRestarted,
            Ok(Ok(_)) => NodeView::Alive,
            Ok(Err(e)) => NodeView::Gone(format!("SSH to the host failed ({e})")),
            Err(_) => NodeView::Gone("the host stopped answering over SSH".into()),
        }
    }
}

enum NodeView {
    Alive,
    AgentRestarted,
    Gone(String),
}

// ---- HTTP API --------------------------------------------------------------------------------

fn api_error(code: StatusCode, field: &str, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into(), "field": field }))).into_response()
}

fn parse_id(raw: &str) -> std::result::Result<i64, Box<Response>> {
    raw.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Box::new(api_error(StatusCode::BAD_REQUEST, "id", format!("job id must be a positive integer, got {raw:?}"))))
}

/// `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/logs`,
/// `POST /v1/jobs/{id}/cancel`. Errors are `{"error": "...", "field": "..."}`.
pub fn api_router(m: Managed) -> Router {
    Router::new()
        .route("/v1/jobs", post(api_launch).get(api_list))
        .route("/v1/jobs/{id}", get(api_get))
        .route("/v1/jobs/{id}/logs", get(api_logs))
        .route("/v1/jobs/{id}/cancel", post(api_cancel))
        .with_state(m)
}

async fn api_launch(State(m): State<Managed>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.field, e.to_string()),
    };
    match m.submit(req).await {
        Ok(id) => match m.job(id).await {
            Ok(Some(v)) => (StatusCode::CREATED, Json(v)).into_response(),
            Ok(None) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "id", "job vanished"),
            Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "store", format!("{e:#}")),
        },
        Err(e) => {
            let msg = format!("{e:#}");
            let field = msg.split(':').next().filter(|f| !f.contains(' ')).unwrap_or("task").to_string();
            api_error(StatusCode::BAD_REQUEST, &field, msg)
        }
    }
}

async fn api_list(State(m): State<Managed>) -> Response {
    match m.jobs().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "store", format!("{e:#}")),
    }
}

async fn api_get(State(m): State<Managed>, UrlPath(raw): UrlPath<String>) -> Response {
    let id = match parse_id(&raw) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match m.job(id).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, "id", format!("managed job {id} not found")),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "store", format!("{e:#}")),
    }
}

async fn api_logs(State(m): State<Managed>, UrlPath(raw): UrlPath<String>) -> Response {
    let id = match parse_id(&raw) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match m.logs(id).await {
        Ok((v, logs)) => Json(json!({
            "id": id,
            "status": v.status,
            "terminal": status::is_terminal(&v.status),
            "attempts": logs.into_iter().map(|(a, log)| json!({"attempt": a, "log": log})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) if e.to_string().contains("not found") => api_error(StatusCode::NOT_FOUND, "id", e.to_string()),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "store", format!("{e:#}")),
    }
}

async fn api_cancel(State(m): State<Managed>, UrlPath(raw): UrlPath<String>) -> Response {
    let id = match parse_id(&raw) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match m.cancel(id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) if e.to_string().contains("not found") => api_error(StatusCode::NOT_FOUND, "id", e.to_string()),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "store", format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_validation_names_the_field() {
        let e = parse_request(b"{").unwrap_err();
        assert_eq!(e.field, "body");
        let e = parse_request(br#"{"use_spot": true}"#).unwrap_err();
        assert_eq!(e.field, "task");
        let e = parse_request(br#"{"task": {"run": "  "}}"#).unwrap_err();
        assert_eq!(e.field, "task.run");
        let e = parse_request(br#"{"task": {"run": "x"}, "strategy": "NEAREST"}"#).unwrap_err();
        assert_eq!(e.field, "strategy");
        let e = parse_request(br#"{"task": {"run": "x"}, "max_restarts_on_errors": -1}"#).unwrap_err();
        assert_eq!(e.field, "max_restarts_on_errors");
        let e = parse_request(br#"{"task": {"run": "x", "num_nodes": 0}}"#).unwrap_err();
        assert_eq!(e.field, "task.num_nodes");
        let ok = parse_request(br#"{"task": {"run": "echo hi"}, "strategy": "failover", "use_spot": true}"#).unwrap();
        assert_eq!(ok.task.num_nodes, 1);
        assert_eq!(Strategy::parse(ok.strategy.as_deref().unwrap()), Some(Strategy::Failover));
        assert_eq!(Strategy::parse("EAGER_NEXT_REGION"), Some(Strategy::EagerNextRegion));
        assert!(status::is_terminal(status::FAILED_NO_RESOURCE) && !status::is_terminal(status::RECOVERING));
    }
}
