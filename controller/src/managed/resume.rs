//! Resuming managed jobs after a restart of `skycat serve`: the sealed requests, the state each
//! unfinished job is rebuilt from, and the leftovers of what the old server had begun.

use super::*;

impl Managed {
    pub(super) fn seal_request(&self, id: i64, req: &JobRequest) -> Result<Vec<u8>> {
        let plain = serde_json::to_vec(req)?;
        Ok(self.inner.secrets.seal(&plain, &request_purpose(id))?)
    }

    pub(super) fn open_request(&self, id: i64, sealed: &[u8]) -> Result<JobRequest> {
        let plain = self.inner.secrets.open(sealed, &request_purpose(id))?;
        serde_json::from_slice(&plain).context("the stored request is not a job request")
    }

    /// Resumes every job that is not terminal (called once, by [`Managed::new`]).
    pub(super) async fn resume_all(&self) -> Result<()> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM managed_jobs
             WHERE status NOT IN ('SUCCEEDED','FAILED','FAILED_SETUP','FAILED_NO_RESOURCE','FAILED_CONTROLLER','CANCELLED') ORDER BY id",
        )
        .fetch_all(self.db())
        .await?;
        self.resume_ids(ids).await
    }

    /// Resumes these (claimed, unfinished) jobs: re-adopts a running attempt, continues a
    /// recovery in progress, fails what cannot be opened.
    pub(super) async fn resume_ids(&self, ids: Vec<i64>) -> Result<()> {
        for id in ids {
            match self.resume_state(id).await {
                Ok(Some((req, strategy, task_id, st))) => {
                    tracing::info!(
                        job = id,
                        readopted = st.live.as_ref().map(|a| a.cluster.as_str()).unwrap_or("-"),
                        "resuming managed job (recovery {}, restarts {})",
                        st.recovery,
                        st.restarts
                    );
                    self.spawn_drive(id, req, strategy, task_id, st);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = id, "cannot resume managed job: {e:#}");
                    let why = format!("skycat serve restarted and the job could not be resumed: {e:#}; its cluster is kept: see `skycat status`");
                    self.finish(id, status::FAILED_CONTROLLER, Some(&why)).await?;
                }
            }
        }
        Ok(())
    }

    /// The state a job's controller resumes from, rebuilt from the DB; `None` when the job turned
    /// out to be finished (its last attempt ended and nothing follows).
    pub(super) async fn resume_state(&self, id: i64) -> Result<Option<(JobRequest, Strategy, String, DriveState)>> {
        let r = sqlx::query("SELECT strategy, task_id, recovery_count, restarts_on_errors, request_sealed FROM managed_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(self.db())
            .await?;
        let sealed: Option<Vec<u8>> = r.try_get("request_sealed")?;
        let sealed = sealed.ok_or_else(|| anyhow!("it was submitted before job requests were kept (sealed) in the state DB"))?;
        let req = self.open_request(id, &sealed).context("its sealed request")?;
        let s: String = r.get("strategy");
        let strategy = Strategy::parse(&s).ok_or_else(|| anyhow!("unknown recovery strategy {s:?}"))?;
        let task_id: String = r.get("task_id");
        let mut st = DriveState {
            recovery: r.get::<i64, _>("recovery_count") as u32,
            restarts: r.get::<i64, _>("restarts_on_errors") as u32,
            ..DriveState::default()
        };
        let attempts = sqlx::query("SELECT * FROM managed_attempts WHERE job_id = $1 ORDER BY attempt").bind(id).fetch_all(self.db()).await?;
        // Clusters of ended attempts whose teardown did not finish.
        for a in &attempts {
            if a.get::<Option<String>, _>("ended_at").is_some() {
                let cid: String = a.get("cluster_id");
                if let Some(c) = self.inner.ctl.store.cluster_by_id(&cid).await? {
                    if c.status != "TERMINATED" {
                        st.leftovers.push(c.name);
                    }
                }
            }
        }
        let Some(a) = attempts.last() else {
            self.leftover_launch(id, 0, &mut st).await?;
            return Ok(Some((req, strategy, task_id, st)));
        };
        let no = a.get::<i64, _>("attempt") as u32;
        let pool: String = a.get("pool");
        let cluster_id: String = a.get("cluster_id");
        st.prev_region = Some(pool.clone());
        if a.get::<Option<String>, _>("ended_at").is_none() {
            // The attempt was running: re-adopt it if its cluster is still there.
            match self.inner.ctl.store.cluster_by_id(&cluster_id).await? {
                Some(c) if c.status != "TERMINATED" => {
                    st.live = Some(Attempt {
                        no,
                        cluster: a.get("cluster_name"),
                        cluster_id,
                        pool,
                        agent_job_id: a.get::<i64, _>("agent_job_id") as u64,
                        started: Instant::now(),
                        num_nodes: c.num_nodes,
                    });
                }
                _ => {
                    let why = "its cluster was gone when skycat serve restarted";
                    self.end_attempt(id, no, "PREEMPTED", Some(why)).await?;
                    st.recovery += 1;
                    self.save_counters(id, &st).await?;
                    self.leftover_launch(id, attempts.len() as u32, &mut st).await?;
                }
            }
            return Ok(Some((req, strategy, task_id, st)));
        }
        // The attempt had ended: finish what the controller did after it (the counters of the
        // next attempt are saved once; they are ahead of the attempt's when that happened).
        let outcome: String = a.get("outcome");
        let reason: Option<String> = a.get("reason");
        let counted = st.recovery > a.get::<i64, _>("recovery_count") as u32;
        match outcome.as_str() {
            "SUCCEEDED" | "CANCELLED" => {
                let s = if outcome == "SUCCEEDED" { status::SUCCEEDED } else { status::CANCELLED };
                for name in std::mem::take(&mut st.leftovers) {
                    self.spawn_down(name);
                }
                self.finish(id, s, None).await?;
                return Ok(None);
            }
            "FAILED" | "FAILED_SETUP" if !counted => {
                if st.restarts < req.max_restarts_on_errors {
                    st.restarts += 1;
                    st.recovery += 1;
                    self.save_counters(id, &st).await?;
                } else {
                    for name in std::mem::take(&mut st.leftovers) {
                        self.spawn_down(name);
                    }
                    let s = if outcome == "FAILED" { status::FAILED } else { status::FAILED_SETUP };
                    self.finish(id, s, reason.as_deref()).await?;
                    return Ok(None);
                }
            }
            "PREEMPTED" if !counted => {
                st.recovery += 1;
                self.save_counters(id, &st).await?;
            }
            _ => {}
        }
        self.leftover_launch(id, attempts.len() as u32, &mut st).await?;
        Ok(Some((req, strategy, task_id, st)))
    }

    /// A launch cut short by the restart may have left the next attempt's cluster (named as
    /// `launch_attempt` names it) without an attempt row; it is torn down, not reused, since its
    /// node may already run the task from a submit that was never recorded.
    pub(super) async fn leftover_launch(&self, id: i64, no: u32, st: &mut DriveState) -> Result<()> {
        let name = format!("mj-{id}-{no}");
        if self.inner.ctl.store.cluster(&name).await?.is_some() {
            st.leftovers.retain(|n| *n != name);
            st.orphan = Some(name);
        }
        Ok(())
    }

    pub(super) async fn save_counters(&self, id: i64, st: &DriveState) -> Result<()> {
        sqlx::query("UPDATE managed_jobs SET restarts_on_errors = $1, recovery_count = $2 WHERE id = $3")
            .bind(st.restarts as i64)
            .bind(st.recovery as i64)
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    pub(super) async fn end_attempt(&self, id: i64, no: u32, label: &str, reason: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE managed_attempts SET ended_at = $1, outcome = $2, reason = $3 WHERE job_id = $4 AND attempt = $5")
            .bind(now())
            .bind(label)
            .bind(reason)
            .bind(id)
            .bind(no as i64)
            .execute(self.db())
            .await?;
        Ok(())
    }
}
