//! Builds the shipped default catalog (`catalog-data/`) from SkyPilot's published catalog CSVs
//! (the excerpts in `shared/reference-prices/`). Run through `scripts/build-default-catalog.sh`.
//!
//! Usage: build-default-catalog REFERENCE_DIR OUT_DIR AS_OF
//!
//! REFERENCE_DIR holds `<cloud>.csv` files and a README.md whose provenance table gives each
//! file's source path and version id; AS_OF (RFC 3339) is stamped as `fetched_at` so that the
//! output is reproducible byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use skycat_catalog::manifest::{CloudManifest, Manifest};
use skycat_catalog::{index, skypilot};

/// (source path, version id) per file, read from the reference README's provenance table:
/// `| aws.csv | catalogs/v7/aws/vms.csv | 27f67dd… | …`.
fn provenance(readme: &str) -> BTreeMap<String, (String, String)> {
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?;
            let cloud = file.strip_suffix(".csv")?;
            // The cell may carry a remark after the path: "catalogs/v6/azure/vms.csv (v7 has no Azure)".
            let path = cells.get(2)?.split_whitespace().next()?;
            let version = cells.get(3)?;
            (version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (cloud.to_string(), (path.to_string(), version.to_string())))
        })
        .collect()
}

fn run(reference: &Path, out: &Path, as_of: DateTime<Utc>) -> Result<(), String> {
    let readme_path = reference.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).map_err(|e| format!("{}: {e}", readme_path.display()))?;
    let prov = provenance(&readme);
    let mut manifest = Manifest::default();
    for (cloud, (src_path, version)) in &prov {
        // Shared tables, not per-cloud instance catalogs.
        if cloud.starts_with("common-") {
            continue;
        }
        let csv = reference.join(format!("{cloud}.csv"));
        let source = format!("skypilot-catalog {src_path}@{version}");
        let (mut offers, report) = skypilot::import_csv(cloud, &csv, as_of, &source).map_err(|e| e.to_string())?;
        // Stable order: the same input always gives the same bytes.
        offers.sort_by(|a, b| {
            (&a.instance_type, &a.region, &a.zone, &a.accelerator_name)
                .cmp(&(&b.instance_type, &b.region, &b.zone, &b.accelerator_name))
                .then(a.accelerator_count.total_cmp(&b.accelerator_count))
        });
        let file = out.join(format!("{cloud}.parquet"));
        // With its query index (`<cloud>.idx`), which the binary embeds beside the Parquet file.
        let sha256 = index::publish(&file, &offers).map_err(|e| e.to_string())?;
        let mut regions: Vec<String> = offers.iter().map(|o| o.region.to_string()).collect();
        regions.sort();
        regions.dedup();
        let mut notes = vec![format!("{} rows read", report.rows_read)];
        if report.skipped_no_price > 0 {
            notes.push(format!("{} rows without any price left out", report.skipped_no_price));
        }
        if report.skipped_unpaired > 0 {
            notes.push(format!(
                "{} host or accelerator rows without their counterpart in the same zone left out",
                report.skipped_unpaired
            ));
        }
        if report.corrected_counts > 0 {
            notes.push(format!(
                "{} accelerator counts corrected from the instance-type naming (the source lists e.g. 12 H100 for Standard_ND96isr_H100_v5, which has 8)",
                report.corrected_counts
            ));
        }
        if report.spot_only_rows > 0 {
            notes.push(format!("{} `__SPOT` instance types priced as spot, not on demand", report.spot_only_rows));
        }
        if report.placeholder_prices > 0 {
            notes.push(format!("{} placeholder prices (700.0) treated as unknown", report.placeholder_prices));
        }
        println!("{cloud:>15}: {:>6} offers, {:>3} regions  ({})", offers.len(), regions.len(), notes.join("; "));
        manifest.clouds.insert(
            cloud.clone(),
            CloudManifest {
                cloud: cloud.clone(),
                source,
                as_of: format!("skypilot-catalog commit {version}"),
                fetched_at: as_of,
                rows: offers.len(),
                sha256,
                regions_ok: regions,
                regions_failed: Vec::new(),
                stale_regions: Vec::new(),
                notes,
            },
        );
    }
    if manifest.clouds.is_empty() {
        return Err(format!("{}: no provenance rows found", readme_path.display()));
    }
    manifest.save_atomic(&out.join("manifest.json")).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [reference, out, as_of] = args.as_slice() else {
        eprintln!("usage: build-default-catalog REFERENCE_DIR OUT_DIR AS_OF(RFC 3339)");
        return ExitCode::from(2);
    };
    let as_of = match DateTime::parse_from_rfc3339(as_of) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => {
            eprintln!("error: AS_OF {as_of:?}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&PathBuf::from(reference), &PathBuf::from(out), as_of) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
