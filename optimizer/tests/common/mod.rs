//! Helpers shared by the optimizer's tests: offers built by hand and a tiny deterministic PRNG.
#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use skycat_catalog::Offer;

/// An offer: `cloud`, `region`, `zone`, `instance_type`, accelerator, vCPUs, memory, prices.
#[allow(clippy::too_many_arguments)]
pub fn offer(
    cloud: &str,
    region: &str,
    zone: Option<&str>,
    itype: &str,
    accel: Option<(&str, f64)>,
    vcpus: f64,
    mem: f64,
    price: Option<f64>,
    spot: Option<f64>,
) -> Offer {
    Offer {
        cloud: cloud.into(),
        instance_type: itype.into(),
        region: region.into(),
        zone: zone.map(String::from).map(Into::into),
        accelerator_name: accel.map(|a| a.0.to_string()).map(Into::into),
        accelerator_count: accel.map(|a| a.1).unwrap_or(0.0),
        accelerator_memory_gib: None,
        accelerator_vendor: accel.map(|_| "nvidia".to_string()).map(Into::into),
        vcpus: Some(vcpus),
        memory_gib: Some(mem),
        arch: Some("x86_64".into()),
        price,
        spot_price: spot,
        fetched_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        source: "test".into(),
        price_breakdown: None,
        spot_interruption: None,
        hyperv_generations: None,
    }
}

/// A small catalog resembling real ones (prices are round test figures, not real ones).
pub fn sample() -> Vec<Offer> {
    vec![
        offer("aws", "us-east-1", None, "p5.48xlarge", Some(("H100", 8.0)), 192.0, 2048.0, Some(98.32), Some(40.0)),
        offer("aws", "us-west-2", None, "p5.48xlarge", Some(("H100", 8.0)), 192.0, 2048.0, Some(98.32), Some(35.0)),
        offer("gcp", "us-central1", Some("us-central1-a"), "a3-highgpu-8g", Some(("H100", 8.0)), 208.0, 1872.0, Some(88.25), Some(30.0)),
        offer("lambda", "us-east-1", None, "gpu_8x_h100_sxm5", Some(("H100", 8.0)), 208.0, 1800.0, Some(23.92), None),
        offer("lambda", "us-west-1", None, "gpu_1x_h100_pcie", Some(("H100", 1.0)), 26.0, 200.0, Some(2.49), None),
        offer("aws", "us-east-1", None, "p4d.24xlarge", Some(("A100", 8.0)), 96.0, 1152.0, Some(32.77), Some(12.0)),
        offer("gcp", "us-central1", Some("us-central1-a"), "a2-highgpu-8g", Some(("A100", 8.0)), 96.0, 680.0, Some(29.39), Some(8.8)),
        offer("gcp", "us-central1", Some("us-central1-b"), "a2-highgpu-8g", Some(("A100", 8.0)), 96.0, 680.0, Some(29.39), Some(9.1)),
        offer("gcp", "us-central1", Some("us-central1-a"), "a2-highgpu-1g", Some(("A100", 1.0)), 12.0, 85.0, Some(3.67), Some(1.1)),
        offer("aws", "us-east-1", None, "p3.2xlarge", Some(("V100", 1.0)), 8.0, 61.0, Some(3.06), Some(0.92)),
        offer("azure", "eastus", None, "Standard_NC6s_v3", Some(("V100", 1.0)), 6.0, 112.0, Some(3.06), Some(0.31)),
        offer("gcp", "us-central1", Some("us-central1-a"), "n1-highmem-8+V100", Some(("V100", 1.0)), 8.0, 52.0, Some(2.95), Some(0.8)),
        offer("aws", "us-east-1", None, "g6.xlarge", Some(("L4", 1.0)), 4.0, 16.0, Some(0.80), Some(0.35)),
        offer("aws", "us-east-1", None, "g6.2xlarge", Some(("L4", 1.0)), 8.0, 32.0, Some(0.98), Some(0.40)),
        offer("gcp", "us-central1", Some("us-central1-a"), "g2-standard-4", Some(("L4", 1.0)), 4.0, 16.0, Some(0.71), Some(0.28)),
        offer("aws", "us-east-1", None, "m6i.2xlarge", None, 8.0, 32.0, Some(0.384), Some(0.15)),
        offer("aws", "us-east-1", None, "c6i.2xlarge", None, 8.0, 16.0, Some(0.34), Some(0.13)),
        offer("aws", "us-east-1", None, "m6i.large", None, 2.0, 8.0, Some(0.096), Some(0.04)),
        offer("aws", "us-east-1", None, "m6i.xlarge", None, 4.0, 16.0, Some(0.192), Some(0.08)),
        offer("gcp", "us-central1", Some("us-central1-a"), "n2-standard-8", None, 8.0, 32.0, Some(0.388), Some(0.09)),
        offer("gcp", "us-central1", Some("us-central1-a"), "e2-standard-8", None, 8.0, 32.0, Some(0.268), Some(0.08)),
        offer("azure", "eastus", None, "Standard_D8s_v5", None, 8.0, 32.0, Some(0.384), Some(0.05)),
        offer("aws", "us-east-1", None, "r6i.2xlarge", None, 8.0, 64.0, Some(0.504), Some(0.2)),
    ]
}

/// xorshift64*: deterministic, good enough to generate test instances.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}
