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

/// The cloud a bucket URL lives in: `s3://` AWS, `gs://` GCP, `r2://` Cloudflare, `oci://` OCI,
/// `https://ACCOUNT.blob.core.windows.net/…` Azure.
pub fn cloud_of_url(url: &str) -> Option<&'static str> {
    let u = url.to_ascii_lowercase();
    if u.starts_with("s3://") {
        Some("aws")
    } else if u.starts_with("gs://") {
        Some("gcp")
    } else if u.starts_with("r2://") {
        Some("cloudflare")
    } else if u.starts_with("oci://") {
        Some("oci")
    } else if u.starts_with("https://") && u.contains(".blob.core.windows.net") {
        Some("azure")
    } else {
        None
    }
}

/// Data a task reads, and where it sits: a single-task plan charges moving it to each candidate
/// placement (`size_gb × rate(location → placement)`, [`EgressTable::rate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataInput {
    /// Display name, and the key inputs are matched by (a bucket URL, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub location: Location,
    pub size_gb: f64,
}

impl DataInput {
    /// The inputs a task's SkyPilot `inputs: {s3://bucket/path: GB}` names, located by URL
    /// scheme (no region); entries whose URL names no known cloud are left out.
    pub fn from_task_inputs(inputs: Option<&BTreeMap<String, f64>>) -> Vec<DataInput> {
        inputs
            .into_iter()
            .flatten()
            .filter_map(|(url, gb)| {
                cloud_of_url(url).map(|cloud| DataInput {
                    name: Some(url.clone()),
                    location: Location { cloud: cloud.into(), region: None },
                    size_gb: *gb,
                })
            })
            .collect()
    }

    /// Reads `URL[@REGION]=GB` (`s3://bucket/data@us-east-1=500`: the cloud from the scheme) or
    /// `CLOUD[/REGION]=GB` (`aws/us-east-1=500`).
    pub fn parse(text: &str) -> Result<DataInput, String> {
        let t = text.trim();
        let (left, gb) = t
            .rsplit_once('=')
            .ok_or_else(|| format!("`{t}`: expected URL[@REGION]=GB or CLOUD[/REGION]=GB"))?;
        let size_gb: f64 = gb.trim().parse().map_err(|_| format!("`{t}`: `{gb}` is not a size in GB"))?;
        if !(size_gb.is_finite() && size_gb >= 0.0) {
            return Err(format!("`{t}`: the size must be a non-negative number of GB"));
        }
        let left = left.trim();
        let region_of = |r: &str| Some(r.trim().to_ascii_lowercase()).filter(|r| !r.is_empty());
        if let Some((_, after_scheme)) = left.split_once("://") {
            let (url, region) = match after_scheme.rsplit_once('@') {
                Some((_, r)) => (&left[..left.len() - r.len() - 1], region_of(r)),
                None => (left, None),
            };
            let cloud = cloud_of_url(url)
                .ok_or_else(|| format!("`{url}`: not a bucket URL (s3://, gs://, r2://, oci://, https://ACCOUNT.blob.core.windows.net/…)"))?;
            return Ok(DataInput {
                name: Some(url.to_string()),
                location: Location { cloud: cloud.into(), region },
                size_gb,
            });
        }
        let (cloud, region) = match left.split_once('/') {
            Some((c, r)) => (c, region_of(r)),
            None => (left, None),
        };
        let cloud = cloud.trim().to_ascii_lowercase();
        if cloud.is_empty() || cloud.contains(['/', '@', ' ']) {
            return Err(format!("`{t}`: expected URL[@REGION]=GB or CLOUD[/REGION]=GB"));
        }
        Ok(DataInput { name: None, location: Location { cloud, region }, size_gb })
    }

    /// `s3://bucket/data (aws/us-east-1)`, or `aws/us-east-1` unnamed.
    pub fn label(&self) -> String {
        let loc = self.location.label();
        match &self.name {
            Some(n) => format!("{n} ({loc})"),
            None => loc,
        }
    }
}

impl Location {
    /// `aws/us-east-1`, or `aws` when the region is unknown.
    pub fn label(&self) -> String {
        match &self.region {
            Some(r) => format!("{}/{r}", self.cloud),
            None => self.cloud.clone(),
        }
    }
}

/// What moving one input to the chosen placement costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputEgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the data sits.
    pub location: Location,
    pub size_gb: f64,
    /// USD per GB from `location` to the placement.
    pub usd_per_gb: f64,
    /// `size_gb × usd_per_gb`.
    pub cost: f64,
}

impl EgressTable {
    /// USD to move every input to `to` (the sum of `size_gb × rate`).
    pub fn inputs_cost(&self, inputs: &[DataInput], to: &Location) -> f64 {
        inputs.iter().map(|i| i.size_gb * self.rate(&i.location, to)).sum()
    }

    /// Each input's transfer to `to`.
    pub fn input_transfers(&self, inputs: &[DataInput], to: &Location) -> Vec<InputEgress> {
        inputs
            .iter()
            .map(|i| {
                let usd_per_gb = self.rate(&i.location, to);
                InputEgress {
                    name: i.name.clone(),
                    location: i.location.clone(),
                    size_gb: i.size_gb,
                    usd_per_gb,
                    cost: usd_per_gb * i.size_gb,
                }
            })
            .collect()
    }

    /// The shipped table ([`EgressTable::shipped`]), parsed once.
    pub fn shipped_ref() -> &'static EgressTable {
        static T: std::sync::OnceLock<EgressTable> = std::sync::OnceLock::new();
        T.get_or_init(EgressTable::shipped)
    }
}
