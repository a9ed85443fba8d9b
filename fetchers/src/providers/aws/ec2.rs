//! Signed AWS calls through the SDK: EC2 DescribeInstanceTypes, DescribeInstanceTypeOfferings,
//! DescribeAvailabilityZones, DescribeSpotPriceHistory, DescribeRegions; and the SDK config
//! (credentials, endpoints) built once per run.
//!
//! Credentials: the standard AWS chain (env, profile, SSO, web identity, container, IMDS).
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` present in the run's
//! environment (including `FetchOptions::env_overrides`) are used directly. Endpoints:
//! `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL_PRICING`, `AWS_ENDPOINT_URL` (the SDK's standard
//! names; the SDK also reads them from the process environment itself).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{AvailabilityZoneState, LocationType};

use crate::error::FetchError;
use crate::provider::FetchContext;

/// The SDK config of this run, or why signed calls are skipped.
#[derive(Clone)]
pub enum Signed {
    Yes(Box<SdkConfig>),
    No(String),
}

/// Load the SDK config once per run and check that credentials resolve.
pub async fn sdk_config(cx: &FetchContext) -> Signed {
    let r = cx
        .shared("aws:sdk-config", || async {
            // Throttling (RequestLimitExceeded, ThrottlingException), 5xx and timeouts are retried
            // by the SDK's standard mode: exponential backoff with jitter, here 5 attempts.
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .retry_config(RetryConfig::standard().with_max_attempts(5))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(20))
                        .operation_attempt_timeout(Duration::from_secs(120))
                        .build(),
                );
            if let (Some(id), Some(secret)) = (cx.env("AWS_ACCESS_KEY_ID"), cx.env("AWS_SECRET_ACCESS_KEY")) {
                let creds = Credentials::new(id, secret, cx.env("AWS_SESSION_TOKEN").map(String::from), None, "skycat-env");
                loader = loader.credentials_provider(creds);
            } else if cx.is_isolated() {
                return Ok(Signed::No("no AWS credentials (AWS_ACCESS_KEY_ID is not set)".into()));
            }
            if let Some(ep) = cx.env("AWS_ENDPOINT_URL") {
                loader = loader.endpoint_url(ep);
            }
            let conf = loader.load().await;
            let Some(provider) = conf.credentials_provider() else {
                return Ok(Signed::No("no AWS credentials provider configured".into()));
            };
            match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
                Ok(Ok(_)) => Ok(Signed::Yes(Box::new(conf))),
                Ok(Err(e)) => Ok(Signed::No(format!("no AWS credentials ({})", first_line(&e.to_string())))),
                Err(_) => Ok(Signed::No("no AWS credentials (the credential chain timed out)".into())),
            }
        })
        .await;
    match r {
        Ok(s) => (*s).clone(),
        Err(e) => Signed::No(e.to_string()),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

pub fn ec2_client(cx: &FetchContext, conf: &SdkConfig, region: &str) -> aws_sdk_ec2::Client {
    let mut b = aws_sdk_ec2::config::Builder::from(conf).region(Region::new(region.to_string()));
    if let Some(ep) = cx.env("AWS_ENDPOINT_URL_EC2").or_else(|| cx.env("AWS_ENDPOINT_URL")) {
        b = b.endpoint_url(ep);
    }
    aws_sdk_ec2::Client::from_conf(b.build())
}

pub fn pricing_client(cx: &FetchContext, conf: &SdkConfig) -> aws_sdk_pricing::Client {
    let mut b = aws_sdk_pricing::config::Builder::from(conf).region(Region::new("us-east-1"));
    if let Some(ep) = cx.env("AWS_ENDPOINT_URL_PRICING").or_else(|| cx.env("AWS_ENDPOINT_URL")) {
        b = b.endpoint_url(ep);
    }
    aws_sdk_pricing::Client::from_conf(b.build())
}

/// One instance type as DescribeInstanceTypes describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSpec {
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    pub arch: Option<String>,
    /// (raw name, manufacturer, count, memory per device MiB)
    pub accelerator: Option<(String, Option<String>, f64, Option<f64>)>,
}

/// What the signed EC2 calls give for one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2Region {
    pub types: HashMap<String, TypeSpec>,
    /// Instance type → zone IDs (sorted, e.g. `use1-az1`) where it is offered; only zones that
    /// are `available` availability zones (not Local/Wavelength zones).
    pub zones_by_type: HashMap<String, Vec<String>>,
    /// (type, zone ID) → latest Linux/UNIX spot price.
    pub spot: HashMap<(String, String), f64>,
}

/// A failed signed call: `denied` when the account may not call it in this region (opt-in
/// region not enabled, missing IAM permission) — then the region falls back to public data.
pub struct Ec2Failure {
    pub denied: bool,
    pub error: FetchError,
}

fn fail<E>(region: &str, op: &str, e: aws_sdk_ec2::error::SdkError<E>) -> Ec2Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().unwrap_or("").to_string();
    let denied = matches!(
        code.as_str(),
        "AuthFailure" | "UnauthorizedOperation" | "OptInRequired" | "InvalidClientTokenId" | "Blocked"
    );
    Ec2Failure {
        denied,
        error: FetchError::api("aws", format!("{region}: {op}: {}", DisplayErrorContext(&e))),
    }
}

pub async fn describe_region(client: &aws_sdk_ec2::Client, region: &str) -> Result<Ec2Region, Ec2Failure> {
    let mut out = Ec2Region::default();

    // Zones.
    let azs = client
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| fail(region, "DescribeAvailabilityZones", e))?;
    // Zone names are shuffled per account, zone IDs are stable: offers carry the ID (as
    // SkyPilot's catalog does); the provisioner maps it back to its account's name.
    let mut zones: BTreeSet<String> = BTreeSet::new();
    let mut zone_id: HashMap<String, String> = HashMap::new();
    for z in azs
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_none_or(|s| *s == AvailabilityZoneState::Available))
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
    {
        if let Some(name) = z.zone_name() {
            zones.insert(name.to_string());
            if let Some(id) = z.zone_id() {
                zone_id.insert(name.to_string(), id.to_string());
            }
        }
    }
    let zone_key = |name: &str| zone_id.get(name).cloned().unwrap_or_else(|| name.to_string());

    // Instance types.
    let mut pages = client.describe_instance_types().into_paginator().items().send();
    while let Some(item) = pages.next().await {
        let it = item.map_err(|e| fail(region, "DescribeInstanceTypes", e))?;
        let Some(name) = it.instance_type().map(|t| t.as_str().to_string()) else { continue };
        let vcpus = it.v_cpu_info().and_then(|v| v.default_v_cpus()).map(f64::from);
        let memory_gib = it.memory_info().and_then(|m| m.size_in_mib()).map(|m| m as f64 / 1024.0);
        let arch = it.processor_info().and_then(|p| {
            let archs: Vec<&str> = p.supported_architectures().iter().map(|a| a.as_str()).collect();
            if archs.contains(&"x86_64") {
                Some("x86_64".to_string())
            } else if archs.contains(&"arm64") {
                Some("arm64".to_string())
            } else {
                archs.first().map(|a| a.to_string())
            }
        });
        let gpu = it.gpu_info().and_then(|g| g.gpus().first()).map(|g| {
            (
                g.name().unwrap_or("").to_string(),
                g.manufacturer().map(String::from),
                f64::from(g.count().unwrap_or(0)),
                g.memory_info().and_then(|m| m.size_in_mib()).map(f64::from),
            )
        });
        let neuron = it.neuron_info().and_then(|n| n.neuron_devices().first()).map(|d| {
            (
                d.name().unwrap_or("").to_string(),
                Some("AWS".to_string()),
                f64::from(d.count().unwrap_or(0)),
                d.memory_info().and_then(|m| m.size_in_mib()).map(f64::from),
            )
        });
        out.types.insert(name, TypeSpec { vcpus, memory_gib, arch, accelerator: gpu.or(neuron) });
    }

    // Per-zone offerings.
    let mut pages = client
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .into_paginator()
        .items()
        .send();
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(item) = pages.next().await {
        let o = item.map_err(|e| fail(region, "DescribeInstanceTypeOfferings", e))?;
        let (Some(t), Some(z)) = (o.instance_type(), o.location()) else { continue };
        if zones.is_empty() || zones.contains(z) {
            by_type.entry(t.as_str().to_string()).or_default().insert(zone_key(z));
        }
    }
    out.zones_by_type = by_type.into_iter().map(|(t, z)| (t, z.into_iter().collect())).collect();

    // Spot: the latest Linux/UNIX price per (type, zone).
    let mut pages = client
        .describe_spot_price_history()
        .product_descriptions("Linux/UNIX")
        .start_time(aws_sdk_ec2::primitives::DateTime::from(SystemTime::now()))
        .into_paginator()
        .items()
        .send();
    let mut latest: HashMap<(String, String), (i64, f64)> = HashMap::new();
    while let Some(item) = pages.next().await {
        let sp = item.map_err(|e| fail(region, "DescribeSpotPriceHistory", e))?;
        let (Some(t), Some(z), Some(p)) = (sp.instance_type(), sp.availability_zone(), sp.spot_price()) else {
            continue;
        };
        let Ok(price) = p.trim().parse::<f64>() else {
            return Err(Ec2Failure {
                denied: false,
                error: FetchError::malformed(
                    format!("aws {region} DescribeSpotPriceHistory"),
                    format!("spotPrice `{p}` of {} in {z} is not a number", t.as_str()),
                ),
            });
        };
        let ts = sp.timestamp().map(|t| t.secs()).unwrap_or(i64::MIN);
        let key = (t.as_str().to_string(), zone_key(z));
        match latest.get(&key) {
            Some((old, _)) if *old >= ts => {}
            _ => {
                latest.insert(key, (ts, price));
            }
        }
    }
    out.spot = latest.into_iter().map(|(k, (_, p))| (k, p)).collect();
    Ok(out)
}

/// DescribeRegions (all regions, opted in or not).
pub async fn describe_regions(client: &aws_sdk_ec2::Client) -> Result<Vec<String>, FetchError> {
    let r = client
        .describe_regions()
        .all_regions(true)
        .send()
        .await
        .map_err(|e| FetchError::api("aws", format!("DescribeRegions: {}", DisplayErrorContext(&e))))?;
    let mut v: Vec<String> = r.regions().iter().filter_map(|r| r.region_name().map(String::from)).collect();
    v.sort();
    Ok(v)
}
