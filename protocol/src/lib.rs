//! Wire types exchanged between the skycat node agent (`skycat-agent`), the controller that
//! drives it over SSH, and the server that receives its heartbeats.
//!
//! Everything here is plain serde data: no IO, no async, so the agent stays small.
//! Every top-level document carries a `protocol_version`; a reader rejects a document whose
//! version it does not know with [`ProtocolError::Version`] (see [`check_version`]).
//! Additive changes (new optional fields) keep the version; anything else bumps it.
//!
//! The human-readable contract (CLI, files, HTTP) is in `agent/CONTRACT.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the wire format defined in this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// HTTP path, relative to the server URL, that receives [`Heartbeat`]s (POST, bearer token).
pub const HEARTBEAT_PATH: &str = "/v1/agents/heartbeat";

/// What secrets are replaced with wherever the agent prints or stores an env value.
pub const REDACTED: &str = "<redacted>";

/// Errors of this crate: decoding and version checks.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("unsupported protocol_version {found} in {what} (this build speaks {expected})")]
    Version {
        what: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("invalid {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {what}: field `{field}`: {message}")]
    Field {
        what: &'static str,
        field: &'static str,
        message: String,
    },
}

fn default_version() -> u32 {
    PROTOCOL_VERSION
}

/// Rejects documents written by a newer (or older, incompatible) protocol.
pub fn check_version(what: &'static str, found: u32) -> Result<(), ProtocolError> {
    if found == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::Version {
            what,
            found,
            expected: PROTOCOL_VERSION,
        })
    }
}

/// Parses a JSON document of type `T` and checks its `protocol_version`.
pub fn from_json<T: for<'de> Deserialize<'de> + Versioned>(
    what: &'static str,
    text: &str,
) -> Result<T, ProtocolError> {
    let value: T =
        serde_json::from_str(text).map_err(|source| ProtocolError::Json { what, source })?;
    check_version(what, value.protocol_version())?;
    value.validate()?;
    Ok(value)
}

/// Documents that carry a protocol version.
pub trait Versioned {
    fn protocol_version(&self) -> u32;
    /// Semantic checks beyond what serde enforces.
    fn validate(&self) -> Result<(), ProtocolError> {
        Ok(())
    }
}

/// Is an environment variable name a secret? Names containing TOKEN, KEY, SECRET or PASSWORD
/// (case-insensitive) are secrets: passed to the job, never written in clear anywhere else.
pub fn is_secret_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD"]
        .iter()
        .any(|needle| upper.contains(needle))
}

/// Copy of `envs` with secret values replaced by [`REDACTED`].
pub fn redact_envs(envs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    redact_secrets(envs, &[])
}

/// Copy of `envs` with the values of secrets replaced by [`REDACTED`]: names that look secret
/// ([`is_secret_env`]) and the names in `secret_names` (`--secret KEY`).
pub fn redact_secrets(envs: &BTreeMap<String, String>, secret_names: &[String]) -> BTreeMap<String, String> {
    envs.iter()
        .map(|(k, v)| {
            let v = if is_secret_env(k) || secret_names.contains(k) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Agent configuration (DIR/config.json, written by the controller before starting the daemon)
// ---------------------------------------------------------------------------------------------

/// What the agent does when autostop fires.
/// Any string other than `"report-only"` (or empty) is a shell command run with `bash -c`,
/// e.g. `"sudo shutdown -h now"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StopAction(pub String);

impl StopAction {
    pub fn report_only() -> Self {
        StopAction("report-only".into())
    }
    /// `None` when the action is only to report.
    pub fn command(&self) -> Option<&str> {
        let c = self.0.trim();
        if c.is_empty() || c == "report-only" {
            None
        } else {
            Some(c)
        }
    }
}

impl Default for StopAction {
    fn default() -> Self {
        StopAction::report_only()
    }
}

/// Flavor of the instance metadata server polled for interruption notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataKind {
    /// `GET .../latest/meta-data/spot/instance-action`: 404 = no notice, 200 + JSON
    /// `{"action": "terminate|stop|hibernate", "time": "..."}` = notice.
    Aws,
    /// `GET .../computeMetadata/v1/instance/preempted` with `Metadata-Flavor: Google`:
    /// body `TRUE` = notice, `FALSE` = none.
    Gcp,
}

/// DIR/config.json. Contains the cluster token and env values: the controller writes it with
/// mode 0600; the agent never prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub cluster_name: String,
    /// Identifies one launch; `setup` and the price pin are per launch. A new value on restart
    /// means a relaunch (new price pin, setup runs again).
    #[serde(default)]
    pub launch_id: Option<String>,
    /// Stable node name reported in heartbeats; default `<cluster_name>-<node_rank>`.
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub node_rank: u32,
    #[serde(default = "one")]
    pub num_nodes: u32,
    /// IPs of all nodes, rank order (index = rank).
    #[serde(default)]
    pub node_ips: Vec<String>,
    /// GPUs this node offers to jobs (used for accounting; may be fractional-free integer or
    /// fractional). Default 0. Not auto-detected so tests and CPU nodes behave the same.
    #[serde(default)]
    pub gpus_per_node: f64,
    /// Default SKYCAT_TASK_ID for jobs that do not set `task_id`.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Base URL of the server, e.g. `https://10.0.0.1:8443` (needs `server_cert_sha256`) or
    /// `http://127.0.0.1:8080` (plain http carries the token only to a loopback host).
    /// None = no heartbeats are sent (they are still journaled).
    #[serde(default)]
    pub server_url: Option<String>,
    /// Per-cluster bearer token. Secret.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_secs: f64,
    /// USD per hour for this node, pinned at launch; cost = price × elapsed hours.
    #[serde(default)]
    pub price_per_hour: f64,
    #[serde(default)]
    pub spot: bool,
    /// Autostop after this many idle minutes (no running/queued job and no setup).
    #[serde(default)]
    pub idle_minutes: Option<f64>,
    /// Same in seconds; takes precedence over `idle_minutes` (for tests).
    #[serde(default)]
    pub idle_seconds: Option<f64>,
    #[serde(default)]
    pub stop_action: StopAction,
    /// Instance metadata URL polled for interruption notices (None = no polling).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// Default: `gcp` when the URL contains `computeMetadata`, else `aws`.
    #[serde(default)]
    pub metadata_kind: Option<MetadataKind>,
    #[serde(default = "default_metadata_poll")]
    pub metadata_poll_secs: f64,
    /// SIGTERM → SIGKILL grace period when a notice arrives, and for `cancel`.
    #[serde(default = "default_grace")]
    pub termination_grace_secs: f64,
    /// Task envs, given to setup and every job (job envs override).
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Pin of the server's TLS certificate, received at bootstrap: lowercase hex SHA-256 of the
    /// end-entity certificate's DER (64 hex digits; `AB:CD:…` is accepted, see
    /// [`normalize_cert_sha256`]). Required for an `https://` `server_url`; it replaces CA and
    /// hostname checks (self-signed servers).
    #[serde(default)]
    pub server_cert_sha256: Option<String>,
}

/// Normalises a certificate SHA-256 fingerprint to 64 lowercase hex digits: accepts any case
/// and the `AB:CD:…` colon form. The error is the message for a field error.
pub fn normalize_cert_sha256(value: &str) -> Result<String, String> {
    let v = value.trim();
    let hex: String = if v.contains(':') {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() != 32 || parts.iter().any(|p| p.len() != 2) {
            return Err(format!(
                "must be a SHA-256 fingerprint: 64 hex digits or 32 colon-separated pairs (got {} characters)",
                value.len()
            ));
        }
        parts.concat()
    } else {
        v.to_string()
    };
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "must be a SHA-256 fingerprint: 64 hex digits or 32 colon-separated pairs (got {} characters)",
            value.len()
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Longest interval the agent accepts for its timers (`heartbeat_interval_secs`,
/// `metadata_poll_secs`, `termination_grace_secs`): one week. Longer values are surely a
/// mistake, and huge ones would overflow the agent's clock arithmetic.
pub const MAX_INTERVAL_SECS: f64 = 7.0 * 86_400.0;

/// Longest autostop idle limit (`idle_minutes` / `idle_seconds`): one year.
pub const MAX_IDLE_SECS: f64 = 365.0 * 86_400.0;

/// Checks a number of seconds for one of the agent's timers: finite, `> 0` (or `>= 0` with
/// `allow_zero`), at most `max`. The error is the message for a field error, e.g.
/// `must be > 0 and at most 604800 seconds (got 1e20)`.
pub fn check_secs(value: f64, allow_zero: bool, max: f64) -> Result<(), String> {
    let (low_ok, low) = if allow_zero {
        (value >= 0.0, ">= 0")
    } else {
        (value > 0.0, "> 0")
    };
    if value.is_finite() && low_ok && value <= max {
        Ok(())
    } else {
        Err(format!(
            "must be {low} and at most {max} seconds (got {value})"
        ))
    }
}

fn one() -> u32 {
    1
}
fn default_heartbeat() -> f64 {
    10.0
}
fn default_metadata_poll() -> f64 {
    5.0
}
fn default_grace() -> f64 {
    30.0
}

impl AgentConfig {
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.cluster_name, self.node_rank))
    }
    /// Autostop threshold in seconds, if autostop is enabled.
    pub fn idle_limit_secs(&self) -> Option<f64> {
        self.idle_seconds.or(self.idle_minutes.map(|m| m * 60.0))
    }
    pub fn metadata_kind(&self) -> MetadataKind {
        self.metadata_kind
            .unwrap_or_else(|| match &self.metadata_url {
                Some(u) if u.contains("computeMetadata") => MetadataKind::Gcp,
                _ => MetadataKind::Aws,
            })
    }
}

impl Versioned for AgentConfig {
    fn protocol_version(&self) -> u32 {
        self.protocol_version
    }
    fn validate(&self) -> Result<(), ProtocolError> {
        let what = "agent config";
        let bad = |field, message: &str| {
            Err(ProtocolError::Field {
                what,
                field,
                message: message.to_string(),
            })
        };
        if self.cluster_name.trim().is_empty() {
            return bad("cluster_name", "must not be empty");
        }
        if self.num_nodes == 0 {
            return bad("num_nodes", "must be at least 1");
        }
        if self.node_rank >= self.num_nodes {
            return bad("node_rank", "must be smaller than num_nodes");
        }
        if !(self.gpus_per_node.is_finite() && self.gpus_per_node >= 0.0) {
            return bad("gpus_per_node", "must be a number >= 0");
        }
        if let Err(m) = check_secs(self.heartbeat_interval_secs, false, MAX_INTERVAL_SECS) {
            return bad("heartbeat_interval_secs", &m);
        }
        if !(self.price_per_hour.is_finite() && self.price_per_hour >= 0.0) {
            return bad("price_per_hour", "must be a number >= 0");
        }
        if let Some(s) = self.idle_seconds {
            if let Err(m) = check_secs(s, true, MAX_IDLE_SECS) {
                return bad("idle_seconds", &m);
            }
        } else if let Some(m) = self.idle_minutes {
            if check_secs(m * 60.0, true, MAX_IDLE_SECS).is_err() {
                let max = MAX_IDLE_SECS / 60.0;
                return bad(
                    "idle_minutes",
                    &format!("must be >= 0 and at most {max} minutes (got {m})"),
                );
            }
        }
        if let Err(m) = check_secs(self.metadata_poll_secs, false, MAX_INTERVAL_SECS) {
            return bad("metadata_poll_secs", &m);
        }
        if let Err(m) = check_secs(self.termination_grace_secs, true, MAX_INTERVAL_SECS) {
            return bad("termination_grace_secs", &m);
        }
        if let Some(pin) = &self.server_cert_sha256 {
            if let Err(m) = normalize_cert_sha256(pin) {
                return bad("server_cert_sha256", &m);
            }
        }
        if let Some(url) = &self.server_url {
            if url.starts_with("https://") {
                if self.server_cert_sha256.is_none() {
                    return bad(
                        "server_cert_sha256",
                        "is required with an https:// server_url (the agent pins the server certificate; no unverified TLS)",
                    );
                }
            } else if !url.starts_with("http://") {
                return bad("server_url", "must start with https:// or http://");
            }
        }
        if let Some(url) = &self.metadata_url {
            if !url.starts_with("http://") {
                return bad("metadata_url", "must start with http://");
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Setup and jobs
// ---------------------------------------------------------------------------------------------

/// `skycat-agent setup` input: the task's `setup`, run once per launch before any job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupSpec {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    /// Shell script run with `bash -c`.
    pub setup: String,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Env names that are secrets whatever they are called (`--secret KEY`): kept out of the
    /// stored spec and masked in logs, as names matching [`is_secret_env`] are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_envs: Vec<String>,
    /// Working directory (default: the agent's state dir `workdir/` if it exists, else $HOME).
    #[serde(default)]
    pub workdir: Option<String>,
}

impl Versioned for SetupSpec {
    fn protocol_version(&self) -> u32 {
        self.protocol_version
    }
}

/// `skycat-agent submit` input: one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    #[serde(default)]
    pub name: Option<String>,
    /// Shell script run with `bash -c`.
    pub run: String,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Env names that are secrets whatever they are called (`--secret KEY`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_envs: Vec<String>,
    /// GPUs this job needs on this node (0 = none; it may share the node with others).
    #[serde(default)]
    pub gpus: f64,
    #[serde(default)]
    pub workdir: Option<String>,
    /// SKYCAT_TASK_ID for this job (managed jobs keep it across recoveries); default: config's.
    #[serde(default)]
    pub task_id: Option<String>,
    /// SKYCAT_JOB_RECOVERY_COUNT.
    #[serde(default)]
    pub recovery_count: u32,
    /// Idempotency key: submitting again with the same key returns the existing job.
    #[serde(default)]
    pub submission_id: Option<String>,
}

impl Versioned for JobSpec {
    fn protocol_version(&self) -> u32 {
        self.protocol_version
    }
    fn validate(&self) -> Result<(), ProtocolError> {
        if !(self.gpus.is_finite() && self.gpus >= 0.0) {
            return Err(ProtocolError::Field {
                what: "job spec",
                field: "gpus",
                message: "must be a number >= 0".into(),
            });
        }
        Ok(())
    }
}

pub type JobId = u64;

/// Job states, SkyPilot-like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Queued, waiting for setup, GPUs or its turn.
    Pending,
    Running,
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit, or lost (see `reason`).
    Failed,
    /// Setup failed, so the job never ran.
    FailedSetup,
    Cancelled,
    /// Stopped by the agent because of an interruption (spot) notice: not a user failure.
    Interrupted,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}

/// Current view of one job (status output, heartbeats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: JobId,
    #[serde(default)]
    pub name: Option<String>,
    pub state: JobState,
    pub gpus: f64,
    pub task_id: Option<String>,
    pub recovery_count: u32,
    pub submitted_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the job is in this state when the exit code alone does not say it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Process id (= process group id) while running.
    #[serde(default)]
    pub pid: Option<u32>,
    /// GPU indices given to the job (`CUDA_VISIBLE_DEVICES`) when it asks for whole GPUs.
    #[serde(default)]
    pub gpu_ids: Vec<u32>,
    /// Path of the job's log file on the node.
    pub log_path: String,
}

/// A state transition, in the order it happened on the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub state: JobState,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Setup progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SetupState {
    /// No setup submitted for this launch (jobs run without one).
    None,
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupStatus {
    pub state: SetupState,
    #[serde(default)]
    pub launch_id: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    pub log_path: String,
}

// ---------------------------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------------------------

/// One metered interval in the agent's cost ledger (DIR/state/ledger.jsonl).
/// `usd = price_per_hour × seconds / 3600`, with the price pinned at launch, so a later catalog
/// change never rewrites past costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    pub cluster: String,
    pub node_id: String,
    #[serde(default)]
    pub launch_id: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub seconds: f64,
    pub price_per_hour: f64,
    pub usd: f64,
    /// `metered` (agent running), or `gap` (agent was down but the node was not rebooted:
    /// the node was billed all the same).
    pub kind: String,
}

/// Totals carried in every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub price_per_hour: f64,
    /// When the price was pinned (first start of this launch).
    pub pinned_at: DateTime<Utc>,
    pub metered_seconds: f64,
    pub accrued_usd: f64,
    /// Ledger records appended since the previous heartbeat.
    #[serde(default)]
    pub new_records: Vec<CostRecord>,
}

// ---------------------------------------------------------------------------------------------
// Node facts and heartbeats
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuFact {
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub memory_total_mib: Option<u64>,
    #[serde(default)]
    pub memory_used_mib: Option<u64>,
    #[serde(default)]
    pub utilization_pct: Option<f64>,
    #[serde(default)]
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub hostname: String,
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    #[serde(default)]
    pub load_avg_1m: Option<f64>,
    /// From `nvidia-smi --query-gpu=... --format=csv`; empty when absent.
    #[serde(default)]
    pub gpus: Vec<GpuFact>,
    /// GPUs offered to jobs (config `gpus_per_node`).
    pub gpus_for_jobs: f64,
    #[serde(default)]
    pub boot_time: Option<DateTime<Utc>>,
}

/// Why this heartbeat was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatReason {
    Periodic,
    Startup,
    /// An interruption notice was just seen: sent at once.
    Interruption,
    /// Autostop fired: sent before the stop action runs.
    Autostop,
    /// `skycat-agent stop`: the daemon is exiting cleanly.
    Shutdown,
}

/// A spot/preemption notice read from the instance metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterruptionNotice {
    pub kind: MetadataKind,
    /// AWS: `terminate`, `stop` or `hibernate`; GCP: `preempted`.
    pub action: String,
    /// AWS: the announced time; GCP: none.
    #[serde(default)]
    pub time: Option<String>,
    pub detected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutostopStatus {
    pub idle_limit_secs: f64,
    /// Set when autostop fired in the current idle period.
    #[serde(default)]
    pub fired_at: Option<DateTime<Utc>>,
    /// The stop action's command, or null for report-only.
    #[serde(default)]
    pub action: Option<String>,
}

/// POSTed as JSON to `{server_url}/v1/agents/heartbeat` with `Authorization: Bearer <token>`.
/// `(cluster, node_id, seq)` identifies a heartbeat: replays after an outage resend the same
/// bytes, so the server dedups on it. `seq` starts at 1 and never repeats for a node's state dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub agent_version: String,
    pub cluster: String,
    pub node_id: String,
    pub node_rank: u32,
    #[serde(default)]
    pub launch_id: Option<String>,
    pub seq: u64,
    /// When the heartbeat was made (replayed ones are older than their delivery).
    pub created_at: DateTime<Utc>,
    pub reason: HeartbeatReason,
    pub agent_started_at: DateTime<Utc>,
    pub facts: NodeFacts,
    /// Unfinished jobs and jobs that ended in the last 10 minutes (newest 200), current state:
    /// upsert by id.
    pub jobs: Vec<JobStatus>,
    /// Transitions since the previous heartbeat, in order.
    #[serde(default)]
    pub events: Vec<JobEvent>,
    pub setup: SetupStatus,
    pub cost: CostSummary,
    /// Seconds with no running or queued job (0 while busy).
    pub idle_seconds: f64,
    #[serde(default)]
    pub autostop: Option<AutostopStatus>,
    #[serde(default)]
    pub interruption: Option<InterruptionNotice>,
}

impl Versioned for Heartbeat {
    fn protocol_version(&self) -> u32 {
        self.protocol_version
    }
}

/// `skycat-agent submit --json`: the id the agent gave the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitReply {
    pub job_id: u64,
}

/// `skycat-agent cancel ID --json`: the job's state once its processes are gone (or the wait
/// for them ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelReply {
    pub job_id: u64,
    pub state: JobState,
}

/// `skycat-agent version --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub agent_version: String,
    pub protocol_version: u32,
}

/// `skycat-agent status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub protocol_version: u32,
    pub agent_version: String,
    /// Whether a daemon answers on the state dir's socket.
    pub daemon_running: bool,
    #[serde(default)]
    pub daemon_pid: Option<u32>,
    pub cluster: String,
    pub node_id: String,
    #[serde(default)]
    pub launch_id: Option<String>,
    pub setup: SetupStatus,
    pub jobs: Vec<JobStatus>,
    pub gpus_total: f64,
    pub gpus_in_use: f64,
    pub idle_seconds: f64,
    pub cost: CostSummary,
    /// Highest heartbeat seq made / acknowledged by the server.
    pub heartbeat_seq: u64,
    pub heartbeat_acked_seq: u64,
    #[serde(default)]
    pub autostop: Option<AutostopStatus>,
    #[serde(default)]
    pub interruption: Option<InterruptionNotice>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cert_pin_is_normalised_and_checked() {
        let hex = "ab".repeat(32);
        assert_eq!(normalize_cert_sha256(&hex.to_uppercase()).unwrap(), hex);
        assert_eq!(normalize_cert_sha256(&vec!["AB"; 32].join(":")).unwrap(), hex);
        assert!(normalize_cert_sha256("abcd").is_err());
        assert!(normalize_cert_sha256(&"g".repeat(64)).is_err());
        assert!(normalize_cert_sha256(&vec!["ABC"; 32].join(":")).is_err());

        let cfg = |url: &str, pin: Option<&str>| {
            let mut v = serde_json::json!({"cluster_name": "c", "server_url": url});
            if let Some(p) = pin {
                v["server_cert_sha256"] = p.into();
            }
            from_json::<AgentConfig>("agent config", &v.to_string())
        };
        assert!(cfg("http://127.0.0.1:1", None).is_ok());
        assert!(cfg("https://10.0.0.1:1", Some(&hex)).is_ok());
        let e = cfg("https://10.0.0.1:1", None).unwrap_err().to_string();
        assert!(e.contains("server_cert_sha256"), "{e}");
        let e = cfg("http://127.0.0.1:1", Some("nothex")).unwrap_err().to_string();
        assert!(e.contains("server_cert_sha256"), "{e}");
        let e = cfg("ftp://x", None).unwrap_err().to_string();
        assert!(e.contains("server_url"), "{e}");
    }

    #[test]
    fn secret_names() {
        for n in [
            "HF_TOKEN",
            "aws_secret_access_key",
            "MyPassword",
            "API_KEY",
            "keyfile",
        ] {
            assert!(is_secret_env(n), "{n}");
        }
        for n in ["PATH", "MODEL", "SKYCAT_NODE_RANK", "MONKEY_X"] {
            // MONKEY contains KEY: it is a secret by the rule (over-redacting is the safe side).
            assert_eq!(is_secret_env(n), n == "MONKEY_X", "{n}");
        }
        let mut envs = BTreeMap::new();
        envs.insert("HF_TOKEN".to_string(), "hf_abc".to_string());
        envs.insert("MODEL".to_string(), "llama".to_string());
        let r = redact_envs(&envs);
        assert_eq!(r["HF_TOKEN"], REDACTED);
        assert_eq!(r["MODEL"], "llama");
        let r = redact_secrets(&envs, &["MODEL".to_string()]);
        assert_eq!((r["HF_TOKEN"].as_str(), r["MODEL"].as_str()), (REDACTED, REDACTED));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: AgentConfig = from_json("agent config", r#"{"cluster_name":"c1"}"#).unwrap();
        assert_eq!(c.heartbeat_interval_secs, 10.0);
        assert_eq!(c.node_id(), "c1-0");
        assert_eq!(c.stop_action.command(), None);
        assert_eq!(c.idle_limit_secs(), None);
        let c: AgentConfig = from_json(
            "agent config",
            r#"{"cluster_name":"c1","idle_minutes":2,"stop_action":"shutdown -h now",
                "metadata_url":"http://127.0.0.1:1/computeMetadata/v1/instance/preempted"}"#,
        )
        .unwrap();
        assert_eq!(c.idle_limit_secs(), Some(120.0));
        assert_eq!(c.stop_action.command(), Some("shutdown -h now"));
        assert_eq!(c.metadata_kind(), MetadataKind::Gcp);

        let e = from_json::<AgentConfig>(
            "agent config",
            r#"{"cluster_name":"c","node_rank":2,"num_nodes":2}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("node_rank"), "{e}");
        let e = from_json::<AgentConfig>(
            "agent config",
            r#"{"cluster_name":"c","protocol_version":9}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("protocol_version 9"), "{e}");
        let e = from_json::<AgentConfig>(
            "agent config",
            r#"{"cluster_name":"c","server_url":"https://x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("server_url"), "{e}");
    }

    #[test]
    fn timer_fields_out_of_range_name_the_field() {
        let cfg = |field: &str, value: &str| format!(r#"{{"cluster_name":"c","{field}":{value}}}"#);
        for (field, value) in [
            ("heartbeat_interval_secs", "1e20"),
            ("heartbeat_interval_secs", "1.7e308"),
            ("heartbeat_interval_secs", "604801"),
            ("heartbeat_interval_secs", "0"),
            ("heartbeat_interval_secs", "-1"),
            ("metadata_poll_secs", "1e300"),
            ("termination_grace_secs", "1e20"),
            ("termination_grace_secs", "-0.5"),
            ("idle_seconds", "1e20"),
            ("idle_minutes", "1e18"),
            ("idle_minutes", "-1"),
        ] {
            let e = from_json::<AgentConfig>("agent config", &cfg(field, value))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("field `{field}`")) && e.contains("at most"),
                "{field}={value}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
        // serde_json refuses numbers past f64 and non-numbers itself, naming the position.
        assert!(
            from_json::<AgentConfig>("agent config", &cfg("heartbeat_interval_secs", "1e400"))
                .is_err()
        );
        assert!(from_json::<AgentConfig>(
            "agent config",
            &cfg("heartbeat_interval_secs", "\"NaN\"")
        )
        .is_err());
        // The limits themselves are accepted.
        let ok = from_json::<AgentConfig>(
            "agent config",
            r#"{"cluster_name":"c","heartbeat_interval_secs":604800,"termination_grace_secs":0,
                "metadata_poll_secs":0.05,"idle_minutes":525600}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(
            check_secs(f64::NAN, true, 1.0).unwrap_err(),
            "must be >= 0 and at most 1 seconds (got NaN)"
        );
    }

    #[test]
    fn job_spec_round_trip() {
        let j: JobSpec = from_json("job spec", r#"{"run":"echo hi","gpus":1}"#).unwrap();
        assert_eq!(j.protocol_version, PROTOCOL_VERSION);
        let text = serde_json::to_string(&j).unwrap();
        let back: JobSpec = from_json("job spec", &text).unwrap();
        assert_eq!(back, j);
        assert!(from_json::<JobSpec>("job spec", r#"{"run":"x","gpus":-1}"#).is_err());
        assert!(from_json::<JobSpec>("job spec", r#"{"gpus":1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&JobState::FailedSetup).unwrap(),
            "\"FAILED_SETUP\""
        );
    }
}
