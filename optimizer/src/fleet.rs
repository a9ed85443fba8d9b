//! Fleet planning: N accelerators (or vCPUs) as integer instance counts over pools, as a MILP.
//!
//! A pool is one offer in one market (cloud, region, zone, instance type, spot or on demand).
//! With `n_p` instances of pool p supplying `u_p` units (accelerators or vCPUs) at `c_p` $/h:
//!
//! ```text
//! minimize   Σ c_p n_p
//! subject to Σ u_p n_p ≥ N                                   (target)
//!            Σ_{p in quota q} w_qp n_p ≤ Q_q                 (per-region quotas: units, vCPUs or instances)
//!            n_p ≤ cap                                        (cap per pool)
//!            u_p n_p ≤ s · N                                  (diversification: share of the target)
//!            Σ_{p on demand} u_p n_p ≥ f · N                  (on-demand floor: share of the target)
//!            Σ c_p n_p ≤ B                                    (budget, $/h)
//!            n_p ∈ {0, 1, …, min(cap, ⌊sN/u_p⌋, ⌈N/u_p⌉)}
//! ```
//!
//! Shares are fractions of the target N (not of the delivered total), which keeps every
//! constraint linear and makes over-delivery useless, so `⌈N/u_p⌉` bounds each count.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::index::{accel_key, OfferIndex};
use crate::milp::{Kind, Milp, Op, SolveError};
use crate::plan::{placement, BlockedResource, Placement, PlanError, PlanOptions};

/// "N accelerators (or vCPUs) of these kinds", with the constraints to respect.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub target: FleetTarget,
    /// Accelerator kinds allowed (`H100`, `A100-80GB`); empty = any (for an accelerator target).
    #[serde(default)]
    pub accelerators: Vec<String>,
    /// Clouds allowed; empty = any.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// Regions allowed; empty = any.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Allow spot pools (default true).
    #[serde(default = "yes")]
    pub allow_spot: bool,
    /// Allow on-demand pools (default true).
    #[serde(default = "yes")]
    pub allow_on_demand: bool,
    #[serde(default)]
    pub quotas: Vec<Quota>,
    /// At most this many instances from any one pool.
    #[serde(default)]
    pub max_instances_per_pool: Option<u32>,
    /// No pool supplies more than this fraction of the target (0 < s ≤ 1).
    #[serde(default)]
    pub max_share_per_pool: Option<f64>,
    /// On-demand pools supply at least this fraction of the target (0 ≤ f ≤ 1).
    #[serde(default)]
    pub min_on_demand_share: Option<f64>,
    /// USD per hour for the whole fleet.
    #[serde(default)]
    pub budget_per_hour: Option<f64>,
    /// Pools given to the solver, cheapest per unit first (default 500).
    #[serde(default)]
    pub max_pools: Option<usize>,
}

fn yes() -> bool {
    true
}

/// Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetTarget {
    #[serde(default)]
    pub accelerators: Option<f64>,
    #[serde(default)]
    pub vcpus: Option<f64>,
}

/// A cap on what one cloud (or one region of it) may supply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub cloud: String,
    #[serde(default)]
    pub region: Option<String>,
    /// Spot and on-demand quotas are separate on most clouds: restrict to one market.
    #[serde(default)]
    pub spot: Option<bool>,
    #[serde(default)]
    pub max_accelerators: Option<f64>,
    #[serde(default)]
    pub max_vcpus: Option<f64>,
    #[serde(default)]
    pub max_instances: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetAllocation {
    /// The pool; `num_nodes` is the instance count, `hourly_total` its $/h.
    pub placement: Placement,
    pub instances: u32,
    /// Accelerators (or vCPUs) this allocation supplies.
    pub units: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetPlan {
    pub name: Option<String>,
    /// `accelerators` or `vcpus`.
    pub unit: String,
    pub target: f64,
    pub allocations: Vec<FleetAllocation>,
    pub total_units: f64,
    pub on_demand_units: f64,
    pub hourly_cost: f64,
    /// `hourly_cost × hours`.
    pub total_cost: f64,
    pub hours: f64,
    pub pools_considered: usize,
    pub solver: String,
    pub solve_ms: f64,
}

/// One pool offered to the solver.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub offer: usize,
    pub spot: bool,
    pub units: f64,
    pub vcpus: f64,
    pub price: f64,
}

fn blocked(ix: &OfferIndex, i: usize, b: &[BlockedResource]) -> bool {
    let o = &ix.offers[i];
    b.iter().any(|b| {
        b.cloud.eq_ignore_ascii_case(&o.cloud)
            && b.region.as_ref().is_none_or(|r| **r == *o.region)
            && b.zone.as_ref().is_none_or(|z| o.zone.as_deref() == Some(z.as_str()))
    })
}

struct Checked {
    by_accel: bool,
    n: f64,
}

fn check(f: &FleetSpec) -> Result<Checked, PlanError> {
    let (by_accel, n) = match (f.target.accelerators, f.target.vcpus) {
        (Some(a), None) => (true, a),
        (None, Some(v)) => (false, v),
        _ => return Err(PlanError::invalid("target", "give exactly one of accelerators or vcpus")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(PlanError::invalid(if by_accel { "target.accelerators" } else { "target.vcpus" }, "must be a positive number"));
    }
    if !f.allow_spot && !f.allow_on_demand {
        return Err(PlanError::invalid("allow_spot", "allow_spot and allow_on_demand are both false"));
    }
    if let Some(s) = f.max_share_per_pool {
        if !(s > 0.0 && s <= 1.0) {
            return Err(PlanError::invalid("max_share_per_pool", "must be in (0, 1]"));
        }
    }
    if let Some(s) = f.min_on_demand_share {
        if !(0.0..=1.0).contains(&s) {
            return Err(PlanError::invalid("min_on_demand_share", "must be in [0, 1]"));
        }
    }
    if let Some(b) = f.budget_per_hour {
        if !(b.is_finite() && b >= 0.0) {
            return Err(PlanError::invalid("budget_per_hour", "must be a non-negative number"));
        }
    }
    for (k, q) in f.quotas.iter().enumerate() {
        if q.max_accelerators.is_none() && q.max_vcpus.is_none() && q.max_instances.is_none() {
            return Err(PlanError::invalid(format!("quotas[{k}]"), "set max_accelerators, max_vcpus or max_instances"));
        }
        for (n, v) in [("max_accelerators", q.max_accelerators), ("max_vcpus", q.max_vcpus)] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(PlanError::invalid(format!("quotas[{k}].{n}"), "must be a non-negative number"));
            }
        }
    }
    if f.max_pools == Some(0) {
        return Err(PlanError::invalid("max_pools", "must be at least 1"));
    }
    Ok(Checked { by_accel, n })
}

/// The pools a fleet may draw from, cheapest per unit first, before the count bounds.
pub(crate) fn pools(f: &FleetSpec, ix: &OfferIndex, opts: &PlanOptions, by_accel: bool) -> (Vec<Pool>, String) {
    let kinds: Vec<String> = f.accelerators.iter().map(|a| accel_key(a)).collect();
    let clouds: Vec<u32> = f.clouds.iter().filter_map(|c| ix.clouds.get(&c.to_ascii_lowercase())).collect();
    let regions: Vec<u32> = f.regions.iter().filter_map(|r| ix.regions.get(r)).collect();
    let mut cut = String::new();
    let mut out = Vec::new();
    let mut stage_counts = [0usize; 4];
    // Walk the index's accelerator groups (canonical names already resolved), not the raw rows.
    for ((name, _), g) in &ix.groups {
        if by_accel && name.is_empty() {
            continue;
        }
        if !kinds.is_empty() && !kinds.contains(name) {
            continue;
        }
        for (spot, ids) in [(false, &g.on_demand), (true, &g.spot)] {
            for &id in ids {
                let i = id as usize;
                let o = &ix.offers[i];
                let units = if by_accel {
                    o.accelerator_count
                } else {
                    match o.vcpus {
                        Some(v) if v > 0.0 => v,
                        _ => continue,
                    }
                };
                if units <= 0.0 {
                    continue;
                }
                stage_counts[0] += 1;
                if (!f.clouds.is_empty() && !clouds.contains(&ix.cloud[i]))
                    || (!f.regions.is_empty() && !regions.contains(&ix.region[i]))
                {
                    continue;
                }
                stage_counts[1] += 1;
                if !opts.blocked.is_empty() && blocked(ix, i, &opts.blocked) {
                    continue;
                }
                stage_counts[2] += 1;
                if (spot && !f.allow_spot) || (!spot && !f.allow_on_demand) {
                    continue;
                }
                let p = if spot { ix.spot[i] } else { ix.price[i] };
                if p.is_finite() && p >= 0.0 {
                    stage_counts[3] += 1;
                    out.push(Pool { offer: i, spot, units, vcpus: o.vcpus.unwrap_or(0.0), price: p });
                }
            }
        }
    }
    if out.is_empty() {
        cut = if stage_counts[0] == 0 {
            if by_accel { "accelerators".into() } else { "target.vcpus".into() }
        } else if stage_counts[1] == 0 {
            "clouds/regions".into()
        } else if stage_counts[2] == 0 {
            "blocked".into()
        } else {
            "allow_spot/allow_on_demand".into()
        };
    }
    out.sort_by(|a, b| (a.price / a.units).total_cmp(&(b.price / b.units)).then(a.offer.cmp(&b.offer)).then(a.spot.cmp(&b.spot)));
    (out, cut)
}

/// Keeps at most `max` pools, cheapest per unit first, but alternating between the on-demand
/// and the spot lists so that an on-demand floor is not starved by cheaper spot pools.
fn cap_pools(pools: Vec<Pool>, max: usize) -> Vec<Pool> {
    if pools.len() <= max {
        return pools;
    }
    let (od, spot): (Vec<Pool>, Vec<Pool>) = pools.into_iter().partition(|p| !p.spot);
    let mut out = Vec::with_capacity(max);
    let (mut a, mut b) = (od.into_iter(), spot.into_iter());
    while out.len() < max {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        out.extend(x);
        if out.len() < max {
            out.extend(y);
        }
    }
    out
}

fn quota_applies(ix: &OfferIndex, p: &Pool, q: &Quota) -> bool {
    let o = &ix.offers[p.offer];
    q.cloud.eq_ignore_ascii_case(&o.cloud)
        && q.region.as_ref().is_none_or(|r| **r == *o.region)
        && q.spot.is_none_or(|s| s == p.spot)
}

/// Which families of constraints to include (for explaining infeasibility).
#[derive(Clone, Copy)]
pub(crate) struct Families {
    quotas: bool,
    cap: bool,
    share: bool,
    on_demand: bool,
    budget: bool,
}

const ALL: Families = Families { quotas: true, cap: true, share: true, on_demand: true, budget: true };

fn bound(p: &Pool, f: &FleetSpec, n: f64, fam: Families) -> f64 {
    let mut ub = (n / p.units - 1e-9).ceil().max(1.0);
    if fam.cap {
        if let Some(c) = f.max_instances_per_pool {
            ub = ub.min(c as f64);
        }
    }
    if fam.share {
        if let Some(s) = f.max_share_per_pool {
            ub = ub.min((s * n / p.units + 1e-9).floor());
        }
    }
    ub.max(0.0)
}

pub(crate) fn model(f: &FleetSpec, ix: &OfferIndex, pools: &[Pool], n: f64, fam: Families) -> Milp {
    let mut m = Milp::default();
    let vars: Vec<usize> = pools.iter().map(|p| m.var(Kind::Integer, 0.0, bound(p, f, n, fam), p.price)).collect();
    m.row(pools.iter().zip(&vars).map(|(p, &v)| (v, p.units)).collect(), Op::Ge, n);
    if fam.quotas {
        for q in &f.quotas {
            let members: Vec<(usize, &Pool)> = pools.iter().zip(&vars).filter(|(p, _)| quota_applies(ix, p, q)).map(|(p, &v)| (v, p)).collect();
            if members.is_empty() {
                continue;
            }
            if let Some(a) = q.max_accelerators {
                let w = |p: &Pool| if ix.offers[p.offer].has_accelerator() { ix.offers[p.offer].accelerator_count } else { 0.0 };
                m.row(members.iter().map(|(v, p)| (*v, w(p))).collect(), Op::Le, a);
            }
            if let Some(c) = q.max_vcpus {
                m.row(members.iter().map(|(v, p)| (*v, p.vcpus)).collect(), Op::Le, c);
            }
            if let Some(k) = q.max_instances {
                m.row(members.iter().map(|(v, _)| (*v, 1.0)).collect(), Op::Le, k as f64);
            }
        }
    }
    if fam.on_demand {
        if let Some(fl) = f.min_on_demand_share {
            if fl > 0.0 {
                m.row(pools.iter().zip(&vars).filter(|(p, _)| !p.spot).map(|(p, &v)| (v, p.units)).collect(), Op::Ge, fl * n);
            }
        }
    }
    if fam.budget {
        if let Some(b) = f.budget_per_hour {
            m.row(pools.iter().zip(&vars).map(|(p, &v)| (v, p.price)).collect(), Op::Le, b);
        }
    }
    m
}

fn solve_err(e: SolveError) -> PlanError {
    match e {
        SolveError::Infeasible => PlanError::Solver { message: "infeasible".into() },
        SolveError::Other(m) => PlanError::Solver { message: m },
    }
}

/// Plans a fleet: integer instance counts over pools, minimizing $/h.
pub fn plan_fleet(fleet: &FleetSpec, index: &OfferIndex, opts: &PlanOptions) -> Result<FleetPlan, PlanError> {
    opts.validate()?;
    let Checked { by_accel, n } = check(fleet)?;
    let (mut pools, cut) = pools(fleet, index, opts, by_accel);
    if pools.is_empty() {
        let what = if fleet.accelerators.is_empty() { if by_accel { "accelerators" } else { "vcpus" }.to_string() } else { fleet.accelerators.join("/") };
        return Err(PlanError::Infeasible {
            reason: format!("no pool offers {what} under the given {cut}"),
            cut_by: cut,
            nearest: Vec::new(),
        });
    }
    let unit = if by_accel { "accelerators" } else { "vcpus" };
    // Drop pools that can contribute nothing, then keep the cheapest per unit.
    pools.retain(|p| bound(p, fleet, n, ALL) >= 1.0);
    if pools.is_empty() {
        let cut_by = if fleet.max_share_per_pool.is_some() { "max_share_per_pool" } else { "max_instances_per_pool" };
        return Err(PlanError::Infeasible {
            reason: format!("every pool's instance is larger than {cut_by} allows for a target of {n} {unit}"),
            cut_by: cut_by.into(),
            nearest: Vec::new(),
        });
    }
    let pools = cap_pools(pools, fleet.max_pools.unwrap_or(500));
    let started = Instant::now();
    let m = model(fleet, index, &pools, n, ALL);
    let sol = match m.solve() {
        Ok(s) => s,
        Err(SolveError::Infeasible) => return Err(explain_fleet(fleet, index, &pools, n, unit, opts)),
        Err(e) => return Err(solve_err(e)),
    };
    let solve_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(assemble(fleet, index, &pools, &sol, n, unit, opts.hours, solve_ms))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    fleet: &FleetSpec,
    ix: &OfferIndex,
    pools: &[Pool],
    sol: &[f64],
    n: f64,
    unit: &str,
    hours: f64,
    solve_ms: f64,
) -> FleetPlan {
    let mut allocations = Vec::new();
    for (p, v) in pools.iter().zip(sol) {
        let k = v.round().max(0.0) as u32;
        if k == 0 {
            continue;
        }
        let pl = placement(ix, p.offer, p.spot, k, hours);
        allocations.push(FleetAllocation { placement: pl, instances: k, units: p.units * k as f64 });
    }
    allocations.sort_by(|a, b| b.units.total_cmp(&a.units).then(a.placement.hourly_total.total_cmp(&b.placement.hourly_total)));
    let hourly_cost: f64 = allocations.iter().map(|a| a.placement.hourly_total).sum();
    FleetPlan {
        name: fleet.name.clone(),
        unit: unit.into(),
        target: n,
        total_units: allocations.iter().map(|a| a.units).sum(),
        on_demand_units: allocations.iter().filter(|a| !a.placement.use_spot).map(|a| a.units).sum(),
        hourly_cost,
        total_cost: hourly_cost * hours,
        hours,
        pools_considered: pools.len(),
        solver: Milp::solver_name().into(),
        solve_ms,
        allocations,
    }
}

/// Adds the constraint families one by one; the first that makes the model infeasible is the
/// one that cut the last candidates.
fn explain_fleet(f: &FleetSpec, ix: &OfferIndex, pools: &[Pool], n: f64, unit: &str, opts: &PlanOptions) -> PlanError {
    let none = Families { quotas: false, cap: false, share: false, on_demand: false, budget: false };
    let steps: [(&str, Families); 5] = [
        ("max_instances_per_pool", Families { cap: true, ..none }),
        ("max_share_per_pool", Families { cap: true, share: true, ..none }),
        ("quotas", Families { cap: true, share: true, quotas: true, ..none }),
        ("min_on_demand_share", Families { cap: true, share: true, quotas: true, on_demand: true, ..none }),
        ("budget_per_hour", ALL),
    ];
    let mut last_ok: Option<Vec<f64>> = None;
    for (name, fam) in steps {
        let live: Vec<Pool> = pools.iter().filter(|p| bound(p, f, n, fam) >= 1.0).cloned().collect();
        let m = model(f, ix, &live, n, fam);
        match m.solve() {
            Ok(sol) => last_ok = Some(sol.clone()).map(|s| {
                // Remember the solution on the live pools, mapped back by position.
                let mut full = vec![0.0; pools.len()];
                let mut j = 0;
                for (k, p) in pools.iter().enumerate() {
                    if bound(p, f, n, fam) >= 1.0 {
                        full[k] = s[j];
                        j += 1;
                    }
                }
                full
            }),
            Err(_) => {
                // The best fleet without this family: its allocations are the nearest offers.
                let mut nearest: Vec<Placement> = match &last_ok {
                    Some(sol) => pools
                        .iter()
                        .zip(sol)
                        .filter(|(_, v)| **v > 0.5)
                        .map(|(p, v)| placement(ix, p.offer, p.spot, v.round() as u32, opts.hours))
                        .collect(),
                    None => Vec::new(),
                };
                let cheapest: f64 = nearest.iter().map(|p| p.hourly_total).sum();
                nearest.truncate(20);
                let detail = match name {
                    "budget_per_hour" => {
                        format!(
                            "the cheapest fleet of {n} {unit} costs ${cheapest:.2}/h, over the budget of ${:.2}/h",
                            f.budget_per_hour.unwrap_or_default()
                        )
                    }
                    other => format!("no fleet of {n} {unit} satisfies {other} together with the constraints before it"),
                };
                return PlanError::Infeasible { reason: detail, cut_by: name.into(), nearest };
            }
        }
    }
    PlanError::Infeasible {
        reason: format!("no fleet of {n} {unit} satisfies the constraints"),
        cut_by: "unknown".into(),
        nearest: Vec::new(),
    }
}
