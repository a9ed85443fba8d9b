//! The accelerator registry: every provider's GPU/TPU naming mapped to one canonical name.
//!
//! Canonical names follow SkyPilot's (`A100`, `A100-80GB`, `H100`, `L4`, `T4`, `tpu-v4-8`, …) so
//! that SkyPilot users type what they already know. Lookup is forgiving about case, spacing,
//! vendor prefixes (`NVIDIA`, `Tesla`, `GeForce`, `AMD`, `Radeon`) and GCP's `nvidia-tesla-*`
//! resource names; a per-device memory hint picks the right variant where one name covers
//! several memory sizes (AWS reports `A100` for both the 40 GB and the 80 GB part).

use serde::{Deserialize, Serialize};

/// What kind of device an accelerator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorKind {
    Gpu,
    Tpu,
    /// AWS Inferentia / Trainium, Intel Gaudi, Tenstorrent and other AI ASICs.
    Asic,
}

/// A canonical accelerator with its per-device memory and vendor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceleratorInfo {
    pub name: String,
    /// Memory per device (per chip for TPUs), GiB.
    pub memory_gib: Option<f64>,
    pub vendor: &'static str,
    pub kind: AcceleratorKind,
}

struct Known {
    name: &'static str,
    memory_gib: f64,
    vendor: &'static str,
    kind: AcceleratorKind,
    /// Extra spellings, compared after [`squash`].
    aliases: &'static [&'static str],
}

use AcceleratorKind::{Asic, Gpu};

const fn gpu(name: &'static str, memory_gib: f64, vendor: &'static str, aliases: &'static [&'static str]) -> Known {
    Known { name, memory_gib, vendor, kind: Gpu, aliases }
}

/// The canonical accelerators. Memory figures are the vendors' published per-device sizes
/// (SkyPilot's `common/metadata.csv` for the ones it lists).
static KNOWN: &[Known] = &[
    // NVIDIA data-center parts.
    gpu("B200", 180.0, "nvidia", &["B200SXM", "B200SXM6"]),
    gpu("B100", 180.0, "nvidia", &[]),
    gpu("GB200", 186.0, "nvidia", &[]),
    gpu("H200", 141.0, "nvidia", &["H200SXM5", "H200141GB", "H200141G", "H200NVL"]),
    gpu("H200-SXM", 141.0, "nvidia", &["H200SXM"]),
    gpu("H100", 80.0, "nvidia", &["H10080GB", "H10080G", "H100SXM5", "H100PCIE", "H10080GBHBM3", "H100HBM3"]),
    gpu("H100-SXM", 80.0, "nvidia", &["H100SXM"]),
    gpu("H100-NVL", 94.0, "nvidia", &["H100NVL", "H10094GB"]),
    gpu("H100-NVLINK", 80.0, "nvidia", &["H100NVLINK"]),
    gpu("H100-MEGA", 80.0, "nvidia", &["H100MEGA", "H100MEGA80GB"]),
    gpu("GH200", 96.0, "nvidia", &["GH200480GB", "GH200SUPERCHIP"]),
    gpu("A100", 40.0, "nvidia", &["A10040GB", "A10040G", "A100SXM440GB", "A100PCIE40GB"]),
    gpu("A100-80GB", 80.0, "nvidia", &["A10080GB", "A10080G", "A100PCIE80GB", "A100SXM480GB"]),
    gpu("A100-80GB-SXM", 80.0, "nvidia", &["A10080GBSXM", "A100SXM80GB"]),
    gpu("A800", 80.0, "nvidia", &[]),
    gpu("A10G", 24.0, "nvidia", &[]),
    gpu("A10", 24.0, "nvidia", &["A10PCIE"]),
    gpu("A16", 16.0, "nvidia", &[]),
    gpu("A30", 24.0, "nvidia", &[]),
    gpu("A40", 48.0, "nvidia", &[]),
    gpu("L4", 24.0, "nvidia", &[]),
    gpu("L40", 48.0, "nvidia", &[]),
    gpu("L40S", 48.0, "nvidia", &[]),
    gpu("T4", 16.0, "nvidia", &[]),
    gpu("T4g", 16.0, "nvidia", &[]),
    gpu("V100", 16.0, "nvidia", &["V10016GB", "V100SXM2", "V100SXM216GB"]),
    gpu("V100-32GB", 32.0, "nvidia", &["V10032GB", "V10032G", "V100SXM232GB"]),
    gpu("P100", 16.0, "nvidia", &[]),
    gpu("P4", 8.0, "nvidia", &[]),
    gpu("P40", 24.0, "nvidia", &[]),
    gpu("K80", 12.0, "nvidia", &[]),
    gpu("M60", 8.0, "nvidia", &[]),
    // NVIDIA workstation and consumer parts.
    gpu("RTXPRO6000", 96.0, "nvidia", &["RTXPRO6000BLACKWELL", "RTXPRO6000BLACKWELLSERVER"]),
    gpu("RTX6000-Ada", 48.0, "nvidia", &["RTX6000ADA", "RTX6000ADAGENERATION"]),
    gpu("RTX6000", 24.0, "nvidia", &["QUADRORTX6000"]),
    gpu("RTX8000", 48.0, "nvidia", &["QUADRORTX8000"]),
    gpu("RTX4000-Ada", 20.0, "nvidia", &["RTX4000ADA", "RTX4000ADAGENERATION"]),
    gpu("RTXA6000", 48.0, "nvidia", &["A6000", "RTXA6000"]),
    gpu("RTXA5000", 24.0, "nvidia", &["A5000"]),
    gpu("RTXA4500", 20.0, "nvidia", &["A4500"]),
    gpu("RTXA4000", 16.0, "nvidia", &["A4000"]),
    gpu("RTXA2000", 12.0, "nvidia", &["A2000"]),
    gpu("RTX5090", 32.0, "nvidia", &[]),
    gpu("RTX5080", 16.0, "nvidia", &[]),
    gpu("RTX5070", 12.0, "nvidia", &[]),
    gpu("RTX4090", 24.0, "nvidia", &[]),
    gpu("RTX4080", 16.0, "nvidia", &[]),
    gpu("RTX3090", 24.0, "nvidia", &[]),
    gpu("RTX3080", 10.0, "nvidia", &[]),
    gpu("RTX3070", 8.0, "nvidia", &[]),
    gpu("RTX3060Ti", 8.0, "nvidia", &[]),
    gpu("RTX3060", 12.0, "nvidia", &[]),
    gpu("P4000", 8.0, "nvidia", &["QUADROP4000"]),
    gpu("M4000", 8.0, "nvidia", &["QUADROM4000"]),
    // AMD.
    gpu("MI300X", 192.0, "amd", &["INSTINCTMI300X"]),
    gpu("MI325X", 256.0, "amd", &["INSTINCTMI325X"]),
    gpu("MI250X", 128.0, "amd", &[]),
    gpu("Radeon MI25", 16.0, "amd", &["MI25"]),
    gpu("Radeon Pro V520", 8.0, "amd", &["PROV520", "V520"]),
    gpu("Radeon Pro V710", 28.0, "amd", &["PROV710", "V710"]),
    // AI ASICs.
    Known { name: "Inferentia", memory_gib: 8.0, vendor: "aws", kind: Asic, aliases: &["INFERENTIA1"] },
    Known { name: "Inferentia2", memory_gib: 32.0, vendor: "aws", kind: Asic, aliases: &[] },
    Known { name: "Trainium", memory_gib: 32.0, vendor: "aws", kind: Asic, aliases: &["TRAINIUM1"] },
    Known { name: "Trainium2", memory_gib: 96.0, vendor: "aws", kind: Asic, aliases: &[] },
    Known { name: "Gaudi HL-205", memory_gib: 32.0, vendor: "intel", kind: Asic, aliases: &["GAUDI", "HL205"] },
    Known { name: "Gaudi2", memory_gib: 96.0, vendor: "intel", kind: Asic, aliases: &["HL225"] },
    // Intel's Gaudi 3 product brief: 128 GB HBM2e (IBM's `gx3d-160x1792x8gaudi3`).
    Known { name: "Gaudi3", memory_gib: 128.0, vendor: "intel", kind: Asic, aliases: &["HL325L"] },
    Known { name: "GRAYSKULL-E75", memory_gib: 8.0, vendor: "tenstorrent", kind: Asic, aliases: &[] },
    Known { name: "GRAYSKULL-E150", memory_gib: 8.0, vendor: "tenstorrent", kind: Asic, aliases: &[] },
];

/// TPU generations: canonical generation token and HBM per chip (GiB), from Google's TPU
/// system architecture pages. `v5e` is sold as `v5litepod`, which is SkyPilot's name for it.
static TPU_GENERATIONS: &[(&str, f64, &[&str])] = &[
    ("v2", 16.0, &["v2"]),
    ("v3", 32.0, &["v3"]),
    ("v4", 32.0, &["v4"]),
    ("v5litepod", 16.0, &["v5e", "v5lite", "v5litepod"]),
    ("v5p", 95.0, &["v5p"]),
    ("v6e", 32.0, &["v6e", "trillium"]),
];

/// Upper-case and drop every character that is not a letter or digit, and the vendor words that
/// providers prepend inconsistently.
fn squash(raw: &str) -> String {
    let mut s: String = raw.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    for prefix in ["NVIDIA", "TESLA", "GEFORCE", "AMD", "INSTINCT", "RADEON"] {
        // "Radeon MI25" and "Radeon Pro V520" keep their canonical names through the aliases.
        if let Some(rest) = s.strip_prefix(prefix) {
            if !rest.is_empty() {
                s = rest.to_string();
            }
        }
    }
    s
}

fn info_of(k: &Known) -> AcceleratorInfo {
    AcceleratorInfo { name: k.name.to_string(), memory_gib: Some(k.memory_gib), vendor: k.vendor, kind: k.kind }
}

fn find_exact(key: &str) -> Option<&'static Known> {
    KNOWN
        .iter()
        .find(|k| squash(k.name) == key || k.aliases.iter().any(|a| *a == key))
}

/// Parse a TPU slice name in any common spelling: `tpu-v4-8`, `v5litepod-16`, `TPU v5e 8`,
/// `tpu-v6e-1`, `v5p-8`. Returns the SkyPilot spelling `tpu-<generation>-<size>`, or
/// `tpu-<generation>` when no size is given.
fn parse_tpu(raw: &str) -> Option<AcceleratorInfo> {
    let lower = raw.trim().to_ascii_lowercase();
    let body = lower.strip_prefix("tpu").unwrap_or(&lower).trim_start_matches(['-', '_', ' ']);
    if !body.starts_with('v') {
        return None;
    }
    let mut parts = body.splitn(2, ['-', '_', ' ']);
    let gen_raw = parts.next()?.replace("pod", "");
    let size = parts.next().map(|s| s.trim());
    let (gen, mem, _) = TPU_GENERATIONS
        .iter()
        .find(|(_, _, names)| names.iter().any(|n| n.replace("pod", "") == gen_raw))?;
    let name = match size {
        Some(s) if !s.is_empty() => {
            let n: u32 = s.parse().ok()?;
            format!("tpu-{gen}-{n}")
        }
        _ => format!("tpu-{gen}"),
    };
    Some(AcceleratorInfo { name, memory_gib: Some(*mem), vendor: "google", kind: AcceleratorKind::Tpu })
}

/// GCP's accelerator resource names (`nvidia-tesla-a100`, `nvidia-a100-80gb`, `nvidia-h100-mega-80gb`,
/// `nvidia-l4`, `nvidia-h200-141gb`, `ct5lp`…) carry the memory in the name where it matters.
fn strip_gcp_resource(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let rest = lower.strip_prefix("nvidia-")?;
    let rest = rest.strip_prefix("tesla-").unwrap_or(rest);
    Some(rest.to_string())
}

/// Map any provider's accelerator name to the canonical one. `memory_gib_hint` is the per-device
/// memory the provider reported, if any; it selects the variant where one name covers several
/// sizes (AWS `A100` with 80 GiB → `A100-80GB`, `V100` with 32 GiB → `V100-32GB`).
pub fn canonicalize(raw: &str, memory_gib_hint: Option<f64>) -> Option<AcceleratorInfo> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Some(tpu) = parse_tpu(raw) {
        return Some(tpu);
    }
    let candidate = strip_gcp_resource(raw).unwrap_or_else(|| raw.to_string());
    let key = squash(&candidate);
    // GCP writes the memory into the H100 name even for the standard part (`nvidia-h100-80gb`).
    let key = match key.as_str() {
        "H10080GB" if raw.to_ascii_lowercase().starts_with("nvidia-") => "H100".to_string(),
        _ => key,
    };
    if let Some(found) = find_exact(&key) {
        return Some(info_of(refine_by_memory(found, memory_gib_hint)));
    }
    // Board names carry form factor and memory ("Tesla P100-PCIE-16GB", "A100-SXM4-80GB"):
    // drop the form factor, and read a trailing memory size as the hint.
    let (base, mem) = split_board_name(&key);
    let found = find_exact(&base)?;
    Some(info_of(refine_by_memory(found, mem.or(memory_gib_hint))))
}

/// Split a squashed board name into the part name and a trailing memory size in GB.
fn split_board_name(key: &str) -> (String, Option<f64>) {
    let mut base = key.to_string();
    let mut mem = None;
    for suffix in ["HBM3E", "HBM3", "HBM2E", "HBM2"] {
        if let Some(rest) = base.strip_suffix(suffix) {
            base = rest.to_string();
        }
    }
    for unit in ["GB", "G"] {
        if let Some(rest) = base.strip_suffix(unit) {
            let digits: String = rest.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() && digits.len() < rest.len() {
                let digits: String = digits.chars().rev().collect();
                mem = digits.parse::<f64>().ok();
                base = rest[..rest.len() - digits.len()].to_string();
            }
            break;
        }
    }
    for noise in ["PCIE", "SXM2", "SXM4", "SXM5", "SXM6"] {
        if let Some(rest) = base.strip_suffix(noise) {
            base = rest.to_string();
        }
    }
    (base, mem)
}

/// Pick the memory variant of a base part that matches the reported memory.
fn refine_by_memory(found: &'static Known, hint: Option<f64>) -> &'static Known {
    let Some(mem) = hint else { return found };
    let variant = match found.name {
        "A100" if mem > 60.0 => "A100-80GB",
        "V100" if mem > 24.0 => "V100-32GB",
        "H100" if mem > 88.0 && mem < 120.0 => "H100-NVL",
        _ => return found,
    };
    KNOWN.iter().find(|k| k.name == variant).unwrap_or(found)
}

/// The canonical entry for a name that is already canonical (case-insensitive).
pub fn lookup(canonical: &str) -> Option<AcceleratorInfo> {
    if let Some(tpu) = parse_tpu(canonical) {
        return Some(tpu);
    }
    KNOWN
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(canonical))
        .map(info_of)
}

/// All canonical non-TPU names, in registry order.
pub fn known_names() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().map(|k| k.name)
}

/// The `n` known names nearest to `raw` (by edit distance over the squashed spelling), for
/// "did you mean" messages. `extra` adds names seen in a catalog (TPU slices, say).
pub fn nearest_names<'a>(raw: &str, n: usize, extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let key = squash(raw);
    let mut names: Vec<String> = known_names().map(str::to_string).collect();
    names.extend(extra.into_iter().map(str::to_string));
    names.sort();
    names.dedup();
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .map(|name| {
            let s = squash(&name);
            // A shared prefix (A100 vs A100-80GB) is a stronger hint than raw edit distance.
            let bonus = if !key.is_empty() && (s.starts_with(&key) || key.starts_with(&s)) { 0 } else { 1 };
            (levenshtein(&key, &s) * 2 + bonus, name)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, name)| name).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The accelerator and per-instance count implied by an instance-type name, for providers whose
/// price lists name only the instance (Azure's SKUs, Lambda's instance types). `None` when the
/// name carries no accelerator or follows no known convention.
pub fn from_instance_type(cloud: &str, instance_type: &str) -> Option<(AcceleratorInfo, f64)> {
    match cloud {
        "lambda" => lambda_instance(instance_type),
        "azure" => azure_instance(instance_type),
        "ibm" => ibm_instance(instance_type),
        "scp" => scp_instance(instance_type),
        _ => None,
    }
}

/// IBM Cloud VPC profiles: `<family><gen>[d]-<vCPUs>x<GiB>x<count><gpu>`, e.g. `gx2-8x64x1v100`,
/// `gx3-16x80x1l4`, `gx3d-160x1792x8h100`, `gx3d-208x1792x8mi300x`. IBM's `a100p` is the 80 GB
/// A100 PCIe (IBM's accelerated-profile docs); the other tokens are the registry's names.
fn ibm_instance(profile: &str) -> Option<(AcceleratorInfo, f64)> {
    let (family, shape) = profile.split_once('-')?;
    if !family.starts_with("gx") {
        return None;
    }
    // `splitn(3)`: the GPU token itself may contain an `x` (`8mi300x`).
    let gpu = shape.splitn(3, 'x').nth(2)?;
    let digits: String = gpu.chars().take_while(|c| c.is_ascii_digit()).collect();
    let count: f64 = digits.parse().ok()?;
    let info = match &gpu[digits.len()..] {
        "a100p" => lookup("A100-80GB"),
        other => canonicalize(other, None),
    }?;
    Some((info, count))
}

/// Samsung SCP GPU server types: `g1v<vCPUs><v|a><count>`, e.g. `g1v8v1`, `g1v128a8`. SkyPilot's
/// SCP catalog names `v` V100-32GB and `a` A100-80GB, the only GPUs SCP's v1 API sells.
fn scp_instance(server_type: &str) -> Option<(AcceleratorInfo, f64)> {
    let rest = server_type.strip_prefix("g1v")?;
    let vcpus: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &rest[vcpus.len()..];
    let model = match rest.chars().next()? {
        'v' => "V100-32GB",
        'a' => "A100-80GB",
        _ => return None,
    };
    let count: f64 = rest[1..].parse().ok().filter(|n: &f64| *n > 0.0)?;
    if vcpus.is_empty() {
        return None;
    }
    Some((lookup(model)?, count))
}

/// Lambda: `gpu_<count>x_<model>[_<form factor>]`, e.g. `gpu_8x_h100_sxm5`, `gpu_1x_a10`,
/// `gpu_8x_a100_80gb_sxm4`, `gpu_1x_gh200`.
fn lambda_instance(instance_type: &str) -> Option<(AcceleratorInfo, f64)> {
    let rest = instance_type.strip_prefix("gpu_")?;
    let (count, model) = rest.split_once("x_")?;
    let count: f64 = count.parse().ok()?;
    let model = model.to_ascii_lowercase();
    let mut tokens: Vec<&str> = model.split('_').collect();
    // Form factors are not part of SkyPilot's canonical name (Lambda's H100 SXM5 is `H100`).
    tokens.retain(|t| !matches!(*t, "sxm" | "sxm4" | "sxm5" | "pcie" | "nvlink"));
    let joined = tokens.join("-");
    let info = match joined.as_str() {
        "a6000" => lookup("RTXA6000"),
        "rtx6000" => lookup("RTX6000"),
        other => canonicalize(other, None),
    }?;
    Some((info, count))
}

/// Azure GPU SKUs: the series letters and suffix say which GPU and how many. The table covers
/// the N-series families Azure sells with GPUs; fractional shares (`NV6ads_A10_v5` = 1/6 of an
/// A10) are returned as fractions.
fn azure_instance(sku: &str) -> Option<(AcceleratorInfo, f64)> {
    let s = sku.strip_prefix("Standard_").unwrap_or(sku);
    let (name, count): (&str, f64) = match s {
        // ND A100 v4 and NDm A100 v4.
        "ND96asr_v4" => ("A100", 8.0),
        "ND96amsr_A100_v4" => ("A100-80GB", 8.0),
        // NC A100 v4.
        "NC24ads_A100_v4" => ("A100-80GB", 1.0),
        "NC48ads_A100_v4" => ("A100-80GB", 2.0),
        "NC96ads_A100_v4" => ("A100-80GB", 4.0),
        // ND H100 v5, NC H100 v5, ND H200 v5, ND MI300X v5.
        "ND96isr_H100_v5" => ("H100", 8.0),
        "NC40ads_H100_v5" => ("H100-NVL", 1.0),
        "NC80adis_H100_v5" => ("H100-NVL", 2.0),
        "ND96isr_H200_v5" => ("H200", 8.0),
        "ND96isr_MI300X_v5" => ("MI300X", 8.0),
        // NCv3 (V100), ND40rs_v2 (V100 32 GB).
        "NC6s_v3" => ("V100", 1.0),
        "NC12s_v3" => ("V100", 2.0),
        "NC24s_v3" | "NC24rs_v3" => ("V100", 4.0),
        "ND40rs_v2" => ("V100-32GB", 8.0),
        // NCasT4_v3.
        "NC4as_T4_v3" | "NC8as_T4_v3" | "NC16as_T4_v3" => ("T4", 1.0),
        "NC64as_T4_v3" => ("T4", 4.0),
        // NC (K80), NCv2 (P100), ND (P40).
        "NC6" | "NC6_Promo" => ("K80", 1.0),
        "NC12" | "NC12_Promo" => ("K80", 2.0),
        "NC24" | "NC24r" | "NC24_Promo" | "NC24r_Promo" => ("K80", 4.0),
        "NC6s_v2" => ("P100", 1.0),
        "NC12s_v2" => ("P100", 2.0),
        "NC24s_v2" | "NC24rs_v2" => ("P100", 4.0),
        "ND6s" => ("P40", 1.0),
        "ND12s" => ("P40", 2.0),
        "ND24s" | "ND24rs" => ("P40", 4.0),
        // NV (M60), NVv3 (M60), NVv4 (MI25 shares), NVadsA10 v5 (A10 shares).
        "NV6" | "NV6_Promo" | "NV12s_v3" => ("M60", 1.0),
        "NV12" | "NV12_Promo" | "NV24s_v3" => ("M60", 2.0),
        "NV24" | "NV24_Promo" | "NV48s_v3" => ("M60", 4.0),
        "NV4as_v4" => ("Radeon MI25", 0.125),
        "NV8as_v4" => ("Radeon MI25", 0.25),
        "NV16as_v4" => ("Radeon MI25", 0.5),
        "NV32as_v4" => ("Radeon MI25", 1.0),
        "NV6ads_A10_v5" => ("A10", 1.0 / 6.0),
        "NV12ads_A10_v5" => ("A10", 1.0 / 3.0),
        "NV18ads_A10_v5" => ("A10", 0.5),
        "NV36ads_A10_v5" | "NV36adms_A10_v5" => ("A10", 1.0),
        "NV72ads_A10_v5" => ("A10", 2.0),
        _ => return None,
    };
    Some((lookup(name)?, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str, mem: Option<f64>) -> Option<String> {
        canonicalize(raw, mem).map(|i| i.name)
    }

    #[test]
    fn aws_names_and_memory_variants() {
        assert_eq!(canon("A100", Some(80.0)).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("A100", Some(40.0)).as_deref(), Some("A100"));
        assert_eq!(canon("A100", None).as_deref(), Some("A100"));
        assert_eq!(canon("V100", Some(32.0)).as_deref(), Some("V100-32GB"));
        assert_eq!(canon("A10G", None).as_deref(), Some("A10G"));
        assert_eq!(canon("T4g", None).as_deref(), Some("T4g"));
        assert_eq!(canon("Inferentia2", None).as_deref(), Some("Inferentia2"));
        assert_eq!(canon("Radeon Pro V520", None).as_deref(), Some("Radeon Pro V520"));
        assert_eq!(canon("NVIDIA H200", None).as_deref(), Some("H200"));
    }

    #[test]
    fn gcp_resource_names() {
        assert_eq!(canon("nvidia-tesla-a100", None).as_deref(), Some("A100"));
        assert_eq!(canon("nvidia-a100-80gb", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("nvidia-h100-80gb", None).as_deref(), Some("H100"));
        assert_eq!(canon("nvidia-h100-mega-80gb", None).as_deref(), Some("H100-MEGA"));
        assert_eq!(canon("nvidia-h200-141gb", None).as_deref(), Some("H200"));
        assert_eq!(canon("nvidia-l4", None).as_deref(), Some("L4"));
        assert_eq!(canon("nvidia-tesla-t4", None).as_deref(), Some("T4"));
        assert_eq!(canon("nvidia-tesla-v100", None).as_deref(), Some("V100"));
        assert_eq!(canon("nvidia-b200", None).as_deref(), Some("B200"));
    }

    #[test]
    fn tpu_slices() {
        assert_eq!(canon("tpu-v4-8", None).as_deref(), Some("tpu-v4-8"));
        assert_eq!(canon("v5litepod-16", None).as_deref(), Some("tpu-v5litepod-16"));
        assert_eq!(canon("TPU v5e 8", None).as_deref(), Some("tpu-v5litepod-8"));
        assert_eq!(canon("tpu-v6e-1", None).as_deref(), Some("tpu-v6e-1"));
        assert_eq!(canon("v5p-8", None).as_deref(), Some("tpu-v5p-8"));
        assert_eq!(canonicalize("tpu-v3-32", None).map(|i| i.kind), Some(AcceleratorKind::Tpu));
        assert_eq!(canon("tpu-v9-8", None), None);
    }

    #[test]
    fn amd_and_case_spacing_variants() {
        assert_eq!(canon("MI300X", None).as_deref(), Some("MI300X"));
        assert_eq!(canon("AMD Instinct MI300X", None).as_deref(), Some("MI300X"));
        assert_eq!(canon("mi300x", None).as_deref(), Some("MI300X"));
        assert_eq!(canon("a100-80gb", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("A100 80GB", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("a100_80g", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon(" l40s ", None).as_deref(), Some("L40S"));
        assert_eq!(canon("L40s", None).as_deref(), Some("L40S"));
        assert_eq!(canon("GeForce RTX 4090", None).as_deref(), Some("RTX4090"));
        assert_eq!(canon("RTX 3060 Ti", None).as_deref(), Some("RTX3060Ti"));
        assert_eq!(canon("RTX6000Ada", None).as_deref(), Some("RTX6000-Ada"));
        assert_eq!(canon("A6000", None).as_deref(), Some("RTXA6000"));
        assert_eq!(canon("H200 SXM5", None).as_deref(), Some("H200"));
        assert_eq!(canon("V100-32G", None).as_deref(), Some("V100-32GB"));
        assert_eq!(canon("A100-80G", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("NVIDIA-H100-80GB-HBM3", None).as_deref(), Some("H100"));
        assert_eq!(canon("Tesla P100-PCIE-16GB", None).as_deref(), Some("P100"));
        assert_eq!(canon("NVIDIA A100-SXM4-80GB", None).as_deref(), Some("A100-80GB"));
        assert_eq!(canon("Tesla V100-SXM2-32GB", None).as_deref(), Some("V100-32GB"));
        assert_eq!(canon("", None), None);
        assert_eq!(canon("Z9000", None), None);
    }

    #[test]
    fn azure_and_lambda_instance_types() {
        let (a, n) = from_instance_type("azure", "Standard_ND96asr_v4").expect("ND96asr_v4");
        assert_eq!((a.name.as_str(), n), ("A100", 8.0));
        let (a, n) = from_instance_type("azure", "Standard_ND96amsr_A100_v4").expect("NDm A100");
        assert_eq!((a.name.as_str(), n), ("A100-80GB", 8.0));
        let (a, n) = from_instance_type("azure", "Standard_NV6ads_A10_v5").expect("NV6ads");
        assert_eq!(a.name, "A10");
        assert!((n - 1.0 / 6.0).abs() < 1e-9);
        assert!(from_instance_type("azure", "Standard_D2s_v5").is_none());

        let (a, n) = from_instance_type("lambda", "gpu_8x_h100_sxm5").expect("lambda h100");
        assert_eq!((a.name.as_str(), n), ("H100", 8.0));
        let (a, n) = from_instance_type("lambda", "gpu_1x_a10").expect("lambda a10");
        assert_eq!((a.name.as_str(), n), ("A10", 1.0));
        let (a, n) = from_instance_type("lambda", "gpu_8x_a100_80gb_sxm4").expect("lambda a100 80");
        assert_eq!((a.name.as_str(), n), ("A100-80GB", 8.0));
        let (a, _) = from_instance_type("lambda", "gpu_1x_a6000").expect("lambda a6000");
        assert_eq!(a.name, "RTXA6000");
        assert!(from_instance_type("lambda", "cpu_4x_general").is_none());
    }

    #[test]
    fn ibm_and_scp_instance_types() {
        let ibm = |p: &str| from_instance_type("ibm", p).map(|(a, n)| (a.name, n));
        assert_eq!(ibm("gx2-8x64x1v100"), Some(("V100".into(), 1.0)));
        assert_eq!(ibm("gx2-32x256x2v100"), Some(("V100".into(), 2.0)));
        assert_eq!(ibm("gx3-64x320x4l4"), Some(("L4".into(), 4.0)));
        assert_eq!(ibm("gx3-48x240x2l40s"), Some(("L40S".into(), 2.0)));
        assert_eq!(ibm("gx3d-24x120x1a100p"), Some(("A100-80GB".into(), 1.0)));
        assert_eq!(ibm("gx3d-160x1792x8h100"), Some(("H100".into(), 8.0)));
        assert_eq!(ibm("gx3d-160x1792x8h200"), Some(("H200".into(), 8.0)));
        assert_eq!(ibm("gx3d-208x1792x8mi300x"), Some(("MI300X".into(), 8.0)));
        assert_eq!(ibm("gx3d-160x1792x8gaudi3"), Some(("Gaudi3".into(), 8.0)));
        assert_eq!(ibm("bx2-8x32"), None);
        assert_eq!(ibm("gx4d-232x3840x8zz900"), None);
        let scp = |p: &str| from_instance_type("scp", p).map(|(a, n)| (a.name, n));
        assert_eq!(scp("g1v8v1"), Some(("V100-32GB".into(), 1.0)));
        assert_eq!(scp("g1v64v8"), Some(("V100-32GB".into(), 8.0)));
        assert_eq!(scp("g1v128a8"), Some(("A100-80GB".into(), 8.0)));
        assert_eq!(scp("s1v2m4"), None);
        assert_eq!(scp("g1vv1"), None);
        assert_eq!(scp("g1v8x1"), None);
    }

    #[test]
    fn every_reference_name_is_known() {
        // The names SkyPilot's shared metadata lists must all resolve to themselves.
        for name in [
            "A10", "A100", "A100-80GB", "A100-80GB-SXM", "A10G", "A40", "B200", "GH200", "H100", "H100-MEGA",
            "H100-NVL", "H100-NVLINK", "H100-SXM", "H200", "H200-SXM", "K80", "L4", "L40", "L40S", "M4000", "M60", "P100",
            "P4", "P4000", "RTX3060", "RTX3080", "RTX3090", "RTX4000-Ada", "RTX4090", "RTX6000", "RTX6000-Ada",
            "RTX8000", "RTXA4000", "RTXA4500", "RTXA5000", "RTXA6000", "T4", "T4g", "V100", "V100-32GB",
            "Gaudi HL-205", "MI300X", "Radeon MI25", "Radeon Pro V520",
        ] {
            assert_eq!(canon(name, None).as_deref(), Some(name), "{name}");
        }
    }

    #[test]
    fn nearest_names_suggests_close_spellings() {
        let near = nearest_names("A1000", 3, []);
        assert!(near.iter().any(|n| n == "A100"), "{near:?}");
        let near = nearest_names("H1OO", 3, []);
        assert!(near.iter().any(|n| n == "H100"), "{near:?}");
    }
}
