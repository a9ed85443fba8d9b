//! Managed jobs with several `skycat serve` replicas on one PostgreSQL database: any replica
//! records a submitted job; only the leader ([`crate::leader`]) drives jobs. The leader claims
//! unfinished jobs whose claim is not its current term's with `SELECT … FOR UPDATE SKIP LOCKED`
//! (two replicas that both think they lead, for the instant a lease changes hands, never claim
//! the same row), writes its term into `claimed_by` and resumes them as a restarted server does:
//! a running attempt is re-adopted, a recovery in progress continues from the attempts table, so
//! no attempt is made twice. A replica that stops leading stops its drives at once.

use super::*;
use crate::leader::Leadership;
use crate::store::Dialect;

/// A replica's identity and lease.
#[derive(Clone)]
pub(super) struct Replica {
    id: String,
    leadership: Leadership,
}

const UNFINISHED: &str = "status NOT IN ('SUCCEEDED','FAILED','FAILED_SETUP','FAILED_NO_RESOURCE','FAILED_CONTROLLER','CANCELLED')";

impl Managed {
    /// The managed-jobs controller of one replica among several: drives jobs only while
    /// `leadership` says this replica leads (checked every `beat`).
    pub async fn new_replica(ctl: Controller, opts: ManagedOptions, catalog: CatalogSource, leadership: Leadership) -> Result<Managed> {
        let secrets = SecretBox::load(&ctl.home).context("managed jobs: the key that seals job requests")?;
        let ctl = ctl.with_ssh_connect_timeout(opts.ssh_connect_timeout);
        let id = crate::store::random_hex(6)?;
        let replica = Some(Replica { id, leadership: leadership.clone() });
        let m = Managed { inner: Arc::new(Inner { ctl, opts, catalog, secrets, tasks: std::sync::Mutex::new(Vec::new()), replica }) };
        let me = m.clone();
        tokio::spawn(async move { me.leader_duties(leadership).await });
        Ok(m)
    }

    /// The claim tag of the current term, when this replica leads (always, without replicas).
    fn claim_tag(&self) -> Option<String> {
        match &self.inner.replica {
            None => Some(String::new()),
            Some(r) if r.leadership.is_leader() => Some(format!("{}:{}", r.id, r.leadership.term())),
            Some(_) => None,
        }
    }

    /// Marks a just-inserted job as this leader's (inside the submitting transaction); false on a
    /// follower, which leaves it for the leader to claim.
    pub(super) async fn claim_new(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: i64) -> Result<bool> {
        let Some(tag) = self.claim_tag() else { return Ok(false) };
        if self.inner.replica.is_some() {
            sqlx::query("UPDATE managed_jobs SET claimed_by = $1 WHERE id = $2").bind(tag).bind(id).execute(&mut **tx).await?;
        }
        Ok(true)
    }

    async fn leader_duties(&self, leadership: Leadership) {
        let mut role = leadership.subscribe();
        let mut led_term = 0;
        loop {
            if leadership.is_leader() {
                if let Err(e) = self.adopt_unclaimed().await {
                    tracing::warn!("managed jobs: claiming work: {e:#}");
                }
                led_term = leadership.term();
            } else if led_term != 0 {
                tracing::warn!("managed jobs: this replica stopped leading; its job controllers stop (the new leader resumes them)");
                self.shutdown();
                led_term = 0;
            }
            tokio::select! {
                _ = role.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Claims (for this leader's term) and resumes unfinished jobs claimed by no one or by an
    /// older term.
    async fn adopt_unclaimed(&self) -> Result<()> {
        let Some(tag) = self.claim_tag() else { return Ok(()) };
        let lock = match self.inner.ctl.store.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            // One SQLite writer at a time: the transaction is the lock.
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM managed_jobs WHERE {UNFINISHED} AND (claimed_by IS NULL OR claimed_by <> $1) ORDER BY id LIMIT 32{lock}"
        );
        let mut tx = self.db().begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&tag).fetch_all(&mut *tx).await?;
        for id in &ids {
            sqlx::query("UPDATE managed_jobs SET claimed_by = $1 WHERE id = $2").bind(&tag).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if !ids.is_empty() {
            tracing::info!(jobs = ids.len(), claim = %tag, "managed jobs: claimed as leader");
            self.resume_ids(ids).await?;
        }
        Ok(())
    }

    /// This replica's role (`leader`/`follower`; `leader` without replicas).
    pub fn role(&self) -> &'static str {
        self.inner.replica.as_ref().map(|r| r.leadership.role()).unwrap_or("leader")
    }
}
