//! One catalog row: one launchable thing at one price point.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A launchable instance type in one region (and zone, where the provider prices per zone) with
/// its on-demand and spot price in USD per hour.
///
/// Prices are `None` when the offer is not sold that way; a price is never 0 to mean "unknown".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Provider id, lower case: `aws`, `gcp`, `azure`, `lambda`, `oci`, `runpod`, `vast`, …
    pub cloud: String,
    pub instance_type: String,
    pub region: String,
    /// `None` where the provider prices per region.
    pub zone: Option<String>,
    /// Canonical accelerator name (see [`crate::accelerators`]); `None` for CPU-only offers.
    pub accelerator_name: Option<String>,
    /// Devices per instance; fractional for shared GPUs (e.g. 0.25 of an A10). 0 when none.
    pub accelerator_count: f64,
    /// Memory per device, GiB.
    pub accelerator_memory_gib: Option<f64>,
    /// `nvidia`, `amd`, `google`, `aws`, `intel`, …
    pub accelerator_vendor: Option<String>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// `x86_64` or `arm64`.
    pub arch: Option<String>,
    /// On-demand price, USD per hour.
    pub price: Option<f64>,
    /// Spot / preemptible price, USD per hour.
    pub spot_price: Option<f64>,
    pub fetched_at: DateTime<Utc>,
    /// Where the figure came from: an API URL or a file with its version.
    pub source: String,
    /// How a composed price was built, e.g. GCP's host VM + GPU rows. `None` for list prices.
    pub price_breakdown: Option<String>,
}

impl Offer {
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
            None => self.region.clone(),
        }
    }
}
