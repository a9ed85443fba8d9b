//! Which rows a command needs. A command that knows its question before it loads the catalog
//! (a GPU task, `show-gpus A100:8`) asks the loader for just those rows: the index
//! ([`crate::index`]) then turns only the matching rows into [`Offer`]s, and catalog files of
//! other clouds are not read at all.
//!
//! A filter must be conservative: it keeps every row that could change the answer. Commands
//! that cannot say (a CPU-only task, a summary of every accelerator) load everything, and a
//! command whose filtered answer is "nothing found" asks again over the whole catalog, so that
//! explanations ("did you mean", "offered counts") see every row.

use std::collections::BTreeSet;

use crate::accelerators;
use crate::offer::Offer;

/// Rows to keep. The default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Keep only rows whose accelerator matches one of these names (see [`matching_key`]);
    /// `None` keeps rows with any accelerator or none.
    accelerators: Option<BTreeSet<String>>,
    /// Keep only these clouds (lower-case); `None` keeps every cloud.
    clouds: Option<BTreeSet<String>>,
}

/// The key two accelerator spellings share when they name the same part: the registry's
/// canonical name lower-cased (`a100-80gb`, `tpu-v5e`), or the name as written, lower-cased,
/// when the registry does not know it.
pub fn matching_key(name: &str) -> String {
    match accelerators::canonicalize(name, None) {
        Some(info) => info.name.to_ascii_lowercase(),
        None => name.trim().to_ascii_lowercase(),
    }
}

impl OfferFilter {
    /// A filter that keeps every row.
    pub fn all() -> OfferFilter {
        OfferFilter::default()
    }

    /// Keep rows carrying one of `names` (any spelling the registry knows, any case).
    pub fn accelerators<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> OfferFilter {
        let keys = names.into_iter().flat_map(|n| [matching_key(n.as_ref()), n.as_ref().trim().to_ascii_lowercase()]);
        OfferFilter { accelerators: Some(keys.collect()), clouds: None }
    }

    /// Also keep only `clouds` (the intersection with any cloud restriction already set).
    pub fn in_clouds<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, clouds: I) -> OfferFilter {
        let given: BTreeSet<String> = clouds.into_iter().map(|c| c.as_ref().trim().to_ascii_lowercase()).collect();
        self.clouds = Some(match self.clouds.take() {
            Some(had) => had.intersection(&given).cloned().collect(),
            None => given,
        });
        self
    }

    /// Whether this filter keeps every row.
    pub fn is_all(&self) -> bool {
        self.accelerators.is_none() && self.clouds.is_none()
    }

    /// Whether rows of `cloud` can be kept at all (a file of another cloud need not be read).
    pub fn keeps_cloud(&self, cloud: &str) -> bool {
        self.clouds.as_ref().is_none_or(|c| c.contains(&cloud.to_ascii_lowercase()))
    }

    /// Whether a row with this accelerator name (or none) is kept, clouds aside.
    pub fn keeps_accelerator(&self, name: Option<&str>) -> bool {
        match (&self.accelerators, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(keys), Some(n)) => keys.contains(&n.trim().to_ascii_lowercase()) || keys.contains(&matching_key(n)),
        }
    }

    /// Whether `offer` is kept.
    pub fn keeps(&self, offer: &Offer) -> bool {
        self.keeps_cloud(&offer.cloud) && self.keeps_accelerator(offer.accelerator_name.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_clouds() {
        let f = OfferFilter::accelerators(["a100-80gb"]);
        assert!(f.keeps_accelerator(Some("A100-80GB")));
        assert!(!f.keeps_accelerator(Some("A100")));
        assert!(!f.keeps_accelerator(None));
        assert!(f.keeps_cloud("aws"));
        let f = OfferFilter::accelerators(["nvidia-tesla-v100"]).in_clouds(["GCP", "aws"]);
        assert!(f.keeps_accelerator(Some("V100")));
        assert!(f.keeps_cloud("gcp") && !f.keeps_cloud("azure"));
        let f = f.in_clouds(["aws"]);
        assert!(!f.keeps_cloud("gcp") && f.keeps_cloud("aws"));
        // An accelerator the registry does not know matches as written, in any case.
        assert!(OfferFilter::accelerators(["Weird-Chip"]).keeps_accelerator(Some("WEIRD-chip")));
        assert!(OfferFilter::all().is_all() && OfferFilter::all().keeps_accelerator(None));
    }
}
