//! Single-task planning: resolve the task's resource alternatives, probe the index, rank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::index::{accel_key, OfferIndex, Row, NO_ZONE};
use crate::spec::{fmt_count, parse_infra, AcceleratorChoice, ResourcesSpec, SizeReq, TaskError, TaskSpec};

/// What to minimize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Minimize {
    #[default]
    Cost,
    Time,
}

impl std::str::FromStr for Minimize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cost" => Ok(Minimize::Cost),
            "time" => Ok(Minimize::Time),
            other => Err(format!("`{other}` is not cost or time")),
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
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            minimize: Minimize::Cost,
            hours: 1.0,
            hours_by_accelerator: BTreeMap::new(),
            blocked: Vec::new(),
            max_failover: 100,
        }
    }
}

impl PlanOptions {
    pub(crate) fn validate(&self) -> Result<(), PlanError> {
        if !(self.hours.is_finite() && self.hours > 0.0) {
            return Err(PlanError::invalid("hours", "must be a positive number"));
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
    /// `hourly_total × hours`.
    pub total_cost: f64,
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
    /// `hourly_total × estimated hours`.
    pub total_cost: f64,
    /// The cheapest placement of each cloud that has one, cheapest first.
    pub per_cloud_cheapest: Vec<Placement>,
    /// Every feasible placement in the order they would be tried, `chosen` first; capped at
    /// `PlanOptions::max_failover` entries.
    pub failover: Vec<Placement>,
    /// How many feasible placements exist (before the cap).
    pub feasible_count: usize,
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
    pub cpus: Option<SizeReq>,
    pub memory: Option<SizeReq>,
    /// SkyPilot's default for CPU-only tasks: memory ≥ ratio × vCPUs.
    pub mem_ratio: Option<f64>,
    pub use_spot: bool,
    pub max_hourly_cost: Option<f64>,
    /// Preference rank: lower is tried first (ordered lists); 0 everywhere for any_of/sets.
    pub rank: (u32, u32),
}

/// SkyPilot's default CPU-only instance: at least 8 vCPUs, memory ≥ 4 GiB per vCPU.
pub const DEFAULT_CPUS: f64 = 8.0;
pub const DEFAULT_MEMORY_PER_CPU: f64 = 4.0;

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
    take!(accelerators, cpus, memory, instance_type, use_spot, max_hourly_cost, disk_size, ports, image_id, labels);
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
        for (accel, crank) in choices {
            let defaults = accel.is_none() && e.instance_type.is_none() && e.cpus.is_none() && e.memory.is_none();
            let (cpus, mem_ratio) = if defaults {
                (Some(SizeReq { value: DEFAULT_CPUS, at_least: true }), Some(DEFAULT_MEMORY_PER_CPU))
            } else {
                (e.cpus, None)
            };
            let mut label = Vec::new();
            if let Some(a) = &accel {
                label.push(a.to_string());
            }
            if let Some(it) = &e.instance_type {
                label.push(it.clone());
            }
            if let Some(c) = cpus {
                label.push(format!("cpus={c}"));
            }
            if let Some(m) = e.memory {
                label.push(format!("memory={m}"));
            }
            if let Some(r) = mem_ratio {
                label.push(format!("memory>={}x", fmt_count(r)));
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
                cpus,
                memory: e.memory,
                mem_ratio,
                use_spot: e.use_spot.unwrap_or(false),
                max_hourly_cost: e.max_hourly_cost,
                rank: (entry_rank, crank),
            });
        }
    }
    Ok(alts)
}

// ---------------------------------------------------------------------------------------------
// Probing the index

/// A blocked resource as ids: cloud (None = not in the catalog), region and zone as in [`Probe`].
pub(crate) type BlockedIds = (Option<u32>, Option<Option<u32>>, Option<Option<u32>>);

/// An alternative with its strings resolved to the index's ids. `None` inside an `Option<Option>`
/// means "asked for a name the index does not have" (so nothing matches).
pub(crate) struct Probe<'a> {
    pub alt: &'a Alt,
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
    Region,
    Zone,
    InstanceType,
    Cpus,
    Memory,
    Market,
    MaxHourlyCost,
    Blocked,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(ix: &OfferIndex, alt: &'a Alt, opts: &PlanOptions) -> Probe<'a> {
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
            cloud: alt.cloud.as_ref().map(|c| ix.clouds.get(c)),
            region: alt.region.as_ref().map(|r| ix.regions.get(r)),
            zone: alt.zone.as_ref().map(|z| ix.zones.get(z)),
            itype: alt.instance_type.as_ref().map(|t| ix.itypes.get(t)),
            blocked,
        }
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
        // SkyPilot's implicit CPU-only default (8+ vCPUs, 4 GiB per vCPU; marked by `mem_ratio`)
        // is an instance-selection rule for clouds: an offer whose shape is unknown (an SSH pool
        // that declares no cpus/memory) is admitted, while explicit requirements still cut it.
        let implicit_default_on_unknown_shape = a.mem_ratio.is_some() && r.vcpus.is_nan() && r.mem.is_nan();
        if let Some(c) = a.cpus.filter(|_| !implicit_default_on_unknown_shape) {
            let v = r.vcpus;
            if v.is_nan() || !c.admits(v as f64) {
                return Some(Stage::Cpus);
            }
        }
        if (a.memory.is_some() || a.mem_ratio.is_some()) && !implicit_default_on_unknown_shape {
            let m = r.mem;
            if m.is_nan() {
                return Some(Stage::Memory);
            }
            if let Some(req) = a.memory {
                if !req.admits(m as f64) {
                    return Some(Stage::Memory);
                }
            }
            if let Some(ratio) = a.mem_ratio {
                let v = r.vcpus;
                if v.is_nan() || (m as f64) + 1e-6 < ratio * v as f64 {
                    return Some(Stage::Memory);
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
                let mut rows: Vec<Row> =
                    ids.iter().map(|&i| ix.row(i, a.use_spot)).filter(|r| r.price.is_finite()).collect();
                rows.sort_by(|x, y| x.price.total_cmp(&y.price).then(x.id.cmp(&y.id)));
                Universe::Owned(rows)
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
    let accelerator = if o.has_accelerator() { o.accelerator_name.clone() } else { None };
    let hourly_total = hourly_price * num_nodes as f64;
    Placement {
        cloud: ix.clouds.name(ix.cloud[i]).to_string(),
        region: o.region.clone(),
        zone: o.zone.clone(),
        instance_type: o.instance_type.clone(),
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
    }
}

/// A feasible candidate during ranking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub id: u32,
    pub spot: bool,
    pub rank: (u32, u32),
    pub hours: f64,
    /// Total cost of the run (price × nodes × hours).
    pub cost: f64,
}

fn key(c: &Cand, minimize: Minimize) -> (u32, u32, f64, f64) {
    match minimize {
        Minimize::Cost => (c.rank.0, c.rank.1, c.cost, c.hours),
        Minimize::Time => (c.rank.0, c.rank.1, c.hours, c.cost),
    }
}

fn cmp_cand(a: &Cand, b: &Cand, m: Minimize) -> std::cmp::Ordering {
    let (ka, kb) = (key(a, m), key(b, m));
    ka.0.cmp(&kb.0)
        .then(ka.1.cmp(&kb.1))
        .then(ka.2.total_cmp(&kb.2))
        .then(ka.3.total_cmp(&kb.3))
        .then(a.id.cmp(&b.id))
        .then(a.spot.cmp(&b.spot))
}

/// Result of walking all alternatives: the head of the ranking, the best per cloud, the count.
pub(crate) struct Ranked {
    pub top: Vec<Cand>,
    pub per_cloud: Vec<(u32, Cand)>,
    pub count: usize,
}

pub(crate) fn rank(ix: &OfferIndex, alts: &[Alt], num_nodes: u32, opts: &PlanOptions, cap: usize) -> Ranked {
    let mut top: Vec<Cand> = Vec::new();
    let mut per_cloud: Vec<(u32, Cand)> = Vec::new();
    let mut count = 0usize;
    // Alternatives may overlap (any_of entries in the same region, say): count each offer once.
    let mut seen: Vec<u8> = if alts.len() > 1 { vec![0; ix.len()] } else { Vec::new() };
    for alt in alts {
        let probe = Probe::new(ix, alt, opts);
        let hours = opts.hours_for(alt.accel.as_ref().map(|a| a.name.as_str()));
        let uni = probe.universe(ix);
        let spot = alt.use_spot;
        let mut taken = 0usize;
        for r in uni.rows() {
            if probe.fails_row(r).is_some() {
                continue;
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
            let c = Cand {
                id,
                spot,
                rank: alt.rank,
                hours,
                cost: r.price * num_nodes as f64 * hours,
            };
            if taken < cap {
                top.push(c);
                taken += 1;
            }
            let cl = r.cloud;
            match per_cloud.iter_mut().find(|(c2, _)| *c2 == cl) {
                // Cheapest per cloud is by cost, whatever the preference rank.
                Some((_, best)) => {
                    if c.cost < best.cost {
                        *best = c;
                    }
                }
                None => per_cloud.push((cl, c)),
            }
        }
    }
    let m = opts.minimize;
    if alts.len() > 1 || m == Minimize::Time {
        top.sort_by(|a, b| cmp_cand(a, b, m));
    }
    top.truncate(cap);
    per_cloud.sort_by(|a, b| a.1.cost.total_cmp(&b.1.cost).then(a.1.id.cmp(&b.1.id)));
    Ranked { top, per_cloud, count }
}

/// Plans one task: the cheapest (or fastest) feasible placement, the cheapest per cloud, and the
/// failover order.
pub fn plan(task: &TaskSpec, index: &OfferIndex, opts: &PlanOptions) -> Result<Plan, PlanError> {
    task.validate()?;
    opts.validate()?;
    let alts = resolve(task)?;
    let num_nodes = task.num_nodes.unwrap_or(1);
    let cap = if opts.max_failover == 0 { usize::MAX } else { opts.max_failover.max(1) };
    let r = rank(index, &alts, num_nodes, opts, cap);
    let Some(best) = r.top.first().copied() else {
        return Err(crate::explain::explain(index, &alts, num_nodes, opts));
    };
    let mk = |c: &Cand| placement(index, c.id as usize, c.spot, num_nodes, c.hours);
    let chosen = mk(&best);
    Ok(Plan {
        task_name: task.name.clone(),
        minimize: opts.minimize,
        num_nodes,
        requested: alts.iter().map(|a| a.label.clone()).collect(),
        hourly_total: chosen.hourly_total,
        total_cost: chosen.total_cost,
        chosen,
        per_cloud_cheapest: r.per_cloud.iter().map(|(_, c)| mk(c)).collect(),
        failover: r.top.iter().map(mk).collect(),
        feasible_count: r.count,
    })
}
