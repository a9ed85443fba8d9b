//! AWS: on-demand prices from the public bulk offer files (or the signed Pricing API), specs,
//! GPU models, per-zone availability and spot prices from the signed EC2 API.
//!
//! Sources, per region:
//! - on-demand: `$SKYCAT_AWS_OFFER_URL/offers/v1.0/aws/AmazonEC2/current/<region>/index.csv`
//!   (default base `https://pricing.us-east-1.amazonaws.com`), streamed to a temp file and
//!   parsed with polars (see [`bulk`]); regions from `.../current/region_index.json`.
//!   With `AwsOnDemandSource::PricingApi`: `GetProducts` (see [`pricing`]).
//! - with credentials (standard chain): DescribeInstanceTypes (vCPU, memory, arch, GPU model
//!   and memory), DescribeAvailabilityZones + DescribeInstanceTypeOfferings (one offer per zone
//!   where the type is offered), DescribeSpotPriceHistory (latest Linux/UNIX price per zone).
//!   `Offer::zone` is the zone ID (`use1-az1`), stable across accounts unlike zone names, as in
//!   SkyPilot's AWS catalog.
//! - without credentials: a note says the signed calls were skipped; offers are per region
//!   (zone = None), specs from the bulk file, GPU model from a static family table, spot prices
//!   from the public spot price feed (regional Linux prices, see [`spot_feeds`]; a failed or
//!   malformed feed fails the region like any other source).
//! - either way, every spot-priced offer gets its type's Spot Instance Advisor interruption
//!   bucket in the region (`Offer::spot_interruption`, [`spot_feeds::interruption_buckets`]);
//!   a failed or malformed advisor document fails the region, as the spot feed does.
//!
//! Opt-in regions the account has not enabled (AuthFailure, OptInRequired, UnauthorizedOperation)
//! fall back to the public data with a note; other EC2 failures fail the region.

pub mod bulk;
pub mod ec2;
pub mod gpus;
pub mod pricing;
pub mod spot_feeds;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use skycat_catalog::{Offer, SpotInterruption};
use url::Url;

use crate::error::FetchError;
use crate::provider::{AwsOnDemandSource, FetchContext, Provider};
use bulk::BulkRow;
use ec2::{Ec2Region, Signed};

pub const DEFAULT_OFFER_URL: &str = "https://pricing.us-east-1.amazonaws.com";
const EC2_PATH: &str = "offers/v1.0/aws/AmazonEC2/current/";

/// SkyPilot's popular set: the US, Canada, western Europe, Tokyo, Singapore, Mumbai.
pub const DEFAULT_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "ap-northeast-1",
    "ap-southeast-1",
    "ap-south-1",
];

#[derive(Default)]
pub struct Aws;

/// The bulk offer base URL (`SKYCAT_AWS_OFFER_URL`), with a trailing slash.
pub fn offer_base(cx: &FetchContext) -> Result<Url, FetchError> {
    let raw = cx.env("SKYCAT_AWS_OFFER_URL").unwrap_or(DEFAULT_OFFER_URL);
    let mut s = raw.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    let base = Url::parse(&s).map_err(|e| FetchError::Config(format!("SKYCAT_AWS_OFFER_URL={raw}: {e}")))?;
    base.join(EC2_PATH).map_err(|e| FetchError::Config(format!("SKYCAT_AWS_OFFER_URL={raw}: {e}")))
}

struct OnDemand {
    rows: Vec<BulkRow>,
    source: String,
}

async fn bulk_ondemand(cx: &FetchContext, region: &str) -> Result<OnDemand, FetchError> {
    let url = offer_base(cx)?
        .join(&format!("{region}/index.csv"))
        .map_err(|e| FetchError::Config(format!("offer URL for {region}: {e}")))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("skycat-aws-{region}-"))
        .suffix(".csv")
        .tempfile()
        .map_err(|e| FetchError::io(std::env::temp_dir(), e))?;
    let path = tmp.path().to_path_buf();
    cx.http.download_to_file(&url, &path).await?;
    let what = url.to_string();
    let reg = region.to_string();
    let parsed = tokio::task::spawn_blocking(move || {
        let r = bulk::parse_offer_csv(&path, &reg, &what);
        drop(tmp);
        r
    })
    .await
    .map_err(|e| FetchError::api("aws", format!("{region}: parser task: {e}")))??;
    for (reason, n) in &parsed.skipped {
        cx.skip("aws", reason, *n);
    }
    let version = parsed.version.clone().unwrap_or_else(|| "unknown".into());
    let base = offer_base(cx)?;
    cx.set_source(
        "aws",
        format!("{base}<region>/index.csv (AWS bulk offer files, version {version})"),
        parsed.publication_date.clone().unwrap_or(version.clone()),
    );
    Ok(OnDemand { rows: parsed.rows, source: format!("{url}#version={version}") })
}

async fn api_ondemand(cx: &FetchContext, signed: &Signed, region: &str) -> Result<OnDemand, FetchError> {
    let Signed::Yes(conf) = signed else {
        let why = match signed {
            Signed::No(w) => w.clone(),
            Signed::Yes(_) => String::new(),
        };
        return Err(FetchError::Auth {
            provider: "aws".into(),
            message: format!("the Pricing API source needs credentials: {why}"),
        });
    };
    let client = ec2::pricing_client(cx, conf);
    let mut skipped = BTreeMap::new();
    let rows = pricing::get_products(&client, region, &mut skipped).await?;
    for (reason, n) in skipped {
        cx.skip("aws", reason, n);
    }
    cx.set_source("aws", "AWS Price List Query API GetProducts (AmazonEC2)", cx.fetched_at.to_rfc3339());
    Ok(OnDemand { rows, source: format!("pricing:GetProducts regionCode={region}") })
}

fn arch_from_processor(p: Option<&str>) -> Option<String> {
    let p = p?;
    Some(if p.contains("Graviton") { "arm64".into() } else { "x86_64".into() })
}

/// Join on-demand rows with the EC2 data (when present) into offers.
fn build_offers(cx: &FetchContext, region: &str, od: OnDemand, ec2: Option<&Ec2Region>) -> Vec<Offer> {
    // One row per type: the lowest price (a file may list a type twice, e.g. bare metal).
    let mut by_type: BTreeMap<String, BulkRow> = BTreeMap::new();
    for r in od.rows {
        match by_type.get(&r.instance_type) {
            Some(old) if old.price <= r.price => {}
            _ => {
                by_type.insert(r.instance_type.clone(), r);
            }
        }
    }
    let mut out = Vec::new();
    let spot_source = "ec2:DescribeSpotPriceHistory";
    let mut not_offered = 0u64;
    let mut spot_only: HashMap<&str, ()> = HashMap::new();
    if let Some(e) = ec2 {
        for (t, _) in e.spot.keys() {
            if !by_type.contains_key(t) && e.types.contains_key(t) {
                spot_only.insert(t.as_str(), ());
            }
        }
    }
    let mut types: Vec<(String, Option<BulkRow>)> = by_type.into_iter().map(|(t, r)| (t, Some(r))).collect();
    types.extend(spot_only.keys().map(|t| (t.to_string(), None)));
    types.sort_by(|a, b| a.0.cmp(&b.0));
    for (t, row) in types {
        let spec = ec2.and_then(|e| e.types.get(&t));
        let mut base = cx.offer("aws", &t, region, row.as_ref().map(|_| od.source.as_str()).unwrap_or(spot_source));
        base.price = row.as_ref().map(|r| r.price);
        base.vcpus = spec.and_then(|s| s.vcpus).or(row.as_ref().and_then(|r| r.vcpus));
        base.memory_gib = spec.and_then(|s| s.memory_gib).or(row.as_ref().and_then(|r| r.memory_gib));
        base.arch = spec
            .and_then(|s| s.arch.clone())
            .or_else(|| arch_from_processor(row.as_ref().and_then(|r| r.physical_processor.as_deref()))).map(Into::into);
        let accel = match spec.and_then(|s| s.accelerator.as_ref()) {
            Some((name, manu, count, mem)) if *count > 0.0 => {
                gpus::from_api(&t, name, manu.as_deref(), *mem).map(|i| (i, *count))
            }
            _ if spec.is_some() => None,
            _ => gpus::from_table(&t, row.as_ref().and_then(|r| r.gpu_count)),
        };
        // g6f / gr6f: fractional L4 (the bulk GPU column carries the fraction).
        let accel = accel.map(|(i, c)| {
            let fam = gpus::family(&t);
            if matches!(fam, "g6f" | "gr6f") {
                let frac = row.as_ref().and_then(|r| r.gpu_count).unwrap_or(c);
                (i, frac)
            } else {
                (i, c)
            }
        });
        if let Some((info, count)) = accel {
            base.accelerator_name = Some(info.name.clone().into());
            base.accelerator_count = count;
            base.accelerator_memory_gib = info.memory_gib;
            base.accelerator_vendor = Some(info.vendor.into());
        } else if row.as_ref().and_then(|r| r.gpu_count).is_some() {
            cx.note("aws", format!("{t}: GPU count without a known GPU model; listed without accelerator"));
        }
        match ec2 {
            Some(e) => {
                let Some(zones) = e.zones_by_type.get(&t) else {
                    not_offered += 1;
                    continue;
                };
                for z in zones {
                    let mut o = base.clone();
                    o.zone = Some(z.clone().into());
                    o.spot_price = e.spot.get(&(t.clone(), z.clone())).copied();
                    if o.spot_price.is_some() && o.price.is_some() {
                        o.source = format!("{} + {spot_source}", o.source).into();
                    }
                    out.push(o);
                }
            }
            None => out.push(base),
        }
    }
    cx.skip("aws", "aws: priced but not offered in any zone of the region", not_offered);
    out
}

#[async_trait]
impl Provider for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        match cx.aws_ondemand_source {
            AwsOnDemandSource::BulkFiles => {
                let url = offer_base(cx)?
                    .join("region_index.json")
                    .map_err(|e| FetchError::Config(format!("region index URL: {e}")))?;
                let text = cx.http.get_text(&url, &[]).await?;
                let mut all = bulk::parse_region_index(&text, url.as_str())?;
                let before = all.len();
                all.retain(|r| bulk::is_region_code(r));
                cx.skip("aws", "aws: Local Zone / Wavelength price files", (before - all.len()) as u64);
                all.sort();
                Ok(all)
            }
            AwsOnDemandSource::PricingApi => match ec2::sdk_config(cx).await {
                Signed::Yes(conf) => ec2::describe_regions(&ec2::ec2_client(cx, &conf, "us-east-1")).await,
                Signed::No(why) => Err(FetchError::Auth { provider: "aws".into(), message: why }),
            },
        }
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let signed = ec2::sdk_config(cx).await;
        let ec2_data = match &signed {
            Signed::Yes(conf) => {
                let client = ec2::ec2_client(cx, conf, region);
                match ec2::describe_region(&client, region).await {
                    Ok(d) => Some(d),
                    Err(f) if f.denied => {
                        cx.note("aws", format!("{region}: EC2 calls denied, public data only: {}", f.error));
                        None
                    }
                    Err(f) => return Err(f.error),
                }
            }
            Signed::No(why) => {
                cx.note(
                    "aws",
                    format!(
                        "{why}: skipped the signed EC2 calls (DescribeInstanceTypes, offerings, spot); \
                         on-demand rows per region from the public bulk files, GPU models from a static table"
                    ),
                );
                None
            }
        };
        let od = match cx.aws_ondemand_source {
            AwsOnDemandSource::BulkFiles => bulk_ondemand(cx, region).await?,
            AwsOnDemandSource::PricingApi => api_ondemand(cx, &signed, region).await?,
        };
        let mut offers = build_offers(cx, region, od, ec2_data.as_ref());
        if ec2_data.is_none() {
            add_keyless_spot(cx, region, &mut offers).await?;
        }
        add_interruption_buckets(cx, region, &mut offers).await?;
        Ok(offers)
    }
}

/// The Spot Instance Advisor's interruption bucket of each spot-priced offer's type in `region`
/// (its Linux figures: the spot prices are Linux prices too). On-demand-only offers and types
/// the advisor does not list keep `None`.
async fn add_interruption_buckets(cx: &FetchContext, region: &str, offers: &mut [Offer]) -> Result<(), FetchError> {
    if !offers.iter().any(|o| o.spot_price.is_some()) {
        return Ok(());
    }
    let Some(data) = spot_feeds::spot_advisor(cx).await? else {
        cx.note("aws", "no spot interruption rates: the Spot Instance Advisor data is off (SKYCAT_AWS_SPOT_ADVISOR_URL, or a redirected AWS endpoint without it)");
        return Ok(());
    };
    let buckets: HashMap<String, SpotInterruption> = spot_feeds::interruption_buckets(&data, region)
        .into_iter()
        .filter_map(|b| SpotInterruption::from_index(b.range.index).map(|s| (b.instance_type, s)))
        .collect();
    for o in offers.iter_mut().filter(|o| o.spot_price.is_some()) {
        o.spot_interruption = buckets.get(&*o.instance_type).copied();
    }
    Ok(())
}

/// Spot prices from the public spot feed, for offers the signed EC2 calls did not price.
async fn add_keyless_spot(cx: &FetchContext, region: &str, offers: &mut [Offer]) -> Result<(), FetchError> {
    let Some(url) = spot_feeds::spot_feed_url(cx)? else {
        cx.note("aws", "no spot prices: the public spot feed is off (SKYCAT_AWS_SPOT_FEED_URL, or a redirected AWS endpoint without it)");
        return Ok(());
    };
    let feed = spot_feeds::spot_feed(cx, &url).await?;
    let mut priced = 0u64;
    for o in offers.iter_mut() {
        if let Some(p) = feed.price(region, &o.instance_type) {
            o.spot_price = Some(p);
            o.source = format!("{} + {} (regional Linux spot price)", o.source, feed.source).into();
            priced += 1;
        }
    }
    cx.skip("aws", "aws spot feed: entry without a price (N/A, 0)", feed.unpriced_in(region));
    if priced == 0 && !offers.is_empty() {
        cx.note("aws", format!("{region}: the public spot feed lists none of this region's types"));
    }
    Ok(())
}
