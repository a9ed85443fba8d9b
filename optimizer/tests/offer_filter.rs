//! `offer_filter`: a plan over only the rows the filter keeps equals the plan over the whole
//! catalog, on random tasks over the shipped catalog (every cloud): accelerators in their
//! registry spellings, counts on offer and not, sets and lists of accelerators, `any_of`,
//! clouds, regions, spot, vCPU and memory bounds, instance types, and CPU-only tasks (SkyPilot's
//! default machines, named instance types, mixed with GPU alternatives in `any_of`).

mod common;

use std::path::Path;

use common::Rng;
use skycat_catalog::Offer;
use skycat_optimizer::{offer_filter, parse_task_yaml, plan, OfferIndex, PlanOptions};

fn shipped() -> Vec<Offer> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("catalog-data")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut offers = Vec::new();
    for path in files {
        offers.extend(skycat_catalog::parquet::read_offers(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    offers
}

/// One random task's YAML.
fn random_task(rng: &mut Rng, offers: &[Offer], names: &[String], clouds: &[String]) -> String {
    let spelling = |rng: &mut Rng, name: &str| -> String {
        match (name, rng.below(4)) {
            ("V100", 0) => "nvidia-tesla-v100".into(),
            ("A100-80GB", 0) => "a100-80gb".into(),
            (n, 1) => n.to_ascii_lowercase(),
            (n, _) => n.to_string(),
        }
    };
    let count = |rng: &mut Rng, name: &str| -> String {
        let counts: Vec<f64> =
            offers.iter().filter(|o| o.accelerator_name.as_deref() == Some(name)).map(|o| o.accelerator_count).collect();
        let c = if counts.is_empty() || rng.below(8) == 0 { [1.0, 2.0, 3.0, 16.0][rng.below(4) as usize] } else { *rng.pick(&counts) };
        if c.fract() == 0.0 { format!("{}", c as i64) } else { format!("{c}") }
    };
    let mut y = String::from("resources:\n");
    let accel = |rng: &mut Rng| -> String {
        let n = rng.pick(names).clone();
        format!("{}:{}", spelling(rng, &n), count(rng, &n))
    };
    let cpu_types: Vec<&str> = offers.iter().filter(|o| o.accelerator_name.is_none()).map(|o| o.instance_type.as_ref()).collect();
    let cpu_only = |rng: &mut Rng| -> String {
        match rng.below(4) {
            0 => format!("instance_type: {}", rng.pick(&cpu_types)),
            1 => format!("cpus: {}", [2, 4, 8, 16][rng.below(4) as usize]),
            2 => format!("memory: {}+", [8, 32, 128][rng.below(3) as usize]),
            _ => format!("cpus: {}+", [1, 8, 32][rng.below(3) as usize]),
        }
    };
    match rng.below(7) {
        5 => {
            // The size and type fields below would repeat the one given here.
            y += &format!("  {}\n", cpu_only(rng));
            if rng.below(2) == 0 {
                y += &format!("  infra: {}\n", rng.pick(clouds));
            }
            return y;
        }
        6 => {
            y += "  any_of:\n";
            y += &format!("    - accelerators: {}\n", accel(rng));
            y += &format!("    - {}\n", cpu_only(rng));
            if rng.below(2) == 0 {
                y += &format!("      infra: {}\n", rng.pick(clouds));
            }
        }
        0 => {
            let (a, b) = (accel(rng), accel(rng));
            y += &format!("  accelerators: {{{a}, {b}}}\n");
        }
        1 => {
            let (a, b) = (accel(rng), accel(rng));
            y += &format!("  accelerators: [{a}, {b}]\n");
        }
        2 => {
            y += "  any_of:\n";
            for _ in 0..2 {
                y += &format!("    - accelerators: {}\n", accel(rng));
                if rng.below(2) == 0 {
                    y += &format!("      infra: {}\n", rng.pick(clouds));
                }
            }
        }
        _ => y += &format!("  accelerators: {}\n", accel(rng)),
    }
    if rng.below(3) == 0 {
        // A cloud, sometimes with a region it has.
        let c = rng.pick(clouds).clone();
        let regions: Vec<&str> = offers.iter().filter(|o| *o.cloud == *c).map(|o| o.region.as_ref()).collect();
        match (rng.below(2), regions.is_empty()) {
            (0, false) => y += &format!("  infra: {c}/{}\n", rng.pick(&regions)),
            _ => y += &format!("  infra: {c}\n"),
        }
    }
    if rng.below(2) == 0 {
        y += "  use_spot: true\n";
    }
    if rng.below(4) == 0 {
        y += &format!("  cpus: {}+\n", [4, 8, 16, 32][rng.below(4) as usize]);
    }
    if rng.below(4) == 0 {
        y += &format!("  memory: {}+\n", [16, 64, 256][rng.below(3) as usize]);
    }
    if rng.below(6) == 0 {
        let gpu_types: Vec<&str> =
            offers.iter().filter(|o| o.accelerator_name.is_some()).map(|o| o.instance_type.as_ref()).collect();
        y += &format!("  instance_type: {}\n", rng.pick(&gpu_types));
    }
    if rng.below(4) == 0 {
        y += &format!("num_nodes: {}\n", 1 + rng.below(3));
    }
    y
}

#[test]
fn a_plan_over_the_filtered_rows_equals_the_plan_over_all_rows() {
    let offers = shipped();
    let full = OfferIndex::build(&offers);
    // A name with a space (`Radeon MI25`) cannot be written as `NAME:COUNT`.
    let mut names: Vec<String> =
        offers.iter().filter_map(|o| o.accelerator_name.as_deref()).filter(|n| !n.contains(' ')).map(str::to_string).collect();
    names.sort();
    names.dedup();
    let mut clouds: Vec<String> = offers.iter().map(|o| o.cloud.to_string()).collect();
    clouds.sort();
    clouds.dedup();
    let opts = PlanOptions::default();
    let filtered = PlanOptions { filtered_rows: true, ..PlanOptions::default() };
    let mut rng = Rng(0x5eed_1de4);
    let (mut feasible, mut narrowed, mut cpu_feasible) = (0, 0, 0);
    for round in 0..200 {
        let yaml = random_task(&mut rng, &offers, &names, &clouds);
        let task = parse_task_yaml(&yaml).unwrap_or_else(|e| panic!("round {round}: {e}\n{yaml}"));
        let filter = offer_filter(&task).unwrap_or_else(|e| panic!("round {round}: {e}\n{yaml}"));
        let kept: Vec<Offer> = offers.iter().filter(|o| filter.keeps(o)).cloned().collect();
        if kept.len() < offers.len() / 4 {
            narrowed += 1;
        }
        let on_all = plan(&task, &full, &opts);
        let on_kept = plan(&task, &OfferIndex::from_offers(kept), &filtered);
        match (&on_all, &on_kept) {
            (Ok(a), Ok(k)) => {
                feasible += 1;
                cpu_feasible += usize::from(!yaml.contains("accelerators"));
                assert_eq!(a, k, "round {round}: the plans differ\n{yaml}");
            }
            // A failed plan is asked again over every row by the callers.
            (_, Err(_)) => {}
            (Err(e), Ok(_)) => panic!("round {round}: infeasible over all rows ({e}) but not over the kept rows\n{yaml}"),
        }
    }
    // The test must exercise both: plans that succeed, and filters that cut most rows.
    eprintln!("{feasible} feasible of 200; {narrowed} kept under a quarter of the rows; {cpu_feasible} CPU-only feasible");
    assert!(feasible > 60, "only {feasible} feasible tasks");
    assert!(narrowed > 130, "only {narrowed} tasks narrowed the catalog");
    assert!(cpu_feasible > 10, "only {cpu_feasible} feasible CPU-only tasks");
}

#[test]
fn cpu_only_tasks_keep_the_default_machines_only() {
    let offers = shipped();
    let kept = |yaml: &str| {
        let f = offer_filter(&parse_task_yaml(yaml).expect("parses")).expect("filter");
        offers.iter().filter(|o| f.keeps(o)).count()
    };
    // SkyPilot's default machine (8+ vCPUs, 4 GiB per vCPU, the default families on AWS, Azure,
    // GCP and OCI): a small part of the catalog.
    for yaml in ["resources:\n  cpus: 8+\n", "run: echo hi\n"] {
        let n = kept(yaml);
        assert!(n > 0 && n < offers.len() / 2, "{yaml}: kept {n} of {}", offers.len());
    }
    // A GPU alternative beside it adds that accelerator's rows.
    let (cpu, a100) = (kept("resources:\n  cpus: 8+\n"), kept("resources:\n  accelerators: A100:1\n"));
    let both = kept("resources:\n  any_of:\n    - accelerators: A100:1\n    - cpus: 8+\n");
    assert!(both > cpu.max(a100) && both <= cpu + a100, "{cpu} + {a100} vs {both}");
    let pinned = parse_task_yaml("resources:\n  infra: aws\n  cpus: 8+\n").expect("parses");
    let f = offer_filter(&pinned).expect("filter");
    assert!(f.keeps_cloud("aws") && !f.keeps_cloud("gcp"));
    assert!(offers.iter().filter(|o| f.keeps(o)).all(|o| &*o.cloud == "aws" && o.accelerator_name.is_none()));
}
