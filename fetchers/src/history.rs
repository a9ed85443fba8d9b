//! Reading `history/<cloud>/<timestamp>.parquet` snapshots for `skycat price-history`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use skycat_catalog::home::SkycatHome;

use crate::error::FetchError;
use crate::run::history_files;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// When the snapshot was taken (from its file name).
    pub at: DateTime<Utc>,
    pub cloud: String,
    pub instance_type: String,
    pub region: String,
    pub zone: Option<String>,
    pub accelerator_name: Option<String>,
    pub accelerator_count: f64,
    pub price: Option<f64>,
    pub spot_price: Option<f64>,
}

/// The clouds that have history.
pub fn clouds_with_history(home: &SkycatHome) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(home.history_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every snapshot row matching `what` (an instance type, case-insensitive, or an accelerator
/// name in any provider's spelling), oldest first, then by cloud/region/zone/type.
pub fn price_history(
    home: &SkycatHome,
    what: &str,
    cloud: Option<&str>,
    region: Option<&str>,
) -> Result<Vec<HistoryPoint>, FetchError> {
    let accel = skycat_catalog::accelerators::canonicalize(what, None).map(|a| a.name);
    let clouds = match cloud {
        Some(c) => vec![c.to_ascii_lowercase()],
        None => clouds_with_history(home),
    };
    let mut out = Vec::new();
    for c in clouds {
        for path in history_files(home, &c)? {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let at = NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%SZ").ok().map(|n| n.and_utc());
            let rows = skycat_catalog::parquet::read_offers(&path).map_err(|e| FetchError::Catalog(e.to_string()))?;
            for o in rows {
                let by_type = o.instance_type.eq_ignore_ascii_case(what);
                let by_accel = match (&accel, &o.accelerator_name) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                };
                if !(by_type || by_accel) {
                    continue;
                }
                if region.is_some_and(|r| r != &*o.region) {
                    continue;
                }
                out.push(HistoryPoint {
                    at: at.unwrap_or(o.fetched_at),
                    cloud: o.cloud.to_string(),
                    instance_type: o.instance_type.to_string(),
                    region: o.region.to_string(),
                    zone: o.zone.map(|s| s.to_string()),
                    accelerator_name: o.accelerator_name.map(|s| s.to_string()),
                    accelerator_count: o.accelerator_count,
                    price: o.price,
                    spot_price: o.spot_price,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        a.at.cmp(&b.at)
            .then_with(|| a.cloud.cmp(&b.cloud))
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.zone.cmp(&b.zone))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    Ok(out)
}
