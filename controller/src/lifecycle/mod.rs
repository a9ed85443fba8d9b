//! Cluster lifecycle on SSH node pools: launch (pick free hosts, bootstrap the agent, sync the
//! workdir, setup once per node, submit the job), exec, status, queue, logs, cancel, stop, start,
//! down, and the direct pull of status and cost from agents over SSH.
//!
//! Two paths bring agent reports into the state DB:
//! * heartbeats: agents POST to `skycat serve` ([`crate::router`]) when the cluster was launched
//!   with a server URL;
//! * direct pull: the CLI runs `skycat-agent status`/`queue` and reads the agent's ledger file over
//!   SSH (`status`, `queue`, `stop`, `down`, `cost-report --refresh`). Both write the same ledger
//!   rows, deduplicated, so mixing them never double-counts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skycat_protocol::{
    AgentStatus, JobState, JobStatus, VersionInfo,
    PROTOCOL_VERSION,
};

use skycat_optimizer::{BlockedResource, Placement, PlanOptions, TaskSpec};

use crate::agent_client::LocalAgent;
use crate::backend::{BackendContext, Backends, ErrorClass, ImageId, ProvisionError};
use crate::home::Home;
use crate::placement::{self, LaunchPlan, PlacementError};
use crate::pools::{PoolHost, Pools};
use crate::ssh::{shell_quote, SshOptions};
use crate::transport::{NodeSession, NodeTransport, SshTransport, TransportError};
use crate::store::{self, ClusterRow, NodeRow, Store};

mod launch;
mod ops;


/// What to run: the part of a task (SkyPilot YAML) that the lifecycle needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRun {
    pub name: Option<String>,
    pub num_nodes: u32,
    pub setup: Option<String>,
    pub run: Option<String>,
    pub envs: BTreeMap<String, String>,
    /// Local folder synced to every node's `<state dir>/workdir` (the jobs' cwd), for the CLI
    /// on the machine that has it. The server never takes one from a request.
    pub workdir: Option<PathBuf>,
    /// A workdir a client uploaded to `skycat serve` (`POST /v1/uploads`): the archive the server
    /// stored, set by the server only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir_archive: Option<PathBuf>,
    /// GPUs each node's job needs (the task's accelerator count).
    pub gpus_per_node: f64,
    /// Names in `envs` that are secrets whatever they are called (`--secret KEY`, the YAML's
    /// `secrets:`): redacted in the state DB and in the agents' stored specs and logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_envs: Vec<String>,
    /// SkyPilot's `file_mounts`, put on every node before setup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_mounts: Vec<crate::mounts::FileMount>,
    /// Credentials the nodes' agents need to read the mounted buckets (all secret: never stored
    /// or shown in clear, passed to the agent on stdin).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_envs: BTreeMap<String, String>,
}

impl TaskRun {
    /// A one-line command run on every node of a cluster (`skycat exec NAME CMD`).
    pub fn command(cmd: &str) -> TaskRun {
        TaskRun { run: Some(cmd.to_string()), num_nodes: 1, ..Default::default() }
    }

    /// The task as stored in the state DB: secret env values redacted.
    pub fn redacted_json(&self) -> String {
        let mut t = self.clone();
        t.envs = skycat_protocol::redact_secrets(&self.envs, &self.secret_envs);
        let all: Vec<String> = self.storage_envs.keys().cloned().collect();
        t.storage_envs = skycat_protocol::redact_secrets(&self.storage_envs, &all);
        serde_json::to_string(&t).unwrap_or_default()
    }
}

/// What a backend provisions besides the instance: the task's `resources` that are not part of
/// the plan.
#[derive(Debug, Clone, Default)]
pub struct LaunchResources {
    pub ports: Vec<(u16, u16)>,
    pub disk_size_gb: Option<u32>,
    pub image_id: Option<ImageId>,
}

impl LaunchResources {
    /// The task's `ports`, `disk_size` and `image_id` (of its base `resources`).
    pub fn from_spec(spec: &TaskSpec) -> std::result::Result<LaunchResources, ProvisionError> {
        let Some(r) = spec.resources.as_ref() else { return Ok(LaunchResources::default()) };
        let ports = match &r.ports {
            Some(p) => crate::backend::parse_ports(&p.0)?,
            None => Vec::new(),
        };
        let disk_size_gb = match r.disk_size {
            Some(d) if d.0.is_finite() && d.0 >= 1.0 && d.0 <= 65_536.0 => Some(d.0.ceil() as u32),
            Some(d) => {
                return Err(ProvisionError::new(ErrorClass::Invalid, format!("resources.disk_size: {} is not 1..65536 GB", d.0)))
            }
            None => None,
        };
        let image_id = match &r.image_id {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<ImageId>(v.clone()).map_err(|_| {
                ProvisionError::new(ErrorClass::Invalid, "resources.image_id: expected an image id or a map of region to image id")
            })?),
        };
        Ok(LaunchResources { ports, disk_size_gb, image_id })
    }
}

#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub cluster: String,
    /// The plan's failover order (see [`crate::placement`]); tried in order, with blocking.
    /// Unused when the cluster exists already.
    pub placements: Vec<Placement>,
    /// Excluded up front (`--block`, a managed job's preempted zones).
    pub blocked: Vec<BlockedResource>,
    /// Pool hosts not to use (a managed job's preempted hosts).
    pub avoid_nodes: Vec<String>,
    pub resources: LaunchResources,
    pub task: TaskRun,
    pub no_setup: bool,
    pub idle_minutes: Option<f64>,
    /// Test knob: autostop after this many idle seconds (wins over `idle_minutes`).
    pub idle_seconds: Option<f64>,
    pub down_on_idle: bool,
    /// Heartbeat receiver as the nodes reach it. `{controller_ip}` is replaced per node by the
    /// address the node sees the controller's SSH connection come from.
    pub server_url: Option<String>,
    pub heartbeat_interval_secs: Option<f64>,
}

impl LaunchRequest {
    pub fn new(cluster: &str, task: TaskRun) -> LaunchRequest {
        LaunchRequest {
            cluster: cluster.to_string(),
            placements: Vec::new(),
            blocked: Vec::new(),
            avoid_nodes: Vec::new(),
            resources: LaunchResources::default(),
            task,
            no_setup: false,
            idle_minutes: None,
            idle_seconds: None,
            down_on_idle: false,
            server_url: None,
            heartbeat_interval_secs: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LaunchOutcome {
    pub cluster: String,
    pub cluster_id: String,
    pub hosts: Vec<String>,
    pub job_id: Option<u64>,
    /// Hosts tried and skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    pub reused_agents: usize,
}

/// A job as seen across the cluster's nodes.
#[derive(Debug, Clone)]
pub struct ClusterJob {
    pub id: u64,
    pub name: Option<String>,
    /// Aggregate: RUNNING if any node runs it, FAILED if any failed, … SUCCEEDED if all did.
    pub state: JobState,
    pub per_node: Vec<(u32, JobStatus)>,
}

/// One cluster for `skycat status`.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: ClusterRow,
    pub nodes: Vec<NodeRow>,
    /// Per node: the agent's status when pulled over SSH, or the error.
    pub agents: Vec<std::result::Result<AgentStatus, String>>,
    /// "heartbeat" or "ssh" or "cached".
    pub source: &'static str,
}

type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Where `logs` writes the bytes it receives.
pub type OutputSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Progress sink that prints to stderr (the CLI's default).
pub fn stderr_progress() -> Progress {
    Arc::new(|line: &str| eprintln!("{line}"))
}


pub struct Controller {
    pub home: Home,
    pub store: Store,
    ssh: SshOptions,
    pub backends: Backends,
    /// The SHA-256 of `skycat serve`'s TLS certificate, which the agents pin.
    server_cert_sha256: Option<String>,
    agent_bin: Option<PathBuf>,
    progress: Progress,
}

/// Cluster names: a letter, then letters, digits, `-`, `_`, `.`; at most 63 characters.
pub fn check_cluster_name(name: &str) -> Result<()> {
    let ok = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        bail!("invalid cluster name {name:?}: use a letter, then letters, digits, '-', '_' or '.' (at most 63)");
    }
    Ok(())
}

fn now_rfc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Controller {
    /// Opens `$SKYCAT_HOME`'s state DB.
    pub async fn open(home: Home) -> Result<Controller> {
        home.ensure().with_context(|| format!("creating {}", home.root.display()))?;
        let store = Store::open(&home.state_db()).await?;
        Controller::with_store(home, store).await
    }

    pub async fn with_store(home: Home, store: Store) -> Result<Controller> {
        let ssh = SshOptions::new(home.known_hosts());
        let backends = Backends::registry(&BackendContext { home: home.clone(), store: store.clone(), ssh: ssh.clone() });
        Ok(Controller {
            ssh,
            backends,
            home,
            store,
            agent_bin: None,
            server_cert_sha256: None,
            progress: Arc::new(|_: &str| {}),
        })
    }

    /// How long an SSH connection attempt may take before the node counts as not answering.
    pub fn with_ssh_connect_timeout(mut self, d: Duration) -> Controller {
        self.ssh.connect_timeout = d;
        self.backends = Backends::registry(&BackendContext { home: self.home.clone(), store: self.store.clone(), ssh: self.ssh.clone() });
        self
    }

    /// The transport to a cluster's nodes: its backend's, or SSH for a cluster whose backend is
    /// gone from the registry (its hosts may still answer).
    pub fn transport_for(&self, c: &ClusterRow) -> Arc<dyn NodeTransport> {
        match self.backends.for_cluster(c) {
            Ok(b) => b.transport(),
            Err(_) => Arc::new(SshTransport { opts: self.ssh.clone() }),
        }
    }

    /// One session to a node of `c`.
    pub async fn connect(&self, c: &ClusterRow, n: &NodeRow) -> std::result::Result<Arc<dyn NodeSession>, TransportError> {
        self.transport_for(c).connect(&n.target()).await
    }

    /// Agents of clusters launched from here report to an HTTPS server with this certificate
    /// (lowercase hex SHA-256 of its DER) and refuse any other.
    pub fn with_server_cert_sha256(mut self, fingerprint: String) -> Controller {
        self.server_cert_sha256 = Some(fingerprint);
        self
    }

    pub fn server_cert_sha256(&self) -> Option<&str> {
        self.server_cert_sha256.as_deref()
    }

    pub fn with_progress(mut self, p: Progress) -> Controller {
        self.progress = p;
        self
    }

    /// The local `skycat-agent` binary to upload (default: `$SKYCAT_AGENT_BIN`, else next to the
    /// running executable).
    pub fn with_agent_bin(mut self, p: impl Into<PathBuf>) -> Controller {
        self.agent_bin = Some(p.into());
        self
    }

    /// The plan `launch` executes: the task over the offers of the enabled backends (`catalog`
    /// holds every cloud's rows; pools come from their YAML).
    pub fn plan_launch(
        &self,
        spec: &TaskSpec,
        catalog: &[skycat_catalog::Offer],
        opts: &PlanOptions,
    ) -> std::result::Result<LaunchPlan, PlacementError> {
        let enabled = crate::enabled::enabled_clouds(&self.home);
        let launchable = placement::launchable_offers(&self.backends, &enabled, catalog);
        let mut everything = catalog.to_vec();
        // Offers that are not catalog rows (pools from their YAML, Kubernetes capacity).
        for live in ["ssh", crate::backend::kubernetes::INFRA] {
            if let Some(b) = self.backends.get(live) {
                everything.extend(b.offers(catalog));
            }
        }
        placement::plan_launch(spec, &launchable, &everything, opts, &crate::enabled::how_to_enable)
    }

    /// `skycat ssh`: runs `cmd` (a login shell when empty) on the head node, attached to this
    /// terminal; its exit code.
    pub async fn shell(&self, name: &str, cmd: &str, tty: bool) -> Result<Option<u32>> {
        let c = self.store.cluster(name).await?.ok_or_else(|| anyhow::anyhow!("cluster {name} not found"))?;
        let nodes = self.store.nodes(&c.id).await?;
        let head = nodes.first().ok_or_else(|| anyhow::anyhow!("cluster {name} has no nodes"))?;
        let s = self.connect(&c, head).await?;
        let cmd = if cmd.trim().is_empty() { "exec /bin/bash -l 2>/dev/null || exec /bin/sh -l" } else { cmd };
        let code = s.interactive(cmd, tty).await;
        s.close().await;
        Ok(code?)
    }

    /// What the backends are made with: for code that needs one backend's own calls
    /// (`show-gpus --infra k8s`).
    pub fn backend_context(&self) -> BackendContext {
        BackendContext { home: self.home.clone(), store: self.store.clone(), ssh: self.ssh.clone() }
    }

    /// Re-reads the offers that come from live capacity (Kubernetes contexts) of the enabled
    /// backends, before a plan. A context that cannot be read plans without its offers; the
    /// progress line says why.
    pub async fn refresh_live_offers(&self) {
        let enabled = crate::enabled::enabled_clouds(&self.home);
        for name in self.backends.names() {
            if !enabled.contains(name) {
                continue;
            }
            if let Some(b) = self.backends.get(name) {
                if let Err(e) = b.refresh_offers().await {
                    self.say(&format!("{name}: {e}; planning without its offers"));
                }
            }
        }
    }

    /// Where the cluster's opened ports are reached from outside: port → address, when the
    /// backend exposes them elsewhere than on the head node (a Kubernetes Service).
    pub async fn endpoints(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Option<std::collections::BTreeMap<u16, String>>> {
        let b = self.backends.for_cluster(cluster)?;
        Ok(b.endpoints(cluster, nodes).await?)
    }

    fn say(&self, line: &str) {
        (self.progress)(line);
    }

    pub fn pools(&self) -> Result<Pools> {
        Ok(Pools::load(&self.home.pools_file())?)
    }

    fn agent_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.agent_bin {
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("SKYCAT_AGENT_BIN").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let exe = std::env::current_exe().context("locating the running executable")?;
        let sibling = exe.with_file_name("skycat-agent");
        if sibling.is_file() {
            return Ok(sibling);
        }
        bail!(
            "skycat-agent binary not found next to {} (build it with `cargo build -p skycat-agent`, or set SKYCAT_AGENT_BIN)",
            exe.display()
        )
    }

    async fn local_agent(&self) -> Result<LocalAgent> {
        let path = self.agent_path()?;
        let bytes = tokio::fs::read(&path).await.with_context(|| format!("reading agent binary {}", path.display()))?;
        let sha256 = store::hex(&Sha256::digest(&bytes));
        let out = tokio::process::Command::new(&path)
            .args(["version", "--json"])
            .output()
            .await
            .with_context(|| format!("running {} version", path.display()))?;
        let v: VersionInfo = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} version --json printed no version", path.display()))?;
        if v.protocol_version != PROTOCOL_VERSION {
            bail!(
                "agent binary {} speaks protocol {} but this controller speaks {}",
                path.display(),
                v.protocol_version,
                PROTOCOL_VERSION
            );
        }
        Ok(LocalAgent { path, sha256, version: v.agent_version })
    }
}

fn q(s: &str) -> String {
    shell_quote(s)
}

/// One state for a job that runs on several nodes.
pub fn aggregate(states: impl Iterator<Item = JobState>) -> JobState {
    let v: Vec<JobState> = states.collect();
    let any = |s: JobState| v.contains(&s);
    if v.is_empty() {
        return JobState::Pending;
    }
    if any(JobState::FailedSetup) {
        JobState::FailedSetup
    } else if any(JobState::Failed) {
        JobState::Failed
    } else if any(JobState::Interrupted) {
        JobState::Interrupted
    } else if any(JobState::Cancelled) {
        JobState::Cancelled
    } else if any(JobState::Running) {
        JobState::Running
    } else if any(JobState::Pending) {
        JobState::Pending
    } else {
        JobState::Succeeded
    }
}

/// Time between `launch` and the job's first RUNNING report, for benchmarks.
pub async fn wait_job_state(
    ctl: &Controller,
    name: &str,
    job: u64,
    want: impl Fn(JobState) -> bool,
    timeout: Duration,
) -> Result<ClusterJob> {
    let deadline = Instant::now() + timeout;
    loop {
        let q = ctl.queue(name).await?;
        if let Some(j) = q.into_iter().find(|j| j.id == job) {
            if want(j.state) {
                return Ok(j);
            }
            if Instant::now() > deadline {
                bail!("job {job} of {name} still {:?} after {:?}", j.state, timeout);
            }
        } else if Instant::now() > deadline {
            bail!("job {job} of {name} not found after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl From<&PoolHost> for crate::store::NodeRow {
    fn from(h: &PoolHost) -> NodeRow {
        node_at(&h.pool, &crate::ssh::SshTarget::from(h))
    }
}

/// A node row at `target` with nothing known yet (no cluster, agent, meter or instance).
pub(crate) fn node_at(pool: &str, target: &crate::ssh::SshTarget) -> NodeRow {
    NodeRow {
        cluster_id: String::new(),
        rank: 0,
        node_id: String::new(),
        pool: pool.to_string(),
        ip: target.host.clone(),
        port: target.port,
        user: target.user.clone(),
        identity_file: target.identity_file.display().to_string(),
        state_dir: String::new(),
        agent_bin: String::new(),
        last_heartbeat_at: None,
        last_seq: 0,
        accrued_usd: 0.0,
        metered_seconds: 0.0,
        idle_seconds: None,
        instance_id: None,
        zone: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aggregation() {
        assert!(check_cluster_name("my-cluster.1").is_ok());
        for bad in ["", "1abc", "a b", "a/b", &"x".repeat(64)] {
            assert!(check_cluster_name(bad).is_err(), "{bad}");
        }
        use JobState::*;
        assert_eq!(aggregate([Running, Succeeded].into_iter()), Running);
        assert_eq!(aggregate([Failed, Running].into_iter()), Failed);
        assert_eq!(aggregate([Succeeded, Succeeded].into_iter()), Succeeded);
        let t = TaskRun {
            envs: [("HF_TOKEN".to_string(), "hf_x".to_string()), ("A".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let j = t.redacted_json();
        assert!(!j.contains("hf_x") && j.contains("<redacted>") && j.contains("\"b\""), "{j}");
    }
}

