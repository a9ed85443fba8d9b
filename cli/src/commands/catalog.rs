//! `skycat catalog info` and `skycat catalog export`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context};
use chrono::Utc;
use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use skycat_catalog::{skypilot, Catalog, Origin};

use super::load_catalog;

#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Which source each cloud's prices come from, with rows, regions, as-of date and age.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Write the catalog in another tool's layout.
    Export {
        /// Only `skypilot` (per cloud `<DIR>/<cloud>/vms.csv`, SkyPilot's v7 columns).
        #[arg(long, default_value = "skypilot")]
        format: String,
        /// Only these clouds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        clouds: Vec<String>,
        dir: PathBuf,
    },
}

pub fn run(cmd: CatalogCommand) -> anyhow::Result<()> {
    let (_, catalog) = load_catalog()?;
    match cmd {
        CatalogCommand::Info { json } => print!("{}", info(&catalog, json)?),
        CatalogCommand::Export { format, clouds, dir } => {
            if format != "skypilot" {
                bail!("--format `{format}`: only `skypilot` is supported");
            }
            let known: BTreeSet<&str> = catalog.sources().map(|s| s.cloud.as_str()).collect();
            if let Some(unknown) = clouds.iter().find(|c| !known.contains(c.as_str())) {
                bail!("--clouds: no cloud `{unknown}` in the catalog (have: {})", known.into_iter().collect::<Vec<_>>().join(", "));
            }
            let offers: Vec<_> =
                catalog.offers().iter().filter(|o| clouds.is_empty() || clouds.iter().any(|c| **c == *o.cloud)).cloned().collect();
            let written = skypilot::export_dir(&dir, &offers).with_context(|| format!("exporting to {}", dir.display()))?;
            for (cloud, rows) in written {
                println!("{}: {rows} rows", dir.join(&cloud).join("vms.csv").display());
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct InfoRow {
    cloud: String,
    source: String,
    origin: String,
    rows: usize,
    regions: usize,
    as_of: Option<String>,
    fetched_at: Option<String>,
    age_hours: Option<f64>,
    stale_regions: Vec<String>,
}

fn info(catalog: &Catalog, json: bool) -> anyhow::Result<String> {
    let now = Utc::now();
    let rows: Vec<InfoRow> = catalog
        .sources()
        .map(|s| {
            let regions: BTreeSet<&str> =
                catalog.offers().iter().filter(|o| *o.cloud == *s.cloud).map(|o| o.region.as_ref()).collect();
            let m = s.manifest.as_ref();
            InfoRow {
                cloud: s.cloud.clone(),
                source: m.map(|m| m.source.clone()).unwrap_or_else(|| "-".into()),
                origin: match &s.origin {
                    Origin::Embedded => "shipped default".into(),
                    Origin::User { path } => path.display().to_string(),
                    Origin::Memory => "memory".into(),
                },
                rows: s.rows,
                regions: regions.len(),
                as_of: m.map(|m| m.as_of.clone()),
                fetched_at: m.map(|m| m.fetched_at.to_rfc3339()),
                age_hours: m.map(|m| (now - m.fetched_at).num_minutes() as f64 / 60.0),
                stale_regions: m.map(|m| m.stale_regions.clone()).unwrap_or_default(),
            }
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(vec!["CLOUD", "IN USE", "ROWS", "REGIONS", "FETCHED", "AGE", "STALE", "SOURCE"]);
    for r in &rows {
        let age = r.age_hours.map(|h| if h < 48.0 { format!("{h:.1}h") } else { format!("{:.0}d", h / 24.0) });
        t.add_row(vec![
            r.cloud.clone(),
            r.origin.clone(),
            r.rows.to_string(),
            r.regions.to_string(),
            r.fetched_at.as_deref().map(|f| f.get(..10).unwrap_or(f).to_string()).unwrap_or_else(|| "-".into()),
            age.unwrap_or_else(|| "-".into()),
            if r.stale_regions.is_empty() { "-".into() } else { r.stale_regions.join(",") },
            r.source.clone(),
        ]);
    }
    Ok(t.to_string() + "\n")
}
