//! Which `skycat serve` replica leads: the one that runs the managed-jobs controller and the cron
//! catalog refresh. Every replica answers every request; only these background duties need one
//! owner.
//!
//! On PostgreSQL the leader holds a session advisory lock (`pg_try_advisory_lock`) on a
//! connection of its own, outside the pool. PostgreSQL releases the lock the moment that session
//! ends, so a killed leader's lock is free as soon as its socket closes; the followers try for it
//! every `takeover / 3` and one of them leads within `takeover`. A leader checks its session on
//! the same beat and steps down (stops its duties) when the check fails: it no longer knows it
//! holds the lock. On SQLite there is one replica (one file, one host): it always leads.

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

async fn lease_loop(state: Arc<LeaderState>, connect: AnyConnectOptions, opts: LeaseOptions) {
    let beat = (opts.takeover / 3).max(Duration::from_millis(100));
    let mut session: Option<AnyConnection> = None;
    loop {
        let holds = match session.as_mut() {
            // The lock lives as long as this session: a session that answers still holds it.
            Some(conn) => matches!(tokio::time::timeout(beat, conn.ping()).await, Ok(Ok(()))),
            None => match tokio::time::timeout(beat, try_lock(&connect)).await {
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
            session = None;
        }
        set(&state, holds);
        tokio::time::sleep(beat).await;
    }
}

/// A new session that holds the lease, or None when another replica holds it.
async fn try_lock(connect: &AnyConnectOptions) -> Result<Option<AnyConnection>, sqlx::Error> {
    let mut conn = connect.connect().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEASE_KEY).fetch_one(&mut conn).await?;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}
