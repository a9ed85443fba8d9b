//! Catalog queries: filter by accelerator, cloud, location, market and size; sort by price.
//!
//! Filtering happens here, once, for every caller (CLI, server, optimizer inputs): providers only
//! turn an API into raw offers.

use serde::{Deserialize, Serialize};

use crate::offer::Offer;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferQuery {
    /// Canonical or provider spelling; matched through the accelerator registry.
    pub accelerator: Option<String>,
    /// Exact devices per instance.
    pub accelerator_count: Option<f64>,
    /// Empty = every cloud.
    pub clouds: Vec<String>,
    pub regions: Vec<String>,
    pub zones: Vec<String>,
    /// `Some(true)`: spot only (sorted by spot price); `Some(false)`: on-demand only;
    /// `None`: either, sorted by the cheaper of the two.
    pub spot: Option<bool>,
    pub min_vcpus: Option<f64>,
    pub min_memory_gib: Option<f64>,
    pub instance_type: Option<String>,
}

impl OfferQuery {
    pub fn accelerator(name: impl Into<String>) -> Self {
        OfferQuery { accelerator: Some(name.into()), ..Default::default() }
    }

    /// Whether `offer` passes every filter except the accelerator name, which the catalog's index
    /// has already applied.
    pub(crate) fn matches_rest(&self, offer: &Offer) -> bool {
        fn any_eq(list: &[String], value: &str) -> bool {
            list.is_empty() || list.iter().any(|x| x.eq_ignore_ascii_case(value))
        }
        if let Some(n) = self.accelerator_count {
            if (offer.accelerator_count - n).abs() > 1e-9 {
                return false;
            }
        }
        if !any_eq(&self.clouds, &offer.cloud) || !any_eq(&self.regions, &offer.region) {
            return false;
        }
        if !self.zones.is_empty() && !offer.zone.as_deref().is_some_and(|z| any_eq(&self.zones, z)) {
            return false;
        }
        if let Some(t) = &self.instance_type {
            if !t.eq_ignore_ascii_case(&offer.instance_type) {
                return false;
            }
        }
        if let Some(min) = self.min_vcpus {
            if !offer.vcpus.is_some_and(|v| v >= min) {
                return false;
            }
        }
        if let Some(min) = self.min_memory_gib {
            if !offer.memory_gib.is_some_and(|v| v >= min) {
                return false;
            }
        }
        self.sort_price(offer).is_some()
    }

    /// The price this query sorts by; `None` when the offer is not sold in the asked market.
    pub fn sort_price(&self, offer: &Offer) -> Option<f64> {
        match self.spot {
            Some(spot) => offer.price_for(spot),
            None => match (offer.price, offer.spot_price) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}
