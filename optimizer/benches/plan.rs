//! Optimizer benchmarks: a warm single-task plan over a generated 100k-offer catalog, a 20-task
//! DAG solve and a 500-pool fleet solve. `cargo bench -p skycat-optimizer`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use skycat_catalog::Offer;
use skycat_optimizer::{
    parse_task_yaml, plan, plan_dag, plan_fleet, DagEdge, DagSpec, DagTask, EgressTable, FleetSpec, FleetTarget,
    OfferIndex, PlanOptions, Quota,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const CLOUDS: [&str; 10] = ["aws", "gcp", "azure", "oci", "lambda", "runpod", "vast", "nebius", "cudo", "paperspace"];
const ACCELS: [(&str, f64); 12] = [
    ("H100", 2.5),
    ("H200", 3.5),
    ("A100", 1.3),
    ("A100-80GB", 1.8),
    ("L4", 0.7),
    ("T4", 0.35),
    ("V100", 0.9),
    ("A10G", 1.0),
    ("L40S", 1.2),
    ("MI300X", 3.0),
    ("B200", 5.0),
    ("A10", 0.75),
];

/// A 100k-row catalog shaped like the real one: ~45% CPU-only rows, the rest GPUs in counts
/// 1/2/4/8, 10 clouds × 12 regions × up to 3 zones, spot prices on ~half of the rows.
fn catalog(n: usize) -> Vec<Offer> {
    let mut rng = Rng(0x5EED);
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let cloud = CLOUDS[rng.below(CLOUDS.len() as u64) as usize];
            let region = format!("{cloud}-region-{}", rng.below(12));
            let zone = if rng.below(2) == 0 { Some(format!("{region}{}", ["a", "b", "c"][rng.below(3) as usize])) } else { None };
            let (accel, per_gpu) = if rng.below(100) < 45 { (None, 0.0) } else {
                let (a, p) = ACCELS[rng.below(ACCELS.len() as u64) as usize];
                (Some((a, [1.0, 2.0, 4.0, 8.0][rng.below(4) as usize])), p)
            };
            let vcpus = match accel {
                Some((_, c)) => 8.0 * c,
                None => [2.0, 4.0, 8.0, 16.0, 32.0, 64.0][rng.below(6) as usize],
            };
            let mem = vcpus * [2.0, 4.0, 8.0][rng.below(3) as usize];
            let price = match accel {
                Some((_, c)) => c * per_gpu * (0.7 + 0.8 * rng.unit()),
                None => vcpus * 0.04 * (0.7 + 0.8 * rng.unit()),
            };
            let spot = if rng.below(2) == 0 { Some(price * (0.25 + 0.4 * rng.unit())) } else { None };
            Offer {
                cloud: cloud.into(),
                instance_type: format!("{cloud}-type-{}", i % 4000).into(),
                region: region.into(),
                zone: zone.map(Into::into),
                accelerator_name: accel.map(|a| a.0.to_string()).map(Into::into),
                accelerator_count: accel.map(|a| a.1).unwrap_or(0.0),
                accelerator_memory_gib: None,
                accelerator_vendor: None,
                vcpus: Some(vcpus),
                memory_gib: Some(mem),
                arch: Some("x86_64".into()),
                price: Some(price),
                spot_price: spot,
                fetched_at: at,
                source: "bench".into(),
                price_breakdown: None,
                spot_interruption: None,
                hyperv_generations: None,
            }
        })
        .collect()
}

fn single_task(c: &mut Criterion) {
    let offers = catalog(100_000);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("index_100k", |b| b.iter(|| OfferIndex::build(black_box(&offers))));
    g.finish();
    let ix = OfferIndex::build(&offers);
    let opts = PlanOptions::default();
    let mut g = c.benchmark_group("plan_100k");
    for (name, yaml) in [
        ("a100x8", "resources:\n  accelerators: A100:8\n"),
        ("h100x8_spot", "resources:\n  accelerators: H100:8\n  use_spot: true\n"),
        ("cpu_default", "run: echo\n"),
        ("cpus_4plus_mem_16plus", "resources:\n  cpus: 4+\n  memory: 16+\n"),
        ("any_of_3", "resources:\n  accelerators: {H100:8, A100-80GB:8, H200:8}\n"),
        ("region_pinned", "resources:\n  accelerators: L4:1\n  infra: gcp/gcp-region-3\n"),
        ("infeasible_count", "resources:\n  accelerators: H100:16\n"),
    ] {
        let task = parse_task_yaml(yaml).unwrap();
        g.bench_function(name, |b| b.iter(|| plan(black_box(&task), &ix, &opts)));
    }
    let yaml = "resources:\n  accelerators: A100:8\n";
    g.bench_function("parse_and_plan_a100x8", |b| b.iter(|| plan(&parse_task_yaml(black_box(yaml)).unwrap(), &ix, &opts)));
    g.finish();
}

fn dag(c: &mut Criterion) {
    let offers = catalog(100_000);
    let ix = OfferIndex::build(&offers);
    let egress = EgressTable::shipped();
    let kinds = ["H100:8", "A100:8", "L4:1", "A10G:4", "T4:1"];
    let tasks: Vec<DagTask> = (0..20)
        .map(|i| DagTask {
            name: format!("t{i}"),
            task: parse_task_yaml(&format!("resources:\n  accelerators: {}\n", kinds[i % kinds.len()])).unwrap(),
            hours: Some(1.0 + (i % 3) as f64),
            hours_by_accelerator: BTreeMap::new(),
            output_gb: Some(50.0 * (1 + i % 4) as f64),
        })
        .collect();
    // A chain with a few fan-outs and joins.
    let mut edges: Vec<DagEdge> = (1..20).map(|i| DagEdge { from: format!("t{}", i - 1), to: format!("t{i}"), data_gb: None }).collect();
    for i in (0..16).step_by(4) {
        edges.push(DagEdge { from: format!("t{i}"), to: format!("t{}", i + 3), data_gb: Some(200.0) });
    }
    let spec = DagSpec {
        name: Some("bench".into()),
        tasks,
        edges,
        inputs: vec![],
        bandwidth_gbps: Default::default(),
        max_candidates_per_task: Some(24),
    };
    let p = plan_dag(&spec, &ix, &egress, &PlanOptions::default()).unwrap();
    eprintln!(
        "dag: {} variables, {} constraints, total ${:.2}, solve {:.1} ms",
        p.variables, p.constraints, p.total_cost, p.solve_ms
    );
    let mut g = c.benchmark_group("dag");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("20_tasks_cost", |b| b.iter(|| plan_dag(black_box(&spec), &ix, &egress, &PlanOptions::default()).unwrap()));
    g.finish();
}

fn fleet(c: &mut Criterion) {
    let offers = catalog(100_000);
    let ix = OfferIndex::build(&offers);
    let spec = FleetSpec {
        name: Some("bench".into()),
        target: FleetTarget { accelerators: Some(512.0), vcpus: None },
        accelerators: vec!["H100".into(), "H200".into()],
        allow_spot: true,
        allow_on_demand: true,
        quotas: (0..12)
            .map(|r| Quota {
                cloud: "aws".into(),
                region: Some(format!("aws-region-{r}")),
                spot: None,
                max_accelerators: Some(32.0),
                max_vcpus: None,
                max_instances: None,
            })
            .collect(),
        max_instances_per_pool: Some(4),
        max_share_per_pool: Some(0.05),
        min_on_demand_share: Some(0.25),
        budget_per_hour: None,
        max_pools: Some(500),
        ..FleetSpec::default()
    };
    let p = plan_fleet(&spec, &ix, &PlanOptions::default()).unwrap();
    eprintln!(
        "fleet: {} pools, {} allocations, {:.0} GPUs, ${:.2}/h, solve {:.1} ms",
        p.pools_considered,
        p.allocations.len(),
        p.total_units,
        p.hourly_cost,
        p.solve_ms
    );
    let mut g = c.benchmark_group("fleet");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("500_pools", |b| b.iter(|| plan_fleet(black_box(&spec), &ix, &PlanOptions::default()).unwrap()));
    g.finish();
}

criterion_group!(benches, single_task, dag, fleet);
criterion_main!(benches);
