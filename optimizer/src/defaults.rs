//! SkyPilot's default machine rules: which instance a task gets when it does not name one.
//!
//! The facts come from SkyPilot 0.14.1 (`sky/catalog/<cloud>_catalog.py`,
//! `get_default_instance_type` and GCP's `get_instance_type_for_accelerator`); the code is
//! skycat's own.
//!
//! * **CPU-only tasks** (no accelerators, no instance type): each cloud has a default shape.
//!   When the task gives neither `cpus` nor `memory`, AWS, Azure, GCP, OCI and Cudo ask for 8+
//!   vCPUs, Fluidstack 6+, Lambda 30+ (the size of `gpu_1x_a10`); the others ask for nothing.
//!   When the task gives no `memory`, AWS, Azure, GCP, OCI, Fluidstack and Lambda ask for 4 GiB
//!   per vCPU and Cudo for 2. AWS, Azure, GCP and OCI pick from a few general-purpose families
//!   only; every other cloud picks from all its instances, GPU machines included, so a CPU-only
//!   task on Lambda runs on the cheapest Lambda machine with enough vCPUs (`gpu_1x_a10`).
//! * **GCP GPUs on N1 hosts** (T4, V100, P100, P4, K80…): the host is an `n1-standard`,
//!   `n1-highmem` or `n1-highcpu` VM. With neither `cpus` nor `memory` it has at least as many
//!   vCPUs as AWS gives that GPU (8 for `V100:1`, 4 for `T4:1`, …); with no `memory` it has at
//!   least 4 GiB per requested vCPU.
//!
//! Clouds SkyPilot 0.14.1 has no catalog for (ovhcloud, scaleway, simplepod, SSH pools, …) keep
//! the common default: 8+ vCPUs, 4 GiB per vCPU, CPU-only machines.

use crate::spec::SizeReq;

/// A cloud's default shape for CPU-only tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuDefault {
    /// vCPUs (at least) when the task gives no `cpus` (and, unless
    /// `cpus_even_with_memory`, no `memory` either); `None`: no bound.
    pub cpus: Option<f64>,
    /// OCI applies its vCPU default whenever `cpus` is missing, even with `memory` given.
    pub cpus_even_with_memory: bool,
    /// GiB per vCPU (at least) when the task gives no `memory`; `None`: no bound.
    pub mem_ratio: Option<f64>,
    /// Instance-type families the default is picked from (`None`: every instance type).
    pub families: Option<Family>,
    /// Whether GPU machines are among the candidates (true for every cloud without families).
    pub gpu_instances: bool,
}

/// The instance families a cloud's CPU-only default is picked from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Aws,
    Azure,
    Gcp,
    Oci,
}

const fn rule(cpus: Option<f64>, mem_ratio: Option<f64>, families: Option<Family>) -> CpuDefault {
    CpuDefault { cpus, cpus_even_with_memory: false, mem_ratio, families, gpu_instances: families.is_none() }
}

/// The common default (8+ vCPUs, 4 GiB per vCPU, CPU-only machines), for clouds SkyPilot has
/// no rule for.
pub const COMMON: CpuDefault =
    CpuDefault { cpus: Some(8.0), cpus_even_with_memory: false, mem_ratio: Some(4.0), families: None, gpu_instances: false };

/// The CPU-only default of `cloud` (lower-case catalog name).
pub fn cpu_default(cloud: &str) -> CpuDefault {
    match cloud {
        "aws" => rule(Some(8.0), Some(4.0), Some(Family::Aws)),
        "azure" => rule(Some(8.0), Some(4.0), Some(Family::Azure)),
        "gcp" => rule(Some(8.0), Some(4.0), Some(Family::Gcp)),
        "oci" => CpuDefault { cpus_even_with_memory: true, ..rule(Some(8.0), Some(4.0), Some(Family::Oci)) },
        "cudo" => rule(Some(8.0), Some(2.0), None),
        "fluidstack" => rule(Some(6.0), Some(4.0), None),
        "lambda" => rule(Some(30.0), Some(4.0), None),
        "do" | "hyperbolic" | "mithril" | "nebius" | "paperspace" | "primeintellect" | "runpod" | "seeweb"
        | "shadeform" | "vast" => rule(None, None, None),
        _ => COMMON,
    }
}

impl CpuDefault {
    /// The vCPU and memory bounds for a task that asked for `cpus` / `memory` (either may be
    /// missing): (vCPUs, memory GiB, GiB per vCPU).
    pub fn bounds(&self, cpus: Option<SizeReq>, memory: Option<SizeReq>) -> (Option<SizeReq>, Option<SizeReq>, Option<f64>) {
        let cpus = cpus.or_else(|| {
            let applies = memory.is_none() || self.cpus_even_with_memory;
            self.cpus.filter(|_| applies).map(|v| SizeReq { value: v, at_least: true })
        });
        let ratio = if memory.is_none() { self.mem_ratio } else { None };
        (cpus, memory, ratio)
    }

    /// `8+ vCPUs and 4 GiB per vCPU`, for notes and explanations.
    pub fn describe(&self, cpus: Option<SizeReq>, memory: Option<SizeReq>) -> String {
        let (c, m, r) = self.bounds(cpus, memory);
        let mut parts = Vec::new();
        if let Some(c) = c {
            parts.push(format!("{c} vCPUs"));
        }
        if let Some(m) = m {
            parts.push(format!("{m} GiB"));
        }
        if let Some(r) = r {
            parts.push(format!("{} GiB per vCPU", crate::spec::fmt_count(r)));
        }
        if parts.is_empty() {
            "no size bound".into()
        } else {
            parts.join(" and ")
        }
    }
}

/// Whether `instance_type` belongs to the families `family` picks CPU-only defaults from.
pub fn in_family(family: Family, instance_type: &str) -> bool {
    match family {
        // m6i, m6id, m7i, r6i, r6id, r7i, c6i, c6id, c7i.
        Family::Aws => {
            let fam = instance_type.split('.').next().unwrap_or("");
            matches!(fam, "m6i" | "m6id" | "m7i" | "r6i" | "r6id" | "r7i" | "c6i" | "c6id" | "c7i") && instance_type.contains('.')
        }
        // Ds_v5, Es_v5, Fs_v2 (`Standard_D8s_v5`, `Standard_E16s_v5`, `Standard_F8s_v2`).
        Family::Azure => matches!(azure_family(instance_type).as_deref(), Some("Ds_v5" | "Es_v5" | "Fs_v2")),
        Family::Gcp => ["n2-standard-", "n2-highmem-", "n2-highcpu-", "n4-standard-", "n4-highcpu-", "n4-highmem-"]
            .iter()
            .any(|p| instance_type.starts_with(p)),
        Family::Oci => instance_type.starts_with("VM.Standard.E") || instance_type.starts_with("VM.Standard3"),
    }
}

/// Azure's family of a size name: the letters before the vCPU count plus what follows it
/// (`Standard_D8s_v5` → `Ds_v5`; constrained sizes `Standard_E4-2s_v5` → `E_s_v5`).
fn azure_family(instance_type: &str) -> Option<String> {
    let s = instance_type.strip_prefix("Standard_")?;
    let s = s.strip_suffix("_Promo").unwrap_or(s);
    let letters: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let rest = &s[letters.len()..];
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if letters.is_empty() || digits == 0 {
        return None;
    }
    let rest = &rest[digits..];
    match rest.strip_prefix('-') {
        Some(r) => {
            let d = r.chars().take_while(|c| c.is_ascii_digit()).count();
            Some(format!("{letters}_{}", &r[d..]))
        }
        None => Some(format!("{letters}{rest}")),
    }
}

/// Whether a GCP offer is an N1 host carrying a GPU, whose host SkyPilot chooses by rule
/// (TPU hosts excluded).
pub fn is_gcp_n1_gpu_host(instance_type: &str) -> bool {
    instance_type.starts_with("n1-") && !instance_type.contains("tpu")
}

/// Whether an N1 host is of the families SkyPilot attaches GPUs to.
pub fn is_gcp_default_host(instance_type: &str) -> bool {
    ["n1-standard-", "n1-highmem-", "n1-highcpu-"].iter().any(|p| instance_type.starts_with(p))
}

/// GCP's default host vCPUs for `count` of an N1-attached GPU (canonical name); `None` where
/// SkyPilot has no entry for that count.
pub fn gcp_host_cpus(accelerator: &str, count: f64) -> Option<f64> {
    if count.fract() != 0.0 {
        return None;
    }
    let n = count as u32;
    let v = match accelerator.to_ascii_uppercase().as_str() {
        "K80" => match n {
            1 => 4,
            2 => 8,
            4 => 16,
            8 => 32,
            16 => 64,
            _ => return None,
        },
        "T4" => match n {
            1 => 4,
            2 => 8,
            4 => 48,
            _ => return None,
        },
        // V100, P100 and every other N1-attached GPU.
        _ => match n {
            1 => 8,
            2 => 16,
            4 => 32,
            8 => 64,
            16 => 128,
            _ => return None,
        },
    };
    Some(v as f64)
}

/// The only GCP machine types SkyPilot picks for GPUs that come with their own machine family
/// (`_ACC_INSTANCE_TYPE_DICTS`), by canonical accelerator name and count; `None` for the other
/// accelerators. Other types carrying these GPUs (`a3-edgegpu-8g`, …) are chosen only when named.
pub fn gcp_accelerator_hosts(accelerator: &str, count: f64) -> Option<&'static [&'static str]> {
    let n = if count.fract() == 0.0 { count as u32 } else { 0 };
    let table: &[(u32, &[&str])] = match accelerator {
        "A100" => &[(1, &["a2-highgpu-1g"]), (2, &["a2-highgpu-2g"]), (4, &["a2-highgpu-4g"]), (8, &["a2-highgpu-8g"]), (16, &["a2-megagpu-16g"])],
        "A100-80GB" => &[(1, &["a2-ultragpu-1g"]), (2, &["a2-ultragpu-2g"]), (4, &["a2-ultragpu-4g"]), (8, &["a2-ultragpu-8g"])],
        "L4" => &[
            (1, &["g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16", "g2-standard-32"]),
            (2, &["g2-standard-24"]),
            (4, &["g2-standard-48"]),
            (8, &["g2-standard-96"]),
        ],
        "H100" => &[(1, &["a3-highgpu-1g"]), (2, &["a3-highgpu-2g"]), (4, &["a3-highgpu-4g"]), (8, &["a3-highgpu-8g"])],
        "H100-MEGA" => &[(8, &["a3-megagpu-8g"])],
        "H200" => &[(8, &["a3-ultragpu-8g"])],
        "B200" => &[(8, &["a4-highgpu-8g"])],
        "RTXPRO6000" => &[(1, &["g4-standard-48"]), (2, &["g4-standard-96"]), (4, &["g4-standard-192"]), (8, &["g4-standard-384"])],
        _ => return None,
    };
    Some(table.iter().find(|(c, _)| *c == n).map_or(&[][..], |(_, t)| *t))
}

/// Cloud features a task may need (SkyPilot's `CloudImplementationFeatures` that change where a
/// task can go), as bits.
pub const FEAT_MULTI_NODE: u8 = 1;
pub const FEAT_SPOT: u8 = 2;
pub const FEAT_OPEN_PORTS: u8 = 4;
/// A `disk_tier` other than `best`.
pub const FEAT_CUSTOM_DISK_TIER: u8 = 8;
/// `network_tier: best`.
pub const FEAT_CUSTOM_NETWORK_TIER: u8 = 16;
/// A `file_mounts` entry in `MOUNT` mode.
pub const FEAT_STORAGE_MOUNTING: u8 = 32;
pub const FEAT_LOCAL_DISK: u8 = 64;

/// The features SkyPilot 0.14.1 says `cloud` lacks (its clouds' `_CLOUD_UNSUPPORTED_FEATURES`
/// and `_unsupported_features_for_resources`); SkyPilot leaves a cloud out of a plan that needs
/// one of them. Clouds SkyPilot does not know lack nothing here.
pub fn unsupported_features(cloud: &str) -> u8 {
    const TIERS: u8 = FEAT_CUSTOM_DISK_TIER | FEAT_CUSTOM_NETWORK_TIER | FEAT_LOCAL_DISK;
    match cloud {
        "aws" => 0,
        "gcp" | "oci" => FEAT_LOCAL_DISK,
        "azure" | "nebius" => FEAT_CUSTOM_NETWORK_TIER | FEAT_LOCAL_DISK,
        "lambda" | "cudo" | "do" | "fluidstack" | "paperspace" => TIERS | FEAT_SPOT,
        "runpod" | "vast" => TIERS | FEAT_MULTI_NODE | FEAT_STORAGE_MOUNTING,
        "hyperbolic" => TIERS | FEAT_MULTI_NODE | FEAT_OPEN_PORTS | FEAT_SPOT | FEAT_STORAGE_MOUNTING,
        "mithril" => TIERS | FEAT_OPEN_PORTS,
        "primeintellect" => TIERS | FEAT_MULTI_NODE,
        "seeweb" | "shadeform" => TIERS | FEAT_MULTI_NODE | FEAT_SPOT | FEAT_STORAGE_MOUNTING,
        // SkyPilot's ibm.py: no custom disk tier, no open ports, and no region offers spot.
        "ibm" => FEAT_CUSTOM_DISK_TIER | FEAT_OPEN_PORTS | FEAT_SPOT,
        // SkyPilot's scp.py `_CLOUD_UNSUPPORTED_FEATURES`.
        "scp" => FEAT_MULTI_NODE | FEAT_SPOT | FEAT_CUSTOM_DISK_TIER | FEAT_OPEN_PORTS,
        _ => 0,
    }
}

/// Nebius offers `network_tier: best` (InfiniBand) on 8-GPU H100, H200, B200 and B300 machines.
pub fn nebius_feature_exceptions(accelerator: &str, count: f64) -> u8 {
    let ib = ["h100", "h200", "b200", "b300"].contains(&accelerator.to_ascii_lowercase().as_str());
    if ib && count == 8.0 {
        FEAT_CUSTOM_NETWORK_TIER
    } else {
        0
    }
}

/// `multi-node clusters, open ports` for a feature mask.
pub fn feature_names(mask: u8) -> String {
    let names = [
        (FEAT_MULTI_NODE, "multi-node clusters"),
        (FEAT_SPOT, "spot instances"),
        (FEAT_OPEN_PORTS, "open ports"),
        (FEAT_CUSTOM_DISK_TIER, "a custom disk_tier"),
        (FEAT_CUSTOM_NETWORK_TIER, "network_tier: best"),
        (FEAT_STORAGE_MOUNTING, "MOUNT-mode file_mounts"),
        (FEAT_LOCAL_DISK, "local_disk"),
    ];
    names.iter().filter(|(b, _)| mask & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

/// GiB per requested vCPU on a GCP GPU host when the task gives no `memory`.
pub const GCP_GPU_HOST_MEMORY_PER_CPU: f64 = 4.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert!(in_family(Family::Aws, "m6i.2xlarge"));
        assert!(in_family(Family::Aws, "c7i.large"));
        assert!(!in_family(Family::Aws, "m6a.2xlarge"));
        assert!(!in_family(Family::Aws, "t3.large"));
        assert!(in_family(Family::Azure, "Standard_D8s_v5"));
        assert!(in_family(Family::Azure, "Standard_F16s_v2"));
        assert!(!in_family(Family::Azure, "Standard_D8as_v5"));
        assert!(!in_family(Family::Azure, "Standard_E4-2s_v5"));
        assert!(!in_family(Family::Azure, "Standard_NC6s_v3"));
        assert!(in_family(Family::Gcp, "n2-standard-8"));
        assert!(!in_family(Family::Gcp, "e2-standard-8"));
        assert!(in_family(Family::Oci, "VM.Standard.E4.Flex$_8_32"));
        assert!(!in_family(Family::Oci, "VM.GPU.A10.1"));
    }

    #[test]
    fn bounds_follow_what_the_task_gave() {
        let lambda = cpu_default("lambda");
        let c8 = Some(SizeReq { value: 8.0, at_least: true });
        assert_eq!(lambda.bounds(None, None), (Some(SizeReq { value: 30.0, at_least: true }), None, Some(4.0)));
        assert_eq!(lambda.bounds(c8, None), (c8, None, Some(4.0)));
        let m = Some(SizeReq { value: 16.0, at_least: true });
        assert_eq!(lambda.bounds(None, m), (None, m, None));
        assert_eq!(cpu_default("oci").bounds(None, m).0, Some(SizeReq { value: 8.0, at_least: true }));
        assert_eq!(cpu_default("runpod").bounds(None, None), (None, None, None));
        assert_eq!(cpu_default("cudo").bounds(None, None).2, Some(2.0));
        assert_eq!(cpu_default("ovhcloud"), COMMON);
    }

    #[test]
    fn gcp_hosts() {
        assert_eq!(gcp_host_cpus("V100", 1.0), Some(8.0));
        assert_eq!(gcp_host_cpus("T4", 1.0), Some(4.0));
        assert_eq!(gcp_host_cpus("T4", 4.0), Some(48.0));
        assert_eq!(gcp_host_cpus("P4", 2.0), Some(16.0));
        assert_eq!(gcp_host_cpus("T4", 8.0), None);
        assert!(is_gcp_n1_gpu_host("n1-highcpu-2") && !is_gcp_n1_gpu_host("n1-356-96-tpu"));
        assert!(is_gcp_default_host("n1-highmem-8") && !is_gcp_default_host("n1-megamem-96"));
        assert_eq!(gcp_accelerator_hosts("H100", 8.0), Some(&["a3-highgpu-8g"][..]));
        assert_eq!(gcp_accelerator_hosts("H200", 1.0), Some(&[][..]));
        assert_eq!(gcp_accelerator_hosts("V100", 1.0), None);
        assert_eq!(unsupported_features("runpod") & FEAT_MULTI_NODE, FEAT_MULTI_NODE);
        assert_eq!(unsupported_features("aws"), 0);
        assert_eq!(unsupported_features("ibm") & (FEAT_SPOT | FEAT_MULTI_NODE), FEAT_SPOT);
        assert_eq!(unsupported_features("scp") & FEAT_MULTI_NODE, FEAT_MULTI_NODE);
        assert_eq!(feature_names(FEAT_MULTI_NODE | FEAT_OPEN_PORTS), "multi-node clusters, open ports");
    }
}
