//! Writes a synthetic catalog of N offers (default 100 000) for benchmarks: the shipped offers,
//! repeated over synthetic regions (`<region>-synN`) with prices scaled by a deterministic
//! factor, so the mix of clouds, accelerators and counts stays real while the size grows.
//!
//!   cargo run --release -p skycat-catalog --features embedded-default --example synthetic_catalog -- OUT_DIR [N]
//!
//! OUT_DIR receives `<cloud>.parquet` files with their query indexes (`<cloud>.idx`): point `SKYCAT_HOME=X` with OUT_DIR = X/catalogs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use skycat_catalog::{embedded_default, parquet, Offer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: synthetic_catalog OUT_DIR [N]")?);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let (embedded, _) = embedded_default();
    let mut base: Vec<Offer> = Vec::new();
    for (_, bytes) in embedded {
        base.extend(parquet::read_offers_bytes(bytes)?);
    }
    if base.is_empty() {
        return Err("no embedded catalog: build with --features embedded-default".into());
    }
    let mut by_cloud: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
    for i in 0..n {
        let round = i / base.len();
        let mut o = base[i % base.len()].clone();
        if round > 0 {
            o.region = format!("{}-syn{round}", o.region);
            o.zone = o.zone.map(|z| format!("{z}-syn{round}"));
            // A deterministic ±20% spread keeps sorting honest.
            let factor = 0.8 + ((i * 7919) % 401) as f64 / 1000.0;
            o.price = o.price.map(|p| p * factor);
            o.spot_price = o.spot_price.map(|p| p * factor);
        }
        by_cloud.entry(o.cloud.clone()).or_default().push(o);
    }
    std::fs::create_dir_all(&out)?;
    for (cloud, offers) in &by_cloud {
        skycat_catalog::index::publish(&out.join(format!("{cloud}.parquet")), offers)?;
    }
    println!("wrote {n} offers over {} clouds to {}", by_cloud.len(), out.display());
    Ok(())
}
