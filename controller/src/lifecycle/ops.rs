//! The verbs on a running cluster: exec, status (reconciled with the provider), queue, logs,
//! cancel, stop, start, down, and pulling agents' reports through the nodes' transport.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use skycat_protocol::{AgentStatus, JobStatus};

use super::*;
use crate::agent_client::{sync_workdir, AgentClient};
use crate::ssh::SshTarget;
use crate::transport::NodeSession;
use crate::store::{self, ClusterRow, NodeRow};

use super::launch::ssh_ready_timeout;

impl Controller {
    /// `Host CLUSTER` (and `CLUSTER-workerN`) in `$SKYCAT_HOME/ssh/config`, so `ssh CLUSTER`
    /// works; a failure is reported, never fatal (the cluster itself is fine).
    pub(super) fn write_ssh_config(&self, cluster: &str, nodes: &[NodeRow]) {
        let targets: Vec<SshTarget> = nodes.iter().map(|n| n.target()).collect();
        let entries = crate::ssh_config::entries_for(cluster, &targets);
        if let Err(e) = crate::ssh_config::write_cluster(&self.home, cluster, &entries) {
            self.say(&format!("  could not write the SSH config entry of {cluster}: {e}"));
        }
    }

    pub(super) async fn live(&self, name: &str) -> Result<(ClusterRow, Vec<NodeRow>)> {
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
        let sessions = self.connect_nodes(&c, &nodes).await?;
        for (n, s) in &sessions {
            // Brings back an agent that died (idempotent when it runs).
            AgentClient::new(s.as_ref(), n).start_daemon().await?;
        }
        if let Some(w) = self.workdir_archive(task).await? {
            for (n, s) in &sessions {
                sync_workdir(s.as_ref(), &w, n).await?;
            }
        }
        // Every node gets the job (so job ids stay equal across nodes); SKYCAT_NUM_NODES is the
        // cluster's.
        let (ns, ss): (Vec<NodeRow>, Vec<Arc<dyn NodeSession>>) = sessions.into_iter().unzip();
        self.submit_on(&ss, &ns, task).await
    }

    /// Whether an autostopped cluster is torn down: `--down`, or a backend whose nodes cannot
    /// stop and would hold resources idle (Kubernetes pods).
    fn down_on_idle(&self, c: &ClusterRow) -> bool {
        c.down_on_idle || self.backends.for_cluster(c).is_ok_and(|b| b.autostop_tears_down())
    }

    /// Pulls one node's status, jobs and ledger through its transport into the state DB.
    pub(super) async fn pull_node(&self, c: &ClusterRow, n: &NodeRow, s: &dyn NodeSession) -> Result<AgentStatus> {
        let agent = AgentClient::new(s, n);
        let st = agent.status().await?;
        self.store
            .record_node_totals(&c.id, n.rank, st.cost.accrued_usd, st.cost.metered_seconds, st.idle_seconds)
            .await?;
        self.store.upsert_jobs(&c.id, n.rank, &st.jobs).await?;
        let records = agent.ledger().await?;
        self.store.record_costs(c, &records, "ssh-pull").await?;
        if c.status == store::status::UP {
            if let Some(at) = st.autostop.as_ref().and_then(|a| a.fired_at) {
                if self.store.mark_autostopped(&c.id, &at.to_rfc3339()).await? {
                    if self.down_on_idle(c) {
                        self.say(&format!("Cluster {} autostopped with --down: tearing it down.", c.name));
                    } else if c.cloud() != "ssh" && !c.spot {
                        let backend = self.backends.for_cluster(c)?;
                        if let Some(why) = backend.cannot_stop(c) {
                            // Nothing to stop at the provider: the instances keep billing.
                            self.say(&format!("Cluster {} autostopped (its agents stopped metering), but {why}", c.name));
                        } else {
                            // The agents stopped their meters; the provider's instances must stop too.
                            self.say(&format!("Cluster {} autostopped: stopping its instances.", c.name));
                            let nodes = self.store.nodes(&c.id).await?;
                            backend.stop(c, &nodes).await?;
                        }
                    }
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
            if refresh && c.cloud() != "ssh" {
                if let Some(st) = self.reconcile(&c, &nodes).await {
                    if st == store::status::TERMINATED {
                        continue;
                    }
                }
            }
            let c = self.store.cluster_by_id(&c.id).await?.unwrap_or(c);
            let mut agents = Vec::new();
            let mut source = if fresh_hb { "heartbeat" } else { "cached" };
            if refresh && !fresh_hb && c.status == store::status::UP {
                source = "ssh";
                for n in &nodes {
                    let r = match self.connect(&c, n).await {
                        Ok(s) => {
                            let r = self.pull_node(&c, n, s.as_ref()).await.map_err(|e| format!("{e:#}"));
                            s.close().await;
                            r
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    agents.push(r);
                }
            }
            let cluster = self.store.cluster_by_id(&c.id).await?.unwrap_or(c);
            if cluster.status == store::status::STOPPED && self.down_on_idle(&cluster) && cluster.autostopped_at.is_some() {
                self.down(&cluster.name, false).await?;
                continue;
            }
            let nodes = self.store.nodes(&cluster.id).await?;
            out.push(ClusterView { cluster, nodes, agents, source });
        }
        Ok(out)
    }

    /// Brings a cloud cluster's status in line with its provider (`DescribeInstances`): every
    /// node terminated → TERMINATED (hosts freed), any stopped → STOPPED. Returns the status set,
    /// if it changed. Errors of the provider are logged and change nothing.
    pub(super) async fn reconcile(&self, c: &ClusterRow, nodes: &[NodeRow]) -> Option<&'static str> {
        let backend = self.backends.for_cluster(c).ok()?;
        let mut states = Vec::new();
        for n in nodes {
            match backend.describe(c, n).await {
                Ok(s) => states.push(s),
                Err(e) => {
                    tracing::warn!(cluster = %c.name, "describe: {e}");
                    return None;
                }
            }
        }
        use crate::backend::NodeState;
        let all_gone = !states.is_empty() && states.iter().all(|s| matches!(s, NodeState::Terminated { .. } | NodeState::Preempted { .. }));
        let any_stopped = states.iter().any(|s| matches!(s, NodeState::Stopped { .. }));
        let new = if all_gone {
            store::status::TERMINATED
        } else if any_stopped && c.status == store::status::UP {
            store::status::STOPPED
        } else {
            return None;
        };
        self.say(&format!(
            "Cluster {}: the provider reports {}; marking it {new}.",
            c.name,
            states.iter().map(|s| s.describe()).collect::<Vec<_>>().join(", ")
        ));
        if new == store::status::TERMINATED {
            let _ = self.store.release_cluster_hosts(&c.id).await;
        }
        self.store.set_cluster_status(&c.id, new).await.ok()?;
        Some(new)
    }

    /// `skycat queue`: the cluster's jobs, pulled from every node over SSH.
    pub async fn queue(&self, name: &str) -> Result<Vec<ClusterJob>> {
        let (c, nodes) = self.live(name).await?;
        let sessions = self.connect_nodes(&c, &nodes).await?;
        let mut by_id: BTreeMap<u64, Vec<(u32, JobStatus)>> = BTreeMap::new();
        for (n, s) in &sessions {
            let jobs = AgentClient::new(s.as_ref(), n).queue().await?;
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
        let (c, nodes) = self.live(name).await?;
        let sessions = self.connect_nodes(&c, &nodes).await?;
        let job = match job {
            Some(j) => j,
            None => {
                let (n, s) = sessions.first().ok_or_else(|| anyhow!("cluster {name} has no nodes"))?;
                let jobs = AgentClient::new(s.as_ref(), n).queue().await?;
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
                    .exec_stream(
                        &cmd,
                        &mut |chunk: &[u8]| {
                            pending.extend_from_slice(chunk);
                            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                let mut buf = prefix.as_bytes().to_vec();
                                buf.extend_from_slice(&line);
                                out(&buf);
                            }
                        },
                        &mut |chunk: &[u8]| err.extend_from_slice(chunk),
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
        let (c, nodes) = self.live(name).await?;
        for (n, s) in self.connect_nodes(&c, &nodes).await? {
            AgentClient::new(s.as_ref(), &n).cancel(job).await?;
            s.close().await;
        }
        Ok(())
    }

    pub(super) async fn cancel_all(&self, n: &NodeRow, s: &dyn NodeSession) -> Result<()> {
        let agent = AgentClient::new(s, n);
        let jobs = match agent.queue().await {
            Ok(j) => j,
            Err(_) => return Ok(()), // no daemon: nothing to cancel through it
        };
        for j in jobs.iter().filter(|j| !j.state.is_terminal()) {
            agent.cancel(j.id).await?;
        }
        Ok(())
    }

    /// `skycat stop`: cancels running/pending jobs and stops the agents (and so their meters),
    /// then has the backend stop the nodes (EC2 StopInstances; pool hosts stay reserved).
    pub async fn stop(&self, name: &str) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        let backend = self.backends.for_cluster(&c)?;
        if let Some(why) = backend.cannot_stop(&c) {
            bail!("{why}");
        }
        if c.spot && c.cloud() != "ssh" {
            bail!("cluster {name} runs on spot instances, which cannot be stopped; `skycat down {name}` instead");
        }
        for (n, s) in self.connect_nodes(&c, &nodes).await? {
            self.say(&format!("Stopping {} ...", n.host_key()));
            self.cancel_all(&n, s.as_ref()).await?;
            AgentClient::new(s.as_ref(), &n).stop().await?;
            let _ = self.pull_node(&c, &n, s.as_ref()).await;
            s.close().await;
        }
        backend.stop(&c, &nodes).await?;
        self.store.set_cluster_status(&c.id, store::status::STOPPED).await?;
        Ok(())
    }

    /// `skycat start`: starts a stopped cluster's nodes (new addresses are recorded) and their
    /// agents (also brings back agents that died).
    pub async fn start(&self, name: &str) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        let backend = self.backends.for_cluster(&c)?;
        let started = backend.start(&c, &nodes).await?;
        for (n, p) in nodes.iter().zip(&started) {
            if n.ip != p.target.host {
                self.store.set_node_address(&c.id, n.rank, &p.target.host).await?;
            }
            // Port-mapping clouds (RunPod) may hand out a new public port for sshd.
            if n.port != p.target.port {
                self.store.set_node_port(&c.id, n.rank, p.target.port).await?;
            }
        }
        let nodes = self.store.nodes(&c.id).await?;
        let wait = if c.cloud() == "ssh" { Duration::ZERO } else { ssh_ready_timeout() };
        let transport = self.transport_for(&c);
        for n in &nodes {
            let s = transport.connect_when_ready(&n.target(), wait).await?;
            self.say(&format!("Starting the agent on {} ...", n.host_key()));
            AgentClient::new(s.as_ref(), n).start_daemon().await?;
            s.close().await;
        }
        self.write_ssh_config(&c.name, &nodes);
        self.store.set_cluster_status(&c.id, store::status::UP).await?;
        Ok(())
    }

    /// `skycat down`: cancels jobs, pulls the final cost, stops the agent, removes its files, has
    /// the backend terminate the nodes (cloud instances, security groups) and frees the hosts; the
    /// cluster is kept in the cost report. With `purge`, nodes that cannot be reached are given
    /// up instead of failing the teardown; cloud nodes are always terminated, reachable or not.
    pub async fn down(&self, name: &str, purge: bool) -> Result<()> {
        let (c, nodes) = self.live(name).await?;
        let backend = self.backends.for_cluster(&c)?;
        let cloud = c.cloud() != "ssh";
        let mut failures = Vec::new();
        for n in &nodes {
            self.say(&format!("Tearing down {} ...", n.host_key()));
            let r: Result<()> = async {
                let s = self.connect(&c, n).await?;
                self.cancel_all(n, s.as_ref()).await?;
                let _ = self.pull_node(&c, n, s.as_ref()).await;
                let script = format!(
                    "A={a}; D={d}; \"$A\" objects unmount --all --state-dir \"$D\" >/dev/null 2>&1; \
                     \"$A\" stop --state-dir \"$D\" >/dev/null 2>&1; \
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
        if !failures.is_empty() && !purge && !cloud {
            bail!("could not tear down {} (cluster kept; retry, or `skycat down --purge {name}`): {}", name, failures.join("; "));
        }
        if cloud && !failures.is_empty() {
            self.say(&format!("  (unreachable nodes are terminated anyway: {})", failures.join("; ")));
        }
        backend.terminate(&c, &nodes).await?;
        if cloud {
            // The addresses go back to the provider; their next owner has other host keys.
            let transport = self.transport_for(&c);
            for n in &nodes {
                if let Err(e) = transport.forget(&n.target()) {
                    self.say(&format!("  could not forget the host key of {}: {e}", n.host_key()));
                }
            }
        }
        if let Err(e) = crate::ssh_config::remove_cluster(&self.home, &c.name) {
            self.say(&format!("  could not remove {name} from the SSH config: {e}"));
        }
        self.store.release_cluster_hosts(&c.id).await?;
        self.store.set_cluster_status(&c.id, store::status::TERMINATED).await?;
        self.delete_storage_of(name).await;
        Ok(())
    }

    /// Deletes the storage objects (`persistent: false`) the cluster made. A failure is reported
    /// and the record kept, for `skycat storage delete NAME`; the cluster is down either way.
    async fn delete_storage_of(&self, cluster: &str) {
        let rows = match self.store.storage_rows().await {
            Ok(rows) => rows,
            Err(e) => return self.say(&format!("  could not read the storage objects: {e:#}")),
        };
        for r in rows.iter().filter(|r| !r.persistent && r.cluster.as_deref() == Some(cluster)) {
            match crate::mounts::storage::delete(&self.store, &self.home, &r.name, |k| std::env::var(k).ok()).await {
                Ok(n) => self.say(&format!("Deleted storage {} ({}, {} object(s)).", r.name, r.url, n.unwrap_or(0))),
                Err(e) => self.say(&format!("  storage {} was not deleted ({e:#}); retry with `skycat storage delete {}`", r.name, r.name)),
            }
        }
    }

    /// `skycat cost-report --refresh`: pulls every live cluster's ledger over SSH first.
    pub async fn refresh_costs(&self) -> Result<()> {
        for c in self.store.clusters().await? {
            for n in self.store.nodes(&c.id).await? {
                if let Ok(s) = self.connect(&c, &n).await {
                    let _ = self.pull_node(&c, &n, s.as_ref()).await;
                    s.close().await;
                }
            }
        }
        Ok(())
    }
}
