//! SkyPilot's default machine rules (SkyPilot 0.14.1): GCP's GPU hosts, and CPU-only tasks on
//! clouds that sell GPU machines only (issue 11 item 4). Over the shipped catalog
//! (`catalog-data/*.parquet`) and over hand-built offers.

mod common;

use std::path::Path;

use common::offer;
use skycat_optimizer::{parse_task_yaml, plan, OfferIndex, Plan, PlanError, PlanOptions};

fn shipped(clouds: &[&str]) -> OfferIndex {
    let mut offers = Vec::new();
    for c in clouds {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data").join(format!("{c}.parquet"));
        offers.extend(skycat_catalog::parquet::read_offers(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    OfferIndex::build(&offers)
}

fn plan_yaml(ix: &OfferIndex, yaml: &str) -> Result<Plan, PlanError> {
    plan(&parse_task_yaml(yaml).expect("task parses"), ix, &PlanOptions::default())
}

/// The seed's `chatbot-meta.yaml` (SkyPilot's llm/llama-2 example): `V100:1`, `disk_size: 1024`.
fn chatbot_meta() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama2_chatbot.yaml")).expect("fixture")
}

fn pinned(yaml: &str, infra: &str) -> String {
    yaml.replacen("resources:\n", &format!("resources:\n  infra: {infra}\n"), 1)
}

#[test]
fn chatbot_meta_on_gcp_gets_at_least_8_vcpus() {
    let ix = shipped(&["gcp"]);
    let p = plan_yaml(&ix, &pinned(&chatbot_meta(), "gcp")).expect("feasible");
    assert_eq!(p.chosen.cloud, "gcp");
    assert_eq!(p.chosen.accelerator.as_deref(), Some("V100"));
    assert!(p.chosen.vcpus.unwrap() >= 8.0, "{:?}", p.chosen);
    // Never the 2-vCPU host the cheapest-first walk found before.
    assert!(p.failover.iter().all(|c| c.vcpus.unwrap() >= 8.0), "{:?}", p.failover);
    // The shipped GCP catalog is an excerpt: its only n1 host with 8+ vCPUs and 32+ GiB
    // (n1-highmem-8) is in us-central2-b, where no V100 is sold. SkyPilot finds nothing; skycat
    // relaxes the implied memory and says so.
    assert_eq!(p.chosen.instance_type, "n1-standard-8");
    assert!(p.notes.iter().any(|n| n.contains("relaxed") && n.contains("V100")), "{:?}", p.notes);
}

#[test]
fn gcp_gpu_hosts_follow_skypilots_table() {
    let z = Some("us-central1-a");
    let v100 = Some(("V100", 1.0));
    let t4 = Some(("T4", 1.0));
    let offers = vec![
        // host price + GPU price, as the catalog composes them.
        offer("gcp", "us-central1", z, "n1-highcpu-2", v100, 2.0, 1.8, Some(2.55), Some(0.8)),
        offer("gcp", "us-central1", z, "n1-standard-8", v100, 8.0, 30.0, Some(2.86), Some(0.9)),
        offer("gcp", "us-central1", z, "n1-highmem-8", v100, 8.0, 52.0, Some(2.95), Some(0.95)),
        offer("gcp", "us-central1", z, "n1-megamem-8", v100, 8.0, 60.0, Some(2.90), Some(0.9)),
        offer("gcp", "us-central1", z, "n1-standard-2", t4, 2.0, 7.5, Some(0.45), Some(0.2)),
        offer("gcp", "us-central1", z, "n1-standard-4", t4, 4.0, 15.0, Some(0.54), Some(0.25)),
        offer("gcp", "us-central1", z, "n1-highmem-4", t4, 4.0, 26.0, Some(0.59), Some(0.27)),
        offer("gcp", "us-central1", z, "n1-standard-8", t4, 8.0, 30.0, Some(0.73), Some(0.3)),
    ];
    let ix = OfferIndex::build(&offers);
    // V100:1: 8+ vCPUs and 32+ GiB from n1-standard/highmem/highcpu.
    let p = plan_yaml(&ix, "resources:\n  accelerators: V100:1\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-highmem-8");
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    assert_eq!(p.feasible_count, 1);
    // T4:1: 4+ vCPUs and 16+ GiB: n1-standard-4 has 15.
    let p = plan_yaml(&ix, "resources:\n  accelerators: T4:1\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-highmem-4");
    // cpus given, memory not: 4 GiB per requested vCPU.
    let p = plan_yaml(&ix, "resources:\n  accelerators: T4:1\n  cpus: 8\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-standard-8");
    let p = plan_yaml(&ix, "resources:\n  accelerators: T4:1\n  cpus: 2+\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-standard-4", "2+ vCPUs needs 8+ GiB: n1-standard-2 has 7.5");
    // Both given: taken as written.
    let p = plan_yaml(&ix, "resources:\n  accelerators: T4:1\n  cpus: 2+\n  memory: 4+\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-standard-2");
    // Memory alone: no vCPU default.
    let p = plan_yaml(&ix, "resources:\n  accelerators: V100:1\n  memory: 1+\n").unwrap();
    assert_eq!(p.chosen.instance_type, "n1-highcpu-2");
    // Explicitly asking for more than the family offers is infeasible, naming the rule's bound.
    match plan_yaml(&ix, "resources:\n  accelerators: V100:1\n  cpus: 8\n  memory: 60\n") {
        Err(PlanError::Infeasible { cut_by, .. }) => assert!(cut_by.starts_with("memory") || cut_by.contains("host"), "{cut_by}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cpu_only_on_lambda_gets_the_cheapest_machine_with_enough_vcpus() {
    let ix = shipped(&["lambda"]);
    for yaml in ["resources:\n  cpus: 8+\n  infra: lambda\n", "resources:\n  cpus: 16+\n  infra: lambda\n", "resources:\n  infra: lambda\nrun: echo hi\n"] {
        let p = plan_yaml(&ix, yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(p.chosen.instance_type, "gpu_1x_a10", "{yaml}");
        assert_eq!(p.chosen.accelerator.as_deref(), Some("A10"));
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        let note = &p.notes[0];
        assert!(note.contains("GPU machine") && note.contains("gpu_1x_a10") && note.contains("lambda"), "{note}");
    }
    // 4 vCPUs exactly: Lambda's CPU machine fits, no note.
    let p = plan_yaml(&ix, "resources:\n  cpus: 4\n  infra: lambda\n").unwrap();
    assert_eq!(p.chosen.instance_type, "cpu_4x_general");
    assert!(p.notes.is_empty());
}

#[test]
fn cpu_only_defaults_per_cloud() {
    let offers = vec![
        offer("aws", "us-east-1", None, "t3.2xlarge", None, 8.0, 32.0, Some(0.33), None),
        offer("aws", "us-east-1", None, "m6i.2xlarge", None, 8.0, 32.0, Some(0.384), None),
        offer("aws", "us-east-1", None, "c6i.2xlarge", None, 8.0, 16.0, Some(0.34), None),
        offer("runpod", "CA", None, "cpu3c-2-4", None, 2.0, 4.0, Some(0.08), None),
        offer("runpod", "CA", None, "1x_RTX3090", Some(("RTX3090", 1.0)), 8.0, 24.0, Some(0.22), None),
        offer("fluidstack", "ARIZONA_USA", None, "A100_PCIE_80GB::1", Some(("A100-80GB", 1.0)), 6.0, 60.0, Some(1.8), None),
        offer("ovhcloud", "GRA", None, "b3-8", None, 2.0, 8.0, Some(0.05), None),
    ];
    let ix = OfferIndex::build(&offers);
    // AWS: the default families only (t3 is outside them), ≥4 GiB per vCPU.
    let p = plan_yaml(&ix, "resources:\n  infra: aws\n").unwrap();
    assert_eq!(p.chosen.instance_type, "m6i.2xlarge");
    let p = plan_yaml(&ix, "resources:\n  infra: aws\n  cpus: 8\n").unwrap();
    assert_eq!(p.chosen.instance_type, "m6i.2xlarge", "memory defaults to 4 GiB per vCPU");
    let p = plan_yaml(&ix, "resources:\n  infra: aws\n  cpus: 8\n  memory: 16\n").unwrap();
    assert_eq!(p.chosen.instance_type, "c6i.2xlarge");
    // RunPod's default has no size bound: the cheapest machine.
    let p = plan_yaml(&ix, "resources:\n  infra: runpod\n").unwrap();
    assert_eq!(p.chosen.instance_type, "cpu3c-2-4");
    let p = plan_yaml(&ix, "resources:\n  infra: runpod\n  cpus: 4+\n").unwrap();
    assert_eq!(p.chosen.instance_type, "1x_RTX3090");
    assert!(p.notes[0].contains("GPU machine"), "{:?}", p.notes);
    // Fluidstack: 6+ vCPUs, any machine.
    let p = plan_yaml(&ix, "resources:\n  infra: fluidstack\n").unwrap();
    assert_eq!(p.chosen.instance_type, "A100_PCIE_80GB::1");
    // A cloud SkyPilot has no rule for keeps the common default: 8+ vCPUs, CPU machines only.
    assert!(matches!(plan_yaml(&ix, "resources:\n  infra: ovhcloud\n"), Err(PlanError::Infeasible { .. })));
    // Outside the default families only when nothing inside fits: relaxed, with a note.
    let only_t3 = OfferIndex::build(&offers[..1]);
    let p = plan_yaml(&only_t3, "resources:\n  infra: aws\n").unwrap();
    assert_eq!(p.chosen.instance_type, "t3.2xlarge");
    assert!(p.notes.iter().any(|n| n.contains("relaxed")), "{:?}", p.notes);
}

#[test]
fn equal_prices_follow_skypilots_region_order() {
    let a100 = Some(("A100", 4.0));
    let offers = vec![
        offer("lambda", "asia-northeast-1", None, "gpu_4x_a100", a100, 120.0, 800.0, Some(5.16), None),
        offer("lambda", "europe-central-1", None, "gpu_4x_a100", a100, 120.0, 800.0, Some(5.16), None),
        offer("lambda", "us-west-1", None, "gpu_4x_a100", a100, 120.0, 800.0, Some(5.16), None),
        offer("lambda", "us-east-1", None, "gpu_4x_a100", a100, 120.0, 800.0, Some(5.16), None),
        offer("runpod", "CA", None, "4x_A100_SECURE", a100, 32.0, 500.0, Some(5.16), None),
    ];
    let ix = OfferIndex::build(&offers);
    // Lambda lists US regions first, then by name; across clouds, by cloud name.
    let p = plan_yaml(&ix, "resources:\n  accelerators: A100:4\n  infra: lambda\n").unwrap();
    let regions: Vec<&str> = p.failover.iter().map(|c| c.region.as_str()).collect();
    assert_eq!(regions, ["us-east-1", "us-west-1", "asia-northeast-1", "europe-central-1"]);
    let p = plan_yaml(&ix, "resources:\n  accelerators: A100:4\n").unwrap();
    assert_eq!((p.chosen.cloud.as_str(), p.chosen.region.as_str()), ("lambda", "us-east-1"));
}

#[test]
fn gcp_gpus_with_their_own_machines_use_skypilots_types() {
    let z = Some("us-central1-a");
    let h100 = Some(("H100", 8.0));
    let offers = vec![
        offer("gcp", "us-central1", z, "a3-edgegpu-8g", h100, 208.0, 1872.0, Some(43.06), None),
        offer("gcp", "us-central1", z, "a3-highgpu-8g", h100, 208.0, 1872.0, Some(43.06), None),
    ];
    let ix = OfferIndex::build(&offers);
    let p = plan_yaml(&ix, "resources:\n  accelerators: H100:8\n").unwrap();
    assert_eq!(p.chosen.instance_type, "a3-highgpu-8g");
    assert_eq!(p.feasible_count, 1);
    // Named, it is taken; alone in the catalog, it is the relaxed choice, with a note.
    let p = plan_yaml(&ix, "resources:\n  accelerators: H100:8\n  instance_type: a3-edgegpu-8g\n").unwrap();
    assert_eq!(p.chosen.instance_type, "a3-edgegpu-8g");
    let only_edge = OfferIndex::build(&offers[..1]);
    let p = plan_yaml(&only_edge, "resources:\n  accelerators: H100:8\n").unwrap();
    assert_eq!(p.chosen.instance_type, "a3-edgegpu-8g");
    assert!(p.notes.iter().any(|n| n.contains("relaxed")), "{:?}", p.notes);
}

#[test]
fn a_name_inside_exactly_one_catalog_name_means_that_one() {
    let offers = vec![
        offer("runpod", "CA", None, "1x_MI300X_SECURE", Some(("MI300X", 1.0)), 24.0, 283.0, Some(2.49), None),
        offer("runpod", "CA", None, "1x_A100_SECURE", Some(("A100", 1.0)), 8.0, 83.0, Some(1.19), None),
        offer("runpod", "CA", None, "1x_A100-80GB_SECURE", Some(("A100-80GB", 1.0)), 8.0, 117.0, Some(1.64), None),
    ];
    let ix = OfferIndex::build(&offers);
    // SkyPilot's lookup: `MI300` is part of `MI300X` only.
    let p = plan_yaml(&ix, "resources:\n  accelerators: MI300:1\n").unwrap();
    assert_eq!(p.chosen.instance_type, "1x_MI300X_SECURE");
    assert!(p.notes[0].contains("`MI300` is read as `MI300X`"), "{:?}", p.notes);
    assert_eq!(plan_yaml(&ix, "resources:\n  accelerators: 80GB:1\n").unwrap().chosen.instance_type, "1x_A100-80GB_SECURE");
    // Part of two names: ambiguous, not guessed.
    assert!(matches!(plan_yaml(&ix, "resources:\n  accelerators: A1:1\n"), Err(PlanError::Infeasible { .. })));
}

#[test]
fn clouds_lacking_a_needed_feature_are_left_out() {
    let a100 = Some(("A100", 1.0));
    let offers = vec![
        offer("runpod", "CA", None, "1x_A100_SECURE", a100, 8.0, 83.0, Some(1.19), None),
        offer("mithril", "us-central3-a", None, "a100-80gb.sxm.1x", a100, 16.0, 200.0, Some(1.5), None),
        offer("lambda", "us-east-1", None, "gpu_1x_a100", a100, 30.0, 200.0, Some(1.29), None),
        offer("aws", "us-east-1", None, "p4d.24xlarge/8", a100, 12.0, 144.0, Some(4.1), Some(2.5)),
    ];
    let ix = OfferIndex::build(&offers);
    assert_eq!(plan_yaml(&ix, "resources:\n  accelerators: A100:1\n").unwrap().chosen.cloud, "runpod");
    // RunPod has no multi-node clusters (SkyPilot 0.14.1); Mithril and Hyperbolic open no ports;
    // Lambda sells no spot.
    assert_eq!(plan_yaml(&ix, "num_nodes: 2\nresources:\n  accelerators: A100:1\n").unwrap().chosen.cloud, "lambda");
    let p = plan_yaml(&ix, "num_nodes: 2\nresources:\n  accelerators: A100:1\n  ports: 8000\n").unwrap();
    assert!(p.failover.iter().all(|c| c.cloud != "runpod" && c.cloud != "mithril"), "{:?}", p.failover);
    match plan_yaml(&ix, "num_nodes: 2\nresources:\n  accelerators: A100:1\n  infra: runpod\n") {
        Err(PlanError::Infeasible { reason, cut_by, .. }) => {
            assert_eq!(cut_by, "cloud features");
            assert!(reason.contains("multi-node"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cpu_only_spot_takes_the_type_cheapest_on_demand() {
    let offers = vec![
        offer("aws", "eu-north-1", None, "c6i.xlarge", None, 4.0, 8.0, Some(0.17), Some(0.055)),
        offer("aws", "ap-east-1", None, "m6i.xlarge", None, 4.0, 16.0, Some(0.19), Some(0.040)),
        offer("nebius", "eu-north1", None, "cpu-e2_4vcpu-16gb", None, 4.0, 16.0, Some(0.1), None),
        offer("nebius", "eu-north1", None, "gpu-h100-sxm_1gpu-16vcpu-200gb", Some(("H100", 1.0)), 16.0, 200.0, Some(2.95), Some(1.25)),
    ];
    let ix = OfferIndex::build(&offers);
    // SkyPilot: the type by on-demand price (c6i.xlarge), then its cheapest spot region.
    let p = plan_yaml(&ix, "resources:\n  cpus: 4+\n  memory: 8+\n  use_spot: true\n  infra: aws\n").unwrap();
    assert_eq!(p.chosen.instance_type, "c6i.xlarge");
    // Under a price cap, by spot price.
    let p = plan_yaml(&ix, "resources:\n  cpus: 4+\n  memory: 8+\n  use_spot: true\n  max_hourly_cost: 1\n  infra: aws\n").unwrap();
    assert_eq!(p.chosen.instance_type, "m6i.xlarge");
    // Nebius's cheapest fitting machine has no spot market: no spot GPU machine instead.
    match plan_yaml(&ix, "resources:\n  cpus: 4+\n  memory: 8+\n  use_spot: true\n  infra: nebius\n") {
        Err(PlanError::Infeasible { reason, cut_by, .. }) => {
            assert_eq!(cut_by, "use_spot=true");
            assert!(reason.contains("max_hourly_cost"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nebius_has_infiniband_on_8_gpu_machines_only() {
    let offers = vec![
        offer("nebius", "eu-north1", None, "gpu-h100-sxm_8gpu-128vcpu-1600gb", Some(("H100", 8.0)), 128.0, 1600.0, Some(23.6), None),
        offer("nebius", "eu-north1", None, "gpu-h100-sxm_1gpu-16vcpu-200gb", Some(("H100", 1.0)), 16.0, 200.0, Some(2.95), None),
    ];
    let ix = OfferIndex::build(&offers);
    assert!(plan_yaml(&ix, "resources:\n  accelerators: H100:8\n  network_tier: best\n").is_ok());
    assert!(plan_yaml(&ix, "resources:\n  accelerators: H100:1\n  network_tier: best\n").is_err());
}

#[test]
fn equal_prices_prefer_the_alternative_written_first() {
    let offers = vec![
        offer("runpod", "CA", None, "1x_A40_SECURE", Some(("A40", 1.0)), 9.0, 50.0, Some(0.44), None),
        offer("runpod", "CA", None, "1x_L4_SECURE", Some(("L4", 1.0)), 12.0, 50.0, Some(0.44), None),
        offer("seeweb", "bg-sof1", None, "eCS2", None, 2.0, 4.0, Some(0.032), None),
        offer("seeweb", "it-fr2", None, "eCS2", None, 2.0, 4.0, Some(0.032), None),
    ];
    let ix = OfferIndex::build(&offers);
    let p = plan_yaml(&ix, "resources:\n  accelerators: {L4: null, A40: null}\n").unwrap();
    assert_eq!(p.chosen.instance_type, "1x_L4_SECURE");
    let p = plan_yaml(&ix, "resources:\n  accelerators: {A40: null, L4: null}\n").unwrap();
    assert_eq!(p.chosen.instance_type, "1x_A40_SECURE");
    // Seeweb tries Frosinone first.
    assert_eq!(plan_yaml(&ix, "resources:\n  cpus: 2\n").unwrap().chosen.region, "it-fr2");
}
