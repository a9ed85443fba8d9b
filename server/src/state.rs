//! The catalog in service: an immutable snapshot behind an `ArcSwap`.
//!
//! A request loads the current `Arc<CatalogSnapshot>` once and works on it to the end; a refresh
//! builds a whole new snapshot (offers, optimizer index, summaries) off to the side and swaps the
//! pointer. Requests in flight keep the old snapshot alive until they finish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use skycat_catalog::Offer;
use skycat_optimizer::{EgressTable, OfferIndex};
use utoipa::ToSchema;

use crate::metrics::Metrics;

/// Where one cloud's rows came from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CloudSource {
    pub cloud: String,
    /// The API or file the figures came from (several joined by `; ` if rows disagree).
    pub source: String,
    /// `embedded` (shipped with the binary), `user` ($SKYCAT_HOME/catalogs) or `memory`.
    pub origin: String,
    /// The file the rows were read from, for `user` catalogs.
    pub path: Option<String>,
    /// The date the provider's prices are valid for (or its version id), from the manifest.
    pub as_of: Option<String>,
    /// When the rows were fetched (the manifest's figure, else the newest `fetched_at` of the
    /// rows). Staleness is measured from this.
    pub fetched_at: Option<DateTime<Utc>>,
    pub rows: usize,
    /// Regions whose last fetch failed.
    pub regions_failed: Vec<String>,
    /// Regions serving rows kept from an earlier fetch because the last one failed for them.
    pub stale_regions: Vec<String>,
}

/// What a load or a refresh produces: the offers and their provenance per cloud.
#[derive(Debug, Clone, Default)]
pub struct CatalogData {
    pub offers: Vec<Offer>,
    /// Per-cloud provenance. Clouds that have rows but no entry here get one derived from the
    /// rows themselves (see [`CatalogData::complete_sources`]).
    pub sources: Vec<CloudSource>,
    /// Problems that did not stop the load/refresh (a cloud or region that failed to fetch and
    /// kept its previous rows); shown in the refresh outcome.
    pub warnings: Vec<String>,
}

impl CatalogData {
    /// Offers only; provenance is derived from the rows (`origin` = `memory`).
    pub fn from_offers(offers: Vec<Offer>) -> Self {
        let mut data = CatalogData { offers, sources: Vec::new(), warnings: Vec::new() };
        data.complete_sources("memory");
        data
    }

    /// Give every cloud with rows a source entry, and correct row counts to the rows present.
    pub fn complete_sources(&mut self, origin: &str) {
        self.sources = completed_sources(&self.offers, std::mem::take(&mut self.sources), origin);
    }
}

/// Per cloud: rows, the newest `fetched_at`, and the distinct sources.
type CloudRows<'a> = BTreeMap<&'a str, (usize, Option<DateTime<Utc>>, BTreeSet<&'a str>)>;

/// `sources` with an entry for every cloud of `offers` and row counts of the rows present.
fn completed_sources(offers: &[Offer], given: Vec<CloudSource>, origin: &str) -> Vec<CloudSource> {
    let mut per_cloud: CloudRows = BTreeMap::new();
    // Rows come grouped by cloud, mostly with one source each: look the cloud up once per
    // run of rows and the source once per change, not once per row.
    let mut rest: &[Offer] = offers;
    while let Some(first) = rest.first() {
        let run = rest.iter().position(|o| o.cloud != first.cloud).unwrap_or(rest.len());
        let e = per_cloud.entry(first.cloud.as_ref()).or_default();
        let mut last_source = None;
        for o in &rest[..run] {
            e.0 += 1;
            e.1 = Some(e.1.map_or(o.fetched_at, |t| t.max(o.fetched_at)));
            if last_source != Some(o.source.as_ref()) {
                e.2.insert(o.source.as_ref());
                last_source = Some(o.source.as_ref());
            }
        }
        rest = &rest[run..];
    }
    let mut sources: Vec<CloudSource> = Vec::new();
    for (cloud, (rows, as_of, srcs)) in &per_cloud {
        match given.iter().find(|s| s.cloud == *cloud) {
            Some(s) => sources.push(CloudSource {
                rows: *rows,
                fetched_at: s.fetched_at.or(*as_of),
                ..s.clone()
            }),
            None => sources.push(CloudSource {
                cloud: (*cloud).to_owned(),
                source: srcs.iter().copied().collect::<Vec<_>>().join("; "),
                origin: origin.to_owned(),
                path: None,
                as_of: None,
                fetched_at: *as_of,
                rows: *rows,
                regions_failed: Vec::new(),
                stale_regions: Vec::new(),
            }),
        }
    }
    sources
}

/// Cheapest offer of one accelerator on one cloud, for one market.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PricePoint {
    /// USD per device-hour (instance price / accelerator count).
    pub price_per_accelerator: f64,
    /// USD per instance-hour.
    pub instance_price: f64,
    pub instance_type: String,
    pub accelerator_count: f64,
    pub region: String,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuCloud {
    pub cloud: String,
    pub cheapest_on_demand: Option<PricePoint>,
    pub cheapest_spot: Option<PricePoint>,
}

/// One accelerator in `GET /catalog/gpus`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuSummary {
    pub accelerator: String,
    pub vendor: Option<String>,
    /// Memory per device, GiB.
    pub memory_gib: Option<f64>,
    /// Device counts per instance on offer, ascending.
    pub counts: Vec<f64>,
    /// Offers (rows) carrying this accelerator.
    pub offers: usize,
    pub clouds: Vec<GpuCloud>,
}

/// An immutable catalog version with everything derived from it.
pub struct CatalogSnapshot {
    /// The optimizer's index; it owns the offers (see [`CatalogSnapshot::offers`]).
    pub index: OfferIndex,
    pub loaded_at: DateTime<Utc>,
    pub sources: Vec<CloudSource>,
    /// Increases by one with each swap; 1 for the catalog loaded at start.
    pub version: u64,
    pub gpus: Vec<GpuSummary>,
    /// Canonical accelerator names present, for validating `?accelerator=`.
    pub accelerator_names: Vec<String>,
    pub clouds: Vec<String>,
}

impl CatalogSnapshot {
    /// Build the optimizer index and the summaries. CPU-bound (≈ linear in rows): refreshes run
    /// it on a blocking thread.
    pub fn build(data: CatalogData, version: u64) -> Self {
        let CatalogData { offers, sources, .. } = data;
        // The index takes the offers over (no copy of every row); the summaries are made from
        // the same rows on a second thread meanwhile.
        let (index, (sources, gpus)) = OfferIndex::from_offers_alongside(offers, |offers| {
            (completed_sources(offers, sources, "memory"), gpu_summaries(offers))
        });
        let accelerator_names = gpus.iter().map(|g| g.accelerator.clone()).collect();
        let clouds = sources.iter().map(|s| s.cloud.clone()).collect();
        CatalogSnapshot {
            index,
            loaded_at: Utc::now(),
            sources,
            version,
            gpus,
            accelerator_names,
            clouds,
        }
    }

    /// Every offer of this catalog version, in load order.
    pub fn offers(&self) -> &[Offer] {
        self.index.offers()
    }
}

/// Per accelerator: counts, offers and the cheapest on-demand and spot offer per cloud (what
/// `GET /catalog/gpus` and the dashboard's price table show).
pub(crate) fn gpu_summaries<'a>(offers: impl IntoIterator<Item = &'a Offer>) -> Vec<GpuSummary> {
    struct Acc<'a> {
        vendor: Option<&'a str>,
        memory: Option<f64>,
        counts: Vec<f64>,
        offers: usize,
        clouds: BTreeMap<&'a str, (Option<&'a Offer>, Option<&'a Offer>)>,
    }
    fn per_device(o: &Offer, spot: bool) -> Option<f64> {
        o.price_for(spot).filter(|p| p.is_finite() && *p > 0.0).map(|p| p / o.accelerator_count)
    }
    fn better(cur: Option<&Offer>, cand: &Offer, spot: bool) -> bool {
        match (per_device(cand, spot), cur.and_then(|c| per_device(c, spot))) {
            (Some(_), None) => true,
            (Some(a), Some(b)) => a < b,
            _ => false,
        }
    }
    let mut by_name: BTreeMap<&str, Acc> = BTreeMap::new();
    for o in offers.into_iter().filter(|o| o.has_accelerator()) {
        let Some(name) = o.accelerator_name.as_deref() else { continue };
        let acc = by_name.entry(name).or_insert_with(|| Acc {
            vendor: None,
            memory: None,
            counts: Vec::new(),
            offers: 0,
            clouds: BTreeMap::new(),
        });
        acc.offers += 1;
        acc.vendor = acc.vendor.or(o.accelerator_vendor.as_deref());
        acc.memory = acc.memory.or(o.accelerator_memory_gib);
        if !acc.counts.contains(&o.accelerator_count) {
            acc.counts.push(o.accelerator_count);
        }
        let c = acc.clouds.entry(o.cloud.as_ref()).or_default();
        if better(c.0, o, false) {
            c.0 = Some(o);
        }
        if better(c.1, o, true) {
            c.1 = Some(o);
        }
    }
    let point = |o: Option<&Offer>, spot: bool| -> Option<PricePoint> {
        let o = o?;
        Some(PricePoint {
            price_per_accelerator: per_device(o, spot)?,
            instance_price: o.price_for(spot)?,
            instance_type: o.instance_type.to_string(),
            accelerator_count: o.accelerator_count,
            region: o.region.to_string(),
            zone: o.zone.as_deref().map(str::to_string),
        })
    };
    by_name
        .into_iter()
        .map(|(name, mut acc)| {
            acc.counts.sort_by(f64::total_cmp);
            GpuSummary {
                accelerator: name.to_owned(),
                vendor: acc.vendor.map(str::to_owned),
                memory_gib: acc.memory,
                counts: acc.counts,
                offers: acc.offers,
                clouds: acc
                    .clouds
                    .into_iter()
                    .map(|(cloud, (od, spot))| GpuCloud {
                        cloud: cloud.to_owned(),
                        cheapest_on_demand: point(od, false),
                        cheapest_spot: point(spot, true),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The outcome of the last refresh, shown by `GET /catalog/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefreshOutcome {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// The error chain, one line, when `ok` is false. The previous catalog stays in service.
    pub error: Option<String>,
    /// Rows in the catalog swapped in, when `ok`.
    pub rows: Option<usize>,
    /// Problems of a refresh that still swapped in a catalog (e.g. one cloud failed to fetch
    /// and kept its previous rows).
    pub warnings: Vec<String>,
    /// Catalog version in service after this refresh.
    pub version: u64,
    /// Set when this tick fetched nothing on purpose (a follower whose catalog comes from the
    /// catalog store): why. Such a tick is never recorded as the last refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
}

/// Settings that shape request handling.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, bytes (413 above).
    pub body_limit: usize,
    /// Per-request time limit (503 with a JSON error after it).
    pub request_timeout: Duration,
    /// A cloud whose prices are older than this is reported `stale` by `/catalog/status`.
    pub stale_after: Duration,
    /// Largest `limit` accepted by `/catalog/offers`.
    pub max_offers_limit: usize,
    /// The API token checker; None = no tokens exist (only for embedding the read routes).
    pub auth: Option<crate::auth::Auth>,
    /// Whether `/optimize`, `/catalog/*`, `/metrics` and `/openapi.json` answer without a token.
    /// Without [`auth`](Self::auth) they always do.
    pub public_read: bool,
    /// The skycat home whose `history/` the dashboard's price-history page reads;
    /// None: that page says there is no history to show.
    pub home: Option<skycat_catalog::SkycatHome>,
    /// One replica of several on a shared state database: its role and database in `/healthz`
    /// and `/metrics`, and a cron refresh that only the leader fetches for.
    pub replica: Option<crate::replica::Replica>,
    /// The managed-jobs controller whose clusters, jobs and costs the dashboard's
    /// clusters-and-jobs page shows (`skycat serve` passes its own); None: that page says this
    /// server runs none.
    #[cfg(feature = "control")]
    pub control: Option<crate::dashboard::jobs::Control>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            stale_after: Duration::from_secs(24 * 3600),
            max_offers_limit: 10_000,
            auth: None,
            public_read: true,
            home: None,
            replica: None,
            #[cfg(feature = "control")]
            control: None,
        }
    }
}

/// Shared by every handler.
pub struct AppState {
    snapshot: ArcSwap<CatalogSnapshot>,
    last_refresh: Mutex<Option<RefreshOutcome>>,
    /// The refresh schedule if one is configured.
    pub refresh_schedule: Option<cron::Schedule>,
    pub egress: EgressTable,
    pub metrics: Metrics,
    pub config: ServerConfig,
    pub started_at: DateTime<Utc>,
    /// `POST /optimize` answers of the catalog in service.
    pub answers: crate::answer_cache::AnswerCache,
    /// The catalog store this replica polls, if any (`/healthz`).
    catalog_store: Mutex<Option<crate::store_health::CatalogStoreHealth>>,
}

impl AppState {
    pub fn new(
        snapshot: CatalogSnapshot,
        egress: EgressTable,
        config: ServerConfig,
        refresh_schedule: Option<cron::Schedule>,
    ) -> Self {
        let metrics = Metrics::new();
        publish_catalog_metrics(&metrics, &snapshot);
        AppState {
            snapshot: ArcSwap::from_pointee(snapshot),
            last_refresh: Mutex::new(None),
            refresh_schedule,
            egress,
            metrics,
            config,
            started_at: Utc::now(),
            answers: Default::default(),
            catalog_store: Mutex::new(None),
        }
    }

    /// The catalog store's state as `/healthz` shows it, lag computed now.
    pub fn catalog_store_health(&self) -> Option<crate::store_health::CatalogStoreHealth> {
        let g = self.catalog_store.lock().unwrap_or_else(|p| p.into_inner());
        g.clone().map(|h| h.with_lag(Utc::now()))
    }

    /// Record the catalog store's state (the poller does, after each poll or publish).
    pub fn set_catalog_store_health(&self, health: crate::store_health::CatalogStoreHealth) {
        *self.catalog_store.lock().unwrap_or_else(|p| p.into_inner()) = Some(health);
    }

    /// The catalog in service. Hold the `Arc` for the whole request.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.load_full()
    }

    /// A cheap guard for short synchronous work (no `.await` while holding it).
    pub fn snapshot_guard(&self) -> arc_swap::Guard<Arc<CatalogSnapshot>> {
        self.snapshot.load()
    }

    /// Swap in a new catalog; requests holding the old one finish on it.
    ///
    /// The old catalog is freed on a thread of its own: dropping some 90k offers takes tens of
    /// milliseconds, which would otherwise stall whichever request worker made the swap.
    pub fn swap(&self, snapshot: CatalogSnapshot) {
        publish_catalog_metrics(&self.metrics, &snapshot);
        let old = self.snapshot.swap(Arc::new(snapshot));
        if Arc::strong_count(&old) == 1 && old.offers().len() > 10_000 {
            let dropper = std::thread::Builder::new().name("catalog-drop".into()).spawn(move || drop(old));
            if let Err(e) = dropper {
                tracing::debug!(error = %e, "no thread to free the old catalog on; freeing it here");
            }
        } else {
            drop(old);
        }
    }

    pub fn last_refresh(&self) -> Option<RefreshOutcome> {
        self.last_refresh.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn set_last_refresh(&self, outcome: RefreshOutcome) {
        self.metrics.refresh_done(outcome.ok, outcome.finished_at);
        match self.last_refresh.lock() {
            Ok(mut g) => *g = Some(outcome),
            Err(p) => *p.into_inner() = Some(outcome),
        }
    }
}

fn publish_catalog_metrics(metrics: &Metrics, snap: &CatalogSnapshot) {
    metrics.set_catalog(
        snap.loaded_at,
        snap.sources.iter().map(|s| (s.cloud.as_str(), s.rows, s.fetched_at)),
    );
}
