//! `GET /catalog/gpus`, `GET /catalog/offers`, `GET /catalog/status`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use skycat_catalog::Offer;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_bool, parse_f64, parse_usize, QueryPairs};
use crate::state::{AppState, CatalogSnapshot, GpuSummary, RefreshOutcome};

#[derive(Debug, Serialize, ToSchema)]
pub struct GpusResponse {
    pub catalog_version: u64,
    pub accelerators: Vec<GpuSummary>,
}

/// Accelerators on offer, with the device counts per instance and the cheapest on-demand and
/// spot price per device-hour on each cloud.
#[utoipa::path(get, path = "/catalog/gpus", tag = "catalog",
    responses((status = 200, body = GpusResponse)))]
pub async fn gpus(State(state): State<Arc<AppState>>) -> Json<GpusResponse> {
    let snap = state.snapshot();
    Json(GpusResponse { catalog_version: snap.version, accelerators: snap.gpus.clone() })
}

/// One catalog row as the API shows it (the catalog's `Offer`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferView {
    pub cloud: String,
    pub instance_type: String,
    pub region: String,
    pub zone: Option<String>,
    pub accelerator_name: Option<String>,
    pub accelerator_count: f64,
    pub accelerator_memory_gib: Option<f64>,
    pub accelerator_vendor: Option<String>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    pub arch: Option<String>,
    /// On-demand USD per hour.
    pub price: Option<f64>,
    /// Spot USD per hour.
    pub spot_price: Option<f64>,
    pub fetched_at: DateTime<Utc>,
    pub source: String,
    pub price_breakdown: Option<String>,
}

impl From<&Offer> for OfferView {
    fn from(o: &Offer) -> Self {
        OfferView {
            cloud: o.cloud.to_string(),
            instance_type: o.instance_type.to_string(),
            region: o.region.to_string(),
            zone: o.zone.as_deref().map(str::to_string),
            accelerator_name: o.accelerator_name.as_deref().map(str::to_string),
            accelerator_count: o.accelerator_count,
            accelerator_memory_gib: o.accelerator_memory_gib,
            accelerator_vendor: o.accelerator_vendor.as_deref().map(str::to_string),
            vcpus: o.vcpus,
            memory_gib: o.memory_gib,
            arch: o.arch.as_deref().map(str::to_string),
            price: o.price,
            spot_price: o.spot_price,
            fetched_at: o.fetched_at,
            source: o.source.to_string(),
            price_breakdown: o.price_breakdown.as_deref().map(str::to_string),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffersResponse {
    pub catalog_version: u64,
    /// Offers matching the filters (before `limit`).
    pub matched: usize,
    pub offers: Vec<OfferView>,
}

/// The filters of `GET /catalog/offers`. Lists (`cloud`, `region`, `zone`) take comma-separated
/// values or repeated parameters. Unknown parameters are rejected (400, naming them).
#[derive(Debug, Default, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffersQuery {
    /// Accelerator name, case-insensitive (`A100`, `h100`, `A100-80GB`…); `none` for CPU-only.
    #[param(min_length = 1)]
    pub accelerator: Option<String>,
    /// Exact devices per instance (> 0).
    #[param(exclusive_minimum = 0)]
    pub count: Option<f64>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    /// `true`: spot offers, sorted by spot price; `false`: on-demand offers. Absent: offers sold
    /// on demand, sorted by on-demand price.
    pub spot: Option<bool>,
    #[param(minimum = 0)]
    pub min_vcpus: Option<f64>,
    /// GiB.
    #[param(minimum = 0)]
    pub min_memory: Option<f64>,
    pub instance_type: Option<String>,
    /// At most this many offers (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// The validated form of [`OffersQuery`].
#[derive(Debug, Default)]
pub(crate) struct OfferFilter {
    /// `Some(None)`: CPU-only; `Some(Some(name))`: that canonical accelerator.
    accelerator: Option<Option<String>>,
    count: Option<f64>,
    clouds: Vec<String>,
    regions: Vec<String>,
    zones: Vec<String>,
    spot: Option<bool>,
    min_vcpus: Option<f64>,
    min_memory: Option<f64>,
    instance_types: Vec<String>,
    limit: usize,
}

const OFFER_PARAMS: &[&str] = &[
    "accelerator", "count", "cloud", "region", "zone", "spot", "min_vcpus", "min_memory",
    "instance_type", "limit",
];

fn push_list(list: &mut Vec<String>, raw: &str, lower: bool) {
    for v in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        list.push(if lower { v.to_ascii_lowercase() } else { v.to_owned() });
    }
}

impl OfferFilter {
    pub(crate) fn parse(pairs: &[(String, String)], snap: &CatalogSnapshot, max_limit: usize) -> Result<Self, ApiError> {
        let mut f = OfferFilter { limit: 100, ..Default::default() };
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            let name = k.as_str();
            let Some(known) = OFFER_PARAMS.iter().find(|p| **p == name) else {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{name}`; expected one of: {}",
                    OFFER_PARAMS.join(", ")
                ))
                .field(name));
            };
            let repeatable = matches!(*known, "cloud" | "region" | "zone" | "instance_type");
            if !repeatable && seen.contains(known) {
                return Err(ApiError::bad_request(format!("{name} is given more than once")).field(name));
            }
            seen.push(known);
            match *known {
                "accelerator" => f.accelerator = Some(resolve_accelerator(v, snap)?),
                "count" => {
                    let c = parse_f64(name, v)?;
                    if c <= 0.0 {
                        return Err(ApiError::invalid(format!("count must be > 0, got {v}")).field(name));
                    }
                    f.count = Some(c);
                }
                "cloud" => push_list(&mut f.clouds, v, true),
                "region" => push_list(&mut f.regions, v, false),
                "zone" => push_list(&mut f.zones, v, false),
                "instance_type" => push_list(&mut f.instance_types, v, false),
                "spot" => f.spot = Some(parse_bool(name, v)?),
                "min_vcpus" | "min_memory" => {
                    let x = parse_f64(name, v)?;
                    if x < 0.0 {
                        return Err(ApiError::invalid(format!("{name} must be >= 0, got {v}")).field(name));
                    }
                    if name == "min_vcpus" {
                        f.min_vcpus = Some(x);
                    } else {
                        f.min_memory = Some(x);
                    }
                }
                "limit" => {
                    let l = parse_usize(name, v)?;
                    if l == 0 || l > max_limit {
                        return Err(ApiError::invalid(format!("limit must be between 1 and {max_limit}, got {v}"))
                            .field(name));
                    }
                    f.limit = l;
                }
                _ => unreachable!("every known parameter has an arm"),
            }
        }
        for c in &f.clouds {
            if !snap.clouds.iter().any(|k| k == c) {
                return Err(ApiError::invalid(format!(
                    "unknown cloud `{c}`; the catalog has: {}",
                    snap.clouds.join(", ")
                ))
                .field("cloud"));
            }
        }
        Ok(f)
    }

    fn matches(&self, o: &Offer) -> bool {
        self.matches_any_market(o) && o.price_for(self.spot.unwrap_or(false)).is_some()
    }

    /// Every filter but the market's: the dashboard shows on-demand and spot prices side by side.
    pub(crate) fn matches_any_market(&self, o: &Offer) -> bool {
        if let Some(acc) = &self.accelerator {
            match acc {
                None if o.has_accelerator() => return false,
                Some(name) if o.accelerator_name.as_deref() != Some(name.as_str()) => return false,
                _ => {}
            }
        }
        if let Some(c) = self.count {
            if (o.accelerator_count - c).abs() > 1e-9 {
                return false;
            }
        }
        if !self.clouds.is_empty() && !self.clouds.iter().any(|c| **c == *o.cloud) {
            return false;
        }
        if !self.regions.is_empty() && !self.regions.iter().any(|r| **r == *o.region) {
            return false;
        }
        if !self.zones.is_empty() && !self.zones.iter().any(|z| Some(z.as_str()) == o.zone.as_deref()) {
            return false;
        }
        if !self.instance_types.is_empty() && !self.instance_types.iter().any(|t| **t == *o.instance_type) {
            return false;
        }
        if let Some(min) = self.min_vcpus {
            if o.vcpus.is_none_or(|v| v < min) {
                return false;
            }
        }
        if let Some(min) = self.min_memory {
            if o.memory_gib.is_none_or(|v| v < min) {
                return false;
            }
        }
        true
    }

    /// The market asked for: `Some(true)` spot, `Some(false)` on demand, None either.
    pub(crate) fn market(&self) -> Option<bool> {
        self.spot
    }

    pub(crate) fn run<'a>(&self, offers: &'a [Offer]) -> (usize, Vec<&'a Offer>) {
        let spot = self.spot.unwrap_or(false);
        let mut hits: Vec<&Offer> = offers.iter().filter(|o| self.matches(o)).collect();
        let matched = hits.len();
        let key = |o: &&Offer| o.price_for(spot).unwrap_or(f64::INFINITY);
        if hits.len() > self.limit {
            hits.select_nth_unstable_by(self.limit - 1, |a, b| key(a).total_cmp(&key(b)));
            hits.truncate(self.limit);
        }
        hits.sort_by(|a, b| {
            key(a)
                .total_cmp(&key(b))
                .then_with(|| a.cloud.cmp(&b.cloud))
                .then_with(|| a.region.cmp(&b.region))
                .then_with(|| a.zone.cmp(&b.zone))
                .then_with(|| a.instance_type.cmp(&b.instance_type))
        });
        (matched, hits)
    }
}

/// Map a user's accelerator name to the canonical name present in the catalog.
fn resolve_accelerator(raw: &str, snap: &CatalogSnapshot) -> Result<Option<String>, ApiError> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("none") || raw.eq_ignore_ascii_case("cpu") {
        return Ok(None);
    }
    if let Some(n) = snap.accelerator_names.iter().find(|n| n.eq_ignore_ascii_case(raw)) {
        return Ok(Some(n.clone()));
    }
    if let Some(info) = skycat_catalog::accelerators::canonicalize(raw, None) {
        // A real accelerator (an alias such as `nvidia-tesla-a100`, or one the catalog does not
        // carry): filter by its canonical name; absent ones simply match no offers.
        return Ok(Some(info.name));
    }
    let near = skycat_catalog::accelerators::nearest_names(
        raw,
        5,
        snap.accelerator_names.iter().map(String::as_str),
    );
    let hint = if near.is_empty() { String::new() } else { format!("; did you mean: {}", near.join(", ")) };
    Err(ApiError::invalid(format!("unknown accelerator `{raw}`{hint}")).field("accelerator"))
}

/// Offers matching the filters, cheapest first.
#[utoipa::path(get, path = "/catalog/offers", tag = "catalog", params(OffersQuery),
    responses(
        (status = 200, body = OffersResponse),
        (status = 400, description = "a parameter cannot be read", body = ErrorBody),
        (status = 422, description = "a parameter value is not acceptable", body = ErrorBody),
    ))]
pub async fn offers(
    State(state): State<Arc<AppState>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<OffersResponse>, ApiError> {
    let snap = state.snapshot();
    let filter = OfferFilter::parse(&pairs, &snap, state.config.max_offers_limit)?;
    let (matched, hits) = filter.run(snap.offers());
    Ok(Json(OffersResponse {
        catalog_version: snap.version,
        matched,
        offers: hits.into_iter().map(OfferView::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloudStatus {
    pub cloud: String,
    pub source: String,
    /// `embedded`, `user` or `memory`.
    pub origin: String,
    pub path: Option<String>,
    /// The date the provider's prices are valid for, or its version id.
    pub as_of: Option<String>,
    pub fetched_at: Option<DateTime<Utc>>,
    /// Seconds since `fetched_at`.
    pub age_seconds: Option<i64>,
    /// True when the age exceeds the server's staleness limit (or is unknown), or some regions
    /// serve rows from an earlier fetch.
    pub stale: bool,
    pub rows: usize,
    pub regions_failed: Vec<String>,
    pub stale_regions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub catalog_version: u64,
    /// When the catalog in service was loaded or swapped in.
    pub loaded_at: DateTime<Utc>,
    pub rows: usize,
    /// Age in seconds above which a cloud is reported stale.
    pub stale_after_seconds: u64,
    pub clouds: Vec<CloudStatus>,
    /// The cron expression of the background refresh, if one runs.
    pub refresh_schedule: Option<String>,
    pub next_refresh: Option<DateTime<Utc>>,
    /// The last refresh's result; `null` before the first one.
    pub last_refresh: Option<RefreshOutcome>,
}

/// The catalog in service: per cloud its source, as-of time, age, staleness and rows; and the
/// result of the last refresh.
#[utoipa::path(get, path = "/catalog/status", tag = "catalog",
    responses((status = 200, body = StatusResponse)))]
pub async fn status(State(state): State<Arc<AppState>>) -> Json<StatusResponse> {
    let snap = state.snapshot();
    let now = Utc::now();
    let stale_after = state.config.stale_after.as_secs();
    let clouds = snap
        .sources
        .iter()
        .map(|s| {
            let age = s.fetched_at.map(|t| (now - t).num_seconds().max(0));
            CloudStatus {
                cloud: s.cloud.clone(),
                source: s.source.clone(),
                origin: s.origin.clone(),
                path: s.path.clone(),
                as_of: s.as_of.clone(),
                fetched_at: s.fetched_at,
                age_seconds: age,
                stale: age.is_none_or(|a| a as u64 > stale_after) || !s.stale_regions.is_empty(),
                rows: s.rows,
                regions_failed: s.regions_failed.clone(),
                stale_regions: s.stale_regions.clone(),
            }
        })
        .collect();
    Json(StatusResponse {
        catalog_version: snap.version,
        loaded_at: snap.loaded_at,
        rows: snap.offers().len(),
        stale_after_seconds: stale_after,
        clouds,
        refresh_schedule: state.refresh_schedule.as_ref().map(|s| s.source().to_owned()),
        next_refresh: state.refresh_schedule.as_ref().and_then(|s| s.upcoming(Utc).next()),
        last_refresh: state.last_refresh(),
    })
}
