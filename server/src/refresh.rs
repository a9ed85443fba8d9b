//! The catalog refresh: an injectable action (the real one runs the fetchers and reloads
//! `$SKYCAT_HOME`), run on a cron schedule in a background task, swapping the catalog atomically.
//!
//! A failed refresh (an error, a panic, or an empty result) leaves the catalog in service as it
//! was and records the error for `GET /catalog/status` and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::state::{AppState, CatalogData, CatalogSnapshot, RefreshOutcome};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub type RefreshError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What one refresh tick produced.
pub enum Refreshed {
    /// A new catalog, to swap in.
    Catalog(CatalogData),
    /// Nothing, on purpose: this replica's catalog comes from elsewhere (a follower of a replica
    /// set with a catalog store gets the leader's publishes from its store poller). The reason,
    /// one line. The catalog in service is left alone, so a tick can never step it back.
    Deferred(String),
}

impl From<CatalogData> for Refreshed {
    fn from(data: CatalogData) -> Self {
        Refreshed::Catalog(data)
    }
}

/// Produces a new catalog. The server calls it on each scheduled tick (and tests call it through
/// [`Refresher::refresh_now`]).
pub trait RefreshAction: Send + Sync + 'static {
    fn refresh(&self) -> BoxFuture<Result<Refreshed, RefreshError>>;
}

/// Any `Fn() -> impl Future<Output = Result<CatalogData, RefreshError>>` is a refresh action.
impl<F, Fut> RefreshAction for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CatalogData, RefreshError>> + Send + 'static,
{
    fn refresh(&self) -> BoxFuture<Result<Refreshed, RefreshError>> {
        let fut = self();
        Box::pin(async move { fut.await.map(Refreshed::Catalog) })
    }
}

/// Runs refreshes one at a time and swaps their result into the [`AppState`].
pub struct Refresher {
    state: Arc<AppState>,
    action: Arc<dyn RefreshAction>,
    running: Mutex<()>,
}

/// The error chain on one line: `outer: cause: root cause`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

impl Refresher {
    pub fn new(state: Arc<AppState>, action: Arc<dyn RefreshAction>) -> Self {
        Refresher { state, action, running: Mutex::new(()) }
    }

    /// Run the action now (waiting for a refresh already running to finish first), swap in its
    /// catalog on success, and record the outcome. A deferred tick swaps nothing and records
    /// nothing (it is not a refresh: the last one's outcome and the refresh metrics stay); its
    /// outcome says `deferred`.
    pub async fn refresh_now(&self) -> RefreshOutcome {
        let _one_at_a_time = self.running.lock().await;
        let started_at = Utc::now();
        // The action runs in its own task so that a panic in it becomes a failed refresh.
        let action = self.action.clone();
        let result = match tokio::spawn(async move { action.refresh().await }).await {
            Ok(Ok(Refreshed::Deferred(reason))) => {
                tracing::debug!(%reason, "scheduled refresh deferred");
                return RefreshOutcome {
                    started_at,
                    finished_at: Utc::now(),
                    ok: true,
                    error: None,
                    rows: None,
                    warnings: Vec::new(),
                    version: self.state.snapshot().version,
                    deferred: Some(reason),
                };
            }
            Ok(Ok(Refreshed::Catalog(data))) if data.offers.is_empty() => {
                Err("the refresh produced an empty catalog; keeping the catalog in service".to_owned())
            }
            Ok(Ok(Refreshed::Catalog(mut data))) => {
                let version = self.state.snapshot().version + 1;
                let warnings = std::mem::take(&mut data.warnings);
                match tokio::task::spawn_blocking(move || CatalogSnapshot::build(data, version)).await {
                    Ok(snap) => Ok((snap, warnings)),
                    Err(e) => Err(format!("building the catalog index failed: {e}")),
                }
            }
            Ok(Err(e)) => Err(error_chain(e.as_ref())),
            Err(join) => Err(format!("the refresh task failed: {join}")),
        };
        let outcome = match result {
            Ok((snap, warnings)) => {
                let rows = snap.offers().len();
                let version = snap.version;
                self.state.swap(snap);
                tracing::info!(rows, version, warnings = warnings.len(), "catalog refreshed and swapped in");
                RefreshOutcome {
                    started_at,
                    finished_at: Utc::now(),
                    ok: true,
                    error: None,
                    rows: Some(rows),
                    warnings,
                    version,
                    deferred: None,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "catalog refresh failed; the previous catalog stays in service");
                RefreshOutcome {
                    started_at,
                    finished_at: Utc::now(),
                    ok: false,
                    error: Some(error),
                    rows: None,
                    warnings: Vec::new(),
                    version: self.state.snapshot().version,
                    deferred: None,
                }
            }
        };
        self.state.set_last_refresh(outcome.clone());
        outcome
    }

    /// Refresh at every time the schedule names (UTC), forever, in a background task.
    pub fn spawn_cron(self: Arc<Self>, schedule: cron::Schedule) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let Some(next) = schedule.upcoming(Utc).next() else {
                    tracing::info!(schedule = %schedule.source(), "the refresh schedule has no further times");
                    return;
                };
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                let outcome = self.refresh_now().await;
                tracing::debug!(ok = outcome.ok, "scheduled refresh done");
            }
        })
    }
}

/// Parse a cron expression (`sec min hour day-of-month month day-of-week [year]`, as the `cron`
/// crate reads it), with a one-line error naming the expression.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    use std::str::FromStr;
    cron::Schedule::from_str(expr.trim()).map_err(|e| {
        // The cron crate's message spans lines (it draws a caret under the input): keep the
        // explanation, on one line.
        let e = e.to_string();
        let e = e.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "^" && *l != expr.trim()).collect::<Vec<_>>().join(" ");
        format!(
            "invalid refresh schedule `{expr}`: {e} (expected 6 or 7 fields: sec min hour day month weekday [year], e.g. \"0 0 */6 * * *\")"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_helpful_errors() {
        let s = parse_schedule("0 0 */6 * * *").unwrap();
        let mut it = s.upcoming(Utc);
        let a = it.next().unwrap();
        let b = it.next().unwrap();
        assert_eq!((b - a).num_hours(), 6);
        let err = parse_schedule("every six hours").unwrap_err();
        assert!(err.contains("every six hours"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn error_chain_joins_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("fetch aws failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&e), "fetch aws failed: connection refused");
    }
}
