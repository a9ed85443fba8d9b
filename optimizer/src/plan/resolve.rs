//! Resolution of a task into alternatives: `any_of`/`ordered` merged, accelerator sets expanded,
//! SkyPilot's name lookup and default GCP hosts applied.

use super::*;

/// One concrete resource alternative of a task, after merging `any_of`/`ordered` entries and
/// expanding accelerator sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alt {
    pub label: String,
    pub accel: Option<AcceleratorChoice>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    /// What the task asked for; SkyPilot's per-cloud defaults ([`crate::defaults`]) are applied
    /// per offer on top of these.
    pub cpus: Option<SizeReq>,
    pub memory: Option<SizeReq>,
    /// A CPU-only alternative without an instance type: the cloud's default machine rule picks.
    pub default_shape: bool,
    /// For an accelerator GCP attaches to N1 hosts: the default host vCPUs (SkyPilot's table).
    pub gcp_host_cpus: Option<f64>,
    /// The fallback pass, used only when SkyPilot's rules leave nothing: the CPU-only default
    /// families are dropped and GCP GPU hosts need no implied memory.
    pub relaxed: bool,
    pub use_spot: bool,
    pub max_hourly_cost: Option<f64>,
    /// Cloud features the alternative needs (`defaults::FEAT_*`): clouds lacking one are out.
    pub features: u8,
    /// Preference rank: lower is tried first (ordered lists); 0 everywhere for any_of/sets.
    pub rank: (u32, u32),
}

impl Alt {
    /// Whether the relaxed pass could admit something this alternative's strict pass did not.
    fn relaxable(&self) -> bool {
        let gcp_ok = self.cloud.as_deref().is_none_or(|c| c == "gcp");
        (self.default_shape && self.cloud.as_deref().is_none_or(|c| crate::defaults::cpu_default(c).families.is_some()))
            || (self.accel.is_some() && self.instance_type.is_none() && gcp_ok)
    }
}

pub(super) fn merged(base: &ResourcesSpec, over: &ResourcesSpec) -> ResourcesSpec {
    let mut r = base.clone();
    let loc_given = over.cloud.is_some() || over.region.is_some() || over.zone.is_some() || over.infra.is_some();
    if loc_given {
        r.cloud = over.cloud.clone();
        r.region = over.region.clone();
        r.zone = over.zone.clone();
        r.infra = over.infra.clone();
    }
    macro_rules! take {
        ($($f:ident),*) => { $( if over.$f.is_some() { r.$f = over.$f.clone(); } )* };
    }
    take!(
        accelerators, cpus, memory, instance_type, use_spot, max_hourly_cost, disk_size, ports, image_id, labels, disk_tier,
        network_tier, local_disk
    );
    r.any_of = None;
    r.ordered = None;
    r
}

pub(crate) fn resolve(task: &TaskSpec) -> Result<Vec<Alt>, PlanError> {
    let base = task.resources.clone().unwrap_or_default();
    let (entries, ordered): (Vec<ResourcesSpec>, bool) = match (&base.any_of, &base.ordered) {
        (Some(a), _) => (a.iter().map(|e| merged(&base, e)).collect(), false),
        (None, Some(o)) => (o.iter().map(|e| merged(&base, e)).collect(), true),
        (None, None) => (vec![base.clone()], false),
    };
    let mut alts = Vec::new();
    for (ei, e) in entries.iter().enumerate() {
        let (mut cloud, mut region, mut zone) = (e.cloud.clone(), e.region.clone(), e.zone.clone());
        if let Some(infra) = &e.infra {
            let i = parse_infra(infra).map_err(|m| PlanError::invalid("resources.infra", m))?;
            cloud = i.cloud;
            region = i.region;
            zone = i.zone;
        }
        let cloud = cloud.map(|c| c.trim().to_ascii_lowercase());
        let entry_rank = if ordered { ei as u32 } else { 0 };
        let choices: Vec<(Option<AcceleratorChoice>, u32)> = match &e.accelerators {
            Some(spec) => spec
                .choices
                .iter()
                .enumerate()
                .map(|(ci, c)| (Some(c.clone()), if spec.ordered { ci as u32 } else { 0 }))
                .collect(),
            None => vec![(None, 0)],
        };
        let features = {
            use crate::defaults::*;
            let mut f = 0u8;
            if task.num_nodes.unwrap_or(1) > 1 {
                f |= FEAT_MULTI_NODE;
            }
            if e.use_spot == Some(true) {
                f |= FEAT_SPOT;
            }
            if e.ports.as_ref().is_some_and(|p| !p.0.is_empty()) {
                f |= FEAT_OPEN_PORTS;
            }
            if e.disk_tier.as_deref().is_some_and(|t| !t.trim().eq_ignore_ascii_case("best")) {
                f |= FEAT_CUSTOM_DISK_TIER;
            }
            if e.network_tier.as_deref().is_some_and(|t| t.trim().eq_ignore_ascii_case("best")) {
                f |= FEAT_CUSTOM_NETWORK_TIER;
            }
            if e.local_disk.is_some() {
                f |= FEAT_LOCAL_DISK;
            }
            let mount = |v: &serde_json::Value| {
                v.get("mode").and_then(|m| m.as_str()).is_some_and(|m| m.eq_ignore_ascii_case("mount"))
            };
            if task.file_mounts.iter().flatten().any(|(_, v)| mount(v)) {
                f |= FEAT_STORAGE_MOUNTING;
            }
            f
        };
        for (accel, crank) in choices {
            let default_shape = accel.is_none() && e.instance_type.is_none();
            let gcp_host_cpus = accel.as_ref().and_then(gcp_n1_host_cpus);
            let mut label = Vec::new();
            if let Some(a) = &accel {
                label.push(a.to_string());
            }
            if let Some(it) = &e.instance_type {
                label.push(it.clone());
            }
            if let Some(c) = e.cpus {
                label.push(format!("cpus={c}"));
            }
            if let Some(m) = e.memory {
                label.push(format!("memory={m}"));
            }
            if default_shape && e.cpus.is_none() && e.memory.is_none() {
                label.push("default CPU instance".into());
            }
            let mut loc = cloud.clone().unwrap_or_else(|| "*".into());
            if let Some(r) = &region {
                loc.push('/');
                loc.push_str(r);
            }
            if let Some(z) = &zone {
                loc.push('/');
                loc.push_str(z);
            }
            if loc != "*" {
                label.push(format!("in {loc}"));
            }
            if e.use_spot == Some(true) {
                label.push("[spot]".into());
            }
            alts.push(Alt {
                label: label.join(" "),
                accel,
                cloud: cloud.clone(),
                region: region.clone(),
                zone: zone.clone(),
                instance_type: e.instance_type.clone(),
                cpus: e.cpus,
                memory: e.memory,
                default_shape,
                gcp_host_cpus,
                relaxed: false,
                use_spot: e.use_spot.unwrap_or(false),
                max_hourly_cost: e.max_hourly_cost,
                features,
                rank: (entry_rank, crank),
            });
        }
    }
    Ok(alts)
}

/// SkyPilot's default GCP host vCPUs for an accelerator GCP attaches to N1 hosts (None for the
/// ones with their own machine families: A100, H100, L4, TPUs…).
pub(super) fn gcp_n1_host_cpus(a: &AcceleratorChoice) -> Option<f64> {
    let info = skycat_catalog::accelerators::canonicalize(&a.name, None);
    let name = info.as_ref().map_or(a.name.as_str(), |i| i.name.as_str());
    if info.as_ref().is_some_and(|i| i.kind == skycat_catalog::accelerators::AcceleratorKind::Tpu) {
        return None;
    }
    if crate::defaults::gcp_accelerator_hosts(name, a.count).is_some() {
        return None;
    }
    crate::defaults::gcp_host_cpus(name, a.count)
}

/// SkyPilot's name lookup, for a name the catalog does not know: if it is part of exactly one
/// accelerator name the catalog has (`MI300` in `MI300X`), it means that one.
/// Returns a note per name read that way.
pub(crate) fn match_catalog_names(ix: &OfferIndex, alts: &mut [Alt]) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for a in alts {
        let Some(acc) = &mut a.accel else { continue };
        if ix.counts_by_name.contains_key(&accel_key(&acc.name)) {
            continue;
        }
        let want = acc.name.trim().to_ascii_lowercase();
        if want.is_empty() {
            continue;
        }
        let mut hits = ix.counts_by_name.keys().filter(|k| k.contains(&want));
        if let (Some(only), None) = (hits.next(), hits.next()) {
            let name = ix.accel_display_name(only);
            let note = format!(
                "accelerator `{}` is read as `{name}`, the only catalog accelerator whose name contains it (SkyPilot's lookup)",
                acc.name.trim()
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
            acc.name = name;
        }
    }
    notes
}

/// The fallback alternatives for [`rank_with_fallback`]: those of `alts` that a relaxed pass
/// could widen.
pub(crate) fn relaxed(alts: &[Alt]) -> Vec<Alt> {
    alts.iter()
        .filter(|a| a.relaxable())
        .map(|a| Alt { relaxed: true, label: format!("{} (relaxed default)", a.label), ..a.clone() })
        .collect()
}
