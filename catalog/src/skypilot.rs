//! SkyPilot's catalog layout (`catalogs/v7/<cloud>/vms.csv`): import and export.
//!
//! Import reads any of SkyPilot's per-cloud column orders by header name, so one reader serves
//! every cloud. Export writes each cloud in its own published column order, so SkyPilot can run
//! on catalogs skycat fetched.
//!
//! GCP publishes host VMs and accelerators as separate rows (an accelerator row has an empty
//! `InstanceType` and is priced for the count shown). On import they are expanded into launchable
//! host + accelerator offers whose price is the sum, following the host families GCP allows for
//! each accelerator ([`gcp_accelerator_for_host`]); the parts are kept in `price_breakdown`, and
//! export splits them back into SkyPilot's separate rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::accelerators::{self, AcceleratorKind};
use crate::error::{CatalogError, Result};
use crate::offer::{HypervGenerations, Offer};

/// GCP's TPU rows use this number where the price is unknown; it is not a price.
const GCP_PLACEHOLDER_PRICE: f64 = 700.0;

/// Counters of rows the import left out, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub rows_read: usize,
    pub offers: usize,
    /// Rows with neither an on-demand nor a spot price.
    pub skipped_no_price: usize,
    /// GCP accelerator rows no allowed host in the same zone could carry (and host rows of GPU
    /// families whose accelerator row is missing).
    pub skipped_unpaired: usize,
    /// Prices GCP marks with its placeholder.
    pub placeholder_prices: usize,
    /// Accelerator counts that contradict the instance type's documented shape and were set
    /// from the registry instead.
    pub corrected_counts: usize,
    /// Spot-market instances whose price the source files under `Price` (primeintellect's
    /// `…__SPOT` types), moved to the spot price.
    pub spot_only_rows: usize,
}

/// One raw row, columns resolved by name.
#[derive(Debug, Clone, Default)]
struct Row {
    line: usize,
    instance_type: String,
    accelerator_name: String,
    accelerator_count: f64,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
    gpu_info: String,
    price: Option<f64>,
    spot_price: Option<f64>,
    region: String,
    zone: Option<String>,
    /// Azure's `Generation` cell (`V1,V2`); other clouds' files have no such column.
    generations: Option<HypervGenerations>,
}

fn parse_opt_f64(path: &Path, line: usize, field: &str, raw: &str) -> Result<Option<f64>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let v: f64 = raw.parse().map_err(|_| CatalogError::Row {
        path: path.to_path_buf(),
        line,
        field: field.into(),
        message: format!("not a number: {raw:?}"),
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(CatalogError::Row {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            message: format!("not a non-negative number: {raw:?}"),
        });
    }
    Ok(Some(v))
}

fn read_rows(path: &Path, text: &str) -> Result<Vec<Row>> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| CatalogError::file(path, format!("bad CSV header: {e}")))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| CatalogError::file(path, format!("missing column `{name}` in the header")))
    };
    let (c_type, c_region) = (need("InstanceType")?, need("Region")?);
    let (c_acc, c_count, c_vcpu, c_mem, c_info) =
        (col("AcceleratorName"), col("AcceleratorCount"), col("vCPUs"), col("MemoryGiB"), col("GpuInfo"));
    let (c_price, c_spot, c_zone) = (col("Price"), col("SpotPrice"), col("AvailabilityZone"));
    let c_generation = col("Generation");
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| CatalogError::Row {
            path: path.to_path_buf(),
            line,
            field: "(row)".into(),
            message: e.to_string(),
        })?;
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim().to_string();
        let num = |c: Option<usize>, field: &str| parse_opt_f64(path, line, field, &get(c));
        let zone = get(c_zone);
        let generation = get(c_generation);
        let generations = match generation.as_str() {
            "" => None,
            text => Some(HypervGenerations::parse(text).map_err(|message| CatalogError::Row {
                path: path.to_path_buf(),
                line,
                field: "Generation".into(),
                message,
            })?),
        };
        rows.push(Row {
            line,
            instance_type: get(Some(c_type)),
            accelerator_name: get(c_acc),
            accelerator_count: num(c_count, "AcceleratorCount")?.unwrap_or(0.0),
            vcpus: num(c_vcpu, "vCPUs")?,
            memory_gib: num(c_mem, "MemoryGiB")?,
            gpu_info: get(c_info),
            price: num(c_price, "Price")?,
            spot_price: num(c_spot, "SpotPrice")?,
            region: get(Some(c_region)),
            zone: (!zone.is_empty()).then_some(zone),
            generations,
        });
    }
    Ok(rows)
}

/// Per-device memory (GiB) in SkyPilot's `GpuInfo` cell, which is a Python dict literal (or JSON):
/// `{'Gpus': [{'Name': 'A100', …, 'MemoryInfo': {'SizeInMiB': 40960}}], …}`.
fn gpu_info_memory_gib(info: &str) -> Option<f64> {
    let at = info.find("SizeInMiB")?;
    let rest = &info[at + "SizeInMiB".len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().ok().filter(|m| *m > 0.0).map(|mib| mib / 1024.0)
}

fn gpu_info_vendor(info: &str) -> Option<String> {
    let at = info.find("Manufacturer")?;
    let rest = &info[at + "Manufacturer".len()..];
    let start = rest.find(['\'', '"'])?;
    let rest = &rest[start + 1..];
    let end = rest.find(['\'', '"'])?;
    Some(rest[..end].to_ascii_lowercase())
}

/// The CPU architecture an instance-type name implies, where the provider's naming says it.
pub fn infer_arch(cloud: &str, instance_type: &str, accelerator: Option<&str>) -> Option<String> {
    let arm = match cloud {
        "aws" => {
            let family = instance_type.split('.').next().unwrap_or("");
            // Graviton families carry a `g` among the modifiers after the generation digit
            // (c7g, m6gd, im4gn, is4gen, g5g, t4g); mac2 hosts are Apple silicon.
            let modifiers: String = family.chars().skip_while(|c| !c.is_ascii_digit()).skip_while(|c| c.is_ascii_digit()).collect();
            modifiers.contains('g') || family.starts_with("mac2") || family == "a1"
        }
        "gcp" => instance_type.starts_with("t2a-") || instance_type.starts_with("c4a-"),
        "azure" => {
            // Ampere Altra sizes carry a `p` in the size letters: D2ps_v5, E4pds_v5.
            let s = instance_type.strip_prefix("Standard_").unwrap_or(instance_type);
            let letters: String = s.chars().skip_while(|c| !c.is_ascii_digit()).skip_while(|c| c.is_ascii_digit()).take_while(|c| *c != '_').collect();
            letters.contains('p')
        }
        "oci" => instance_type.contains(".A1.") || instance_type.contains(".A2."),
        _ => false,
    };
    let arm = arm || accelerator == Some("GH200");
    match (arm, cloud) {
        (true, _) => Some("arm64".into()),
        (false, "aws" | "gcp" | "azure" | "oci") => Some("x86_64".into()),
        _ => None,
    }
}

/// A positive price, or `None` (SkyPilot writes 0.00 for "no spot market" in some files).
fn positive(p: Option<f64>) -> Option<f64> {
    p.filter(|v| *v > 0.0)
}

fn build_offer(cloud: &str, r: &Row, fetched_at: DateTime<Utc>, source: &str) -> Offer {
    let mut mem_hint = gpu_info_memory_gib(&r.gpu_info);
    // primeintellect reports the memory of all GPUs together.
    if cloud == "primeintellect" && r.accelerator_count > 0.0 {
        mem_hint = mem_hint.map(|m| m / r.accelerator_count);
    }
    let acc_raw = r.accelerator_name.trim();
    let info = (!acc_raw.is_empty()).then(|| accelerators::canonicalize(acc_raw, mem_hint)).flatten();
    let (name, memory, vendor) = match (&info, acc_raw.is_empty()) {
        (Some(i), _) => (Some(i.name.clone()), i.memory_gib.or(mem_hint), Some(i.vendor.to_string())),
        (None, false) => (Some(acc_raw.to_string()), mem_hint, gpu_info_vendor(&r.gpu_info)),
        (None, true) => (None, None, None),
    };
    // An accelerator row without a count (TPU slices in some files) is one device.
    let count = match (&name, r.accelerator_count > 0.0) {
        (None, _) => 0.0,
        (Some(_), true) => r.accelerator_count,
        (Some(_), false) => 1.0,
    };
    Offer {
        cloud: cloud.into(),
        instance_type: r.instance_type.clone().into(),
        region: r.region.clone().into(),
        zone: r.zone.clone().map(Into::into),
        arch: infer_arch(cloud, &r.instance_type, name.as_deref()).map(Into::into),
        accelerator_name: name.map(Into::into),
        accelerator_count: count,
        accelerator_memory_gib: memory,
        accelerator_vendor: vendor.map(Into::into),
        vcpus: r.vcpus,
        memory_gib: r.memory_gib,
        price: positive(r.price),
        spot_price: positive(r.spot_price),
        fetched_at,
        source: source.into(),
        price_breakdown: None,
        spot_interruption: None,
        hyperv_generations: r.generations,
    }
}

/// Read one cloud's SkyPilot `vms.csv` into offers.
pub fn import_csv(cloud: &str, path: &Path, fetched_at: DateTime<Utc>, source: &str) -> Result<(Vec<Offer>, ImportReport)> {
    let text = std::fs::read_to_string(path).map_err(|e| CatalogError::io(path, e))?;
    import_csv_text(cloud, path, &text, fetched_at, source)
}

/// [`import_csv`] over text already in memory; `path` only names the input in errors.
pub fn import_csv_text(
    cloud: &str,
    path: &Path,
    text: &str,
    fetched_at: DateTime<Utc>,
    source: &str,
) -> Result<(Vec<Offer>, ImportReport)> {
    let rows = read_rows(path, text)?;
    let mut report = ImportReport { rows_read: rows.len(), ..Default::default() };
    let offers = if cloud == "gcp" {
        expand_gcp(path, rows, fetched_at, source, &mut report)?
    } else {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut o = build_offer(cloud, r, fetched_at, source);
            // primeintellect names spot-market capacity `…__SPOT` but lists its price as `Price`:
            // it is not sold on demand.
            if cloud == "primeintellect" && o.instance_type.ends_with("__SPOT") && o.spot_price.is_none() {
                o.spot_price = o.price.take();
                report.spot_only_rows += 1;
            }
            if let Some((info, count)) = accelerators::from_instance_type(cloud, &o.instance_type) {
                let same_part = o.accelerator_name.as_deref() == Some(info.name.as_str());
                if same_part && (o.accelerator_count - count).abs() > 1e-9 {
                    o.accelerator_count = count;
                    report.corrected_counts += 1;
                }
            }
            if o.price.is_none() && o.spot_price.is_none() {
                report.skipped_no_price += 1;
                continue;
            }
            out.push(o);
        }
        out
    };
    report.offers = offers.len();
    Ok((offers, report))
}

/// The accelerator (and count) GCP attaches to a host type by construction: the accelerator-
/// optimized families (a2, a3, a4, g2) come with a fixed GPU count.
/// Source: Google Cloud "GPU machine types" documentation.
pub fn gcp_accelerator_for_host(host: &str) -> Option<(&'static str, f64)> {
    let base = host.strip_suffix("-nolssd").unwrap_or(host);
    let count_g = |prefix: &str| -> Option<f64> { base.strip_prefix(prefix)?.strip_suffix('g')?.parse().ok() };
    if let Some(n) = count_g("a2-highgpu-") {
        return Some(("A100", n));
    }
    if let Some(n) = count_g("a2-megagpu-") {
        return Some(("A100", n));
    }
    if let Some(n) = count_g("a2-ultragpu-") {
        return Some(("A100-80GB", n));
    }
    if let Some(n) = count_g("a3-highgpu-") {
        return Some(("H100", n));
    }
    if let Some(n) = count_g("a3-edgegpu-") {
        return Some(("H100", n));
    }
    if let Some(n) = count_g("a3-megagpu-") {
        return Some(("H100-MEGA", n));
    }
    if let Some(n) = count_g("a3-ultragpu-") {
        return Some(("H200", n));
    }
    if let Some(n) = count_g("a4-highgpu-") {
        return Some(("B200", n));
    }
    if let Some(size) = base.strip_prefix("g2-standard-") {
        let n = match size {
            "4" | "8" | "12" | "16" | "32" => 1.0,
            "24" => 2.0,
            "48" => 4.0,
            "96" => 8.0,
            _ => return None,
        };
        return Some(("L4", n));
    }
    None
}

/// Whether an N1 host with `vcpus` vCPUs may carry `count` of the given GPU. N1 is the only
/// family where GPUs attach to general-purpose hosts; each GPU count caps the vCPUs.
/// Source: Google Cloud "GPU machine types", N1 table (T4, P4, V100, P100).
pub fn gcp_n1_allows(accelerator: &str, count: f64, vcpus: f64) -> bool {
    let max_vcpus = match (accelerator, count as u32) {
        ("T4", 1 | 2) => 48.0,
        ("T4", 4) => 96.0,
        ("P4", 1) => 24.0,
        ("P4", 2) => 48.0,
        ("P4", 4) => 96.0,
        ("V100", 1) => 12.0,
        ("V100", 2) => 24.0,
        ("V100", 4) => 48.0,
        ("V100", 8) => 96.0,
        ("P100", 1) => 16.0,
        ("P100", 2) => 32.0,
        ("P100", 4) => 64.0,
        _ => return false,
    };
    vcpus <= max_vcpus
}

/// The parts of a composed GCP price, kept in `price_breakdown` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcpParts {
    pub host: String,
    pub host_price: Option<f64>,
    pub host_spot_price: Option<f64>,
    pub accelerator: String,
    pub accelerator_count: f64,
    /// SkyPilot's `GpuInfo` cell of the accelerator row, kept for export.
    pub accelerator_gpu_info: String,
    pub accelerator_price: Option<f64>,
    pub accelerator_spot_price: Option<f64>,
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

fn expand_gcp(
    _path: &Path,
    rows: Vec<Row>,
    fetched_at: DateTime<Utc>,
    source: &str,
    report: &mut ImportReport,
) -> Result<Vec<Offer>> {
    let placeholder = |p: Option<f64>, report: &mut ImportReport| match p {
        Some(v) if (v - GCP_PLACEHOLDER_PRICE).abs() < 1e-9 => {
            report.placeholder_prices += 1;
            None
        }
        other => positive(other),
    };
    let (mut hosts, mut accels) = (Vec::new(), Vec::new());
    for mut r in rows {
        if r.instance_type.is_empty() {
            r.price = placeholder(r.price, report);
            r.spot_price = placeholder(r.spot_price, report);
            accels.push(r);
        } else {
            hosts.push(r);
        }
    }
    // Accelerator rows by (zone or region, canonical name, count).
    let mut by_zone: BTreeMap<(String, String), Vec<(String, &Row)>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    for a in &accels {
        let info = accelerators::canonicalize(&a.accelerator_name, gpu_info_memory_gib(&a.gpu_info));
        let name = info.as_ref().map_or(a.accelerator_name.clone(), |i| i.name.clone());
        if info.as_ref().is_some_and(|i| i.kind == AcceleratorKind::Tpu) {
            // A TPU VM is billed by the slice alone: the slice is the launchable unit.
            let mut o = build_offer("gcp", a, fetched_at, source);
            o.instance_type = name.clone().into();
            o.accelerator_count = 1.0;
            used.insert(a.line);
            if o.price.is_none() && o.spot_price.is_none() {
                report.skipped_no_price += 1;
            } else {
                out.push(o);
            }
            continue;
        }
        let loc = a.zone.clone().unwrap_or_else(|| a.region.clone());
        by_zone.entry((loc, name.clone())).or_default().push((name, a));
    }
    for h in &hosts {
        let loc = h.zone.clone().unwrap_or_else(|| h.region.clone());
        let fixed = gcp_accelerator_for_host(&h.instance_type);
        let is_n1 = h.instance_type.starts_with("n1-") && !h.instance_type.contains("tpu");
        let mut pairs: Vec<&Row> = Vec::new();
        if let Some((acc, n)) = fixed {
            if let Some(list) = by_zone.get(&(loc.clone(), acc.to_string())) {
                pairs.extend(list.iter().filter(|(_, a)| (a.accelerator_count - n).abs() < 1e-9).map(|(_, a)| *a));
            }
            if pairs.is_empty() {
                report.skipped_unpaired += 1;
                continue;
            }
        } else {
            // A general-purpose host is launchable alone.
            let o = build_offer("gcp", h, fetched_at, source);
            if o.price.is_none() && o.spot_price.is_none() {
                report.skipped_no_price += 1;
            } else {
                out.push(o);
            }
            if is_n1 {
                let vcpus = h.vcpus.unwrap_or(f64::INFINITY);
                for acc in ["T4", "P4", "V100", "P100"] {
                    if let Some(list) = by_zone.get(&(loc.clone(), acc.to_string())) {
                        pairs.extend(
                            list.iter().filter(|(_, a)| gcp_n1_allows(acc, a.accelerator_count, vcpus)).map(|(_, a)| *a),
                        );
                    }
                }
            }
        }
        for a in pairs {
            used.insert(a.line);
            let host_price = positive(h.price);
            let host_spot = positive(h.spot_price);
            let parts = GcpParts {
                host: h.instance_type.clone(),
                host_price,
                host_spot_price: host_spot,
                accelerator: a.accelerator_name.clone(),
                accelerator_count: a.accelerator_count,
                accelerator_gpu_info: a.gpu_info.clone(),
                accelerator_price: a.price,
                accelerator_spot_price: a.spot_price,
            };
            let combined = Row {
                line: h.line,
                instance_type: h.instance_type.clone(),
                accelerator_name: a.accelerator_name.clone(),
                accelerator_count: a.accelerator_count,
                vcpus: h.vcpus,
                memory_gib: h.memory_gib,
                gpu_info: a.gpu_info.clone(),
                price: sum(host_price, a.price),
                spot_price: sum(host_spot, a.spot_price),
                region: h.region.clone(),
                zone: h.zone.clone(),
                generations: None,
            };
            let mut o = build_offer("gcp", &combined, fetched_at, source);
            if o.price.is_none() && o.spot_price.is_none() {
                report.skipped_no_price += 1;
                continue;
            }
            o.price_breakdown = serde_json::to_string(&parts).ok().map(Into::into);
            out.push(o);
        }
    }
    report.skipped_unpaired += accels.iter().filter(|a| !used.contains(&a.line)).count();
    Ok(out)
}

/// SkyPilot's column order for a cloud's `vms.csv`, as published.
pub fn layout(cloud: &str) -> &'static [&'static str] {
    const AWS: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Price", "SpotPrice", "Region", "AvailabilityZone"];
    const GCP: &[&str] = &["InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "GpuInfo", "Region", "AvailabilityZone", "Price", "SpotPrice"];
    const LAMBDA: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "Region", "GpuInfo", "SpotPrice"];
    const RUNPOD: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Region", "SpotPrice", "Price", "AvailabilityZone"];
    const PAPERSPACE: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Region", "SpotPrice", "Price"];
    const VAST: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Price", "SpotPrice", "Region"];
    const MITHRIL: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region", "GpuInfo"];
    const OVH: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "Region", "GpuInfo", "SpotPrice", "AvailabilityZone"];
    const SCALEWAY: &[&str] = &["AvailabilityZone", "InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "GpuInfo", "Region", "Price", "SpotPrice"];
    const PRIMEINTELLECT: &[&str] = &["InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "GpuInfo", "Region", "AvailabilityZone", "Price", "SpotPrice"];
    // Azure's file (v6) ends with the Hyper-V `Generation` (`V1,V2`) instead of a zone.
    const AZURE: &[&str] = &["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Price", "SpotPrice", "Region", "Generation"];
    match cloud {
        "gcp" => GCP,
        "azure" => AZURE,
        "lambda" | "nebius" | "cudo" | "shadeform" | "seeweb" | "do" | "fluidstack" | "hyperbolic" | "simplepod" => LAMBDA,
        "runpod" => RUNPOD,
        "paperspace" => PAPERSPACE,
        "vast" => VAST,
        "mithril" => MITHRIL,
        "ovhcloud" => OVH,
        "scaleway" => SCALEWAY,
        "primeintellect" => PRIMEINTELLECT,
        _ => AWS,
    }
}

/// A float as SkyPilot writes it: `8.0`, `0.526`.
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn gpu_info_cell(o: &Offer) -> String {
    let Some(name) = &o.accelerator_name else { return String::new() };
    let vendor = o.accelerator_vendor.as_deref().unwrap_or("").to_ascii_uppercase();
    match o.accelerator_memory_gib {
        Some(mem) => {
            let mib = (mem * 1024.0).round();
            format!(
                "{{'Gpus': [{{'Name': '{name}', 'Manufacturer': '{vendor}', 'Count': {}, 'MemoryInfo': {{'SizeInMiB': {mib}}}}}], 'TotalGpuMemoryInMiB': {}}}",
                fmt_num(o.accelerator_count),
                (mib * o.accelerator_count).round()
            )
        }
        None => format!("{{'Gpus': [{{'Name': '{name}', 'Manufacturer': '{vendor}', 'Count': {}}}]}}", fmt_num(o.accelerator_count)),
    }
}

/// Rows of one cloud in SkyPilot's layout (header first).
pub fn export_rows(cloud: &str, offers: &[&Offer]) -> Vec<Vec<String>> {
    let cols = layout(cloud);
    let mut out = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    let mut seen = BTreeSet::new();
    let opt = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
    let mut push = |fields: BTreeMap<&str, String>, out: &mut Vec<Vec<String>>| {
        let row: Vec<String> = cols.iter().map(|c| fields.get(c).cloned().unwrap_or_default()).collect();
        if seen.insert(row.clone()) {
            out.push(row);
        }
    };
    for o in offers {
        let parts: Option<GcpParts> =
            (cloud == "gcp").then(|| o.price_breakdown.as_deref().and_then(|b| serde_json::from_str(b).ok())).flatten();
        let zone = o.zone.clone().unwrap_or_default();
        if let Some(p) = parts {
            // SkyPilot's GCP layout: the host row and the accelerator row, separately.
            push(
                BTreeMap::from([
                    ("InstanceType", p.host.clone()),
                    ("vCPUs", opt(o.vcpus)),
                    ("MemoryGiB", opt(o.memory_gib)),
                    ("Region", o.region.to_string()),
                    ("AvailabilityZone", zone.to_string()),
                    ("Price", opt(p.host_price)),
                    ("SpotPrice", opt(p.host_spot_price)),
                ]),
                &mut out,
            );
            push(
                BTreeMap::from([
                    ("AcceleratorName", p.accelerator.clone()),
                    ("AcceleratorCount", fmt_num(p.accelerator_count)),
                    ("GpuInfo", p.accelerator_gpu_info.clone()),
                    ("Region", o.region.to_string()),
                    ("AvailabilityZone", zone.to_string()),
                    ("Price", opt(p.accelerator_price)),
                    ("SpotPrice", opt(p.accelerator_spot_price)),
                ]),
                &mut out,
            );
            continue;
        }
        let tpu_vm = cloud == "gcp" && o.accelerator_name.as_deref().is_some_and(|a| a.starts_with("tpu-"));
        let acc = o.accelerator_name.clone().unwrap_or_default();
        push(
            BTreeMap::from([
                ("InstanceType", if tpu_vm { String::new() } else { o.instance_type.to_string() }),
                ("AcceleratorName", acc.to_string()),
                ("AcceleratorCount", if acc.is_empty() { String::new() } else { fmt_num(o.accelerator_count) }),
                ("vCPUs", opt(o.vcpus)),
                ("MemoryGiB", opt(o.memory_gib)),
                ("GpuInfo", if tpu_vm { acc.to_string() } else { gpu_info_cell(o).into() }),
                ("Price", opt(o.price)),
                ("SpotPrice", opt(o.spot_price)),
                ("Region", o.region.to_string()),
                ("AvailabilityZone", zone.to_string()),
                ("Generation", o.hyperv_generations.map(|g| g.label()).unwrap_or_default()),
            ]),
            &mut out,
        );
    }
    out
}

/// Write `<dir>/<cloud>/vms.csv` for every cloud in `offers`; returns (cloud, rows written).
pub fn export_dir(dir: &Path, offers: &[Offer]) -> Result<Vec<(String, usize)>> {
    let mut by_cloud: BTreeMap<&str, Vec<&Offer>> = BTreeMap::new();
    for o in offers {
        by_cloud.entry(o.cloud.as_ref()).or_default().push(o);
    }
    let mut written = Vec::new();
    for (cloud, list) in by_cloud {
        let rows = export_rows(cloud, &list);
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        for r in &rows {
            w.write_record(r).map_err(|e| CatalogError::Invalid(format!("{cloud}: cannot encode CSV: {e}")))?;
        }
        let bytes = w.into_inner().map_err(|e| CatalogError::Invalid(format!("{cloud}: cannot encode CSV: {e}")))?;
        crate::fsutil::write_atomic(&dir.join(cloud).join("vms.csv"), &bytes)?;
        written.push((cloud.to_string(), rows.len() - 1));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_764_288_000, 0).expect("time")
    }

    const AWS: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n\
p4d.24xlarge,A100,8.0,96.0,1152.0,\"{'Gpus': [{'Name': 'A100', 'Manufacturer': 'NVIDIA', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 40960}}], 'TotalGpuMemoryInMiB': 327680}\",32.7726,9.1,us-east-1,use1-az2\n\
p4de.24xlarge,A100,8.0,96.0,1152.0,\"{'Gpus': [{'Name': 'A100', 'Manufacturer': 'NVIDIA', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 81920}}], 'TotalGpuMemoryInMiB': 655360}\",40.96,,us-east-1,use1-az2\n\
p5e.48xlarge,H200,8.0,192.0,2048.0,,,,us-east-1,use1-az2\n\
c7g.large,,,2.0,4.0,,0.0725,0.03,us-east-1,use1-az1\n";

    #[test]
    fn aws_import_keeps_prices_and_maps_memory_variants() {
        let (offers, report) = import_csv_text("aws", Path::new("aws.csv"), AWS, t(), "test").expect("import");
        assert_eq!(report.skipped_no_price, 1, "p5e has no price at all");
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0].accelerator_name.as_deref(), Some("A100"));
        assert_eq!(offers[0].price, Some(32.7726));
        assert_eq!(offers[1].accelerator_name.as_deref(), Some("A100-80GB"));
        assert_eq!(offers[1].spot_price, None);
        assert_eq!(offers[2].arch.as_deref(), Some("arm64"));
        assert_eq!(offers[0].arch.as_deref(), Some("x86_64"));
    }

    const GCP: &str = "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n\
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.9,0.3\n\
a2-highgpu-2g,24.0,170.0,,,,us-central1,us-central1-a,1.8,0.6\n\
n1-standard-8,8.0,30.0,,,,us-central1,us-central1-a,0.38,0.08\n\
n1-standard-96,96.0,360.0,,,,us-central1,us-central1-a,4.56,0.96\n\
,,,A100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]},us-central1,us-central1-a,2.9,1.1\n\
,,,T4,1,,us-central1,us-central1-a,0.35,0.14\n\
,,,T4,4,,us-central1,us-central1-a,1.4,0.56\n\
,,,V100,1,,us-central1,us-central1-a,2.48,\n\
,,,tpu-v4-8,1,tpu-v4-8,us-central2,us-central2-b,12.88,4.5\n\
,,,tpu-v6e-1,1,tpu-v6e-1,us-central2,us-central2-b,700.0,700.0\n";

    #[test]
    fn gcp_expands_host_plus_gpu() {
        let (offers, report) = import_csv_text("gcp", Path::new("gcp.csv"), GCP, t(), "test").expect("import");
        let find = |ty: &str, acc: Option<&str>, n: f64| {
            offers
                .iter()
                .find(|o| *o.instance_type == *ty && o.accelerator_name.as_deref() == acc && o.accelerator_count == n)
                .unwrap_or_else(|| panic!("{ty} {acc:?}x{n} missing from {offers:#?}"))
        };
        let a2 = find("a2-highgpu-1g", Some("A100"), 1.0);
        assert!((a2.price.unwrap_or_default() - 3.8).abs() < 1e-9);
        assert!((a2.spot_price.unwrap_or_default() - 1.4).abs() < 1e-9);
        assert!(a2.price_breakdown.as_deref().is_some_and(|b| b.contains("a2-highgpu-1g")));
        // a2-highgpu-2g has no A100:2 row in that zone: not launchable, not guessed.
        assert!(!offers.iter().any(|o| &*o.instance_type == "a2-highgpu-2g"));
        // N1 hosts: alone, with T4, and V100 only where the vCPU cap allows (8 ≤ 12; 96 > 12).
        find("n1-standard-8", None, 0.0);
        let t4 = find("n1-standard-8", Some("T4"), 1.0);
        assert!((t4.price.unwrap_or_default() - 0.73).abs() < 1e-9);
        let v100 = find("n1-standard-8", Some("V100"), 1.0);
        assert_eq!(v100.spot_price, None, "no spot price for the GPU part: no spot price for the sum");
        find("n1-standard-96", Some("T4"), 4.0);
        assert!(!offers.iter().any(|o| &*o.instance_type == "n1-standard-96" && o.accelerator_name.as_deref() == Some("V100")));
        assert!(!offers.iter().any(|o| &*o.instance_type == "n1-standard-96" && o.accelerator_count == 1.0));
        // TPU slices stand alone; the 700.0 placeholder is not a price.
        let tpu = find("tpu-v4-8", Some("tpu-v4-8"), 1.0);
        assert_eq!(tpu.price, Some(12.88));
        assert!(!offers.iter().any(|o| &*o.instance_type == "tpu-v6e-1"));
        assert_eq!(report.placeholder_prices, 2);
    }

    // Rows of SkyPilot's Azure file (../shared/reference-prices/azure.csv).
    const AZURE: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation\n\
Standard_M8ms,,,8.0,218.75,,1.5365,0.177466,eastus2,\"V1,V2\"\n\
Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,A100-80GB,3.673,0.444433,eastus,V2\n\
Standard_NC12,K80,2,12.0,112,K80,1.8,0.198,westus2,V1\n";

    #[test]
    fn azure_generations_are_read_and_written_back() {
        let (offers, _) = import_csv_text("azure", Path::new("azure.csv"), AZURE, t(), "test").expect("import");
        let gens: Vec<String> = offers.iter().map(|o| o.hyperv_generations.map(|g| g.label()).unwrap_or_default()).collect();
        assert_eq!(gens, ["V1,V2", "V2", "V1"]);
        let rows = export_rows("azure", &offers.iter().collect::<Vec<_>>());
        let generation = layout("azure").iter().position(|c| *c == "Generation").expect("column");
        let written: Vec<&str> = rows[1..].iter().map(|r| r[generation].as_str()).collect();
        assert_eq!(written, ["V1,V2", "V2", "V1"]);
        let bad = AZURE.replace("eastus,V2", "eastus,Gen2");
        let err = import_csv_text("azure", Path::new("azure.csv"), &bad, t(), "test").expect_err("bad generation").to_string();
        assert!(err.contains("azure.csv:3:") && err.contains("Generation") && err.contains("Gen2"), "{err}");
    }

    #[test]
    fn export_round_trips() {
        for (cloud, text) in [("aws", AWS), ("gcp", GCP), ("azure", AZURE)] {
            let (offers, _) = import_csv_text(cloud, Path::new("in.csv"), text, t(), "test").expect("import");
            let dir = tempfile::tempdir().expect("tempdir");
            export_dir(dir.path(), &offers).expect("export");
            let path = dir.path().join(cloud).join("vms.csv");
            let header = std::fs::read_to_string(&path).expect("read");
            assert_eq!(header.lines().next(), Some(layout(cloud).join(",").as_str()));
            let (back, _) = import_csv(cloud, &path, t(), "test").expect("re-import");
            let key = |o: &Offer| format!("{}|{}|{:?}|{}|{:?}", o.instance_type, o.location(), o.accelerator_name, o.accelerator_count, o.price);
            let mut a: Vec<String> = offers.iter().map(key).collect();
            let mut b: Vec<String> = back.iter().map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{cloud}");
            let mut offers = offers;
            let mut back = back;
            offers.sort_by_key(key);
            back.sort_by_key(key);
            assert_eq!(offers, back, "{cloud}: every field round-trips");
        }
    }

    #[test]
    fn primeintellect_spot_types_are_spot_only() {
        let text = "InstanceType,UpstreamCloudId,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n\
datacrunch__1xA100_40GB__22__120__SPOT,1A100.40S.22V_SPOT,22.0,120,A100,1.0,x,FI,FIN-01,0.18,\n\
datacrunch__1xA100_40GB__22__120,1A100.40S.22V,22.0,120,A100,1.0,x,FI,FIN-01,1.29,\n";
        let (offers, report) = import_csv_text("primeintellect", Path::new("p.csv"), text, t(), "x").expect("import");
        assert_eq!(report.spot_only_rows, 1);
        assert_eq!((offers[0].price, offers[0].spot_price), (None, Some(0.18)));
        assert_eq!((offers[1].price, offers[1].spot_price), (Some(1.29), None));
    }

    #[test]
    fn bad_number_names_line_and_field() {
        let text = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\nm6i.large,,,2,8,,abc,,us-east-1,use1-az1\n";
        let err = import_csv_text("aws", Path::new("aws.csv"), text, t(), "x").expect_err("bad price").to_string();
        assert!(err.contains("aws.csv:2") && err.contains("Price"), "{err}");
    }
}
