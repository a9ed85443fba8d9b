//! skycat's optimizer: a pure library (no IO, no async) that turns a SkyPilot task YAML into
//! the cheapest placement, and plans DAGs and fleets as MILPs on good_lp.
//!
//! * [`parse_task_yaml`]: SkyPilot's task YAML, unchanged; errors name the field and the line.
//! * [`OfferIndex::build`] once per catalog version, then [`plan()`] per task: the cheapest
//!   placement, the cheapest per cloud, and the failover order. With data inputs (the task's
//!   `inputs:`, [`PlanOptions::inputs`]: a location and a size each) every placement costs its
//!   compute plus the egress of moving the data there ([`EgressTable::rate`]), and is ranked by
//!   that total ([`plan_with_egress`] takes the price table; [`plan()`] uses the shipped one).
//! * [`plan_dag`]: one placement per task, minimizing compute + egress cost or the makespan.
//! * [`plan_fleet`]: N accelerators or vCPUs as instance counts over pools, under quotas, caps,
//!   diversification, an on-demand floor and a budget.
//! * [`optimize`] dispatches an [`OptimizeRequest`] (the `POST /optimize` body).
//!
//! Semantics follow SkyPilot where it has them: a task that names no instance type gets each
//! cloud's default machine ([`defaults`]: 8+ vCPUs and 4 GiB per vCPU from general-purpose
//! families on AWS/Azure/GCP/OCI, any machine with 30+ vCPUs on Lambda, GCP GPU hosts sized per
//! GPU); `cpus: 4+` means at least 4, `cpus: 4`
//! exactly 4; an accelerator count is exact per node; a set of accelerators (or `any_of`) takes
//! the cheapest, a list (or `ordered`) the first feasible in order; `use_spot` picks the market.

pub mod dag;
pub mod defaults;
pub mod egress;
mod explain;
pub mod fleet;
pub mod index;
pub mod interruption;
mod milp;
pub mod needs;
pub mod plan;
pub mod spec;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use dag::{plan_dag, Bandwidth, DagEdge, DagInput, DagPlan, DagSpec, DagTask, DagTaskPlan, DagTransfer};
pub use egress::{cloud_of_url, CloudEgress, DataInput, EgressTable, InputEgress, Location, RegionEgress};
pub use fleet::{plan_fleet, FleetAllocation, FleetPlan, FleetSpec, FleetTarget, Quota};
pub use index::OfferIndex;
pub use needs::offer_filter;
pub use plan::{plan, plan_inputs, plan_with_egress, BlockedResource, Minimize, Placement, Plan, PlanError, PlanOptions};
pub use spec::{parse_task_yaml, AcceleratorChoice, AcceleratorsSpec, ResourcesSpec, SizeReq, TaskError, TaskSpec};

/// The body of `POST /optimize`: `{"kind": "task", …task fields…}`, `{"kind": "dag", …}` or
/// `{"kind": "fleet", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
// Built once per request and moved, never stored in bulk: boxing the task buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum OptimizeRequest {
    Task(TaskSpec),
    Dag(DagSpec),
    Fleet(FleetSpec),
}

/// The answer to an [`OptimizeRequest`], tagged the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizeResponse {
    Task(Plan),
    Dag(DagPlan),
    Fleet(FleetPlan),
}

impl OptimizeRequest {
    /// Reads a YAML body:
    /// * a SkyPilot task YAML, unchanged (no `kind:` key) → `Task`;
    /// * several `---`-separated documents (SkyPilot's pipeline form) → `Dag` (a chain);
    /// * a document with `kind: task|dag|fleet` → that variant.
    pub fn from_yaml(yaml: &str) -> Result<OptimizeRequest, TaskError> {
        let docs: Vec<(usize, String)> =
            dag::split_documents(yaml).into_iter().filter(|(_, d)| !is_blank_yaml(d)).collect();
        if docs.len() > 1 {
            return DagSpec::from_pipeline_yaml(yaml).map(OptimizeRequest::Dag);
        }
        let body = docs.first().map(|(_, d)| d.as_str()).unwrap_or("");
        let has_kind = body.lines().any(|l| l.starts_with("kind:"));
        if has_kind {
            return serde_yaml::from_str::<OptimizeRequest>(body).map_err(|e| {
                let mut err = TaskError::from_yaml(&e);
                if err.line.is_none() {
                    // Internally tagged enums buffer the document and lose positions; point at the
                    // field by name instead.
                    err.line = spec::line_of(body, err.field.rsplit('.').next().unwrap_or(&err.field));
                }
                err
            });
        }
        parse_task_yaml(body).map(OptimizeRequest::Task)
    }
}

fn is_blank_yaml(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Answers any request kind.
pub fn optimize(
    req: &OptimizeRequest,
    index: &OfferIndex,
    egress: &EgressTable,
    opts: &PlanOptions,
) -> Result<OptimizeResponse, PlanError> {
    match req {
        OptimizeRequest::Task(t) => plan_with_egress(t, index, egress, opts).map(OptimizeResponse::Task),
        OptimizeRequest::Dag(d) => plan_dag(d, index, egress, opts).map(OptimizeResponse::Dag),
        OptimizeRequest::Fleet(f) => plan_fleet(f, index, opts).map(OptimizeResponse::Fleet),
    }
}
