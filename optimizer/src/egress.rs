//! Data-transfer (egress) prices between clouds and regions. The table is data passed in by the
//! caller (the CLI and the server load `catalog-data/egress.json`); nothing here reads files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Egress prices per cloud, USD per GB, first paid tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EgressTable {
    pub clouds: BTreeMap<String, CloudEgress>,
}

/// One cloud's egress prices and where they come from. `None` = not published / unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudEgress {
    /// The public price page the figures come from.
    pub source: String,
    /// When the page was read (YYYY-MM-DD).
    pub as_of: String,
    /// Out to the internet, which is also the rate to another cloud.
    pub internet_per_gb: Option<f64>,
    /// To another region of the same cloud.
    pub inter_region_per_gb: Option<f64>,
    /// Within one region.
    #[serde(default)]
    pub same_region_per_gb: Option<f64>,
    /// Region-specific overrides (a region whose rate differs from the cloud default).
    #[serde(default)]
    pub regions: BTreeMap<String, RegionEgress>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegionEgress {
    pub internet_per_gb: Option<f64>,
    pub inter_region_per_gb: Option<f64>,
}

/// Where data sits: a cloud and, when known, a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub cloud: String,
    #[serde(default)]
    pub region: Option<String>,
}

/// The per-GB prices of moving data out of one source location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRates {
    pub internet: f64,
    pub inter_region: f64,
    pub same_region: f64,
    /// False when a figure is unknown (internet then counts as $0/GB, inter-region as the
    /// internet rate).
    pub known: bool,
}

impl EgressTable {
    pub fn from_json(s: &str) -> Result<EgressTable, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The table shipped in `catalog-data/egress.json`, compiled in.
    pub fn shipped() -> EgressTable {
        // The file is part of the repository and checked by a test; a parse failure here is a
        // build defect, not user input.
        Self::from_json(include_str!("../../catalog-data/egress.json")).unwrap_or_default()
    }

    /// Rates out of `cloud`/`region`, made monotone (same ≤ inter-region ≤ internet) so that
    /// "same region" is never priced above "another cloud".
    pub fn source_rates(&self, cloud: &str, region: Option<&str>) -> SourceRates {
        let Some(c) = self.clouds.get(&cloud.to_ascii_lowercase()) else {
            return SourceRates { internet: 0.0, inter_region: 0.0, same_region: 0.0, known: false };
        };
        let r = region.and_then(|r| c.regions.get(r));
        let internet = r.and_then(|r| r.internet_per_gb).or(c.internet_per_gb);
        let inter = r.and_then(|r| r.inter_region_per_gb).or(c.inter_region_per_gb);
        let same = c.same_region_per_gb.unwrap_or(0.0);
        let known = internet.is_some() && inter.is_some();
        // Unknown internet rate: $0 (flagged). Unknown inter-region rate: the internet rate, an
        // upper bound, since no cloud charges more between its own regions than to the internet.
        let internet = internet.unwrap_or(0.0).max(0.0);
        let inter = inter.unwrap_or(internet).clamp(0.0, internet);
        SourceRates { internet, inter_region: inter, same_region: same.clamp(0.0, inter), known }
    }

    /// USD per GB from `from` to `to`. A missing region on either side counts as "another
    /// region of the same cloud" (the conservative choice).
    pub fn rate(&self, from: &Location, to: &Location) -> f64 {
        let r = self.source_rates(&from.cloud, from.region.as_deref());
        if !from.cloud.eq_ignore_ascii_case(&to.cloud) {
            r.internet
        } else if from.region.is_some() && from.region == to.region {
            r.same_region
        } else {
            r.inter_region
        }
    }
}
