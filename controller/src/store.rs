//! The controller's state (sqlx, through its Any driver): clusters, nodes, host reservations,
//! jobs, heartbeats (deduplicated on cluster+node+seq), the cost ledger (agent-metered records,
//! never re-priced) and per-cluster tokens (stored as SHA-256 hashes only). Shared by the CLI and
//! `skycat serve`.
//!
//! Two databases behind one type: an embedded SQLite file (the default, one `skycat serve`) and
//! PostgreSQL (`skycat serve --state postgres://…`, several replicas). Queries are written once
//! with `$N` placeholders, which both accept; the few statements whose SQL differs pick theirs by
//! [`Dialect`]. Columns use only the types the Any driver carries (i64, f64, text, bytes): flags
//! are 0/1 integers in both schemas.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use skycat_protocol::{CostRecord, Heartbeat, JobStatus};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Db { path: String, source: sqlx::Error },
    /// The database cannot be reached (connection refused or lost, pool timed out): the request
    /// may succeed later. `skycat serve` answers 503 for it.
    #[error("state database {path} is unreachable: {source}")]
    Unavailable { path: String, source: sqlx::Error },
    #[error("state database {path} has schema version {found}, newer than this skycat knows ({known}): upgrade skycat before starting it on this database")]
    SchemaTooNew { path: String, found: i64, known: i64 },
    #[error("--state {0}: expected a file path, sqlite://PATH or postgres://USER@HOST/DB")]
    BadLocation(String),
    #[error("cluster {0:?} not found (see `skycat status`)")]
    NoCluster(String),
    #[error("cluster {0:?} already exists")]
    ClusterExists(String),
    #[error("host {host} of pool {pool} is already used by cluster {cluster}")]
    HostTaken { pool: String, host: String, cluster: String },
    #[error("the operating system's random generator failed; refusing to make ids or tokens without it")]
    Random,
}

impl StoreError {
    /// Whether the database was unreachable (rather than the request being wrong).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Whether an sqlx error means "the database is not there" rather than "this statement failed".
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed
    ) || matches!(e, sqlx::Error::Protocol(_))
        // PostgreSQL's "admin shutdown", "cannot connect now" and "connection failure" classes.
        || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// Cluster lifecycle states, as shown by `skycat status`.
pub mod status {
    pub const INIT: &str = "INIT";
    pub const UP: &str = "UP";
    pub const STOPPED: &str = "STOPPED";
    pub const TERMINATED: &str = "TERMINATED";
}

/// Versioned migrations, embedded at build time and applied in order on open; sqlx records them
/// in `_sqlx_migrations`. The two folders carry the same version numbers and the same tables.
static MIGRATOR_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATOR_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL the store speaks (for the few statements that differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Dialect::Sqlite => &MIGRATOR_SQLITE,
            Dialect::Postgres => &MIGRATOR_POSTGRES,
        }
    }
}

/// The highest migration version this build knows for `dialect`.
pub fn known_schema_version(dialect: Dialect) -> i64 {
    dialect.migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

/// `url` with any password replaced by `***` (for logs, errors and /healthz).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth_host, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let auth_host = match auth_host.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => auth_host.to_string(),
    };
    let tail: String = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| if kv.to_ascii_lowercase().starts_with("password=") { "password=***".to_string() } else { kv.to_string() })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{auth_host}{tail}")
}

async fn schema_version(conn: &mut AnyConnection, dialect: Dialect) -> Result<Option<i64>, sqlx::Error> {
    let exists = match dialect {
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        Dialect::Postgres => "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()",
    };
    let n: i64 = sqlx::query_scalar(exists).fetch_one(&mut *conn).await?;
    if n == 0 {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut *conn).await
}

/// Refuses a database whose schema is newer than this build's (a newer replica migrated it: this
/// one would misread it), then applies the missing migrations. On one connection of its own,
/// before the pool opens any: a SQLite connection prepared against the old schema would
/// misreport a migrated table's columns.
async fn prepare_schema(conn: &mut AnyConnection, dialect: Dialect, location: &str) -> Result<(), StoreError> {
    let db = |source| StoreError::Db { path: location.to_string(), source };
    let known = known_schema_version(dialect);
    if let Some(found) = schema_version(conn, dialect).await.map_err(db)? {
        if found > known {
            return Err(StoreError::SchemaTooNew { path: location.to_string(), found, known });
        }
    }
    dialect.migrator().run(&mut *conn).await.map_err(|e| db(e.into()))?;
    Ok(())
}

/// Where `skycat serve --state` keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StateLocation {
    /// `postgres://…`/`postgresql://…`, `sqlite://PATH`, or a plain file path.
    pub fn parse(spec: &str) -> Result<StateLocation, StoreError> {
        let spec = spec.trim();
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return Ok(StateLocation::Postgres(spec.to_string()));
        }
        if let Some(p) = spec.strip_prefix("sqlite://") {
            return if p.is_empty() { Err(StoreError::BadLocation(spec.to_string())) } else { Ok(StateLocation::Sqlite(PathBuf::from(p))) };
        }
        if spec.is_empty() || spec.contains("://") {
            return Err(StoreError::BadLocation(redact_url(spec)));
        }
        Ok(StateLocation::Sqlite(PathBuf::from(spec)))
    }
}

#[derive(Debug, Clone)]
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
    pub instance_type: Option<String>,
    /// Opened TCP ports, `8080,8000-8010` (the task's `resources.ports`).
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

    fn from_row(r: &AnyRow) -> Result<ClusterRow, sqlx::Error> {
        Ok(ClusterRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            status: r.try_get("status")?,
            infra: r.try_get("infra")?,
            pool: r.try_get("pool")?,
            num_nodes: int(r, "num_nodes")?,
            price_per_hour: r.try_get("price_per_hour")?,
            spot: r.try_get::<i64, _>("spot")? != 0,
            idle_minutes: r.try_get("idle_minutes")?,
            down_on_idle: r.try_get::<i64, _>("down_on_idle")? != 0,
            server_url: r.try_get("server_url")?,
            agent_version: r.try_get("agent_version")?,
            task_json: r.try_get("task_json")?,
            autostopped_at: r.try_get("autostopped_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            terminated_at: r.try_get("terminated_at")?,
            instance_type: r.try_get("instance_type")?,
            ports: r.try_get("ports")?,
        })
    }
}

/// An integer column as a narrower Rust integer (a value out of range is a decode error).
fn int<T: TryFrom<i64>>(r: &AnyRow, col: &str) -> Result<T, sqlx::Error> {
    let v: i64 = r.try_get(col)?;
    T::try_from(v).map_err(|_| sqlx::Error::ColumnDecode { index: col.to_string(), source: format!("{v} is out of range").into() })
}

#[derive(Debug, Clone)]
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
    pub last_seq: u64,
    pub accrued_usd: f64,
    pub metered_seconds: f64,
    pub idle_seconds: Option<f64>,
    /// The provider's instance id (cloud backends).
    pub instance_id: Option<String>,
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

    fn from_row(r: &AnyRow) -> Result<NodeRow, sqlx::Error> {
        Ok(NodeRow {
            cluster_id: r.try_get("cluster_id")?,
            rank: int(r, "rank")?,
            node_id: r.try_get("node_id")?,
            pool: r.try_get("pool")?,
            ip: r.try_get("ip")?,
            port: int(r, "port")?,
            user: r.try_get("user")?,
            identity_file: r.try_get("identity_file")?,
            state_dir: r.try_get("state_dir")?,
            agent_bin: r.try_get("agent_bin")?,
            last_heartbeat_at: r.try_get("last_heartbeat_at")?,
            last_seq: int(r, "last_seq")?,
            accrued_usd: r.try_get("accrued_usd")?,
            metered_seconds: r.try_get("metered_seconds")?,
            idle_seconds: r.try_get("idle_seconds")?,
            instance_id: r.try_get("instance_id")?,
            zone: r.try_get("zone")?,
        })
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

/// The state store (cheap to clone: a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The SQLite file, or the PostgreSQL URL with its password redacted: what errors name.
    location: String,
    /// The skycat home this store serves (keys, pools, agent binaries live there).
    home: PathBuf,
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
    /// Opens (creating if needed) the SQLite database at `path`.
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
        sqlx::any::install_default_drivers();
        // The Any driver opens SQLite from a URL; SqliteConnectOptions writes it (path escaped).
        let url = SqliteConnectOptions::new().filename(path).create_if_missing(true).to_url_lossy();
        let opts = AnyConnectOptions::from_url(&url).map_err(db)?;
        let mut conn = AnyConnection::connect_with(&opts).await.map_err(db)?;
        conn.execute("PRAGMA journal_mode = WAL").await.map_err(db)?;
        prepare_schema(&mut conn, Dialect::Sqlite, &shown).await?;
        let _ = conn.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never block the writer; a busy writer is waited for, not failed.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(db)?;
        let home = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Store { pool, dialect: Dialect::Sqlite, location: shown, home })
    }

    /// Connects to the PostgreSQL database at `url` (several `skycat serve` replicas share it),
    /// applying migrations. `home` is the skycat home of this replica.
    pub async fn connect_postgres(url: &str, home: &Path) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        sqlx::any::install_default_drivers();
        let opts = AnyConnectOptions::from_url(&url.parse().map_err(|_| StoreError::BadLocation(shown.clone()))?)
            .map_err(|source| StoreError::Db { path: shown.clone(), source })?;
        let unreachable = |source| if is_connection_error(&source) { StoreError::Unavailable { path: shown.clone(), source } } else { StoreError::Db { path: shown.clone(), source } };
        let mut conn = AnyConnection::connect_with(&opts).await.map_err(unreachable)?;
        prepare_schema(&mut conn, Dialect::Postgres, &shown).await?;
        let _ = conn.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            // A request waits this long for a connection before it is told the database is down.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await
            .map_err(unreachable)?;
        Ok(Store { pool, dialect: Dialect::Postgres, location: shown, home: home.to_path_buf() })
    }

    /// Opens the store `--state` names: a SQLite file (default `home/state.db`) or PostgreSQL.
    pub async fn open_location(location: &StateLocation, home: &Path) -> Result<Store, StoreError> {
        match location {
            StateLocation::Sqlite(p) => Store::open(p).await,
            StateLocation::Postgres(url) => Store::connect_postgres(url, home).await,
        }
    }

    /// The highest migration applied to the database, `None` before the first.
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        schema_version(&mut conn, self.dialect).await.map_err(|e| self.err(e))
    }

    /// The SQLite file or redacted PostgreSQL URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The skycat home this store was opened for.
    pub fn home_dir(&self) -> &Path {
        &self.home
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The connection pool, for modules that keep their own tables in this database (managed
    /// jobs: `crate::managed`).
    pub fn db(&self) -> &AnyPool {
        &self.pool
    }

    /// An sqlx error of this store as a [`StoreError`]: `Unavailable` when the database could not
    /// be reached, `Db` otherwise.
    pub fn err(&self, source: sqlx::Error) -> StoreError {
        if is_connection_error(&source) {
            StoreError::Unavailable { path: self.location.clone(), source }
        } else {
            StoreError::Db { path: self.location.clone(), source }
        }
    }

    // ---- clusters -----------------------------------------------------------------------

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

    fn cluster_from_row(r: &AnyRow) -> Result<ClusterRow, sqlx::Error> {
        ClusterRow::from_row(r)
    }

    /// The live (not terminated) cluster with this name.
    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE name = $1 AND status != 'TERMINATED'")
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
        let row = sqlx::query("SELECT * FROM clusters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(Self::cluster_from_row).transpose().map_err(|e| self.err(e))
    }

    /// The live cluster whose token hashes to `token_hash`.
    pub async fn cluster_by_token(&self, token: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE token_hash = $1 AND status != 'TERMINATED'")
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

    // ---- hosts and nodes --------------------------------------------------------------------

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
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
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

    // ---- heartbeats and cost -----------------------------------------------------------

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
        // Node totals only move forward: replayed (older) heartbeats never lower them.
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "UPDATE nodes SET last_heartbeat_at = $1, last_seq = MAX(last_seq, $2),
                   accrued_usd = MAX(accrued_usd, $3), metered_seconds = MAX(metered_seconds, $4),
                   idle_seconds = CASE WHEN $5 >= last_seq THEN $6 ELSE idle_seconds END
                 WHERE cluster_id = $7 AND node_id = $8"
            }
            Dialect::Postgres => {
                "UPDATE nodes SET last_heartbeat_at = $1, last_seq = GREATEST(last_seq, $2),
                   accrued_usd = GREATEST(accrued_usd, $3), metered_seconds = GREATEST(metered_seconds, $4),
                   idle_seconds = CASE WHEN $5 >= last_seq THEN $6 ELSE idle_seconds END
                 WHERE cluster_id = $7 AND node_id = $8"
            }
        };
        sqlx::query(sql)
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
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM heartbeats WHERE cluster_id = $1 AND node_id = $2")
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;
    use std::str::FromStr;

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
            sqlx::raw_sql(sqlx::AssertSqlSafe(include_str!("../migrations/sqlite/0001_initial.sql"))).execute(&pool).await.unwrap();
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
