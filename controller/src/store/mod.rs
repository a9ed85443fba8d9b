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

mod clusters;
mod heartbeat_batch;
mod heartbeats;
mod nodes;
pub use heartbeat_batch::{BatchOutcome, HeartbeatIn};
#[cfg(test)]
mod tests;

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
#[derive(Debug, Clone, Copy, PartialEq)]
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
}
