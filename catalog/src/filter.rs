//! Which rows a command needs. A command that knows its question before it loads the catalog
//! (a task to plan, `show-gpus A100:8`) asks the loader for just those rows: the index
//! ([`crate::index`]) then turns only the matching rows into [`Offer`]s, and catalog files of
//! other clouds are not read at all.
//!
//! A filter must be conservative: it keeps every row that could change the answer. A command
//! whose filtered answer is "nothing found" asks again over the whole catalog, so that
//! explanations ("did you mean", "offered counts") see every row.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use crate::accelerators;
use crate::offer::Offer;

/// Rows to keep: those any of its rules keeps. The default keeps everything.
#[derive(Debug, Clone, Default)]
pub struct OfferFilter {
    /// `None` keeps every row.
    any_of: Option<Vec<RowRule>>,
}

/// One conjunction of conditions on a row; an unset condition holds for every row.
#[derive(Debug, Clone, Default)]
pub struct RowRule {
    /// Only these clouds (lower-case).
    clouds: Option<BTreeSet<String>>,
    /// Only rows whose accelerator matches one of these keys (see [`matching_key`]).
    accelerators: Option<BTreeSet<String>>,
    /// Only these instance types (lower-case).
    instance_types: Option<BTreeSet<String>>,
    /// Only machines this rule admits (a CPU-only task's default machine rules).
    machines: Option<Arc<dyn MachineRule>>,
}

/// A rule on machines the catalog cannot know by itself: which instance types of a cloud a
/// CPU-only task may be placed on, and how large they must be. The optimizer implements it with
/// SkyPilot's default machine rules.
pub trait MachineRule: Send + Sync + Debug {
    /// Whether machines of `instance_type` on `cloud` can be picked at all. Judged once per
    /// distinct (cloud, type, has-accelerator) while loading.
    fn keeps_type(&self, cloud: &str, instance_type: &str, has_accelerator: bool) -> bool;
    /// The least size a machine on `cloud` must have. Judged once per cloud while loading.
    fn size_bounds(&self, cloud: &str) -> SizeBounds;
}

/// Lower bounds on a machine's size; an unknown size is always kept (an SSH pool may not say).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SizeBounds {
    pub min_vcpus: Option<f64>,
    pub min_memory_gib: Option<f64>,
    /// Memory per vCPU, GiB.
    pub min_memory_per_vcpu: Option<f64>,
}

impl SizeBounds {
    /// Whether a machine of this size can meet the bounds. Generous by a small margin: the
    /// planner compares sizes stored as `f32`.
    pub fn admits(&self, vcpus: Option<f64>, memory_gib: Option<f64>) -> bool {
        const SLACK: f64 = 1e-3;
        let below = |have: Option<f64>, want: Option<f64>| match (have, want) {
            (Some(h), Some(w)) => h < w * (1.0 - SLACK) - SLACK,
            _ => false,
        };
        if below(vcpus, self.min_vcpus) || below(memory_gib, self.min_memory_gib) {
            return false;
        }
        match (vcpus, memory_gib, self.min_memory_per_vcpu) {
            (Some(v), Some(m), Some(r)) => !below(Some(m), Some(r * v)),
            _ => true,
        }
    }
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

fn lower_set<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> BTreeSet<String> {
    names.into_iter().map(|c| c.as_ref().trim().to_ascii_lowercase()).collect()
}

fn intersect(had: Option<BTreeSet<String>>, given: BTreeSet<String>) -> Option<BTreeSet<String>> {
    Some(match had {
        Some(had) => had.intersection(&given).cloned().collect(),
        None => given,
    })
}

impl RowRule {
    /// A rule that keeps every row, to narrow with the methods below.
    pub fn every_row() -> RowRule {
        RowRule::default()
    }

    /// Keep rows carrying one of `names` (any spelling the registry knows, any case).
    pub fn accelerators<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> RowRule {
        let keys: BTreeSet<String> =
            names.into_iter().flat_map(|n| [matching_key(n.as_ref()), n.as_ref().trim().to_ascii_lowercase()]).collect();
        self.accelerators = intersect(self.accelerators.take(), keys);
        self
    }

    /// Keep rows of `clouds` only.
    pub fn in_clouds<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, clouds: I) -> RowRule {
        self.clouds = intersect(self.clouds.take(), lower_set(clouds));
        self
    }

    /// Keep rows of these instance types only (any case).
    pub fn instance_types<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> RowRule {
        self.instance_types = intersect(self.instance_types.take(), lower_set(names));
        self
    }

    /// Keep the machines `rule` admits only.
    pub fn machines(mut self, rule: Arc<dyn MachineRule>) -> RowRule {
        self.machines = Some(rule);
        self
    }

    fn keeps_everything(&self) -> bool {
        self.clouds.is_none() && self.accelerators.is_none() && self.instance_types.is_none() && self.machines.is_none()
    }

    pub(crate) fn keeps_cloud(&self, cloud: &str) -> bool {
        self.clouds.as_ref().is_none_or(|c| c.contains(&cloud.to_ascii_lowercase()))
    }

    pub(crate) fn keeps_accelerator(&self, name: Option<&str>) -> bool {
        match (&self.accelerators, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(keys), Some(n)) => keys.contains(&n.trim().to_ascii_lowercase()) || keys.contains(&matching_key(n)),
        }
    }

    pub(crate) fn keeps_instance_type(&self, name: &str) -> bool {
        self.instance_types.as_ref().is_none_or(|t| t.contains(&name.to_ascii_lowercase()))
    }

    pub(crate) fn machine_rule(&self) -> Option<&dyn MachineRule> {
        self.machines.as_deref()
    }

    /// Whether `offer` is kept.
    pub fn keeps(&self, offer: &Offer) -> bool {
        self.keeps_cloud(&offer.cloud)
            && self.keeps_accelerator(offer.accelerator_name.as_deref())
            && self.keeps_instance_type(&offer.instance_type)
            && self.machines.as_ref().is_none_or(|m| {
                m.keeps_type(&offer.cloud, &offer.instance_type, offer.has_accelerator())
                    && m.size_bounds(&offer.cloud).admits(offer.vcpus, offer.memory_gib)
            })
    }
}

impl OfferFilter {
    /// A filter that keeps every row.
    pub fn all() -> OfferFilter {
        OfferFilter::default()
    }

    /// The rows any of `rules` keeps; a rule that keeps every row makes this [`OfferFilter::all`].
    pub fn any_of<I: IntoIterator<Item = RowRule>>(rules: I) -> OfferFilter {
        let rules: Vec<RowRule> = rules.into_iter().collect();
        if rules.iter().any(RowRule::keeps_everything) {
            return OfferFilter::all();
        }
        OfferFilter { any_of: Some(rules) }
    }

    /// Keep rows carrying one of `names` (any spelling the registry knows, any case).
    pub fn accelerators<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> OfferFilter {
        OfferFilter::any_of([RowRule::every_row().accelerators(names)])
    }

    /// Also keep only `clouds` (the intersection with any cloud restriction already set).
    pub fn in_clouds<I: IntoIterator<Item = S>, S: AsRef<str>>(self, clouds: I) -> OfferFilter {
        let clouds = lower_set(clouds);
        let rules = self.any_of.unwrap_or_else(|| vec![RowRule::every_row()]);
        OfferFilter { any_of: Some(rules.into_iter().map(|r| r.in_clouds(&clouds)).collect()) }
    }

    /// Whether this filter keeps every row.
    pub fn is_all(&self) -> bool {
        self.any_of.is_none()
    }

    /// The rules, or `None` when every row is kept.
    pub(crate) fn rules(&self) -> Option<&[RowRule]> {
        self.any_of.as_deref()
    }

    /// Whether rows of `cloud` can be kept at all (a file of another cloud need not be read).
    pub fn keeps_cloud(&self, cloud: &str) -> bool {
        self.any_of.as_ref().is_none_or(|rules| rules.iter().any(|r| r.keeps_cloud(cloud)))
    }

    /// Whether `offer` is kept.
    pub fn keeps(&self, offer: &Offer) -> bool {
        self.any_of.as_ref().is_none_or(|rules| rules.iter().any(|r| r.keeps(offer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(cloud: &str, itype: &str, accel: Option<&str>, vcpus: f64, mem: f64) -> Offer {
        Offer {
            cloud: cloud.into(),
            instance_type: itype.into(),
            region: "r".into(),
            zone: None,
            accelerator_name: accel.map(Into::into),
            accelerator_count: if accel.is_some() { 1.0 } else { 0.0 },
            accelerator_vendor: None,
            accelerator_memory_gib: None,
            arch: None,
            vcpus: Some(vcpus),
            memory_gib: Some(mem),
            price: Some(1.0),
            spot_price: None,
            price_breakdown: None,
            source: "test".into(),
            fetched_at: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
            spot_interruption: None,
            hyperv_generations: None,
        }
    }

    #[derive(Debug)]
    struct OnlyM6i;
    impl MachineRule for OnlyM6i {
        fn keeps_type(&self, _cloud: &str, instance_type: &str, has_accelerator: bool) -> bool {
            !has_accelerator && instance_type.starts_with("m6i.")
        }
        fn size_bounds(&self, _cloud: &str) -> SizeBounds {
            SizeBounds { min_vcpus: Some(8.0), min_memory_gib: None, min_memory_per_vcpu: Some(4.0) }
        }
    }

    #[test]
    fn spellings_and_clouds() {
        let a100_80 = offer("aws", "p4de", Some("A100-80GB"), 96.0, 1152.0);
        let a100 = offer("gcp", "a2", Some("A100"), 12.0, 85.0);
        let f = OfferFilter::accelerators(["a100-80gb"]);
        assert!(f.keeps(&a100_80) && !f.keeps(&a100));
        assert!(!f.keeps(&offer("aws", "m6i.large", None, 2.0, 8.0)));
        assert!(f.keeps_cloud("aws"));
        let f = OfferFilter::accelerators(["nvidia-tesla-v100"]).in_clouds(["GCP", "aws"]);
        assert!(f.keeps(&offer("gcp", "n1", Some("V100"), 8.0, 30.0)));
        assert!(f.keeps_cloud("gcp") && !f.keeps_cloud("azure"));
        let f = f.in_clouds(["aws"]);
        assert!(!f.keeps_cloud("gcp") && f.keeps_cloud("aws"));
        // An accelerator the registry does not know matches as written, in any case.
        assert!(OfferFilter::accelerators(["Weird-Chip"]).keeps(&offer("x", "t", Some("WEIRD-chip"), 1.0, 1.0)));
        assert!(OfferFilter::all().is_all() && OfferFilter::all().keeps(&a100));
    }

    #[test]
    fn rules_are_alternatives_and_machines_are_judged_by_type_and_size() {
        let f = OfferFilter::any_of([
            RowRule::every_row().accelerators(["A100"]).in_clouds(["gcp"]),
            RowRule::every_row().machines(Arc::new(OnlyM6i)),
        ]);
        assert!(!f.is_all());
        assert!(f.keeps(&offer("gcp", "a2", Some("A100"), 12.0, 85.0)));
        assert!(!f.keeps(&offer("aws", "p4d", Some("A100"), 96.0, 1152.0)), "A100 only on GCP");
        assert!(f.keeps(&offer("aws", "m6i.2xlarge", None, 8.0, 32.0)));
        assert!(!f.keeps(&offer("aws", "m6i.xlarge", None, 4.0, 16.0)), "under 8 vCPUs");
        assert!(!f.keeps(&offer("aws", "m6i.8xlarge", None, 32.0, 64.0)), "under 4 GiB per vCPU");
        assert!(!f.keeps(&offer("aws", "c6i.2xlarge", None, 8.0, 32.0)), "another family");
        // Every cloud can hold a machine the CPU rule keeps.
        assert!(f.keeps_cloud("azure"));
        // A rule that keeps everything keeps everything.
        assert!(OfferFilter::any_of([RowRule::every_row(), RowRule::every_row().in_clouds(["aws"])]).is_all());
        let typed = OfferFilter::any_of([RowRule::every_row().instance_types(["M6I.large"])]);
        assert!(typed.keeps(&offer("aws", "m6i.large", None, 2.0, 8.0)));
        assert!(!typed.keeps(&offer("aws", "m6i.xlarge", None, 4.0, 16.0)));
    }

    #[test]
    fn unknown_sizes_are_kept_and_f32_sizes_pass() {
        let b = SizeBounds { min_vcpus: Some(8.0), min_memory_gib: Some(7.6), min_memory_per_vcpu: Some(0.95) };
        assert!(b.admits(None, None));
        assert!(b.admits(Some(8.0), Some(7.6_f32 as f64)));
        assert!(!b.admits(Some(7.0), Some(64.0)));
        assert!(!b.admits(Some(8.0), Some(7.0)));
    }
}
