//! One attempt of a managed job: plan and launch it through the failover walk, submit the task,
//! and watch it until it ends (success, user failure, cancel, or a preemption seen in the
//! provider's node state, an interruption notice or lost heartbeats).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use skycat_optimizer::PlanOptions;
use skycat_protocol::{AgentConfig, JobSpec, JobState, PROTOCOL_VERSION};

use super::policy::{order_for_recovery, region_key, set_market, zone_key, JobBlocks};
use super::{now, parse_ts, status, Attempt, JobRequest, Managed, Outcome, Strategy};
use crate::agent_client::AgentClient;
use crate::lifecycle::{aggregate, LaunchRequest, LaunchResources};
use crate::ssh::shell_quote;
use crate::store::{self, ClusterRow, NodeRow};

impl Managed {
    /// Plans the attempt over the enabled backends' offers (blocked zones excluded, the preempted
    /// region last with EAGER_NEXT_REGION or first with FAILOVER), launches the cluster through
    /// the failover walk, submits the task. `None` when the job ended meanwhile (cancelled, no
    /// feasible placement, or none provisioned within `launch_retry_for`).
    pub(super) async fn launch_attempt(
        &self,
        id: i64,
        req: &JobRequest,
        strategy: Strategy,
        prev_region: Option<&str>,
        recovery: u32,
        task_id: &str,
    ) -> Result<Option<Attempt>> {
        let ctl = &self.inner.ctl;
        let opts = &self.inner.opts;
        let give_up = Instant::now() + opts.launch_retry_for;
        let mut spec = req.spec.clone().unwrap_or_default();
        set_market(&mut spec, req.use_spot);
        if spec.num_nodes.is_none() {
            spec.num_nodes = Some(req.task.num_nodes.max(1));
        }
        let resources = match LaunchResources::from_spec(&spec) {
            Ok(r) => r,
            Err(e) => {
                self.finish(id, status::FAILED_NO_RESOURCE, Some(&e.to_string())).await?;
                return Ok(None);
            }
        };
        let mut last_err: String;
        loop {
            if self.cancel_requested(id).await? {
                self.finish(id, status::CANCELLED, None).await?;
                return Ok(None);
            }
            let blocks = JobBlocks::from_rows(&self.blocks(id).await?);
            let plan_opts = PlanOptions { blocked: blocks.zones.clone(), ..PlanOptions::default() };
            let catalog = (self.inner.catalog)();
            ctl.refresh_live_offers().await;
            let lp = match ctl.plan_launch(&spec, &catalog, &plan_opts) {
                Ok(lp) => lp,
                Err(e) => {
                    let market = if req.use_spot { "spot" } else { "on-demand" };
                    let why = format!("no {market} placement: {e}");
                    self.finish(id, status::FAILED_NO_RESOURCE, Some(&why)).await?;
                    return Ok(None);
                }
            };
            let placements = order_for_recovery(lp.plan.failover, strategy, &blocks.regions, prev_region);
            let no: u32 = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM managed_attempts WHERE job_id = $1")
                .bind(id)
                .fetch_one(self.db())
                .await? as u32;
            let cluster = format!("mj-{id}-{no}");
            let mut task = req.task.clone();
            task.run = None; // submitted below, with the job's task id and recovery count
            let mut lr = LaunchRequest::new(&cluster, task);
            lr.placements = placements;
            lr.blocked = blocks.zones.clone();
            lr.avoid_nodes = blocks.hosts.clone();
            lr.resources = resources.clone();
            lr.server_url = opts.server_url.clone();
            lr.heartbeat_interval_secs = Some(opts.heartbeat_secs);
            let t0 = Instant::now();
            let out = match ctl.launch(&lr).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(job = id, "launch failed: {e:#}");
                    last_err = format!("{e:#}");
                    if Instant::now() > give_up {
                        let why = format!("nothing could be provisioned within {:?} (last: {last_err})", opts.launch_retry_for);
                        self.finish(id, status::FAILED_NO_RESOURCE, Some(&why)).await?;
                        return Ok(None);
                    }
                    tokio::time::sleep(opts.poll.max(Duration::from_millis(500))).await;
                    continue;
                }
            };
            let c = ctl.store.cluster_by_id(&out.cluster_id).await?.ok_or_else(|| anyhow!("cluster {cluster} vanished"))?;
            let nodes = ctl.store.nodes(&c.id).await?;
            let region_key = region_key(&c);
            let submitted = self.prepare_and_submit(&c, &nodes, req, recovery, task_id).await;
            let agent_job_id = match submitted {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(job = id, cluster = %cluster, "submit failed: {e:#}");
                    last_err = format!("{region_key}: {e:#}");
                    let _ = ctl.down(&cluster, true).await;
                    if Instant::now() > give_up {
                        let why = format!("nothing could be provisioned within {:?} (last: {last_err})", opts.launch_retry_for);
                        self.finish(id, status::FAILED_NO_RESOURCE, Some(&why)).await?;
                        return Ok(None);
                    }
                    continue;
                }
            };
            sqlx::query(
                "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
                   agent_job_id, started_at, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11, 'RUNNING')",
            )
            .bind(id)
            .bind(no as i64)
            .bind(&cluster)
            .bind(&c.id)
            .bind(&region_key)
            .bind(nodes.iter().map(|n| n.ip.clone()).collect::<Vec<_>>().join(","))
            .bind(c.spot as i64)
            .bind(c.price_per_hour)
            .bind(recovery as i64)
            .bind(agent_job_id as i64)
            .bind(now())
            .execute(self.db())
            .await?;
            tracing::info!(job = id, cluster = %cluster, infra = %c.infra, "attempt {no} running ({:.1}s to launch)", t0.elapsed().as_secs_f64());
            return Ok(Some(Attempt {
                no,
                cluster,
                cluster_id: c.id,
                pool: region_key,
                agent_job_id,
                started: Instant::now(),
                num_nodes: nodes.len() as u32,
            }));
        }
    }

    /// Waits (at most `limit`) until every node reports the attempt's job terminal.
    pub(super) async fn wait_job_end(&self, att: &Attempt, limit: Duration) {
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
    pub(super) async fn prepare_and_submit(&self, c: &ClusterRow, nodes: &[NodeRow], req: &JobRequest, recovery: u32, task_id: &str) -> Result<u64> {
        let opts = &self.inner.opts;
        let spec = JobSpec {
            protocol_version: PROTOCOL_VERSION,
            name: req.name.clone().or(req.task.name.clone()),
            run: req.task.run.clone().unwrap_or_default(),
            envs: req.task.envs.clone(),
            secret_envs: req.task.secret_envs.clone(),
            gpus: req.task.gpus_per_node,
            workdir: None,
            task_id: Some(task_id.to_string()),
            recovery_count: recovery,
            submission_id: Some(store::random_hex(8)?),
        };
        let mut ids = BTreeMap::new();
        for n in nodes {
            let s = self.inner.ctl.connect(c, n).await?;
            let b = shell_quote(&n.agent_bin);
            let d = shell_quote(&n.state_dir);
            if let Some(tpl) = &opts.metadata_url {
                let out = s.run_ok(&format!("cat {d}/config.json; printf '\\n@@CONN=%s\\n' \"${{SSH_CONNECTION:-$SKYCAT_CONTROLLER_IP}}\""), None).await?;
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
            let jid = AgentClient::new(s.as_ref(), n).submit(&spec).await;
            s.close().await;
            ids.insert(n.rank, jid?);
        }
        let first = *ids.values().next().ok_or_else(|| anyhow!("cluster has no nodes"))?;
        if ids.values().any(|j| *j != first) {
            return Err(anyhow!("nodes assigned different job ids {ids:?}"));
        }
        Ok(first)
    }

    /// Watches one attempt until it ends.
    pub(super) async fn watch(&self, id: i64, att: &Attempt) -> Result<Outcome> {
        let ctl = &self.inner.ctl;
        let opts = &self.inner.opts;
        let launched_at = chrono::Utc::now();
        let mut probed: BTreeMap<u32, Instant> = BTreeMap::new();
        let cluster = ctl.store.cluster_by_id(&att.cluster_id).await?.ok_or_else(|| anyhow!("cluster {} vanished", att.cluster))?;
        let backend = ctl.backends.for_cluster(&cluster)?;
        let cloud = cluster.cloud() != "ssh";
        let zone_of = |n: Option<&NodeRow>| n.map(|n| zone_key(&cluster, n)).unwrap_or_default();
        loop {
            tokio::time::sleep(opts.poll).await;
            if self.cancel_requested(id).await? {
                return Ok(Outcome::Cancelled);
            }
            let nodes = ctl.store.nodes(&att.cluster_id).await?;
            let node_of = |node_id: &str| nodes.iter().find(|n| n.node_id == node_id).cloned();
            // 1. An interruption notice from any node: recover now, heartbeats still flowing.
            let notice: Option<String> = sqlx::query_scalar(
                "SELECT node_id FROM heartbeats WHERE cluster_id = $1 AND reason = 'interruption' ORDER BY received_at LIMIT 1",
            )
            .bind(&att.cluster_id)
            .fetch_optional(self.db())
            .await?;
            if let Some(node_id) = notice {
                let n = node_of(&node_id);
                return Ok(Outcome::Preempted {
                    pool: att.pool.clone(),
                    host: zone_of(n.as_ref()),
                    reason: format!("interruption notice reported by {node_id}"),
                    gone: false,
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
                    pool: att.pool.clone(),
                    host: zone_of(n),
                    reason: format!("job interrupted on rank {rank} (interruption notice)"),
                    gone: false,
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
            // 3. Cloud nodes: the provider's own state (a spot interruption, a terminated or
            //    stopped instance) is a preemption, heartbeats or not.
            if cloud {
                for n in &nodes {
                    match backend.describe(&cluster, n).await {
                        Ok(st) if st.is_gone() => {
                            return Ok(Outcome::Preempted {
                                pool: att.pool.clone(),
                                host: zone_of(Some(n)),
                                reason: format!(
                                    "instance {} of rank {} is {}",
                                    n.instance_id.as_deref().unwrap_or("?"),
                                    n.rank,
                                    st.describe()
                                ),
                                gone: true,
                            });
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(job = id, "describe rank {}: {e}", n.rank),
                    }
                }
            }
            // 4. Heartbeats: a silent node is preempted if the provider says it is gone.
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
                match self.provider_view(&cluster, n).await {
                    NodeView::Gone(why) => {
                        return Ok(Outcome::Preempted {
                            pool: att.pool.clone(),
                            host: zone_of(Some(n)),
                            reason: format!("no heartbeat from rank {} for {:.1}s and {why}", n.rank, silent.as_secs_f64()),
                            gone: true,
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

    /// The provider's view of a silent node: gone when its backend says so (for pools: it does
    /// not answer SSH). A reachable node whose agent died gets the agent restarted (jobs are
    /// re-adopted): not a preemption.
    pub(super) async fn provider_view(&self, c: &ClusterRow, n: &NodeRow) -> NodeView {
        if let Ok(b) = self.inner.ctl.backends.for_cluster(c) {
            match b.describe(c, n).await {
                Ok(st) if st.is_gone() => return NodeView::Gone(format!("the provider reports it {}", st.describe())),
                Ok(_) => {}
                Err(e) => tracing::warn!(node = %n.node_id, "describe: {e}"),
            }
        }
        let s = match self.inner.ctl.connect(c, n).await {
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

pub(super) enum NodeView {
    Alive,
    AgentRestarted,
    Gone(String),
}

