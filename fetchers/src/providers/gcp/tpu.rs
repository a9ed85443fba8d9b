//! Cloud TPU slices from the Billing Catalog's TPU SKUs.
//!
//! Where the prices are (gcp-billing.md; SkyPilot's and gpuhunt's GCP fetchers read the same):
//! v5e, v5p and v6e are Compute Engine SKUs (`TpuV5e running in Delhi`, `TpuV5p …`, `TpuV6e …`,
//! spot ones `TpuV5e attached to Spot Preemptible VMs running in …`), priced per chip-hour; v4 is
//! in the Cloud TPU service (`E000-3F24-B8AA`) as a `Tpu-v4 Pod` SKU that both peers read as the
//! price of one v4-8 (8 TensorCores = 4 chips), so a chip is a quarter of it. v2/v3 (device vs pod
//! prices) and TPU7x are not offered yet and are counted as skipped.
//!
//! Offers follow SkyPilot's catalog convention so the optimizer sees them like imported rows: the
//! instance type and the accelerator are both the slice name (`tpu-v6e-8`), count 1, no vCPU or
//! memory (a TPU VM is billed by the slice alone), one offer per region where the rate exists
//! (the Catalog has no zones). Slice names count TensorCores for v4/v5p (2 per chip: `tpu-v4-8` is
//! 4 chips) and chips for v5e/v6e (`tpu-v6e-8` is 8 chips). The slice price is chips × the
//! per-chip rate, written out in `price_breakdown`.

use skycat_catalog::accelerators;
use skycat_catalog::Offer;

use super::{fmt_rate, Part, Rates, CLOUD};
use crate::provider::FetchContext;

/// The Cloud TPU service id in the Billing Catalog (v2/v3/v4 prices).
pub const TPU_SERVICE: &str = "E000-3F24-B8AA";

/// A TPU generation skycat offers.
pub struct Generation {
    /// SkyPilot's generation token in slice names (`v5litepod` for v5e).
    pub name: &'static str,
    /// TensorCores the slice name counts per chip.
    pub name_units_per_chip: u32,
    /// Chips one SKU unit prices.
    pub chips_per_sku: f64,
    /// Slice sizes offered (the number in the slice name), from the generation's TPU docs page
    /// (cloud.google.com/tpu/docs/v4, v5e, v5p, v6e: supported accelerator types).
    pub sizes: &'static [u32],
}

pub const GENERATIONS: &[Generation] = &[
    Generation { name: "v4", name_units_per_chip: 2, chips_per_sku: 4.0, sizes: &[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096] },
    Generation { name: "v5litepod", name_units_per_chip: 1, chips_per_sku: 1.0, sizes: &[1, 4, 8, 16, 32, 64, 128, 256] },
    Generation { name: "v5p", name_units_per_chip: 2, chips_per_sku: 1.0, sizes: &[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096] },
    Generation { name: "v6e", name_units_per_chip: 1, chips_per_sku: 1.0, sizes: &[1, 4, 8, 16, 32, 64, 128, 256] },
];

fn generation(name: &str) -> Option<&'static Generation> {
    GENERATIONS.iter().find(|g| g.name == name)
}

/// The generation a TPU SKU prices, from its description without the market prefix and the
/// `running in …` tail (`TpuV6e`, `Tpu-v4 Pod`), or why it is skipped.
pub fn generation_of(head: &str) -> Result<&'static Generation, &'static str> {
    let lower = head.to_ascii_lowercase();
    let token = lower.split_whitespace().next().unwrap_or("");
    let name = match token {
        "tpuv5e" => "v5litepod",
        "tpuv5p" => "v5p",
        "tpuv6e" => "v6e",
        "tpu-v4" if lower.contains(" pod") => "v4",
        "tpu-v4" => return Err("TPU v4 device SKU (v4 is priced by its pod SKU)"),
        _ => return Err("TPU generation not offered (v2, v3, TPU7x)"),
    };
    generation(name).ok_or("TPU generation not offered (v2, v3, TPU7x)")
}

/// Slice offers of every generation priced in `region`.
pub fn offers(cx: &FetchContext, rates: &Rates, region: &str) -> Vec<Offer> {
    let mut out = Vec::new();
    for g in GENERATIONS {
        let part = Part::Tpu(g.name.to_string());
        let od = rates.get(&part, region, false);
        let spot = rates.get(&part, region, true);
        if od.is_none() && spot.is_none() {
            continue;
        }
        let source = if g.name == "v4" { &rates.tpu_source } else { &rates.source };
        for &size in g.sizes {
            let chips = f64::from(size / g.name_units_per_chip);
            let name = format!("tpu-{}-{size}", g.name);
            let Some(info) = accelerators::lookup(&name) else {
                cx.skip(CLOUD, "TPU slice not in the accelerator registry", 1);
                continue;
            };
            let mut texts = Vec::new();
            let mut slice_price = |sku: Option<f64>, market: &str| {
                let sku = sku?;
                let per_chip = sku / g.chips_per_sku;
                let total = chips * per_chip;
                let unit = if g.chips_per_sku == 1.0 {
                    String::new()
                } else {
                    format!(" (SKU ${} per {} chips)", fmt_rate(sku), fmt_rate(g.chips_per_sku))
                };
                texts.push(format!(
                    "{market}: {} chips x ${}/chip-hour{unit} = ${}",
                    fmt_rate(chips),
                    fmt_rate(per_chip),
                    fmt_rate(total)
                ));
                Some(total)
            };
            let price = slice_price(od, "on-demand");
            let spot_price = slice_price(spot, "spot");
            let mut o = cx.offer(CLOUD, &name, region, source);
            o.accelerator_name = Some(info.name.clone().into());
            o.accelerator_count = 1.0;
            o.accelerator_memory_gib = info.memory_gib;
            o.accelerator_vendor = Some(info.vendor.into());
            o.price = price;
            o.spot_price = spot_price;
            o.price_breakdown = Some(texts.join(" | ").into());
            out.push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_from_descriptions() {
        assert_eq!(generation_of("TpuV5e").map(|g| g.name), Ok("v5litepod"));
        assert_eq!(generation_of("TpuV5p").map(|g| g.name), Ok("v5p"));
        assert_eq!(generation_of("TpuV6e").map(|g| g.name), Ok("v6e"));
        assert_eq!(generation_of("Tpu-v4 Pod").map(|g| g.name), Ok("v4"));
        assert!(generation_of("Tpu-v4").is_err());
        assert!(generation_of("Tpu-v3 Pod").is_err());
        assert!(generation_of("TPU7x").is_err());
    }

    #[test]
    fn every_slice_is_a_registry_name() {
        for g in GENERATIONS {
            for s in g.sizes {
                let name = format!("tpu-{}-{s}", g.name);
                assert_eq!(accelerators::lookup(&name).map(|i| i.name), Some(name));
            }
        }
    }
}
