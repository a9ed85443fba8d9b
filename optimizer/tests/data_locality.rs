//! Data locality in single-task plans: a task's data inputs are charged moving them to each
//! candidate placement (catalog-data/egress.json), and the ranking goes by compute + egress.

mod common;

use common::offer;
use skycat_optimizer::{
    optimize, parse_task_yaml, plan, plan_with_egress, DataInput, EgressTable, Location, OfferIndex, OptimizeRequest,
    OptimizeResponse, Placement, Plan, PlanError, PlanOptions,
};

/// A100:8 in three places: AWS us-east-1 ($32.00/h), AWS us-west-2 (slightly cheaper, $31.50/h)
/// and GCP us-central1 (cheapest, $30.00/h).
fn index() -> OfferIndex {
    OfferIndex::build(&[
        offer("aws", "us-east-1", None, "p4d.24xlarge", Some(("A100", 8.0)), 96.0, 1152.0, Some(32.00), None),
        offer("aws", "us-west-2", None, "p4d.24xlarge", Some(("A100", 8.0)), 96.0, 1152.0, Some(31.50), None),
        offer("gcp", "us-central1", Some("us-central1-a"), "a2-highgpu-8g", Some(("A100", 8.0)), 96.0, 680.0, Some(30.00), None),
    ])
}

const TASK: &str = "resources:\n  accelerators: A100:8\n";

/// The AWS rates read straight from the shipped file, not through the optimizer's code.
fn aws_rates() -> (f64, f64, f64) {
    let v: serde_json::Value = serde_json::from_str(include_str!("../../catalog-data/egress.json")).unwrap();
    let aws = &v["clouds"]["aws"];
    let f = |k: &str| aws[k].as_f64().unwrap_or_else(|| panic!("aws.{k} is a number"));
    (f("internet_per_gb"), f("inter_region_per_gb"), f("same_region_per_gb"))
}

fn s3_input(gb: f64) -> DataInput {
    DataInput {
        name: Some("s3://training-data/imagenet".into()),
        location: Location { cloud: "aws".into(), region: Some("us-east-1".into()) },
        size_gb: gb,
    }
}

fn run(yaml: &str, inputs: Vec<DataInput>) -> Plan {
    let opts = PlanOptions { inputs, ..PlanOptions::default() };
    plan(&parse_task_yaml(yaml).unwrap(), &index(), &opts).unwrap()
}

fn at<'a>(p: &'a Plan, cloud: &str, region: &str) -> &'a Placement {
    p.failover.iter().find(|x| x.cloud == cloud && x.region == region).unwrap_or_else(|| panic!("{cloud}/{region} in {p:#?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn big_input_pulls_the_plan_to_the_data_region() {
    let (internet, inter, same) = aws_rates();
    assert_eq!((internet, inter, same), (0.09, 0.02, 0.0), "the shipped AWS rates this test was written against");
    let p = run(TASK, vec![s3_input(500.0)]);
    // us-east-1: 32.00 + 0; us-west-2: 31.50 + 500 × 0.02 = 41.50; GCP: 30.00 + 500 × 0.09 = 75.00.
    assert_eq!((p.chosen.cloud.as_str(), p.chosen.region.as_str()), ("aws", "us-east-1"));
    assert!(close(p.egress_cost, 500.0 * same));
    assert!(close(p.total_cost, 32.00));
    let west = at(&p, "aws", "us-west-2");
    assert!(close(west.egress_cost, 500.0 * inter), "{west:?}");
    assert!(close(west.total_cost, 31.50 + 500.0 * inter));
    let gcp = at(&p, "gcp", "us-central1");
    assert!(close(gcp.egress_cost, 500.0 * internet), "{gcp:?}");
    assert!(close(gcp.total_cost, 30.00 + 500.0 * internet));
    // The failover order and the cheapest per cloud go by the total.
    let order: Vec<&str> = p.failover.iter().map(|x| x.region.as_str()).collect();
    assert_eq!(order, ["us-east-1", "us-west-2", "us-central1"]);
    let clouds: Vec<&str> = p.per_cloud_cheapest.iter().map(|x| x.cloud.as_str()).collect();
    assert_eq!(clouds, ["aws", "gcp"]);
    assert_eq!(p.per_cloud_cheapest[0].region, "us-east-1");
    // The plan names the input and its transfer to the chosen placement.
    assert_eq!(p.inputs.len(), 1);
    assert_eq!(p.inputs[0].name.as_deref(), Some("s3://training-data/imagenet"));
    assert_eq!(p.inputs[0].location.region.as_deref(), Some("us-east-1"));
    assert!(close(p.inputs[0].size_gb, 500.0) && close(p.inputs[0].usd_per_gb, same));
}

#[test]
fn small_input_lets_the_cheaper_region_win() {
    let (internet, inter, _) = aws_rates();
    let p = run(TASK, vec![s3_input(10.0)]);
    // GCP: 30.00 + 10 × 0.09 = 30.90 < us-west-2: 31.50 + 0.20 < us-east-1: 32.00.
    assert_eq!((p.chosen.cloud.as_str(), p.chosen.region.as_str()), ("gcp", "us-central1"));
    assert!(close(p.egress_cost, 10.0 * internet));
    assert!(close(p.total_cost, 30.00 + 10.0 * internet));
    assert!(close(p.inputs[0].usd_per_gb, internet));
    let order: Vec<&str> = p.failover.iter().map(|x| x.region.as_str()).collect();
    assert_eq!(order, ["us-central1", "us-west-2", "us-east-1"]);
    assert!(close(at(&p, "aws", "us-west-2").total_cost, 31.50 + 10.0 * inter));

    // Between the two AWS regions alone the break-even is 0.50 / 0.02 = 25 GB.
    let aws_only = "resources:\n  cloud: aws\n  accelerators: A100:8\n";
    assert_eq!(run(aws_only, vec![s3_input(24.0)]).chosen.region, "us-west-2");
    assert_eq!(run(aws_only, vec![s3_input(26.0)]).chosen.region, "us-east-1");
}

#[test]
fn without_inputs_the_plan_is_compute_only() {
    let p = run(TASK, Vec::new());
    assert_eq!(p.chosen.region, "us-central1");
    assert_eq!(p.egress_cost, 0.0);
    assert!(p.inputs.is_empty());
    assert!(p.failover.iter().all(|x| x.egress_cost == 0.0 && close(x.total_cost, x.hourly_total * x.hours)));
    // A zero-sized input changes nothing in the order.
    let z = run(TASK, vec![s3_input(0.0)]);
    let regions = |p: &Plan| p.failover.iter().map(|x| x.region.clone()).collect::<Vec<_>>();
    assert_eq!(regions(&z), regions(&p));
    // Old JSON (no egress fields) still reads, and the new fields are written.
    let mut v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["egress_cost"], 0.0);
    assert_eq!(v["chosen"]["egress_cost"], 0.0);
    assert!(v.get("inputs").is_none());
    v.as_object_mut().unwrap().remove("egress_cost");
    v["chosen"].as_object_mut().unwrap().remove("egress_cost");
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back.chosen, p.chosen);
}

#[test]
fn the_task_inputs_field_applies_and_a_located_entry_replaces_it() {
    let (_, inter, _) = aws_rates();
    let yaml = "resources:\n  accelerators: A100:8\ninputs:\n  s3://training-data/imagenet: 500\n";
    // From the YAML alone the bucket's region is unknown: every AWS region pays the
    // inter-region rate, so us-west-2 (cheaper compute) beats us-east-1.
    let p = run(yaml, Vec::new());
    assert_eq!((p.chosen.cloud.as_str(), p.chosen.region.as_str()), ("aws", "us-west-2"));
    assert!(close(p.egress_cost, 500.0 * inter));
    assert_eq!(p.inputs.len(), 1);
    assert_eq!(p.inputs[0].location, Location { cloud: "aws".into(), region: None });
    // The caller looked the bucket up: the located entry replaces the YAML's (not added twice).
    let p = run(yaml, vec![s3_input(500.0)]);
    assert_eq!(p.chosen.region, "us-east-1");
    assert_eq!(p.inputs.len(), 1);
    assert_eq!(p.egress_cost, 0.0);
}

#[test]
fn several_inputs_add_up() {
    let (internet, inter, _) = aws_rates();
    let gcs = DataInput {
        name: Some("gs://ckpts".into()),
        location: Location { cloud: "gcp".into(), region: Some("us-central1".into()) },
        size_gb: 100.0,
    };
    let p = run(TASK, vec![s3_input(500.0), gcs.clone()]);
    let egress = EgressTable::shipped();
    let gcp_out = egress.clouds["gcp"].internet_per_gb.unwrap();
    let west = at(&p, "aws", "us-west-2");
    assert!(close(west.egress_cost, 500.0 * inter + 100.0 * gcp_out), "{west:?}");
    let central = at(&p, "gcp", "us-central1");
    assert!(close(central.egress_cost, 500.0 * internet), "{central:?}");
    assert_eq!(p.inputs.len(), 2);
    assert!(close(p.egress_cost, p.inputs.iter().map(|i| i.cost).sum()));
}

#[test]
fn optimize_uses_the_table_it_is_given() {
    // A table where AWS inter-region transfer is free: us-west-2 wins again over us-east-1.
    let mut table = EgressTable::shipped();
    table.clouds.get_mut("aws").unwrap().inter_region_per_gb = Some(0.0);
    let task = parse_task_yaml("resources:\n  cloud: aws\n  accelerators: A100:8\n").unwrap();
    let opts = PlanOptions { inputs: vec![s3_input(500.0)], ..PlanOptions::default() };
    let p = plan_with_egress(&task, &index(), &table, &opts).unwrap();
    assert_eq!(p.chosen.region, "us-west-2");
    let resp = optimize(&OptimizeRequest::Task(task.clone()), &index(), &EgressTable::shipped(), &opts).unwrap();
    let OptimizeResponse::Task(p) = resp else { panic!("a task plan") };
    assert_eq!(p.chosen.region, "us-east-1");
}

#[test]
fn bad_inputs_are_invalid_requests() {
    let task = parse_task_yaml(TASK).unwrap();
    let opts = PlanOptions { inputs: vec![s3_input(-1.0)], ..PlanOptions::default() };
    match plan(&task, &index(), &opts) {
        Err(PlanError::Invalid { field, .. }) => assert_eq!(field, "inputs[0].size_gb"),
        other => panic!("expected invalid: {other:?}"),
    }
}

#[test]
fn input_specs_parse() {
    let d = DataInput::parse("s3://bucket/data@us-east-1=500").unwrap();
    assert_eq!(d.name.as_deref(), Some("s3://bucket/data"));
    assert_eq!(d.location, Location { cloud: "aws".into(), region: Some("us-east-1".into()) });
    assert_eq!(d.size_gb, 500.0);
    let d = DataInput::parse("gs://b=2.5").unwrap();
    assert_eq!(d.location, Location { cloud: "gcp".into(), region: None });
    let d = DataInput::parse("https://acct.blob.core.windows.net/c/x@eastus=1").unwrap();
    assert_eq!((d.location.cloud.as_str(), d.location.region.as_deref()), ("azure", Some("eastus")));
    let d = DataInput::parse("AWS/us-west-2=7").unwrap();
    assert_eq!(d.name, None);
    assert_eq!(d.location, Location { cloud: "aws".into(), region: Some("us-west-2".into()) });
    for bad in ["s3://b", "s3://b=x", "s3://b=-1", "ftp://x=1", "=1"] {
        assert!(DataInput::parse(bad).is_err(), "{bad}");
    }
}
