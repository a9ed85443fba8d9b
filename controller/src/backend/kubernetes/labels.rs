//! What accelerator a Kubernetes node carries, from the labels the common GPU stacks put on it,
//! mapped through the one accelerator registry ([`skycat_catalog::accelerators`]). The first
//! label present wins, in this order:
//!
//! 1. `skypilot.co/accelerator` (set by SkyPilot's labeler or by hand: `h100`, `a100-80gb`);
//! 2. `cloud.google.com/gke-accelerator` (`nvidia-tesla-a100`, `nvidia-h100-80gb`), and for TPUs
//!    `cloud.google.com/gke-tpu-accelerator` + `cloud.google.com/gke-tpu-topology`;
//! 3. `karpenter.k8s.aws/instance-gpu-name` (`a100`, `h100`, `l40s`; memory from
//!    `karpenter.k8s.aws/instance-gpu-memory`, MiB);
//! 4. `nvidia.com/gpu.product` from GPU Feature Discovery (`NVIDIA-H100-80GB-HBM3`,
//!    `NVIDIA-A100-SXM4-40GB`, `Tesla-T4`; memory from `nvidia.com/gpu.memory`, MiB);
//! 5. `gpu.nvidia.com/class` (CoreWeave: `A100_NVLINK_80GB`, `H100_NVLINK_80GB`, `RTX_A6000`).
//!
//! The device count is the node's `status.allocatable` of `nvidia.com/gpu`, `amd.com/gpu` or
//! `google.com/tpu`. The label that identified the accelerator is also the node selector a pod
//! for it gets. Spot nodes are told by `karpenter.sh/capacity-type: spot`,
//! `cloud.google.com/gke-spot: "true"`, `cloud.google.com/gke-preemptible: "true"` or
//! `eks.amazonaws.com/capacityType: SPOT`.

use std::collections::BTreeMap;

use skycat_catalog::accelerators::{canonicalize, AcceleratorInfo};

/// The extended resources that count devices, in the order they are looked for.
pub const DEVICE_RESOURCES: &[&str] = &["nvidia.com/gpu", "amd.com/gpu", "google.com/tpu"];

/// The label keys read for the accelerator, in priority order.
pub const ACCELERATOR_LABELS: &[&str] = &[
    "skypilot.co/accelerator",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-tpu-accelerator",
    "karpenter.k8s.aws/instance-gpu-name",
    "nvidia.com/gpu.product",
    "gpu.nvidia.com/class",
];

/// A node's accelerator as its labels name it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAccelerator {
    /// Canonical name (`H100`, `A100-80GB`, `tpu-v5litepod-8`).
    pub info: AcceleratorInfo,
    /// The label (key, value) that named it: the pod's node selector.
    pub selector: (String, String),
}

/// Reads the accelerator from `labels`; `None` when no known label names a known device.
pub fn accelerator_of(labels: &BTreeMap<String, String>) -> Option<NodeAccelerator> {
    for key in ACCELERATOR_LABELS {
        let Some(value) = labels.get(*key).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        let info = match *key {
            "cloud.google.com/gke-tpu-accelerator" => gke_tpu(value, labels.get("cloud.google.com/gke-tpu-topology")),
            "karpenter.k8s.aws/instance-gpu-name" => canonicalize(value, mib_label(labels, "karpenter.k8s.aws/instance-gpu-memory")),
            "nvidia.com/gpu.product" => canonicalize(&value.replace('-', " "), mib_label(labels, "nvidia.com/gpu.memory")),
            "gpu.nvidia.com/class" => coreweave_class(value),
            _ => canonicalize(value, None),
        };
        if let Some(info) = info {
            return Some(NodeAccelerator { info, selector: (key.to_string(), value.to_string()) });
        }
    }
    None
}

/// Whether the node is a spot / preemptible one.
pub fn is_spot(labels: &BTreeMap<String, String>) -> bool {
    let is = |k: &str, v: &str| labels.get(k).is_some_and(|x| x.eq_ignore_ascii_case(v));
    is("karpenter.sh/capacity-type", "spot")
        || is("cloud.google.com/gke-spot", "true")
        || is("cloud.google.com/gke-preemptible", "true")
        || is("eks.amazonaws.com/capacityType", "SPOT")
}

/// A memory label in MiB (`40960`), as GiB.
fn mib_label(labels: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    labels.get(key).and_then(|v| v.trim().parse::<f64>().ok()).filter(|m| *m > 0.0).map(|m| m / 1024.0)
}

/// GKE's TPU node pools: `tpu-v5-lite-podslice` with topology `2x4` is SkyPilot's `tpu-v5litepod-8`
/// (the slice's chip count is the product of the topology's dimensions).
fn gke_tpu(accelerator: &str, topology: Option<&String>) -> Option<AcceleratorInfo> {
    let generation = match accelerator {
        "tpu-v4-podslice" => "v4",
        "tpu-v5-lite-podslice" | "tpu-v5-lite-device" => "v5e",
        "tpu-v5p-slice" => "v5p",
        "tpu-v6e-slice" => "v6e",
        _ => return None,
    };
    let chips = match topology {
        Some(t) => t.split('x').map(|d| d.trim().parse::<u32>().ok()).product::<Option<u32>>()?,
        None => return canonicalize(&format!("tpu-{generation}"), None),
    };
    canonicalize(&format!("tpu-{generation}-{chips}"), None)
}

/// CoreWeave's classes spell the interconnect and memory with underscores: `A100_NVLINK_80GB`
/// is the 80 GB A100 board, `H100_NVLINK_80GB` the H100 SXM (SkyPilot's `H100`).
fn coreweave_class(class: &str) -> Option<AcceleratorInfo> {
    let cleaned: Vec<&str> = class.split('_').filter(|p| !matches!(p.to_ascii_uppercase().as_str(), "NVLINK" | "PCIE" | "SXM")).collect();
    canonicalize(&cleaned.join(" "), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn name(pairs: &[(&str, &str)]) -> Option<String> {
        accelerator_of(&labels(pairs)).map(|a| a.info.name)
    }

    #[test]
    fn each_stack_names_its_devices() {
        assert_eq!(name(&[("skypilot.co/accelerator", "h100")]).as_deref(), Some("H100"));
        assert_eq!(name(&[("skypilot.co/accelerator", "a100-80gb")]).as_deref(), Some("A100-80GB"));
        assert_eq!(name(&[("cloud.google.com/gke-accelerator", "nvidia-tesla-a100")]).as_deref(), Some("A100"));
        assert_eq!(name(&[("cloud.google.com/gke-accelerator", "nvidia-h100-80gb")]).as_deref(), Some("H100"));
        assert_eq!(name(&[("cloud.google.com/gke-accelerator", "nvidia-l4")]).as_deref(), Some("L4"));
        assert_eq!(
            name(&[("cloud.google.com/gke-tpu-accelerator", "tpu-v5-lite-podslice"), ("cloud.google.com/gke-tpu-topology", "2x4")]).as_deref(),
            Some("tpu-v5litepod-8")
        );
        assert_eq!(name(&[("karpenter.k8s.aws/instance-gpu-name", "l40s")]).as_deref(), Some("L40S"));
        assert_eq!(
            name(&[("karpenter.k8s.aws/instance-gpu-name", "a100"), ("karpenter.k8s.aws/instance-gpu-memory", "81920")]).as_deref(),
            Some("A100-80GB")
        );
        assert_eq!(name(&[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")]).as_deref(), Some("H100"));
        assert_eq!(name(&[("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB")]).as_deref(), Some("A100"));
        assert_eq!(name(&[("nvidia.com/gpu.product", "Tesla-T4")]).as_deref(), Some("T4"));
        assert_eq!(name(&[("gpu.nvidia.com/class", "A100_NVLINK_80GB")]).as_deref(), Some("A100-80GB"));
        assert_eq!(name(&[("gpu.nvidia.com/class", "H100_NVLINK_80GB")]).as_deref(), Some("H100"));
        assert_eq!(name(&[("gpu.nvidia.com/class", "RTX_A6000")]).as_deref(), Some("RTXA6000"));
    }

    #[test]
    fn priority_and_unknowns() {
        // SkyPilot's own label wins over what GFD reports.
        let a = accelerator_of(&labels(&[("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"), ("skypilot.co/accelerator", "h100")])).unwrap();
        assert_eq!(a.info.name, "H100");
        assert_eq!(a.selector, ("skypilot.co/accelerator".to_string(), "h100".to_string()));
        // An unknown value falls through to the next label.
        assert_eq!(name(&[("skypilot.co/accelerator", "warp-drive"), ("nvidia.com/gpu.product", "NVIDIA-L4")]).as_deref(), Some("L4"));
        assert_eq!(name(&[("kubernetes.io/os", "linux")]), None);
        assert_eq!(name(&[("cloud.google.com/gke-tpu-accelerator", "tpu-v5-lite-podslice"), ("cloud.google.com/gke-tpu-topology", "2xq")]), None);
    }

    #[test]
    fn spot_nodes() {
        assert!(is_spot(&labels(&[("karpenter.sh/capacity-type", "spot")])));
        assert!(is_spot(&labels(&[("cloud.google.com/gke-spot", "true")])));
        assert!(is_spot(&labels(&[("eks.amazonaws.com/capacityType", "SPOT")])));
        assert!(!is_spot(&labels(&[("karpenter.sh/capacity-type", "on-demand")])));
    }
}
