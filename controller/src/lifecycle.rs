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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skycat_protocol::{
    AgentConfig, AgentStatus, CostRecord, JobSpec, JobState, JobStatus, SetupSpec, StopAction, VersionInfo,
    PROTOCOL_VERSION,
};

use crate::home::Home;
use crate::pools::{Pool, PoolHost, Pools};
use crate::ssh::{shell_quote, SshOptions, SshSession, SshTarget};
use crate::store::{self, ClusterRow, NodeRow, Store, StoreError};

/// What to run: the part of a task (SkyPilot YAML) that the lifecycle needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRun {
    pub name: Option<String>,
    pub num_nodes: u32,
    pub setup: Option<String>,
    pub run: Option<String>,
    pub envs: BTreeMap<String, String>,
    /// Local folder synced to every node's `<state dir>/workdir` (the jobs' cwd).
    pub workdir: Option<PathBuf>,
    /// GPUs each node's job needs (the task's accelerator count).
    pub gpus_per_node: f64,
}

impl TaskRun {
    /// A one-line command run on every node of a cluster (`skycat exec NAME CMD`).
    pub fn command(cmd: &str) -> TaskRun {
        TaskRun { run: Some(cmd.to_string()), num_nodes: 1, ..Default::default() }
    }

    /// The task as stored in the state DB: secret env values redacted.
    pub fn redacted_json(&self) -> String {
        let mut t = self.clone();
        t.envs = skycat_protocol::redact_envs(&self.envs);
        serde_json::to_string(&t).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub cluster: String,
    /// Pool name (`--infra ssh/POOL`); `None` = the first pool with enough free hosts.
    pub pool: Option<String>,
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
            pool: None,
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

const AGENT_ROOT: &str = ".skycat-agent";

pub struct Controller {
    pub home: Home,
    pub store: Store,
    pub ssh: SshOptions,
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

struct LocalAgent {
    path: PathBuf,
    sha256: String,
    version: String,
}

/// What a probe of a node says.
struct Probe {
    home: String,
    controller_ip: Option<String>,
    bin_sha: Option<String>,
    status: Option<AgentStatus>,
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
        Ok(Controller {
            ssh: SshOptions::new(home.known_hosts()),
            home,
            store,
            agent_bin: None,
            progress: Arc::new(|_: &str| {}),
        })
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

    // ---- launch -------------------------------------------------------------------------

    /// `skycat launch`: provisions (or reuses) the cluster and submits the task's run as a job.
    pub async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome> {
        check_cluster_name(&req.cluster)?;
        let t0 = Instant::now();
        let agent = Arc::new(self.local_agent().await?);
        let existing = self.store.cluster(&req.cluster).await?;
        let (cluster, sessions, skipped, token) = match existing {
            Some(c) => {
                if req.task.num_nodes > c.num_nodes {
                    bail!(
                        "cluster {} has {} node(s); the task needs {} (launch a new cluster or `skycat down {}` first)",
                        c.name,
                        c.num_nodes,
                        req.task.num_nodes,
                        c.name
                    );
                }
                self.say(&format!("Reusing cluster {} ({} node(s), {}).", c.name, c.num_nodes, c.status));
                let nodes = self.store.nodes(&c.id).await?;
                let sessions = self.connect_nodes(&nodes).await?;
                (c, sessions.into_iter().map(|(n, s)| (Some(n), s)).collect::<Vec<_>>(), Vec::new(), None)
            }
            None => {
                let (c, picked, skipped, token) = self.provision(req).await?;
                (c, picked.into_iter().map(|s| (None, s)).collect(), skipped, Some(token))
            }
        };
        let fresh = token.is_some();
        let result = self.launch_on(req, &cluster, sessions, token, agent, t0).await;
        match result {
            Ok(mut out) => {
                out.skipped = skipped;
                Ok(out)
            }
            Err(e) => {
                if fresh {
                    // Nothing useful is left behind: free the hosts so the next launch can use them.
                    let _ = self.store.release_cluster_hosts(&cluster.id).await;
                    let _ = self.store.set_cluster_status(&cluster.id, store::status::TERMINATED).await;
                }
                Err(e)
            }
        }
    }

    /// Picks free hosts of the pool, reserving each and checking it answers over SSH; skips
    /// (and reports) hosts that don't.
    async fn provision(&self, req: &LaunchRequest) -> Result<(ClusterRow, Vec<SshSession>, Vec<(String, String)>, String)> {
        let pools = self.pools()?;
        let need = req.task.num_nodes.max(1) as usize;
        let pool: &Pool = match &req.pool {
            Some(p) => pools.get(p)?,
            None => {
                // The cheapest pool with enough free hosts (pools are offers priced per host-hour).
                let mut by_price: Vec<&Pool> = pools.pools.values().collect();
                by_price.sort_by(|a, b| a.price_per_hour.total_cmp(&b.price_per_hour));
                let mut found = None;
                for p in by_price {
                    let taken = self.store.reserved_hosts(&p.name).await?;
                    if p.hosts.iter().filter(|h| !taken.contains(&h.display())).count() >= need {
                        found = Some(p);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    anyhow!(
                        "no SSH node pool in {} has {need} free host(s){}",
                        pools.path.display(),
                        if pools.pools.is_empty() { " (no pools defined)" } else { "" }
                    )
                })?
            }
        };
        let id = store::random_hex(8);
        let token = store::random_hex(32);
        let now = now_rfc();
        let row = ClusterRow {
            id: id.clone(),
            name: req.cluster.clone(),
            status: store::status::INIT.to_string(),
            infra: format!("ssh/{}", pool.name),
            pool: pool.name.clone(),
            num_nodes: need as u32,
            price_per_hour: pool.price_per_hour,
            spot: pool.spot,
            idle_minutes: req.idle_seconds.map(|s| s / 60.0).or(req.idle_minutes),
            down_on_idle: req.down_on_idle,
            server_url: req.server_url.clone(),
            agent_version: None,
            task_json: Some(req.task.redacted_json()),
            autostopped_at: None,
            created_at: now.clone(),
            updated_at: now,
            terminated_at: None,
        };
        self.store.insert_cluster(&row, &store::hash_token(&token)).await?;
        // The token travels only in the agents' config (the DB keeps its hash).
        let mut sessions = Vec::new();
        let mut skipped = Vec::new();
        for host in &pool.hosts {
            if sessions.len() == need {
                break;
            }
            let key = host.display();
            match self.store.reserve_host(&pool.name, &key, &id).await {
                Ok(()) => {}
                Err(StoreError::HostTaken { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            self.say(&format!("Connecting to {key} ..."));
            match SshSession::connect(&SshTarget::from(host), &self.ssh).await {
                Ok(s) => sessions.push(s),
                Err(e) => {
                    self.say(&format!("  {e}; trying the next host"));
                    skipped.push((key.clone(), e.to_string()));
                    self.store.release_host(&pool.name, &key, &id).await?;
                }
            }
        }
        if sessions.len() < need {
            self.store.release_cluster_hosts(&id).await?;
            self.store.set_cluster_status(&id, store::status::TERMINATED).await?;
            let why = if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; unusable: {}",
                    skipped.iter().map(|(h, e)| format!("{h} ({e})")).collect::<Vec<_>>().join("; ")
                )
            };
            bail!("pool {} has only {} usable free host(s), the task needs {need}{why}", pool.name, sessions.len());
        }
        Ok((row, sessions, skipped, token))
    }

    async fn connect_nodes(&self, nodes: &[NodeRow]) -> Result<Vec<(NodeRow, SshSession)>> {
        let mut set = tokio::task::JoinSet::new();
        for n in nodes.iter().cloned() {
            let opts = self.ssh.clone();
            set.spawn(async move {
                let r = SshSession::connect(&n.target(), &opts).await;
                (n, r)
            });
        }
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            let (n, r) = j.map_err(|e| anyhow!("ssh task: {e}"))?;
            out.push((n.clone(), r.with_context(|| format!("node {} of cluster", n.rank))?));
        }
        out.sort_by_key(|(n, _)| n.rank);
        Ok(out)
    }

    async fn launch_on(
        &self,
        req: &LaunchRequest,
        cluster: &ClusterRow,
        sessions: Vec<(Option<NodeRow>, SshSession)>,
        token: Option<String>,
        agent: Arc<LocalAgent>,
        t0: Instant,
    ) -> Result<LaunchOutcome> {
        let sessions: Vec<(Option<NodeRow>, Arc<SshSession>)> =
            sessions.into_iter().map(|(n, s)| (n, Arc::new(s))).collect();
        // Probe every node (home, controller address, installed agent).
        let mut probes = Vec::new();
        for (_, s) in &sessions {
            probes.push(probe(s, &cluster.name).await?);
        }
        let node_ips: Vec<String> = sessions.iter().map(|(_, s)| s.target().host.clone()).collect();
        let fresh = token.is_some();
        let pools = self.pools().ok();
        let gpus_per_node = pools
            .as_ref()
            .and_then(|p| p.pools.get(&cluster.pool))
            .and_then(|p| p.accelerators.as_ref().map(|a| a.1))
            .unwrap_or(req.task.gpus_per_node);
        // Bootstrap the agents in parallel.
        self.say(&format!("Starting the agent on {} node(s) ...", sessions.len()));
        let mut set = tokio::task::JoinSet::new();
        for (rank, ((node, sess), probe)) in sessions.iter().zip(probes).enumerate() {
            let rank = rank as u32;
            let node_row = match node {
                Some(n) => n.clone(),
                None => {
                    let t = sess.target();
                    let dir = format!("{}/{AGENT_ROOT}/clusters/{}", probe.home, cluster.name);
                    let n = NodeRow {
                        cluster_id: cluster.id.clone(),
                        rank,
                        node_id: format!("{}-{rank}", cluster.name),
                        pool: cluster.pool.clone(),
                        ip: t.host.clone(),
                        port: t.port,
                        user: t.user.clone(),
                        identity_file: t.identity_file.display().to_string(),
                        state_dir: dir,
                        agent_bin: format!("{}/{AGENT_ROOT}/bin/skycat-agent", probe.home),
                        last_heartbeat_at: None,
                        last_seq: 0,
                        accrued_usd: 0.0,
                        metered_seconds: 0.0,
                        idle_seconds: None,
                    };
                    self.store.insert_node(&n).await?;
                    n
                }
            };
            let config = if fresh {
                let server_url = req.server_url.as_ref().map(|u| {
                    u.replace("{controller_ip}", probe.controller_ip.as_deref().unwrap_or("127.0.0.1"))
                });
                Some(AgentConfig {
                    protocol_version: PROTOCOL_VERSION,
                    cluster_name: cluster.name.clone(),
                    launch_id: Some(cluster.id.clone()),
                    node_id: Some(node_row.node_id.clone()),
                    node_rank: rank,
                    num_nodes: sessions.len() as u32,
                    node_ips: node_ips.clone(),
                    gpus_per_node,
                    task_id: Some(format!("{}-{}", cluster.name, cluster.id)),
                    server_url,
                    token: token.clone(),
                    heartbeat_interval_secs: req.heartbeat_interval_secs.unwrap_or(10.0),
                    price_per_hour: cluster.price_per_hour,
                    spot: cluster.spot,
                    idle_minutes: req.idle_minutes,
                    idle_seconds: req.idle_seconds,
                    // SSH hosts stay reserved when stopped: the stop action stops the agent (and
                    // so the meter); the controller marks the cluster STOPPED (or downs it).
                    stop_action: if req.idle_minutes.is_some() || req.idle_seconds.is_some() {
                        StopAction(format!(
                            "setsid sh -c 'sleep 1; exec {} stop --state-dir {}' </dev/null >/dev/null 2>&1 &",
                            shell_quote(&node_row.agent_bin),
                            shell_quote(&node_row.state_dir)
                        ))
                    } else {
                        StopAction::report_only()
                    },
                    metadata_url: None,
                    metadata_kind: None,
                    metadata_poll_secs: 5.0,
                    termination_grace_secs: 30.0,
                    envs: BTreeMap::new(),
                })
            } else {
                None
            };
            let sess = sess.clone();
            let agent = agent.clone();
            let workdir = req.task.workdir.clone();
            let progress = self.progress.clone();
            set.spawn(async move {
                let reused = ensure_agent(&sess, &node_row, &agent, &probe, config.as_ref(), &progress).await?;
                if let Some(w) = &workdir {
                    progress(&format!("  {}: syncing workdir {} ...", sess.target().display(), w.display()));
                    sync_workdir(&sess, w, &node_row.state_dir).await?;
                }
                Ok::<_, anyhow::Error>((rank, reused))
            });
        }
        let mut reused_agents = 0;
        while let Some(j) = set.join_next().await {
            let (_, reused) = j.map_err(|e| anyhow!("bootstrap task: {e}"))??;
            reused_agents += reused as usize;
        }
        self.store.set_agent_version(&cluster.id, &agent.version).await?;
        self.store.set_cluster_status(&cluster.id, store::status::UP).await?;
        self.say(&format!("Agents ready in {:.1}s.", t0.elapsed().as_secs_f64()));
        let nodes = self.store.nodes(&cluster.id).await?;
        // Setup (once per launch: the agent ignores a resubmission for the same launch).
        if !req.no_setup {
            if let Some(setup) = req.task.setup.as_ref().filter(|s| !s.trim().is_empty()) {
                let spec = SetupSpec {
                    protocol_version: PROTOCOL_VERSION,
                    setup: setup.clone(),
                    envs: req.task.envs.clone(),
                    workdir: None,
                };
                let body = serde_json::to_vec(&spec)?;
                for ((_, sess), n) in sessions.iter().zip(&nodes) {
                    let out = sess
                        .run_ok(&format!("{} setup --state-dir {} --json", q(&n.agent_bin), q(&n.state_dir)), Some(&body))
                        .await?;
                    tracing::debug!(rank = n.rank, "setup: {}", out.trim());
                }
                self.say("Setup submitted (runs once per node, before the job).");
            }
        }
        let job_id = match req.task.run.as_ref().filter(|r| !r.trim().is_empty()) {
            Some(_) => {
                let ids = self.submit_on(&sessions.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), &nodes, &req.task).await?;
                self.say(&format!("Job {ids} submitted ({:.1}s after launch).", t0.elapsed().as_secs_f64()));
                Some(ids)
            }
            None => None,
        };
        for (_, s) in sessions {
            if let Ok(s) = Arc::try_unwrap(s) {
                s.close().await;
            }
        }
        Ok(LaunchOutcome {
            cluster: cluster.name.clone(),
            cluster_id: cluster.id.clone(),
            hosts: nodes.iter().map(|n| n.host_key()).collect(),
            job_id,
            skipped: Vec::new(),
            reused_agents,
        })
    }

    /// Submits the task's run on every node (same order everywhere, so ids agree).
    async fn submit_on(&self, sessions: &[Arc<SshSession>], nodes: &[NodeRow], task: &TaskRun) -> Result<u64> {
        let spec = JobSpec {
            protocol_version: PROTOCOL_VERSION,
            name: task.name.clone(),
            run: task.run.clone().unwrap_or_default(),
            envs: task.envs.clone(),
            gpus: task.gpus_per_node,
            workdir: None,
            task_id: None,
            recovery_count: 0,
            submission_id: Some(store::random_hex(8)),
        };
        let body = serde_json::to_vec(&spec)?;
        let mut ids = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        for (s, n) in sessions.iter().zip(nodes) {
            let s = s.clone();
            let cmd = format!("{} submit --state-dir {} --json", q(&n.agent_bin), q(&n.state_dir));
            let body = body.clone();
            let rank = n.rank;
            set.spawn(async move {
                let out = s.run_ok(&cmd, Some(&body)).await?;
                let v: serde_json::Value = serde_json::from_str(out.trim())
                    .with_context(|| format!("agent on rank {rank} answered {out:?} to submit"))?;
                let id = v["job_id"].as_u64().ok_or_else(|| anyhow!("agent on rank {rank}: no job_id in {out:?}"))?;
                Ok::<_, anyhow::Error>((rank, id))
            });
        }
        while let Some(j) = set.join_next().await {
            ids.push(j.map_err(|e| anyhow!("submit task: {e}"))??);
        }
        ids.sort();
        let first = ids.first().map(|x| x.1).ok_or_else(|| anyhow!("cluster has no nodes"))?;
        if ids.iter().any(|(_, id)| *id != first) {
            bail!("nodes assigned different job ids {ids:?}: their queues diverged; `skycat down` and relaunch");
        }
        Ok(first)
    }

    // ---- exec and the other verbs ------------------------------------------------------------

    async fn live(&self, name: &str) -> Result<(ClusterRow, Vec<NodeRow>)> {
        let c = self.store.require_cluster(name).await?;
        let nodes = self.store.nodes(&c.id).await?;
        Ok((c, nodes))
    }

    /// `skycat exec`: submits a job to an UP cluster (workdir synced, no setup).
    pub async fn exec(&self, name: &str, task: &TaskRun) -> Result<u64> {
        let (c, nodes) = self.live(name).await?;
        if c.status != store::status::UP {
            bail!("cluster {name} is {}; `skycat start {name}` first", c.status);
        }
        let sessions = self.connect_nodes(&nodes).await?;
        let sessions: Vec<(NodeRow, Arc<SshSession>)> =
            sessions.into_iter().map(|(n, s)| (n, Arc::new(s))).collect();
        for (n, s) in &sessions {
            // Brings back an agent that died (idempotent when it runs).
            s.run_ok(&format!("{} daemon --state-dir {} --detach", q(&n.agent_bin), q(&n.state_dir)), None).await?;
        }
        if let Some(w) = &task.workdir {
            for (n, s) in &sessions {
                sync_workdir(s, w, &n.state_dir).await?;
            }
        }
        // Every node gets the job (so job ids stay equal across nodes); SKYCAT_NUM_NODES is the
        // cluster's.
        let (ns, ss): (Vec<NodeRow>, Vec<Arc<SshSession>>) = sessions.into_iter().unzip();
        self.submit_on(&ss, &ns, task).await
    }

    async fn agent_json<T: for<'de> Deserialize<'de>>(&self, s: &SshSession, n: &NodeRow, args: &str) -> Result<T> {
        let out = s
            .run_ok(&format!("{} {args} --state-dir {} --json", q(&n.agent_bin), q(&n.state_dir)), None)
            .await?;
        serde_json::from_str(out.trim()).with_context(|| format!("agent on {}: unexpected answer to `{args}`", n.host_key()))
    }

    /// Pulls one node's status, jobs and ledger over SSH into the state DB.
    async fn pull_node(&self, c: &ClusterRow, n: &NodeRow, s: &SshSession) -> Result<AgentStatus> {
        let st: AgentStatus = self.agent_json(s, n, "status").await?;
        self.store
            .record_node_totals(&c.id, n.rank, st.cost.accrued_usd, st.cost.metered_seconds, st.idle_seconds)
            .await?;
        self.store.upsert_jobs(&c.id, n.rank, &st.jobs).await?;
        let ledger = s
            .exec(&format!("cat {}/state/ledger.jsonl 2>/dev/null", q(&n.state_dir)), None)
            .await?;
        let records: Vec<CostRecord> =
            ledger.stdout_str().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        self.store.record_costs(c, &records, "ssh-pull").await?;
        if c.status == store::status::UP {
            if let Some(at) = st.autostop.as_ref().and_then(|a| a.fired_at) {
                if self.store.mark_autostopped(&c.id, &at.to_rfc3339()).await? && c.down_on_idle {
                    self.say(&format!("Cluster {} autostopped with --down: tearing it down.", c.name));
                }
            }
        }
        Ok(st)
    }

    /// `skycat status`: every live cluster. Clusters without a fresh heartbeat (none in the last
    /// 3 intervals, or launched without a server) are refreshed over SSH when `refresh`.
    pub async fn status(&self, refresh: bool) -> Result<Vec<ClusterView>> {
        let mut out = Vec::new();
        for c in self.store.clusters().await? {
            let nodes = self.store.nodes(&c.id).await?;
            let fresh_hb = nodes.iter().all(|n| {
                n.last_heartbeat_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds() < 30)
            });
            let mut agents = Vec::new();
            let mut source = if fresh_hb { "heartbeat" } else { "cached" };
            if refresh && !fresh_hb && c.status == store::status::UP {
                source = "ssh";
                for n in &nodes {
                    let r = match SshSession::connect(&n.target(), &self.ssh).await {
                        Ok(s) => {
                            let r = self.pull_node(&c, n, &s).await.map_err(|e| format!("{e:#}"));
                            s.close().await;
                            r
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    agents.push(r);
                }
            }
            let cluster = self.store.cluster_by_id(&c.id).await?.unwrap_or(c);
            if cluster.status == store::status::STOPPED && cluster.down_on_idle && cluster.autostopped_at.is_some() {
                self.down(&cluster.name, false).await?;
                continue;
            }
            let nodes = self.store.nodes(&cluster.id).await?;
            out.push(ClusterView { cluster, nodes, agents, source });
        }
        Ok(out)
    }

    /// `skycat queue`: the cluster's jobs, pulled from every node over SSH.
    pub async fn queue(&self, name: &str) -> Result<Vec<ClusterJob>> {
        let (c, nodes) = self.live(name).await?;
        let sessions = self.connect_nodes(&nodes).await?;
        let mut by_id: BTreeMap<u64, Vec<(u32, JobStatus)>> = BTreeMap::new();
        for (n, s) in &sessions {
            let jobs: Vec<JobStatus> = self.agent_json(s, n, "queue").await?;
            self.store.upsert_jobs(&c.id, n.rank, &jobs).await?;
            for j in jobs {
                by_id.entry(j.id).or_default().push((n.rank, j));
            }
        }
        for (_, s) in sessions {
            s.close().await;
        }
        Ok(by_id
            .into_iter()
            .map(|(id, per_node)| ClusterJob {
                id,
                name: per_node.first().and_then(|(_, j)| j.name.clone()),
                state: aggregate(per_node.iter().map(|(_, j)| j.state)),
                per_node,
            })
            .collect())
    }

    /// `skycat logs`: writes the job's log (every node's, prefixed by rank when several) to
    /// `out`; `job` None = the latest job; `follow` streams until the job ends.
    pub async fn logs(
        &self,
        name: &str,
        job: Option<u64>,
        follow: bool,
        out: OutputSink,
    ) -> Result<u64> {
        let (_, nodes) = self.live(name).await?;
        let sessions = self.connect_nodes(&nodes).await?;
        let job = match job {
            Some(j) => j,
            None => {
                let (n, s) = sessions.first().ok_or_else(|| anyhow!("cluster {name} has no nodes"))?;
                let jobs: Vec<JobStatus> = self.agent_json(s, n, "queue").await?;
                jobs.iter().map(|j| j.id).max().ok_or_else(|| anyhow!("cluster {name} has no jobs yet"))?
            }
        };
        let multi = sessions.len() > 1;
        let mut set = tokio::task::JoinSet::new();
        for (n, s) in sessions {
            let out = out.clone();
            let cmd = format!(
                "{} logs {job} --state-dir {}{}",
                q(&n.agent_bin),
                q(&n.state_dir),
                if follow { " --follow" } else { "" }
            );
            set.spawn(async move {
                let prefix = if multi { format!("(rank {}) ", n.rank) } else { String::new() };
                let mut pending: Vec<u8> = Vec::new();
                let mut err = Vec::new();
                let code = s
                    .exec_stream::<&[u8]>(
                        &cmd,
                        None,
                        |chunk| {
                            pending.extend_from_slice(chunk);
                            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                let mut buf = prefix.as_bytes().to_vec();
                                buf.extend_from_slice(&line);
                                out(&buf);
                            }
                        },
                        |chunk| err.extend_from_slice(chunk),
                    )
                    .await?;
                if !pending.is_empty() {
                    let mut buf = prefix.as_bytes().to_vec();
                    buf.extend_from_slice(&pending);
                    buf.push(b'\n');
                    out(&buf);
                }
                s.close().await;
                if code != Some(0) {
                    bail!("rank {}: {}", n.rank, String::from_utf8_lossy(&err).trim());
                }
                Ok(())
            });
        }
        while let Some(j) = set.join_next().await {
            j.map_err(|e| anyhow!("logs task: {e}"))??;
        }
        Ok(job)
    }

    /// `skycat cancel`: cancels the job on every node.
    pub async fn cancel(&self, name: &str, job: u64) -> Result<()> {
        let (_, nodes) = self.live(name).await?;
        for (n, s) in self.connect_nodes(&nodes).await? {
            let _: serde_json::Value = self.agent_json(&s, &n, &format!("cancel {job}")).await?;
            s.close().await;
        }
        Ok(())
    }

    async fn cancel_all(&self, n: &NodeRow, s: &SshSession) -> Result<()> {
        let jobs: Vec<JobStatus> = match self.agent_json(s, n, "queue").await {
            Ok(j) => j,
            Err(_) => return Ok(()), // no daemon: nothing to cancel through it
        };
        for j in jobs.iter().filter(|j| !j.state.is_terminal()) {
            let _: serde_json::Value = self.agent_json(s, n, &format!("cancel {}", j.id)).await?;
        }
        Ok(())
    }

    /// `skycat stop`: cancels running/pending jobs and stops the agents (and so their meters);
    /// the hosts stay reserved for `skycat start`.
    pub async fn stop(&self, name: &str) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        for (n, s) in self.connect_nodes(&nodes).await? {
            self.say(&format!("Stopping {} ...", n.host_key()));
            self.cancel_all(&n, &s).await?;
            let _ = s.exec(&format!("{} stop --state-dir {}", q(&n.agent_bin), q(&n.state_dir)), None).await?;
            let _ = self.pull_node(&c, &n, &s).await;
            s.close().await;
        }
        self.store.set_cluster_status(&c.id, store::status::STOPPED).await?;
        Ok(())
    }

    /// `skycat start`: restarts the agents of a stopped cluster (or of nodes whose agent died).
    pub async fn start(&self, name: &str) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        for (n, s) in self.connect_nodes(&nodes).await? {
            self.say(&format!("Starting the agent on {} ...", n.host_key()));
            let out = s
                .run_ok(&format!("{} daemon --state-dir {} --detach", q(&n.agent_bin), q(&n.state_dir)), None)
                .await?;
            tracing::debug!("daemon: {}", out.trim());
            s.close().await;
        }
        self.store.set_cluster_status(&c.id, store::status::UP).await?;
        Ok(())
    }

    /// `skycat down`: cancels jobs, pulls the final cost, stops the agent, removes its files,
    /// frees the hosts and removes the cluster (kept in the cost report). With `purge`, nodes
    /// that cannot be reached are given up instead of failing the teardown.
    pub async fn down(&self, name: &str, purge: bool) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        let mut failures = Vec::new();
        for n in &nodes {
            self.say(&format!("Tearing down {} ...", n.host_key()));
            let r: Result<()> = async {
                let s = SshSession::connect(&n.target(), &self.ssh).await?;
                self.cancel_all(n, &s).await?;
                let _ = self.pull_node(&c, n, &s).await;
                let script = format!(
                    "A={a}; D={d}; \"$A\" stop --state-dir \"$D\" >/dev/null 2>&1; \
                     if [ -f \"$D/agent.pid\" ]; then kill -9 \"$(cat \"$D/agent.pid\")\" 2>/dev/null; fi; \
                     rm -rf \"$D\"; R=$(dirname \"$(dirname \"$D\")\"); \
                     if [ -z \"$(ls -A \"$R/clusters\" 2>/dev/null)\" ]; then rm -rf \"$R\"; fi",
                    a = q(&n.agent_bin),
                    d = q(&n.state_dir)
                );
                s.run_ok(&script, None).await?;
                s.close().await;
                Ok(())
            }
            .await;
            if let Err(e) = r {
                failures.push(format!("{}: {e:#}", n.host_key()));
            }
        }
        if !failures.is_empty() && !purge {
            bail!("could not tear down {} (cluster kept; retry, or `skycat down --purge {name}`): {}", name, failures.join("; "));
        }
        self.store.release_cluster_hosts(&c.id).await?;
        self.store.set_cluster_status(&c.id, store::status::TERMINATED).await?;
        Ok(())
    }

    /// `skycat cost-report --refresh`: pulls every live cluster's ledger over SSH first.
    pub async fn refresh_costs(&self) -> Result<()> {
        for c in self.store.clusters().await? {
            for n in self.store.nodes(&c.id).await? {
                if let Ok(s) = SshSession::connect(&n.target(), &self.ssh).await {
                    let _ = self.pull_node(&c, &n, &s).await;
                    s.close().await;
                }
            }
        }
        Ok(())
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

/// One exec: the node's $HOME, the controller address it sees, the installed agent's hash, and
/// the agent's status for this cluster (if installed).
async fn probe(s: &SshSession, cluster: &str) -> Result<Probe> {
    let script = format!(
        "echo \"HOME=$HOME\"; echo \"CONN=$SSH_CONNECTION\"; \
         echo \"SHA=$(cat \"$HOME/{AGENT_ROOT}/bin/skycat-agent.sha256\" 2>/dev/null)\"; \
         if [ -x \"$HOME/{AGENT_ROOT}/bin/skycat-agent\" ] && [ -d \"$HOME/{AGENT_ROOT}/clusters/{c}\" ]; then \
           echo STATUS; \"$HOME/{AGENT_ROOT}/bin/skycat-agent\" status --state-dir \"$HOME/{AGENT_ROOT}/clusters/{c}\" --json 2>/dev/null; fi",
        c = cluster
    );
    let out = s.run_ok(&script, None).await?;
    let mut home = None;
    let mut conn = None;
    let mut sha = None;
    let mut status = None;
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix("HOME=") {
            home = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("CONN=") {
            conn = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = l.strip_prefix("SHA=") {
            sha = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        } else if l == "STATUS" {
            let rest: Vec<&str> = lines.by_ref().collect();
            status = serde_json::from_str::<AgentStatus>(rest.join("\n").trim()).ok();
            break;
        }
    }
    let home = home.filter(|h| h.starts_with('/')).ok_or_else(|| {
        anyhow!("{}: cannot determine $HOME (got {out:?})", s.target().display())
    })?;
    Ok(Probe { home, controller_ip: conn, bin_sha: sha, status })
}

/// Installs/updates the agent binary, writes the config (new clusters), starts the daemon and
/// checks it answers. Returns true when a healthy agent of the same version was reused as is.
async fn ensure_agent(
    s: &SshSession,
    n: &NodeRow,
    agent: &LocalAgent,
    probe: &Probe,
    config: Option<&AgentConfig>,
    progress: &Progress,
) -> Result<bool> {
    let shown = s.target().display();
    let same_binary = probe.bin_sha.as_deref() == Some(agent.sha256.as_str());
    let running = probe.status.as_ref().is_some_and(|st| st.daemon_running);
    if same_binary
        && running
        && config.is_none()
        && probe.status.as_ref().is_some_and(|st| st.agent_version == agent.version)
    {
        return Ok(true);
    }
    if !same_binary {
        if running {
            progress(&format!("  {shown}: replacing agent {} ...", probe.status.as_ref().map(|s| s.agent_version.as_str()).unwrap_or("?")));
            s.exec(&format!("{} stop --state-dir {}", q(&n.agent_bin), q(&n.state_dir)), None).await?;
        }
        progress(&format!("  {shown}: uploading agent {} ...", agent.version));
        let file = tokio::fs::File::open(&agent.path)
            .await
            .with_context(|| format!("opening {}", agent.path.display()))?;
        let bin = q(&n.agent_bin);
        let cmd = format!(
            "set -e; mkdir -p \"$(dirname {bin})\"; cat > {bin}.tmp.$$; chmod 755 {bin}.tmp.$$; mv -f {bin}.tmp.$$ {bin}; \
             printf %s {sha} > {bin}.sha256",
            sha = agent.sha256
        );
        let out = s.exec_reader(&cmd, Some(file)).await?;
        if !out.ok() {
            bail!("{shown}: uploading the agent failed: {}", out.stderr_str().trim());
        }
    }
    if let Some(cfg) = config {
        let body = serde_json::to_vec_pretty(cfg)?;
        let d = q(&n.state_dir);
        s.run_ok(
            &format!("umask 077; mkdir -p {d} && chmod 700 {d} && cat > {d}/config.json.tmp && mv -f {d}/config.json.tmp {d}/config.json"),
            Some(&body),
        )
        .await?;
        if running && same_binary {
            // A new launch on a host whose old agent still runs this cluster's dir: restart it.
            s.exec(&format!("{} stop --state-dir {d}", q(&n.agent_bin)), None).await?;
        }
    }
    let out = s
        .run_ok(
            &format!(
                "{b} version --json && {b} daemon --state-dir {d} --detach",
                b = q(&n.agent_bin),
                d = q(&n.state_dir)
            ),
            None,
        )
        .await
        .with_context(|| format!("{shown}: starting the agent"))?;
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let v: VersionInfo = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow!("{shown}: agent did not answer `version` ({out:?})"))?;
    if v.agent_version != agent.version {
        bail!("{shown}: agent answers version {} after upload of {}", v.agent_version, agent.version);
    }
    Ok(false)
}

/// Streams `tar` of the local folder into `<state dir>/workdir` on the node.
async fn sync_workdir(s: &SshSession, local: &Path, state_dir: &str) -> Result<()> {
    if !local.is_dir() {
        bail!("workdir {} is not a folder", local.display());
    }
    let mut child = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(local)
        .args(["--exclude=.git", "-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running tar for the workdir")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("tar: no stdout"))?;
    let d = q(state_dir);
    let out = s
        .exec_reader(&format!("mkdir -p {d}/workdir && tar -xf - -C {d}/workdir"), Some(stdout))
        .await?;
    let status = child.wait().await?;
    if !status.success() {
        bail!("tar of {} failed", local.display());
    }
    if !out.ok() {
        bail!("{}: unpacking the workdir failed: {}", s.target().display(), out.stderr_str().trim());
    }
    Ok(())
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
        NodeRow {
            cluster_id: String::new(),
            rank: 0,
            node_id: String::new(),
            pool: h.pool.clone(),
            ip: h.ip.clone(),
            port: h.port,
            user: h.user.clone(),
            identity_file: h.identity_file.display().to_string(),
            state_dir: String::new(),
            agent_bin: String::new(),
            last_heartbeat_at: None,
            last_seq: 0,
            accrued_usd: 0.0,
            metered_seconds: 0.0,
            idle_seconds: None,
        }
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
