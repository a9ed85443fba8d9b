//! One module per command. Each exposes its clap arguments and a `run` function.

pub mod catalog;
pub mod check;
pub mod cluster;
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
use skycat_catalog::{Catalog, OfferFilter, SkycatHome};

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
