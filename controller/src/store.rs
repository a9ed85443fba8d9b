//! The controller's state in SQLite (sqlx): clusters, nodes, host reservations, jobs, heartbeats
//! (deduplicated on cluster+node+seq), the cost ledger (agent-metered records, never re-priced)
//! and per-cluster tokens (stored as SHA-256 hashes only). Shared by the CLI and `skycat serve`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use skycat_protocol::{CostRecord, Heartbeat, JobStatus};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Db { path: String, source: sqlx::Error },
    #[error("cluster {0:?} not found (see `skycat status`)")]
    NoCluster(String),
    #[error("cluster {0:?} already exists")]
    ClusterExists(String),
    #[error("host {host} of pool {pool} is already used by cluster {cluster}")]
    HostTaken { pool: String, host: String, cluster: String },
    #[error("the operating system's random generator failed; refusing to make ids or tokens without it")]
    Random,
}

/// Cluster lifecycle states, as shown by `skycat status`.
pub mod status {
    pub const INIT: &str = "INIT";
    pub const UP: &str = "UP";
    pub const STOPPED: &str = "STOPPED";
    pub const TERMINATED: &str = "TERMINATED";
}

/// Versioned migrations (`controller/migrations/NNNN_*.sql`), embedded at build time and applied
/// in order on open; sqlx records them in `_sqlx_migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClusterRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub infra: String,
    pub pool: String,
    pub num_nodes: u32,
    pub price_per_hour: f64,
    pub spot: bool,
    pub idle_minutes: Option<f64>,
    pub down_on_idle: bool,
    pub server_url: Option<String>,
    pub agent_version: Option<String>,
    pub task_json: Option<String>,
    pub autostopped_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub terminated_at: Option<String>,
    /// The planned instance type (cloud backends).
    #[sqlx(default)]
    pub instance_type: Option<String>,
    /// Opened TCP ports, `8080,8000-8010` (the task's `resources.ports`).
    #[sqlx(default)]
    pub ports: Option<String>,
}

impl ClusterRow {
    /// The cloud of the cluster's infra (`ssh`, `aws`, …).
    pub fn cloud(&self) -> &str {
        self.infra.split('/').next().unwrap_or_default()
    }
    /// The opened port ranges.
    pub fn port_ranges(&self) -> Vec<(u16, u16)> {
        let list: Vec<String> = self.ports.as_deref().unwrap_or("").split(',').filter(|p| !p.trim().is_empty()).map(str::to_string).collect();
        crate::backend::parse_ports(&list).unwrap_or_default()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub cluster_id: String,
    pub rank: u32,
    pub node_id: String,
    pub pool: String,
    pub ip: String,
    pub port: u16,
    pub user: String,
    pub identity_file: String,
    pub state_dir: String,
    pub agent_bin: String,
    pub last_heartbeat_at: Option<String>,
    #[sqlx(try_from = "i64")]
    pub last_seq: u64,
    pub accrued_usd: f64,
    pub metered_seconds: f64,
    pub idle_seconds: Option<f64>,
    /// The provider's instance id (cloud backends).
    #[sqlx(default)]
    pub instance_id: Option<String>,
    #[sqlx(default)]
    pub zone: Option<String>,
}

impl NodeRow {
    pub fn target(&self) -> crate::ssh::SshTarget {
        crate::ssh::SshTarget {
            host: self.ip.clone(),
            port: self.port,
            user: self.user.clone(),
            identity_file: PathBuf::from(&self.identity_file),
        }
    }
    /// `user@ip:port` (a pod: `context/namespace/pod@ip`).
    pub fn host_key(&self) -> String {
        self.target().display()
    }
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub job_id: u64,
    pub node_rank: u32,
    pub name: Option<String>,
    pub state: String,
    pub submitted_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

/// One line of `skycat cost-report`.
#[derive(Debug, Clone)]
pub struct CostLine {
    pub cluster_id: String,
    pub name: String,
    pub status: String,
    pub num_nodes: u32,
    pub price_per_hour: f64,
    pub created_at: String,
    pub metered_seconds: f64,
    pub usd: f64,
    pub records: u64,
}

/// What the heartbeat ingestion did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    New,
    Duplicate,
}

/// The SQLite state store (cheap to clone: a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// SHA-256 hex of a token (what is stored; the token itself never is).
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex, from the OS generator. There is no fallback: ids and tokens made
/// from guessable entropy would be worse than failing.
pub fn random_hex(n: usize) -> Result<String, StoreError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut buf).map_err(|_| StoreError::Random)?;
    Ok(hex(&buf))
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let db = |source| StoreError::Db { path: shown.clone(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = crate::home::create_private_dir(dir);
        }
        // The database holds host addresses, token hashes and redacted tasks: owner only, from the
        // moment it exists. SQLite gives its -wal and -shm files the database file's mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let _ = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path);
            for p in [path.to_path_buf(), path.with_extension("db-wal"), path.with_extension("db-shm")] {
                if p.exists() {
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(db)?;
        MIGRATOR.run(&pool).await.map_err(|e| db(e.into()))?;
        Ok(Store { pool, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for modules that keep their own tables in this database (managed
    /// jobs: `crate::managed`).
    pub fn db(&self) -> &SqlitePool {
        &self.pool
    }

    fn err(&self, source: sqlx::Error) -> StoreError {
        StoreError::Db { path: self.path.display().to_string(), source }
    }

    // ---- clusters -----------------------------------------------------------------------

    /// Inserts a new cluster; fails with `ClusterExists` if a live cluster has that name.
    pub async fn insert_cluster(&self, c: &ClusterRow, token_hash: &str) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO clusters (id, name, status, infra, pool, num_nodes, price_per_hour, spot, token_hash,
                idle_minutes, down_on_idle, server_url, agent_version, task_json, created_at, updated_at, instance_type, ports)
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
            Err(sqlx::Error::Database(d)) if d.message().contains("UNIQUE") => {
                Err(StoreError::ClusterExists(c.name.clone()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn cluster_from_row(r: &SqliteRow) -> Result<ClusterRow, sqlx::Error> {
        <ClusterRow as sqlx::FromRow<SqliteRow>>::from_row(r)
    }

    /// The live (not terminated) cluster with this name.
    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE name = ? AND status != 'TERMINATED'")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(Self::cluster_from_row).transpose().map_err(|e| self.err(e))
    }

    pub async fn require_cluster(&self, name: &str) -> Result<ClusterRow, StoreError> {
        self.cluster(name).await?.ok_or_else(|| StoreError::NoCluster(name.to_string()))
    }

    pub async fn cluster_by_id(&self, id: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(Self::cluster_from_row).transpose().map_err(|e| self.err(e))
    }

    /// The live cluster whose token hashes to `token_hash`.
    pub async fn cluster_by_token(&self, token: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE token_hash = ? AND status != 'TERMINATED'")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(Self::cluster_from_row).transpose().map_err(|e| self.err(e))
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
            "UPDATE clusters SET status = ?, updated_at = ?, terminated_at = COALESCE(?, terminated_at),
             autostopped_at = CASE WHEN ? = 'UP' THEN NULL ELSE autostopped_at END WHERE id = ?",
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
            "UPDATE clusters SET infra = ?, pool = ?, price_per_hour = ?, spot = ?, instance_type = ?, updated_at = ? WHERE id = ?",
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
        sqlx::query("UPDATE clusters SET ports = ?, updated_at = ? WHERE id = ?")
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
        sqlx::query("UPDATE nodes SET ip = ? WHERE cluster_id = ? AND rank = ?")
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
        sqlx::query("UPDATE nodes SET port = ? WHERE cluster_id = ? AND rank = ?")
            .bind(i64::from(port))
            .bind(cluster_id)
            .bind(rank as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn set_agent_version(&self, id: &str, version: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE clusters SET agent_version = ?, updated_at = ? WHERE id = ?")
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
            "UPDATE clusters SET autostopped_at = ?, status = 'STOPPED', updated_at = ?
             WHERE id = ? AND autostopped_at IS NULL AND status = 'UP'",
        )
        .bind(at)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(r.rows_affected() > 0)
    }

    // ---- hosts and nodes --------------------------------------------------------------------

    /// Reserves `host` of `pool` for the cluster; `HostTaken` if another live cluster holds it.
    pub async fn reserve_host(&self, pool: &str, host: &str, cluster_id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("INSERT INTO host_reservations (pool, host, cluster_id, reserved_at) VALUES (?,?,?,?)")
            .bind(pool)
            .bind(host)
            .bind(cluster_id)
            .bind(now())
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.message().contains("UNIQUE") => {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT c.name FROM host_reservations h JOIN clusters c ON c.id = h.cluster_id WHERE h.pool = ? AND h.host = ?")
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
        sqlx::query_scalar("SELECT host FROM host_reservations WHERE pool = ?")
            .bind(pool)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn release_host(&self, pool: &str, host: &str, cluster_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM host_reservations WHERE pool = ? AND host = ? AND cluster_id = ?")
            .bind(pool)
            .bind(host)
            .bind(cluster_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn release_cluster_hosts(&self, cluster_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM host_reservations WHERE cluster_id = ?")
            .bind(cluster_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn insert_node(&self, n: &NodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO nodes (cluster_id, rank, node_id, pool, ip, port, user, identity_file, state_dir, agent_bin,
                instance_id, zone)
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
        let rows = sqlx::query("SELECT * FROM nodes WHERE cluster_id = ? ORDER BY rank")
            .bind(cluster_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(<NodeRow as sqlx::FromRow<SqliteRow>>::from_row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    // ---- jobs ---------------------------------------------------------------------------

    /// Upserts the node's view of its jobs (from a heartbeat or a direct pull).
    pub async fn upsert_jobs(&self, cluster_id: &str, rank: u32, jobs: &[JobStatus]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        for j in jobs {
            let state = serde_json::to_value(j.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            sqlx::query(
                "INSERT INTO jobs (cluster_id, job_id, node_rank, name, state, submitted_at, started_at, ended_at, exit_code, reason, updated_at)
                 VALUES (?,?,?,?,?,?,?,?,?,?,?)
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
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn jobs(&self, cluster_id: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE cluster_id = ? ORDER BY job_id, node_rank")
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

    // ---- heartbeats and cost -----------------------------------------------------------

    /// Stores a heartbeat of `cluster` (deduplicated on node+seq), its jobs, and its new cost
    /// records. A duplicate changes nothing.
    pub async fn ingest_heartbeat(&self, cluster: &ClusterRow, hb: &Heartbeat) -> Result<Ingested, StoreError> {
        let body = serde_json::to_string(hb).unwrap_or_default();
        let reason = serde_json::to_value(hb.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let r = sqlx::query(
            "INSERT OR IGNORE INTO heartbeats (cluster_id, node_id, seq, reason, created_at, received_at, accrued_usd, idle_seconds, body)
             VALUES (?,?,?,?,?,?,?,?,?)",
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
        // Node totals only move forward: replayed (older) heartbeats never lower them.
        sqlx::query(
            "UPDATE nodes SET last_heartbeat_at = ?, last_seq = MAX(last_seq, ?),
               accrued_usd = MAX(accrued_usd, ?), metered_seconds = MAX(metered_seconds, ?),
               idle_seconds = CASE WHEN ? >= last_seq THEN ? ELSE idle_seconds END
             WHERE cluster_id = ? AND node_id = ?",
        )
        .bind(now())
        .bind(hb.seq as i64)
        .bind(hb.cost.accrued_usd)
        .bind(hb.cost.metered_seconds)
        .bind(hb.seq as i64)
        .bind(hb.idle_seconds)
        .bind(&cluster.id)
        .bind(&hb.node_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.record_costs(cluster, &hb.cost.new_records, "heartbeat").await?;
        // Jobs: only the newest heartbeat's view counts.
        let rank = hb.node_rank;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM heartbeats WHERE cluster_id = ? AND node_id = ?")
            .bind(&cluster.id)
            .bind(&hb.node_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if newest == Some(hb.seq as i64) {
            self.upsert_jobs(&cluster.id, rank, &hb.jobs).await?;
        }
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
                "INSERT OR IGNORE INTO cost_ledger (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
                 VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
        sqlx::query(
            "UPDATE nodes SET accrued_usd = MAX(accrued_usd, ?), metered_seconds = MAX(metered_seconds, ?), idle_seconds = ?
             WHERE cluster_id = ? AND rank = ?",
        )
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
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats WHERE cluster_id = ?")
            .bind(cluster_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// (node_id, seq) of every stored heartbeat of the cluster, in order.
    pub async fn heartbeat_seqs(&self, cluster_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT node_id, seq FROM heartbeats WHERE cluster_id = ? ORDER BY node_id, seq")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, id: &str) -> ClusterRow {
        ClusterRow {
            id: id.into(),
            name: name.into(),
            status: status::UP.into(),
            infra: "ssh/p".into(),
            pool: "p".into(),
            num_nodes: 1,
            price_per_hour: 2.0,
            spot: false,
            idle_minutes: None,
            down_on_idle: false,
            server_url: None,
            agent_version: None,
            task_json: None,
            autostopped_at: None,
            created_at: now(),
            updated_at: now(),
            terminated_at: None,
            instance_type: None,
            ports: Some("8888,10020-10040".into()),
        }
    }

    #[tokio::test]
    async fn a_database_from_before_migrations_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // What skycat 0.1 created: the tables, no `_sqlx_migrations`, no backend columns.
            let opts = SqliteConnectOptions::from_str("sqlite://").unwrap().filename(&path).create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(include_str!("../migrations/0001_initial.sql"))).execute(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO clusters (id, name, status, infra, pool, num_nodes, price_per_hour, spot, token_hash, created_at, updated_at)
                 VALUES ('old1', 'old', 'UP', 'ssh/p', 'p', 1, 1.5, 0, 'h', 'now', 'now')",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let s = Store::open(&path).await.unwrap();
        let c = s.cluster("old").await.unwrap().expect("the old cluster survives");
        assert_eq!((c.price_per_hour, c.instance_type.as_deref(), c.cloud()), (1.5, None, "ssh"));
        s.set_cluster_ports("old1", "8080").await.unwrap();
        assert_eq!(s.cluster("old").await.unwrap().unwrap().port_ranges(), vec![(8080, 8080)]);
        // Opening again applies nothing twice.
        drop(s);
        Store::open(&path).await.unwrap();
    }

    #[tokio::test]
    async fn home_is_0700_and_the_database_files_0600_from_creation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("skyhome");
        let s = Store::open(&home.join("state.db")).await.unwrap();
        s.create_api_token("t", crate::api_tokens::Role::User).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700);
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let p = home.join(f);
            assert!(p.exists(), "{f} (WAL mode)");
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }

    #[tokio::test]
    async fn clusters_tokens_reservations_and_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).await.unwrap();
        let token = random_hex(32).unwrap();
        assert_eq!(token.len(), 64);
        s.insert_cluster(&cluster("a", "id1"), &hash_token(&token)).await.unwrap();
        assert!(matches!(s.insert_cluster(&cluster("a", "id2"), "x").await, Err(StoreError::ClusterExists(_))));
        assert_eq!(s.cluster_by_token(&token).await.unwrap().unwrap().id, "id1");
        assert!(s.cluster_by_token("wrong").await.unwrap().is_none());
        s.reserve_host("p", "root@h:22", "id1").await.unwrap();
        let e = s.reserve_host("p", "root@h:22", "id2").await.unwrap_err();
        assert!(e.to_string().contains("already used by cluster a"), "{e}");
        let t0 = Utc::now();
        let rec = CostRecord {
            cluster: "a".into(),
            node_id: "a-0".into(),
            launch_id: Some("id1".into()),
            from: t0,
            to: t0 + chrono::Duration::seconds(60),
            seconds: 60.0,
            price_per_hour: 2.0,
            usd: 2.0 / 60.0,
            kind: "metered".into(),
        };
        let c = s.require_cluster("a").await.unwrap();
        assert_eq!(s.record_costs(&c, &[rec.clone(), rec.clone()], "test").await.unwrap(), 1);
        assert_eq!(s.record_costs(&c, &[rec], "test").await.unwrap(), 0);
        s.set_cluster_status("id1", status::TERMINATED).await.unwrap();
        s.release_cluster_hosts("id1").await.unwrap();
        assert!(s.cluster("a").await.unwrap().is_none());
        // A new cluster may reuse the name and the host; the old one stays in the cost report.
        s.insert_cluster(&cluster("a", "id2"), "x").await.unwrap();
        s.reserve_host("p", "root@h:22", "id2").await.unwrap();
        let report = s.cost_report().await.unwrap();
        assert_eq!(report.len(), 2);
        assert!((report[0].usd - 2.0 / 60.0).abs() < 1e-12 && report[0].status == "TERMINATED");
        assert_eq!(report[1].usd, 0.0);
    }
}
