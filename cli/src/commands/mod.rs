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
pub mod storage;
pub mod task_args;

use anyhow::Context;
use skycat_catalog::{Catalog, SkycatHome};

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
    let home = SkycatHome::from_env().context("cannot locate the skycat home")?;
    let loaded = Catalog::load(&home)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    for n in &loaded.notes {
        eprintln!("note: {n}");
    }
    Ok((home, loaded.catalog))
}
