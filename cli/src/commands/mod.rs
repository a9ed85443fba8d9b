//! One module per command. Each exposes its clap arguments and a `run` function.

pub mod catalog;
pub mod check;
pub mod cluster;
pub mod cost_report;
pub mod credentials;
pub mod fetch;
pub mod gpunode;
pub mod jobs;
pub mod login;
pub mod optimize;
pub mod price_history;
pub mod serve;
pub mod server_client;
pub mod show_gpus;
pub mod show_gpus_k8s;
pub mod storage;
pub mod task_args;

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::Context;
use skycat_catalog::{Catalog, CustomPrice, OfferFilter, PriceRules, Repricing, SkycatHome};

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings), so that stdout stays clean for
/// tables and `--json`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// The catalog every command reads: the embedded default, overridden per cloud by the user's
/// catalogs. Problems with user files are reported on stderr, one line each, and the shipped
/// rows are used instead; so is a query index rebuilt from its Parquet file (a note).
pub fn load_catalog() -> anyhow::Result<(SkycatHome, Catalog)> {
    load_catalog_filtered(&OfferFilter::all())
}

/// [`load_catalog`] keeping only the rows `filter` keeps (see [`OfferFilter`]). A command that
/// loads twice (filtered, then whole to explain a miss) prints each warning and note once.
pub fn load_catalog_filtered(filter: &OfferFilter) -> anyhow::Result<(SkycatHome, Catalog)> {
    static PRINTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let home = SkycatHome::from_env().context("cannot locate the skycat home")?;
    let loaded = Catalog::load_filtered(&home, filter)?;
    let mut printed = PRINTED.lock().unwrap_or_else(|e| e.into_inner());
    for w in &loaded.warnings {
        if printed.insert(format!("warning: {w}")) {
            eprintln!("warning: {w}");
        }
    }
    for n in &loaded.notes {
        if printed.insert(format!("note: {n}")) {
            eprintln!("note: {n}");
        }
    }
    Ok((home, loaded.catalog))
}

/// What the price rules changed in every priced load of this process, for the tables that mark
/// custom prices (a command that loads twice, filtered then whole, sees both).
static REPRICED: Mutex<Option<Repricing>> = Mutex::new(None);

/// [`load_catalog_filtered`] with the user's prices (`prices:` in `$SKYCAT_HOME/config.yaml`)
/// applied: what every command that plans or shows prices uses. The list prices stay in the
/// catalog files; `skycat catalog` shows those. A bad rule is a one-line error naming its key.
pub fn load_catalog_priced(filter: &OfferFilter) -> anyhow::Result<(SkycatHome, Catalog)> {
    let (home, mut catalog) = load_catalog_filtered(filter)?;
    let rules = PriceRules::load(&home.config_path())?;
    if rules.is_empty() {
        return Ok((home, catalog));
    }
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if filter.is_all() {
        // A rule for a cloud the catalog does not have is most likely a typo.
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        for (cloud, key) in rules.clouds() {
            if catalog.source(&cloud).is_none() && warned.insert(key.clone()) {
                eprintln!("warning: {}: {key}: no cloud {cloud:?} in the catalog", home.config_path().display());
            }
        }
    }
    let table = catalog.reprice(&rules);
    let mut seen = REPRICED.lock().unwrap_or_else(|e| e.into_inner());
    match seen.as_mut() {
        Some(t) => t.extend(table),
        None => *seen = Some(table),
    }
    Ok((home, catalog))
}

/// The custom price of a placement's row and market, if the user's rules changed it.
pub fn custom_price(cloud: &str, instance_type: &str, region: &str, zone: Option<&str>, spot: bool) -> Option<CustomPrice> {
    let seen = REPRICED.lock().unwrap_or_else(|e| e.into_inner());
    seen.as_ref()?.market(cloud, instance_type, region, zone, spot).cloned()
}
