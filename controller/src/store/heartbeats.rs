//! Heartbeats (deduplicated on cluster+node+seq), the cost ledger and the cost report.

use super::*;

impl Store {
    /// Stores a heartbeat of `cluster` (deduplicated on node+seq), its jobs, and its new cost
    /// records. A duplicate changes nothing.
    pub async fn ingest_heartbeat(&self, cluster: &ClusterRow, hb: &Heartbeat) -> Result<Ingested, StoreError> {
        let body = serde_json::to_string(hb).unwrap_or_default();
        let reason = serde_json::to_value(hb.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let r = sqlx::query(
            "INSERT INTO heartbeats (cluster_id, node_id, seq, reason, created_at, received_at, accrued_usd, idle_seconds, body)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT DO NOTHING",
        )
        .bind(&cluster.id)
        .bind(&hb.node_id)
        .bind(hb.seq as i64)
        .bind(reason)
        .bind(ts(&hb.created_at))
        .bind(now())
        .bind(hb.cost.accrued_usd)
        .bind(hb.idle_seconds)
        .bind(body)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| self.err(e))?;
            return Ok(Ingested::Duplicate);
        }
        // Node totals only move forward: replayed (older) heartbeats never lower them. The row's
        // `last_seq` after the update says whether this heartbeat is the node's newest; the row
        // lock orders concurrent heartbeats of one node (sent to different replicas), so exactly
        // the newest one writes the jobs. One transaction, one commit per heartbeat.
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "UPDATE nodes SET last_heartbeat_at = $1, last_seq = MAX(last_seq, $2),
                   accrued_usd = MAX(accrued_usd, $3), metered_seconds = MAX(metered_seconds, $4),
                   idle_seconds = CASE WHEN $5 >= last_seq THEN $6 ELSE idle_seconds END
                 WHERE cluster_id = $7 AND node_id = $8 RETURNING last_seq"
            }
            Dialect::Postgres => {
                "UPDATE nodes SET last_heartbeat_at = $1, last_seq = GREATEST(last_seq, $2),
                   accrued_usd = GREATEST(accrued_usd, $3), metered_seconds = GREATEST(metered_seconds, $4),
                   idle_seconds = CASE WHEN $5 >= last_seq THEN $6 ELSE idle_seconds END
                 WHERE cluster_id = $7 AND node_id = $8 RETURNING last_seq"
            }
        };
        let node_last_seq: Option<i64> = sqlx::query_scalar(sql)
            .bind(now())
            .bind(hb.seq as i64)
            .bind(hb.cost.accrued_usd)
            .bind(hb.cost.metered_seconds)
            .bind(hb.seq as i64)
            .bind(hb.idle_seconds)
            .bind(&cluster.id)
            .bind(&hb.node_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        // Jobs: only the newest heartbeat's view counts. A node without a row (not registered
        // by a launch) is judged by the heartbeats stored.
        let newest = match node_last_seq {
            Some(seq) => seq,
            None => sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM heartbeats WHERE cluster_id = $1 AND node_id = $2")
                .bind(&cluster.id)
                .bind(&hb.node_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?
                .unwrap_or(0),
        };
        if newest == hb.seq as i64 {
            Self::upsert_jobs_in(&mut tx, &cluster.id, hb.node_rank, &hb.jobs).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        self.record_costs(cluster, &hb.cost.new_records, "heartbeat").await?;
        Ok(Ingested::New)
    }

    /// Appends agent-metered cost records (deduplicated: the same record twice counts once).
    pub async fn record_costs(&self, cluster: &ClusterRow, records: &[CostRecord], source: &str) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        for c in records {
            let r = sqlx::query(
                "INSERT INTO cost_ledger (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING",
            )
            .bind(&cluster.id)
            .bind(&cluster.name)
            .bind(&c.node_id)
            .bind(c.launch_id.clone().unwrap_or_default())
            .bind(ts(&c.from))
            .bind(ts(&c.to))
            .bind(c.seconds)
            .bind(c.price_per_hour)
            .bind(c.usd)
            .bind(&c.kind)
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            added += r.rows_affected();
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(added)
    }

    /// Updates a node's totals from a direct pull (`skycat-agent status` over SSH).
    pub async fn record_node_totals(&self, cluster_id: &str, rank: u32, accrued: f64, seconds: f64, idle: f64) -> Result<(), StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "UPDATE nodes SET accrued_usd = MAX(accrued_usd, $1), metered_seconds = MAX(metered_seconds, $2), idle_seconds = $3
                 WHERE cluster_id = $4 AND rank = $5"
            }
            Dialect::Postgres => {
                "UPDATE nodes SET accrued_usd = GREATEST(accrued_usd, $1), metered_seconds = GREATEST(metered_seconds, $2), idle_seconds = $3
                 WHERE cluster_id = $4 AND rank = $5"
            }
        };
        sqlx::query(sql)
        .bind(accrued)
        .bind(seconds)
        .bind(idle)
        .bind(cluster_id)
        .bind(rank as i64)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn heartbeat_count(&self, cluster_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats WHERE cluster_id = $1")
            .bind(cluster_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// (node_id, seq) of every stored heartbeat of the cluster, in order.
    pub async fn heartbeat_seqs(&self, cluster_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT node_id, seq FROM heartbeats WHERE cluster_id = $1 ORDER BY node_id, seq")
            .bind(cluster_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get::<String, _>("node_id"), r.get::<i64, _>("seq") as u64)).collect())
    }

    /// Accrued cost per cluster from the ledger (every cluster, terminated ones too).
    pub async fn cost_report(&self) -> Result<Vec<CostLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.name, c.status, c.num_nodes, c.price_per_hour, c.created_at,
                    COALESCE(SUM(l.seconds), 0.0) AS seconds, COALESCE(SUM(l.usd), 0.0) AS usd, COUNT(l.usd) AS records
             FROM clusters c LEFT JOIN cost_ledger l ON l.cluster_id = c.id
             GROUP BY c.id ORDER BY c.created_at, c.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| CostLine {
                cluster_id: r.get("id"),
                name: r.get("name"),
                status: r.get("status"),
                num_nodes: r.get::<i64, _>("num_nodes") as u32,
                price_per_hour: r.get("price_per_hour"),
                created_at: r.get("created_at"),
                metered_seconds: r.get("seconds"),
                usd: r.get("usd"),
                records: r.get::<i64, _>("records") as u64,
            })
            .collect())
    }
}
