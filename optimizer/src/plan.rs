//! Single-task planning: resolve the task's resource alternatives, probe the index, rank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::interruption;
use crate::egress::{DataInput, EgressTable, InputEgress, Location};
use crate::index::{accel_key, OfferIndex, Row, F_ACCEL, F_DEFAULT_FAMILY, F_GCP_DEFAULT_HOST, F_GCP_N1, F_GCP_OFF_TABLE, NO_ZONE};
use skycat_catalog::SpotInterruption;

use crate::spec::{fmt_count, parse_infra, AcceleratorChoice, ResourcesSpec, SizeReq, TaskError, TaskSpec};

/// What to minimize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Minimize {
    #[default]
    Cost,
    Time,
    /// Cost plus the run time spot placements are expected to lose to interruptions
    /// ([`crate::interruption`], docs/expected-cost.md). Single-task plans only.
    #[serde(rename = "expected-cost", alias = "expected_cost")]
    ExpectedCost,
}

impl std::str::FromStr for Minimize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cost" => Ok(Minimize::Cost),
            "time" => Ok(Minimize::Time),
            "expected-cost" | "expected_cost" => Ok(Minimize::ExpectedCost),
            other => Err(format!("`{other}` is not cost, time or expected-cost")),
        }
    }
}

/// A cloud, or a region of it, or a zone of that, that must not be used.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct BlockedResource {
    pub cloud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Knobs of a plan that are not part of the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PlanOptions {
    pub minimize: Minimize,
    /// Estimated run time in hours, for the total cost (default 1).
    pub hours: f64,
    /// Estimated run time per accelerator kind (e.g. `{"A100": 2, "V100": 5}`); overrides `hours`
    /// for tasks on that accelerator, which is what makes `minimize: time` differ from cost.
    pub hours_by_accelerator: BTreeMap<String, f64>,
    pub blocked: Vec<BlockedResource>,
    /// Length cap of the returned failover list (the count of all feasible placements is
    /// reported separately). 0 means no cap.
    pub max_failover: usize,
    /// Data the task reads, with where it sits (single-task plans; a DAG has its own). Each
    /// placement is charged moving it there, and ranked by compute + egress. Added to the task's
    /// own `inputs:`; an entry named like one of those (its URL) replaces it, so a caller that
    /// looked up a bucket's region passes the located entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<DataInput>,
    /// The index holds only the rows [`crate::offer_filter`] keeps for this task: skip what needs
    /// rows the filter drops (the relaxed pass, reading an unknown accelerator name as the one
    /// it is part of) and fail instead, so that the caller asks again over every row.
    #[serde(skip)]
    pub filtered_rows: bool,
    /// Hours of the whole cluster one spot interruption costs under `minimize: expected-cost`:
    /// recovery plus the work lost since the last checkpoint (default 0.25).
    pub restart_overhead_hours: f64,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            minimize: Minimize::Cost,
            hours: 1.0,
            hours_by_accelerator: BTreeMap::new(),
            blocked: Vec::new(),
            max_failover: 100,
            inputs: Vec::new(),
            filtered_rows: false,
            restart_overhead_hours: crate::interruption::DEFAULT_RESTART_OVERHEAD_HOURS,
        }
    }
}

impl PlanOptions {
    pub(crate) fn validate(&self) -> Result<(), PlanError> {
        if !(self.hours.is_finite() && self.hours > 0.0) {
            return Err(PlanError::invalid("hours", "must be a positive number"));
        }
        if !(self.restart_overhead_hours.is_finite() && self.restart_overhead_hours >= 0.0) {
            return Err(PlanError::invalid("restart_overhead_hours", "must be a non-negative number"));
        }
        for (k, h) in &self.hours_by_accelerator {
            if !(h.is_finite() && *h > 0.0) {
                return Err(PlanError::invalid(format!("hours_by_accelerator.{k}"), "must be a positive number"));
            }
        }
        for (i, b) in self.blocked.iter().enumerate() {
            if b.cloud.trim().is_empty() {
                return Err(PlanError::invalid(format!("blocked[{i}].cloud"), "is empty"));
            }
        }
        for (i, d) in self.inputs.iter().enumerate() {
            check_input(d, &format!("inputs[{i}]"))?;
        }
        Ok(())
    }

    /// Estimated hours of a run on this accelerator (None = CPU-only).
    pub fn hours_for(&self, accel: Option<&str>) -> f64 {
        if let Some(a) = accel {
            let k = accel_key(a);
            if let Some(h) = self.hours_by_accelerator.iter().find(|(n, _)| accel_key(n) == k).map(|(_, h)| *h) {
                return h;
            }
        }
        self.hours
    }
}

/// One launchable choice: where, what, at what price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    pub cloud: String,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// Accelerator name, None for CPU-only.
    pub accelerator: Option<String>,
    /// Accelerators per node.
    pub count: f64,
    pub use_spot: bool,
    /// USD per hour per node.
    pub hourly_price: f64,
    pub num_nodes: u32,
    /// `hourly_price × num_nodes`.
    pub hourly_total: f64,
    /// Estimated hours on this placement.
    pub hours: f64,
    /// `hourly_total × hours + egress_cost`.
    pub total_cost: f64,
    /// USD to move the task's data inputs here (0 without inputs).
    #[serde(default)]
    pub egress_cost: f64,
    /// The spot market's interruption band (AWS Spot Instance Advisor: `<5%` … `>20%`); only on
    /// spot placements, and only where the catalog knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub spot_interruption: Option<SpotInterruption>,
    /// Under `minimize: expected-cost`: `total_cost` plus the expected restart overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_cost: Option<f64>,
}

impl Placement {
    /// Hourly price for `num_nodes` nodes.
    pub fn hourly_total_for(&self, num_nodes: u32) -> f64 {
        self.hourly_price * num_nodes as f64
    }

    /// `A100:8`, or `-` for CPU-only.
    pub fn accelerator_label(&self) -> String {
        match &self.accelerator {
            Some(a) => format!("{a}:{}", fmt_count(self.count)),
            None => "-".into(),
        }
    }

    /// `region` or `region/zone`.
    pub fn location(&self) -> String {
        match &self.zone {
            Some(z) => format!("{}/{}", self.region, z),
            None => self.region.clone(),
        }
    }

    /// `H100:8 (p5.48xlarge)`.
    pub fn short(&self) -> String {
        match &self.accelerator {
            Some(_) => format!("{} ({})", self.accelerator_label(), self.instance_type),
            None => self.instance_type.clone(),
        }
    }
}

/// The answer for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub task_name: Option<String>,
    pub minimize: Minimize,
    pub num_nodes: u32,
    /// The resource alternatives considered, as labels (`A100:8`, `cpus=8+ memory>=4x`).
    pub requested: Vec<String>,
    /// The cheapest (or fastest) feasible placement.
    pub chosen: Placement,
    /// `chosen.hourly_price × num_nodes`.
    pub hourly_total: f64,
    /// `hourly_total × estimated hours + egress_cost`.
    pub total_cost: f64,
    /// USD to move the data inputs to the chosen placement (0 without inputs).
    #[serde(default)]
    pub egress_cost: f64,
    /// The data inputs the plan charged, each with its transfer to the chosen placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputEgress>,
    /// The cheapest placement of each cloud that has one, cheapest first.
    pub per_cloud_cheapest: Vec<Placement>,
    /// Every feasible placement in the order they would be tried, `chosen` first; capped at
    /// `PlanOptions::max_failover` entries.
    pub failover: Vec<Placement>,
    /// How many feasible placements exist (before the cap).
    pub feasible_count: usize,
    /// How SkyPilot's default machine rules shaped the choice, when worth saying: a CPU-only task
    /// placed on a GPU machine, a relaxed default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PlanError {
    /// The request itself is wrong (HTTP 422): `field` names what, `message` says why.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Valid, but nothing satisfies it: `cut_by` names the constraint that removed the last
    /// candidates; `nearest` are the closest offers.
    #[error("{reason}")]
    Infeasible { reason: String, cut_by: String, nearest: Vec<Placement> },
    /// The MILP solver failed on a valid model.
    #[error("solver: {message}")]
    Solver { message: String },
}

impl PlanError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<TaskError> for PlanError {
    fn from(e: TaskError) -> PlanError {
        let message = match e.line {
            Some(l) => format!("{} (line {l})", e.message),
            None => e.message,
        };
        PlanError::Invalid { field: e.field, message }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution of a task into alternatives

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

fn merged(base: &ResourcesSpec, over: &ResourcesSpec) -> ResourcesSpec {
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
fn gcp_n1_host_cpus(a: &AcceleratorChoice) -> Option<f64> {
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

// ---------------------------------------------------------------------------------------------
// Probing the index

/// A blocked resource as ids: cloud (None = not in the catalog), region and zone as in [`Probe`].
pub(crate) type BlockedIds = (Option<u32>, Option<Option<u32>>, Option<Option<u32>>);

/// An alternative with its strings resolved to the index's ids. `None` inside an `Option<Option>`
/// means "asked for a name the index does not have" (so nothing matches).
pub(crate) struct Probe<'a> {
    pub alt: &'a Alt,
    /// SkyPilot's CPU-only default per cloud id.
    pub cpu_defaults: &'a [crate::defaults::CpuDefault],
    /// The features each cloud lacks for this alternative, by cloud id.
    pub unsupported: Vec<u8>,
    pub cloud: Option<Option<u32>>,
    pub region: Option<Option<u32>>,
    pub zone: Option<Option<u32>>,
    pub itype: Option<Option<u32>>,
    pub blocked: Vec<BlockedIds>,
}

/// Which test an offer failed (for explanations), in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Cloud,
    /// The cloud lacks a feature the task needs (multi-node, spot, open ports…).
    Feature,
    Region,
    Zone,
    InstanceType,
    /// SkyPilot's default machine rule: the instance families a CPU-only default comes from, the
    /// GPU machines it may use, the hosts GCP attaches GPUs to.
    DefaultRule,
    Cpus,
    Memory,
    Market,
    MaxHourlyCost,
    Blocked,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(ix: &'a OfferIndex, alt: &'a Alt, opts: &PlanOptions) -> Probe<'a> {
        let blocked = opts
            .blocked
            .iter()
            .map(|b| {
                (
                    ix.clouds.get(&b.cloud.trim().to_ascii_lowercase()),
                    b.region.as_ref().map(|r| ix.regions.get(r)),
                    b.zone.as_ref().map(|z| ix.zones.get(z)),
                )
            })
            .collect();
        Probe {
            alt,
            cpu_defaults: &ix.cpu_defaults,
            unsupported: {
                let mut u = ix.unsupported.clone();
                if let (Some(n), Some(a)) = (ix.clouds.get("nebius"), &alt.accel) {
                    u[n as usize] &= !crate::defaults::nebius_feature_exceptions(&a.name, a.count);
                }
                u
            },
            cloud: alt.cloud.as_ref().map(|c| ix.clouds.get(c)),
            region: alt.region.as_ref().map(|r| ix.regions.get(r)),
            zone: alt.zone.as_ref().map(|z| ix.zones.get(z)),
            itype: alt.instance_type.as_ref().map(|t| ix.itypes.get(t)),
            blocked,
        }
    }

    /// The vCPU and memory bounds offer row `r` must meet under SkyPilot's default machine rules
    /// (vCPUs, memory GiB, GiB per vCPU), or the stage that rules it out altogether.
    #[inline(always)]
    pub(crate) fn shape(&self, r: &Row) -> Result<Shape, Stage> {
        let a = self.alt;
        if a.default_shape {
            let rule = &self.cpu_defaults[r.cloud as usize];
            if r.flags & F_ACCEL != 0 && !rule.gpu_instances {
                return Err(Stage::DefaultRule);
            }
            if !a.relaxed && r.flags & F_DEFAULT_FAMILY == 0 {
                return Err(Stage::DefaultRule);
            }
            return Ok(rule.bounds(a.cpus, a.memory));
        }
        if a.instance_type.is_some() {
            // A named instance type is taken as named.
            return if a.relaxed { Err(Stage::DefaultRule) } else { Ok((a.cpus, a.memory, None)) };
        }
        if r.flags & F_GCP_OFF_TABLE != 0 && !a.relaxed {
            return Err(Stage::DefaultRule);
        }
        if r.flags & F_GCP_N1 != 0 {
            if let Some(host) = a.gcp_host_cpus {
                if r.flags & F_GCP_DEFAULT_HOST == 0 {
                    return Err(Stage::DefaultRule);
                }
                let cpus = a.cpus.or_else(|| a.memory.is_none().then_some(SizeReq { value: host, at_least: true }));
                let memory = match (a.memory, cpus) {
                    (Some(m), _) => Some(m),
                    (None, Some(c)) if !a.relaxed => {
                        Some(SizeReq { value: c.value * crate::defaults::GCP_GPU_HOST_MEMORY_PER_CPU, at_least: true })
                    }
                    _ => None,
                };
                return Ok((cpus, memory, None));
            }
        }
        if a.relaxed && r.flags & F_GCP_OFF_TABLE == 0 {
            // The relaxed pass only widens the rules above.
            return Err(Stage::DefaultRule);
        }
        Ok((a.cpus, a.memory, None))
    }

    /// The first stage offer `i` fails in the given market, or None if it passes all.
    pub(crate) fn fails(&self, ix: &OfferIndex, i: usize, spot: bool) -> Option<Stage> {
        self.fails_row(&ix.row(i as u32, spot))
    }

    /// [`Probe::fails`] on a packed row.
    #[inline(always)]
    pub(crate) fn fails_row(&self, r: &Row) -> Option<Stage> {
        fn eq(want: Option<Option<u32>>, have: u32) -> bool {
            match want {
                None => true,
                Some(Some(w)) => w == have,
                Some(None) => false,
            }
        }
        if !eq(self.cloud, r.cloud) {
            return Some(Stage::Cloud);
        }
        if self.alt.features & self.unsupported[r.cloud as usize] != 0 {
            return Some(Stage::Feature);
        }
        if !eq(self.region, r.region) {
            return Some(Stage::Region);
        }
        if self.zone.is_some() && (r.zone == NO_ZONE || !eq(self.zone, r.zone)) {
            return Some(Stage::Zone);
        }
        if !eq(self.itype, r.itype) {
            return Some(Stage::InstanceType);
        }
        let a = self.alt;
        let (cpus, memory, ratio) = match self.shape(r) {
            Ok(b) => b,
            Err(stage) => return Some(stage),
        };
        // An offer whose shape is unknown (an SSH pool that declares no cpus/memory) is admitted
        // by a default (implied) shape; what the task asked for explicitly still cuts it.
        let unknown_shape = r.vcpus.is_nan() && r.mem.is_nan() && a.cpus.is_none() && a.memory.is_none();
        if !unknown_shape {
            if let Some(c) = cpus {
                let v = r.vcpus;
                if v.is_nan() || !c.admits(v as f64) {
                    return Some(Stage::Cpus);
                }
            }
            if memory.is_some() || ratio.is_some() {
                let m = r.mem;
                if m.is_nan() {
                    return Some(Stage::Memory);
                }
                if let Some(req) = memory {
                    if !req.admits(m as f64) {
                        return Some(Stage::Memory);
                    }
                }
                if let Some(ratio) = ratio {
                    let v = r.vcpus;
                    if v.is_nan() || (m as f64) + 1e-6 < ratio * v as f64 {
                        return Some(Stage::Memory);
                    }
                }
            }
        }
        let price = r.price;
        if !price.is_finite() {
            return Some(Stage::Market);
        }
        if let Some(maxc) = a.max_hourly_cost {
            if price > maxc + 1e-12 {
                return Some(Stage::MaxHourlyCost);
            }
        }
        for (bc, br, bz) in &self.blocked {
            let Some(bc) = bc else { continue };
            if *bc != r.cloud {
                continue;
            }
            let region_hit = match br {
                None => true,
                Some(want) => *want == Some(r.region),
            };
            let zone_hit = match bz {
                None => true,
                Some(z) => r.zone != NO_ZONE && *z == Some(r.zone),
            };
            if region_hit && zone_hit {
                return Some(Stage::Blocked);
            }
        }
        None
    }

    /// Rows this alternative draws from, cheapest first in its market.
    pub(crate) fn universe<'ix>(&self, ix: &'ix OfferIndex) -> Universe<'ix> {
        let a = self.alt;
        match (&a.accel, a.instance_type.is_some()) {
            (None, true) => {
                // An instance type without accelerators: any group.
                let ids: &[u32] = match self.itype {
                    Some(Some(t)) => ix.by_itype.get(&t).map(|v| v.as_slice()).unwrap_or(&[]),
                    _ => &[],
                };
                let mut rows: Vec<Row> = ids
                    .iter()
                    .filter(|&&i| !ix.offers[i as usize].region.trim().is_empty())
                    .map(|&i| ix.row(i, a.use_spot))
                    .filter(|r| r.price.is_finite())
                    .collect();
                rows.sort_by(|x, y| x.price.total_cmp(&y.price).then(ix.tie[x.id as usize].cmp(&ix.tie[y.id as usize])));
                Universe::Owned(rows)
            }
            (None, false) => {
                let g = &ix.default_pool;
                Universe::Borrowed(if a.use_spot { &g.spot_rows } else { &g.on_demand_rows })
            }
            _ => {
                let g = ix.group(a.accel.as_ref().map(|c| (c.name.as_str(), c.count)));
                match g {
                    Some(g) => Universe::Borrowed(if a.use_spot { &g.spot_rows } else { &g.on_demand_rows }),
                    None => Universe::Borrowed(&[]),
                }
            }
        }
    }
}

pub(crate) enum Universe<'a> {
    Borrowed(&'a [Row]),
    Owned(Vec<Row>),
}

impl Universe<'_> {
    pub(crate) fn rows(&self) -> &[Row] {
        match self {
            Universe::Borrowed(s) => s,
            Universe::Owned(v) => v,
        }
    }
}

pub(crate) fn placement(ix: &OfferIndex, i: usize, spot: bool, num_nodes: u32, hours: f64) -> Placement {
    let o = &ix.offers[i];
    let hourly_price = if spot { ix.spot[i] } else { ix.price[i] };
    let hourly_price = if hourly_price.is_finite() {
        hourly_price
    } else {
        // Explanations may show an offer whose other market is priced.
        let other = if spot { ix.price[i] } else { ix.spot[i] };
        if other.is_finite() { other } else { 0.0 }
    };
    let accelerator = if o.has_accelerator() { o.accelerator_name.as_deref().map(str::to_string) } else { None };
    let hourly_total = hourly_price * num_nodes as f64;
    Placement {
        cloud: ix.clouds.name(ix.cloud[i]).to_string(),
        region: o.region.to_string(),
        zone: o.zone.as_deref().map(str::to_string),
        instance_type: o.instance_type.to_string(),
        vcpus: o.vcpus,
        memory_gib: o.memory_gib,
        count: if accelerator.is_some() { o.accelerator_count } else { 0.0 },
        accelerator,
        use_spot: spot,
        hourly_price,
        num_nodes,
        hourly_total,
        hours,
        total_cost: hourly_total * hours,
        egress_cost: 0.0,
        spot_interruption: if spot { o.spot_interruption } else { None },
        expected_cost: None,
    }
}

/// The bounds of [`Probe::shape`]: vCPUs, memory GiB, GiB per vCPU.
pub(crate) type Shape = (Option<SizeReq>, Option<SizeReq>, Option<f64>);

/// A feasible candidate during ranking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub id: u32,
    /// Index of the alternative it satisfies.
    pub alt: u32,
    pub spot: bool,
    pub rank: (u32, u32),
    pub hours: f64,
    /// Total cost of the run (price × nodes × hours + egress).
    pub cost: f64,
    /// The egress part of `cost`.
    pub egress: f64,
    /// `cost` plus the expected restart overhead of a spot placement; `cost` unless
    /// `minimize: expected-cost`.
    pub expected: f64,
}

impl Cand {
    /// The figure `minimize` ranks money by.
    fn money(&self, m: Minimize) -> f64 {
        if m == Minimize::ExpectedCost { self.expected } else { self.cost }
    }
}

/// The egress of a plan's data inputs to each (cloud, region) of the index, computed once per
/// location.
pub(crate) struct InputCosts<'a> {
    table: &'a EgressTable,
    inputs: &'a [DataInput],
    cache: std::cell::RefCell<std::collections::HashMap<(u32, u32), f64>>,
}

impl<'a> InputCosts<'a> {
    pub(crate) fn new(table: &'a EgressTable, inputs: &'a [DataInput]) -> Self {
        InputCosts { table, inputs, cache: Default::default() }
    }

    fn cost(&self, ix: &OfferIndex, cloud: u32, region: u32) -> f64 {
        *self.cache.borrow_mut().entry((cloud, region)).or_insert_with(|| {
            let to = Location { cloud: ix.clouds.name(cloud).to_string(), region: Some(ix.regions.name(region).to_string()) };
            self.table.inputs_cost(self.inputs, &to)
        })
    }
}

fn key(c: &Cand, minimize: Minimize) -> (u32, u32, f64, f64) {
    match minimize {
        Minimize::Cost => (c.rank.0, c.rank.1, c.cost, c.hours),
        Minimize::Time => (c.rank.0, c.rank.1, c.hours, c.cost),
        Minimize::ExpectedCost => (c.rank.0, c.rank.1, c.expected, c.hours),
    }
}

fn cmp_cand(a: &Cand, b: &Cand, m: Minimize, tie: &[u32]) -> std::cmp::Ordering {
    let (ka, kb) = (key(a, m), key(b, m));
    ka.0.cmp(&kb.0)
        .then(ka.1.cmp(&kb.1))
        .then(ka.2.total_cmp(&kb.2))
        .then(ka.3.total_cmp(&kb.3))
        // Equal cost: the alternative written first (SkyPilot walks them in order), then the
        // offers' tie order.
        .then(a.alt.cmp(&b.alt))
        .then(tie[a.id as usize].cmp(&tie[b.id as usize]))
        .then(a.spot.cmp(&b.spot))
}

/// Result of walking all alternatives: the head of the ranking, the best per cloud, the count.
pub(crate) struct Ranked {
    pub top: Vec<Cand>,
    pub per_cloud: Vec<(u32, Cand)>,
    pub count: usize,
}

pub(crate) fn rank(
    ix: &OfferIndex,
    alts: &[Alt],
    num_nodes: u32,
    opts: &PlanOptions,
    cap: usize,
    egress: Option<&InputCosts>,
) -> Ranked {
    let mut top: Vec<Cand> = Vec::new();
    let mut per_cloud: Vec<(u32, Cand)> = Vec::new();
    let mut count = 0usize;
    // Alternatives may overlap (any_of entries in the same region, say): count each offer once.
    let mut seen: Vec<u8> = if alts.len() > 1 { vec![0; ix.len()] } else { Vec::new() };
    let egress_on = egress.is_some();
    let m = opts.minimize;
    // Expected cost reorders the price-sorted rows (the overhead differs per offer): keep all.
    let keep_all = egress_on || m == Minimize::ExpectedCost;
    for (ai, alt) in alts.iter().enumerate() {
        let probe = Probe::new(ix, alt, opts);
        let hours = opts.hours_for(alt.accel.as_ref().map(|a| a.name.as_str()));
        let uni = probe.universe(ix);
        let spot = alt.use_spot;
        let spot_types = spot_default_types(ix, alt, &probe);
        let mut taken = 0usize;
        for r in uni.rows() {
            if probe.fails_row(r).is_some() {
                continue;
            }
            if let Some(types) = &spot_types {
                if types.get(&r.cloud).is_some_and(|t| *t != r.itype) {
                    continue;
                }
            }
            let (id, i) = (r.id, r.id as usize);
            if !seen.is_empty() {
                let bit = 1u8 << (spot as u8);
                if seen[i] & bit != 0 {
                    continue;
                }
                seen[i] |= bit;
            }
            count += 1;
            let egress = egress.map_or(0.0, |e| e.cost(ix, r.cloud, r.region));
            let cost = r.price * num_nodes as f64 * hours + egress;
            let expected = if m == Minimize::ExpectedCost {
                let bucket = ix.offers[i].spot_interruption;
                let hourly_total = r.price * num_nodes as f64;
                interruption::expected_cost(spot, bucket, hourly_total, num_nodes, hours, opts.restart_overhead_hours, egress)
            } else {
                cost
            };
            let c = Cand { id, alt: ai as u32, spot, rank: alt.rank, hours, cost, egress, expected };
            // Rows come in price order; with egress the total order differs, so keep them all
            // and sort below.
            if taken < cap || keep_all {
                top.push(c);
                taken += 1;
            }
            let cl = r.cloud;
            match per_cloud.iter_mut().find(|(c2, _)| *c2 == cl) {
                // Cheapest per cloud is by cost, whatever the preference rank.
                Some((_, best)) => {
                    if c.money(m) < best.money(m) {
                        *best = c;
                    }
                }
                None => per_cloud.push((cl, c)),
            }
        }
    }
    if alts.len() > 1 || m == Minimize::Time || keep_all {
        top.sort_by(|a, b| cmp_cand(a, b, m, &ix.tie));
    }
    top.truncate(cap);
    per_cloud.sort_by(|a, b| a.1.money(m).total_cmp(&b.1.money(m)).then(ix.tie[a.1.id as usize].cmp(&ix.tie[b.1.id as usize])));
    Ranked { top, per_cloud, count }
}

/// SkyPilot picks a CPU-only default by on-demand price even for spot (by spot price only under
/// `max_hourly_cost`), so that a spot market in GPU machines does not pull a CPU task onto one:
/// per cloud, the instance type of the cheapest on-demand offer that fits. A cloud with no
/// on-demand offer that fits keeps all its spot offers (skycat's spot-only rows).
pub(crate) fn spot_default_types(ix: &OfferIndex, alt: &Alt, probe: &Probe) -> Option<std::collections::HashMap<u32, u32>> {
    if !(alt.default_shape && alt.use_spot && alt.max_hourly_cost.is_none()) {
        return None;
    }
    let mut types = std::collections::HashMap::new();
    for r in &ix.default_pool.on_demand_rows {
        if !types.contains_key(&r.cloud) && probe.fails_row(r).is_none() {
            types.insert(r.cloud, r.itype);
        }
    }
    Some(types)
}

/// [`rank`], then, when SkyPilot's default machine rules leave nothing, the relaxed pass
/// ([`relaxed`]). Returns the ranking and the alternatives its candidates index into.
pub(crate) fn rank_with_fallback(
    ix: &OfferIndex,
    alts: &[Alt],
    num_nodes: u32,
    opts: &PlanOptions,
    cap: usize,
    egress: Option<&InputCosts>,
) -> (Ranked, Option<Vec<Alt>>) {
    let r = rank(ix, alts, num_nodes, opts, cap, egress);
    if r.top.is_empty() && !opts.filtered_rows {
        let rel = relaxed(alts);
        if !rel.is_empty() {
            let r2 = rank(ix, &rel, num_nodes, opts, cap, egress);
            if !r2.top.is_empty() {
                return (r2, Some(rel));
            }
        }
    }
    (r, None)
}

/// Notes on how SkyPilot's default machine rules shaped the chosen placement: a CPU-only task
/// on a GPU machine, or a relaxed rule.
pub(crate) fn notes(ix: &OfferIndex, alt: &Alt, c: &Cand, opts: &PlanOptions) -> Vec<String> {
    let i = c.id as usize;
    let o = &ix.offers[i];
    let cloud = ix.clouds.name(ix.cloud[i]);
    let mut out = Vec::new();
    if alt.default_shape {
        let rule = ix.cpu_defaults[ix.cloud[i] as usize];
        let want = rule.describe(alt.cpus, alt.memory);
        if alt.relaxed {
            out.push(format!(
                "no instance of SkyPilot's default CPU families fits this task here; relaxed to any {cloud} \
                 instance with {want}: {}",
                o.instance_type
            ));
        }
        if o.has_accelerator() {
            let gpus = format!("{}:{}", o.accelerator_name.as_deref().unwrap_or("?"), fmt_count(o.accelerator_count));
            let probe = Probe::new(ix, alt, opts);
            let cpu_only_fits = ix
                .group(None)
                .map(|g| if c.spot { &g.spot_rows } else { &g.on_demand_rows })
                .is_some_and(|rows| rows.iter().any(|r| r.cloud == ix.cloud[i] && probe.fails_row(r).is_none()));
            if cpu_only_fits {
                out.push(format!(
                    "CPU-only task on a GPU machine: {} ({gpus}) is the cheapest {cloud} instance with {want}; \
                     SkyPilot picks {cloud}'s default from all its instances, GPU machines included",
                    o.instance_type
                ));
            } else {
                out.push(format!(
                    "CPU-only task on a GPU machine: {cloud} sells no CPU-only machine with {want}, so {} ({gpus}), \
                     its cheapest machine that has them, is used, as SkyPilot does",
                    o.instance_type
                ));
            }
        }
    } else if alt.relaxed && ix.flags[i] & F_GCP_OFF_TABLE != 0 {
        out.push(format!(
            "no GCP machine type SkyPilot picks for {} fits here; relaxed to {}, which carries it too",
            alt.accel.as_ref().map(|a| a.to_string()).unwrap_or_default(),
            o.instance_type
        ));
    } else if alt.relaxed {
        if let (Some(host), Some(a)) = (alt.gcp_host_cpus, &alt.accel) {
            let cpus = alt.cpus.map_or(host, |c| c.value);
            let mem = cpus * crate::defaults::GCP_GPU_HOST_MEMORY_PER_CPU;
            out.push(format!(
                "no n1-standard/highmem/highcpu host with {}+ vCPUs and {}+ GiB (SkyPilot's default GCP host) carries {a} \
                 in this catalog; relaxed to {}+ vCPUs with no memory bound: {} ({} vCPUs, {} GiB)",
                fmt_count(cpus),
                fmt_count(mem),
                fmt_count(cpus),
                o.instance_type,
                o.vcpus.map(fmt_count).unwrap_or_else(|| "?".into()),
                o.memory_gib.map(fmt_count).unwrap_or_else(|| "?".into()),
            ));
        }
    }
    out
}

/// Plans one task: the cheapest (or fastest) feasible placement, the cheapest per cloud, and the
/// failover order. Data inputs (the task's `inputs:` and [`PlanOptions::inputs`]) are priced with
/// the shipped egress table; [`plan_with_egress`] takes another.
pub fn plan(task: &TaskSpec, index: &OfferIndex, opts: &PlanOptions) -> Result<Plan, PlanError> {
    plan_with_egress(task, index, EgressTable::shipped_ref(), opts)
}

/// The data inputs a single-task plan charges: `opts.inputs`, then the task's own `inputs:` that
/// no entry of `opts.inputs` names.
pub fn plan_inputs(task: &TaskSpec, opts: &PlanOptions) -> Vec<DataInput> {
    let mut out = opts.inputs.clone();
    for d in DataInput::from_task_inputs(task.inputs.as_ref()) {
        if !out.iter().any(|o| o.name.is_some() && o.name == d.name) {
            out.push(d);
        }
    }
    out
}

fn check_input(d: &DataInput, field: &str) -> Result<(), PlanError> {
    if !(d.size_gb.is_finite() && d.size_gb >= 0.0) {
        return Err(PlanError::invalid(format!("{field}.size_gb"), "must be a non-negative number"));
    }
    if d.location.cloud.trim().is_empty() {
        return Err(PlanError::invalid(format!("{field}.location.cloud"), "is empty"));
    }
    Ok(())
}

/// [`plan`] with the egress prices of `egress`: each placement's cost is its compute
/// (`hourly_total × hours`) plus moving the data inputs there, and the ranking, the cheapest per
/// cloud and the failover order go by that total. Without inputs the plan is [`plan`]'s.
pub fn plan_with_egress(task: &TaskSpec, index: &OfferIndex, egress: &EgressTable, opts: &PlanOptions) -> Result<Plan, PlanError> {
    task.validate()?;
    opts.validate()?;
    let inputs = plan_inputs(task, opts);
    for d in &inputs {
        check_input(d, &format!("inputs.{}", d.name.as_deref().unwrap_or(&d.location.cloud)))?;
    }
    let costs = InputCosts::new(egress, &inputs);
    let costs = (!inputs.is_empty()).then_some(&costs);
    let mut alts = resolve(task)?;
    let num_nodes = task.num_nodes.unwrap_or(1);
    if opts.filtered_rows && alts.iter().any(|a| a.accel.as_ref().is_some_and(|c| !index.counts_by_name.contains_key(&accel_key(&c.name)))) {
        return Err(crate::explain::explain(index, &alts, num_nodes, opts));
    }
    let name_notes = match_catalog_names(index, &mut alts);
    let cap = if opts.max_failover == 0 { usize::MAX } else { opts.max_failover.max(1) };
    let (r, relaxed_alts) = rank_with_fallback(index, &alts, num_nodes, opts, cap, costs);
    let Some(best) = r.top.first().copied() else {
        return Err(crate::explain::explain(index, &alts, num_nodes, opts));
    };
    let used = relaxed_alts.as_deref().unwrap_or(&alts);
    let mut notes = notes(index, &used[best.alt as usize], &best, opts);
    notes.splice(0..0, name_notes);
    let mut unknown: Vec<&str> = Vec::new();
    for d in &inputs {
        let c = d.location.cloud.as_str();
        if !egress.source_rates(c, d.location.region.as_deref()).known && !unknown.contains(&c) {
            unknown.push(c);
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "egress prices incomplete for {}: an unknown internet rate counts as $0/GB, an unknown inter-region rate as the internet rate",
            unknown.join(", ")
        ));
    }
    let mk = |c: &Cand| {
        let mut p = placement(index, c.id as usize, c.spot, num_nodes, c.hours);
        p.egress_cost = c.egress;
        p.total_cost += c.egress;
        if opts.minimize == Minimize::ExpectedCost {
            p.expected_cost = Some(c.expected);
        }
        p
    };
    let chosen = mk(&best);
    if opts.minimize == Minimize::ExpectedCost {
        notes.push(interruption::plan_note(&chosen, opts.restart_overhead_hours));
    }
    let transfers = if inputs.is_empty() {
        Vec::new()
    } else {
        egress.input_transfers(&inputs, &Location { cloud: chosen.cloud.clone(), region: Some(chosen.region.clone()) })
    };
    Ok(Plan {
        task_name: task.name.clone(),
        minimize: opts.minimize,
        num_nodes,
        requested: used.iter().map(|a| a.label.clone()).collect(),
        hourly_total: chosen.hourly_total,
        total_cost: chosen.total_cost,
        egress_cost: chosen.egress_cost,
        inputs: transfers,
        chosen,
        per_cloud_cheapest: r.per_cloud.iter().map(|(_, c)| mk(c)).collect(),
        failover: r.top.iter().map(mk).collect(),
        feasible_count: r.count,
        notes,
    })
}
