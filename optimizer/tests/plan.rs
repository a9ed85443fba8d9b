//! Single-task planning over hand-built offers.

mod common;

use common::{offer, sample};
use skycat_optimizer::{parse_task_yaml, plan, BlockedResource, Minimize, OfferIndex, PlanError, PlanOptions};

fn run(yaml: &str, opts: &PlanOptions) -> Result<skycat_optimizer::Plan, PlanError> {
    let ix = OfferIndex::build(&sample());
    plan(&parse_task_yaml(yaml).expect("task parses"), &ix, opts)
}

fn ok(yaml: &str) -> skycat_optimizer::Plan {
    run(yaml, &PlanOptions::default()).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn infeasible(yaml: &str, opts: &PlanOptions) -> (String, String, Vec<skycat_optimizer::Placement>) {
    match run(yaml, opts) {
        Err(PlanError::Infeasible { reason, cut_by, nearest }) => (reason, cut_by, nearest),
        other => panic!("expected infeasible for {yaml}: {other:?}"),
    }
}

#[test]
fn cheapest_placement_per_cloud_and_failover() {
    let p = ok("resources:\n  accelerators: H100:8\n");
    assert_eq!(p.chosen.cloud, "lambda");
    assert_eq!(p.chosen.instance_type, "gpu_8x_h100_sxm5");
    assert_eq!(p.chosen.hourly_price, 23.92);
    assert!(!p.chosen.use_spot);
    let clouds: Vec<&str> = p.per_cloud_cheapest.iter().map(|c| c.cloud.as_str()).collect();
    assert_eq!(clouds, ["lambda", "gcp", "aws"]);
    // Failover: every feasible placement, cheapest first, chosen first.
    let order: Vec<(String, String)> = p.failover.iter().map(|c| (c.cloud.clone(), c.region.clone())).collect();
    assert_eq!(order.len(), 4);
    assert_eq!(p.feasible_count, 4);
    assert_eq!(order[0], ("lambda".into(), "us-east-1".into()));
    assert_eq!(order[1], ("gcp".into(), "us-central1".into()));
    let prices: Vec<f64> = p.failover.iter().map(|c| c.hourly_price).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
}

#[test]
fn total_is_nodes_times_hours() {
    let opts = PlanOptions { hours: 3.0, ..PlanOptions::default() };
    let p = run("num_nodes: 2\nresources:\n  accelerators: A100:8\n", &opts).unwrap();
    assert_eq!(p.chosen.instance_type, "a2-highgpu-8g");
    assert!((p.hourly_total - 2.0 * 29.39).abs() < 1e-9);
    assert!((p.total_cost - 6.0 * 29.39).abs() < 1e-9);
    assert_eq!(p.chosen.num_nodes, 2);
}

#[test]
fn cpu_only_default_is_8_vcpus_and_32_gib() {
    let p = ok("run: echo hi\n");
    // SkyPilot's default on AWS/Azure/GCP: ≥8 vCPUs and ≥4 GiB/vCPU from general-purpose
    // families. m6i.2xlarge (8 vCPU, 32 GiB, $0.384) ties Azure's D8s_v5; the cheaper
    // c6i.2xlarge has only 16 GiB, m6i.large only 2 vCPUs, and e2-standard-8 ($0.268) is not in
    // GCP's default families (n2/n4), so SkyPilot never picks it.
    assert_eq!(p.chosen.instance_type, "m6i.2xlarge");
    assert!(p.failover.iter().all(|c| c.vcpus.unwrap() >= 8.0 && c.memory_gib.unwrap() >= 32.0));
    assert!(p.failover.iter().all(|c| c.instance_type != "e2-standard-8"));
    // Lambda's default (30+ vCPUs) comes from all its machines: the 8×H100 one qualifies.
    assert!(p.failover.iter().any(|c| c.cloud == "lambda" && c.accelerator.is_some()));
    assert!(p.failover.iter().filter(|c| c.cloud != "lambda").all(|c| c.accelerator.is_none()));
    assert!(p.requested[0].contains("default CPU instance"), "{:?}", p.requested);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

#[test]
fn cpus_plus_and_exact() {
    let p = ok("resources:\n  cpus: 2+\n");
    assert_eq!(p.chosen.instance_type, "m6i.large");
    let p = ok("resources:\n  cpus: 4\n");
    assert_eq!(p.chosen.instance_type, "m6i.xlarge");
    assert!(p.failover.iter().all(|c| c.vcpus == Some(4.0)));
    let p = ok("resources:\n  cpus: 8+\n  memory: 64+\n");
    assert_eq!(p.chosen.instance_type, "r6i.2xlarge");
}

#[test]
fn accelerator_count_is_exact_per_node() {
    let p = ok("resources:\n  accelerators: {A100: 1}\n");
    assert_eq!(p.chosen.instance_type, "a2-highgpu-1g");
    assert!(p.failover.iter().all(|c| c.count == 1.0));
    let p = ok("resources:\n  accelerators: {A100: 8}\n");
    assert!(p.failover.iter().all(|c| c.count == 8.0));
}

#[test]
fn accelerator_set_takes_the_cheapest_and_list_the_first() {
    let p = ok("resources:\n  accelerators: {A100:1, V100:1}\n");
    assert_eq!(p.chosen.instance_type, "n1-highmem-8+V100");
    assert_eq!(p.feasible_count, 4);
    let p = ok("resources:\n  accelerators: [A100:1, V100:1]\n");
    assert_eq!(p.chosen.instance_type, "a2-highgpu-1g");
    // The failover list tries all A100 placements before any V100 one.
    assert_eq!(p.failover[0].accelerator.as_deref(), Some("A100"));
    assert_eq!(p.failover[1].accelerator.as_deref(), Some("V100"));
}

#[test]
fn names_match_case_insensitively() {
    let p = ok("resources:\n  accelerators: h100:8\n");
    assert_eq!(p.chosen.accelerator.as_deref(), Some("H100"));
}

#[test]
fn spot_uses_spot_prices() {
    let p = ok("resources:\n  accelerators: H100:8\n  use_spot: true\n");
    assert!(p.chosen.use_spot);
    assert_eq!(p.chosen.cloud, "gcp");
    assert_eq!(p.chosen.hourly_price, 30.0);
    // Lambda sells no spot: it is not a candidate.
    assert!(p.failover.iter().all(|c| c.cloud != "lambda"));
}

#[test]
fn location_fields_and_infra() {
    let p = ok("resources:\n  accelerators: H100:8\n  infra: aws\n");
    assert_eq!(p.chosen.cloud, "aws");
    let p = ok("resources:\n  accelerators: H100:8\n  cloud: aws\n  region: us-west-2\n");
    assert_eq!(p.chosen.region, "us-west-2");
    let p = ok("resources:\n  accelerators: A100:8\n  infra: gcp/us-central1/us-central1-b\n  use_spot: true\n");
    assert_eq!(p.chosen.zone.as_deref(), Some("us-central1-b"));
    assert_eq!(p.feasible_count, 1);
    let p = ok("resources:\n  accelerators: H100:8\n  infra: '*/us-east-1'\n");
    assert!(p.failover.iter().all(|c| c.region == "us-east-1"));
    assert_eq!(p.chosen.cloud, "lambda");
}

#[test]
fn instance_type_alone() {
    let p = ok("resources:\n  instance_type: p3.2xlarge\n");
    assert_eq!(p.chosen.accelerator.as_deref(), Some("V100"));
    assert_eq!(p.chosen.hourly_price, 3.06);
}

#[test]
fn any_of_takes_the_cheapest_and_ordered_the_first() {
    let y = "resources:\n  accelerators: H100:8\n  any_of:\n    - infra: aws/us-west-2\n    - infra: gcp/us-central1\n";
    let p = ok(y);
    assert_eq!(p.chosen.cloud, "gcp");
    assert_eq!(p.feasible_count, 2);
    let y = "resources:\n  accelerators: H100:8\n  ordered:\n    - infra: aws/us-west-2\n    - infra: gcp/us-central1\n";
    let p = ok(y);
    assert_eq!(p.chosen.cloud, "aws");
    assert_eq!(p.failover[1].cloud, "gcp");
    // Entries override the top-level accelerators.
    let y = "resources:\n  accelerators: H100:8\n  any_of:\n    - accelerators: V100:1\n      infra: azure\n    - infra: aws/us-east-1\n";
    let p = ok(y);
    assert_eq!(p.chosen.instance_type, "Standard_NC6s_v3");
}

#[test]
fn max_hourly_cost_filters() {
    let p = ok("resources:\n  accelerators: H100:8\n  max_hourly_cost: 90\n");
    assert!(p.failover.iter().all(|c| c.hourly_price <= 90.0));
    assert_eq!(p.feasible_count, 2);
}

#[test]
fn blocked_resources_are_excluded() {
    let opts = PlanOptions {
        blocked: vec![BlockedResource { cloud: "lambda".into(), region: None, zone: None }],
        ..PlanOptions::default()
    };
    let p = run("resources:\n  accelerators: H100:8\n", &opts).unwrap();
    assert_eq!(p.chosen.cloud, "gcp");
    assert!(p.failover.iter().all(|c| c.cloud != "lambda"));
    let opts = PlanOptions {
        blocked: vec![
            BlockedResource { cloud: "lambda".into(), region: None, zone: None },
            BlockedResource { cloud: "gcp".into(), region: Some("us-central1".into()), zone: Some("us-central1-a".into()) },
            BlockedResource { cloud: "aws".into(), region: Some("us-east-1".into()), zone: None },
        ],
        ..PlanOptions::default()
    };
    let p = run("resources:\n  accelerators: H100:8\n", &opts).unwrap();
    assert_eq!(p.chosen.region, "us-west-2");
    assert_eq!(p.feasible_count, 1);
    // Zone-level block leaves the other zone.
    let p = run("resources:\n  accelerators: A100:8\n  use_spot: true\n  infra: gcp\n", &opts).unwrap();
    assert_eq!(p.chosen.zone.as_deref(), Some("us-central1-b"));
    // Everything blocked: the explanation says so.
    let all = PlanOptions {
        blocked: ["aws", "gcp", "lambda"].iter().map(|c| BlockedResource { cloud: c.to_string(), region: None, zone: None }).collect(),
        ..PlanOptions::default()
    };
    let (reason, cut_by, nearest) = infeasible("resources:\n  accelerators: H100:8\n", &all);
    assert_eq!(cut_by, "blocked");
    assert!(reason.contains("blocked"), "{reason}");
    assert_eq!(nearest[0].cloud, "lambda");
}

#[test]
fn infeasible_count_names_nearest() {
    let (reason, cut_by, nearest) = infeasible("resources:\n  accelerators: H100:16\n", &PlanOptions::default());
    assert_eq!(cut_by, "accelerators");
    assert!(reason.starts_with("no H100:16 per node; nearest: H100:8 (gpu_8x_h100_sxm5)"), "{reason}");
    assert_eq!(nearest[0].count, 8.0);
}

#[test]
fn infeasible_unknown_accelerator_suggests_names() {
    // (`H10` alone would be read as H100, the only catalog name containing it: SkyPilot's lookup.)
    let (reason, cut_by, nearest) = infeasible("resources:\n  accelerators: H1O0:8\n", &PlanOptions::default());
    assert_eq!(cut_by, "accelerators");
    assert!(reason.contains("no accelerator `H1O0`"), "{reason}");
    assert!(nearest.iter().any(|p| p.accelerator.as_deref() == Some("H100")), "{nearest:?}");
}

#[test]
fn infeasible_names_the_cutting_constraint() {
    let o = PlanOptions::default();
    let (reason, cut_by, nearest) = infeasible("resources:\n  accelerators: H100:8\n  infra: azure\n", &o);
    assert_eq!(cut_by, "cloud=azure");
    assert!(reason.contains("on cloud `azure`"), "{reason}");
    assert_eq!(nearest[0].cloud, "lambda");
    let (_, cut_by, _) = infeasible("resources:\n  accelerators: H100:8\n  infra: aws/eu-west-1\n", &o);
    assert_eq!(cut_by, "region=eu-west-1");
    // 64+ vCPUs: only Lambda's 8×H100 machine (208 vCPUs) has them, and SkyPilot's Lambda
    // default takes GPU machines; 300+ has nothing.
    assert_eq!(ok("resources:\n  cpus: 64+\n").chosen.instance_type, "gpu_8x_h100_sxm5");
    let (_, cut_by, _) = infeasible("resources:\n  cpus: 300+\n", &o);
    assert_eq!(cut_by, "cpus=300+");
    let (_, cut_by, _) = infeasible("resources:\n  cpus: 8\n  memory: 500+\n", &o);
    assert!(cut_by.starts_with("memory"), "{cut_by}");
    // Lambda alone has H100:1, and it sells no spot (SkyPilot's feature table).
    let (reason, cut_by, _) = infeasible("resources:\n  accelerators: H100:1\n  use_spot: true\n", &o);
    assert_eq!(cut_by, "cloud features");
    assert!(reason.contains("spot"), "{reason}");
    // A spot price cap below every spot offer of the type.
    let (reason, cut_by, _) = infeasible("resources:\n  instance_type: m6i.large\n  use_spot: true\n  max_hourly_cost: 0.01\n", &o);
    assert_eq!(cut_by, "max_hourly_cost=0.01", "{reason}");
    let (reason, cut_by, nearest) = infeasible("resources:\n  accelerators: H100:8\n  max_hourly_cost: 5\n", &o);
    assert_eq!(cut_by, "max_hourly_cost=5");
    // The message names the cheapest price available: the figure to raise the cap to.
    let cheapest = sample()
        .iter()
        .filter(|x| x.accelerator_name.as_deref() == Some("H100") && x.accelerator_count == 8.0)
        .filter_map(|x| x.price)
        .fold(f64::INFINITY, f64::min);
    assert!(cheapest.is_finite() && cheapest > 5.0);
    assert!(reason.contains(&format!("the cheapest available is ${cheapest:.4}/h per node (${cheapest:.4}/h for 1 node)")), "{reason}");
    assert_eq!(nearest[0].hourly_price, cheapest);
    // Two nodes: the cap is per node (SkyPilot's Resources.max_hourly_cost); the message gives
    // the cluster's figure too.
    let (reason, _, _) = infeasible("num_nodes: 2\nresources:\n  accelerators: H100:8\n  max_hourly_cost: 5\n", &o);
    assert!(reason.contains(&format!("(${:.4}/h for 2 nodes)", 2.0 * cheapest)), "{reason}");
    let (_, cut_by, _) = infeasible("resources:\n  instance_type: x9.huge\n", &o);
    assert_eq!(cut_by, "instance_type=x9.huge");
}

#[test]
fn minimize_time_uses_hours_per_accelerator() {
    let mut opts = PlanOptions { minimize: Minimize::Time, ..PlanOptions::default() };
    opts.hours_by_accelerator.insert("A100".into(), 1.0);
    opts.hours_by_accelerator.insert("V100".into(), 3.0);
    let p = run("resources:\n  accelerators: {A100:1, V100:1}\n", &opts).unwrap();
    assert_eq!(p.chosen.accelerator.as_deref(), Some("A100"));
    assert_eq!(p.chosen.hours, 1.0);
    // By cost: V100 at 2.95 × 3 h = 8.85 > A100 at 3.67 × 1 h, so A100 also wins on cost here;
    // make V100 fast enough and cost flips while time does not.
    opts.hours_by_accelerator.insert("V100".into(), 1.1);
    let p = run("resources:\n  accelerators: {A100:1, V100:1}\n", &opts).unwrap();
    assert_eq!(p.chosen.accelerator.as_deref(), Some("A100"));
    opts.minimize = Minimize::Cost;
    let p = run("resources:\n  accelerators: {A100:1, V100:1}\n", &opts).unwrap();
    assert_eq!(p.chosen.accelerator.as_deref(), Some("V100"));
}

#[test]
fn bad_options_are_invalid_not_infeasible() {
    let opts = PlanOptions { hours: 0.0, ..PlanOptions::default() };
    match run("run: x\n", &opts) {
        Err(PlanError::Invalid { field, .. }) => assert_eq!(field, "hours"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failover_cap_and_unpriced_offers() {
    let mut offers = sample();
    offers.push(offer("aws", "us-east-2", None, "p5.48xlarge", Some(("H100", 8.0)), 192.0, 2048.0, None, None));
    let ix = OfferIndex::build(&offers);
    let opts = PlanOptions { max_failover: 2, ..PlanOptions::default() };
    let p = plan(&parse_task_yaml("resources:\n  accelerators: H100:8\n").unwrap(), &ix, &opts).unwrap();
    assert_eq!(p.failover.len(), 2);
    assert_eq!(p.feasible_count, 4);
    assert!(p.failover.iter().all(|c| c.region != "us-east-2"));
}

#[test]
fn empty_catalog_is_explained() {
    let ix = OfferIndex::build(&[]);
    match plan(&parse_task_yaml("run: x\n").unwrap(), &ix, &PlanOptions::default()) {
        Err(PlanError::Infeasible { cut_by, .. }) => assert_eq!(cut_by, "catalog"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_go_through_the_accelerator_registry() {
    // GCP's resource name and a vendor-prefixed spelling resolve to the canonical V100 / H100.
    let p = ok("resources:\n  accelerators: nvidia-tesla-v100:1\n");
    assert_eq!(p.chosen.accelerator.as_deref(), Some("V100"));
    let p = ok("resources:\n  accelerators: nvidia-h100:8\n");
    assert_eq!(p.chosen.accelerator.as_deref(), Some("H100"));
}

#[test]
fn a_discount_on_one_cloud_flips_the_choice() {
    let task = parse_task_yaml("resources:\n  accelerators: H100:8\n").unwrap();
    assert_eq!(plan(&task, &OfferIndex::build(&sample()), &PlanOptions::default()).unwrap().chosen.cloud, "lambda");
    // 75% off GCP's list price puts its 8×H100 under Lambda's.
    let mut offers = sample();
    let rules = skycat_catalog::PriceRules::parse("prices:\n  gcp: {discount: 0.75}\n", "config.yaml").unwrap();
    let changed = rules.apply(&mut offers);
    let p = plan(&task, &OfferIndex::build(&offers), &PlanOptions::default()).unwrap();
    assert_eq!(p.chosen.cloud, "gcp");
    assert!((p.chosen.hourly_price - 88.25 * 0.25).abs() < 1e-9, "{}", p.chosen.hourly_price);
    let c = changed.get("gcp", "a3-highgpu-8g", "us-central1", Some("us-central1-a")).unwrap();
    assert_eq!(c.list_price, Some(88.25));
    // A cap under the discounted price: the message names the effective cheapest, not a list price.
    let capped = parse_task_yaml("resources:\n  accelerators: H100:8\n  max_hourly_cost: 20\n").unwrap();
    match plan(&capped, &OfferIndex::build(&offers), &PlanOptions::default()) {
        Err(PlanError::Infeasible { reason, .. }) => assert!(reason.contains("the cheapest available is $22.0625/h"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
