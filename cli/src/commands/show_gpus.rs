//! `skycat show-gpus`: which accelerators exist where, and at what price (like `sky show-gpus`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use skycat_catalog::{accelerators, Catalog, Offer, OfferFilter, OfferQuery, SpotInterruption};

use super::{custom_price, load_catalog_filtered, load_catalog_priced};

/// The accelerators SkyPilot calls common; the summary lists them first.
const COMMON: &[&str] = &[
    "A10", "A10G", "A100", "A100-80GB", "B200", "H100", "H100-MEGA", "H200", "L4", "L40S", "MI300X", "T4", "V100",
    "V100-32GB",
];

#[derive(Debug, clap::Args)]
pub struct ShowGpusArgs {
    /// Accelerator, optionally with a count: `A100`, `A100:8`, `tpu-v4-8`.
    pub accelerator: Option<String>,
    /// One row per region/zone instead of the cheapest per instance type.
    #[arg(long)]
    pub all_regions: bool,
    /// Only these clouds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cloud: Vec<String>,
    /// Only these regions (comma-separated); implies one row per region.
    #[arg(long, value_delimiter = ',')]
    pub region: Vec<String>,
    /// In the summary, list every accelerator, not only the common ones and TPUs.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Live capacity of Kubernetes clusters instead of catalog prices: `k8s` (every context)
    /// or `k8s/<context>`.
    #[arg(long)]
    pub infra: Option<String>,
    /// The catalog's list prices, without the `prices:` rules of config.yaml.
    #[arg(long)]
    pub list_prices: bool,
}

/// `A100:8` → ("A100", Some(8.0)).
pub fn parse_accelerator_arg(raw: &str) -> anyhow::Result<(String, Option<f64>)> {
    let (name, count) = match raw.rsplit_once(':') {
        Some((n, c)) => {
            let count: f64 = c.trim().parse().map_err(|_| anyhow::anyhow!("accelerator `{raw}`: count `{c}` is not a number"))?;
            if !(count.is_finite() && count > 0.0) {
                bail!("accelerator `{raw}`: count must be positive");
            }
            (n.trim(), Some(count))
        }
        None => (raw.trim(), None),
    };
    if name.is_empty() {
        bail!("accelerator `{raw}`: empty name");
    }
    Ok((name.to_string(), count))
}

fn money(p: Option<f64>) -> String {
    match p {
        Some(v) if v >= 100.0 => format!("$ {v:.2}"),
        Some(v) => format!("$ {v:.3}"),
        None => "-".into(),
    }
}

/// A price, and when the user's rules set it, `custom` with the list price beside it.
fn price_cell(p: Option<f64>, list: Option<f64>) -> String {
    match list {
        Some(l) => format!("{} custom (list {})", money(p), money(Some(l))),
        None => money(p),
    }
}

/// The list price of `o`'s market when a rule changed it.
fn list_of(o: &Offer, spot: bool) -> Option<f64> {
    custom_price(&o.cloud, &o.instance_type, &o.region, o.zone.as_deref(), spot).and_then(|c| c.list_for(spot))
}

const CUSTOM_NOTE: &str = "* custom price (config.yaml `prices:`); `--list-prices` shows the catalog's list prices\n";

fn qty(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

fn gib(v: Option<f64>) -> String {
    v.map(|g| if g.fract() == 0.0 { format!("{g:.0}GB") } else { format!("{g:.1}GB") }).unwrap_or_else(|| "-".into())
}

/// A spot market's interruption band (`<5%` … `>20%`), `-` where unknown.
fn band_cell(b: Option<SpotInterruption>) -> String {
    b.map_or_else(|| "-".into(), |b| b.label().to_string())
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    t
}

pub fn run(args: ShowGpusArgs) -> anyhow::Result<()> {
    // With an accelerator named, only its rows (of the clouds asked for) are loaded; a miss is
    // answered again over the whole catalog, whose error names the nearest accelerators.
    let filter = match &args.accelerator {
        Some(raw) => match parse_accelerator_arg(raw) {
            Ok((name, _)) if args.cloud.is_empty() => OfferFilter::accelerators([name]),
            Ok((name, _)) => OfferFilter::accelerators([name]).in_clouds(&args.cloud),
            Err(_) => OfferFilter::all(),
        },
        None => OfferFilter::all(),
    };
    let load = |f: &OfferFilter| if args.list_prices { load_catalog_filtered(f) } else { load_catalog_priced(f) };
    let (_, catalog) = load(&filter)?;
    let out = match render(&catalog, &args) {
        Ok(out) => out,
        Err(_) if !filter.is_all() => render(&load(&OfferFilter::all())?.1, &args)?,
        Err(e) => return Err(e),
    };
    print!("{out}");
    Ok(())
}

/// Everything `show-gpus` prints, as text (tests call this on the real catalog).
pub fn render(catalog: &Catalog, args: &ShowGpusArgs) -> anyhow::Result<String> {
    match &args.accelerator {
        None if args.all_regions || !args.region.is_empty() => {
            bail!("--all-regions and --region need an accelerator, e.g. `skycat show-gpus A100 --all-regions`")
        }
        None => summary(catalog, args),
        Some(raw) => {
            let (name, count) = parse_accelerator_arg(raw)?;
            let resolved = catalog.resolve_accelerator(&name).filter(|n| catalog.accelerator_names().contains(&n.as_str()));
            let Some(resolved) = resolved else {
                let near = accelerators::nearest_names(&name, 4, catalog.accelerator_names());
                bail!("unknown accelerator `{name}`; did you mean: {}?", near.join(", "));
            };
            let q = OfferQuery {
                accelerator: Some(resolved.clone()),
                accelerator_count: count,
                clouds: args.cloud.clone(),
                regions: args.region.clone(),
                ..Default::default()
            };
            let hits = catalog.query(&q);
            if hits.is_empty() {
                let all = catalog.query(&OfferQuery { accelerator: Some(resolved.clone()), ..Default::default() });
                let counts: BTreeSet<u64> = all.iter().map(|o| (o.accelerator_count * 1000.0).round() as u64).collect();
                let counts: Vec<String> = counts.into_iter().map(|c| qty(c as f64 / 1000.0)).collect();
                let clouds: BTreeSet<&str> = all.iter().map(|o| o.cloud.as_ref()).collect();
                bail!(
                    "no offers of {resolved}{} with these filters; offered counts: {}; clouds: {}",
                    count.map(|c| format!(":{}", qty(c))).unwrap_or_default(),
                    counts.join(", "),
                    clouds.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            if args.all_regions || !args.region.is_empty() {
                per_region(&hits, args.json)
            } else {
                per_instance(&hits, args.json)
            }
        }
    }
}

#[derive(Serialize)]
struct SummaryRow {
    accelerator: String,
    cloud: String,
    counts: Vec<f64>,
    /// Cheapest on-demand price per device-hour.
    on_demand_per_device: Option<f64>,
    spot_per_device: Option<f64>,
    /// The cheapest on-demand / spot price is a custom one (config.yaml `prices:`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    on_demand_custom: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    spot_custom: bool,
}

fn summary(catalog: &Catalog, args: &ShowGpusArgs) -> anyhow::Result<String> {
    let q = OfferQuery { clouds: args.cloud.clone(), ..Default::default() };
    type Cheapest = Option<(f64, bool)>;
    let mut acc: BTreeMap<(String, String), (BTreeSet<u64>, Cheapest, Cheapest)> = BTreeMap::new();
    let better = |cur: Cheapest, p: Option<f64>, custom: bool| match (cur, p) {
        (Some((c, _)), Some(p)) if p < c => Some((p, custom)),
        (None, Some(p)) => Some((p, custom)),
        (cur, _) => cur,
    };
    for o in catalog.query(&q) {
        let Some(name) = o.accelerator_name.clone() else { continue };
        if o.accelerator_count <= 0.0 {
            continue;
        }
        let e = acc.entry((name.to_string(), o.cloud.to_string())).or_default();
        e.0.insert((o.accelerator_count * 1000.0).round() as u64);
        e.1 = better(e.1, o.price.map(|p| p / o.accelerator_count), o.price.is_some() && list_of(o, false).is_some());
        e.2 = better(e.2, o.spot_price.map(|p| p / o.accelerator_count), o.spot_price.is_some() && list_of(o, true).is_some());
    }
    let rows: Vec<SummaryRow> = acc
        .into_iter()
        .map(|((accelerator, cloud), (counts, od, spot))| SummaryRow {
            accelerator,
            cloud,
            counts: counts.into_iter().map(|c| c as f64 / 1000.0).collect(),
            on_demand_per_device: od.map(|x| x.0),
            spot_per_device: spot.map(|x| x.0),
            on_demand_custom: od.is_some_and(|x| x.1),
            spot_custom: spot.is_some_and(|x| x.1),
        })
        .collect();
    if args.json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let is_tpu = |n: &str| n.starts_with("tpu-");
    let sections: [(&str, Box<dyn Fn(&str) -> bool>); 3] = [
        ("COMMON_GPU", Box::new(|n: &str| COMMON.contains(&n))),
        ("GOOGLE_TPU", Box::new(is_tpu)),
        ("OTHER_GPU", Box::new(move |n: &str| !COMMON.contains(&n) && !is_tpu(n))),
    ];
    let mut out = String::new();
    let any_custom = rows.iter().any(|r| r.on_demand_custom || r.spot_custom);
    for (i, (title, pick)) in sections.iter().enumerate() {
        if i == 2 && !args.all {
            let others: BTreeSet<&str> = rows.iter().map(|r| r.accelerator.as_str()).filter(|n| pick(n)).collect();
            if !others.is_empty() {
                out.push_str(&format!(
                    "\nOther accelerators (use -a for prices): {}\n",
                    others.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            continue;
        }
        let mut t = new_table(&[title, "AVAILABLE_QUANTITIES", "CLOUD", "ON-DEMAND $/DEVICE-H", "SPOT $/DEVICE-H"]);
        let mut any = false;
        for r in rows.iter().filter(|r| pick(&r.accelerator)) {
            any = true;
            let counts: Vec<String> = r.counts.iter().map(|c| qty(*c)).collect();
            t.add_row(vec![
                r.accelerator.clone(),
                counts.join(", "),
                r.cloud.clone(),
                money(r.on_demand_per_device) + if r.on_demand_custom { " *" } else { "" },
                money(r.spot_per_device) + if r.spot_custom { " *" } else { "" },
            ]);
        }
        if any {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
    }
    if any_custom {
        out.push_str(CUSTOM_NOTE);
    }
    Ok(out)
}

#[derive(Serialize)]
struct InstanceRow<'a> {
    accelerator: &'a str,
    count: f64,
    cloud: &'a str,
    instance_type: &'a str,
    device_memory_gib: Option<f64>,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
    price: Option<f64>,
    price_region: Option<String>,
    spot_price: Option<f64>,
    spot_region: Option<String>,
    /// The AWS Spot Instance Advisor band of the `spot_price` offer, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    spot_interruption: Option<SpotInterruption>,
    /// Where `price` / `spot_price` is custom (config.yaml `prices:`): the list price.
    #[serde(skip_serializing_if = "Option::is_none")]
    list_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list_spot_price: Option<f64>,
}

/// Cheapest on-demand and spot per (cloud, instance type), with the region of each.
fn per_instance(hits: &[&Offer], json: bool) -> anyhow::Result<String> {
    let mut groups: BTreeMap<(&str, &str, u64), InstanceRow> = BTreeMap::new();
    for o in hits {
        let key = (o.cloud.as_ref(), o.instance_type.as_ref(), (o.accelerator_count * 1000.0).round() as u64);
        let row = groups.entry(key).or_insert_with(|| InstanceRow {
            accelerator: o.accelerator_name.as_deref().unwrap_or("-"),
            count: o.accelerator_count,
            cloud: &o.cloud,
            instance_type: &o.instance_type,
            device_memory_gib: o.accelerator_memory_gib,
            vcpus: o.vcpus,
            memory_gib: o.memory_gib,
            price: None,
            price_region: None,
            spot_price: None,
            spot_region: None,
            spot_interruption: None,
            list_price: None,
            list_spot_price: None,
        });
        if let Some(p) = o.price.filter(|p| row.price.is_none_or(|cur| *p < cur)) {
            row.price = Some(p);
            row.price_region = Some(o.region.to_string());
            row.list_price = list_of(o, false);
        }
        if let Some(p) = o.spot_price.filter(|p| row.spot_price.is_none_or(|cur| *p < cur)) {
            row.spot_price = Some(p);
            row.spot_region = Some(o.region.to_string());
            row.spot_interruption = o.spot_interruption;
            row.list_spot_price = list_of(o, true);
        }
    }
    let mut rows: Vec<InstanceRow> = groups.into_values().collect();
    // As `sky show-gpus`: by count, then on-demand price (offers sold only as spot last).
    rows.sort_by(|a, b| {
        a.count
            .total_cmp(&b.count)
            .then(a.price.unwrap_or(f64::MAX).total_cmp(&b.price.unwrap_or(f64::MAX)))
            .then(a.spot_price.unwrap_or(f64::MAX).total_cmp(&b.spot_price.unwrap_or(f64::MAX)))
            .then(a.cloud.cmp(b.cloud))
            .then(a.instance_type.cmp(b.instance_type))
    });
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let bands = rows.iter().any(|r| r.spot_interruption.is_some());
    let mut header =
        vec!["GPU", "QTY", "CLOUD", "INSTANCE_TYPE", "DEVICE_MEM", "vCPUs", "HOST_MEM", "HOURLY_PRICE", "HOURLY_SPOT_PRICE"];
    if bands {
        header.push("SPOT_INTERRUPTION");
    }
    header.push("REGION");
    let mut t = new_table(&header);
    for r in &rows {
        let mut row = vec![
            r.accelerator.to_string(),
            qty(r.count),
            r.cloud.to_string(),
            r.instance_type.to_string(),
            gib(r.device_memory_gib),
            r.vcpus.map(qty).unwrap_or_else(|| "-".into()),
            gib(r.memory_gib),
            price_cell(r.price, r.list_price),
            price_cell(r.spot_price, r.list_spot_price),
        ];
        if bands {
            row.push(band_cell(r.spot_interruption));
        }
        row.push(r.price_region.clone().or(r.spot_region.clone()).unwrap_or_default());
        t.add_row(row);
    }
    Ok(t.to_string() + "\n")
}

#[derive(Serialize)]
struct RegionRow<'a> {
    accelerator: &'a str,
    count: f64,
    cloud: &'a str,
    instance_type: &'a str,
    region: &'a str,
    zone: Option<&'a str>,
    price: Option<f64>,
    spot_price: Option<f64>,
    /// The AWS Spot Instance Advisor band of this spot market, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    spot_interruption: Option<SpotInterruption>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list_spot_price: Option<f64>,
}

/// One row per offer (region, and zone where priced per zone), cheapest first.
fn per_region(hits: &[&Offer], json: bool) -> anyhow::Result<String> {
    let rows: Vec<RegionRow> = hits
        .iter()
        .map(|o| RegionRow {
            accelerator: o.accelerator_name.as_deref().unwrap_or("-"),
            count: o.accelerator_count,
            cloud: &o.cloud,
            instance_type: &o.instance_type,
            region: &o.region,
            zone: o.zone.as_deref(),
            price: o.price,
            spot_price: o.spot_price,
            spot_interruption: o.spot_interruption.filter(|_| o.spot_price.is_some()),
            list_price: list_of(o, false),
            list_spot_price: list_of(o, true),
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let bands = rows.iter().any(|r| r.spot_interruption.is_some());
    let mut header = vec!["GPU", "QTY", "CLOUD", "INSTANCE_TYPE", "HOURLY_PRICE", "HOURLY_SPOT_PRICE"];
    if bands {
        header.push("SPOT_INTERRUPTION");
    }
    header.extend(["REGION", "ZONE"]);
    let mut t = new_table(&header);
    for r in &rows {
        let mut row = vec![
            r.accelerator.to_string(),
            qty(r.count),
            r.cloud.to_string(),
            r.instance_type.to_string(),
            price_cell(r.price, r.list_price),
            price_cell(r.spot_price, r.list_spot_price),
        ];
        if bands {
            row.push(band_cell(r.spot_interruption));
        }
        row.extend([r.region.to_string(), r.zone.unwrap_or("-").to_string()]);
        t.add_row(row);
    }
    Ok(t.to_string() + "\n")
}
