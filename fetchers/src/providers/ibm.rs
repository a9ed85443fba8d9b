//! IBM Cloud VPC: instance profiles from the regional VPC API, on-demand prices from IBM's
//! Global Catalog. Wire shapes: /work/shared/api-formats/ibm-vpc.md (summarised here).
//!
//! ## Credentials
//! An IAM API key from `IBM_API_KEY`, else SkyPilot's `~/.ibm/credentials.yaml` (`iam_api_key`;
//! `~` is `$HOME` of the run's environment). It is exchanged once per run for a Bearer token:
//! `POST {SKYCAT_IBM_IAM_ENDPOINT|https://iam.cloud.ibm.com/}identity/token` with the form
//! `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>`. IAM answers a bad key with
//! 400 (`BXNIM0415E`); that, a 401/403, and a VPC 401 (expired token) are auth errors naming IBM.
//! Tokens live an hour; a run is shorter, so the token is not refreshed.
//!
//! ## Specs (VPC API, Bearer)
//! `SKYCAT_IBM_ENDPOINT` is the regional VPC base, a pattern in which `{region}` is replaced
//! (default `https://{region}.iaas.cloud.ibm.com/`; a base without `{region}` serves every
//! region). Every call carries `version=`[`VPC_API_VERSION`] and `generation=2`:
//! `v1/regions` (the region list, from `us-south`), `v1/regions/{region}/zones` and
//! `v1/instance/profiles` (none of them paged). Numeric profile fields are tagged by `type`;
//! only `fixed` values are read, so a profile with a ranged vCPU or memory count is skipped and
//! counted. s390x (LinuxONE) profiles are skipped and counted (the catalog knows x86_64/arm64).
//! GPUs: `gpu_model.values[0]` with `gpu_memory.value` through the accelerator registry, else
//! the profile name (`gx3d-160x1792x8h100`); count `gpu_count.value`.
//!
//! ## Prices (Global Catalog, no key)
//! `SKYCAT_IBM_CATALOG_ENDPOINT` (default `https://globalcatalog.cloud.ibm.com/`):
//! 1. `api/v1?q=is.instance&include=*&complete=true&_offset=&_limit=100`, following `next`:
//!    every `kind: "instance.profile"` entry names its multi-tenant plan and meters under
//!    `metadata.other.profile.measures[component=instance].deployments[type=multi-tenant]`.
//! 2. `api/v1/{plan}/pricing/deployment?offset=&limit=` (paged by `offset` up to `count`), once
//!    per plan per run: one `resources[]` entry per region (`deployment_region`).
//!
//! The on-demand Linux price of a profile in a region is the `amounts` row with country `USA`
//! and currency `USD` (no conversion: a region without that row is skipped and counted),
//! first tier of a linear/simple tier model, per instance-hour:
//! - flat (Gen3+): metric `part-is.instance-hours-<profile>`;
//! - composite (Gen2, shared plan): `VCPU_HOURS` × the VCPU meter + `MEMORY_HOURS` × the MEMORY
//!   meter (+ `<GPU_CARD>_HOURS` × the GPU meter; + `IS_STORAGE_GIGABYTE_HOURS` × the
//!   `IS_STORAGE` meter for profiles with instance storage, `…d-`). A missing part skips the
//!   profile with a counted reason.
//!
//! Profiles without such a price are skipped with a counted reason, never priced 0. Spot
//! (`part-is.spot-*`) is not read: SkyPilot does not launch IBM spot.
//!
//! ## Rows
//! One offer per **zone** (regional price copied to each available zone), because IBM
//! provisions into one zone at a time and SkyPilot's IBM catalog carries a zone column.
//! `source` is the plan's pricing URL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "ibm";
const DEFAULT_IAM: &str = "https://iam.cloud.ibm.com/";
const DEFAULT_VPC: &str = "https://{region}.iaas.cloud.ibm.com/";
const DEFAULT_CATALOG: &str = "https://globalcatalog.cloud.ibm.com/";
/// The VPC API version sent with every call: a fixed date keeps the response shape stable
/// (IBM accepts any date from its floor up to today).
pub const VPC_API_VERSION: &str = "2025-06-10";
/// Where the region list is read.
const HOME_REGION: &str = "us-south";
const SEARCH_PAGE: usize = 100;
const PRICING_PAGE: usize = 50;
/// Plans whose prices are fetched at once.
const PLAN_CONCURRENCY: usize = 8;
/// A runaway `next` chain stops here with an error rather than looping.
const MAX_PAGES: usize = 500;

/// SkyPilot's IBM regions (its `sky/clouds/ibm.py` region table).
pub const DEFAULT_REGIONS: &[&str] = &["us-south", "us-east", "eu-de", "eu-gb", "ca-tor", "jp-tok", "au-syd"];

#[derive(Debug, Default)]
pub struct Ibm;

// ---- Credentials and token

fn api_key(cx: &FetchContext) -> Result<String, FetchError> {
    if let Some(k) = cx.env("IBM_API_KEY") {
        return Ok(k.trim().to_string());
    }
    let missing = || FetchError::Auth {
        provider: CLOUD.into(),
        message: "no IBM API key: set IBM_API_KEY or iam_api_key in ~/.ibm/credentials.yaml".into(),
    };
    let Some(home) = cx.env("HOME") else { return Err(missing()) };
    let path = PathBuf::from(home).join(".ibm").join("credentials.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(FetchError::io(&path, e)),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| FetchError::io(&path, e))?;
    match doc.get("iam_api_key").and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty()) {
        Some(k) => Ok(k.to_string()),
        None => Err(FetchError::Auth { provider: CLOUD.into(), message: format!("{}: no iam_api_key", path.display()) }),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// IAM's error body: `{"errorCode": "BXNIM0415E", "errorMessage": "…"}`.
fn iam_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match (v["errorCode"].as_str(), v["errorMessage"].as_str()) {
        (Some(c), Some(m)) => format!("{c} {m}"),
        _ => body.chars().take(200).collect(),
    }
}

async fn token(cx: &FetchContext) -> Result<Arc<String>, FetchError> {
    cx.shared("ibm:iam-token", || async {
        let key = api_key(cx)?;
        let base = cx.endpoint("ibm_iam", DEFAULT_IAM)?;
        let url = base.join("identity/token").map_err(|e| FetchError::Config(format!("ibm IAM endpoint {base}: {e}")))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ibm:params:oauth:grant-type:apikey")
            .append_pair("apikey", &key)
            .finish();
        let sent = cx
            .http
            .send(
                reqwest::Method::POST,
                &url,
                &[("Accept", "application/json".to_string())],
                Some(("application/x-www-form-urlencoded", form.into_bytes())),
            )
            .await;
        let resp = match sent {
            Err(FetchError::Http { status: 400 | 401 | 403, body, .. }) => {
                return Err(FetchError::Auth {
                    provider: CLOUD.into(),
                    message: format!("IAM refused the API key: {}", iam_error(&body)),
                })
            }
            other => other?,
        };
        let text = resp.text().await.map_err(|e| FetchError::Transport { url: url.to_string(), message: e.to_string() })?;
        let t: TokenResponse = serde_json::from_str(&text).map_err(|e| FetchError::malformed("ibm IAM token response", e))?;
        Ok(t.access_token)
    })
    .await
}

// ---- VPC API

fn vpc_base(cx: &FetchContext, region: &str) -> Result<Url, FetchError> {
    let raw = cx.env("SKYCAT_IBM_ENDPOINT").unwrap_or(DEFAULT_VPC);
    let mut s = raw.trim().replace("{region}", region);
    if !s.ends_with('/') {
        s.push('/');
    }
    Url::parse(&s).map_err(|e| FetchError::Config(format!("SKYCAT_IBM_ENDPOINT={raw}: {e}")))
}

/// GET a VPC collection with the version, generation and Bearer every call needs.
async fn vpc_get(cx: &FetchContext, region: &str, path: &str) -> Result<Value, FetchError> {
    let bearer = token(cx).await?;
    let base = vpc_base(cx, region)?;
    let mut url = base.join(path).map_err(|e| FetchError::Config(format!("ibm VPC endpoint {base}: {e}")))?;
    url.query_pairs_mut().append_pair("version", VPC_API_VERSION).append_pair("generation", "2");
    match cx.http.get_json::<Value>(&url, &[("Authorization", format!("Bearer {bearer}"))]).await {
        Err(FetchError::Http { status: 401 | 403, body, .. }) => Err(FetchError::Auth {
            provider: CLOUD.into(),
            message: format!("the VPC API refused the IAM token ({region}): {}", vpc_error(&body)),
        }),
        other => other,
    }
}

/// The VPC error body: `{"errors": [{"code", "message", …}], "trace"}`.
fn vpc_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v["errors"].get(0) {
        Some(e) => format!("{} {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")),
        None => body.chars().take(200).collect(),
    }
}

/// Names of the `available` entries of `list` (regions, zones).
fn available_names(v: &Value, list: &str, what: &str) -> Result<Vec<String>, FetchError> {
    let arr = v[list].as_array().ok_or_else(|| FetchError::malformed(what, format!("no `{list}` array")))?;
    let mut out = Vec::new();
    for e in arr {
        let name = e["name"].as_str().ok_or_else(|| FetchError::malformed(what, "an entry without `name`"))?;
        if e["status"].as_str().is_none_or(|s| s == "available") {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A VPC `fixed` numeric field's value; `None` for absent, `range`, `enum` or `dependent`.
fn fixed(v: &Value) -> Option<f64> {
    if v["type"].as_str() == Some("fixed") {
        v["value"].as_f64()
    } else {
        None
    }
}

struct Profile {
    name: String,
    vcpus: f64,
    memory_gib: f64,
    arch: &'static str,
    accel: Option<(AcceleratorInfo, f64)>,
}

/// Profiles the catalog can hold; the others are counted by reason.
fn parse_profiles(cx: &FetchContext, v: &Value, what: &str) -> Result<Vec<Profile>, FetchError> {
    let arr = v["profiles"].as_array().ok_or_else(|| FetchError::malformed(what, "no `profiles` array"))?;
    let mut out = Vec::new();
    for p in arr {
        let name = p["name"].as_str().ok_or_else(|| FetchError::malformed(what, "a profile without `name`"))?;
        let arch = match p["vcpu_architecture"]["value"].as_str() {
            Some("amd64") => "x86_64",
            Some("arm64") => "arm64",
            Some(_) => {
                cx.skip(CLOUD, "profile architecture other than amd64/arm64 (s390x)", 1);
                continue;
            }
            None => return Err(FetchError::malformed(what, format!("profile {name}: no vcpu_architecture.value"))),
        };
        let (Some(vcpus), Some(memory_gib)) = (fixed(&p["vcpu_count"]), fixed(&p["memory"])) else {
            cx.skip(CLOUD, "profile vCPU or memory not fixed", 1);
            continue;
        };
        let gpus = fixed(&p["gpu_count"]).unwrap_or(0.0);
        let accel = if gpus > 0.0 {
            let model = p["gpu_model"]["values"].get(0).and_then(|m| m.as_str()).unwrap_or("");
            let from_api = accelerators::canonicalize(model, fixed(&p["gpu_memory"]));
            match from_api.or_else(|| accelerators::from_instance_type(CLOUD, name).map(|(i, _)| i)) {
                Some(info) => Some((info, gpus)),
                None => {
                    cx.skip(CLOUD, "GPU model not understood", 1);
                    continue;
                }
            }
        } else {
            None
        };
        out.push(Profile { name: name.to_string(), vcpus, memory_gib, arch, accel });
    }
    Ok(out)
}

// ---- Global Catalog

/// A profile's multi-tenant plan and its meter quantities (`VCPU`, `MEMORY`, `GPU`, `GPU_CARD`).
#[derive(Debug, Clone)]
struct PlanRef {
    plan: String,
    meters: HashMap<String, String>,
}

fn catalog_base(cx: &FetchContext) -> Result<Url, FetchError> {
    cx.endpoint("ibm_catalog", DEFAULT_CATALOG)
}

fn plan_of(entry: &Value) -> Option<PlanRef> {
    let measures = entry["metadata"]["other"]["profile"]["measures"].as_array()?;
    let instance = measures.iter().find(|m| m["component"].as_str() == Some("instance"))?;
    let dep = instance["deployments"].as_array()?.iter().find(|d| d["type"].as_str() == Some("multi-tenant"))?;
    let meters = dep["meters"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| Some((m["unit"].as_str()?.to_string(), m["quantity"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(PlanRef { plan: dep["plan"].as_str()?.to_string(), meters })
}

/// Every instance profile in the Global Catalog → its plan. Once per run.
async fn profile_plans(cx: &FetchContext) -> Result<Arc<HashMap<String, PlanRef>>, FetchError> {
    cx.shared("ibm:catalog-profiles", || async {
        let base = catalog_base(cx)?;
        let mut url = base.join("api/v1").map_err(|e| FetchError::Config(format!("ibm catalog endpoint {base}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("q", "is.instance")
            .append_pair("include", "*")
            .append_pair("complete", "true")
            .append_pair("_offset", "0")
            .append_pair("_limit", &SEARCH_PAGE.to_string());
        let mut out = HashMap::new();
        for _ in 0..MAX_PAGES {
            let page: Value = cx.http.get_json(&url, &[]).await?;
            let what = format!("ibm Global Catalog search {url}");
            let resources =
                page["resources"].as_array().ok_or_else(|| FetchError::malformed(&what, "no `resources` array"))?;
            for e in resources {
                if e["kind"].as_str() != Some("instance.profile") {
                    continue;
                }
                let Some(name) = e["name"].as_str() else { continue };
                match plan_of(e) {
                    Some(p) => {
                        out.insert(name.to_string(), p);
                    }
                    None => cx.skip(CLOUD, "catalog profile without a multi-tenant plan", 1),
                }
            }
            match page["next"].as_str().filter(|s| !s.is_empty()) {
                Some(next) if !resources.is_empty() => url = cx.resolve_link(&base, next)?,
                _ => return Ok(out),
            }
        }
        Err(FetchError::malformed("ibm Global Catalog search", format!("more than {MAX_PAGES} pages")))
    })
    .await
}

/// One region's price metrics of a plan: `metric_id` and `charge_unit_name` → USD rate.
#[derive(Debug, Default)]
struct RegionRates {
    by_metric: HashMap<String, f64>,
    by_unit: HashMap<String, f64>,
}

/// USD per unit from one metric: the `USA`/`USD` amount, first tier of a linear/simple model.
fn usd_rate(metric: &Value) -> Option<f64> {
    let model: String =
        metric["tier_model"].as_str().unwrap_or("linear").chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let model = model.to_ascii_lowercase();
    if !(model.starts_with("linear") || model.starts_with("simple")) {
        return None;
    }
    let amount = metric["amounts"]
        .as_array()?
        .iter()
        .find(|a| a["country"].as_str() == Some("USA") && a["currency"].as_str() == Some("USD"))?;
    let price = amount["prices"].get(0)?["price"].as_f64()?;
    let per = metric["charge_unit_quantity"].as_f64().filter(|q| *q > 0.0).unwrap_or(1.0);
    Some(price / per)
}

struct PlanPrices {
    source: String,
    regions: HashMap<String, RegionRates>,
}

/// A plan's per-region prices, paged by `offset`. Once per plan per run.
async fn plan_prices(cx: &FetchContext, plan: &str) -> Result<Arc<PlanPrices>, FetchError> {
    let plan = plan.to_string();
    cx.shared(&format!("ibm:plan:{plan}"), || async move {
        let base = catalog_base(cx)?;
        let url = base
            .join(&format!("api/v1/{plan}/pricing/deployment"))
            .map_err(|e| FetchError::Config(format!("ibm catalog endpoint {base}: {e}")))?;
        let mut regions: HashMap<String, RegionRates> = HashMap::new();
        let mut offset = 0usize;
        for _ in 0..MAX_PAGES {
            let mut page_url = url.clone();
            page_url.query_pairs_mut().append_pair("offset", &offset.to_string()).append_pair("limit", &PRICING_PAGE.to_string());
            let page: Value = cx.http.get_json(&page_url, &[]).await?;
            let what = format!("ibm Global Catalog pricing {page_url}");
            let resources =
                page["resources"].as_array().ok_or_else(|| FetchError::malformed(&what, "no `resources` array"))?;
            for r in resources {
                let Some(region) = r["deployment_region"].as_str() else {
                    return Err(FetchError::malformed(&what, "a resource without deployment_region"));
                };
                if r["deployment_location_no_price_available"].as_bool() == Some(true) {
                    continue;
                }
                let rates = regions.entry(region.to_string()).or_default();
                for m in r["metrics"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let Some(rate) = usd_rate(m) else { continue };
                    if let Some(id) = m["metric_id"].as_str() {
                        rates.by_metric.insert(id.to_string(), rate);
                    }
                    if let Some(unit) = m["charge_unit_name"].as_str() {
                        rates.by_unit.insert(unit.to_string(), rate);
                    }
                }
            }
            offset += resources.len();
            let count = page["count"].as_u64().map(|c| c as usize).unwrap_or(offset);
            if resources.is_empty() || offset >= count {
                return Ok(PlanPrices { source: url.to_string(), regions });
            }
        }
        Err(FetchError::malformed(format!("ibm Global Catalog pricing {url}"), format!("more than {MAX_PAGES} pages")))
    })
    .await
}

/// Gen2 profiles with instance storage: `bx2d-…`, `gx2d-…` (family, generation, then `d`).
fn has_instance_storage(profile: &str) -> bool {
    profile.split('-').next().is_some_and(|f| f.ends_with('d'))
}

/// The on-demand price of `profile` from its region's rates, or the reason there is none.
fn price_of(profile: &str, plan: &PlanRef, rates: &RegionRates) -> Result<(f64, String), &'static str> {
    // A zero is a meter billed elsewhere (dedicated host), never a free instance.
    if let Some(p) = rates.by_metric.get(&format!("part-is.instance-hours-{profile}")).filter(|p| **p > 0.0) {
        return Ok((*p, format!("part-is.instance-hours-{profile}")));
    }
    let (Some(vcpu), Some(mem)) = (rates.by_unit.get("VCPU_HOURS"), rates.by_unit.get("MEMORY_HOURS")) else {
        return Err("no instance-hour price in the region");
    };
    let qty = |unit: &str| plan.meters.get(unit).and_then(|q| q.trim().parse::<f64>().ok());
    let (Some(nv), Some(nm)) = (qty("VCPU"), qty("MEMORY")) else {
        return Err("composite price without VCPU/MEMORY meters");
    };
    let mut total = vcpu * nv + mem * nm;
    let mut how = format!("composite: {vcpu} x {nv} vCPU + {mem} x {nm} GiB");
    if let Some(ng) = qty("GPU").filter(|n| *n > 0.0) {
        let card = plan.meters.get("GPU_CARD").map(|c| c.trim().to_ascii_uppercase()).unwrap_or_default();
        let Some(g) = rates.by_unit.get(&format!("{card}_HOURS")) else {
            return Err("composite price without a GPU rate");
        };
        total += g * ng;
        how.push_str(&format!(" + {g} x {ng} {card}"));
    }
    if has_instance_storage(profile) {
        let (Some(gb), Some(rate)) = (qty("IS_STORAGE"), rates.by_unit.get("IS_STORAGE_GIGABYTE_HOURS")) else {
            return Err("composite price with instance storage but no storage meter or rate");
        };
        total += rate * gb;
        how.push_str(&format!(" + {rate} x {gb} GB instance storage"));
    }
    Ok((total, how))
}

#[async_trait]
impl Provider for Ibm {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        let v = vpc_get(cx, HOME_REGION, "v1/regions").await?;
        available_names(&v, "regions", "ibm VPC regions")
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let zones_v = vpc_get(cx, region, &format!("v1/regions/{region}/zones")).await?;
        let zones = available_names(&zones_v, "zones", &format!("ibm VPC zones of {region}"))?;
        if zones.is_empty() {
            return Err(FetchError::api(CLOUD, format!("region {region} has no available zone")));
        }
        let profiles_v = vpc_get(cx, region, "v1/instance/profiles").await?;
        let profiles = parse_profiles(cx, &profiles_v, &format!("ibm VPC instance profiles of {region}"))?;
        let plans = profile_plans(cx).await?;
        // Each plan's prices once per run, a few at a time (Gen3 profiles have a plan each).
        let mut wanted: Vec<String> = profiles.iter().filter_map(|p| plans.get(&p.name)).map(|r| r.plan.clone()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(PLAN_CONCURRENCY) {
            let fetched = futures::future::join_all(chunk.iter().map(|id| plan_prices(cx, id))).await;
            fetched.into_iter().collect::<Result<Vec<_>, _>>()?;
        }
        let mut out = Vec::new();
        for p in &profiles {
            let Some(plan) = plans.get(&p.name) else {
                cx.skip(CLOUD, "profile not in the Global Catalog", 1);
                continue;
            };
            let prices = plan_prices(cx, &plan.plan).await?;
            let priced = match prices.regions.get(region) {
                Some(rates) => price_of(&p.name, plan, rates),
                None => Err("plan has no USD price in the region"),
            };
            let (price, how) = match priced {
                Ok(v) => v,
                Err(reason) => {
                    cx.skip(CLOUD, reason, 1);
                    continue;
                }
            };
            for zone in &zones {
                let mut o = cx.offer(CLOUD, &p.name, region, &prices.source);
                o.zone = Some(zone.clone().into());
                o.vcpus = Some(p.vcpus);
                o.memory_gib = Some(p.memory_gib);
                o.arch = Some(p.arch.to_string().into());
                if let Some((info, n)) = &p.accel {
                    o.accelerator_name = Some(info.name.clone().into());
                    o.accelerator_count = *n;
                    o.accelerator_memory_gib = info.memory_gib;
                    o.accelerator_vendor = Some(info.vendor.into());
                }
                o.price = Some(price);
                o.price_breakdown = how.starts_with("composite").then(|| how.as_str().into());
                out.push(o);
            }
        }
        cx.set_source(
            CLOUD,
            format!("IBM Cloud VPC API (version {VPC_API_VERSION}) + Global Catalog pricing"),
            cx.fetched_at.format("%Y-%m-%d").to_string(),
        );
        out.sort_by(|a, b| (&a.instance_type, &a.zone).cmp(&(&b.instance_type, &b.zone)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(metrics: &[(&str, &str, f64)]) -> RegionRates {
        let mut r = RegionRates::default();
        for (id, unit, p) in metrics {
            r.by_metric.insert(id.to_string(), *p);
            r.by_unit.insert(unit.to_string(), *p);
        }
        r
    }

    fn plan(meters: &[(&str, &str)]) -> PlanRef {
        PlanRef { plan: "p".into(), meters: meters.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() }
    }

    #[test]
    fn flat_price_wins_then_composite() {
        let r = rates(&[("part-is.instance-hours-gx3-16x80x1l4", "INSTANCE_HOURS_MULTI_TENANT", 3.0)]);
        assert_eq!(price_of("gx3-16x80x1l4", &plan(&[]), &r).unwrap().0, 3.0);
        assert_eq!(price_of("gx3-32x160x2l4", &plan(&[]), &r), Err("no instance-hour price in the region"));

        let r = rates(&[
            ("part-is.vcpu", "VCPU_HOURS", 0.04),
            ("part-is.memory", "MEMORY_HOURS", 0.005),
            ("part-is.v100", "V100_HOURS", 2.0),
        ]);
        let p = plan(&[("VCPU", "8"), ("MEMORY", "64"), ("GPU", "1"), ("GPU_CARD", "V100")]);
        let (price, how) = price_of("gx2-8x64x1v100", &p, &r).unwrap();
        assert!((price - (0.32 + 0.32 + 2.0)).abs() < 1e-9, "{price}");
        assert!(how.contains("V100"), "{how}");
        assert!(price_of("bx2d-8x32", &plan(&[("VCPU", "8"), ("MEMORY", "32"), ("IS_STORAGE", "300")]), &r).is_err());
        let mut with_storage = rates(&[("part-is.vcpu", "VCPU_HOURS", 0.04), ("part-is.memory", "MEMORY_HOURS", 0.005)]);
        with_storage.by_unit.insert("IS_STORAGE_GIGABYTE_HOURS".into(), 0.0001);
        let (price, _) =
            price_of("bx2d-8x32", &plan(&[("VCPU", "8"), ("MEMORY", "32"), ("IS_STORAGE", "300")]), &with_storage).unwrap();
        assert!((price - (0.32 + 0.16 + 0.03)).abs() < 1e-9, "{price}");
        let zero = rates(&[("part-is.instance-hours-bx3d-2x10", "INSTANCE_HOURS_MULTI_TENANT", 0.0)]);
        assert!(price_of("bx3d-2x10", &plan(&[]), &zero).is_err(), "a zero rate is no price");
        let p = plan(&[("VCPU", "8"), ("MEMORY", "64"), ("GPU", "1"), ("GPU_CARD", "A100")]);
        assert_eq!(price_of("gx2-8x64x1a100", &p, &r), Err("composite price without a GPU rate"));
    }

    #[test]
    fn usd_rate_reads_first_linear_tier_only() {
        let m: Value = serde_json::from_str(
            r#"{"tier_model": "Linear Tier", "charge_unit_quantity": 1, "amounts": [
                {"country": "DEU", "currency": "EUR", "prices": [{"quantity_tier": 1, "price": 9}]},
                {"country": "USA", "currency": "USD", "prices": [{"quantity_tier": 1, "price": 1.25}]}]}"#,
        )
        .unwrap();
        assert_eq!(usd_rate(&m), Some(1.25));
        let mut block = m.clone();
        block["tier_model"] = "Block Tier".into();
        assert_eq!(usd_rate(&block), None);
        let mut simple = m.clone();
        simple["tier_model"] = "simple_tier".into();
        assert_eq!(usd_rate(&simple), Some(1.25));
        let mut eur = m;
        eur["amounts"].as_array_mut().unwrap().remove(1);
        assert_eq!(usd_rate(&eur), None);
    }

    #[test]
    fn tagged_numbers() {
        let v: Value = serde_json::from_str(r#"{"type": "range", "min": 1, "max": 4}"#).unwrap();
        assert_eq!(fixed(&v), None);
        let v: Value = serde_json::from_str(r#"{"type": "fixed", "value": 16}"#).unwrap();
        assert_eq!(fixed(&v), Some(16.0));
        assert!(has_instance_storage("bx2d-8x32") && has_instance_storage("gx3d-160x1792x8h100"));
        assert!(!has_instance_storage("bx2-8x32"));
    }
}
