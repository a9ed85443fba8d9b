//! `launch`: the failover walk through the backends, connecting to the nodes, bootstrapping the
//! agents, setup and the first job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use skycat_protocol::{AgentConfig, JobSpec, SetupSpec, StopAction, PROTOCOL_VERSION};
use skycat_optimizer::Placement;

use super::*;
use crate::agent_client::{ensure_agent, probe, sync_workdir, AgentClient, LocalAgent, WorkdirArchive, AGENT_ROOT};
use crate::mounts::PreparedMounts;
use crate::backend::{ErrorClass, ProvisionError, ProvisionRequest, ProvisionedNode};
use crate::placement::{self, infra_of};
use crate::ssh::shell_quote;
use crate::transport::NodeSession;
use crate::store::{self, ClusterRow, NodeRow};

impl Controller {
    pub async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome> {
        check_cluster_name(&req.cluster)?;
        let t0 = Instant::now();
        let agent = Arc::new(self.local_agent().await?);
        let existing = self.store.cluster(&req.cluster).await?;
        let (cluster, sessions, provisioned, skipped, token) = match existing {
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
                let sessions = self.connect_nodes(&c, &nodes).await?;
                (c, sessions.into_iter().map(|(n, s)| (Some(n), s)).collect::<Vec<_>>(), Vec::new(), Vec::new(), None)
            }
            None => {
                let (c, picked, provisioned, skipped, token) = self.provision(req, t0).await?;
                (c, picked.into_iter().map(|s| (None, s)).collect(), provisioned, skipped, Some(token))
            }
        };
        let fresh = token.is_some();
        let result = self.launch_on(req, &cluster, sessions, &provisioned, token, agent, t0).await;
        match result {
            Ok(mut out) => {
                out.skipped = skipped;
                Ok(out)
            }
            Err(e) => {
                if fresh {
                    // Nothing useful is left behind: give the nodes back (cloud instances would
                    // bill) and free the hosts so the next launch can use them.
                    if let Ok(b) = self.backends.for_cluster(&cluster) {
                        let rows: Vec<NodeRow> = provisioned.iter().map(|n| provisioned_row(&cluster, n)).collect();
                        if let Err(t) = b.terminate(&cluster, &rows).await {
                            self.say(&format!("  terminating {} after the failed launch: {t}", cluster.name));
                        }
                    }
                    let _ = self.store.release_cluster_hosts(&cluster.id).await;
                    let _ = self.store.set_cluster_status(&cluster.id, store::status::TERMINATED).await;
                }
                Err(e)
            }
        }
    }

    /// Inserts the cluster, then walks the plan's failover order through the backends until one
    /// provisions the nodes; connects to them. Every try is reported on one line.
    pub(super) async fn provision(
        &self,
        req: &LaunchRequest,
        t0: Instant,
    ) -> Result<(ClusterRow, Vec<Arc<dyn NodeSession>>, Vec<ProvisionedNode>, Vec<(String, String)>, String)> {
        if req.placements.is_empty() {
            bail!("no placement to launch {} on (the plan is empty)", req.cluster);
        }
        let need = req.task.num_nodes.max(1);
        let id = store::random_hex(8)?;
        let token = store::random_hex(32)?;
        let now = now_rfc();
        let first = &req.placements[0];
        let row = ClusterRow {
            id: id.clone(),
            name: req.cluster.clone(),
            status: store::status::INIT.to_string(),
            infra: infra_of(first),
            pool: first.region.clone(),
            num_nodes: need,
            price_per_hour: first.hourly_price,
            spot: first.use_spot,
            idle_minutes: req.idle_seconds.map(|s| s / 60.0).or(req.idle_minutes),
            down_on_idle: req.down_on_idle,
            server_url: req.server_url.clone(),
            agent_version: None,
            task_json: Some(req.task.redacted_json()),
            autostopped_at: None,
            created_at: now.clone(),
            updated_at: now,
            terminated_at: None,
            instance_type: Some(first.instance_type.clone()),
            ports: Some(req.resources.ports.iter().map(|r| crate::backend::fmt_port_range(*r)).collect::<Vec<_>>().join(","))
                .filter(|s| !s.is_empty()),
        };
        // The token travels only in the agents' config (the DB keeps its hash).
        self.store.insert_cluster(&row, &store::hash_token(&token)).await?;
        let progress = self.progress.clone();
        let say = move |l: &str| progress(l);
        let id_ref = id.as_str();
        let walked = placement::walk(
            &req.placements,
            &req.blocked,
            |p: Placement| async move {
                let id = id_ref;
                let infra = infra_of(&p);
                self.store
                    .set_cluster_placement(id, &infra, &p.region, p.hourly_price, p.use_spot, Some(&p.instance_type))
                    .await
                    .map_err(|e| ProvisionError::new(ErrorClass::Transient, e.to_string()))?;
                let backend = self.backends.get(&p.cloud).ok_or_else(|| {
                    ProvisionError::new(ErrorClass::Auth, format!("{} has no launch backend", p.cloud))
                })?;
                let preq = ProvisionRequest {
                    cluster: req.cluster.clone(),
                    cluster_id: id.to_string(),
                    placement: p.clone(),
                    num_nodes: need,
                    ports: req.resources.ports.clone(),
                    disk_size_gb: req.resources.disk_size_gb,
                    image_id: req.resources.image_id.clone(),
                    avoid_nodes: req.avoid_nodes.clone(),
                };
                backend.provision(&preq).await
            },
            &say,
        )
        .await;
        let (chosen, provisioned, failed) = match walked {
            Ok(v) => v,
            Err(e) => {
                self.store.release_cluster_hosts(&id).await?;
                self.store.set_cluster_status(&id, store::status::TERMINATED).await?;
                return Err(e.into());
            }
        };
        let nodes = provisioned.nodes;
        for (h, e) in &provisioned.skipped {
            self.say(&format!("  {h}: {e}; trying the next host"));
        }
        let mut skipped: Vec<(String, String)> = failed.iter().map(|f| (infra_of(&f.placement), f.error.to_string())).collect();
        skipped.extend(provisioned.skipped);
        let row = self.store.cluster_by_id(&id).await?.ok_or_else(|| anyhow!("cluster {} vanished", req.cluster))?;
        // Seconds since the launch began: the provider's calls and its boot, the failover walk
        // included (scripts/bench-launch.sh takes it out of the launch time with the SSH wait).
        self.say(&format!(
            "Provisioned {} node(s) on {} ({}) {:.1}s after launch.",
            nodes.len(),
            infra_of(&chosen),
            chosen.instance_type,
            t0.elapsed().as_secs_f64()
        ));
        // Cloud nodes may still be booting sshd: wait for it (pool hosts answered already).
        let wait = if chosen.cloud == "ssh" { Duration::ZERO } else { ssh_ready_timeout() };
        let transport = self.transport_for(&row);
        let waited = Instant::now();
        let mut sessions = Vec::new();
        for n in &nodes {
            if chosen.cloud != "ssh" {
                // A new instance: an old pin for its (reused) address belongs to another machine.
                transport.forget(&n.target)?;
            }
            match transport.connect_when_ready(&n.target, wait).await {
                Ok(s) => sessions.push(s),
                Err(e) => {
                    for s in sessions {
                        s.close().await;
                    }
                    self.say(&format!("  {}: {e}; terminating what was provisioned", n.target.display()));
                    if let Ok(b) = self.backends.for_cluster(&row) {
                        let stub: Vec<NodeRow> = nodes.iter().map(|n| provisioned_row(&row, n)).collect();
                        if let Err(t) = b.terminate(&row, &stub).await {
                            self.say(&format!("  terminating failed: {t}"));
                        }
                    }
                    self.store.release_cluster_hosts(&id).await?;
                    self.store.set_cluster_status(&id, store::status::TERMINATED).await?;
                    bail!("{} was provisioned but does not answer SSH: {e}", n.target.display());
                }
            }
        }
        if !wait.is_zero() {
            // The boot wait, reported apart: launch time without it is skycat's own.
            self.say(&format!("Node(s) answer SSH after {:.1}s.", waited.elapsed().as_secs_f64()));
        }
        Ok((row, sessions, nodes, skipped, token))
    }

    pub(super) async fn connect_nodes(&self, c: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<(NodeRow, Arc<dyn NodeSession>)>> {
        let transport = self.transport_for(c);
        let mut set = tokio::task::JoinSet::new();
        for n in nodes.iter().cloned() {
            let transport = transport.clone();
            set.spawn(async move {
                let r = transport.connect(&n.target()).await;
                (n, r)
            });
        }
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            let (n, r) = j.map_err(|e| anyhow!("connect task: {e}"))?;
            out.push((n.clone(), r.with_context(|| format!("node {} of cluster", n.rank))?));
        }
        out.sort_by_key(|(n, _)| n.rank);
        Ok(out)
    }

    pub(super) async fn launch_on(
        &self,
        req: &LaunchRequest,
        cluster: &ClusterRow,
        sessions: Vec<(Option<NodeRow>, Arc<dyn NodeSession>)>,
        provisioned: &[ProvisionedNode],
        token: Option<String>,
        agent: Arc<LocalAgent>,
        t0: Instant,
    ) -> Result<LaunchOutcome> {
        // Probe every node (home, controller address, installed agent).
        let mut probes = Vec::new();
        for (_, s) in &sessions {
            probes.push(probe(s.as_ref(), &cluster.name).await?);
        }
        let node_ips: Vec<String> = sessions.iter().map(|(_, s)| s.host().to_string()).collect();
        let fresh = token.is_some();
        let pools = self.pools().ok();
        let gpus_per_node = pools
            .as_ref()
            .and_then(|p| p.pools.get(&cluster.pool))
            .and_then(|p| p.accelerators.as_ref().map(|a| a.1))
            .unwrap_or(req.task.gpus_per_node);
        // Bootstrap the agents in parallel.
        self.say(&format!("Starting the agent on {} node(s) ...", sessions.len()));
        let workdir = self.workdir_archive(&req.task).await?.map(Arc::new);
        let at = crate::mounts::storage::Placement { cluster: &cluster.name, cloud: cluster.cloud(), region: cluster.infra.split('/').nth(1) };
        let mounts = PreparedMounts::prepare(&req.task.file_mounts, &req.task.storage_envs, (&self.store, &self.home, &at)).await?.map(Arc::new);
        let mut set = tokio::task::JoinSet::new();
        for (rank, ((node, sess), probe)) in sessions.iter().zip(probes).enumerate() {
            let rank = rank as u32;
            let node_row = match node {
                Some(n) => n.clone(),
                None => {
                    let t = &provisioned
                        .get(rank as usize)
                        .ok_or_else(|| anyhow!("node {rank} of {} has neither a row nor a provisioned address", cluster.name))?
                        .target;
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
                        instance_id: provisioned.get(rank as usize).map(|p| p.instance_id.clone()),
                        zone: provisioned.get(rank as usize).and_then(|p| p.zone.clone()),
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
                    server_cert_sha256: self.server_cert_sha256.clone(),
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
            let workdir = workdir.clone();
            let mounts = mounts.clone();
            let controller_ip = probe.controller_ip.clone();
            let progress = self.progress.clone();
            set.spawn(async move {
                let reused = ensure_agent(sess.as_ref(), &node_row, &agent, &probe, config.as_ref(), &progress).await?;
                if let Some(w) = &workdir {
                    progress(&format!("  {}: syncing the workdir ...", sess.peer()));
                    sync_workdir(sess.as_ref(), w, &node_row).await?;
                }
                if let Some(m) = &mounts {
                    progress(&format!("  {}: syncing the file mounts ...", sess.peer()));
                    m.sync(sess.as_ref(), &node_row, controller_ip.as_deref()).await?;
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
        self.write_ssh_config(&cluster.name, &nodes);
        // Setup (once per launch: the agent ignores a resubmission for the same launch).
        if !req.no_setup {
            if let Some(setup) = req.task.setup.as_ref().filter(|s| !s.trim().is_empty()) {
                let spec = SetupSpec {
                    protocol_version: PROTOCOL_VERSION,
                    setup: setup.clone(),
                    envs: req.task.envs.clone(),
                    secret_envs: req.task.secret_envs.clone(),
                    workdir: None,
                };
                for ((_, sess), n) in sessions.iter().zip(&nodes) {
                    AgentClient::new(sess.as_ref(), n).setup(&spec).await.with_context(|| format!("setup on rank {}", n.rank))?;
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
            s.close().await;
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

    /// The task's workdir as an archive: the upload the server stored, or the local folder
    /// packed now.
    pub(super) async fn workdir_archive(&self, task: &TaskRun) -> Result<Option<WorkdirArchive>> {
        if let Some(p) = &task.workdir_archive {
            return Ok(Some(WorkdirArchive::Stored(p.clone())));
        }
        match &task.workdir {
            Some(w) => Ok(Some(WorkdirArchive::pack(w).await?)),
            None => Ok(None),
        }
    }

    /// Submits the task's run on every node (same order everywhere, so ids agree).
    pub(super) async fn submit_on(&self, sessions: &[Arc<dyn NodeSession>], nodes: &[NodeRow], task: &TaskRun) -> Result<u64> {
        let spec = JobSpec {
            protocol_version: PROTOCOL_VERSION,
            name: task.name.clone(),
            run: task.run.clone().unwrap_or_default(),
            envs: task.envs.clone(),
            secret_envs: task.secret_envs.clone(),
            gpus: task.gpus_per_node,
            workdir: None,
            task_id: None,
            recovery_count: 0,
            submission_id: Some(store::random_hex(8)?),
        };
        let mut ids = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        for (s, n) in sessions.iter().zip(nodes) {
            let s = s.clone();
            let n = n.clone();
            let spec = spec.clone();
            set.spawn(async move {
                let id = AgentClient::new(s.as_ref(), &n).submit(&spec).await.with_context(|| format!("submitting on rank {}", n.rank))?;
                Ok::<_, anyhow::Error>((n.rank, id))
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

}

/// How long to wait for a new cloud node's sshd (`SKYCAT_SSH_READY_TIMEOUT_SECS`, default 300).
pub(super) fn ssh_ready_timeout() -> Duration {
    std::env::var("SKYCAT_SSH_READY_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(300))
}

/// A node row for a provisioned node that has no row yet (for a teardown after a failure).
pub(super) fn provisioned_row(c: &ClusterRow, n: &ProvisionedNode) -> NodeRow {
    NodeRow {
        cluster_id: c.id.clone(),
        node_id: n.instance_id.clone(),
        instance_id: Some(n.instance_id.clone()),
        zone: n.zone.clone(),
        ..super::node_at(&c.pool, &n.target)
    }
}

