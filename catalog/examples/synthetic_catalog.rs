//! Writes a synthetic catalog for benchmarks: the shipped offers repeated over synthetic regions
//! (`<region>-synN`, zones `<zone>-synN`) with prices scaled by a deterministic factor, so the mix
//! of clouds, accelerators and counts stays real while the size grows.
//!
//!   cargo run --release -p skycat-catalog --features embedded-default --example synthetic_catalog -- OUT_DIR [N]
//!   cargo run … --example synthetic_catalog -- OUT_DIR --per-cloud aws=51000,gcp=23000,azure=9000
//!
//! With N, the whole shipped catalog is repeated round-robin up to N offers (default 100 000).
//! With `--per-cloud`, each named cloud is grown (or cut) to its count and every other cloud is
//! written as shipped: the "full all-region catalog" of issue 14 (about 90k rows after
//! `skycat fetch --all-regions`).
//!
//! OUT_DIR receives `<cloud>.parquet` files with their query indexes (`<cloud>.idx`): point
//! `SKYCAT_HOME=X` with OUT_DIR = X/catalogs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use skycat_catalog::{embedded_default, parquet, Offer};

/// FNV-1a: a deterministic hash of the text, the same on every machine and run.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Copy `round` of a shipped offer: a synthetic region and zone, a price within ±20%. The factor
/// depends on the region, the instance type and the round only, so every zone of a synthetic
/// region keeps one on-demand price per type, as real catalogs do (SkyPilot asserts it).
fn replica(base: &Offer, round: usize) -> Offer {
    let mut o = base.clone();
    if round > 0 {
        let factor = 0.8 + (fnv1a(&format!("{}/{}/{round}", o.region, o.instance_type)) % 401) as f64 / 1000.0;
        o.region = format!("{}-syn{round}", o.region).into();
        o.zone = o.zone.map(|z| format!("{z}-syn{round}")).map(Into::into);
        o.price = o.price.map(|p| p * factor);
        o.spot_price = o.spot_price.map(|p| p * factor);
    }
    o
}

fn grow(base: &[Offer], n: usize) -> Vec<Offer> {
    (0..n).map(|i| replica(&base[i % base.len()], i / base.len())).collect()
}

fn parse_per_cloud(spec: &str) -> Result<BTreeMap<String, usize>, String> {
    spec.split(',')
        .map(|part| {
            let (cloud, n) = part.split_once('=').ok_or(format!("--per-cloud: {part:?} is not CLOUD=ROWS"))?;
            let n = n.trim().parse().map_err(|_| format!("--per-cloud: {n:?} is not a row count"))?;
            Ok((cloud.trim().to_string(), n))
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synthetic_catalog OUT_DIR [N | --per-cloud CLOUD=ROWS,…]";
    let out = PathBuf::from(args.first().ok_or(usage)?);
    let (embedded, _) = embedded_default();
    let mut shipped: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
    for (cloud, bytes) in embedded {
        shipped.insert(cloud.to_string(), parquet::read_offers_bytes(bytes)?);
    }
    if shipped.is_empty() {
        return Err("no embedded catalog: build with --features embedded-default".into());
    }
    let by_cloud: BTreeMap<String, Vec<Offer>> = match args.get(1).map(String::as_str) {
        Some("--per-cloud") => {
            let wanted = parse_per_cloud(args.get(2).ok_or(usage)?)?;
            for cloud in wanted.keys() {
                if !shipped.contains_key(cloud) {
                    return Err(format!("--per-cloud: no shipped catalog for {cloud:?}").into());
                }
            }
            shipped
                .into_iter()
                .map(|(cloud, base)| {
                    let rows = match wanted.get(&cloud) {
                        Some(&n) => grow(&base, n),
                        None => base,
                    };
                    (cloud, rows)
                })
                .collect()
        }
        n => {
            let n: usize = n.map(str::parse).transpose()?.unwrap_or(100_000);
            let base: Vec<Offer> = shipped.into_values().flatten().collect();
            let mut by_cloud: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
            for o in grow(&base, n) {
                by_cloud.entry(o.cloud.to_string()).or_default().push(o);
            }
            by_cloud
        }
    };
    std::fs::create_dir_all(&out)?;
    let mut total = 0;
    for (cloud, offers) in &by_cloud {
        skycat_catalog::index::publish(&out.join(format!("{cloud}.parquet")), offers)?;
        println!("{cloud}: {} offers", offers.len());
        total += offers.len();
    }
    println!("wrote {total} offers over {} clouds to {}", by_cloud.len(), out.display());
    Ok(())
}
