//! The fetch run: regions per provider, bounded concurrency, per-region isolation, validation,
//! atomic publish, history and diff. Written once around the [`Provider`] trait.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use skycat_catalog::home::SkycatHome;
use skycat_catalog::manifest::{CloudManifest, Manifest};
use skycat_catalog::Offer;

use crate::diff::{diff_offers, CatalogDiff};
use crate::error::FetchError;
use crate::http::RetryPolicy;
use crate::provider::{AwsOnDemandSource, FetchContext, Provider};
use crate::providers;
use crate::validate::{check_region, collapse_duplicates, Validated};

/// A publish is refused without `--force` when the new catalog has fewer than this share of
/// the previous one's rows.
pub const MAX_ROW_DROP: f64 = 0.30;

/// What to fetch and how. Build with [`FetchOptions::new`] and update fields, so that new
/// fields don't break callers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub home: SkycatHome,
    /// Provider names; empty = every registered provider.
    pub clouds: Vec<String>,
    /// Regions to fetch (for each selected cloud that lists them); empty = config or defaults.
    pub regions: Vec<String>,
    /// Every region each provider lists.
    pub all_regions: bool,
    /// Publish even if the row count dropped by more than 30%.
    pub force: bool,
    /// Fetch and validate, write nothing.
    pub dry_run: bool,
    /// Regions fetched at once, per provider.
    pub concurrency: usize,
    pub aws_ondemand_source: AwsOnDemandSource,
    /// Environment overrides layered over the process environment (endpoints, keys).
    pub env_overrides: BTreeMap<String, String>,
    /// Use `env_overrides` alone, not the process environment (tests; credential chains then
    /// look nowhere else).
    pub isolate_env: bool,
    pub retry: RetryPolicy,
}

impl FetchOptions {
    pub fn new(home: SkycatHome) -> Self {
        FetchOptions {
            home,
            clouds: Vec::new(),
            regions: Vec::new(),
            all_regions: false,
            force: false,
            dry_run: false,
            concurrency: 4,
            aws_ondemand_source: AwsOnDemandSource::BulkFiles,
            env_overrides: BTreeMap::new(),
            isolate_env: false,
            retry: RetryPolicy::default(),
        }
    }
}

/// Progress of a run, for bars or log lines.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    ProviderStarted { cloud: String, regions: usize },
    RegionDone { cloud: String, region: String, rows: usize },
    RegionFailed { cloud: String, region: String, error: String },
    Note { cloud: String, message: String },
    ProviderFinished { cloud: String, report: Box<CloudReport> },
}

/// What happened to one cloud.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloudReport {
    pub cloud: String,
    pub regions_ok: Vec<String>,
    /// Region and error.
    pub regions_failed: Vec<(String, String)>,
    /// Failed regions whose rows were kept from the previous catalog.
    pub stale_regions: Vec<String>,
    /// Rows in the (would-be) published catalog.
    pub rows: usize,
    /// Rows fetched in this run (after validation).
    pub fresh_rows: usize,
    /// Rows of the previous catalog.
    pub previous_rows: usize,
    pub seconds: f64,
    /// Rows the provider left out by design, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows or prices the validation removed, by reason.
    pub dropped: BTreeMap<String, u64>,
    pub flagged: Vec<String>,
    pub notes: Vec<String>,
    pub published: bool,
    /// Why nothing was published (refusal, every region failed, dry run).
    pub not_published: Option<String>,
    pub catalog_path: Option<PathBuf>,
    pub history_path: Option<PathBuf>,
    pub diff: Option<CatalogDiff>,
    /// The provider failed as a whole (e.g. could not list its regions).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchReport {
    pub clouds: Vec<CloudReport>,
    pub seconds: f64,
}

impl FetchReport {
    /// True when some cloud was refused or failed as a whole (the CLI exits non-zero).
    pub fn has_failures(&self) -> bool {
        self.clouds.iter().any(|c| c.error.is_some() || (!c.published && c.not_published.as_deref() != Some("dry run")))
    }
}

/// Regions configured in `$SKYCAT_HOME/config.yaml` under `fetch.regions.<cloud>`.
pub fn configured_regions(home: &SkycatHome, cloud: &str) -> Result<Option<Vec<String>>, FetchError> {
    let path = home.config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FetchError::io(&path, e)),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| FetchError::Config(format!("{}: {e}", path.display())))?;
    let Some(v) = doc.get("fetch").and_then(|f| f.get("regions")).and_then(|r| r.get(cloud)) else {
        return Ok(None);
    };
    let list = v.as_sequence().ok_or_else(|| {
        FetchError::Config(format!("{}: fetch.regions.{cloud} must be a list of region names", path.display()))
    })?;
    let mut out = Vec::new();
    for item in list {
        let s = item.as_str().ok_or_else(|| {
            FetchError::Config(format!("{}: fetch.regions.{cloud} holds a non-string entry", path.display()))
        })?;
        out.push(s.to_string());
    }
    Ok(Some(out))
}

fn select_providers(clouds: &[String]) -> Result<Vec<Arc<dyn Provider>>, FetchError> {
    let all = providers::registry();
    if clouds.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for c in clouds {
        let c = c.trim().to_ascii_lowercase();
        match all.iter().find(|p| p.name() == c) {
            Some(p) => {
                if !out.iter().any(|q: &Arc<dyn Provider>| q.name() == p.name()) {
                    out.push(p.clone());
                }
            }
            None => {
                let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
                return Err(FetchError::Config(format!("unknown cloud `{c}` (known: {})", names.join(", "))));
            }
        }
    }
    Ok(out)
}

/// The user catalog file of `cloud`.
pub fn catalog_path(home: &SkycatHome, cloud: &str) -> PathBuf {
    home.catalogs_dir().join(format!("{cloud}.parquet"))
}

/// Run a fetch. Providers run concurrently; inside one, at most `concurrency` regions at once.
pub async fn run_fetch(
    opts: &FetchOptions,
    on_event: &(dyn Fn(FetchEvent) + Send + Sync),
) -> Result<FetchReport, FetchError> {
    let started = Instant::now();
    let provs = select_providers(&opts.clouds)?;
    let cx = FetchContext::with_env(opts.retry.clone(), &opts.env_overrides, opts.aws_ondemand_source, opts.isolate_env)?;
    let runs = provs.iter().map(|p| run_cloud(opts, &cx, p.as_ref(), on_event));
    let mut clouds = futures::future::join_all(runs).await;
    // The manifest is shared by all clouds: update it once, after every cloud is done.
    if !opts.dry_run {
        let published: Vec<&(CloudReport, Option<CloudManifest>)> =
            clouds.iter().filter(|(_, m)| m.is_some()).collect();
        if !published.is_empty() {
            let path = opts.home.catalogs_dir().join("manifest.json");
            let mut manifest = Manifest::load(&path).map_err(|e| FetchError::Catalog(e.to_string()))?;
            for (_, m) in published {
                let m = m.clone().expect("filtered on is_some");
                manifest.clouds.insert(m.cloud.clone(), m);
            }
            manifest.save_atomic(&path).map_err(|e| FetchError::Catalog(e.to_string()))?;
        }
    }
    let reports = clouds.drain(..).map(|(r, _)| r).collect();
    Ok(FetchReport { clouds: reports, seconds: started.elapsed().as_secs_f64() })
}

async fn resolve_regions(
    opts: &FetchOptions,
    cx: &FetchContext,
    p: &dyn Provider,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, FetchError> {
    let cloud = p.name();
    let mut regions: Vec<String> = if opts.all_regions {
        p.regions(cx).await?
    } else if !opts.regions.is_empty() {
        if opts.clouds.len() == 1 {
            // One cloud named explicitly: take the regions as given (a bad name fails visibly).
            opts.regions.clone()
        } else {
            // Several clouds: each takes the requested regions it lists.
            let listed: BTreeSet<String> = p.regions(cx).await?.into_iter().collect();
            let mine: Vec<String> = opts.regions.iter().filter(|r| listed.contains(*r)).cloned().collect();
            if mine.is_empty() {
                notes.push(format!("none of the requested regions is a {cloud} region"));
            }
            mine
        }
    } else if let Some(r) = configured_regions(&opts.home, cloud)? {
        r
    } else {
        p.default_regions().iter().map(|s| s.to_string()).collect()
    };
    let mut seen = BTreeSet::new();
    regions.retain(|r| seen.insert(r.clone()));
    Ok(regions)
}

async fn run_cloud(
    opts: &FetchOptions,
    cx: &FetchContext,
    p: &dyn Provider,
    on_event: &(dyn Fn(FetchEvent) + Send + Sync),
) -> (CloudReport, Option<CloudManifest>) {
    let started = Instant::now();
    let cloud = p.name().to_string();
    let mut report = CloudReport { cloud: cloud.clone(), ..Default::default() };
    let mut notes = Vec::new();
    let regions = match resolve_regions(opts, cx, p, &mut notes).await {
        Ok(r) => r,
        Err(e) => {
            report.error = Some(format!("cannot list regions: {e}"));
            report.not_published = Some("could not list regions".into());
            report.seconds = started.elapsed().as_secs_f64();
            on_event(FetchEvent::ProviderFinished { cloud, report: Box::new(report.clone()) });
            return (report, None);
        }
    };
    on_event(FetchEvent::ProviderStarted { cloud: cloud.clone(), regions: regions.len() });

    let conc = opts.concurrency.max(1);
    let mut results: Vec<(String, Result<Vec<Offer>, FetchError>)> = futures::stream::iter(regions.iter().cloned())
        .map(|region| async move {
            let r = p.fetch_region(cx, &region).await;
            match &r {
                Ok(rows) => on_event(FetchEvent::RegionDone {
                    cloud: p.name().to_string(),
                    region: region.clone(),
                    rows: rows.len(),
                }),
                Err(e) => on_event(FetchEvent::RegionFailed {
                    cloud: p.name().to_string(),
                    region: region.clone(),
                    error: e.to_string(),
                }),
            }
            (region, r)
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    results.sort_by(|a, b| a.0.cmp(&b.0));

    // Previous catalog: source of stale rows and of rows for regions not fetched this time.
    let path = catalog_path(&opts.home, &cloud);
    let previous: Vec<Offer> = if path.exists() {
        match skycat_catalog::parquet::read_offers(&path) {
            Ok(rows) => rows,
            Err(e) => {
                notes.push(format!("previous catalog unreadable, not carried over: {e}"));
                Vec::new()
            }
        }
    } else {
        // No user catalog yet: the shipped default is what users see, so it is the baseline
        // (its rows for regions not fetched now are kept, and the shrink guard compares to it).
        let (clouds, _) = skycat_catalog::embedded_default();
        match clouds.iter().find(|(c, _)| *c == cloud) {
            Some((_, bytes)) => match skycat_catalog::parquet::read_offers_bytes(bytes) {
                Ok(rows) => rows,
                Err(e) => {
                    notes.push(format!("embedded default catalog unreadable: {e}"));
                    Vec::new()
                }
            },
            None => Vec::new(),
        }
    };
    report.previous_rows = previous.len();

    let mut v = Validated::default();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for (region, r) in results {
        match r {
            Ok(rows) => {
                check_region(&cloud, &region, rows, &mut v);
                report.regions_ok.push(region);
            }
            Err(e) => {
                report.regions_failed.push((region.clone(), e.to_string()));
                failed.insert(region);
            }
        }
    }
    let dups = collapse_duplicates(&mut v.offers);
    if dups > 0 {
        *v.dropped.entry("duplicate collapsed".into()).or_insert(0) += dups;
    }
    report.fresh_rows = v.offers.len();

    let fetched: BTreeSet<&str> = report.regions_ok.iter().map(String::as_str).collect();
    let mut stale: BTreeSet<String> = BTreeSet::new();
    let mut carried = 0usize;
    let mut merged = v.offers.clone();
    for o in &previous {
        if fetched.contains(&*o.region) {
            continue;
        }
        if failed.contains(&*o.region) {
            stale.insert(o.region.to_string());
        } else {
            carried += 1;
        }
        merged.push(o.clone());
    }
    collapse_duplicates(&mut merged);
    if carried > 0 {
        notes.push(format!("{carried} rows of regions not fetched this run kept from the previous catalog"));
    }
    report.stale_regions = stale.into_iter().collect();
    report.rows = merged.len();
    report.dropped = v.dropped;
    report.flagged = v.flagged;
    report.skipped = cx.skipped_for(&cloud);
    let mut all_notes = cx.notes_for(&cloud);
    all_notes.extend(notes);
    for n in &all_notes {
        on_event(FetchEvent::Note { cloud: cloud.clone(), message: n.clone() });
    }
    report.notes = all_notes;
    report.diff = Some(diff_offers(&previous, &merged));

    // The guard.
    let refuse = if report.regions_ok.is_empty() {
        Some("every region failed".to_string())
    } else if !previous.is_empty() && (merged.len() as f64) < (1.0 - MAX_ROW_DROP) * previous.len() as f64 && !opts.force {
        Some(format!(
            "row count dropped from {} to {} (more than {:.0}%); rerun with --force to publish anyway",
            previous.len(),
            merged.len(),
            MAX_ROW_DROP * 100.0
        ))
    } else {
        None
    };
    let mut manifest = None;
    if let Some(reason) = refuse {
        report.not_published = Some(reason);
    } else if opts.dry_run {
        report.not_published = Some("dry run".into());
    } else {
        match publish(opts, &cloud, &merged, cx, &report) {
            Ok((m, hist)) => {
                report.published = true;
                report.catalog_path = Some(path.clone());
                report.history_path = Some(hist);
                manifest = Some(m);
            }
            Err(e) => {
                report.error = Some(e.to_string());
                report.not_published = Some(format!("publish failed: {e}"));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    on_event(FetchEvent::ProviderFinished { cloud: cloud.clone(), report: Box::new(report.clone()) });
    (report, manifest)
}

/// History file name for a run: `20261128T171030Z.parquet` (sortable).
pub fn history_file_name(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.parquet", at.format("%Y%m%dT%H%M%SZ"))
}

fn publish(
    opts: &FetchOptions,
    cloud: &str,
    offers: &[Offer],
    cx: &FetchContext,
    report: &CloudReport,
) -> Result<(CloudManifest, PathBuf), FetchError> {
    let path = catalog_path(&opts.home, cloud);
    let cat = |e: skycat_catalog::error::CatalogError| FetchError::Catalog(e.to_string());
    // History first: a run killed between the two leaves the old catalog and an extra snapshot.
    let hist_dir = opts.home.history_dir().join(cloud);
    let hist = hist_dir.join(history_file_name(cx.fetched_at));
    skycat_catalog::parquet::write_offers_atomic(&hist, offers).map_err(cat)?;
    // The Parquet file, then its query index (built from the bytes just written, so the next
    // command reads the new prices without decoding Parquet; see skycat_catalog::index).
    let sha = skycat_catalog::index::publish(&path, offers).map_err(cat)?;
    let (source, as_of) = cx.source_for(cloud).unwrap_or_else(|| (summarize_sources(offers), cx.fetched_at.to_rfc3339()));
    let mut notes: Vec<String> = report.skipped.iter().map(|(r, n)| format!("skipped {n}: {r}")).collect();
    notes.extend(report.dropped.iter().map(|(r, n)| format!("dropped {n}: {r}")));
    notes.extend(report.flagged.iter().map(|f| format!("flagged: {f}")));
    notes.extend(report.notes.iter().cloned());
    let m = CloudManifest {
        cloud: cloud.to_string(),
        source,
        as_of,
        fetched_at: cx.fetched_at,
        rows: offers.len(),
        sha256: sha,
        regions_ok: report.regions_ok.clone(),
        regions_failed: report.regions_failed.iter().map(|(r, _)| r.clone()).collect(),
        stale_regions: report.stale_regions.clone(),
        notes,
    };
    Ok((m, hist))
}

/// A short description of where rows came from: the distinct sources' common prefix.
fn summarize_sources(offers: &[Offer]) -> String {
    let distinct: BTreeSet<&str> = offers.iter().map(|o| o.source.as_ref()).collect();
    match distinct.len() {
        0 => String::new(),
        1 => distinct.into_iter().next().unwrap_or_default().to_string(),
        n => {
            let v: Vec<&str> = distinct.into_iter().collect();
            let mut prefix = v[0];
            for s in &v[1..] {
                let l = prefix.bytes().zip(s.bytes()).take_while(|(a, b)| a == b).count();
                prefix = &prefix[..l];
            }
            format!("{prefix}… ({n} sources)")
        }
    }
}

/// All history snapshots of `cloud`, oldest first.
pub fn history_files(home: &SkycatHome, cloud: &str) -> Result<Vec<PathBuf>, FetchError> {
    let dir = home.history_dir().join(cloud);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FetchError::io(&dir, e)),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && !is_temp(p))
        .collect();
    out.sort();
    Ok(out)
}

fn is_temp(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// `fetch.aws.ondemand_source` in `$SKYCAT_HOME/config.yaml`: `bulk` (default) or `pricing-api`.
pub fn configured_aws_ondemand_source(home: &SkycatHome) -> Result<Option<AwsOnDemandSource>, FetchError> {
    let path = home.config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FetchError::io(&path, e)),
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| FetchError::Config(format!("{}: {e}", path.display())))?;
    let Some(v) = doc.get("fetch").and_then(|f| f.get("aws")).and_then(|a| a.get("ondemand_source")) else {
        return Ok(None);
    };
    match v.as_str() {
        Some("bulk") | Some("bulk-files") => Ok(Some(AwsOnDemandSource::BulkFiles)),
        Some("pricing-api") => Ok(Some(AwsOnDemandSource::PricingApi)),
        _ => Err(FetchError::Config(format!(
            "{}: fetch.aws.ondemand_source must be `bulk` or `pricing-api`",
            path.display()
        ))),
    }
}
