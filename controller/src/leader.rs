//! Which `skycat serve` replica leads: the one that runs the managed-jobs controller and the cron
//! catalog refresh. Every replica answers every request; only these background duties need one
//! owner.
//!
//! On PostgreSQL the leader holds a session advisory lock (`pg_try_advisory_lock`) on a
//! connection of its own, outside the pool. PostgreSQL releases the lock the moment that session
//! ends, so a killed leader's lock is free as soon as its socket closes. Times, with `T` the
//! takeover time and `c = T / 5` the beat:
//! - followers try for the lock every `c`;
//! - the leader checks its session every `c`, each check allowed `c`, and steps down (stops its
//!   duties) when a check fails or times out: it no longer knows it holds the lock. So it stops
//!   at most `2c` after the send of its last answered check;
//! - a leader cut off from the database without its socket closing (a network partition, a hung
//!   host) would keep its session, and the lock, until TCP gives up (hours with default
//!   keepalives). The lease session therefore sets `idle_session_timeout = 3c`: the server ends it
//!   `3c` after answering the last check, which is after that check was sent, so the lock is
//!   released only after the old leader stopped (a margin of `c`), and at most `3c` after the
//!   cut; a follower leads within `4c = 0.8 T`. Server-side TCP keepalives on the same session
//!   are a second line (PostgreSQL < 14 has no `idle_session_timeout`).
//!
//! On SQLite there is one replica (one file, one host): it always leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection};
use tokio::sync::watch;

/// The advisory-lock key of the leader lease ("skycat" in ASCII).
pub const LEASE_KEY: i64 = 0x736b_7963_6174;

/// How the lease is kept.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// A follower leads at most this long after the leader died.
    pub takeover: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions { takeover: Duration::from_secs(15) }
    }
}

#[derive(Debug)]
struct LeaderState {
    leader: AtomicBool,
    changes: AtomicU64,
    since: Mutex<Option<Instant>>,
    /// Increments each time this replica becomes leader: work claimed under an older term is
    /// re-adopted (the drives of that term were stopped when it stepped down).
    term: AtomicU64,
    tx: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// This replica's view of the lease (cheap to clone).
#[derive(Debug, Clone)]
pub struct Leadership {
    state: Arc<LeaderState>,
}

impl Leadership {
    fn new(leader: bool) -> Leadership {
        let (tx, _) = watch::channel(leader);
        let s = LeaderState {
            leader: AtomicBool::new(leader),
            changes: AtomicU64::new(u64::from(leader)),
            since: Mutex::new(leader.then(Instant::now)),
            term: AtomicU64::new(u64::from(leader)),
            tx,
            task: Mutex::new(None),
        };
        Leadership { state: Arc::new(s) }
    }

    /// The only replica (SQLite): leads from the start, forever.
    pub fn always() -> Leadership {
        Leadership::new(true)
    }

    /// Competes for the lease on the PostgreSQL database at `url` in a background task.
    pub fn compete(url: &str, opts: LeaseOptions) -> Result<Leadership, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let connect: AnyConnectOptions = url.parse()?;
        let me = Leadership::new(false);
        let state = me.state.clone();
        let h = tokio::spawn(async move { lease_loop(state, connect, opts).await });
        *me.state.task.lock().expect("leader task lock") = Some(h.abort_handle());
        Ok(me)
    }

    pub fn is_leader(&self) -> bool {
        self.state.leader.load(Ordering::SeqCst)
    }

    /// `leader` or `follower`.
    pub fn role(&self) -> &'static str {
        if self.is_leader() {
            "leader"
        } else {
            "follower"
        }
    }

    /// How many times this replica became or stopped being leader.
    pub fn changes(&self) -> u64 {
        self.state.changes.load(Ordering::SeqCst)
    }

    /// The current leadership term of this replica (0 before it first led).
    pub fn term(&self) -> u64 {
        self.state.term.load(Ordering::SeqCst)
    }

    /// How long this replica has led, if it leads.
    pub fn lease_age(&self) -> Option<Duration> {
        self.state.since.lock().ok().and_then(|s| s.map(|t| t.elapsed()))
    }

    /// Role changes: `true` when this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.tx.subscribe()
    }

    /// Stops competing and gives the lease up (its session closes with the task).
    pub fn resign(&self) {
        if let Some(h) = self.state.task.lock().ok().and_then(|mut t| t.take()) {
            h.abort();
        }
        set(&self.state, false);
    }

    /// Prometheus text: role, leader changes, lease age.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP skycat_replica_leader 1 when this replica leads (runs managed jobs and the cron refresh).\n\
             # TYPE skycat_replica_leader gauge\nskycat_replica_leader {}\n\
             # HELP skycat_leader_changes_total Times this replica became or stopped being leader.\n\
             # TYPE skycat_leader_changes_total counter\nskycat_leader_changes_total {}\n\
             # HELP skycat_leader_lease_age_seconds How long this replica has held the leader lease (0 when following).\n\
             # TYPE skycat_leader_lease_age_seconds gauge\nskycat_leader_lease_age_seconds {:.3}\n",
            u8::from(self.is_leader()),
            self.changes(),
            self.lease_age().map(|d| d.as_secs_f64()).unwrap_or(0.0)
        )
    }
}

fn set(state: &LeaderState, leader: bool) {
    if state.leader.swap(leader, Ordering::SeqCst) != leader {
        state.changes.fetch_add(1, Ordering::SeqCst);
        if leader {
            state.term.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut s) = state.since.lock() {
            *s = leader.then(Instant::now);
        }
        state.tx.send_replace(leader);
        tracing::info!(role = if leader { "leader" } else { "follower" }, "replica role changed");
    }
}

/// The beat `c` of the lease: follower tries, leader checks, and each check's time limit.
pub fn lease_beat(opts: LeaseOptions) -> Duration {
    (opts.takeover / 5).max(Duration::from_millis(60))
}

async fn lease_loop(state: Arc<LeaderState>, connect: AnyConnectOptions, opts: LeaseOptions) {
    let beat = lease_beat(opts);
    let mut session: Option<AnyConnection> = None;
    loop {
        let holds = match session.as_mut() {
            // The lock lives as long as this session: a session that answers within the beat
            // still holds it (and the server's idle clock restarts).
            Some(conn) => match tokio::time::timeout(beat, conn.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!("leader lease: the lease session failed ({e}); stepping down");
                    false
                }
                Err(_) => {
                    tracing::warn!(
                        "leader lease: the database did not answer within {beat:?}; stepping down (its server ends the lease session {:?} after the last answer)",
                        beat * 3
                    );
                    false
                }
            },
            None => match tokio::time::timeout(beat, try_lock(&connect, beat)).await {
                Ok(Ok(Some(conn))) => {
                    session = Some(conn);
                    true
                }
                Ok(Ok(None)) => false,
                Ok(Err(e)) => {
                    tracing::debug!("leader lease: {e}");
                    false
                }
                Err(_) => false,
            },
        };
        if !holds {
            // Dropped, not closed: closing waits on a database that may not answer.
            session = None;
        }
        set(&state, holds);
        tokio::time::sleep(beat).await;
    }
}

/// A new session that holds the lease, or None when another replica holds it. The session is
/// bounded by the server before it takes the lock (see the module documentation).
async fn try_lock(connect: &AnyConnectOptions, beat: Duration) -> Result<Option<AnyConnection>, sqlx::Error> {
    let mut conn = connect.connect().await?;
    bound_session(&mut conn, beat).await;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEASE_KEY).fetch_one(&mut conn).await?;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// Server-side limits of the lease session: `idle_session_timeout = 3 beats` (PostgreSQL 14+),
/// and TCP keepalives that notice a dead peer in about as long (whole seconds, at least 1).
async fn bound_session(conn: &mut AnyConnection, beat: Duration) {
    let idle = format!("{}ms", (beat * 3).as_millis());
    if let Err(e) = set_config(conn, "idle_session_timeout", &idle).await {
        tracing::warn!(
            "leader lease: cannot set idle_session_timeout ({e}); a leader cut off from the database keeps the lease until TCP keepalives end its session"
        );
    }
    let secs = beat.as_secs().max(1).to_string();
    for (name, value) in [("tcp_keepalives_idle", secs.as_str()), ("tcp_keepalives_interval", secs.as_str()), ("tcp_keepalives_count", "2")] {
        if let Err(e) = set_config(conn, name, value).await {
            tracing::debug!("leader lease: cannot set {name}: {e}");
        }
    }
}

async fn set_config(conn: &mut AnyConnection, name: &str, value: &str) -> Result<(), sqlx::Error> {
    let _: String =
        sqlx::query_scalar("SELECT set_config($1, $2, false)").bind(name.to_owned()).bind(value.to_owned()).fetch_one(conn).await?;
    Ok(())
}
