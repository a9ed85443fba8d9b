//! Azure: the public Retail Prices API for on-demand and spot prices, per region, and the
//! Resource SKUs API for specs when Azure credentials are configured.
//!
//! Prices: `GET {endpoint}api/retail/prices?api-version=2023-01-01-preview&$filter=serviceName eq
//! 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '<region>'`, one call
//! per region, following `NextPageLink`. The link is absolute (`https://prices.azure.com:443/…`),
//! so it is resolved against the configured endpoint (`SKYCAT_AZURE_ENDPOINT`): only its path and
//! query are honoured. A page with items but an empty-string `NextPageLink` (seen during an
//! incident on 2023-03-10, learn.microsoft.com Q&A 1188465) continues with `$skip` computed here;
//! `null` or an empty page ends the listing.
//!
//! Rows kept: `type == "Consumption"`, `unitOfMeasure == "1 Hour"`, USD, Linux (no `Windows` in
//! `productName`), not `Cloud Services`, not `Dedicated` hosts, not `Low Priority` (the legacy
//! low-priority market). A `skuName` ending in ` Spot` is the spot price of its `armSkuName`.
//! A SKU listed only with zero prices (preview sizes) is reported — a note plus an offer with no
//! price — never priced at 0.
//!
//! Specs: with `AZURE_SUBSCRIPTION_ID` and either `AZURE_ACCESS_TOKEN` or a service principal
//! (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), the Resource SKUs API
//! (`Microsoft.Compute/skus?api-version=2021-07-01&$filter=location eq '<region>'`) gives
//! vCPUs, memory, GPU count, architecture and the Hyper-V generations (`HyperVGenerations`,
//! the offer's `hyperv_generations`). Without credentials
//! the SKU naming convention gives the vCPU count (and memory for the D/E/F families whose memory per vCPU is fixed), and
//! [`N_SERIES`] gives the GPU N-series specs. GPU model and count come from the catalog's
//! accelerator registry ([`skycat_catalog::accelerators::from_instance_type`]). An N-series SKU
//! that neither source describes is skipped and counted, not guessed.
//!
//! Endpoints: `SKYCAT_AZURE_ENDPOINT` (retail prices), `SKYCAT_AZURE_MANAGEMENT_ENDPOINT`
//! (Resource SKUs, default `https://management.azure.com`), `SKYCAT_AZURE_LOGIN_ENDPOINT`
//! (token, default `https://login.microsoftonline.com`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::{HypervGenerations, Offer};
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "azure";
const DEFAULT_ENDPOINT: &str = "https://prices.azure.com/";
pub(crate) const DEFAULT_MANAGEMENT: &str = "https://management.azure.com/";
pub(crate) const DEFAULT_LOGIN: &str = "https://login.microsoftonline.com/";
const API_VERSION: &str = "2023-01-01-preview";
/// Items per page the API returns (documented: up to 1000). Used only to synthesise `$skip`
/// when the service omits the link.
const MAX_PAGES: usize = 5000;

/// Every public Azure region's ARM name (the Retail API's `armRegionName`).
pub const ALL_REGIONS: &[&str] = &[
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "austriaeast",
    "belgiumcentral", "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia",
    "centralus", "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "francesouth",
    "germanynorth", "germanywestcentral", "indonesiacentral", "israelcentral", "italynorth",
    "japaneast", "japanwest", "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth",
    "malaysiawest", "mexicocentral", "newzealandnorth", "northcentralus", "northeurope",
    "norwayeast", "norwaywest", "polandcentral", "qatarcentral", "southafricanorth",
    "southafricawest", "southcentralus", "southeastasia", "southindia", "spaincentral",
    "swedencentral", "switzerlandnorth", "switzerlandwest", "uaecentral", "uaenorth", "uksouth",
    "ukwest", "westcentralus", "westeurope", "westindia", "westus", "westus2", "westus3",
];

const DEFAULT_REGIONS: &[&str] = &[
    "eastus", "eastus2", "westus2", "westus3", "centralus", "southcentralus", "northeurope",
    "westeurope", "uksouth", "swedencentral", "japaneast", "southeastasia", "australiaeast",
];

/// vCPUs and memory (GiB) of the GPU N-series sizes, from Azure's size documentation
/// (learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/*), cross-checked against
/// SkyPilot's published catalog (`reference-prices/azure.csv`). Two deliberate differences from
/// that file: `ND96amsr_A100_v4` has 1900 GiB (the file says 1800) and `ND96isr_H100_v5` has 8
/// GPUs (the file says 12; the GPU count comes from the registry, not from here).
pub const N_SERIES: &[(&str, f64, f64)] = &[
    ("NC4as_T4_v3", 4.0, 28.0),
    ("NC8as_T4_v3", 8.0, 56.0),
    ("NC16as_T4_v3", 16.0, 110.0),
    ("NC64as_T4_v3", 64.0, 440.0),
    ("NC6s_v3", 6.0, 112.0),
    ("NC12s_v3", 12.0, 224.0),
    ("NC24s_v3", 24.0, 448.0),
    ("NC24rs_v3", 24.0, 448.0),
    ("NC24ads_A100_v4", 24.0, 220.0),
    ("NC48ads_A100_v4", 48.0, 440.0),
    ("NC96ads_A100_v4", 96.0, 880.0),
    ("ND96asr_v4", 96.0, 900.0),
    ("ND96amsr_A100_v4", 96.0, 1900.0),
    ("NC40ads_H100_v5", 40.0, 320.0),
    ("NC80adis_H100_v5", 80.0, 640.0),
    ("ND96isr_H100_v5", 96.0, 1900.0),
    ("ND96isr_H200_v5", 96.0, 1850.0),
    ("ND96isr_MI300X_v5", 96.0, 1850.0),
    ("ND40rs_v2", 40.0, 672.0),
    ("NV6ads_A10_v5", 6.0, 55.0),
    ("NV12ads_A10_v5", 12.0, 110.0),
    ("NV18ads_A10_v5", 18.0, 220.0),
    ("NV36ads_A10_v5", 36.0, 440.0),
    ("NV36adms_A10_v5", 36.0, 880.0),
    ("NV72ads_A10_v5", 72.0, 880.0),
    ("NC6", 6.0, 56.0),
    ("NC12", 12.0, 112.0),
    ("NC24", 24.0, 224.0),
    ("NC24r", 24.0, 224.0),
    ("NV6", 6.0, 56.0),
    ("NV12", 12.0, 112.0),
    ("NV24", 24.0, 224.0),
    ("NV12s_v3", 12.0, 112.0),
    ("NV24s_v3", 24.0, 224.0),
    ("NV48s_v3", 48.0, 448.0),
    ("NV4as_v4", 4.0, 14.0),
    ("NV8as_v4", 8.0, 28.0),
    ("NV16as_v4", 16.0, 56.0),
    ("NV32as_v4", 32.0, 112.0),
];

#[derive(Debug, Default)]
pub struct Azure;

#[derive(Debug, Deserialize)]
struct RetailPage {
    #[serde(rename = "Items")]
    items: Vec<RetailItem>,
    #[serde(rename = "NextPageLink", default)]
    next_page_link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetailItem {
    currency_code: String,
    retail_price: f64,
    arm_region_name: String,
    product_name: String,
    sku_name: String,
    service_name: String,
    unit_of_measure: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    arm_sku_name: String,
}

/// What one region's price list says about one ARM SKU.
#[derive(Debug, Default)]
struct SkuPrices {
    on_demand: Option<f64>,
    spot: Option<f64>,
    zero_priced_rows: u64,
}

/// Specs of one size, whichever source gave them.
#[derive(Debug, Clone, Default)]
pub struct SizeSpec {
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// GPU count reported by the Resource SKUs API (`GPUs` capability).
    pub gpus: Option<f64>,
    pub arch: Option<String>,
    /// Hyper-V generations the size boots (`HyperVGenerations` capability, `"V1,V2"`); only the
    /// Resource SKUs API says. The catalog keeps it (SkyPilot's Azure `Generation` column).
    pub hyperv_generations: Option<HypervGenerations>,
}

impl SizeSpec {
    /// The generations as SkyPilot's `Generation` column writes them: `V1,V2`.
    pub fn generation_cell(&self) -> Option<String> {
        self.hyperv_generations.map(|g| g.label())
    }
}

/// Parse a `HyperVGenerations` capability value (`"V1,V2"`, `"V2"`). Anything but `V<n>` items is
/// an error naming the size.
pub fn parse_hyperv_generations(size: &str, value: &str) -> Result<HypervGenerations, FetchError> {
    HypervGenerations::parse(value).map_err(|_| {
        FetchError::malformed(
            format!("azure resource SKU {size}"),
            format!("HyperVGenerations {value:?} is not a list like \"V1,V2\""),
        )
    })
}

/// Resource SKUs specs of every VM size in `region` (keyed by lower-cased size name, with vCPUs,
/// memory, GPUs, architecture and Hyper-V generations), or `None` without Azure credentials.
pub async fn resource_sku_specs(cx: &FetchContext, region: &str) -> Result<Option<BTreeMap<String, SizeSpec>>, FetchError> {
    match credentials(cx) {
        Some(creds) => fetch_resource_skus(cx, &creds, region).await.map(Some),
        None => Ok(None),
    }
}

#[async_trait]
impl Provider for Azure {
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
        let endpoint = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
        let (prices, source) = fetch_prices(cx, &endpoint, region).await?;
        let specs = match credentials(cx) {
            Some(creds) => match fetch_resource_skus(cx, &creds, region).await {
                Ok(s) => Some(s),
                Err(e) => {
                    cx.note(CLOUD, format!("Resource SKUs API failed for {region} ({e}); specs from the SKU names"));
                    None
                }
            },
            None => {
                cx.note(CLOUD, "no Azure credentials: specs from SKU names and the N-series table");
                None
            }
        };
        Ok(build_offers(cx, region, &source, prices, specs.as_ref()))
    }
}

fn retail_url(endpoint: &Url, region: &str) -> Result<Url, FetchError> {
    let mut url = endpoint
        .join("api/retail/prices")
        .map_err(|e| FetchError::Config(format!("azure endpoint {endpoint}: {e}")))?;
    let filter = format!(
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{region}'"
    );
    url.query_pairs_mut().append_pair("api-version", API_VERSION).append_pair("$filter", &filter);
    Ok(url)
}

/// The URL of the page after `current` when the service gave items but an empty link.
fn with_skip(current: &Url, skip: usize) -> Url {
    let mut next = current.clone();
    let pairs: Vec<(String, String)> =
        current.query_pairs().filter(|(k, _)| k != "$skip").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    {
        let mut q = next.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair("$skip", &skip.to_string());
    }
    next
}

fn skip_of(url: &Url) -> usize {
    url.query_pairs().find(|(k, _)| k == "$skip").and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

async fn fetch_prices(
    cx: &FetchContext,
    endpoint: &Url,
    region: &str,
) -> Result<(BTreeMap<String, SkuPrices>, String), FetchError> {
    let first = retail_url(endpoint, region)?;
    let source = first.to_string();
    let mut url = first;
    let mut prices: BTreeMap<String, SkuPrices> = BTreeMap::new();
    for _ in 0..MAX_PAGES {
        let text = cx.http.get_text(&url, &[]).await?;
        let page: RetailPage = serde_json::from_str(&text)
            .map_err(|e| FetchError::malformed(format!("azure retail prices page {url} (region {region})"), e))?;
        let n = page.items.len();
        for item in page.items {
            classify(cx, region, item, &mut prices);
        }
        match page.next_page_link.as_deref() {
            _ if n == 0 => break,
            None => break,
            Some(link) if link.trim().is_empty() => {
                url = with_skip(&url, skip_of(&url) + n);
            }
            Some(link) => url = cx.resolve_link(endpoint, link)?,
        }
    }
    Ok((prices, source))
}

fn classify(cx: &FetchContext, region: &str, item: RetailItem, prices: &mut BTreeMap<String, SkuPrices>) {
    let reason = if item.service_name != "Virtual Machines" {
        Some("not a virtual machine meter")
    } else if item.kind != "Consumption" {
        Some(if item.kind.contains("DevTest") { "DevTest price" } else { "reservation or other non-consumption price" })
    } else if item.product_name.contains("Windows") {
        Some("Windows")
    } else if item.product_name.contains("Cloud Services") {
        Some("Cloud Services")
    } else if item.product_name.contains("Dedicated") {
        Some("dedicated host")
    } else if item.sku_name.ends_with("Low Priority") {
        Some("low priority")
    } else if item.unit_of_measure != "1 Hour" {
        Some("not an hourly meter")
    } else if item.currency_code != "USD" {
        Some("not USD")
    } else if !item.arm_region_name.eq_ignore_ascii_case(region) {
        Some("other region")
    } else if item.arm_sku_name.trim().is_empty() {
        Some("no ARM SKU name")
    } else {
        None
    };
    if let Some(r) = reason {
        cx.skip(CLOUD, r, 1);
        return;
    }
    let entry = prices.entry(item.arm_sku_name.clone()).or_default();
    if item.retail_price.is_nan() || item.retail_price <= 0.0 || !item.retail_price.is_finite() {
        entry.zero_priced_rows += 1;
        return;
    }
    let slot = if item.sku_name.ends_with(" Spot") { &mut entry.spot } else { &mut entry.on_demand };
    // Several meters for one size (rare: a renamed meter kept for a while): keep the lowest,
    // which makes the choice independent of page order.
    *slot = Some(slot.map_or(item.retail_price, |p: f64| p.min(item.retail_price)));
}

fn build_offers(
    cx: &FetchContext,
    region: &str,
    source: &str,
    prices: BTreeMap<String, SkuPrices>,
    specs: Option<&BTreeMap<String, SizeSpec>>,
) -> Vec<Offer> {
    let mut out = Vec::new();
    for (sku, p) in prices {
        let spec = specs.and_then(|m| m.get(&sku.to_ascii_lowercase()).cloned()).or_else(|| spec_from_name(&sku));
        let accel = accelerators::from_instance_type(CLOUD, &sku);
        let short = sku.strip_prefix("Standard_").unwrap_or(&sku);
        let is_gpu_series = short.starts_with('N') && !short.starts_with("NP");
        let gpu_reported = spec.as_ref().and_then(|s| s.gpus).is_some_and(|g| g > 0.0);
        if accel.is_none() && (is_gpu_series || gpu_reported) {
            // A GPU size the registry cannot name: a row without its GPU would mislead.
            cx.skip(CLOUD, "GPU size not in the N-series table", 1);
            continue;
        }
        let Some(spec) = spec else {
            cx.skip(CLOUD, "size name not understood", 1);
            continue;
        };
        let mut o = cx.offer(CLOUD, &sku, region, source);
        o.vcpus = spec.vcpus;
        o.memory_gib = spec.memory_gib;
        o.arch = Some(spec.arch.clone().unwrap_or_else(|| default_arch(&sku)).into());
        o.hyperv_generations = spec.hyperv_generations;
        if let Some((info, count)) = accel {
            set_accelerator(&mut o, &info, count);
        }
        o.price = p.on_demand;
        o.spot_price = p.spot;
        if o.price.is_none() && o.spot_price.is_none() {
            cx.note(CLOUD, format!("{sku} in {region} is listed without a price (preview size?); reported unpriced"));
            o.price_breakdown = Some("listed with price 0 (preview): no price".into());
        }
        out.push(o);
    }
    out
}

fn set_accelerator(o: &mut Offer, info: &AcceleratorInfo, count: f64) {
    o.accelerator_name = Some(info.name.clone().into());
    o.accelerator_count = count;
    o.accelerator_memory_gib = info.memory_gib;
    o.accelerator_vendor = Some(info.vendor.into());
}

/// Arm64 sizes carry a `p` in their suffix letters (`D2ps_v5`, `E4pds_v5`).
fn default_arch(sku: &str) -> String {
    let parsed = parse_name(sku);
    match parsed {
        Some(p) if p.suffix.contains('p') && matches!(p.family.as_str(), "D" | "E" | "B") => "arm64".into(),
        _ => "x86_64".into(),
    }
}

struct ParsedName {
    family: String,
    vcpus: f64,
    suffix: String,
    version: Option<u32>,
}

/// `Standard_<family><vCPUs>[-<active vCPUs>]<suffix letters>[_<accel>][_v<version>]`,
/// e.g. `Standard_D2s_v5`, `Standard_E64-16ds_v4`, `Standard_NC24ads_A100_v4`.
fn parse_name(sku: &str) -> Option<ParsedName> {
    let s = sku.strip_prefix("Standard_")?;
    let mut parts = s.split('_');
    let head = parts.next()?;
    let version = s.rsplit('_').next().and_then(|v| v.strip_prefix('v')).and_then(|v| v.parse().ok());
    let family: String = head.chars().take_while(|c| c.is_ascii_uppercase()).collect();
    let rest = &head[family.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if family.is_empty() || digits.is_empty() {
        return None;
    }
    let mut rest = &rest[digits.len()..];
    let mut vcpus: f64 = digits.parse().ok()?;
    if let Some(constrained) = rest.strip_prefix('-') {
        let active: String = constrained.chars().take_while(|c| c.is_ascii_digit()).collect();
        vcpus = active.parse().ok()?;
        rest = &constrained[active.len()..];
    }
    Some(ParsedName { family, vcpus, suffix: rest.to_string(), version })
}

/// Specs from the naming convention and the N-series table.
pub fn spec_from_name(sku: &str) -> Option<SizeSpec> {
    let short = sku.strip_prefix("Standard_").unwrap_or(sku);
    if let Some((_, v, m)) = N_SERIES.iter().find(|(n, _, _)| *n == short) {
        return Some(SizeSpec { vcpus: Some(*v), memory_gib: Some(*m), gpus: None, arch: None, hyperv_generations: None });
    }
    let p = parse_name(sku)?;
    let modern = p.version.is_some_and(|v| v >= 3);
    // Memory per vCPU is fixed by family for the general-purpose (D: 4, Dl: 2), memory-
    // optimised (E: 8) and compute-optimised (F v2+: 2) sizes; other families vary by size.
    let per_vcpu = match p.family.as_str() {
        "D" if modern && p.suffix.contains('l') => Some(2.0),
        "D" if modern => Some(4.0),
        "E" if modern => Some(8.0),
        "F" if p.version.is_some_and(|v| v >= 2) => Some(2.0),
        _ => None,
    };
    Some(SizeSpec { vcpus: Some(p.vcpus), memory_gib: per_vcpu.map(|r| r * p.vcpus), gpus: None, arch: None, hyperv_generations: None })
}

// ---------------------------------------------------------------------------------------------
// Resource SKUs API (credentials only)

struct Credentials {
    subscription: String,
    token: TokenSource,
}

enum TokenSource {
    Static(String),
    ClientSecret { tenant: String, client_id: String, secret: String },
}

fn credentials(cx: &FetchContext) -> Option<Credentials> {
    let subscription = cx.env("AZURE_SUBSCRIPTION_ID")?.to_string();
    let token = if let Some(t) = cx.env("AZURE_ACCESS_TOKEN") {
        TokenSource::Static(t.to_string())
    } else {
        TokenSource::ClientSecret {
            tenant: cx.env("AZURE_TENANT_ID")?.to_string(),
            client_id: cx.env("AZURE_CLIENT_ID")?.to_string(),
            secret: cx.env("AZURE_CLIENT_SECRET")?.to_string(),
        }
    };
    Some(Credentials { subscription, token })
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

async fn bearer(cx: &FetchContext, creds: &Credentials) -> Result<String, FetchError> {
    match &creds.token {
        TokenSource::Static(t) => Ok(t.clone()),
        TokenSource::ClientSecret { tenant, client_id, secret } => {
            let tenant = tenant.clone();
            let client_id = client_id.clone();
            let secret = secret.clone();
            let token = cx
                .shared("azure-aad-token", || async move {
                    let login = cx.endpoint("azure_login", DEFAULT_LOGIN)?;
                    let url = login
                        .join(&format!("{tenant}/oauth2/v2.0/token"))
                        .map_err(|e| FetchError::Config(format!("azure login endpoint: {e}")))?;
                    let form = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "client_credentials")
                        .append_pair("client_id", &client_id)
                        .append_pair("client_secret", &secret)
                        .append_pair("scope", "https://management.azure.com/.default")
                        .finish();
                    let resp = cx
                        .http
                        .send(
                            reqwest::Method::POST,
                            &url,
                            &[],
                            Some(("application/x-www-form-urlencoded", form.into_bytes())),
                        )
                        .await
                        .map_err(|e| FetchError::Auth { provider: CLOUD.into(), message: e.to_string() })?;
                    let text = resp.text().await.map_err(|e| FetchError::Transport {
                        url: url.to_string(),
                        message: e.to_string(),
                    })?;
                    let t: TokenResponse = serde_json::from_str(&text)
                        .map_err(|e| FetchError::malformed("azure token response", e))?;
                    Ok(t.access_token)
                })
                .await?;
            Ok((*token).clone())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkuPage {
    value: Vec<ResourceSku>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSku {
    resource_type: String,
    name: String,
    #[serde(default)]
    capabilities: Vec<Capability>,
}

#[derive(Deserialize)]
struct Capability {
    name: String,
    value: String,
}

/// Specs of every VM size in `region`, keyed by lower-cased size name.
async fn fetch_resource_skus(
    cx: &FetchContext,
    creds: &Credentials,
    region: &str,
) -> Result<BTreeMap<String, SizeSpec>, FetchError> {
    let token = bearer(cx, creds).await?;
    let base = cx.endpoint("azure_management", DEFAULT_MANAGEMENT)?;
    let mut url = base
        .join(&format!("subscriptions/{}/providers/Microsoft.Compute/skus", creds.subscription))
        .map_err(|e| FetchError::Config(format!("azure management endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("api-version", "2021-07-01")
        .append_pair("$filter", &format!("location eq '{region}'"));
    let headers = [("Authorization", format!("Bearer {token}"))];
    let mut out = BTreeMap::new();
    for _ in 0..MAX_PAGES {
        let text = cx.http.get_text(&url, &headers).await?;
        let page: SkuPage = serde_json::from_str(&text)
            .map_err(|e| FetchError::malformed(format!("azure resource SKUs page {url}"), e))?;
        for sku in page.value.into_iter().filter(|s| s.resource_type == "virtualMachines") {
            let cap = |n: &str| sku.capabilities.iter().find(|c| c.name == n).map(|c| c.value.as_str());
            let num = |n: &str| cap(n).and_then(|v| v.trim().parse::<f64>().ok());
            let arch = cap("CpuArchitectureType").map(|a| if a.eq_ignore_ascii_case("Arm64") { "arm64" } else { "x86_64" });
            let hyperv_generations = cap("HyperVGenerations").map(|v| parse_hyperv_generations(&sku.name, v)).transpose()?;
            out.insert(
                sku.name.to_ascii_lowercase(),
                SizeSpec {
                    vcpus: num("vCPUsAvailable").or_else(|| num("vCPUs")),
                    memory_gib: num("MemoryGB"),
                    gpus: num("GPUs"),
                    arch: arch.map(str::to_string),
                    hyperv_generations,
                },
            );
        }
        match page.next_link.as_deref() {
            Some(link) if !link.trim().is_empty() => url = cx.resolve_link(&base, link)?,
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention() {
        let s = spec_from_name("Standard_D2s_v5").unwrap();
        assert_eq!((s.vcpus, s.memory_gib), (Some(2.0), Some(8.0)));
        let s = spec_from_name("Standard_D4ls_v5").unwrap();
        assert_eq!((s.vcpus, s.memory_gib), (Some(4.0), Some(8.0)));
        let s = spec_from_name("Standard_E64-16ds_v4").unwrap();
        assert_eq!((s.vcpus, s.memory_gib), (Some(16.0), Some(128.0)));
        let s = spec_from_name("Standard_M128s").unwrap();
        assert_eq!((s.vcpus, s.memory_gib), (Some(128.0), None));
        let s = spec_from_name("Standard_NC24ads_A100_v4").unwrap();
        assert_eq!((s.vcpus, s.memory_gib), (Some(24.0), Some(220.0)));
        assert!(spec_from_name("Standard_").is_none());
        assert_eq!(default_arch("Standard_D2ps_v5"), "arm64");
        assert_eq!(default_arch("Standard_D2s_v5"), "x86_64");
    }

    #[test]
    fn every_n_series_entry_has_a_gpu_in_the_registry() {
        for (name, _, _) in N_SERIES {
            let sku = format!("Standard_{name}");
            assert!(accelerators::from_instance_type(CLOUD, &sku).is_some(), "{sku}");
        }
    }

    #[test]
    fn skip_is_recomputed() {
        let u = Url::parse("http://h/api/retail/prices?$filter=x&$skip=1000").unwrap();
        assert_eq!(skip_of(&with_skip(&u, 2000)), 2000);
        assert_eq!(with_skip(&u, 5).query_pairs().filter(|(k, _)| k == "$skip").count(), 1);
    }
}
