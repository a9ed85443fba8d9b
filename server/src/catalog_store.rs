//! A `skycat serve` replica reading its catalog from a catalog store (`--catalog-store
//! s3://bucket/prefix`; the protocol is `skycat_objects::catalog_store`), and the leader's
//! publish into it.
//!
//! - A poll is a conditional GET of the store manifest (`If-None-Match` its last ETag: an
//!   unchanged store answers 304 with no body). A new version is downloaded whole (every file
//!   checked against its SHA-256), written to `<cache>/<id>/catalogs/`, loaded as
//!   `$SKYCAT_HOME/catalogs` would be (prices from the replica's own config.yaml), and swapped in
//!   like a refresh. Any problem (store down, malformed manifest, missing or corrupt file, a file
//!   that does not load) keeps the catalog in service and is reported by `/healthz` and
//!   `/metrics`; the next poll tries again.
//! - The leader's refresh publishes the files it fetched ([`StoreReplica::publish_dir`]) and
//!   records the new version as the one it serves, so that its own next poll finds nothing new.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts};
use skycat_catalog::SkycatHome;
use skycat_objects::catalog_store::{
    catalog_files, CatalogStore, CatalogStoreError, ManifestRead, PublishOptions, Published, StoreManifest,
};
use tokio::sync::Mutex;

use crate::state::{AppState, CatalogSnapshot};
use crate::store_health::{CatalogStoreHealth, StoreVersion};

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The store's manifest is the one already served (or 304).
    Unchanged,
    /// Nothing published yet: the local catalog stays.
    Empty,
    /// A new version is in service.
    Swapped { version: u64, rows: usize },
    /// The store could not be read, or the new version could not be loaded: the catalog in
    /// service stays. One line.
    Failed(String),
}

struct StoreMetrics {
    polls: IntCounterVec,
    lag: Gauge,
    serving: IntGauge,
    newest: IntGauge,
}

impl StoreMetrics {
    fn new(state: &AppState) -> StoreMetrics {
        // Names and labels are constants: construction cannot fail.
        let polls = IntCounterVec::new(
            Opts::new("catalog_store_polls_total", "Catalog store polls by result (unchanged, swapped, empty, error)"),
            &["result"],
        )
        .expect("metric");
        let lag = Gauge::new(
            "catalog_store_lag_seconds",
            "Seconds the newest catalog store version seen has been published without being served",
        )
        .expect("metric");
        let serving = IntGauge::new("catalog_store_serving_version", "Catalog store version in service (0: none)").expect("metric");
        let newest = IntGauge::new("catalog_store_newest_version", "Newest catalog store version seen (0: none)").expect("metric");
        for c in [
            Box::new(polls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(lag.clone()),
            Box::new(serving.clone()),
            Box::new(newest.clone()),
        ] {
            // A second replica on the same state would register twice: keep the first.
            if let Err(e) = state.metrics.register(c) {
                tracing::debug!(error = %e, "catalog store metrics already registered");
            }
        }
        for r in ["unchanged", "swapped", "empty", "error"] {
            polls.with_label_values(&[r]);
        }
        StoreMetrics { polls, lag, serving, newest }
    }
}

struct Known {
    etag: Option<String>,
    health: CatalogStoreHealth,
}

/// One replica's link to the catalog store. See the module documentation.
pub struct StoreReplica {
    store: CatalogStore,
    state: Arc<AppState>,
    cache: PathBuf,
    prices: PathBuf,
    publish: PublishOptions,
    known: Mutex<Known>,
    metrics: StoreMetrics,
}

fn version_of(m: &StoreManifest) -> StoreVersion {
    StoreVersion { version: m.version, id: m.id.clone(), published_at: m.published_at }
}

impl StoreReplica {
    /// A replica of `state` reading `store`; downloaded versions go under `cache`, prices come
    /// from the config file `prices` (config.yaml, whose `prices:` section applies).
    pub fn new(store: CatalogStore, state: Arc<AppState>, cache: PathBuf, prices: PathBuf, publish: PublishOptions) -> Arc<StoreReplica> {
        let health = CatalogStoreHealth::starting(store.url());
        state.set_catalog_store_health(health.clone());
        let metrics = StoreMetrics::new(&state);
        Arc::new(StoreReplica { store, state, cache, prices, publish, known: Mutex::new(Known { etag: None, health }), metrics })
    }

    pub fn url(&self) -> String {
        self.store.url()
    }

    fn record(&self, known: &mut Known, result: &str) {
        let now = Utc::now();
        known.health.last_poll_at = Some(now);
        known.health = known.health.clone().with_lag(now);
        self.metrics.polls.with_label_values(&[result]).inc();
        self.metrics.lag.set(known.health.lag_seconds);
        self.metrics.serving.set(known.health.serving.as_ref().map_or(0, |v| v.version as i64));
        self.metrics.newest.set(known.health.newest_seen.as_ref().map_or(0, |v| v.version as i64));
        self.state.set_catalog_store_health(known.health.clone());
    }

    fn status_after_ok(h: &mut CatalogStoreHealth) {
        h.status = match (&h.serving, &h.newest_seen) {
            (Some(s), Some(n)) if s.id == n.id => "current",
            (_, None) => "empty",
            _ => "behind",
        }
        .into();
    }

    /// Poll the store once: see the module documentation.
    pub async fn poll_once(&self) -> PollOutcome {
        let mut known = self.known.lock().await;
        let read = self.store.read_manifest(known.etag.as_deref()).await;
        let now = Utc::now();
        match read {
            Ok(ManifestRead::Unchanged) => {
                known.health.last_ok_poll_at = Some(now);
                known.health.last_error = None;
                Self::status_after_ok(&mut known.health);
                self.record(&mut known, "unchanged");
                PollOutcome::Unchanged
            }
            Ok(ManifestRead::Missing) => {
                known.etag = None;
                known.health.last_ok_poll_at = Some(now);
                known.health.last_error = None;
                known.health.status = "empty".into();
                self.record(&mut known, "empty");
                PollOutcome::Empty
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(error = %msg, "catalog store poll failed; the catalog in service stays");
                known.health.last_error = Some(msg.clone());
                known.health.status =
                    if matches!(e, CatalogStoreError::Unreachable { .. }) { "unreachable" } else { "behind" }.into();
                self.record(&mut known, "error");
                PollOutcome::Failed(msg)
            }
            Ok(ManifestRead::Current { manifest, etag }) => {
                known.health.last_ok_poll_at = Some(now);
                known.health.newest_seen = Some(version_of(&manifest));
                if known.health.serving.as_ref().is_some_and(|s| s.id == manifest.id) {
                    known.etag = Some(etag);
                    known.health.last_error = None;
                    Self::status_after_ok(&mut known.health);
                    self.record(&mut known, "unchanged");
                    return PollOutcome::Unchanged;
                }
                match self.load_version(&manifest).await {
                    Ok(rows) => {
                        known.etag = Some(etag);
                        known.health.serving = Some(version_of(&manifest));
                        known.health.last_error = None;
                        Self::status_after_ok(&mut known.health);
                        self.record(&mut known, "swapped");
                        self.prune_cache(&manifest.id);
                        tracing::info!(version = manifest.version, id = %manifest.id, rows, "catalog store version swapped in");
                        PollOutcome::Swapped { version: manifest.version, rows }
                    }
                    Err(msg) => {
                        // The ETag is not remembered: the next poll fetches the manifest again and
                        // retries (or finds a newer version).
                        tracing::warn!(error = %msg, "catalog store version not loaded; the catalog in service stays");
                        known.health.last_error = Some(msg.clone());
                        known.health.status = "behind".into();
                        self.record(&mut known, "error");
                        PollOutcome::Failed(msg)
                    }
                }
            }
        }
    }

    /// Download, write, load and swap in `m`; returns its rows.
    async fn load_version(&self, m: &StoreManifest) -> Result<usize, String> {
        let files = self.store.download(m).await.map_err(|e| e.to_string())?;
        let home = SkycatHome::new(self.cache.join(&m.id));
        let prices = self.prices.clone();
        let version = m.version;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let dir = home.catalogs_dir();
            // A folder left by an earlier, interrupted download is replaced whole.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for (name, bytes) in &files {
                skycat_catalog::fsutil::write_atomic(&dir.join(name), bytes).map_err(|e| e.to_string())?;
            }
            let data = crate::fetch::load_catalog_priced(&home, &prices, true)
                .map_err(|e| format!("catalog store version {version}: {}", crate::refresh::error_chain(e.as_ref())))?;
            if data.offers.is_empty() {
                return Err(format!("catalog store version {version}: an empty catalog"));
            }
            let rows = data.offers.len();
            let snap = CatalogSnapshot::build(data, state.snapshot().version + 1);
            state.swap(snap);
            Ok(rows)
        })
        .await
        .map_err(|e| format!("loading catalog store version {version} failed: {e}"))?
    }

    /// Remove downloaded versions other than `keep` (the one in service reads from memory; its
    /// folder stays so that an operator can inspect what is served).
    fn prune_cache(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.cache) else { return };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy() != keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The leader's publish: the catalog files of `catalogs` (a `$SKYCAT_HOME/catalogs`) as the
    /// store's next version. The version becomes the one this replica serves (its caller swaps
    /// in the same catalog), so its next poll finds nothing new.
    pub async fn publish_dir(&self, catalogs: &Path) -> Result<Published, CatalogStoreError> {
        let mut known = self.known.lock().await;
        let dir = catalogs.to_path_buf();
        let files = tokio::task::spawn_blocking(move || catalog_files(&dir))
            .await
            .map_err(|e| CatalogStoreError::Local(format!("reading {}: {e}", catalogs.display())))??;
        let published = self.store.publish(files, &self.publish).await?;
        if let Some(e) = &published.prune_error {
            tracing::warn!(error = %e, "catalog store: pruning old versions failed");
        }
        known.etag = Some(published.etag.clone());
        let v = version_of(&published.manifest);
        known.health.serving = Some(v.clone());
        known.health.newest_seen = Some(v);
        known.health.last_error = None;
        known.health.last_ok_poll_at = Some(Utc::now());
        known.health.status = "current".into();
        let h = known.health.clone().with_lag(Utc::now());
        known.health = h;
        self.state.set_catalog_store_health(known.health.clone());
        self.metrics.serving.set(published.manifest.version as i64);
        self.metrics.newest.set(published.manifest.version as i64);
        tracing::info!(version = published.manifest.version, id = %published.manifest.id, "catalog published to the store");
        Ok(published)
    }

    /// Poll every `interval`, forever, in a background task.
    pub fn spawn_poller(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let outcome = self.poll_once().await;
                tracing::debug!(?outcome, "catalog store poll");
            }
        })
    }
}
