//! Probing the index: an alternative's names resolved to the index's ids, each offer tested in
//! order (cloud, feature, region, zone, type, default rule, size, market, cap, blocked).

use super::*;

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
