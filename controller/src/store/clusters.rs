//! Clusters: creation (one live cluster per name), lookup by name, id and token, status,
//! placement, ports and autostop.

use super::*;

impl Store {
    /// Inserts a new cluster; fails with `ClusterExists` if a live cluster has that name.
    pub async fn insert_cluster(&self, c: &ClusterRow, token_hash: &str) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO clusters (id, name, status, infra, pool, num_nodes, price_per_hour, spot, token_hash,
                idle_minutes, down_on_idle, server_url, agent_version, task_json, created_at, updated_at, instance_type, ports)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.status)
        .bind(&c.infra)
        .bind(&c.pool)
        .bind(c.num_nodes as i64)
        .bind(c.price_per_hour)
        .bind(c.spot as i64)
        .bind(token_hash)
        .bind(c.idle_minutes)
        .bind(c.down_on_idle as i64)
        .bind(&c.server_url)
        .bind(&c.agent_version)
        .bind(&c.task_json)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .bind(&c.instance_type)
        .bind(&c.ports)
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(StoreError::ClusterExists(c.name.clone()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    pub(super) fn cluster_from_row(r: &AnyRow) -> Result<ClusterRow, sqlx::Error> {
        ClusterRow::from_row(r)
    }

    /// The one cluster row matching `filter`, a WHERE clause over one text parameter `$1`.
    /// `filter` is a literal of this file (`'static`), never user text: the value is bound.
    async fn cluster_where(&self, filter: &'static str, arg: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM clusters WHERE {filter}")))
            .bind(arg)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(Self::cluster_from_row).transpose().map_err(|e| self.err(e))
    }

    /// The live (not terminated) cluster with this name.
    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        self.cluster_where("name = $1 AND status != 'TERMINATED'", name).await
    }

    pub async fn require_cluster(&self, name: &str) -> Result<ClusterRow, StoreError> {
        self.cluster(name).await?.ok_or_else(|| StoreError::NoCluster(name.to_string()))
    }

    pub async fn cluster_by_id(&self, id: &str) -> Result<Option<ClusterRow>, StoreError> {
        self.cluster_where("id = $1", id).await
    }

    /// The live cluster whose token hashes to `token_hash`.
    pub async fn cluster_by_token(&self, token: &str) -> Result<Option<ClusterRow>, StoreError> {
        self.cluster_where("token_hash = $1 AND status != 'TERMINATED'", &hash_token(token)).await
    }

    /// Live clusters, oldest first.
    pub async fn clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM clusters WHERE status != 'TERMINATED' ORDER BY created_at, name")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(Self::cluster_from_row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub async fn set_cluster_status(&self, id: &str, status: &str) -> Result<(), StoreError> {
        let terminated = if status == self::status::TERMINATED { Some(now()) } else { None };
        sqlx::query(
            "UPDATE clusters SET status = $1, updated_at = $2, terminated_at = COALESCE($3, terminated_at),
             autostopped_at = CASE WHEN $4 = 'UP' THEN NULL ELSE autostopped_at END WHERE id = $5",
        )
        .bind(status)
        .bind(now())
        .bind(terminated)
        .bind(status)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records where a cluster is being placed (each try of the failover walk).
    pub async fn set_cluster_placement(
        &self,
        id: &str,
        infra: &str,
        pool: &str,
        price_per_hour: f64,
        spot: bool,
        instance_type: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE clusters SET infra = $1, pool = $2, price_per_hour = $3, spot = $4, instance_type = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(infra)
        .bind(pool)
        .bind(price_per_hour)
        .bind(spot as i64)
        .bind(instance_type)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the cluster's opened ports (`8080,8000-8010`).
    pub async fn set_cluster_ports(&self, id: &str, ports: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE clusters SET ports = $1, updated_at = $2 WHERE id = $3")
            .bind(ports)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A node's new address (cloud nodes may change address across stop/start).
    pub async fn set_node_address(&self, cluster_id: &str, rank: u32, ip: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE nodes SET ip = $1 WHERE cluster_id = $2 AND rank = $3")
            .bind(ip)
            .bind(cluster_id)
            .bind(rank as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A node's SSH port (a cloud that maps ports may change it on start).
    pub async fn set_node_port(&self, cluster_id: &str, rank: u32, port: u16) -> Result<(), StoreError> {
        sqlx::query("UPDATE nodes SET port = $1 WHERE cluster_id = $2 AND rank = $3")
            .bind(i64::from(port))
            .bind(cluster_id)
            .bind(rank as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn set_agent_version(&self, id: &str, version: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE clusters SET agent_version = $1, updated_at = $2 WHERE id = $3")
            .bind(version)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records that autostop fired; returns true the first time (so the caller acts once).
    pub async fn mark_autostopped(&self, id: &str, at: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE clusters SET autostopped_at = $1, status = 'STOPPED', updated_at = $2
             WHERE id = $3 AND autostopped_at IS NULL AND status = 'UP'",
        )
        .bind(at)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(r.rows_affected() > 0)
    }
}
