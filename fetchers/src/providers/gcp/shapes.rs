//! Machine shapes for pricing without the Compute API, the N1 GPU attachment limits, and which
//! shapes GCP sells on demand.

/// A machine shape: name, vCPUs, memory GiB, bundled GPU (canonical name, count).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub name: String,
    pub vcpus: f64,
    pub memory_gib: f64,
    pub gpu: Option<(String, f64)>,
}

/// Published shapes of the families skycat prices without the Compute API. Generated from the
/// per-family rules of the machine-family docs (memory per vCPU; GPU-optimised sizes listed).
pub static SHAPES: std::sync::LazyLock<Vec<Shape>> = std::sync::LazyLock::new(|| {
    let mut v = Vec::new();
    let mut family = |prefix: &str, sizes: &[u32], gib_per_vcpu: f64| {
        for &n in sizes {
            v.push(Shape {
                name: format!("{prefix}-{n}"),
                vcpus: n as f64,
                memory_gib: n as f64 * gib_per_vcpu,
                gpu: None,
            });
        }
    };
    family("n1-standard", &[1, 2, 4, 8, 16, 32, 64, 96], 3.75);
    family("n1-highmem", &[2, 4, 8, 16, 32, 64, 96], 6.5);
    family("n1-highcpu", &[2, 4, 8, 16, 32, 64, 96], 0.9);
    family("n2-standard", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 4.0);
    family("n2-highmem", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 8.0);
    family("n2-highcpu", &[2, 4, 8, 16, 32, 48, 64, 80, 96], 1.0);
    family("e2-standard", &[2, 4, 8, 16, 32], 4.0);
    family("e2-highmem", &[2, 4, 8, 16], 8.0);
    family("e2-highcpu", &[2, 4, 8, 16, 32], 1.0);
    family("c2-standard", &[4, 8, 16, 30, 60], 4.0);
    family("n2d-standard", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], 4.0);
    family("n2d-highmem", &[2, 4, 8, 16, 32, 48, 64, 80, 96], 8.0);
    family("n2d-highcpu", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], 1.0);
    family("c3-standard", &[4, 8, 22, 44, 88, 176], 4.0);
    family("c3-highmem", &[4, 8, 22, 44, 88, 176], 8.0);
    family("c3-highcpu", &[4, 8, 22, 44, 88, 176], 2.0);
    // Memory-optimised sizes have no per-vCPU rule: cloud.google.com/compute/docs/memory-optimized-machines.
    let mut fixed = |name: &str, vcpus: f64, mem: f64| {
        v.push(Shape { name: name.into(), vcpus, memory_gib: mem, gpu: None });
    };
    fixed("m1-megamem-96", 96.0, 1433.6);
    fixed("m1-ultramem-40", 40.0, 961.0);
    fixed("m1-ultramem-80", 80.0, 1922.0);
    fixed("m1-ultramem-160", 160.0, 3844.0);
    fixed("m2-ultramem-208", 208.0, 5888.0);
    fixed("m2-ultramem-416", 416.0, 11776.0);
    fixed("m2-megamem-416", 416.0, 5888.0);
    fixed("m2-hypermem-416", 416.0, 8832.0);
    fixed("m3-ultramem-32", 32.0, 976.0);
    fixed("m3-ultramem-64", 64.0, 1952.0);
    fixed("m3-ultramem-128", 128.0, 3904.0);
    fixed("m3-megamem-64", 64.0, 976.0);
    fixed("m3-megamem-128", 128.0, 1952.0);
    let mut gpu = |name: &str, vcpus: f64, mem: f64, g: &str, n: f64| {
        v.push(Shape { name: name.into(), vcpus, memory_gib: mem, gpu: Some((g.into(), n)) });
    };
    gpu("a2-highgpu-1g", 12.0, 85.0, "A100", 1.0);
    gpu("a2-highgpu-2g", 24.0, 170.0, "A100", 2.0);
    gpu("a2-highgpu-4g", 48.0, 340.0, "A100", 4.0);
    gpu("a2-highgpu-8g", 96.0, 680.0, "A100", 8.0);
    gpu("a2-megagpu-16g", 96.0, 1360.0, "A100", 16.0);
    gpu("a2-ultragpu-1g", 12.0, 170.0, "A100-80GB", 1.0);
    gpu("a2-ultragpu-2g", 24.0, 340.0, "A100-80GB", 2.0);
    gpu("a2-ultragpu-4g", 48.0, 680.0, "A100-80GB", 4.0);
    gpu("a2-ultragpu-8g", 96.0, 1360.0, "A100-80GB", 8.0);
    // a3-highgpu with fewer than 8 GPUs: spot (and flex-start) only, see [`sold_on_demand`].
    gpu("a3-highgpu-1g", 26.0, 234.0, "H100", 1.0);
    gpu("a3-highgpu-2g", 52.0, 468.0, "H100", 2.0);
    gpu("a3-highgpu-4g", 104.0, 936.0, "H100", 4.0);
    gpu("a3-highgpu-8g", 208.0, 1872.0, "H100", 8.0);
    // A4 is billed per B200 "slice" SKU that includes the VM share (no core/RAM SKUs).
    gpu("a4-highgpu-8g", 224.0, 3968.0, "B200", 8.0);
    for (n, gpus) in [(4, 1.0), (8, 1.0), (12, 1.0), (16, 1.0), (24, 2.0), (32, 1.0), (48, 4.0), (96, 8.0)] {
        gpu(&format!("g2-standard-{n}"), n as f64, 4.0 * n as f64, "L4", gpus);
    }
    v
});

/// GPUs attachable to N1 hosts: (GPU, count, max vCPUs, max memory GiB), from
/// cloud.google.com/compute/docs/gpus (N1 general-purpose GPU limits).
pub const N1_GPU_LIMITS: &[(&str, f64, f64, f64)] = &[
    ("T4", 1.0, 48.0, 312.0),
    ("T4", 2.0, 48.0, 312.0),
    ("T4", 4.0, 96.0, 624.0),
    ("V100", 1.0, 12.0, 78.0),
    ("V100", 2.0, 24.0, 156.0),
    ("V100", 4.0, 48.0, 312.0),
    ("V100", 8.0, 96.0, 624.0),
    ("P100", 1.0, 16.0, 104.0),
    ("P100", 2.0, 32.0, 208.0),
    ("P100", 4.0, 64.0, 208.0),
    ("P4", 1.0, 24.0, 156.0),
    ("P4", 2.0, 48.0, 312.0),
    ("P4", 4.0, 96.0, 624.0),
];

/// Whether GCP sells the machine type on demand. `a3-highgpu-1g/2g/4g` are provisioned only as
/// spot or flex-start VMs (the A3 High section of cloud.google.com/compute/docs/accelerator-
/// optimized-machines; gpuhunt drops their on-demand offers for the same reason): the on-demand
/// core/RAM/GPU rates exist in the Catalog but buy nothing, so they get no on-demand price.
pub fn sold_on_demand(machine_type: &str) -> bool {
    !matches!(machine_type, "a3-highgpu-1g" | "a3-highgpu-2g" | "a3-highgpu-4g")
}
