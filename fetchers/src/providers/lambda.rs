//! Lambda Cloud: the instance-types API with a key, the public pricing page without one.
//!
//! ## API (key from `SKYCAT_LAMBDA_API_KEY` or `LAMBDA_API_KEY`)
//! `GET {endpoint}api/v1/instance-types` with `Authorization: Bearer <key>` (endpoint
//! `SKYCAT_LAMBDA_ENDPOINT`, default `https://cloud.lambda.ai/`). `data` is an object keyed by
//! instance-type name; each entry has `instance_type { name, description, gpu_description,
//! price_cents_per_hour, specs { vcpus, memory_gib, storage_gib, gpus } }` and
//! `regions_with_capacity_available[] { name, description }`. The price is integer US cents per
//! instance-hour (÷ 100). GPU model and count come from the instance-type name through the
//! catalog's registry (`gpu_8x_h100_sxm5` → 8 × H100), falling back to the description
//! (`"8x H100 (80 GB SXM5)"`); the count from `specs.gpus` wins when present. A 401 is an auth
//! error naming the key variables. A type whose GPU cannot be named is skipped and counted.
//!
//! ## Pricing page (no key)
//! `GET https://lambda.ai/instances` (or `{SKYCAT_LAMBDA_ENDPOINT}instances` when the endpoint is
//! set, or `SKYCAT_LAMBDA_PRICING_URL`). Lambda does not document the page; the parser relies on
//! this structure, and fails with an error naming the missing piece when it is not found —
//! never returning an empty list:
//!
//! - one or more `<table>` elements; a pricing table is one whose header cells (`<th>` of its
//!   first row, or of `<thead>`) include a GPU column (text containing `GPU` but not `VRAM`
//!   and not `price`) and a price column (text containing `price`);
//! - its header also has a `vCPU` column and a `RAM` column (text `RAM` but not `VRAM`);
//!   `VRAM` (per GPU) is optional;
//! - each body row (`<tr>` with `<td>` cells) has, in the GPU column, `"<N>x <model>"` (e.g.
//!   `8x NVIDIA H100 SXM`), and in the price column a dollar amount per **GPU**-hour (e.g.
//!   `$3.99 / GPU / hr`); vCPUs and RAM are numbers with optional units (`208`, `1800 GiB`).
//!
//! Rows without an `<N>x` count (CPU instances, "contact sales") are skipped and counted. The
//! instance price is the per-GPU price × N. The instance name is derived as
//! `gpu_<N>x_<model>` (lower case, vendor word dropped, spaces → `_`), which can differ from the
//! API's name (`gpu_8x_h100_sxm` vs `gpu_8x_h100_sxm5`); a note says so.
//!
//! ## Regions
//! Prices do not vary by region. The region universe is [`KNOWN_REGIONS`] plus any region the
//! API reports capacity in; every type is offered in every region (capacity changes by the
//! minute, the catalog records prices).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use scraper::{ElementRef, Html, Selector};
use serde::Deserialize;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "lambda";
pub(crate) const DEFAULT_ENDPOINT: &str = "https://cloud.lambda.ai/";
const DEFAULT_PRICING_PAGE: &str = "https://lambda.ai/instances";

/// Lambda's regions as published in SkyPilot's catalog (`reference-prices/lambda.csv`).
pub const KNOWN_REGIONS: &[&str] = &[
    "asia-northeast-1", "asia-northeast-2", "asia-south-1", "australia-east-1", "europe-central-1",
    "europe-south-1", "me-west-1", "us-east-1", "us-east-2", "us-east-3", "us-midwest-1",
    "us-south-1", "us-south-2", "us-south-3", "us-west-1", "us-west-2", "us-west-3",
];

const DEFAULT_REGIONS: &[&str] = &["us-east-1", "us-west-1", "us-west-2", "us-south-1", "europe-central-1"];

#[derive(Debug, Default)]
pub struct Lambda;

/// One instance type, whichever source described it.
#[derive(Debug, Clone)]
struct TypeInfo {
    name: String,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
    accel: Option<(AcceleratorInfo, f64)>,
    arch: String,
    price: f64,
    breakdown: Option<String>,
}

#[derive(Debug)]
struct LambdaCatalog {
    types: Vec<TypeInfo>,
    regions: BTreeSet<String>,
    source: String,
}

// ---- API

#[derive(Deserialize)]
struct ApiResponse {
    data: BTreeMap<String, ApiEntry>,
}

#[derive(Deserialize)]
struct ApiEntry {
    instance_type: ApiType,
    #[serde(default)]
    regions_with_capacity_available: Vec<ApiRegion>,
}

#[derive(Deserialize)]
struct ApiType {
    name: String,
    #[serde(default)]
    description: String,
    price_cents_per_hour: f64,
    specs: ApiSpecs,
    #[serde(default)]
    architecture: Option<String>,
}

#[derive(Deserialize)]
struct ApiSpecs {
    vcpus: f64,
    memory_gib: f64,
    #[serde(default)]
    gpus: Option<f64>,
}

#[derive(Deserialize)]
struct ApiRegion {
    name: String,
}

fn api_key(cx: &FetchContext) -> Option<String> {
    cx.env("SKYCAT_LAMBDA_API_KEY").or_else(|| cx.env("LAMBDA_API_KEY")).map(str::to_string)
}

/// `"8x H100 (80 GB SXM5)"` / `"1x A10 (24 GB PCIe)"` → ("H100", Some(80)).
fn parse_description(desc: &str) -> Option<(f64, String, Option<f64>)> {
    let (count, rest) = desc.trim().split_once("x ")?;
    let count: f64 = count.trim().parse().ok()?;
    let (model, mem) = match rest.split_once('(') {
        Some((m, inner)) => {
            let mem = inner.split_whitespace().next().and_then(|t| t.parse::<f64>().ok());
            (m.trim().to_string(), mem)
        }
        None => (rest.trim().to_string(), None),
    };
    Some((count, model, mem))
}

fn arch_for(name: &str, given: Option<&str>) -> String {
    match given.map(|a| a.to_ascii_lowercase()) {
        Some(a) if a == "arm64" || a == "aarch64" => "arm64".into(),
        Some(_) => "x86_64".into(),
        None if name.contains("gh200") => "arm64".into(),
        None => "x86_64".into(),
    }
}

async fn fetch_api(cx: &FetchContext, key: &str) -> Result<LambdaCatalog, FetchError> {
    let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
    let url = base
        .join("api/v1/instance-types")
        .map_err(|e| FetchError::Config(format!("lambda endpoint {base}: {e}")))?;
    let text = match cx.http.get_text(&url, &[("Authorization", format!("Bearer {key}"))]).await {
        Err(FetchError::Http { status: 401 | 403, body, .. }) => {
            return Err(FetchError::Auth {
                provider: CLOUD.into(),
                message: format!("the API refused the key from SKYCAT_LAMBDA_API_KEY/LAMBDA_API_KEY: {body}"),
            })
        }
        other => other?,
    };
    let resp: ApiResponse =
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("lambda instance-types {url}"), e))?;
    let mut types = Vec::new();
    let mut regions: BTreeSet<String> = KNOWN_REGIONS.iter().map(|s| s.to_string()).collect();
    for (key, entry) in resp.data {
        let t = entry.instance_type;
        let name = if t.name.is_empty() { key } else { t.name };
        regions.extend(entry.regions_with_capacity_available.into_iter().map(|r| r.name));
        let gpus = t.specs.gpus.unwrap_or(0.0);
        let accel = if gpus > 0.0 || name.starts_with("gpu_") {
            let from_name = accelerators::from_instance_type(CLOUD, &name);
            let from_desc = || {
                let (n, model, mem) = parse_description(&t.description)?;
                accelerators::canonicalize(&model, mem).map(|i| (i, n))
            };
            match from_name.or_else(from_desc) {
                Some((info, n)) => Some((info, if gpus > 0.0 { gpus } else { n })),
                None => {
                    cx.skip(CLOUD, "GPU model not understood", 1);
                    continue;
                }
            }
        } else {
            None
        };
        types.push(TypeInfo {
            arch: arch_for(&name, t.architecture.as_deref()),
            name,
            vcpus: Some(t.specs.vcpus),
            memory_gib: Some(t.specs.memory_gib),
            accel,
            price: t.price_cents_per_hour / 100.0,
            breakdown: None,
        });
    }
    Ok(LambdaCatalog { types, regions, source: url.to_string() })
}

// ---- Pricing page

fn page_url(cx: &FetchContext) -> Result<Url, FetchError> {
    if let Some(u) = cx.env("SKYCAT_LAMBDA_PRICING_URL") {
        return Url::parse(u).map_err(|e| FetchError::Config(format!("SKYCAT_LAMBDA_PRICING_URL={u}: {e}")));
    }
    if cx.env("SKYCAT_LAMBDA_ENDPOINT").is_some() {
        let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
        return base.join("instances").map_err(|e| FetchError::Config(format!("lambda endpoint {base}: {e}")));
    }
    Url::parse(DEFAULT_PRICING_PAGE).map_err(|e| FetchError::Config(e.to_string()))
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("static selector")
}

fn cell_text(e: &ElementRef) -> String {
    e.text().collect::<Vec<_>>().join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// First number in `s` (`"$3.99 / GPU / hr"` → 3.99, `"1,800 GiB"` → 1800).
fn first_number(s: &str) -> Option<f64> {
    let cleaned: String = s.replace(',', "");
    let start = cleaned.find(|c: char| c.is_ascii_digit())?;
    let num: String = cleaned[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    num.parse().ok()
}

#[derive(Default)]
struct Columns {
    gpu: Option<usize>,
    price: Option<usize>,
    vcpu: Option<usize>,
    ram: Option<usize>,
    vram: Option<usize>,
}

fn columns(headers: &[String]) -> Columns {
    let mut c = Columns::default();
    for (i, h) in headers.iter().enumerate() {
        let l = h.to_ascii_lowercase();
        if l.contains("price") {
            c.price.get_or_insert(i);
        } else if l.contains("vram") {
            c.vram.get_or_insert(i);
        } else if l.contains("vcpu") {
            c.vcpu.get_or_insert(i);
        } else if l.contains("gpu") {
            c.gpu.get_or_insert(i);
        } else if l.split(|ch: char| !ch.is_ascii_alphanumeric()).any(|w| w == "ram") {
            c.ram.get_or_insert(i);
        }
    }
    c
}

/// Parse the pricing page. Errors name the element that is missing.
fn parse_pricing_page(cx: &FetchContext, html: &str) -> Result<Vec<TypeInfo>, FetchError> {
    let what = "lambda pricing page";
    let doc = Html::parse_document(html);
    let tables: Vec<ElementRef> = doc.select(&sel("table")).collect();
    if tables.is_empty() {
        return Err(FetchError::malformed(what, "no <table> element (page structure changed?)"));
    }
    let tr = sel("tr");
    let th = sel("th");
    let td = sel("td");
    let mut found_table = false;
    let mut out = Vec::new();
    for table in tables {
        let rows: Vec<ElementRef> = table.select(&tr).collect();
        let Some(header_row) = rows.iter().find(|r| r.select(&th).next().is_some()) else {
            continue;
        };
        let headers: Vec<String> = header_row.select(&th).map(|h| cell_text(&h)).collect();
        let cols = columns(&headers);
        let (Some(gpu_col), Some(price_col)) = (cols.gpu, cols.price) else {
            continue;
        };
        found_table = true;
        let vcpu_col = cols
            .vcpu
            .ok_or_else(|| FetchError::malformed(what, format!("pricing table has no vCPU column (headers: {headers:?})")))?;
        let ram_col = cols
            .ram
            .ok_or_else(|| FetchError::malformed(what, format!("pricing table has no RAM column (headers: {headers:?})")))?;
        for row in rows.iter().filter(|r| r.select(&td).next().is_some()) {
            let cells: Vec<String> = row.select(&td).map(|c| cell_text(&c)).collect();
            let cell = |i: usize, name: &str| {
                cells.get(i).cloned().ok_or_else(|| {
                    FetchError::malformed(what, format!("row {:?} has no {name} cell (column {})", cells, i + 1))
                })
            };
            let gpu_text = cell(gpu_col, "GPU")?;
            let Some((count, model)) = gpu_text.split_once("x ").and_then(|(n, m)| {
                n.trim().parse::<f64>().ok().filter(|n| *n > 0.0).map(|n| (n, m.trim().to_string()))
            }) else {
                cx.skip(CLOUD, "pricing-page row without a GPU count", 1);
                continue;
            };
            let price_text = cell(price_col, "price")?;
            let per_gpu = first_number(&price_text).ok_or_else(|| {
                FetchError::malformed(what, format!("row {gpu_text:?}: price cell {price_text:?} has no dollar amount"))
            })?;
            let vcpus = first_number(&cell(vcpu_col, "vCPU")?)
                .ok_or_else(|| FetchError::malformed(what, format!("row {gpu_text:?}: vCPU cell has no number")))?;
            let ram = first_number(&cell(ram_col, "RAM")?)
                .ok_or_else(|| FetchError::malformed(what, format!("row {gpu_text:?}: RAM cell has no number")))?;
            let vram = cols.vram.and_then(|i| cells.get(i)).and_then(|s| first_number(s));
            // Form factors are not part of the canonical name (Lambda's H100 SXM is `H100`).
            let bare: Vec<&str> = model
                .split_whitespace()
                .filter(|w| !matches!(w.to_ascii_uppercase().as_str(), "SXM" | "SXM4" | "SXM5" | "SXM6" | "PCIE"))
                .collect();
            let mem_hint = vram.or_else(|| {
                let w: Vec<&str> = model.split_whitespace().collect();
                w.windows(2).find(|p| p[1].eq_ignore_ascii_case("GB")).and_then(|p| p[0].parse().ok())
            });
            let bare_model: Vec<&str> = bare.iter().copied().filter(|w| !w.eq_ignore_ascii_case("GB") && w.parse::<f64>().is_err()).collect();
            let Some(info) = accelerators::canonicalize(&bare_model.join(" "), mem_hint) else {
                cx.skip(CLOUD, "GPU model not understood", 1);
                continue;
            };
            let slug: String = model
                .to_ascii_lowercase()
                .replace("nvidia ", "")
                .replace("tesla ", "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("_");
            let name = format!("gpu_{}x_{slug}", count as u64);
            out.push(TypeInfo {
                arch: arch_for(&name, None),
                name,
                vcpus: Some(vcpus),
                memory_gib: Some(ram),
                accel: Some((info, count)),
                price: per_gpu * count,
                breakdown: Some(format!("pricing page: ${per_gpu} per GPU-hour x {count}")),
            });
        }
    }
    if !found_table {
        return Err(FetchError::malformed(what, "no <table> with a GPU column and a price column (page structure changed?)"));
    }
    if out.is_empty() {
        return Err(FetchError::malformed(what, "the pricing table has no GPU rows"));
    }
    Ok(out)
}

async fn fetch_page(cx: &FetchContext) -> Result<LambdaCatalog, FetchError> {
    let url = page_url(cx)?;
    let html = cx.http.get_text(&url, &[]).await?;
    let types = parse_pricing_page(cx, &html)?;
    Ok(LambdaCatalog { types, regions: KNOWN_REGIONS.iter().map(|s| s.to_string()).collect(), source: url.to_string() })
}

async fn catalog(cx: &FetchContext) -> Result<std::sync::Arc<LambdaCatalog>, FetchError> {
    cx.shared("lambda:instance-types", || async {
        match api_key(cx) {
            Some(k) => fetch_api(cx, &k).await,
            None => {
                cx.note(
                    CLOUD,
                    "no Lambda API key (SKYCAT_LAMBDA_API_KEY/LAMBDA_API_KEY): prices scraped from the public pricing page; instance names derived from it",
                );
                fetch_page(cx).await
            }
        }
    })
    .await
}

#[async_trait]
impl Provider for Lambda {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        Ok(catalog(cx).await?.regions.iter().cloned().collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let cat = catalog(cx).await?;
        let mut out = Vec::new();
        for t in &cat.types {
            let mut o = cx.offer(CLOUD, &t.name, region, &cat.source);
            o.vcpus = t.vcpus;
            o.memory_gib = t.memory_gib;
            o.arch = Some(t.arch.clone().into());
            if let Some((info, n)) = &t.accel {
                o.accelerator_name = Some(info.name.clone().into());
                o.accelerator_count = *n;
                o.accelerator_memory_gib = info.memory_gib;
                o.accelerator_vendor = Some(info.vendor.into());
            }
            o.price = Some(t.price);
            o.price_breakdown = t.breakdown.clone().map(Into::into);
            out.push(o);
        }
        out.sort_by(|a, b| a.instance_type.cmp(&b.instance_type));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        assert_eq!(parse_description("8x H100 (80 GB SXM5)"), Some((8.0, "H100".into(), Some(80.0))));
        assert_eq!(parse_description("1x A10 (24 GB PCIe)"), Some((1.0, "A10".into(), Some(24.0))));
        assert_eq!(parse_description("no gpu"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(first_number("$3.99 / GPU / hr"), Some(3.99));
        assert_eq!(first_number("1,800 GiB"), Some(1800.0));
        assert_eq!(first_number("contact sales"), None);
    }

    #[test]
    fn page_without_table_fails_loudly() {
        let cx = FetchContext::for_tests(&[]);
        let err = parse_pricing_page(&cx, "<html><body><div>GPU cloud</div></body></html>").unwrap_err();
        assert!(err.to_string().contains("no <table>"), "{err}");
        let html = "<table><tr><th>GPU</th><th>Price</th><th>RAM</th></tr><tr><td>1x A10</td><td>$0.75</td><td>200</td></tr></table>";
        let err = parse_pricing_page(&cx, html).unwrap_err();
        assert!(err.to_string().contains("no vCPU column"), "{err}");
    }
}
