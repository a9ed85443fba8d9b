//! One catalog row: one launchable thing at one price point.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A launchable instance type in one region (and zone, where the provider prices per zone) with
/// its on-demand and spot price in USD per hour.
///
/// Prices are `None` when the offer is not sold that way; a price is never 0 to mean "unknown".
///
/// Text cells are shared (`Arc<str>`): a catalog of 90k rows names a few thousand distinct
/// clouds, regions, types and sources, and a loaded row points at its catalog's one copy of each
/// rather than owning nine strings of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Provider id, lower case: `aws`, `gcp`, `azure`, `lambda`, `oci`, `runpod`, `vast`, …
    #[serde(with = "shared_text")]
    pub cloud: Arc<str>,
    #[serde(with = "shared_text")]
    pub instance_type: Arc<str>,
    #[serde(with = "shared_text")]
    pub region: Arc<str>,
    /// `None` where the provider prices per region.
    #[serde(with = "shared_text::opt", default)]
    pub zone: Option<Arc<str>>,
    /// Canonical accelerator name (see [`crate::accelerators`]); `None` for CPU-only offers.
    #[serde(with = "shared_text::opt", default)]
    pub accelerator_name: Option<Arc<str>>,
    /// Devices per instance; fractional for shared GPUs (e.g. 0.25 of an A10). 0 when none.
    pub accelerator_count: f64,
    /// Memory per device, GiB.
    pub accelerator_memory_gib: Option<f64>,
    /// `nvidia`, `amd`, `google`, `aws`, `intel`, …
    #[serde(with = "shared_text::opt", default)]
    pub accelerator_vendor: Option<Arc<str>>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// `x86_64` or `arm64`.
    #[serde(with = "shared_text::opt", default)]
    pub arch: Option<Arc<str>>,
    /// On-demand price, USD per hour.
    pub price: Option<f64>,
    /// Spot / preemptible price, USD per hour.
    pub spot_price: Option<f64>,
    pub fetched_at: DateTime<Utc>,
    /// Where the figure came from: an API URL or a file with its version.
    #[serde(with = "shared_text")]
    pub source: Arc<str>,
    /// How a composed price was built, e.g. GCP's host VM + GPU rows. `None` for list prices.
    #[serde(with = "shared_text::opt", default)]
    pub price_breakdown: Option<Arc<str>>,
    /// How often the spot market of this type and region reclaimed instances in the trailing
    /// month (AWS Spot Instance Advisor). `None` where unknown: every non-AWS offer, on-demand
    /// only offers, and catalogs built from files that carry no such figure.
    #[serde(default)]
    pub spot_interruption: Option<SpotInterruption>,
    /// The Hyper-V generations an Azure size boots (Resource SKUs' `HyperVGenerations`, SkyPilot's
    /// `Generation` column): which VM images it can start. `None` where unknown or not Azure.
    #[serde(default)]
    pub hyperv_generations: Option<HypervGenerations>,
}

/// The Spot Instance Advisor's "frequency of interruption" bucket: the share of the type's spot
/// capacity AWS reclaimed in the region during the trailing month, in five bands.
///
/// Written as the advisor's own labels (`<5%`, `5-10%`, `10-15%`, `15-20%`, `>20%`) in JSON and
/// in the Parquet column `spot_interruption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SpotInterruption {
    #[serde(rename = "<5%")]
    Under5,
    #[serde(rename = "5-10%")]
    From5To10,
    #[serde(rename = "10-15%")]
    From10To15,
    #[serde(rename = "15-20%")]
    From15To20,
    #[serde(rename = ">20%")]
    Over20,
}

impl SpotInterruption {
    /// Every bucket, from the least to the most interrupted; the position is the advisor's
    /// `ranges[].index`.
    pub const ALL: [SpotInterruption; 5] = [
        SpotInterruption::Under5,
        SpotInterruption::From5To10,
        SpotInterruption::From10To15,
        SpotInterruption::From15To20,
        SpotInterruption::Over20,
    ];

    /// The advisor's label, e.g. `5-10%`.
    pub fn label(self) -> &'static str {
        match self {
            SpotInterruption::Under5 => "<5%",
            SpotInterruption::From5To10 => "5-10%",
            SpotInterruption::From10To15 => "10-15%",
            SpotInterruption::From15To20 => "15-20%",
            SpotInterruption::Over20 => ">20%",
        }
    }

    /// The bucket with this label (surrounding blanks ignored).
    pub fn from_label(label: &str) -> Option<SpotInterruption> {
        let label = label.trim();
        SpotInterruption::ALL.into_iter().find(|b| b.label() == label)
    }

    /// The bucket of the advisor's `ranges[].index` (0 = `<5%` … 4 = `>20%`).
    pub fn from_index(index: usize) -> Option<SpotInterruption> {
        SpotInterruption::ALL.get(index).copied()
    }

    /// The advisor's bucket index, 0 (`<5%`) to 4 (`>20%`).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for SpotInterruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A set of Hyper-V generations (`V1`, `V2`, …), written as Azure and SkyPilot write it: `V1,V2`.
///
/// A bit per generation: a catalog row carries it for free, and the label is rebuilt on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HypervGenerations(u8);

impl HypervGenerations {
    /// Parses `V1,V2` / `V2` (blanks around items ignored). Anything else — an empty list, an item
    /// that is not `V<1..8>` — is refused with a message naming the item.
    pub fn parse(text: &str) -> Result<HypervGenerations, String> {
        let mut bits = 0u8;
        for item in text.split(',') {
            let item = item.trim();
            let n = item
                .strip_prefix(['V', 'v'])
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| (1..=8).contains(n))
                .ok_or_else(|| format!("Hyper-V generation {item:?} is not V1…V8 (expected a list like \"V1,V2\")"))?;
            bits |= 1 << (n - 1);
        }
        Ok(HypervGenerations(bits))
    }

    /// Whether the size boots generation `n` (1 or 2 in Azure today).
    pub fn supports(self, n: u8) -> bool {
        (1..=8).contains(&n) && self.0 & (1 << (n - 1)) != 0
    }

    /// `V1,V2`, ascending.
    pub fn label(self) -> String {
        (1..=8u8).filter(|&n| self.supports(n)).map(|n| format!("V{n}")).collect::<Vec<_>>().join(",")
    }
}

impl std::fmt::Display for HypervGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Serialize for HypervGenerations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for HypervGenerations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HypervGenerations::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Offer {
    /// An offer with only its identity, provenance and time set: no accelerator, no shape, no
    /// price. Fetchers, price rules and diffs fill in what they know.
    pub fn blank(cloud: &str, instance_type: &str, region: &str, source: &str, fetched_at: DateTime<Utc>) -> Offer {
        Offer {
            cloud: cloud.into(),
            instance_type: instance_type.into(),
            region: region.into(),
            zone: None,
            accelerator_name: None,
            accelerator_count: 0.0,
            accelerator_memory_gib: None,
            accelerator_vendor: None,
            vcpus: None,
            memory_gib: None,
            arch: None,
            price: None,
            spot_price: None,
            fetched_at,
            source: source.into(),
            price_breakdown: None,
            spot_interruption: None,
            hyperv_generations: None,
        }
    }

    /// The price for the given market, if the offer is sold that way.
    pub fn price_for(&self, spot: bool) -> Option<f64> {
        if spot {
            self.spot_price
        } else {
            self.price
        }
    }

    /// Whether the offer carries an accelerator (GPU, TPU, Trainium, …).
    pub fn has_accelerator(&self) -> bool {
        self.accelerator_name.is_some() && self.accelerator_count > 0.0
    }

    /// `region` or `region/zone`, as shown to users.
    pub fn location(&self) -> String {
        match &self.zone {
            Some(z) => format!("{}/{}", self.region, z),
            None => self.region.to_string(),
        }
    }
}

/// Serde for shared text cells, written as plain strings. (serde's own `Arc` support needs its
/// `rc` feature, which would rebuild every crate that links serde.)
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }

    pub mod opt {
        use std::sync::Arc;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&**v),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
            Option::<String>::deserialize(d).map(|v| v.map(Arc::from))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HypervGenerations;

    #[test]
    fn hyperv_generations_parse_and_print_as_azure_writes_them() {
        let g = HypervGenerations::parse(" V2 , V1").expect("list");
        assert_eq!(g.label(), "V1,V2");
        assert!(g.supports(1) && g.supports(2) && !g.supports(3) && !g.supports(0) && !g.supports(9));
        assert_eq!(HypervGenerations::parse("V2").expect("one").label(), "V2");
        assert_eq!(serde_json::to_string(&g).expect("json"), "\"V1,V2\"");
        for bad in ["", "V0", "V9", "Gen2", "V1,,V2", "2"] {
            let err = HypervGenerations::parse(bad).expect_err(bad);
            assert!(err.contains("Hyper-V generation"), "{bad}: {err}");
        }
    }
}
