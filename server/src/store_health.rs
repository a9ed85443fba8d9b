//! What `/healthz` says about the catalog store a replica reads (see [`crate::catalog_store`]):
//! the version it serves, the newest it has seen, how far behind it is, and whether the last
//! poll reached the store. Kept apart from the poller so that the health route needs no object
//! storage code.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// One version of the store, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoreVersion {
    pub version: u64,
    /// The version's content id (its folder under `versions/`).
    pub id: String,
    pub published_at: DateTime<Utc>,
}

/// The catalog store as this replica sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogStoreHealth {
    /// The store's URL (bucket and prefix; no credential).
    pub url: String,
    /// `current` (serving the newest version seen), `behind` (a newer version could not be
    /// loaded yet), `unreachable` (the last poll failed to reach the store: the last catalog
    /// keeps being served), `empty` (nothing published yet) or `starting`.
    pub status: String,
    /// The version in service; `null` while the replica serves its local catalog.
    pub serving: Option<StoreVersion>,
    /// The newest version the store has shown this replica.
    pub newest_seen: Option<StoreVersion>,
    pub versions_behind: u64,
    /// How long the newest version seen has been published without being served (0 when
    /// current).
    pub lag_seconds: f64,
    pub last_poll_at: Option<DateTime<Utc>>,
    /// The last poll that reached the store and found a readable manifest.
    pub last_ok_poll_at: Option<DateTime<Utc>>,
    /// The last poll's problem (one line), if it had one.
    pub last_error: Option<String>,
}

impl CatalogStoreHealth {
    pub fn starting(url: String) -> Self {
        CatalogStoreHealth {
            url,
            status: "starting".into(),
            serving: None,
            newest_seen: None,
            versions_behind: 0,
            lag_seconds: 0.0,
            last_poll_at: None,
            last_ok_poll_at: None,
            last_error: None,
        }
    }

    /// Recompute the derived fields (`versions_behind`, `lag_seconds`) as of `now`.
    pub fn with_lag(mut self, now: DateTime<Utc>) -> Self {
        let (behind, lag) = match (&self.serving, &self.newest_seen) {
            (Some(s), Some(n)) if n.id != s.id && n.version > s.version => {
                (n.version - s.version, (now - n.published_at).num_milliseconds().max(0) as f64 / 1000.0)
            }
            (None, Some(n)) => (n.version, (now - n.published_at).num_milliseconds().max(0) as f64 / 1000.0),
            _ => (0, 0.0),
        };
        self.versions_behind = behind;
        self.lag_seconds = lag;
        self
    }
}
