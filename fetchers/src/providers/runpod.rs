//! RunPod: the GraphQL API (`POST {endpoint}graphql`, `SKYCAT_RUNPOD_ENDPOINT`, default
//! `https://api.runpod.io/`). A key is optional (`SKYCAT_RUNPOD_API_KEY` or `RUNPOD_API_KEY`,
//! sent as `Authorization: Bearer`): unauthenticated price queries work today, but RunPod
//! documents the key as required, so a note says when none is used.
//!
//! Regions are countries, zones are datacenters, as in SkyPilot's RunPod catalog: the datacenter
//! list (`dataCenters { id name listed }`, unlisted ones skipped) is fetched once per run, and a
//! datacenter id maps to its country (`US-CA-2` → `US`, `EU-RO-1` → `RO`, `EUR-IS-1` → `IS`,
//! `CA-MTL-1` → `CA`, `AP-JP-1` → `JP`).
//!
//! Per region, one `gpuTypes` query per datacenter (Secure Cloud, `lowestPrice(input:
//! {gpuCount: 1, secureCloud: true, dataCenterId})`) and one per country (Community Cloud,
//! `secureCloud: false, countryCode`). A GPU type is offered where `lowestPrice.stockStatus` is
//! not null (null = not offered for that input) and its cloud's flag and price are set. Instance
//! types are `<N>x_<GPU>_SECURE` (zone = datacenter) and `<N>x_<GPU>_COMMUNITY` (zone null) for
//! N in 1, 2, 4, 8 up to `maxGpuCount{Secure,Community}Cloud`. Prices are per GPU-hour × N:
//! on-demand `securePrice`/`communityPrice`; spot from the bid market — `lowestPrice.
//! minimumBidPrice` when given, else `secureSpotPrice`/`communitySpotPrice`. vCPUs and memory are
//! the 1-GPU minimums (`minVcpu`, `minMemory` GB) × N. GraphQL `errors` (answered with HTTP 200)
//! fail the region.
//!
//! CPU pods (Secure Cloud only): the flavor list (`cpuFlavors { id minVcpu maxVcpu ramMultiplier }`,
//! ids `cpu3c`, `cpu3g`, `cpu3m`, `cpu5c`, …) is fetched once per run; per datacenter one query
//! asks every size's `specifics(input: {dataCenterId, instanceId})` under a GraphQL alias per size
//! (SkyPilot's fetcher sends the same field one size at a time). Sizes are SkyPilot's: vCPU counts
//! 2, 4, … 256 within the flavor's `minVcpu..=maxVcpu`, memory = vCPUs × `ramMultiplier` GB,
//! instance type `<flavor>-<vCPUs>-<GB>` (`cpu3c-2-4`); offered where `stockStatus` is not null,
//! at `securePrice` per hour, no spot market.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "runpod";
pub(crate) const DEFAULT_ENDPOINT: &str = "https://api.runpod.io/";
const COUNTS: &[f64] = &[1.0, 2.0, 4.0, 8.0];
const DEFAULT_REGIONS: &[&str] = &["US", "CA", "RO", "SE", "IS", "NL", "CZ"];

pub const DATACENTERS_QUERY: &str = "query DataCenters { dataCenters { id name listed } }";

pub const CPU_FLAVORS_QUERY: &str = "query CpuFlavors { cpuFlavors { id minVcpu maxVcpu ramMultiplier } }";

pub const GPU_TYPES_QUERY: &str = "query GpuTypes($lowestPriceInput: GpuLowestPriceInput) { gpuTypes { id displayName memoryInGb manufacturer secureCloud communityCloud securePrice communityPrice secureSpotPrice communitySpotPrice maxGpuCountSecureCloud maxGpuCountCommunityCloud lowestPrice(input: $lowestPriceInput) { minimumBidPrice uninterruptablePrice minVcpu minMemory stockStatus countryCode } } }";

#[derive(Debug, Default)]
pub struct RunPod;

#[derive(Deserialize)]
struct GqlResponse<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Option<Vec<GqlError>>,
}

#[derive(Deserialize)]
struct GqlError {
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataCentersData {
    data_centers: Vec<DataCenter>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct DataCenter {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub listed: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuFlavorsData {
    cpu_flavors: Vec<CpuFlavor>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CpuFlavor {
    pub id: String,
    #[serde(default)]
    pub min_vcpu: Option<f64>,
    #[serde(default)]
    pub max_vcpu: Option<f64>,
    #[serde(default)]
    pub ram_multiplier: Option<f64>,
}

/// One aliased `cpuFlavors(input: {id})` answer: the flavor with the size's specifics.
#[derive(Deserialize, Debug)]
struct FlavorSpecifics {
    #[serde(default)]
    specifics: Option<Specifics>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Specifics {
    #[serde(default)]
    stock_status: Option<String>,
    #[serde(default)]
    secure_price: Option<f64>,
}

/// A CPU pod size: GraphQL alias, instance id (`cpu3c-2-4`), vCPUs, memory GB.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSize {
    pub alias: String,
    pub instance_id: String,
    pub flavor: String,
    pub vcpus: f64,
    pub memory_gb: f64,
}

/// The sizes of each flavor (SkyPilot's rule: powers of two from 2 to 256 vCPUs within
/// `minVcpu..=maxVcpu`). A flavor without its limits is skipped and counted.
pub fn cpu_sizes(cx: &FetchContext, flavors: &[CpuFlavor]) -> Vec<CpuSize> {
    let mut out = Vec::new();
    for f in flavors {
        let (Some(min), Some(max), Some(ram)) = (f.min_vcpu, f.max_vcpu, f.ram_multiplier) else {
            cx.skip(CLOUD, "CPU flavor without vCPU limits or RAM multiplier", 1);
            continue;
        };
        for v in (1..=8).map(|i| f64::from(1u32 << i)).filter(|v| *v >= min && *v <= max) {
            let mem = v * ram;
            let instance_id = format!("{}-{}-{}", f.id, v as u64, mem as u64);
            let alias: String = instance_id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            out.push(CpuSize { alias: format!("s_{alias}"), instance_id, flavor: f.id.clone(), vcpus: v, memory_gb: mem });
        }
    }
    out
}

/// One query asking every size's specifics in `$dataCenterId`, one alias per size.
pub fn cpu_specifics_query(sizes: &[CpuSize]) -> String {
    let fields: Vec<String> = sizes
        .iter()
        .map(|s| {
            format!(
                "{}: cpuFlavors(input: {{id: {:?}}}) {{ id specifics(input: {{dataCenterId: $dataCenterId, instanceId: {:?}}}) {{ stockStatus securePrice }} }}",
                s.alias, s.flavor, s.instance_id
            )
        })
        .collect();
    format!("query CpuSpecifics($dataCenterId: String) {{ {} }}", fields.join(" "))
}

async fn cpu_flavors(cx: &FetchContext) -> Result<std::sync::Arc<Vec<CpuFlavor>>, FetchError> {
    cx.shared("runpod:cpu-flavors", || async {
        let d: CpuFlavorsData = gql(cx, json!({ "query": CPU_FLAVORS_QUERY }), "cpuFlavors").await?;
        let mut v = d.cpu_flavors;
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    })
    .await
}

async fn cpu_offers(cx: &FetchContext, source: &str, region: &str, dc: &str, out: &mut Vec<Offer>) -> Result<(), FetchError> {
    let flavors = cpu_flavors(cx).await?;
    let sizes = cpu_sizes(cx, &flavors);
    if sizes.is_empty() {
        return Ok(());
    }
    let body = json!({ "query": cpu_specifics_query(&sizes), "variables": { "dataCenterId": dc } });
    let what = format!("cpuFlavors specifics for datacenter {dc}");
    let data: BTreeMap<String, Option<Vec<FlavorSpecifics>>> = gql(cx, body, &what).await?;
    for s in &sizes {
        let Some(answer) = data.get(&s.alias) else {
            return Err(FetchError::malformed(format!("runpod {what}"), format!("no answer for {}", s.instance_id)));
        };
        let Some(spec) = answer.as_ref().and_then(|v| v.first()).and_then(|f| f.specifics.as_ref()) else {
            continue;
        };
        let Some(price) = spec.secure_price.filter(|p| *p > 0.0 && spec.stock_status.is_some()) else {
            continue; // not offered in this datacenter
        };
        let mut o = cx.offer(CLOUD, &s.instance_id, region, source);
        o.zone = Some(dc.into());
        o.vcpus = Some(s.vcpus);
        o.memory_gib = Some(s.memory_gb);
        o.arch = Some("x86_64".into());
        o.price = Some(price);
        out.push(o);
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GpuTypesData {
    gpu_types: Vec<GpuType>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct GpuType {
    id: String,
    display_name: String,
    #[serde(default)]
    memory_in_gb: Option<f64>,
    #[serde(default)]
    manufacturer: Option<String>,
    #[serde(default)]
    secure_cloud: Option<bool>,
    #[serde(default)]
    community_cloud: Option<bool>,
    #[serde(default)]
    secure_price: Option<f64>,
    #[serde(default)]
    community_price: Option<f64>,
    #[serde(default)]
    secure_spot_price: Option<f64>,
    #[serde(default)]
    community_spot_price: Option<f64>,
    #[serde(default)]
    max_gpu_count_secure_cloud: Option<f64>,
    #[serde(default)]
    max_gpu_count_community_cloud: Option<f64>,
    #[serde(default)]
    lowest_price: Option<LowestPrice>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct LowestPrice {
    #[serde(default)]
    minimum_bid_price: Option<f64>,
    #[serde(default)]
    min_vcpu: Option<f64>,
    #[serde(default)]
    min_memory: Option<f64>,
    #[serde(default)]
    stock_status: Option<String>,
}

/// Country code of a datacenter id.
pub fn country_of(dc: &str) -> Option<String> {
    let mut parts = dc.split('-');
    let first = parts.next()?;
    let second = parts.next();
    let cc = match (first, second) {
        ("EU" | "EUR" | "AP" | "OC" | "SA" | "AF" | "ME" | "AS", Some(cc)) => cc,
        (cc, _) => cc,
    };
    (cc.len() == 2 && cc.chars().all(|c| c.is_ascii_uppercase())).then(|| cc.to_string())
}

fn headers(cx: &FetchContext) -> Vec<(&'static str, String)> {
    match cx.env("SKYCAT_RUNPOD_API_KEY").or_else(|| cx.env("RUNPOD_API_KEY")) {
        Some(k) => vec![("Authorization", format!("Bearer {k}"))],
        None => {
            cx.note(CLOUD, "no RunPod API key (SKYCAT_RUNPOD_API_KEY): unauthenticated queries (documented as needing a key)");
            Vec::new()
        }
    }
}

fn graphql_url(cx: &FetchContext) -> Result<Url, FetchError> {
    let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
    base.join("graphql").map_err(|e| FetchError::Config(format!("runpod endpoint {base}: {e}")))
}

async fn gql<T: serde::de::DeserializeOwned>(
    cx: &FetchContext,
    body: serde_json::Value,
    what: &str,
) -> Result<T, FetchError> {
    let url = graphql_url(cx)?;
    let h = headers(cx);
    let resp: GqlResponse<T> = cx.http.post_json(&url, &h, &body).await.map_err(|e| match e {
        FetchError::Malformed { message, .. } => FetchError::malformed(format!("runpod {what}"), message),
        other => other,
    })?;
    if let Some(errs) = resp.errors.filter(|e| !e.is_empty()) {
        let msgs: Vec<String> = errs.into_iter().map(|e| e.message).collect();
        return Err(FetchError::api(CLOUD, format!("{what}: {}", msgs.join("; "))));
    }
    resp.data.ok_or_else(|| FetchError::malformed(format!("runpod {what}"), "no data and no errors"))
}

async fn datacenters(cx: &FetchContext) -> Result<std::sync::Arc<Vec<DataCenter>>, FetchError> {
    cx.shared("runpod:datacenters", || async {
        let d: DataCentersData = gql(cx, json!({ "query": DATACENTERS_QUERY }), "dataCenters").await?;
        let mut v: Vec<DataCenter> = d.data_centers.into_iter().filter(|dc| dc.listed).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    })
    .await
}

fn canonical(g: &GpuType) -> Option<AcceleratorInfo> {
    accelerators::canonicalize(&g.display_name, g.memory_in_gb)
        .or_else(|| {
            // "A100 PCIe", "A100 SXM": drop the form factor and let the memory pick the variant.
            let bare: Vec<&str> = g
                .display_name
                .split_whitespace()
                .filter(|w| !matches!(w.to_ascii_uppercase().as_str(), "PCIE" | "SXM" | "SXM4" | "SXM5"))
                .collect();
            accelerators::canonicalize(&bare.join(" "), g.memory_in_gb)
        })
        .or_else(|| accelerators::canonicalize(&g.id, g.memory_in_gb))
}

struct Market<'a> {
    secure: bool,
    region: &'a str,
    zone: Option<&'a str>,
}

fn offers_for(cx: &FetchContext, source: &str, m: &Market, gpus: Vec<GpuType>, out: &mut Vec<Offer>) {
    for g in gpus {
        let (flag, price, spot_list, max) = if m.secure {
            (g.secure_cloud, g.secure_price, g.secure_spot_price, g.max_gpu_count_secure_cloud)
        } else {
            (g.community_cloud, g.community_price, g.community_spot_price, g.max_gpu_count_community_cloud)
        };
        let Some(lp) = g.lowest_price.as_ref().filter(|lp| lp.stock_status.is_some()) else {
            continue; // not offered here for this input
        };
        let Some(price) = price.filter(|p| *p > 0.0 && flag == Some(true)) else {
            continue;
        };
        let Some(info) = canonical(&g) else {
            cx.skip(CLOUD, "GPU model not in the accelerator registry", 1);
            continue;
        };
        let spot = lp.minimum_bid_price.filter(|p| *p > 0.0).or(spot_list.filter(|p| *p > 0.0));
        let max = max.unwrap_or(1.0);
        for &n in COUNTS.iter().filter(|n| **n <= max) {
            let name = format!("{}x_{}_{}", n as u64, info.name, if m.secure { "SECURE" } else { "COMMUNITY" });
            let mut o = cx.offer(CLOUD, &name, m.region, source);
            o.zone = m.zone.map(str::to_string).map(Into::into);
            o.accelerator_name = Some(info.name.clone().into());
            o.accelerator_count = n;
            o.accelerator_memory_gib = g.memory_in_gb.or(info.memory_gib);
            o.accelerator_vendor = Some(
                g.manufacturer.as_deref().map(|v| v.to_ascii_lowercase()).unwrap_or_else(|| info.vendor.to_string()).into(),
            );
            o.vcpus = lp.min_vcpu.map(|v| v * n);
            o.memory_gib = lp.min_memory.map(|v| v * n);
            o.arch = Some("x86_64".into());
            o.price = Some(price * n);
            o.spot_price = spot.map(|s| s * n);
            o.price_breakdown = Some(format!(
                "{} x ${price}/GPU-hour{}",
                n as u64,
                spot.map(|s| format!("; spot {} x ${s}/GPU-hour (bid)", n as u64)).unwrap_or_default()
            ).into());
            out.push(o);
        }
    }
}

#[async_trait]
impl Provider for RunPod {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        let dcs = datacenters(cx).await?;
        let set: BTreeSet<String> = dcs.iter().filter_map(|d| country_of(&d.id)).collect();
        Ok(set.into_iter().collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let dcs = datacenters(cx).await?;
        let source = graphql_url(cx)?.to_string();
        let mut out = Vec::new();
        for dc in dcs.iter().filter(|d| country_of(&d.id).as_deref() == Some(region)) {
            let body = json!({
                "query": GPU_TYPES_QUERY,
                "variables": { "lowestPriceInput": { "gpuCount": 1, "secureCloud": true, "dataCenterId": dc.id } },
            });
            let d: GpuTypesData = gql(cx, body, &format!("gpuTypes for datacenter {}", dc.id)).await?;
            offers_for(cx, &source, &Market { secure: true, region, zone: Some(&dc.id) }, d.gpu_types, &mut out);
            cpu_offers(cx, &source, region, &dc.id, &mut out).await?;
        }
        let body = json!({
            "query": GPU_TYPES_QUERY,
            "variables": { "lowestPriceInput": { "gpuCount": 1, "secureCloud": false, "countryCode": region } },
        });
        let d: GpuTypesData = gql(cx, body, &format!("gpuTypes for community cloud in {region}")).await?;
        offers_for(cx, &source, &Market { secure: false, region, zone: None }, d.gpu_types, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries() {
        assert_eq!(country_of("US-CA-2").as_deref(), Some("US"));
        assert_eq!(country_of("EU-RO-1").as_deref(), Some("RO"));
        assert_eq!(country_of("EUR-IS-1").as_deref(), Some("IS"));
        assert_eq!(country_of("CA-MTL-1").as_deref(), Some("CA"));
        assert_eq!(country_of("AP-JP-1").as_deref(), Some("JP"));
        assert_eq!(country_of("weird"), None);
    }

    #[test]
    fn cpu_sizes_and_the_aliased_query() {
        let cx = FetchContext::for_tests(&[]);
        let flavors = vec![
            CpuFlavor { id: "cpu3m".into(), min_vcpu: Some(2.0), max_vcpu: Some(8.0), ram_multiplier: Some(8.0) },
            CpuFlavor { id: "cpu9x".into(), min_vcpu: None, max_vcpu: Some(8.0), ram_multiplier: Some(2.0) },
        ];
        let sizes = cpu_sizes(&cx, &flavors);
        let ids: Vec<&str> = sizes.iter().map(|s| s.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["cpu3m-2-16", "cpu3m-4-32", "cpu3m-8-64"]);
        assert_eq!(cx.skipped_for("runpod").get("CPU flavor without vCPU limits or RAM multiplier"), Some(&1));
        let q = cpu_specifics_query(&sizes[..1]);
        assert_eq!(
            q,
            "query CpuSpecifics($dataCenterId: String) { s_cpu3m_2_16: cpuFlavors(input: {id: \"cpu3m\"}) { id specifics(input: {dataCenterId: $dataCenterId, instanceId: \"cpu3m-2-16\"}) { stockStatus securePrice } } }"
        );
    }
}
