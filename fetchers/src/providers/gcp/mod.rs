//! GCP: Cloud Billing Catalog API for prices, joined with machine types into launchable offers.
//!
//! Prices: `GET {endpoint}v1/services/6F81-5844-456A/skus?key=<key>&pageSize=5000[&pageToken=…]`
//! (Compute Engine's service id), following `nextPageToken` until it is empty or absent
//! (cloud.google.com/billing/v1/how-tos/catalog-api: 5000 SKUs per page, no token once all are
//! listed). The key comes from `SKYCAT_GCP_API_KEY` or `GOOGLE_API_KEY`; without one every region
//! fails with an auth error (the Catalog API has no anonymous access). The SKU list is global, so
//! it is fetched once per run (`cx.shared`) and every region reads its rates from it; a failed or
//! malformed SKU page therefore fails every region of the run.
//!
//! Each SKU becomes a rate keyed by (resource, region, market): the resource is a family's vCPU
//! (`"N1 Predefined Instance Core running in Americas"`, `"A2 Instance Core …"`, `"Compute
//! optimized Core …"`), a family's RAM (`… Ram …`, per GiB-hour) or a GPU (`"Nvidia Tesla T4 GPU
//! running in …"`); the market is on-demand (`usageType: OnDemand`) or spot (`Preemptible`, or a
//! description starting with `Spot Preemptible`/`Preemptible`). Commitments, sole tenancy,
//! custom/premium/reserved/DWS SKUs and virtual-workstation GPUs are skipped and counted. Price =
//! `units + nanos/1e9` of the marginal (last) tier. A4 is billed by `A4 Nvidia B200 (1 gpu slice)`
//! SKUs that include the VM share, with no core/RAM SKUs ([`Part::Slice`]; a spot one may carry
//! `usageType: OnDemand`, the description decides). TPU SKUs (v5e/v5p/v6e here, v4 in the Cloud
//! TPU service `E000-3F24-B8AA`, listed the same way) become slice offers: see [`tpu`].
//!
//! Machine types: with `GOOGLE_OAUTH_ACCESS_TOKEN` and a project (`GOOGLE_CLOUD_PROJECT` or
//! `CLOUDSDK_CORE_PROJECT`), the Compute API (`SKYCAT_GCP_COMPUTE_ENDPOINT`, default
//! `https://compute.googleapis.com/`) lists the region's zones, each zone's machine types
//! (skipping deprecated ones) and accelerator types, and offers are per zone. Without it the
//! published machine-family shapes in [`SHAPES`] are used and offers are per region (zone null):
//! cloud.google.com/compute/docs/general-purpose-machines (n1, n2, n2d, e2),
//! compute-optimized-machines (c2, c3), memory-optimized-machines (m1, m2, m3),
//! accelerator-optimized-machines (a2, a3, a4, g2) and gpus (N1 GPU limits). `a3-highgpu-1g/2g/4g`
//! get a spot price only ([`sold_on_demand`]).
//!
//! Join: host price = vCPUs × core rate + GiB × RAM rate of the family in that region and market;
//! families with bundled GPUs (a2 → A100, a2-ultragpu → A100-80GB, a3 → H100, g2 → L4) add
//! GPU count × GPU rate; a4 (B200) is GPU count × slice rate alone; N1 hosts are also offered with T4/V100/P100/P4 at the counts GCP allows
//! for their vCPU and memory size ([`N1_GPU_LIMITS`]). The parts are kept in `price_breakdown`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Deserialize;
use skycat_catalog::accelerators;
use skycat_catalog::Offer;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

mod compute;
pub mod shapes;
pub mod tpu;

use compute::{compute_creds, compute_list, compute_shapes, NamedItem};

pub use shapes::{sold_on_demand, Shape, N1_GPU_LIMITS, SHAPES};

pub(crate) const CLOUD: &str = "gcp";
pub(crate) const DEFAULT_ENDPOINT: &str = "https://cloudbilling.googleapis.com/";
pub(crate) const DEFAULT_COMPUTE: &str = "https://compute.googleapis.com/";
pub(crate) const COMPUTE_SERVICE: &str = "6F81-5844-456A";
const MAX_PAGES: usize = 1000;

const DEFAULT_REGIONS: &[&str] = &[
    "us-central1", "us-east1", "us-east4", "us-west1", "us-west4", "europe-west1", "europe-west4",
    "europe-west2", "asia-east1", "asia-northeast1", "asia-southeast1",
];

/// GCP's public regions (cloud.google.com/compute/docs/regions-zones), used when the Compute
/// API is not available to list them; plus `us-central2`, the region of TPU v4 (it offers TPUs
/// only, so only TPU slices are priced there).
pub const ALL_REGIONS: &[&str] = &[
    "africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2",
    "asia-northeast3", "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2",
    "australia-southeast1", "australia-southeast2", "europe-central2", "europe-north1",
    "europe-north2", "europe-southwest1", "europe-west1", "europe-west10", "europe-west12",
    "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9",
    "me-central1", "me-central2", "me-west1", "northamerica-northeast1", "northamerica-northeast2",
    "northamerica-south1", "southamerica-east1", "southamerica-west1", "us-central1", "us-central2",
    "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3", "us-west4",
];

#[derive(Debug, Default)]
pub struct Gcp;

// ---- Catalog API wire types

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkuPage {
    #[serde(default)]
    skus: Vec<Sku>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sku {
    description: String,
    category: Category,
    #[serde(default)]
    service_regions: Vec<String>,
    #[serde(default)]
    pricing_info: Vec<PricingInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Category {
    resource_family: String,
    resource_group: String,
    usage_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PricingInfo {
    pricing_expression: PricingExpression,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PricingExpression {
    usage_unit: String,
    tiered_rates: Vec<TieredRate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TieredRate {
    #[serde(default)]
    start_usage_amount: f64,
    unit_price: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Money {
    currency_code: String,
    /// int64 encoded as a JSON string.
    #[serde(default)]
    units: Option<String>,
    #[serde(default)]
    nanos: Option<i64>,
}

/// What a SKU prices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Core(String),
    Ram(String),
    Gpu(String),
    /// One GPU with its share of the VM, for families billed only that way: (family, GPU), e.g.
    /// `A4 Nvidia B200 (1 gpu slice)` → (`a4`, `B200`).
    Slice(String, String),
    /// A TPU generation's SKU (see [`tpu`]): `v4`, `v5litepod`, `v5p`, `v6e`.
    Tpu(String),
}

/// Rates by (part, region, spot).
#[derive(Debug, Default)]
pub struct Rates {
    map: BTreeMap<(Part, String, bool), f64>,
    /// The Compute Engine SKU listing.
    source: String,
    /// The Cloud TPU service SKU listing (v4).
    tpu_source: String,
}

impl Rates {
    pub(crate) fn get(&self, part: &Part, region: &str, spot: bool) -> Option<f64> {
        self.map.get(&(part.clone(), region.to_string(), spot)).copied()
    }
}

fn money(m: &Money) -> Result<f64, String> {
    let units: f64 = match m.units.as_deref() {
        None | Some("") => 0.0,
        Some(u) => u.parse::<i64>().map_err(|e| format!("units {u:?}: {e}"))? as f64,
    };
    Ok(units + m.nanos.unwrap_or(0) as f64 / 1e9)
}

const SKIP_WORDS: &[&str] =
    &["Sole Tenancy", "Reserved", "Premium", "Custom", "suspended", "Commitment", "DWS", "Extended", "Virtual Workstation"];

/// Classify one SKU: what it prices and whether that is the spot market, or a skip reason.
pub fn classify(description: &str, resource_group: &str, usage_type: &str) -> Result<(Part, bool), &'static str> {
    if usage_type.starts_with("Commit") {
        return Err("commitment price");
    }
    if SKIP_WORDS.iter().any(|w| description.contains(w)) {
        return Err("sole tenancy, custom, premium, reserved, DWS or workstation SKU");
    }
    let (mut spot, rest) = if let Some(r) = description.strip_prefix("Spot Preemptible ") {
        (true, r)
    } else if let Some(r) = description.strip_prefix("Preemptible ") {
        (true, r)
    } else {
        (usage_type == "Preemptible", description)
    };
    if usage_type != "OnDemand" && usage_type != "Preemptible" {
        return Err("usage type not on-demand or spot");
    }
    let mut head = rest.split(" running in ").next().unwrap_or(rest);
    // Newer spot GPU/TPU SKUs: "Nvidia L4 GPU attached to Spot Preemptible VMs running in …".
    if let Some(h) = head.strip_suffix(" attached to Spot Preemptible VMs") {
        head = h;
        spot = true;
    }
    if resource_group == "TPU" || head.starts_with("Tpu") || head.starts_with("TPU") {
        let gen = tpu::generation_of(head)?;
        // Preemptible TPU SKUs may carry usageType OnDemand (SkyPilot's fetcher notes it).
        return Ok((Part::Tpu(gen.name.to_string()), spot || description.contains("Preemptible")));
    }
    if let Some(slice) = head.strip_suffix(" (1 gpu slice)") {
        // "A4 Nvidia B200 (1 gpu slice)": the family's only SKU, one GPU with its VM share.
        let (family, gpu) = slice.split_once(' ').ok_or("not a vCPU, RAM or GPU SKU")?;
        let info = accelerators::canonicalize(gpu, None).ok_or("GPU not in the accelerator registry")?;
        return Ok((Part::Slice(family.to_ascii_lowercase(), info.name), spot));
    }
    if resource_group == "GPU" || head.ends_with(" GPU") {
        let name = head.trim_end_matches(" GPU");
        let info = accelerators::canonicalize(name, None).ok_or("GPU not in the accelerator registry")?;
        return Ok((Part::Gpu(info.name), spot));
    }
    let (family, kind) = if let Some(k) = head.strip_prefix("Compute optimized ") {
        ("c2".to_string(), k)
    } else if let Some(k) = head.strip_prefix("Memory-optimized Instance ") {
        ("m1".to_string(), k)
    } else {
        // "<Family> [qualifier] Instance Core|Ram": "N1 Predefined Instance Core", "N2D AMD
        // Instance Ram", "M3 Memory-optimized Instance Core", "C3 Instance Core".
        let mut words = head.split_whitespace();
        let fam = words.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        match rest.as_slice() {
            ["Predefined" | "AMD" | "Memory-optimized", "Instance", k] | ["Instance", k] => (fam, *k),
            _ => return Err("not a vCPU, RAM or GPU SKU"),
        }
    };
    match kind {
        "Core" => Ok((Part::Core(family), spot)),
        "Ram" => Ok((Part::Ram(family), spot)),
        _ => Err("not a vCPU, RAM or GPU SKU"),
    }
}

async fn fetch_rates(cx: &FetchContext) -> Result<Rates, FetchError> {
    let key = cx
        .env("SKYCAT_GCP_API_KEY")
        .or_else(|| cx.env("GOOGLE_API_KEY"))
        .ok_or_else(|| FetchError::Auth {
            provider: CLOUD.into(),
            message: "the Cloud Billing Catalog API needs an API key: set SKYCAT_GCP_API_KEY or GOOGLE_API_KEY".into(),
        })?
        .to_string();
    let mut rates = Rates::default();
    rates.source = list_service(cx, &key, COMPUTE_SERVICE, &mut rates).await?;
    rates.tpu_source = list_service(cx, &key, tpu::TPU_SERVICE, &mut rates).await?;
    Ok(rates)
}

/// Add every SKU of one Catalog service to `rates`; returns the listing URL (the offers' source).
async fn list_service(cx: &FetchContext, key: &str, service: &str, rates: &mut Rates) -> Result<String, FetchError> {
    let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
    let list = base
        .join(&format!("v1/services/{service}/skus"))
        .map_err(|e| FetchError::Config(format!("gcp endpoint {base}: {e}")))?;
    let mut token: Option<String> = None;
    for page_no in 1..=MAX_PAGES {
        let mut url = list.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("key", key).append_pair("pageSize", "5000");
            if let Some(t) = &token {
                q.append_pair("pageToken", t);
            }
        }
        let text = cx.http.get_text(&url, &[]).await?;
        let page: SkuPage = serde_json::from_str(&text)
            .map_err(|e| FetchError::malformed(format!("gcp billing catalog SKU page {page_no} of services/{service}"), e))?;
        for sku in page.skus {
            add_sku(cx, rates, sku, page_no)?;
        }
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(list.to_string())
}

fn add_sku(cx: &FetchContext, rates: &mut Rates, sku: Sku, page_no: usize) -> Result<(), FetchError> {
    if sku.category.resource_family != "Compute" && sku.category.resource_group != "TPU" {
        cx.skip(CLOUD, "not a compute SKU", 1);
        return Ok(());
    }
    let (part, spot) = match classify(&sku.description, &sku.category.resource_group, &sku.category.usage_type) {
        Ok(x) => x,
        Err(reason) => {
            cx.skip(CLOUD, reason, 1);
            return Ok(());
        }
    };
    let Some(info) = sku.pricing_info.first() else {
        cx.skip(CLOUD, "SKU without pricing info", 1);
        return Ok(());
    };
    let expected_unit = if matches!(part, Part::Ram(_)) { "GiBy.h" } else { "h" };
    if info.pricing_expression.usage_unit != expected_unit {
        cx.skip(CLOUD, "unexpected usage unit", 1);
        return Ok(());
    }
    let Some(tier) = info
        .pricing_expression
        .tiered_rates
        .iter()
        .max_by(|a, b| a.start_usage_amount.total_cmp(&b.start_usage_amount))
    else {
        cx.skip(CLOUD, "SKU without rates", 1);
        return Ok(());
    };
    if tier.unit_price.currency_code != "USD" {
        cx.skip(CLOUD, "not USD", 1);
        return Ok(());
    }
    let price = money(&tier.unit_price)
        .map_err(|e| FetchError::malformed(format!("gcp SKU {:?} (page {page_no})", sku.description), e))?;
    for region in sku.service_regions {
        // A duplicate (part, region, market) keeps the lower rate, independent of page order.
        let slot = rates.map.entry((part.clone(), region, spot)).or_insert(price);
        *slot = slot.min(price);
    }
    Ok(())
}

// ---- Join

fn family_of(machine_type: &str) -> String {
    let mut parts = machine_type.split('-');
    parts.next().unwrap_or("").to_string()
}

pub(crate) fn fmt_rate(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

struct Priced {
    total: f64,
    text: String,
}

fn host_price(rates: &Rates, shape: &Shape, region: &str, spot: bool) -> Option<Priced> {
    let fam = family_of(&shape.name);
    let core = rates.get(&Part::Core(fam.clone()), region, spot)?;
    let ram = rates.get(&Part::Ram(fam), region, spot)?;
    let total = shape.vcpus * core + shape.memory_gib * ram;
    Some(Priced {
        total,
        text: format!(
            "host {} vCPU x ${} + {} GiB x ${} = ${}",
            fmt_rate(shape.vcpus),
            fmt_rate(core),
            fmt_rate(shape.memory_gib),
            fmt_rate(ram),
            fmt_rate(total)
        ),
    })
}

fn gpu_price(rates: &Rates, gpu: &str, count: f64, region: &str, spot: bool) -> Option<Priced> {
    let rate = rates.get(&Part::Gpu(gpu.to_string()), region, spot)?;
    let total = rate * count;
    Some(Priced { total, text: format!("GPU {} x {gpu} x ${} = ${}", fmt_rate(count), fmt_rate(rate), fmt_rate(total)) })
}

/// Offers for one shape (and one GPU choice) in one region/zone, or `None` if unpriced.
fn offer_for(
    cx: &FetchContext,
    rates: &Rates,
    region: &str,
    zone: Option<&str>,
    shape: &Shape,
    gpu: Option<(&str, f64)>,
) -> Option<Offer> {
    let mut parts_text = Vec::new();
    let mut price_of = |spot: bool| -> Option<f64> {
        let market = if spot { "spot" } else { "on-demand" };
        if let Some((g, n)) = gpu {
            let slice = Part::Slice(family_of(&shape.name), g.to_string());
            if let Some(rate) = rates.get(&slice, region, spot) {
                let total = rate * n;
                parts_text.push(format!(
                    "{market}: GPU slice {} x {g} x ${} (VM share included) = ${}",
                    fmt_rate(n),
                    fmt_rate(rate),
                    fmt_rate(total)
                ));
                return Some(total);
            }
        }
        let host = host_price(rates, shape, region, spot)?;
        let mut total = host.total;
        let mut text = host.text;
        if let Some((g, n)) = gpu {
            let gp = gpu_price(rates, g, n, region, spot)?;
            total += gp.total;
            text = format!("{text}; {}", gp.text);
        }
        parts_text.push(format!("{market}: {text}"));
        Some(total)
    };
    let od = if sold_on_demand(&shape.name) { price_of(false) } else { None };
    let sp = price_of(true);
    if !sold_on_demand(&shape.name) && sp.is_some() {
        parts_text.insert(0, "on-demand: not sold (spot or flex-start only)".to_string());
    }
    if od.is_none() && sp.is_none() {
        return None;
    }
    let mut o = cx.offer(CLOUD, &shape.name, region, &rates.source);
    o.zone = zone.map(str::to_string).map(Into::into);
    o.vcpus = Some(shape.vcpus);
    o.memory_gib = Some(shape.memory_gib);
    o.arch = Some("x86_64".into());
    if let Some((g, n)) = gpu {
        if let Some(info) = accelerators::lookup(g) {
            o.accelerator_name = Some(info.name.clone().into());
            o.accelerator_memory_gib = info.memory_gib;
            o.accelerator_vendor = Some(info.vendor.into());
        } else {
            o.accelerator_name = Some(g.to_string().into());
        }
        o.accelerator_count = n;
    }
    o.price = od;
    o.spot_price = sp;
    o.price_breakdown = Some(parts_text.join(" | ").into());
    Some(o)
}

fn join(
    cx: &FetchContext,
    rates: &Rates,
    region: &str,
    zone: Option<&str>,
    shapes: &[Shape],
    n1_gpus: &BTreeSet<(String, u32)>,
) -> Vec<Offer> {
    let mut out = Vec::new();
    let mut unpriced = 0u64;
    for shape in shapes {
        let bundled = shape.gpu.as_ref().map(|(g, n)| (g.as_str(), *n));
        match offer_for(cx, rates, region, zone, shape, bundled) {
            Some(o) => out.push(o),
            None => unpriced += 1,
        }
        if family_of(&shape.name) == "n1" {
            for (g, n, max_cpu, max_mem) in N1_GPU_LIMITS {
                if shape.vcpus > *max_cpu || shape.memory_gib > *max_mem {
                    continue;
                }
                if !n1_gpus.contains(&(g.to_string(), *n as u32)) {
                    continue;
                }
                if let Some(o) = offer_for(cx, rates, region, zone, shape, Some((g, *n))) {
                    out.push(o);
                }
            }
        }
    }
    cx.skip(CLOUD, "machine type not priced in this region", unpriced);
    out
}

/// GPUs GCP prices in `region` (any market), each at every N1 count: the attachable set when
/// the Compute API does not say which GPUs a zone has.
fn n1_gpus_priced(rates: &Rates, region: &str) -> BTreeSet<(String, u32)> {
    N1_GPU_LIMITS
        .iter()
        .filter(|(g, _, _, _)| {
            rates.get(&Part::Gpu(g.to_string()), region, false).is_some()
                || rates.get(&Part::Gpu(g.to_string()), region, true).is_some()
        })
        .map(|(g, n, _, _)| (g.to_string(), *n as u32))
        .collect()
}

#[async_trait]
impl Provider for Gcp {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        if let Some(creds) = compute_creds(cx) {
            let items: Vec<NamedItem> = compute_list(cx, &creds, "regions", "regions").await?;
            let mut v: Vec<String> = items.into_iter().map(|r| r.name).collect();
            v.sort();
            return Ok(v);
        }
        Ok(ALL_REGIONS.iter().map(|s| s.to_string()).collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let rates = cx.shared("gcp:billing-catalog-skus", || fetch_rates(cx)).await?;
        let mut out = match compute_creds(cx) {
            Some(creds) => {
                let mut out = Vec::new();
                for (zone, shapes, n1_gpus) in compute_shapes(cx, &creds, region).await? {
                    out.extend(join(cx, &rates, region, Some(&zone), &shapes, &n1_gpus));
                }
                out
            }
            None => {
                cx.note(
                    CLOUD,
                    "no Compute API credentials (GOOGLE_OAUTH_ACCESS_TOKEN + GOOGLE_CLOUD_PROJECT): published machine shapes, prices per region",
                );
                let n1 = n1_gpus_priced(&rates, region);
                join(cx, &rates, region, None, &SHAPES, &n1)
            }
        };
        out.extend(tpu::offers(cx, &rates, region));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_descriptions() {
        assert_eq!(
            classify("N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand"),
            Ok((Part::Core("n1".into()), false))
        );
        assert_eq!(
            classify("Spot Preemptible A2 Instance Ram running in Belgium", "RAM", "Preemptible"),
            Ok((Part::Ram("a2".into()), true))
        );
        assert_eq!(
            classify("Nvidia Tesla A100 80GB GPU running in Americas", "GPU", "OnDemand"),
            Ok((Part::Gpu("A100-80GB".into()), false))
        );
        assert_eq!(
            classify("Nvidia H100 80GB GPU running in Iowa", "GPU", "OnDemand"),
            Ok((Part::Gpu("H100".into()), false))
        );
        assert_eq!(
            classify("Compute optimized Core running in Americas", "CPU", "OnDemand"),
            Ok((Part::Core("c2".into()), false))
        );
        assert!(classify("Commitment v1: N1 Cpu in Americas for 1 Year", "CPU", "Commit1Yr").is_err());
        assert!(classify("N1 Sole Tenancy Instance Core running in Americas", "CPU", "OnDemand").is_err());
        assert!(classify("Nvidia L4 GPU Virtual Workstation running in Americas", "GPU", "OnDemand").is_err());
        assert_eq!(
            classify("N2D AMD Instance Core running in Americas", "CPU", "OnDemand"),
            Ok((Part::Core("n2d".into()), false))
        );
        assert_eq!(
            classify("Spot Preemptible C3 Instance Ram running in Americas", "RAM", "Preemptible"),
            Ok((Part::Ram("c3".into()), true))
        );
        assert_eq!(
            classify("M3 Memory-optimized Instance Core running in Americas", "CPU", "OnDemand"),
            Ok((Part::Core("m3".into()), false))
        );
        assert_eq!(
            classify("Memory-optimized Instance Ram running in Americas", "RAM", "OnDemand"),
            Ok((Part::Ram("m1".into()), false))
        );
        assert_eq!(
            classify("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", "GPU", "Preemptible"),
            Ok((Part::Gpu("T4".into()), true))
        );
        assert_eq!(
            classify("Spot Preemptible A4 Nvidia B200 (1 gpu slice) running in Americas", "GPU", "OnDemand"),
            Ok((Part::Slice("a4".into(), "B200".into()), true))
        );
        assert_eq!(
            classify("TpuV5e attached to Spot Preemptible VMs running in Singapore", "TPU", "Preemptible"),
            Ok((Part::Tpu("v5litepod".into()), true))
        );
        assert_eq!(classify("Preemptible Tpu-v4 Pod running in Oklahoma", "TPU", "OnDemand"), Ok((Part::Tpu("v4".into()), true)));
        assert!(classify("N2 Custom Instance Core running in Americas", "CPU", "OnDemand").is_err());
    }

    #[test]
    fn money_is_units_plus_nanos() {
        let m = Money { currency_code: "USD".into(), units: Some("9".into()), nanos: Some(796_550_000) };
        assert!((money(&m).unwrap() - 9.79655).abs() < 1e-12);
        let bad = Money { currency_code: "USD".into(), units: Some("x".into()), nanos: None };
        assert!(money(&bad).is_err());
    }

    #[test]
    fn shapes_are_unique() {
        let names: BTreeSet<&str> = SHAPES.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), SHAPES.len());
    }
}
