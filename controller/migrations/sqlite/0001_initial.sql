-- The state store as of skycat 0.1 (clusters on SSH pools, managed jobs).
-- IF NOT EXISTS: databases created before versioned migrations already have these tables.

CREATE TABLE IF NOT EXISTS clusters (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        infra TEXT NOT NULL,
        pool TEXT NOT NULL,
        num_nodes INTEGER NOT NULL,
        price_per_hour REAL NOT NULL,
        spot INTEGER NOT NULL,
        token_hash TEXT NOT NULL,
        idle_minutes REAL,
        down_on_idle INTEGER NOT NULL DEFAULT 0,
        server_url TEXT,
        agent_version TEXT,
        task_json TEXT,
        autostopped_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        terminated_at TEXT
    );

CREATE UNIQUE INDEX IF NOT EXISTS clusters_live_name ON clusters(name) WHERE status != 'TERMINATED';

CREATE TABLE IF NOT EXISTS nodes (
        cluster_id TEXT NOT NULL,
        rank INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        pool TEXT NOT NULL,
        ip TEXT NOT NULL,
        port INTEGER NOT NULL,
        user TEXT NOT NULL,
        identity_file TEXT NOT NULL,
        state_dir TEXT NOT NULL,
        agent_bin TEXT NOT NULL,
        last_heartbeat_at TEXT,
        last_seq INTEGER NOT NULL DEFAULT 0,
        accrued_usd REAL NOT NULL DEFAULT 0,
        metered_seconds REAL NOT NULL DEFAULT 0,
        idle_seconds REAL,
        PRIMARY KEY (cluster_id, rank)
    );

CREATE TABLE IF NOT EXISTS host_reservations (
        pool TEXT NOT NULL,
        host TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        reserved_at TEXT NOT NULL,
        PRIMARY KEY (pool, host)
    );

CREATE TABLE IF NOT EXISTS jobs (
        cluster_id TEXT NOT NULL,
        job_id INTEGER NOT NULL,
        node_rank INTEGER NOT NULL,
        name TEXT,
        state TEXT NOT NULL,
        submitted_at TEXT,
        started_at TEXT,
        ended_at TEXT,
        exit_code INTEGER,
        reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (cluster_id, job_id, node_rank)
    );

CREATE TABLE IF NOT EXISTS heartbeats (
        cluster_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        accrued_usd REAL NOT NULL,
        idle_seconds REAL NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (cluster_id, node_id, seq)
    );

CREATE TABLE IF NOT EXISTS cost_ledger (
        cluster_id TEXT NOT NULL,
        cluster_name TEXT NOT NULL,
        node_id TEXT NOT NULL,
        launch_id TEXT NOT NULL,
        from_ts TEXT NOT NULL,
        to_ts TEXT NOT NULL,
        seconds REAL NOT NULL,
        price_per_hour REAL NOT NULL,
        usd REAL NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (cluster_id, node_id, launch_id, from_ts, kind)
    );

CREATE TABLE IF NOT EXISTS managed_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        task_json TEXT NOT NULL,
        use_spot INTEGER NOT NULL,
        strategy TEXT NOT NULL,
        max_restarts_on_errors INTEGER NOT NULL,
        status TEXT NOT NULL,
        recovery_count INTEGER NOT NULL DEFAULT 0,
        restarts_on_errors INTEGER NOT NULL DEFAULT 0,
        task_id TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        submitted_at TEXT NOT NULL,
        ended_at TEXT,
        failure_reason TEXT
    );

CREATE TABLE IF NOT EXISTS managed_attempts (
        job_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        cluster_name TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        pool TEXT NOT NULL,
        hosts TEXT NOT NULL,
        spot INTEGER NOT NULL,
        price_per_hour REAL NOT NULL,
        recovery_count INTEGER NOT NULL,
        agent_job_id INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        log TEXT,
        PRIMARY KEY (job_id, attempt)
    );

CREATE TABLE IF NOT EXISTS managed_blocks (
        job_id INTEGER NOT NULL,
        pool TEXT NOT NULL,
        host TEXT NOT NULL,
        scope TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, pool, host, scope)
    );

