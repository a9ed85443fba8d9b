//! Accelerator identity for AWS instance types.
//!
//! With credentials, DescribeInstanceTypes names the GPU; its known errors are patched here
//! (L4 and A10G reported as 22888 MiB, `p5e`/`p5en` named `NVIDIA`, `p4de` missing the 80 GB
//! variant, `p3dn` V100 32 GB named `V100`). Without credentials the bulk file gives only the
//! GPU count, so the model comes from this static family table.

use skycat_catalog::accelerators::{canonicalize, AcceleratorInfo};

/// Instance family (the part before the `.`) → (GPU name as AWS writes it, memory per device
/// in GiB). Families with an accelerator that the bulk `GPU` column does not count (Neuron)
/// also carry their per-size device count in [`neuron_count`].
const FAMILIES: &[(&str, &str, f64)] = &[
    ("p2", "K80", 12.0),
    ("p3", "V100", 16.0),
    ("p3dn", "V100", 32.0),
    ("p4d", "A100", 40.0),
    ("p4de", "A100", 80.0),
    ("p5", "H100", 80.0),
    ("p5e", "H200", 141.0),
    ("p5en", "H200", 141.0),
    ("p6-b200", "B200", 180.0),
    ("g3", "M60", 8.0),
    ("g3s", "M60", 8.0),
    ("g4dn", "T4", 16.0),
    ("g4ad", "Radeon Pro V520", 8.0),
    ("g5", "A10G", 24.0),
    ("g5g", "T4g", 16.0),
    ("g6", "L4", 24.0),
    ("gr6", "L4", 24.0),
    ("g6f", "L4", 24.0),
    ("gr6f", "L4", 24.0),
    ("g6e", "L40S", 48.0),
    ("dl1", "Gaudi HL-205", 32.0),
    ("inf1", "Inferentia", 8.0),
    ("inf2", "Inferentia2", 32.0),
    ("trn1", "Trainium", 32.0),
    ("trn1n", "Trainium", 32.0),
    ("trn2", "Trainium2", 96.0),
];

pub fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// Neuron (Inferentia/Trainium) device count by instance size; the bulk `GPU` column is empty
/// for these.
pub fn neuron_count(instance_type: &str) -> Option<f64> {
    let n = match instance_type {
        "inf1.xlarge" | "inf1.2xlarge" => 1.0,
        "inf1.6xlarge" => 4.0,
        "inf1.24xlarge" => 16.0,
        "inf2.xlarge" | "inf2.8xlarge" => 1.0,
        "inf2.24xlarge" => 6.0,
        "inf2.48xlarge" => 12.0,
        "trn1.2xlarge" => 1.0,
        "trn1.32xlarge" | "trn1n.32xlarge" => 16.0,
        "trn2.48xlarge" => 16.0,
        _ => return None,
    };
    Some(n)
}

/// The accelerator of `instance_type` from the static table, with the bulk file's GPU count
/// (or the Neuron table). `None` for CPU-only families.
pub fn from_table(instance_type: &str, bulk_gpu_count: Option<f64>) -> Option<(AcceleratorInfo, f64)> {
    let fam = family(instance_type);
    let (_, name, mem) = FAMILIES.iter().find(|(f, _, _)| *f == fam)?;
    let count = bulk_gpu_count.or_else(|| neuron_count(instance_type))?;
    let mut info = canonicalize(name, Some(*mem))?;
    info.memory_gib = Some(*mem);
    Some((info, count))
}

/// Canonicalize the GPU DescribeInstanceTypes reports, patching its known errors.
/// `memory_mib` is per device.
pub fn from_api(instance_type: &str, name: &str, manufacturer: Option<&str>, memory_mib: Option<f64>) -> Option<AcceleratorInfo> {
    let fam = family(instance_type);
    let mut mem_gib = memory_mib.map(|m| m / 1024.0);
    let mut raw = name.trim().to_string();
    // p5e/p5en report the GPU as just "NVIDIA"; p4de's A100 80GB and p3dn's V100 32GB are named
    // like the smaller parts: take the table's name and memory for these families.
    if matches!(fam, "p5e" | "p5en" | "p4de" | "p3dn")
        || raw.eq_ignore_ascii_case("NVIDIA")
        || raw.is_empty()
    {
        if let Some((_, n, m)) = FAMILIES.iter().find(|(f, _, _)| *f == fam) {
            raw = n.to_string();
            mem_gib = Some(*m);
        }
    }
    // L4 / A10G report 22888 MiB (22.35 GiB); the parts have 24 GB.
    if matches!(raw.to_ascii_uppercase().as_str(), "L4" | "A10G") {
        mem_gib = Some(24.0);
    }
    let mut info = match canonicalize(&raw, mem_gib) {
        Some(i) => i,
        None => {
            let full = format!("{} {}", manufacturer.unwrap_or(""), raw);
            canonicalize(full.trim(), mem_gib)?
        }
    };
    if let Some(m) = mem_gib {
        info.memory_gib = Some((m * 100.0).round() / 100.0);
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_api_agree_on_common_families() {
        let (a, n) = from_table("g5.12xlarge", Some(4.0)).expect("g5 is a GPU family");
        assert_eq!((a.name.as_str(), n, a.memory_gib), ("A10G", 4.0, Some(24.0)));
        let (a, _) = from_table("p4de.24xlarge", Some(8.0)).expect("p4de");
        assert_eq!(a.name, "A100-80GB");
        assert!(from_table("m5.large", None).is_none());
        let (a, n) = from_table("inf2.48xlarge", None).expect("inf2 counts from the neuron table");
        assert_eq!((a.name.as_str(), n), ("Inferentia2", 12.0));
        assert_eq!(from_api("g6.xlarge", "L4", Some("NVIDIA"), Some(22888.0)).map(|a| a.memory_gib), Some(Some(24.0)));
        assert_eq!(from_api("p5e.48xlarge", "NVIDIA", Some("NVIDIA"), None).map(|a| a.name), Some("H200".into()));
        assert_eq!(from_api("p4d.24xlarge", "A100", Some("NVIDIA"), Some(40960.0)).map(|a| a.name), Some("A100".into()));
    }
}
