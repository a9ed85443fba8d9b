//! DAG planning: one placement per task, minimizing compute + egress cost (or the makespan),
//! as a MILP.
//!
//! Model (see the crate docs for the formulation in full):
//! * candidates of task i: its feasible placements reduced to the cheapest per
//!   (cloud, region, estimated hours); binary `x[i,k]`, `Σ_k x[i,k] = 1`;
//! * compute cost `Σ x[i,k] · price_k · nodes_i · hours_ik`;
//! * an edge i→j carrying `g` GB out of location `a` costs `g · internet(a)` unless j is in the
//!   same cloud (then `g · inter_region(a)`) or the same region (`g · same_region(a)`). With
//!   `X[i,a] = Σ_{k at a} x[i,k]`, `C[j,c]` / `R[j,a]` the share of j in cloud c / region a,
//!   savings variables `s[e,a] ≤ X[i,a], s[e,a] ≤ C[j,cloud(a)]` and
//!   `t[e,a] ≤ X[i,a], t[e,a] ≤ R[j,a]` (all in [0,1]) make
//!   `g·Σ_a (X[i,a]·internet(a) − s[e,a]·(internet(a)−inter(a)) − t[e,a]·(inter(a)−same(a)))`
//!   exact at any integer x, because minimization pushes s and t to their bounds;
//! * an input of `g` GB at a fixed location adds `g · rate(location → k)` to `x[i,k]`'s cost;
//! * time: durations `D_i = Σ hours_ik x[i,k]`, transfer hours from the same savings variables
//!   with per-class bandwidths; finish times `F_j ≥ F_i + T_e + D_j`, `F_i ≥ D_i + T_in`,
//!   makespan `M ≥ F_i`. `minimize: time` minimizes M, then the cost at that M (two solves).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::egress::{DataInput, EgressTable, Location};
use crate::index::OfferIndex;
use crate::milp::{Milp, Op, SolveError};
use crate::plan::{rank_with_fallback, resolve, Minimize, Placement, PlanError, PlanOptions};
use crate::spec::{parse_task_yaml, TaskError, TaskSpec};

/// A DAG of tasks with data flowing along its edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub tasks: Vec<DagTask>,
    #[serde(default)]
    pub edges: Vec<DagEdge>,
    /// Input data and where it sits.
    #[serde(default)]
    pub inputs: Vec<DagInput>,
    /// Transfer bandwidths used by `minimize: time`.
    #[serde(default)]
    pub bandwidth_gbps: Bandwidth,
    /// Per task, keep at most this many candidate locations (cheapest first). Default 64.
    #[serde(default)]
    pub max_candidates_per_task: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagTask {
    /// Unique within the DAG; edges refer to it.
    pub name: String,
    pub task: TaskSpec,
    /// Estimated hours; defaults to the plan options' `hours`.
    #[serde(default)]
    pub hours: Option<f64>,
    /// Estimated hours per accelerator kind, overriding `hours`.
    #[serde(default)]
    pub hours_by_accelerator: BTreeMap<String, f64>,
    /// GB this task writes for each downstream task, unless the edge says otherwise.
    #[serde(default)]
    pub output_gb: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagEdge {
    pub from: String,
    pub to: String,
    /// GB moved along the edge; defaults to the source task's `output_gb`, else 0.
    #[serde(default)]
    pub data_gb: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagInput {
    /// The task reading the data.
    pub task: String,
    pub location: Location,
    pub size_gb: f64,
    /// Display name (a bucket URL, say).
    #[serde(default)]
    pub name: Option<String>,
}

/// Sustained transfer rates, Gbit/s, per class of path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Bandwidth {
    pub same_region: f64,
    pub inter_region: f64,
    pub inter_cloud: f64,
}

impl Default for Bandwidth {
    fn default() -> Self {
        // Planning assumptions, not measurements: one stream-parallel copy per edge.
        Bandwidth { same_region: 10.0, inter_region: 2.0, inter_cloud: 1.0 }
    }
}

impl Bandwidth {
    /// Hours per GB for (same region, inter-region, inter-cloud).
    fn hours_per_gb(&self) -> (f64, f64, f64) {
        let h = |gbps: f64| 8.0 / (gbps * 3600.0);
        let same = h(self.same_region);
        let inter = h(self.inter_region).max(same);
        let cloud = h(self.inter_cloud).max(inter);
        (same, inter, cloud)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DagTaskPlan {
    pub name: String,
    pub placement: Placement,
    pub compute_cost: f64,
    pub hours: f64,
    pub start_hours: f64,
    pub finish_hours: f64,
    /// Candidate locations the model chose among.
    pub candidates: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DagTransfer {
    pub from: String,
    pub to: String,
    pub gb: f64,
    pub usd_per_gb: f64,
    pub cost: f64,
    pub hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DagPlan {
    pub name: Option<String>,
    pub minimize: Minimize,
    pub tasks: Vec<DagTaskPlan>,
    pub transfers: Vec<DagTransfer>,
    pub compute_cost: f64,
    pub egress_cost: f64,
    pub total_cost: f64,
    /// Critical path length: task hours plus transfer hours along the longest path.
    pub makespan_hours: f64,
    /// Sum of all task and transfer hours.
    pub total_hours: f64,
    pub solver: String,
    pub solve_ms: f64,
    pub variables: usize,
    pub constraints: usize,
    pub warnings: Vec<String>,
}

impl DagSpec {
    /// SkyPilot's pipeline YAML: several documents, the first optionally just `name:`, then one
    /// task per document, run as a chain. A task's `outputs: {path: GB}` sizes the edge to the
    /// next task; the first task's `inputs: {s3://…: GB}` becomes an input located by its URL.
    pub fn from_pipeline_yaml(yaml: &str) -> Result<DagSpec, TaskError> {
        let docs = split_documents(yaml);
        let mut name = None;
        let mut tasks = Vec::new();
        for (idx, (offset, doc)) in docs.iter().enumerate() {
            if doc.trim().is_empty() {
                continue;
            }
            let shift = |mut e: TaskError| {
                e.line = e.line.map(|l| l + offset);
                e
            };
            // A header document holds only `name:` (SkyPilot's pipeline name).
            if idx == 0 {
                if let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str::<serde_yaml::Value>(doc) {
                    if m.len() == 1 && m.contains_key("name") {
                        name = m.get("name").and_then(|v| v.as_str()).map(String::from);
                        continue;
                    }
                }
            }
            let t = parse_task_yaml(doc).map_err(shift)?;
            tasks.push(t);
        }
        if tasks.is_empty() {
            return Err(TaskError::new("tasks", "the pipeline has no task"));
        }
        let mut spec = DagSpec {
            name,
            tasks: Vec::new(),
            edges: Vec::new(),
            inputs: Vec::new(),
            bandwidth_gbps: Bandwidth::default(),
            max_candidates_per_task: None,
        };
        let mut names: Vec<String> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            let mut n = t.name.clone().unwrap_or_else(|| format!("task-{i}"));
            if names.contains(&n) {
                n = format!("{n}-{i}");
            }
            names.push(n);
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let out: f64 = t.outputs.as_ref().map(|o| o.values().sum()).unwrap_or(0.0);
            for d in DataInput::from_task_inputs(t.inputs.as_ref()) {
                spec.inputs.push(DagInput { task: names[i].clone(), location: d.location, size_gb: d.size_gb, name: d.name });
            }
            if i > 0 {
                spec.edges.push(DagEdge { from: names[i - 1].clone(), to: names[i].clone(), data_gb: None });
            }
            spec.tasks.push(DagTask {
                name: names[i].clone(),
                task: t,
                hours: None,
                hours_by_accelerator: BTreeMap::new(),
                output_gb: if out > 0.0 { Some(out) } else { None },
            });
        }
        Ok(spec)
    }
}

/// Splits a multi-document YAML on `---` lines, keeping each document's line offset.
pub(crate) fn split_documents(yaml: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0usize;
    for (i, line) in yaml.lines().enumerate() {
        if line.trim_end() == "---" {
            out.push((start, std::mem::take(&mut cur)));
            start = i + 1;
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    out.push((start, cur));
    out
}

pub use crate::egress::cloud_of_url;

/// A candidate location of one task.
#[derive(Debug, Clone)]
struct DCand {
    placement: Placement,
    loc: Location,
    hours: f64,
    cost: f64,
}

fn task_candidates(
    ix: &OfferIndex,
    t: &DagTask,
    opts: &PlanOptions,
    minimize: Minimize,
    cap: usize,
) -> Result<Vec<DCand>, PlanError> {
    let task_opts = PlanOptions {
        hours: t.hours.unwrap_or(opts.hours),
        hours_by_accelerator: if t.hours_by_accelerator.is_empty() {
            opts.hours_by_accelerator.clone()
        } else {
            t.hours_by_accelerator.clone()
        },
        minimize,
        max_failover: 0,
        blocked: opts.blocked.clone(),
        // A DAG's inputs are its own (`DagSpec::inputs`), charged by the model.
        inputs: Vec::new(),
        filtered_rows: opts.filtered_rows,
        restart_overhead_hours: opts.restart_overhead_hours,
    };
    task_opts.validate().map_err(|e| prefix(e, &t.name))?;
    t.task.validate().map_err(|e| prefix(e.into(), &t.name))?;
    let mut alts = resolve(&t.task).map_err(|e| prefix(e, &t.name))?;
    crate::plan::match_catalog_names(ix, &mut alts);
    let nodes = t.task.num_nodes.unwrap_or(1);
    let (r, _) = rank_with_fallback(ix, &alts, nodes, &task_opts, usize::MAX, None);
    if r.top.is_empty() {
        return Err(prefix(crate::explain::explain(ix, &alts, nodes, &task_opts), &t.name));
    }
    // Cheapest per (cloud, region, hours): nothing else about a placement changes the model.
    let mut best: HashMap<(u32, u32, u64), DCand> = HashMap::new();
    for c in &r.top {
        let i = c.id as usize;
        let key = (ix.cloud[i], ix.region[i], c.hours.to_bits());
        if best.get(&key).is_some_and(|b| b.cost <= c.cost) {
            continue;
        }
        let p = crate::plan::placement(ix, i, c.spot, nodes, c.hours);
        best.insert(
            key,
            DCand {
                loc: Location { cloud: p.cloud.clone(), region: Some(p.region.clone()) },
                hours: c.hours,
                cost: c.cost,
                placement: p,
            },
        );
    }
    let mut v: Vec<DCand> = best.into_values().collect();
    match minimize {
        Minimize::Cost | Minimize::ExpectedCost => v.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.loc.cmp(&b.loc))),
        Minimize::Time => v.sort_by(|a, b| a.hours.total_cmp(&b.hours).then(a.cost.total_cmp(&b.cost)).then(a.loc.cmp(&b.loc))),
    }
    if v.len() > cap {
        // Keep the cheapest, and (for time) the fastest: interleave both orders.
        let mut by_cost = v.clone();
        by_cost.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.loc.cmp(&b.loc)));
        let mut keep: Vec<DCand> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut a = by_cost.into_iter();
        let mut b = v.into_iter();
        while keep.len() < cap {
            let mut progressed = false;
            for c in [a.next(), if minimize == Minimize::Time { b.next() } else { None }].into_iter().flatten() {
                progressed = true;
                if keep.len() < cap && seen.insert((c.loc.clone(), c.hours.to_bits())) {
                    keep.push(c);
                }
            }
            if !progressed {
                break;
            }
        }
        v = keep;
    }
    Ok(v)
}

fn prefix(e: PlanError, task: &str) -> PlanError {
    match e {
        PlanError::Invalid { field, message } => PlanError::Invalid { field: format!("tasks.{task}.{field}"), message },
        PlanError::Infeasible { reason, cut_by, nearest } => {
            PlanError::Infeasible { reason: format!("task `{task}`: {reason}"), cut_by, nearest }
        }
        other => other,
    }
}

struct Model {
    milp: Milp,
    /// x[i][k]
    x: Vec<Vec<usize>>,
    finish: Vec<usize>,
    makespan: usize,
    /// Objective coefficients of cost (compute + egress) per variable.
    cost: Vec<f64>,
}

struct EdgeData {
    from: usize,
    to: usize,
    gb: f64,
}

/// Task index by name, the edges with their sizes, and a topological order.
type Checked = (HashMap<String, usize>, Vec<EdgeData>, Vec<usize>);

fn validate_dag(dag: &DagSpec) -> Result<Checked, PlanError> {
    if dag.tasks.is_empty() {
        return Err(PlanError::invalid("tasks", "the DAG has no task"));
    }
    let mut idx = HashMap::new();
    for (i, t) in dag.tasks.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(PlanError::invalid(format!("tasks[{i}].name"), "is empty"));
        }
        if idx.insert(t.name.clone(), i).is_some() {
            return Err(PlanError::invalid(format!("tasks[{i}].name"), format!("`{}` is used twice", t.name)));
        }
        if let Some(h) = t.hours {
            if !(h.is_finite() && h > 0.0) {
                return Err(PlanError::invalid(format!("tasks.{}.hours", t.name), "must be a positive number"));
            }
        }
        if let Some(g) = t.output_gb {
            if !(g.is_finite() && g >= 0.0) {
                return Err(PlanError::invalid(format!("tasks.{}.output_gb", t.name), "must be a non-negative number"));
            }
        }
    }
    let bw = &dag.bandwidth_gbps;
    for (n, v) in [("same_region", bw.same_region), ("inter_region", bw.inter_region), ("inter_cloud", bw.inter_cloud)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(PlanError::invalid(format!("bandwidth_gbps.{n}"), "must be a positive number"));
        }
    }
    let mut edges = Vec::new();
    for (e, d) in dag.edges.iter().enumerate() {
        let f = *idx
            .get(&d.from)
            .ok_or_else(|| PlanError::invalid(format!("edges[{e}].from"), format!("no task named `{}`", d.from)))?;
        let t = *idx
            .get(&d.to)
            .ok_or_else(|| PlanError::invalid(format!("edges[{e}].to"), format!("no task named `{}`", d.to)))?;
        if f == t {
            return Err(PlanError::invalid(format!("edges[{e}]"), "an edge from a task to itself"));
        }
        let gb = d.data_gb.or(dag.tasks[f].output_gb).unwrap_or(0.0);
        if !(gb.is_finite() && gb >= 0.0) {
            return Err(PlanError::invalid(format!("edges[{e}].data_gb"), "must be a non-negative number"));
        }
        edges.push(EdgeData { from: f, to: t, gb });
    }
    for (k, inp) in dag.inputs.iter().enumerate() {
        if !idx.contains_key(&inp.task) {
            return Err(PlanError::invalid(format!("inputs[{k}].task"), format!("no task named `{}`", inp.task)));
        }
        if !(inp.size_gb.is_finite() && inp.size_gb >= 0.0) {
            return Err(PlanError::invalid(format!("inputs[{k}].size_gb"), "must be a non-negative number"));
        }
    }
    // Kahn's algorithm: a topological order, or the cycle's members.
    let n = dag.tasks.len();
    let mut indeg = vec![0usize; n];
    for e in &edges {
        indeg[e.to] += 1;
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let u = order[head];
        head += 1;
        for e in edges.iter().filter(|e| e.from == u) {
            indeg[e.to] -= 1;
            if indeg[e.to] == 0 {
                order.push(e.to);
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<&str> = (0..n).filter(|i| indeg[*i] > 0).map(|i| dag.tasks[i].name.as_str()).collect();
        return Err(PlanError::invalid("edges", format!("the graph has a cycle through {}", stuck.join(", "))));
    }
    Ok((idx, edges, order))
}

fn build(dag: &DagSpec, cands: &[Vec<DCand>], edges: &[EdgeData], egress: &EgressTable) -> Model {
    let mut m = Milp::default();
    let (h_same, h_inter, h_cloud) = dag.bandwidth_gbps.hours_per_gb();
    let n = cands.len();
    let idx: HashMap<&str, usize> = dag.tasks.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    // Input transfers: fixed source, so a per-candidate constant.
    let mut in_cost = vec![vec![0.0; 0]; n];
    let mut in_time = vec![vec![0.0; 0]; n];
    for i in 0..n {
        in_cost[i] = vec![0.0; cands[i].len()];
        in_time[i] = vec![0.0; cands[i].len()];
    }
    for inp in &dag.inputs {
        let i = idx[inp.task.as_str()];
        for (k, c) in cands[i].iter().enumerate() {
            in_cost[i][k] += inp.size_gb * egress.rate(&inp.location, &c.loc);
            let h = if !inp.location.cloud.eq_ignore_ascii_case(&c.loc.cloud) {
                h_cloud
            } else if inp.location.region.is_some() && inp.location.region == c.loc.region {
                h_same
            } else {
                h_inter
            };
            in_time[i][k] += inp.size_gb * h;
        }
    }
    let mut cost: Vec<f64> = Vec::new();
    let mut x = Vec::new();
    for i in 0..n {
        let mut xi = Vec::new();
        for (k, c) in cands[i].iter().enumerate() {
            let v = m.binary(0.0);
            cost.push(c.cost + in_cost[i][k]);
            xi.push(v);
        }
        m.row(xi.iter().map(|&v| (v, 1.0)).collect(), Op::Eq, 1.0);
        x.push(xi);
    }
    // Finish times and the makespan.
    let finish: Vec<usize> = (0..n)
        .map(|_| {
            cost.push(0.0);
            m.var(crate::milp::Kind::Continuous, 0.0, f64::INFINITY, 0.0)
        })
        .collect();
    let makespan = m.var(crate::milp::Kind::Continuous, 0.0, f64::INFINITY, 0.0);
    cost.push(0.0);
    for i in 0..n {
        // F_i ≥ D_i + input hours; M ≥ F_i.
        let mut terms = vec![(finish[i], 1.0)];
        for (k, c) in cands[i].iter().enumerate() {
            terms.push((x[i][k], -(c.hours + in_time[i][k])));
        }
        m.row(terms, Op::Ge, 0.0);
        m.row(vec![(makespan, 1.0), (finish[i], -1.0)], Op::Ge, 0.0);
    }
    for e in edges {
        let (i, j, g) = (e.from, e.to, e.gb);
        // Source locations of i, with their candidates.
        let mut locs: Vec<(Location, Vec<usize>)> = Vec::new();
        for (k, c) in cands[i].iter().enumerate() {
            match locs.iter_mut().find(|(l, _)| *l == c.loc) {
                Some((_, ks)) => ks.push(k),
                None => locs.push((c.loc.clone(), vec![k])),
            }
        }
        // Edge time: g·h_cloud − Σ savings; F_j ≥ F_i + T_e + D_j.
        let mut time_terms = vec![(finish[j], 1.0), (finish[i], -1.0)];
        for (k, c) in cands[j].iter().enumerate() {
            time_terms.push((x[j][k], -c.hours));
        }
        let time_rhs = g * h_cloud;
        for (loc, ks) in &locs {
            let r = egress.source_rates(&loc.cloud, loc.region.as_deref());
            let s = m.var(crate::milp::Kind::Continuous, 0.0, 1.0, 0.0);
            let t = m.var(crate::milp::Kind::Continuous, 0.0, 1.0, 0.0);
            // Cost: g·internet·x − g·(internet − inter)·s − g·(inter − same)·t.
            for &k in ks {
                cost[x[i][k]] += g * r.internet;
            }
            cost.push(-g * (r.internet - r.inter_region));
            cost.push(-g * (r.inter_region - r.same_region));
            // s ≤ X[i,loc], s ≤ C[j,cloud]; t ≤ X[i,loc], t ≤ R[j,loc].
            let mut xs: Vec<(usize, f64)> = ks.iter().map(|&k| (x[i][k], -1.0)).collect();
            let mut row = vec![(s, 1.0)];
            row.append(&mut xs.clone());
            m.row(row, Op::Le, 0.0);
            let mut row = vec![(t, 1.0)];
            row.append(&mut xs);
            m.row(row, Op::Le, 0.0);
            let mut same_cloud = vec![(s, 1.0)];
            let mut same_region = vec![(t, 1.0)];
            for (l, c) in cands[j].iter().enumerate() {
                if c.loc.cloud == loc.cloud {
                    same_cloud.push((x[j][l], -1.0));
                    if c.loc.region == loc.region {
                        same_region.push((x[j][l], -1.0));
                    }
                }
            }
            m.row(same_cloud, Op::Le, 0.0);
            m.row(same_region, Op::Le, 0.0);
            time_terms.push((s, g * (h_cloud - h_inter)));
            time_terms.push((t, g * (h_inter - h_same)));
        }
        m.row(time_terms, Op::Ge, time_rhs);
    }
    Model { milp: m, x, finish, makespan, cost }
}

/// Plans a DAG: one placement per task, minimizing total cost (compute + egress) or the
/// makespan (then cost), as a MILP.
pub fn plan_dag(dag: &DagSpec, index: &OfferIndex, egress: &EgressTable, opts: &PlanOptions) -> Result<DagPlan, PlanError> {
    opts.validate()?;
    if opts.minimize == Minimize::ExpectedCost {
        return Err(PlanError::invalid("minimize", "expected-cost applies to single-task plans; plan a DAG by cost or time"));
    }
    let (_, edges, order) = validate_dag(dag)?;
    let cap = dag.max_candidates_per_task.unwrap_or(64).max(1);
    let mut warnings = Vec::new();
    let mut cands = Vec::new();
    for t in &dag.tasks {
        cands.push(task_candidates(index, t, opts, opts.minimize, cap)?);
    }
    let mut unknown: Vec<String> = Vec::new();
    for c in cands.iter().flatten() {
        if !egress.source_rates(&c.loc.cloud, c.loc.region.as_deref()).known && !unknown.contains(&c.loc.cloud) {
            unknown.push(c.loc.cloud.clone());
        }
    }
    for inp in &dag.inputs {
        if !egress.source_rates(&inp.location.cloud, inp.location.region.as_deref()).known
            && !unknown.contains(&inp.location.cloud)
        {
            unknown.push(inp.location.cloud.clone());
        }
    }
    if !unknown.is_empty() && (edges.iter().any(|e| e.gb > 0.0) || !dag.inputs.is_empty()) {
        unknown.sort();
        warnings.push(format!(
            "egress prices incomplete for {}: an unknown internet rate counts as $0/GB, an unknown inter-region rate as the internet rate",
            unknown.join(", ")
        ));
    }
    let started = Instant::now();
    let mut model = build(dag, &cands, &edges, egress);
    let sol = match opts.minimize {
        Minimize::Cost | Minimize::ExpectedCost => {
            model.milp.obj = model.cost.clone();
            model.milp.solve()
        }
        Minimize::Time => {
            let mut obj = vec![0.0; model.milp.len()];
            obj[model.makespan] = 1.0;
            model.milp.obj = obj;
            match model.milp.solve() {
                Ok(first) => {
                    let best = first[model.makespan];
                    model.milp.row(vec![(model.makespan, 1.0)], Op::Le, best * (1.0 + 1e-9) + 1e-9);
                    model.milp.obj = model.cost.clone();
                    model.milp.solve().or(Ok(first))
                }
                Err(e) => Err(e),
            }
        }
    };
    let solve_ms = started.elapsed().as_secs_f64() * 1e3;
    let sol = sol.map_err(|e| match e {
        SolveError::Infeasible => PlanError::Solver { message: "the DAG model is infeasible (a defect: every task has candidates)".into() },
        SolveError::Other(m) => PlanError::Solver { message: m },
    })?;
    let choice: Vec<usize> = model
        .x
        .iter()
        .map(|xi| {
            xi.iter()
                .enumerate()
                .max_by(|a, b| sol[*a.1].total_cmp(&sol[*b.1]))
                .map(|(k, _)| k)
                .unwrap_or(0)
        })
        .collect();
    let _ = &model.finish;
    Ok(evaluate(dag, &cands, &choice, &edges, &order, egress, opts.minimize, solve_ms, &model.milp, warnings))
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    dag: &DagSpec,
    cands: &[Vec<DCand>],
    choice: &[usize],
    edges: &[EdgeData],
    order: &[usize],
    egress: &EgressTable,
    minimize: Minimize,
    solve_ms: f64,
    milp: &Milp,
    warnings: Vec<String>,
) -> DagPlan {
    let (h_same, h_inter, h_cloud) = dag.bandwidth_gbps.hours_per_gb();
    let hours_for = |from: &Location, to: &Location| {
        if !from.cloud.eq_ignore_ascii_case(&to.cloud) {
            h_cloud
        } else if from.region.is_some() && from.region == to.region {
            h_same
        } else {
            h_inter
        }
    };
    let n = dag.tasks.len();
    let chosen: Vec<&DCand> = (0..n).map(|i| &cands[i][choice[i]]).collect();
    let mut transfers = Vec::new();
    let mut ready = vec![0.0f64; n];
    for inp in &dag.inputs {
        let i = dag.tasks.iter().position(|t| t.name == inp.task).unwrap_or(0);
        let rate = egress.rate(&inp.location, &chosen[i].loc);
        let h = inp.size_gb * hours_for(&inp.location, &chosen[i].loc);
        ready[i] = ready[i].max(h);
        transfers.push(DagTransfer {
            from: inp.name.clone().unwrap_or_else(|| {
                format!("{}/{}", inp.location.cloud, inp.location.region.clone().unwrap_or_else(|| "*".into()))
            }),
            to: inp.task.clone(),
            gb: inp.size_gb,
            usd_per_gb: rate,
            cost: rate * inp.size_gb,
            hours: h,
        });
    }
    let mut start = vec![0.0f64; n];
    let mut finish = vec![0.0f64; n];
    let mut edge_hours = vec![0.0f64; edges.len()];
    for (k, e) in edges.iter().enumerate() {
        edge_hours[k] = e.gb * hours_for(&chosen[e.from].loc, &chosen[e.to].loc);
    }
    for &u in order {
        let mut s = ready[u];
        for (k, e) in edges.iter().enumerate().filter(|(_, e)| e.to == u) {
            s = s.max(finish[e.from] + edge_hours[k]);
        }
        start[u] = s;
        finish[u] = s + chosen[u].hours;
    }
    for (k, e) in edges.iter().enumerate() {
        let rate = egress.rate(&chosen[e.from].loc, &chosen[e.to].loc);
        transfers.push(DagTransfer {
            from: dag.tasks[e.from].name.clone(),
            to: dag.tasks[e.to].name.clone(),
            gb: e.gb,
            usd_per_gb: rate,
            cost: rate * e.gb,
            hours: edge_hours[k],
        });
    }
    let compute_cost: f64 = chosen.iter().map(|c| c.cost).sum();
    let egress_cost: f64 = transfers.iter().map(|t| t.cost).sum();
    let total_hours: f64 = chosen.iter().map(|c| c.hours).sum::<f64>() + transfers.iter().map(|t| t.hours).sum::<f64>();
    DagPlan {
        name: dag.name.clone(),
        minimize,
        tasks: (0..n)
            .map(|i| DagTaskPlan {
                name: dag.tasks[i].name.clone(),
                placement: chosen[i].placement.clone(),
                compute_cost: chosen[i].cost,
                hours: chosen[i].hours,
                start_hours: start[i],
                finish_hours: finish[i],
                candidates: cands[i].len(),
            })
            .collect(),
        transfers,
        compute_cost,
        egress_cost,
        total_cost: compute_cost + egress_cost,
        makespan_hours: finish.iter().cloned().fold(0.0, f64::max),
        total_hours,
        solver: Milp::solver_name().into(),
        solve_ms,
        variables: milp.len(),
        constraints: milp.rows.len(),
        warnings,
    }
}
