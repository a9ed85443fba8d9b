//! Ranking the feasible offers: candidates, their order under each objective, the best per
//! cloud, the fallback to a relaxed pass and the notes on SkyPilot's default rules.

use super::*;
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

pub(super) fn key(c: &Cand, minimize: Minimize) -> (u32, u32, f64, f64) {
    match minimize {
        Minimize::Cost => (c.rank.0, c.rank.1, c.cost, c.hours),
        Minimize::Time => (c.rank.0, c.rank.1, c.hours, c.cost),
        Minimize::ExpectedCost => (c.rank.0, c.rank.1, c.expected, c.hours),
    }
}

pub(super) fn cmp_cand(a: &Cand, b: &Cand, m: Minimize, tie: &[u32]) -> std::cmp::Ordering {
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
