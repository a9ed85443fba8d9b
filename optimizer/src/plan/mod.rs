//! Single-task planning: resolve the task's resource alternatives, probe the index, rank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::interruption;
use crate::egress::{DataInput, EgressTable, InputEgress, Location};
use crate::index::{accel_key, OfferIndex, Row, F_ACCEL, F_DEFAULT_FAMILY, F_GCP_DEFAULT_HOST, F_GCP_N1, F_GCP_OFF_TABLE, NO_ZONE};
use skycat_catalog::SpotInterruption;

use crate::spec::{fmt_count, parse_infra, AcceleratorChoice, ResourcesSpec, SizeReq, TaskError, TaskSpec};

mod probe;
mod rank;
mod resolve;

pub(crate) use probe::*;
pub(crate) use rank::*;
pub(crate) use resolve::*;

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
