//! Explanations for infeasible tasks: which constraint removed the last candidates, and the
//! nearest offers that the request just missed.

use crate::index::{accel_key, count_key, OfferIndex};
use crate::plan::{placement, Alt, PlanError, PlanOptions, Placement, Probe, Stage};
use crate::spec::fmt_count;

const NEAREST: usize = 3;

fn stage_text(alt: &Alt, stage: Stage) -> (String, String) {
    let loc = |what: &str, v: &Option<String>| format!("{what}={}", v.clone().unwrap_or_default());
    match stage {
        Stage::Cloud => (loc("cloud", &alt.cloud), format!("on cloud `{}`", alt.cloud.clone().unwrap_or_default())),
        Stage::Feature => (
            "cloud features".into(),
            format!("on a cloud with {}", crate::defaults::feature_names(alt.features)),
        ),
        Stage::Region => (loc("region", &alt.region), format!("in region `{}`", alt.region.clone().unwrap_or_default())),
        Stage::Zone => (loc("zone", &alt.zone), format!("in zone `{}`", alt.zone.clone().unwrap_or_default())),
        Stage::InstanceType => (
            loc("instance_type", &alt.instance_type),
            format!("of instance type `{}`", alt.instance_type.clone().unwrap_or_default()),
        ),
        Stage::DefaultRule => {
            if alt.default_shape {
                (
                    "default instance rule".into(),
                    "among SkyPilot's default CPU instances (m6i/c6i/r6i… on AWS, Ds_v5/Es_v5/Fs_v2 on Azure, n2/n4 on GCP)"
                        .into(),
                )
            } else {
                ("default host rule".into(), "on the hosts GCP attaches it to (n1-standard/highmem/highcpu)".into())
            }
        }
        Stage::Cpus => match alt.cpus {
            Some(c) => (format!("cpus={c}"), format!("with cpus={c}")),
            None => ("cpus (default)".into(), format!("with {}", default_text(alt))),
        },
        Stage::Memory => {
            let mut parts = Vec::new();
            if let Some(m) = alt.memory {
                parts.push(format!("memory={m} GiB"));
            }
            if parts.is_empty() {
                return ("memory (default)".into(), format!("with {}", default_text(alt)));
            }
            let p = parts.join(", ");
            (p.clone(), format!("with {p}"))
        }
        Stage::Market => {
            if alt.use_spot {
                ("use_spot=true".into(), "sold as spot".into())
            } else {
                ("use_spot=false".into(), "sold on demand".into())
            }
        }
        Stage::MaxHourlyCost => {
            let c = alt.max_hourly_cost.unwrap_or_default();
            (format!("max_hourly_cost={c}"), format!("at or under max_hourly_cost ${c}/h"))
        }
        Stage::Blocked => ("blocked".into(), "outside the blocked resources".into()),
    }
}

/// The default shape an alternative implies, in words.
fn default_text(alt: &Alt) -> String {
    if alt.default_shape {
        match &alt.cloud {
            Some(c) => format!("{c}'s default shape ({})", crate::defaults::cpu_default(c).describe(alt.cpus, alt.memory)),
            None => "each cloud's default shape (8+ vCPUs and 4 GiB per vCPU on most)".into(),
        }
    } else if let Some(h) = alt.gcp_host_cpus {
        let c = alt.cpus.map_or(h, |c| c.value);
        format!(
            "GCP's default host for it ({}+ vCPUs and {}+ GiB)",
            fmt_count(c),
            fmt_count(c * crate::defaults::GCP_GPU_HOST_MEMORY_PER_CPU)
        )
    } else {
        "the requested shape".into()
    }
}

fn what(alt: &Alt) -> String {
    match (&alt.accel, &alt.instance_type) {
        (Some(a), _) => format!("{a} per node"),
        (None, Some(t)) => format!("instance type `{t}`"),
        (None, None) => "CPU-only instance".into(),
    }
}

/// Cheapest placements of a set of offer ids, one per instance type.
fn cheapest(ix: &OfferIndex, ids: &[u32], spot: bool, nodes: u32, hours: f64, n: usize) -> Vec<Placement> {
    let mut ids: Vec<u32> = ids.to_vec();
    let price = |i: u32| {
        let p = if spot { ix.spot[i as usize] } else { ix.price[i as usize] };
        if p.is_finite() { p } else { f64::INFINITY }
    };
    ids.sort_by(|a, b| price(*a).total_cmp(&price(*b)).then(a.cmp(b)));
    let mut out: Vec<Placement> = Vec::new();
    for i in ids {
        let p = placement(ix, i as usize, spot, nodes, hours);
        if out.iter().any(|q| q.instance_type == p.instance_type) {
            continue;
        }
        out.push(p);
        if out.len() == n {
            break;
        }
    }
    out
}

/// Edit distance, for "did you mean" on accelerator names.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

struct Finding {
    reason: String,
    cut_by: String,
    nearest: Vec<Placement>,
}

fn explain_alt(ix: &OfferIndex, alt: &Alt, nodes: u32, opts: &PlanOptions) -> Finding {
    let hours = opts.hours_for(alt.accel.as_ref().map(|a| a.name.as_str()));
    // 1. The accelerator kind and count.
    if let Some(a) = &alt.accel {
        let key = accel_key(&a.name);
        match ix.counts_by_name.get(&key) {
            None => {
                let mut names: Vec<(&String, usize)> =
                    ix.counts_by_name.keys().map(|k| (k, distance(k, &key))).collect();
                names.sort_by(|x, y| x.1.cmp(&y.1).then(x.0.cmp(y.0)));
                let mut nearest = Vec::new();
                for (k, _) in names.into_iter().take(NEAREST) {
                    let counts = &ix.counts_by_name[k];
                    let best_count = counts
                        .iter()
                        .min_by_key(|c| (**c as i64 - count_key(a.count) as i64).unsigned_abs())
                        .copied()
                        .unwrap_or(1000);
                    if let Some(g) = ix.groups.get(&(k.clone(), best_count)) {
                        let ids: Vec<u32> = g.on_demand.iter().chain(g.spot.iter()).copied().collect();
                        nearest.extend(cheapest(ix, &ids, alt.use_spot, nodes, hours, 1));
                    }
                }
                let names: Vec<String> = nearest.iter().map(|p| p.short()).collect();
                return Finding {
                    reason: format!(
                        "no accelerator `{}` in the catalog{}",
                        a.name,
                        if names.is_empty() { String::new() } else { format!("; nearest: {}", names.join(", ")) }
                    ),
                    cut_by: "accelerators".into(),
                    nearest,
                };
            }
            Some(counts) if !counts.contains(&count_key(a.count)) => {
                let want = count_key(a.count) as i64;
                let mut cs = counts.clone();
                cs.sort_by_key(|c| ((*c as i64 - want).unsigned_abs(), *c));
                let mut nearest = Vec::new();
                for c in cs.into_iter().take(NEAREST) {
                    if let Some(g) = ix.groups.get(&(key.clone(), c)) {
                        let ids: Vec<u32> = g.on_demand.iter().chain(g.spot.iter()).copied().collect();
                        nearest.extend(cheapest(ix, &ids, alt.use_spot, nodes, hours, 1));
                    }
                }
                let names: Vec<String> = nearest.iter().map(|p| p.short()).collect();
                return Finding {
                    reason: format!(
                        "no {}:{} per node; nearest: {}",
                        ix.accel_display_name(&key),
                        fmt_count(a.count),
                        names.join(", ")
                    ),
                    cut_by: "accelerators".into(),
                    nearest,
                };
            }
            Some(_) => {}
        }
    }
    // 2. The other filters, one after the other, over both markets.
    let probe = Probe::new(ix, alt, opts);
    let universe: Vec<u32> = match (&alt.accel, &alt.instance_type) {
        (None, Some(t)) => match ix.itypes.get(t) {
            Some(id) => ix.by_itype.get(&id).cloned().unwrap_or_default(),
            None => Vec::new(),
        },
        (None, None) => {
            let g = &ix.default_pool;
            let mut v: Vec<u32> = g.on_demand.iter().chain(g.spot.iter()).copied().collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        _ => {
            let g = ix.group(alt.accel.as_ref().map(|c| (c.name.as_str(), c.count)));
            let mut v: Vec<u32> = g.map(|g| g.on_demand.iter().chain(g.spot.iter()).copied().collect()).unwrap_or_default();
            v.sort_unstable();
            v.dedup();
            // Offers with no price at all are in no group list; they cannot explain anything.
            v
        }
    };
    if universe.is_empty() {
        let (cut, _) = stage_text(alt, Stage::InstanceType);
        return Finding {
            reason: format!("no {} in the catalog", what(alt)),
            cut_by: if alt.instance_type.is_some() { cut } else { "catalog".into() },
            nearest: Vec::new(),
        };
    }
    // The furthest stage each offer reaches; survivors of stage s are offers failing later.
    let fails: Vec<(u32, Option<Stage>)> = universe
        .iter()
        .map(|&i| {
            // For the market stage, an offer passes if it is sold the asked way.
            (i, probe.fails(ix, i as usize, alt.use_spot))
        })
        .collect();
    let stages = [
        Stage::Cloud,
        Stage::Feature,
        Stage::Region,
        Stage::Zone,
        Stage::InstanceType,
        Stage::DefaultRule,
        Stage::Cpus,
        Stage::Memory,
        Stage::Market,
        Stage::MaxHourlyCost,
        Stage::Blocked,
    ];
    let mut before: Vec<u32> = universe.clone();
    for s in stages {
        let after: Vec<u32> = fails.iter().filter(|(_, f)| f.is_none_or(|f| f > s)).map(|(i, _)| *i).collect();
        if after.is_empty() {
            let (cut_by, phrase) = stage_text(alt, s);
            let nearest = cheapest(ix, &before, alt.use_spot, nodes, hours, NEAREST);
            let names: Vec<String> = nearest.iter().map(|p| format!("{} in {}/{}", p.short(), p.cloud, p.location())).collect();
            // Under a price cap, say what the cheapest price available is: the figure to raise
            // the cap to.
            let cheapest_text = match nearest.first() {
                Some(p) if s == Stage::MaxHourlyCost => format!(
                    "; the cheapest available is ${:.4}/h per node (${:.4}/h for {} node{})",
                    p.hourly_price,
                    p.hourly_total,
                    nodes,
                    if nodes == 1 { "" } else { "s" }
                ),
                _ => String::new(),
            };
            return Finding {
                reason: format!(
                    "no {} {}{}{}",
                    what(alt),
                    phrase,
                    cheapest_text,
                    if names.is_empty() { String::new() } else { format!("; nearest: {}", names.join(", ")) }
                ),
                cut_by,
                nearest,
            };
        }
        before = after;
    }
    if alt.default_shape && alt.use_spot && alt.max_hourly_cost.is_none() {
        return Finding {
            reason: "no spot market for the CPU-only instance each cloud's default picks by on-demand price (SkyPilot's rule); \
                     set max_hourly_cost to pick by spot price"
                .into(),
            cut_by: "use_spot=true".into(),
            nearest: Vec::new(),
        };
    }
    Finding { reason: format!("no feasible {}", what(alt)), cut_by: "unknown".into(), nearest: Vec::new() }
}

/// Builds the `Infeasible` error for a task none of whose alternatives has a candidate.
pub(crate) fn explain(ix: &OfferIndex, alts: &[Alt], nodes: u32, opts: &PlanOptions) -> PlanError {
    if ix.is_empty() {
        return PlanError::Infeasible {
            reason: "the catalog is empty".into(),
            cut_by: "catalog".into(),
            nearest: Vec::new(),
        };
    }
    let findings: Vec<Finding> = alts.iter().map(|a| explain_alt(ix, a, nodes, opts)).collect();
    let reason = if findings.len() == 1 {
        findings[0].reason.clone()
    } else {
        findings
            .iter()
            .zip(alts)
            .map(|(f, a)| format!("[{}] {}", a.label, f.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let cut_by = findings.first().map(|f| f.cut_by.clone()).unwrap_or_default();
    let several = findings.len() > 1;
    let mut nearest: Vec<Placement> = findings.into_iter().flat_map(|f| f.nearest).collect();
    if several {
        // Each alternative's list is ordered by closeness; across alternatives, by price.
        nearest.sort_by(|a, b| a.hourly_price.total_cmp(&b.hourly_price));
        nearest.truncate(NEAREST * 2);
    }
    PlanError::Infeasible { reason, cut_by, nearest }
}
