//! Oracle Cloud (OCI): the public price list (cetools) joined with the Cost Estimator's shapes.
//!
//! Sources, both public and global (one call each per run, shared by every region):
//! - prices: `GET {apexapps}pls/apex/cetools/api/v1/products/?currencyCode=USD` — `items[]` of
//!   `{partNumber, displayName, metricName, currencyCodeLocalizations[{currencyCode, prices[{model,
//!   value, rangeMin?, rangeMax?}]}]}`. The rate of a part is its `PAY_AS_YOU_GO` USD price; when a
//!   part has tiers (Ampere A1's free first range) the marginal one (highest `rangeMin`) is used.
//! - shapes: `GET {oracle}a/ocom/docs/cloudestimator2/data/shapes.json` — `items[]` of `{name,
//!   hidden, status, allowPreemptible, bundleMemoryQty, gpuQty, gpuMemoryQty, processorType
//!   {value}, shapeType {value}, subType {value}, products[{type {value}, partNumber, qty}]}`.
//!
//! `SKYCAT_OCI_ENDPOINT` replaces both origins (defaults `https://apexapps.oracle.com/` and
//! `https://www.oracle.com/`), keeping the paths.
//!
//! Shapes kept: not hidden, `ACTIVE`, `vm`/`bm`, sub-type `standard`/`gpu`/`optimized`.
//! - GPU shapes: the `ocpu` product's part is priced per GPU-hour, so price = GPU rate × `gpuQty`
//!   (CPU and memory are bundled). GPU model from the name (`GPU4` → A100, `GPU3` → V100, `GPU2`
//!   → P100, `GPU.<model>.<n>` otherwise, `-v2` marks the 80 GB A100), memory per GPU =
//!   `gpuMemoryQty / gpuQty`.
//! - Fixed shapes: price = Σ rate × qty over the `ocpu` and `memory` products.
//! - Flex shapes (`….Flex`): OCI bills per OCPU and per GB, so they are expanded into the sizes
//!   SkyPilot's catalog lists, `<shape>$_<vCPUs>_<GiB>` for 2–128 vCPUs at 4 and 8 GiB per vCPU.
//!
//! vCPUs = OCPUs × 2 on x86 and AmpereOne, × 1 on Ampere A1. Preemptible capacity costs 50% of
//! on-demand (OCI docs, "Preemptible instances"); spot = price / 2 where `allowPreemptible`.
//! Prices are the same in every region, and there is no public region list, so every shape is
//! offered in every region of [`ALL_REGIONS`] (the 33 regions of SkyPilot's OCI catalog).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "oci";
const DEFAULT_PRICES_BASE: &str = "https://apexapps.oracle.com/";
const DEFAULT_SHAPES_BASE: &str = "https://www.oracle.com/";
const PRICES_PATH: &str = "pls/apex/cetools/api/v1/products/?currencyCode=USD";
const SHAPES_PATH: &str = "a/ocom/docs/cloudestimator2/data/shapes.json";

pub const ALL_REGIONS: &[&str] = &[
    "af-johannesburg-1", "ap-chuncheon-1", "ap-hyderabad-1", "ap-melbourne-1", "ap-mumbai-1",
    "ap-osaka-1", "ap-seoul-1", "ap-singapore-1", "ap-sydney-1", "ap-tokyo-1", "ca-montreal-1",
    "ca-toronto-1", "eu-amsterdam-1", "eu-frankfurt-1", "eu-madrid-1", "eu-marseille-1", "eu-milan-1",
    "eu-paris-1", "eu-stockholm-1", "eu-zurich-1", "il-jerusalem-1", "me-abudhabi-1", "me-dubai-1",
    "me-jeddah-1", "mx-queretaro-1", "sa-santiago-1", "sa-saopaulo-1", "sa-vinhedo-1", "uk-cardiff-1",
    "uk-london-1", "us-ashburn-1", "us-phoenix-1", "us-sanjose-1",
];

const DEFAULT_REGIONS: &[&str] = &["us-ashburn-1", "us-phoenix-1", "us-sanjose-1", "eu-frankfurt-1", "uk-london-1", "ap-tokyo-1"];

const FLEX_VCPUS: &[f64] = &[2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
const FLEX_GIB_PER_VCPU: &[f64] = &[4.0, 8.0];

#[derive(Debug, Default)]
pub struct Oci;

#[derive(Deserialize)]
struct PriceList {
    items: Vec<PriceItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceItem {
    part_number: String,
    #[serde(default)]
    currency_code_localizations: Vec<Localization>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Localization {
    currency_code: String,
    #[serde(default)]
    prices: Vec<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceEntry {
    model: String,
    value: f64,
    #[serde(default)]
    range_min: Option<f64>,
}

#[derive(Deserialize)]
struct ShapeList {
    items: Vec<ShapeItem>,
}

#[derive(Deserialize)]
struct ValueOf {
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShapeItem {
    name: String,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    allow_preemptible: bool,
    #[serde(default)]
    bundle_memory_qty: Option<f64>,
    #[serde(default)]
    gpu_qty: Option<f64>,
    #[serde(default)]
    gpu_memory_qty: Option<f64>,
    #[serde(default)]
    processor_type: Option<ValueOf>,
    shape_type: ValueOf,
    sub_type: ValueOf,
    #[serde(default)]
    products: Vec<ShapeProduct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShapeProduct {
    #[serde(rename = "type")]
    kind: ValueOf,
    part_number: String,
    #[serde(default)]
    qty: Option<f64>,
}

/// One priced shape (region-independent).
#[derive(Debug, Clone)]
struct Priced {
    name: String,
    vcpus: f64,
    memory_gib: Option<f64>,
    accel: Option<(AcceleratorInfo, f64)>,
    arch: String,
    price: f64,
    spot: Option<f64>,
    breakdown: String,
}

#[derive(Debug)]
struct OciCatalog {
    shapes: Vec<Priced>,
    source: String,
}

fn rates(list: PriceList) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for item in list.items {
        let usd = item.currency_code_localizations.iter().find(|l| l.currency_code == "USD");
        let marginal = usd.and_then(|l| {
            l.prices
                .iter()
                .filter(|p| p.model == "PAY_AS_YOU_GO")
                .max_by(|a, b| a.range_min.unwrap_or(0.0).total_cmp(&b.range_min.unwrap_or(0.0)))
        });
        if let Some(p) = marginal {
            out.insert(item.part_number, p.value);
        }
    }
    out
}

/// GPU model of a GPU shape name: `BM.GPU4.8` → A100, `VM.GPU.A10.1` → A10,
/// `BM.GPU.A100-v2.8` → A100 (80 GB by memory), `BM.GPU.H100.8` → H100.
fn gpu_of(name: &str, mem_per_gpu: Option<f64>) -> Option<AcceleratorInfo> {
    let parts: Vec<&str> = name.split('.').collect();
    let model = match parts.get(1).copied() {
        Some("GPU4") => "A100".to_string(),
        Some("GPU3") => "V100".to_string(),
        Some("GPU2") => "P100".to_string(),
        Some("GPU") => parts.get(2)?.trim_end_matches("-v2").to_string(),
        _ => return None,
    };
    accelerators::canonicalize(&model, mem_per_gpu)
}

fn vcpus_per_ocpu(name: &str) -> f64 {
    if name.contains(".A1.") {
        1.0
    } else {
        2.0
    }
}

fn price_shapes(cx: &FetchContext, rates: &BTreeMap<String, f64>, shapes: ShapeList) -> Vec<Priced> {
    let mut out = Vec::new();
    for s in shapes.items {
        let name = s.name.trim_end_matches(" (NVL72)").to_string();
        let kept_type = matches!(s.shape_type.value.as_str(), "vm" | "bm");
        let kept_sub = matches!(s.sub_type.value.as_str(), "standard" | "gpu" | "optimized");
        if s.hidden || s.status != "ACTIVE" || !kept_type || !kept_sub {
            cx.skip(CLOUD, "hidden, inactive or out-of-scope shape", 1);
            continue;
        }
        let arch = match s.processor_type.as_ref().map(|p| p.value.as_str()) {
            Some("ampere") | Some("arm") => "arm64",
            _ => "x86_64",
        };
        let product = |kind: &str| s.products.iter().find(|p| p.kind.value == kind);
        let ocpu = product("ocpu");
        let per_ocpu = vcpus_per_ocpu(&name);
        let spot_of = |p: f64| if s.allow_preemptible { Some(p / 2.0) } else { None };
        let gpus = s.gpu_qty.unwrap_or(0.0);
        if s.sub_type.value == "gpu" || gpus > 0.0 {
            let Some(ocpu) = ocpu else {
                cx.skip(CLOUD, "GPU shape without a priced part", 1);
                continue;
            };
            let Some(rate) = rates.get(&ocpu.part_number) else {
                cx.skip(CLOUD, "part number missing from the price list", 1);
                continue;
            };
            let mem_per_gpu = match (s.gpu_memory_qty, gpus) {
                (Some(m), g) if g > 0.0 => Some(m / g),
                _ => None,
            };
            let Some(info) = gpu_of(&name, mem_per_gpu).filter(|_| gpus > 0.0) else {
                cx.skip(CLOUD, "GPU model not understood", 1);
                continue;
            };
            let price = rate * gpus;
            out.push(Priced {
                vcpus: ocpu.qty.unwrap_or(0.0).trunc() * per_ocpu,
                memory_gib: s.bundle_memory_qty,
                accel: Some((info, gpus)),
                arch: arch.into(),
                price,
                spot: spot_of(price),
                breakdown: format!("{} x GPU part {} at ${rate}/GPU-hour", gpus, ocpu.part_number),
                name,
            });
            continue;
        }
        let memory = product("memory");
        let (Some(ocpu), Some(memory)) = (ocpu, memory) else {
            cx.skip(CLOUD, "shape without OCPU and memory parts", 1);
            continue;
        };
        let (Some(ocpu_rate), Some(mem_rate)) = (rates.get(&ocpu.part_number), rates.get(&memory.part_number)) else {
            cx.skip(CLOUD, "part number missing from the price list", 1);
            continue;
        };
        if name.ends_with(".Flex") {
            for &v in FLEX_VCPUS {
                // Ampere A1 Flex stops at 80 OCPUs (= 80 vCPUs).
                if per_ocpu == 1.0 && v > 80.0 {
                    continue;
                }
                for &ratio in FLEX_GIB_PER_VCPU {
                    let mem = v * ratio;
                    let ocpus = v / per_ocpu;
                    let price = ocpus * ocpu_rate + mem * mem_rate;
                    out.push(Priced {
                        name: format!("{name}$_{}_{}", v as u64, mem as u64),
                        vcpus: v,
                        memory_gib: Some(mem),
                        accel: None,
                        arch: arch.into(),
                        price,
                        spot: spot_of(price),
                        breakdown: format!(
                            "{ocpus} OCPU x ${ocpu_rate} ({}) + {mem} GB x ${mem_rate} ({})",
                            ocpu.part_number, memory.part_number
                        ),
                    });
                }
            }
            continue;
        }
        let ocpus = ocpu.qty.unwrap_or(0.0).trunc();
        let mem = memory.qty.or(s.bundle_memory_qty).unwrap_or(0.0).trunc();
        let price = ocpus * ocpu_rate + mem * mem_rate;
        out.push(Priced {
            vcpus: ocpus * per_ocpu,
            memory_gib: Some(mem),
            accel: None,
            arch: arch.into(),
            price,
            spot: spot_of(price),
            breakdown: format!(
                "{ocpus} OCPU x ${ocpu_rate} ({}) + {mem} GB x ${mem_rate} ({})",
                ocpu.part_number, memory.part_number
            ),
            name,
        });
    }
    out
}

fn base(cx: &FetchContext, default: &str) -> Result<Url, FetchError> {
    cx.endpoint(CLOUD, default)
}

async fn fetch_catalog(cx: &FetchContext) -> Result<OciCatalog, FetchError> {
    let join = |b: Url, p: &str| b.join(p).map_err(|e| FetchError::Config(format!("oci endpoint {b}: {e}")));
    let prices_url = join(base(cx, DEFAULT_PRICES_BASE)?, PRICES_PATH)?;
    let shapes_url = join(base(cx, DEFAULT_SHAPES_BASE)?, SHAPES_PATH)?;
    let text = cx.http.get_text(&prices_url, &[]).await?;
    let list: PriceList =
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("oci price list {prices_url}"), e))?;
    let text = cx.http.get_text(&shapes_url, &[]).await?;
    let shapes: ShapeList =
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("oci shapes {shapes_url}"), e))?;
    let rates = rates(list);
    let shapes = price_shapes(cx, &rates, shapes);
    Ok(OciCatalog { shapes, source: format!("{prices_url} + {shapes_url}") })
}

#[async_trait]
impl Provider for Oci {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, _cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        Ok(ALL_REGIONS.iter().map(|s| s.to_string()).collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let cat = cx.shared("oci:prices+shapes", || fetch_catalog(cx)).await?;
        let mut out = Vec::with_capacity(cat.shapes.len());
        for s in &cat.shapes {
            let mut o = cx.offer(CLOUD, &s.name, region, &cat.source);
            o.vcpus = Some(s.vcpus);
            o.memory_gib = s.memory_gib;
            o.arch = Some(s.arch.clone().into());
            if let Some((info, n)) = &s.accel {
                o.accelerator_name = Some(info.name.clone().into());
                o.accelerator_count = *n;
                o.accelerator_memory_gib = info.memory_gib;
                o.accelerator_vendor = Some(info.vendor.into());
            }
            o.price = Some(s.price);
            o.spot_price = s.spot;
            o.price_breakdown = Some(s.breakdown.clone().into());
            out.push(o);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names() {
        assert_eq!(gpu_of("BM.GPU4.8", Some(40.0)).unwrap().name, "A100");
        assert_eq!(gpu_of("BM.GPU.A100-v2.8", Some(80.0)).unwrap().name, "A100-80GB");
        assert_eq!(gpu_of("VM.GPU.A10.1", Some(24.0)).unwrap().name, "A10");
        assert_eq!(gpu_of("BM.GPU.H100.8", Some(80.0)).unwrap().name, "H100");
        assert_eq!(gpu_of("VM.GPU3.1", None).unwrap().name, "V100");
        assert!(gpu_of("VM.Standard.E4.Flex", None).is_none());
    }

    #[test]
    fn marginal_tier_wins() {
        let list: PriceList = serde_json::from_str(
            r#"{"items":[{"partNumber":"B93297","currencyCodeLocalizations":[{"currencyCode":"USD","prices":[
            {"model":"PAY_AS_YOU_GO","value":0,"rangeMin":0,"rangeMax":3000},
            {"model":"PAY_AS_YOU_GO","value":0.01,"rangeMin":3000,"rangeMax":999999999999999}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(rates(list).get("B93297"), Some(&0.01));
    }
}
