//! Vast.ai: the public marketplace offers (`POST {endpoint}api/v0/bundles/`, trailing slash;
//! `SKYCAT_VAST_ENDPOINT`, default `https://console.vast.ai/`), aggregated into stable instance
//! types. An API key is optional (`SKYCAT_VAST_API_KEY` or `VAST_API_KEY`, sent as Bearer).
//!
//! One query per run (`verified`, not `external`, `rentable`, not `rented`, 1–8 GPUs, cheapest
//! first, `limit` 3000, `type: on-demand`); the answer must be `application/json` (as the
//! official CLI checks). Filters are re-checked client-side. Each offer is one rentable machine
//! slot, so offers are grouped by (region, GPU model, GPU count):
//!
//! - region = the ISO country code at the end of `geolocation` (`"Sweden, SE"` → `SE`, `"US"` →
//!   `US`); offers without one are skipped and counted;
//! - instance type = `<N>x-<canonical GPU>` (`1x-RTX4090`, `8x-H100-SXM`);
//! - **price = the median `dph_total` of the group's offers** (a rate one can expect to find),
//!   **spot_price = the median `min_bid`** (the interruptible market); the cheapest of each, the
//!   offer count and the cheapest offer's id are in `price_breakdown`, e.g.
//!   `on-demand median of 3 offers $0.3222 (cheapest $0.29, offer 24839127); spot median min_bid
//!   $0.21 (cheapest $0.18)`;
//! - vCPUs / memory = the smallest `cpu_cores_effective` and prorated `cpu_ram` (MB → GiB) in the
//!   group, i.e. what every offer of the group provides at least.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "vast";
pub(crate) const DEFAULT_ENDPOINT: &str = "https://console.vast.ai/";
const DEFAULT_REGIONS: &[&str] = &["US", "CA", "SE", "NL", "DE", "GB", "FR", "NO", "JP", "TW"];

#[derive(Debug, Default)]
pub struct Vast;

#[derive(Deserialize)]
struct Bundles {
    offers: Vec<VastOffer>,
}

#[derive(Deserialize, Debug, Clone)]
struct VastOffer {
    id: u64,
    num_gpus: f64,
    #[serde(default)]
    gpu_name: Option<String>,
    /// MB (MiB) per GPU.
    #[serde(default)]
    gpu_ram: Option<f64>,
    #[serde(default)]
    cpu_cores: Option<f64>,
    #[serde(default)]
    cpu_cores_effective: Option<f64>,
    /// Host RAM, MB.
    #[serde(default)]
    cpu_ram: Option<f64>,
    #[serde(default)]
    dph_total: Option<f64>,
    #[serde(default)]
    min_bid: Option<f64>,
    #[serde(default)]
    rentable: Option<bool>,
    #[serde(default)]
    rented: Option<bool>,
    #[serde(default)]
    geolocation: Option<String>,
}

/// One aggregated instance type in one region.
#[derive(Debug, Clone)]
struct Group {
    info: AcceleratorInfo,
    count: f64,
    offers: Vec<VastOffer>,
}

#[derive(Debug)]
struct VastCatalog {
    /// (region, instance type) → group.
    groups: BTreeMap<(String, String), Group>,
    source: String,
}

/// ISO country code at the end of a geolocation string (`"Sweden, SE"`, `"US"`). A trailing
/// continent code, as in SkyPilot's `"Texas, US, NA"`, is passed over.
pub fn country_of(geo: &str) -> Option<String> {
    let parts: Vec<&str> = geo.split(',').map(str::trim).collect();
    let is_code = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase());
    let last = *parts.last()?;
    let cc = if parts.len() >= 3 && matches!(last, "NA" | "SA" | "EU" | "AS" | "AF" | "OC" | "AN") {
        parts[parts.len() - 2]
    } else {
        last
    };
    is_code(cc).then(|| cc.to_string())
}

/// Median of a non-empty slice (mean of the two middle values for an even count).
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the workspace's rust-version
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn canonical(name: &str, gpu_ram_mb: Option<f64>) -> Option<AcceleratorInfo> {
    let hint = gpu_ram_mb.map(|m| m / 1024.0);
    accelerators::canonicalize(name, hint).or_else(|| {
        let bare: Vec<&str> = name
            .split_whitespace()
            .filter(|w| !matches!(w.to_ascii_uppercase().as_str(), "PCIE" | "SXM" | "SXM4" | "SXM5"))
            .collect();
        accelerators::canonicalize(&bare.join(" "), hint)
    })
}

fn request_body() -> serde_json::Value {
    json!({
        "verified": { "eq": true },
        "external": { "eq": false },
        "rentable": { "eq": true },
        "rented": { "eq": false },
        "num_gpus": { "gte": 1, "lte": 8 },
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "limit": 3000
    })
}

async fn fetch_catalog(cx: &FetchContext) -> Result<VastCatalog, FetchError> {
    let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
    let url = base.join("api/v0/bundles/").map_err(|e| FetchError::Config(format!("vast endpoint {base}: {e}")))?;
    let headers: Vec<(&str, String)> = match cx.env("SKYCAT_VAST_API_KEY").or_else(|| cx.env("VAST_API_KEY")) {
        Some(k) => vec![("Authorization", format!("Bearer {k}"))],
        None => {
            cx.note(CLOUD, "no Vast.ai API key (SKYCAT_VAST_API_KEY): unauthenticated search (documented as needing a key)");
            Vec::new()
        }
    };
    let body = serde_json::to_vec(&request_body()).map_err(|e| FetchError::Config(e.to_string()))?;
    let resp = cx.http.send(reqwest::Method::POST, &url, &headers, Some(("application/json", body))).await?;
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.map_err(|e| FetchError::Transport { url: url.to_string(), message: e.to_string() })?;
    if !ctype.starts_with("application/json") {
        return Err(FetchError::malformed(
            format!("vast bundles {url}"),
            format!("Content-Type {ctype:?}, expected application/json"),
        ));
    }
    let bundles: Bundles =
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("vast bundles {url}"), e))?;
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for offer in bundles.offers {
        if offer.rentable == Some(false) || offer.rented == Some(true) || offer.num_gpus < 1.0 {
            cx.skip(CLOUD, "offer not rentable", 1);
            continue;
        }
        if !offer.dph_total.is_some_and(|p| p > 0.0) {
            cx.skip(CLOUD, "offer without a price", 1);
            continue;
        }
        let Some(region) = offer.geolocation.as_deref().and_then(country_of) else {
            cx.skip(CLOUD, "offer without a country", 1);
            continue;
        };
        let Some(info) = offer.gpu_name.as_deref().and_then(|n| canonical(n, offer.gpu_ram)) else {
            cx.skip(CLOUD, "GPU model not in the accelerator registry", 1);
            continue;
        };
        let name = format!("{}x-{}", offer.num_gpus as u64, info.name);
        let count = offer.num_gpus;
        groups
            .entry((region, name))
            .or_insert_with(|| Group { info, count, offers: Vec::new() })
            .offers
            .push(offer);
    }
    Ok(VastCatalog { groups, source: url.to_string() })
}

fn fmt(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn offer_of(cx: &FetchContext, source: &str, region: &str, name: &str, g: &Group) -> Offer {
    let on_demand: Vec<f64> = g.offers.iter().filter_map(|o| o.dph_total).collect();
    let bids: Vec<f64> = g.offers.iter().filter_map(|o| o.min_bid).filter(|b| *b > 0.0).collect();
    let cheapest = g
        .offers
        .iter()
        .filter(|o| o.dph_total.is_some())
        .min_by(|a, b| a.dph_total.unwrap_or(0.0).total_cmp(&b.dph_total.unwrap_or(0.0)).then(a.id.cmp(&b.id)));
    let mut o = cx.offer(CLOUD, name, region, source);
    o.accelerator_name = Some(g.info.name.clone().into());
    o.accelerator_count = g.count;
    o.accelerator_memory_gib = g.info.memory_gib;
    o.accelerator_vendor = Some(g.info.vendor.into());
    o.vcpus = g.offers.iter().filter_map(|x| x.cpu_cores_effective).min_by(|a, b| a.total_cmp(b));
    o.memory_gib = g
        .offers
        .iter()
        .filter_map(|x| {
            let ram = x.cpu_ram?;
            let share = match (x.cpu_cores_effective, x.cpu_cores) {
                (Some(e), Some(c)) if c > 0.0 && e > 0.0 => e / c,
                _ => 1.0,
            };
            Some((ram * share / 1024.0 * 100.0).round() / 100.0)
        })
        .min_by(|a, b| a.total_cmp(b));
    o.arch = Some("x86_64".into());
    o.price = median(&on_demand);
    o.spot_price = median(&bids);
    let mut text = format!(
        "on-demand median of {} offers ${} (cheapest ${}, offer {})",
        on_demand.len(),
        fmt(o.price.unwrap_or(0.0)),
        fmt(cheapest.and_then(|c| c.dph_total).unwrap_or(0.0)),
        cheapest.map(|c| c.id).unwrap_or(0)
    );
    if let Some(s) = o.spot_price {
        let low = bids.iter().copied().min_by(|a, b| a.total_cmp(b)).unwrap_or(s);
        text.push_str(&format!("; spot median min_bid ${} (cheapest ${})", fmt(s), fmt(low)));
    }
    o.price_breakdown = Some(text.into());
    o
}

#[async_trait]
impl Provider for Vast {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        let cat = cx.shared("vast:bundles", || fetch_catalog(cx)).await?;
        let set: BTreeSet<String> = cat.groups.keys().map(|(r, _)| r.clone()).collect();
        Ok(set.into_iter().collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let cat = cx.shared("vast:bundles", || fetch_catalog(cx)).await?;
        Ok(cat
            .groups
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((r, name), g)| offer_of(cx, &cat.source, r, name, g))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn countries() {
        assert_eq!(country_of("Sweden, SE").as_deref(), Some("SE"));
        assert_eq!(country_of("US").as_deref(), Some("US"));
        assert_eq!(country_of("Texas, US, NA").as_deref(), Some("US"));
        assert_eq!(country_of("Windhoek, NA").as_deref(), Some("NA"));
        assert_eq!(country_of(""), None);
    }
}
