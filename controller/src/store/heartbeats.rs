//! Heartbeats (deduplicated on cluster+node+seq; written by [`super::heartbeat_batch`]), the cost
//! ledger and the cost report.

use super::*;

impl Store {
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
