//! Serving from `$SKYCAT_HOME`: load the catalog (the shipped default overridden per cloud by the
//! user's catalogs), refresh it with the real fetchers on a cron schedule, and run the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use skycat_catalog::{Catalog, Origin, SkycatHome};

use crate::catalog_store::{PollOutcome, StoreReplica};
use crate::refresh::{parse_schedule, RefreshAction, RefreshError, Refreshed};
use crate::state::{CatalogData, CloudSource, ServerConfig};
use crate::AppBuilder;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot load the catalog from {home}: {message}")]
    Load { home: String, message: String },
    #[error("{0}")]
    Schedule(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Store(String),
}

/// Convert a loaded catalog into the server's form, with provenance per cloud.
pub fn catalog_data(catalog: Catalog) -> CatalogData {
    let sources: Vec<CloudSource> = catalog
        .sources()
        .map(|s| {
            let (origin, path) = match &s.origin {
                Origin::Embedded => ("embedded", None),
                Origin::User { path } => ("user", Some(path.display().to_string())),
                Origin::Memory => ("memory", None),
            };
            let m = s.manifest.as_ref();
            CloudSource {
                cloud: s.cloud.clone(),
                source: m.map(|m| m.source.clone()).unwrap_or_default(),
                origin: origin.to_owned(),
                path,
                as_of: m.map(|m| m.as_of.clone()).filter(|a| !a.is_empty()),
                fetched_at: m.map(|m| m.fetched_at),
                rows: s.rows,
                regions_failed: m.map(|m| m.regions_failed.clone()).unwrap_or_default(),
                stale_regions: m.map(|m| m.stale_regions.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let mut data = CatalogData { offers: catalog.into_offers(), sources, warnings: Vec::new() };
    // Fill what the manifest lacks (source, fetched_at) from the rows themselves.
    data.complete_sources("memory");
    for s in &mut data.sources {
        if s.source.is_empty() {
            s.source = "unknown".into();
        }
    }
    data
}

/// Load `$SKYCAT_HOME`'s catalog (blocking IO + Parquet decoding: call from a blocking thread).
pub fn load_catalog(home: &SkycatHome) -> Result<CatalogData, RefreshError> {
    load_catalog_priced(home, &home.config_path(), false)
}

/// [`load_catalog`] with the catalogs of `catalogs_home` and the prices of the config file
/// `config` (a replica reads a downloaded version with its own home's prices). `strict`: a
/// warning (a file that cannot be read, a malformed catalog manifest) is an error instead of a
/// fallback to the shipped rows.
pub fn load_catalog_priced(catalogs_home: &SkycatHome, config: &std::path::Path, strict: bool) -> Result<CatalogData, RefreshError> {
    let mut loaded = Catalog::load(catalogs_home)?;
    if strict && !loaded.warnings.is_empty() {
        return Err(loaded.warnings.join("; ").into());
    }
    // The user's prices (config.yaml `prices:`), applied in memory: /optimize and /catalog answer
    // with effective prices, rows marked `custom: …` in their price_breakdown.
    let rules = skycat_catalog::PriceRules::load(config)?;
    loaded.catalog.reprice(&rules);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    for n in &loaded.notes {
        tracing::info!("{n}");
    }
    let mut data = catalog_data(loaded.catalog);
    data.warnings = loaded.warnings;
    Ok(data)
}

/// Everything `skycat serve` decides.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub home: SkycatHome,
    /// Cron expression of the background refresh; `None` serves the loaded catalog as is.
    pub refresh: Option<String>,
    /// What a scheduled refresh does.
    pub refresh_mode: RefreshMode,
    pub config: ServerConfig,
    /// Routes with large streamed bodies (see [`AppBuilder::merge_streaming`]).
    pub streaming: Vec<Router>,
    /// HTTPS with this certificate and key; None = plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Read the catalog from (and, with a fetch refresh, publish it to) a catalog store.
    pub catalog_store: Option<CatalogStoreOptions>,
}

/// `--catalog-store` and its settings.
#[derive(Debug, Clone)]
pub struct CatalogStoreOptions {
    /// `s3://bucket/prefix` (or gs://, r2://, Azure); credentials and endpoints from the
    /// environment.
    pub url: String,
    /// How often replicas poll the store manifest.
    pub poll_interval: Duration,
    /// Versions kept in the store for readers in flight.
    pub keep: usize,
}

/// What a scheduled refresh does.
#[derive(Debug, Clone)]
pub enum RefreshMode {
    /// Run the fetchers with these options (their `home` should be the served one), then reload.
    Fetch(skycat_fetchers::FetchOptions),
    /// Only reload `$SKYCAT_HOME`: another process fetches (e.g. the system cron job in
    /// `scripts/`).
    ReloadOnly,
}

/// The production refresh: run the fetchers (which publish to `$SKYCAT_HOME/catalogs`
/// atomically), then reload the catalog from there.
///
/// - The fetch run fails as a whole, or no cloud could be published → a failed refresh; the
///   catalog in service stays.
/// - Some clouds published and others failed → the reloaded catalog is swapped in (failed clouds
///   keep their previous rows on disk) and the failures are listed in the outcome's warnings.
pub struct FetchRefresh {
    pub opts: skycat_fetchers::FetchOptions,
    /// With a catalog store: publish what was fetched there before swapping it in (a publish
    /// that fails fails the refresh, so that the leader never serves what replicas cannot get).
    pub publish: Option<Arc<crate::catalog_store::StoreReplica>>,
    /// With replicas: publish only if this replica still leads once the fetch is done (a leader
    /// that stepped down during a long fetch leaves publishing to the new one).
    pub publish_while_leading: Option<crate::replica::Replica>,
}

impl FetchRefresh {
    pub fn new(opts: skycat_fetchers::FetchOptions) -> Self {
        FetchRefresh { opts, publish: None, publish_while_leading: None }
    }
}

fn log_event(ev: skycat_fetchers::FetchEvent) {
    use skycat_fetchers::FetchEvent::*;
    match ev {
        ProviderStarted { cloud, regions } => tracing::info!(%cloud, regions, "refresh: fetching"),
        RegionDone { cloud, region, rows } => tracing::debug!(%cloud, %region, rows, "refresh: region done"),
        RegionFailed { cloud, region, error } => tracing::warn!(%cloud, %region, %error, "refresh: region failed"),
        Note { cloud, message } => tracing::info!(%cloud, %message, "refresh"),
        ProviderFinished { cloud, report } => {
            tracing::info!(%cloud, rows = report.rows, published = report.published, "refresh: provider finished")
        }
    }
}

/// One line per cloud that did not publish, naming the cloud and why.
fn fetch_problems(report: &skycat_fetchers::FetchReport) -> Vec<String> {
    let mut out = Vec::new();
    for c in &report.clouds {
        if let Some(e) = &c.error {
            out.push(format!("{}: {e}", c.cloud));
        } else if !c.published {
            let why = c.not_published.as_deref().unwrap_or("not published");
            out.push(format!("{}: {why}", c.cloud));
        }
        for (region, e) in &c.regions_failed {
            out.push(format!("{} {region}: {e}", c.cloud));
        }
    }
    out
}

impl RefreshAction for FetchRefresh {
    fn refresh(&self) -> crate::refresh::BoxFuture<Result<Refreshed, RefreshError>> {
        let opts = self.opts.clone();
        let publish = self.publish.clone();
        let replica = self.publish_while_leading.clone();
        Box::pin(async move {
            let report = skycat_fetchers::run_fetch(&opts, &log_event).await?;
            let problems = fetch_problems(&report);
            if !opts.dry_run && !report.clouds.iter().any(|c| c.published) {
                let detail = if problems.is_empty() { "no cloud selected".to_owned() } else { problems.join("; ") };
                return Err(format!("the fetch published nothing: {detail}").into());
            }
            let home = opts.home.clone();
            let mut data = tokio::task::spawn_blocking(move || load_catalog(&home))
                .await
                .map_err(|e| -> RefreshError { format!("loading the catalog failed: {e}").into() })??;
            if let (Some(store), false) = (publish, opts.dry_run) {
                if replica.as_ref().is_some_and(|r| r.0.role() != "leader") {
                    return Err("this replica stopped leading during the fetch: the new leader publishes; nothing swapped in".into());
                }
                store.publish_dir(&opts.home.catalogs_dir()).await?;
            }
            data.warnings = problems;
            Ok(Refreshed::Catalog(data))
        })
    }
}

/// Reload the catalog from `$SKYCAT_HOME` only (another process runs the fetch, e.g. the
/// system cron job in `scripts/`).
pub struct ReloadFromHome {
    pub home: SkycatHome,
}

impl RefreshAction for ReloadFromHome {
    fn refresh(&self) -> crate::refresh::BoxFuture<Result<Refreshed, RefreshError>> {
        let home = self.home.clone();
        Box::pin(async move {
            let data = tokio::task::spawn_blocking(move || load_catalog(&home))
                .await
                .map_err(|e| -> RefreshError { format!("loading the catalog failed: {e}").into() })??;
            Ok(Refreshed::Catalog(data))
        })
    }
}

/// A replica assembled and not yet listening: the app (its refresher not started), its link to
/// the catalog store (polled once already; its poller not started) and that first poll's outcome.
/// [`serve`] runs it; tests drive its refresher and store link by hand.
pub struct Prepared {
    pub app: crate::App,
    pub rows: usize,
    pub store: Option<Arc<StoreReplica>>,
    pub first_poll: Option<PollOutcome>,
}

/// Load the catalog, build the app and its refresh action, and link it to the catalog store
/// `store` (opened from `opts.catalog_store`'s URL by the caller).
pub async fn prepare(
    opts: &ServeOptions,
    extra: Router,
    store: Option<skycat_objects::catalog_store::CatalogStore>,
) -> Result<Prepared, ServeError> {
    let home_str = opts.home.root.display().to_string();
    let schedule = match &opts.refresh {
        Some(expr) => Some(parse_schedule(expr).map_err(ServeError::Schedule)?),
        None => None,
    };
    let home = opts.home.clone();
    let data = tokio::task::spawn_blocking(move || load_catalog(&home))
        .await
        .map_err(|e| ServeError::Load { home: home_str.clone(), message: e.to_string() })?
        .map_err(|e| ServeError::Load { home: home_str.clone(), message: crate::refresh::error_chain(e.as_ref()) })?;
    let rows = data.offers.len();
    let mut config = opts.config.clone();
    config.home.get_or_insert_with(|| opts.home.clone());
    let mut builder = AppBuilder::new(data).config(config).merge(extra);
    for r in opts.streaming.iter().cloned() {
        builder = builder.merge_streaming(r);
    }
    // The refresh action needs the replica, the replica needs the app's state: the action
    // reaches the replica through a cell filled once the app is built.
    let replica_cell: Arc<std::sync::OnceLock<Arc<StoreReplica>>> = Arc::default();
    if let Some(schedule) = schedule {
        builder = builder.refresh_action(refresh_action(opts, replica_cell.clone())).schedule(schedule);
    }
    let app = tokio::task::spawn_blocking(move || builder.build())
        .await
        .map_err(|e| ServeError::Load { home: home_str, message: e.to_string() })?;
    let (mut link, mut first_poll) = (None, None);
    if let (Some(store), Some(c)) = (store, &opts.catalog_store) {
        let publish = skycat_objects::catalog_store::PublishOptions { keep: c.keep.max(1), ..Default::default() };
        let replica = StoreReplica::new(
            store,
            app.state.clone(),
            opts.home.root.join("catalog-store"),
            opts.home.config_path(),
            publish,
        );
        // The store's newest version replaces the local catalog before the first request; a store
        // that is down or empty leaves the local catalog in service (and /healthz says so).
        first_poll = Some(replica.poll_once().await);
        let _ = replica_cell.set(replica.clone());
        link = Some(replica);
    }
    Ok(Prepared { app, rows, store: link, first_poll })
}

/// Run the server until Ctrl-C or SIGTERM; requests in flight finish first.
pub async fn serve(opts: ServeOptions, extra: Router) -> Result<(), ServeError> {
    let store = match &opts.catalog_store {
        Some(c) => Some(
            skycat_objects::catalog_store::CatalogStore::open(&c.url, &skycat_objects::Env::from_process())
                .await
                .map_err(|e| ServeError::Store(e.to_string()))?,
        ),
        None => None,
    };
    let Prepared { app, rows, store, first_poll } = prepare(&opts, extra, store).await?;
    let mut poller = None;
    if let (Some(replica), Some(c)) = (store, &opts.catalog_store) {
        eprintln!("skycat serve: catalog store {}: {:?}", replica.url(), first_poll);
        poller = Some(replica.spawn_poller(c.poll_interval));
    }
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ServeError::Bind { addr: opts.addr, source })?;
    let local = listener.local_addr()?;
    tracing::info!(%local, rows, refresh = ?opts.refresh, "skycat serve listening");
    match &opts.tls {
        Some(files) => {
            let config = crate::tls::server_config(files).map_err(|e| ServeError::Tls(e.to_string()))?;
            let fp = crate::tls::fingerprint(files).map_err(|e| ServeError::Tls(e.to_string()))?;
            eprintln!("skycat serve: listening on https://{local} ({rows} offers); certificate SHA-256 {fp}");
            app.serve_tls(listener, config, shutdown_signal()).await?;
        }
        None => {
            eprintln!("skycat serve: listening on http://{local} ({rows} offers)");
            app.serve(listener, shutdown_signal()).await?;
        }
    }
    if let Some(p) = poller {
        p.abort();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    // Give in-flight requests a moment; axum's graceful shutdown waits for them anyway.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The cron refresh. Alone (SQLite, or PostgreSQL without replicas), the replica runs its own
/// action. With a shared state database only the leader fetches (and, with a catalog store,
/// publishes); a follower either reloads its home (the catalogs folder is shared) or, with a
/// catalog store, defers to the store poller, which swaps in every version the leader publishes
/// and never an older one.
fn refresh_action(opts: &ServeOptions, replica: Arc<std::sync::OnceLock<Arc<StoreReplica>>>) -> Arc<dyn RefreshAction> {
    let action = own_refresh_action(opts, replica);
    match (&opts.config.replica, &opts.catalog_store) {
        (Some(replica), None) => Arc::new(crate::replica::LeaderOnlyRefresh {
            replica: replica.clone(),
            leader: action,
            follower: Arc::new(ReloadFromHome { home: opts.home.clone() }),
        }),
        (Some(replica), Some(store)) => Arc::new(crate::replica::LeaderOnlyRefresh {
            replica: replica.clone(),
            leader: action,
            follower: Arc::new(crate::replica::DeferToCatalogStore { store: store.url.clone() }),
        }),
        (None, _) => action,
    }
}

/// What a replica that leads (or is alone) does on a tick. Reload-only with a catalog store
/// defers: another host publishes (`skycat fetch --publish`), the poller swaps that in, and a
/// reload of the home would step back to the local catalog.
fn own_refresh_action(opts: &ServeOptions, replica: Arc<std::sync::OnceLock<Arc<StoreReplica>>>) -> Arc<dyn RefreshAction> {
    match (&opts.refresh_mode, &opts.catalog_store) {
        (RefreshMode::Fetch(f), Some(_)) => {
            Arc::new(PublishingFetchRefresh { opts: f.clone(), replica, leading: opts.config.replica.clone() })
        }
        (RefreshMode::Fetch(f), None) => Arc::new(FetchRefresh::new(f.clone())),
        (RefreshMode::ReloadOnly, Some(store)) => Arc::new(crate::replica::DeferToCatalogStore { store: store.url.clone() }),
        (RefreshMode::ReloadOnly, None) => Arc::new(ReloadFromHome { home: opts.home.clone() }),
    }
}

/// A [`FetchRefresh`] that publishes to the catalog store of the replica in `replica` (set once
/// the app is built; a refresh before that publishes nothing).
struct PublishingFetchRefresh {
    opts: skycat_fetchers::FetchOptions,
    replica: Arc<std::sync::OnceLock<Arc<StoreReplica>>>,
    leading: Option<crate::replica::Replica>,
}

impl RefreshAction for PublishingFetchRefresh {
    fn refresh(&self) -> crate::refresh::BoxFuture<Result<Refreshed, RefreshError>> {
        FetchRefresh { opts: self.opts.clone(), publish: self.replica.get().cloned(), publish_while_leading: self.leading.clone() }
            .refresh()
    }
}
