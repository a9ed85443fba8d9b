//! Host reservations of SSH pools, nodes and their addresses, and the jobs the agents report.

use super::*;

impl Store {
    /// Reserves `host` of `pool` for the cluster; `HostTaken` if another live cluster holds it.
    pub async fn reserve_host(&self, pool: &str, host: &str, cluster_id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("INSERT INTO host_reservations (pool, host, cluster_id, reserved_at) VALUES ($1,$2,$3,$4)")
            .bind(pool)
            .bind(host)
            .bind(cluster_id)
            .bind(now())
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT c.name FROM host_reservations h JOIN clusters c ON c.id = h.cluster_id WHERE h.pool = $1 AND h.host = $2")
                        .bind(pool)
                        .bind(host)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.err(e))?;
                Err(StoreError::HostTaken {
                    pool: pool.to_string(),
                    host: host.to_string(),
                    cluster: holder.unwrap_or_else(|| "?".into()),
                })
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Hosts of `pool` held by live clusters.
    pub async fn reserved_hosts(&self, pool: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT host FROM host_reservations WHERE pool = $1")
            .bind(pool)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn release_host(&self, pool: &str, host: &str, cluster_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM host_reservations WHERE pool = $1 AND host = $2 AND cluster_id = $3")
            .bind(pool)
            .bind(host)
            .bind(cluster_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn release_cluster_hosts(&self, cluster_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM host_reservations WHERE cluster_id = $1")
            .bind(cluster_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn insert_node(&self, n: &NodeRow) -> Result<(), StoreError> {
        sqlx::query(
            // A re-inserted node starts afresh (no heartbeat yet), as a new row would.
            "INSERT INTO nodes (cluster_id, rank, node_id, pool, ip, port, \"user\", identity_file, state_dir, agent_bin,
                instance_id, zone)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
             ON CONFLICT (cluster_id, rank) DO UPDATE SET node_id = excluded.node_id, pool = excluded.pool, ip = excluded.ip,
               port = excluded.port, \"user\" = excluded.\"user\", identity_file = excluded.identity_file,
               state_dir = excluded.state_dir, agent_bin = excluded.agent_bin, instance_id = excluded.instance_id,
               zone = excluded.zone, last_heartbeat_at = NULL, last_seq = 0, accrued_usd = 0, metered_seconds = 0,
               idle_seconds = NULL",
        )
        .bind(&n.cluster_id)
        .bind(n.rank as i64)
        .bind(&n.node_id)
        .bind(&n.pool)
        .bind(&n.ip)
        .bind(n.port as i64)
        .bind(&n.user)
        .bind(&n.identity_file)
        .bind(&n.state_dir)
        .bind(&n.agent_bin)
        .bind(&n.instance_id)
        .bind(&n.zone)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn nodes(&self, cluster_id: &str) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM nodes WHERE cluster_id = $1 ORDER BY rank")
            .bind(cluster_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(NodeRow::from_row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    // ---- jobs ---------------------------------------------------------------------------

    /// Upserts the node's view of its jobs (from a heartbeat or a direct pull).
    pub async fn upsert_jobs(&self, cluster_id: &str, rank: u32, jobs: &[JobStatus]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        Self::upsert_jobs_in(&mut tx, cluster_id, rank, jobs).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// [`Store::upsert_jobs`] inside the caller's transaction.
    pub(super) async fn upsert_jobs_in(conn: &mut sqlx::AnyConnection, cluster_id: &str, rank: u32, jobs: &[JobStatus]) -> Result<(), sqlx::Error> {
        for j in jobs {
            let state = serde_json::to_value(j.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            sqlx::query(
                "INSERT INTO jobs (cluster_id, job_id, node_rank, name, state, submitted_at, started_at, ended_at, exit_code, reason, updated_at)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
                 ON CONFLICT(cluster_id, job_id, node_rank) DO UPDATE SET name=excluded.name, state=excluded.state,
                   submitted_at=excluded.submitted_at, started_at=excluded.started_at, ended_at=excluded.ended_at,
                   exit_code=excluded.exit_code, reason=excluded.reason, updated_at=excluded.updated_at",
            )
            .bind(cluster_id)
            .bind(j.id as i64)
            .bind(rank as i64)
            .bind(&j.name)
            .bind(state)
            .bind(ts(&j.submitted_at))
            .bind(j.started_at.as_ref().map(ts))
            .bind(j.ended_at.as_ref().map(ts))
            .bind(j.exit_code.map(|c| c as i64))
            .bind(&j.reason)
            .bind(now())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn jobs(&self, cluster_id: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE cluster_id = $1 ORDER BY job_id, node_rank")
            .bind(cluster_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| JobRow {
                job_id: r.get::<i64, _>("job_id") as u64,
                node_rank: r.get::<i64, _>("node_rank") as u32,
                name: r.get("name"),
                state: r.get("state"),
                submitted_at: r.get("submitted_at"),
                started_at: r.get("started_at"),
                ended_at: r.get("ended_at"),
                exit_code: r.get("exit_code"),
                reason: r.get("reason"),
            })
            .collect())
    }
}
