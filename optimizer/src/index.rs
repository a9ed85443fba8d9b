//! The offer index: built once per catalog version, so a plan is a probe, not a scan.
//!
//! Offers are grouped by (accelerator, count per node); each group keeps two lists of offer ids,
//! one sorted by on-demand price and one by spot price. A query walks one group's list in price
//! order, so the first feasible entry is the cheapest and the walk yields the failover order as
//! it goes. The filter fields live in flat columns (interned ids, f32 sizes) to keep the walk in
//! cache.

use std::collections::HashMap;

// The index hashes catalog names (trusted data, built once per catalog version): a fast
// non-keyed hasher, not SipHash. Requests only look keys up.
use rustc_hash::FxHashMap;

use skycat_catalog::Offer;

use crate::defaults::{self, CpuDefault};

/// Interns strings to dense u32 ids.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    pub(crate) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
    /// Each id's position among the names in byte order.
    fn ranks(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.names.len() as u32).collect();
        ids.sort_unstable_by(|&a, &b| self.names[a as usize].cmp(&self.names[b as usize]));
        let mut rank = vec![0; ids.len()];
        for (r, id) in ids.into_iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        rank
    }
}

pub(crate) const NO_ZONE: u32 = u32::MAX;

/// Key of an accelerator group: lower-cased canonical name ("" for CPU-only) and count × 1000.
pub(crate) type GroupKey = (String, u64);

#[derive(Debug, Default, Clone)]
pub(crate) struct Group {
    /// Offer ids with an on-demand price, cheapest first.
    pub(crate) on_demand: Vec<u32>,
    /// Offer ids with a spot price, cheapest first.
    pub(crate) spot: Vec<u32>,
    /// The same offers as packed rows, in the same order: a probe walks these sequentially
    /// instead of chasing ids through the columns.
    pub(crate) on_demand_rows: Vec<Row>,
    pub(crate) spot_rows: Vec<Row>,
}

/// The filter fields of one offer in one market, packed for a sequential scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub(crate) id: u32,
    pub(crate) cloud: u32,
    pub(crate) region: u32,
    pub(crate) zone: u32,
    pub(crate) itype: u32,
    pub(crate) vcpus: f32,
    pub(crate) mem: f32,
    /// The price in this row's market (NaN when not sold that way).
    pub(crate) price: f64,
    /// `F_*` facts about the offer that SkyPilot's default machine rules look at.
    pub(crate) flags: u8,
}

/// The offer carries accelerators.
pub(crate) const F_ACCEL: u8 = 1;
/// The instance type is in its cloud's CPU-only default families (or the cloud has none).
pub(crate) const F_DEFAULT_FAMILY: u8 = 2;
/// A GCP N1 host carrying a GPU: SkyPilot chooses the host by rule.
pub(crate) const F_GCP_N1: u8 = 4;
/// An N1 host of the families SkyPilot attaches GPUs to (n1-standard/highmem/highcpu).
pub(crate) const F_GCP_DEFAULT_HOST: u8 = 8;
/// A GCP machine type carrying a GPU with its own machine family that SkyPilot's table does not
/// list for it (`a3-edgegpu-8g` for H100:8): picked only when named.
pub(crate) const F_GCP_OFF_TABLE: u8 = 16;
/// Not a machine of its own: a GCP TPU host row (`n1-356-96-tpu`), priced with the TPU.
pub(crate) const F_NOT_A_VM: u8 = 32;

/// Offers grouped by accelerator and count, sorted by price. Build once, probe many times.
#[derive(Debug, Clone, Default)]
pub struct OfferIndex {
    pub(crate) offers: Vec<Offer>,
    pub(crate) cloud: Vec<u32>,
    pub(crate) region: Vec<u32>,
    pub(crate) zone: Vec<u32>,
    pub(crate) itype: Vec<u32>,
    pub(crate) vcpus: Vec<f32>,
    pub(crate) mem: Vec<f32>,
    pub(crate) price: Vec<f64>,
    pub(crate) spot: Vec<f64>,
    pub(crate) flags: Vec<u8>,
    /// Order among equal prices, by offer id: cloud name, then SkyPilot's region order (US
    /// regions first on AWS, Lambda and Fluidstack, it-fr2 first on Seeweb, then by region and
    /// zone name), then catalog order.
    pub(crate) tie: Vec<u32>,
    /// SkyPilot's CPU-only default of each cloud, by cloud id.
    pub(crate) cpu_defaults: Vec<CpuDefault>,
    /// The features ([`defaults::unsupported_features`]) each cloud lacks, by cloud id.
    pub(crate) unsupported: Vec<u8>,
    /// What a CPU-only task without an instance type picks from: the CPU-only offers plus the
    /// GPU machines of clouds whose default includes them, cheapest first per market.
    pub(crate) default_pool: Group,
    pub(crate) clouds: Interner,
    pub(crate) regions: Interner,
    pub(crate) zones: Interner,
    pub(crate) itypes: Interner,
    pub(crate) groups: FxHashMap<GroupKey, Group>,
    /// Lower-cased accelerator name -> the counts it comes in (×1000).
    pub(crate) counts_by_name: HashMap<String, Vec<u64>>,
    /// Instance type id -> offer ids.
    pub(crate) by_itype: FxHashMap<u32, Vec<u32>>,
    /// Display names of accelerators, by lower-cased name.
    pub(crate) accel_display: HashMap<String, String>,
}

/// The matching key of an accelerator name: the registry's canonical name
/// (`skycat_catalog::accelerators::canonicalize`: case, vendor prefixes, GCP resource names and
/// aliases), lower-cased; a name the registry does not know is matched as written.
pub(crate) fn accel_key(name: &str) -> String {
    skycat_catalog::filter::matching_key(name)
}

pub(crate) fn count_key(c: f64) -> u64 {
    (c * 1000.0).round().max(0.0) as u64
}

fn nan_or(x: Option<f64>) -> f64 {
    x.filter(|v| v.is_finite()).unwrap_or(f64::NAN)
}

impl OfferIndex {
    /// Builds the index. Offers with neither an on-demand nor a spot price, or without a region,
    /// are kept for explanations but never chosen.
    pub fn build(offers: &[Offer]) -> OfferIndex {
        OfferIndex::from_offers(offers.to_vec())
    }

    /// [`OfferIndex::build`] over offers handed over by value: a catalog loaded for one plan is
    /// indexed without copying every offer.
    pub fn from_offers(owned: Vec<Offer>) -> OfferIndex {
        let mut ix = OfferIndex::columns(&owned);
        ix.offers = owned;
        ix
    }

    /// [`OfferIndex::from_offers`], running `alongside` over the same offers on a second thread
    /// while the index is built (a server's catalog summaries), so a reload takes the longer of
    /// the two rather than their sum.
    pub fn from_offers_alongside<R: Send>(owned: Vec<Offer>, alongside: impl FnOnce(&[Offer]) -> R + Send) -> (OfferIndex, R) {
        let (mut ix, side) = std::thread::scope(|scope| {
            let offers: &[Offer] = &owned;
            let side = scope.spawn(move || alongside(offers));
            let ix = OfferIndex::columns(offers);
            (ix, side.join())
        });
        ix.offers = owned;
        match side {
            Ok(r) => (ix, r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Everything but the offers themselves.
    fn columns(offers: &[Offer]) -> OfferIndex {
        let mut ix = OfferIndex::default();
        // Catalog names are canonical already; canonicalize each distinct spelling once.
        let mut keys: FxHashMap<&str, String> = FxHashMap::default();
        let n = offers.len();
        ix.cloud.reserve(n);
        ix.region.reserve(n);
        ix.zone.reserve(n);
        ix.itype.reserve(n);
        ix.vcpus.reserve(n);
        ix.mem.reserve(n);
        ix.price.reserve(n);
        ix.spot.reserve(n);
        ix.flags.reserve(n);
        let mut cloud_ids: FxHashMap<&str, u32> = FxHashMap::default();
        for (i, o) in offers.iter().enumerate() {
            let cid = match cloud_ids.get(o.cloud.as_ref()) {
                Some(&cid) => cid,
                None => {
                    let cid = ix.clouds.intern(&o.cloud.to_ascii_lowercase());
                    cloud_ids.insert(&o.cloud, cid);
                    cid
                }
            };
            if cid as usize == ix.cpu_defaults.len() {
                let cloud = ix.clouds.name(cid);
                let (rule, unsupported) = (defaults::cpu_default(cloud), defaults::unsupported_features(cloud));
                ix.cpu_defaults.push(rule);
                ix.unsupported.push(unsupported);
            }
            let is_gcp = ix.clouds.name(cid) == "gcp";
            let rule = ix.cpu_defaults[cid as usize];
            let mut flags = 0u8;
            if o.has_accelerator() {
                flags |= F_ACCEL;
            }
            if rule.families.is_none_or(|f| defaults::in_family(f, &o.instance_type)) {
                flags |= F_DEFAULT_FAMILY;
            }
            if is_gcp && o.has_accelerator() && defaults::is_gcp_n1_gpu_host(&o.instance_type) {
                flags |= F_GCP_N1;
                if defaults::is_gcp_default_host(&o.instance_type) {
                    flags |= F_GCP_DEFAULT_HOST;
                }
            } else if is_gcp && !o.has_accelerator() && o.instance_type.contains("-tpu") {
                flags |= F_NOT_A_VM;
            } else if is_gcp && o.has_accelerator() {
                let name = o.accelerator_name.as_deref().unwrap_or_default();
                if defaults::gcp_accelerator_hosts(name, o.accelerator_count).is_some_and(|t| !t.contains(&o.instance_type.as_ref())) {
                    flags |= F_GCP_OFF_TABLE;
                }
            }
            ix.flags.push(flags);
            ix.cloud.push(cid);
            ix.region.push(ix.regions.intern(&o.region));
            ix.zone.push(match &o.zone {
                Some(z) => ix.zones.intern(z),
                None => NO_ZONE,
            });
            let it = ix.itypes.intern(&o.instance_type);
            ix.itype.push(it);
            ix.by_itype.entry(it).or_default().push(i as u32);
            ix.vcpus.push(o.vcpus.map(|v| v as f32).unwrap_or(f32::NAN));
            ix.mem.push(o.memory_gib.map(|v| v as f32).unwrap_or(f32::NAN));
            ix.price.push(nan_or(o.price));
            ix.spot.push(nan_or(o.spot_price));
            let key: GroupKey = if o.has_accelerator() {
                let name = o.accelerator_name.as_deref().unwrap_or_default();
                let k = keys.entry(name).or_insert_with(|| accel_key(name)).clone();
                ix.accel_display.entry(k.clone()).or_insert_with(|| name.to_string());
                (k, count_key(o.accelerator_count))
            } else {
                (String::new(), 0)
            };
            let g = ix.groups.entry(key).or_default();
            // A row without a region (some of SkyPilot's published Seeweb rows) names nowhere to
            // launch: kept for explanations, never a candidate (SkyPilot drops it too).
            let launchable = !o.region.trim().is_empty();
            if launchable && ix.price[i].is_finite() {
                g.on_demand.push(i as u32);
            }
            if launchable && ix.spot[i].is_finite() {
                g.spot.push(i as u32);
            }
        }
        // Equal prices keep SkyPilot's region order: it lists an instance type's regions by price,
        // then region and zone name, with US regions first on AWS, Lambda and Fluidstack, and
        // Frosinone (it-fr2) first on Seeweb. One packed key per offer (names compared through
        // their ranks), so the sort compares integers, not strings.
        let (cloud_rank, region_rank, zone_rank) = (ix.clouds.ranks(), ix.regions.ranks(), ix.zones.ranks());
        let mut keyed: Vec<(u32, bool, u32, u32, u32)> = (0..n)
            .map(|i| {
                let (o, cid) = (&offers[i], ix.cloud[i]);
                let us_last = match ix.clouds.name(cid) {
                    "aws" | "lambda" | "fluidstack" => !o.region.starts_with("us-"),
                    "seeweb" => &*o.region != "it-fr2",
                    _ => false,
                };
                // No zone sorts first, as `None < Some(_)`.
                let zone = match ix.zone[i] {
                    NO_ZONE => 0,
                    z => 1 + zone_rank[z as usize],
                };
                (cloud_rank[cid as usize], us_last, region_rank[ix.region[i] as usize], zone, i as u32)
            })
            .collect();
        keyed.sort_unstable();
        let order = keyed.into_iter().map(|k| k.4);
        ix.tie = vec![0; n];
        for (rank, id) in order.enumerate() {
            ix.tie[id as usize] = rank as u32;
        }
        let price = &ix.price;
        let spot = &ix.spot;
        let tie = &ix.tie;
        for ((name, count), g) in ix.groups.iter_mut() {
            g.on_demand.sort_by(|a, b| price[*a as usize].total_cmp(&price[*b as usize]).then(tie[*a as usize].cmp(&tie[*b as usize])));
            g.spot.sort_by(|a, b| spot[*a as usize].total_cmp(&spot[*b as usize]).then(tie[*a as usize].cmp(&tie[*b as usize])));
            if !name.is_empty() {
                ix.counts_by_name.entry(name.clone()).or_default().push(*count);
            }
        }
        let mut groups = std::mem::take(&mut ix.groups);
        for g in groups.values_mut() {
            g.on_demand_rows = g.on_demand.iter().map(|&i| ix.row(i, false)).collect();
            g.spot_rows = g.spot.iter().map(|&i| ix.row(i, true)).collect();
        }
        ix.groups = groups;
        // The CPU-only default pool: CPU offers, and GPU offers of clouds that sell those for
        // CPU-only tasks (SkyPilot's rule).
        let in_pool = |i: u32| {
            let k = i as usize;
            ix.flags[k] & F_NOT_A_VM == 0 && (ix.flags[k] & F_ACCEL == 0 || ix.cpu_defaults[ix.cloud[k] as usize].gpu_instances)
        };
        let mut pool = Group::default();
        for g in ix.groups.values() {
            pool.on_demand.extend(g.on_demand.iter().copied().filter(|&i| in_pool(i)));
            pool.spot.extend(g.spot.iter().copied().filter(|&i| in_pool(i)));
        }
        pool.on_demand.sort_by(|a, b| price[*a as usize].total_cmp(&price[*b as usize]).then(tie[*a as usize].cmp(&tie[*b as usize])));
        pool.spot.sort_by(|a, b| spot[*a as usize].total_cmp(&spot[*b as usize]).then(tie[*a as usize].cmp(&tie[*b as usize])));
        pool.on_demand_rows = pool.on_demand.iter().map(|&i| ix.row(i, false)).collect();
        pool.spot_rows = pool.spot.iter().map(|&i| ix.row(i, true)).collect();
        ix.default_pool = pool;
        for v in ix.counts_by_name.values_mut() {
            v.sort_unstable();
        }
        ix
    }

    /// Number of offers indexed.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// The indexed offers, in input order.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Canonical display names of the accelerators present, sorted.
    pub fn accelerator_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.accel_display.values().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn group(&self, accel: Option<(&str, f64)>) -> Option<&Group> {
        let key = match accel {
            Some((n, c)) => (accel_key(n), count_key(c)),
            None => (String::new(), 0),
        };
        self.groups.get(&key)
    }

    /// Offer `i`'s packed row in the given market.
    pub(crate) fn row(&self, i: u32, spot: bool) -> Row {
        let k = i as usize;
        Row {
            id: i,
            cloud: self.cloud[k],
            region: self.region[k],
            zone: self.zone[k],
            itype: self.itype[k],
            vcpus: self.vcpus[k],
            mem: self.mem[k],
            price: if spot { self.spot[k] } else { self.price[k] },
            flags: self.flags[k],
        }
    }

    pub(crate) fn accel_display_name(&self, key: &str) -> String {
        self.accel_display.get(key).cloned().unwrap_or_else(|| key.to_ascii_uppercase())
    }
}
