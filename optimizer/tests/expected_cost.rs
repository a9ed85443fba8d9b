//! `minimize: expected-cost`: spot placements are charged the restart overhead their AWS Spot
//! Instance Advisor band predicts (docs/expected-cost.md). Expected figures are computed here
//! from the documented formula, not read back from the optimizer.

mod common;

use common::offer;
use skycat_catalog::{Offer, SpotInterruption};
use skycat_optimizer::{parse_task_yaml, plan, Minimize, OfferIndex, PlanError, PlanOptions};

const HOURS: f64 = 10.0;
const OVERHEAD: f64 = 2.0;

/// λ = −ln(1 − p)/730 per node-hour, p the band's upper edge (`>20%`: 25 %).
fn hazard(p: f64) -> f64 {
    -(1.0 - p).ln() / 730.0
}

/// price × (hours + nodes × λ × hours × overhead).
fn expected(price: f64, p: f64) -> f64 {
    price * (HOURS + hazard(p) * HOURS * OVERHEAD)
}

fn banded(mut o: Offer, band: Option<SpotInterruption>) -> Offer {
    o.spot_interruption = band;
    o
}

fn opts(minimize: Minimize) -> PlanOptions {
    PlanOptions { minimize, hours: HOURS, restart_overhead_hours: OVERHEAD, ..PlanOptions::default() }
}

fn run(offers: Vec<Offer>, yaml: &str, minimize: Minimize) -> Result<skycat_optimizer::Plan, PlanError> {
    let task = parse_task_yaml(yaml).expect("task");
    plan(&task, &OfferIndex::from_offers(offers), &opts(minimize))
}

const SPOT_OR_ON_DEMAND: &str = "resources:\n  accelerators: A100:8\n  any_of:\n    - use_spot: true\n    - use_spot: false\n";
const SPOT: &str = "resources:\n  accelerators: A100:8\n  use_spot: true\n";

#[test]
fn a_slightly_cheaper_often_interrupted_spot_loses_to_on_demand() {
    let offers = vec![banded(
        offer("aws", "us-east-1", None, "p4d.24xlarge", Some(("A100", 8.0)), 96.0, 1152.0, Some(10.0), Some(9.995)),
        Some(SpotInterruption::Over20),
    )];
    let by_cost = run(offers.clone(), SPOT_OR_ON_DEMAND, Minimize::Cost).expect("plan");
    assert!(by_cost.chosen.use_spot, "{:?}", by_cost.chosen);
    assert_eq!(by_cost.chosen.spot_interruption, Some(SpotInterruption::Over20));
    assert_eq!(by_cost.chosen.expected_cost, None);

    let spot_expected = expected(9.995, 0.25);
    assert!(spot_expected > 10.0 * HOURS, "the test's premise: {spot_expected}");
    let p = run(offers, SPOT_OR_ON_DEMAND, Minimize::ExpectedCost).expect("plan");
    assert!(!p.chosen.use_spot, "{:?}", p.chosen);
    assert_eq!(p.chosen.spot_interruption, None, "no band on an on-demand placement");
    assert_eq!(p.chosen.expected_cost, Some(10.0 * HOURS));
    assert_eq!(p.total_cost, 10.0 * HOURS);
    let spot = p.failover.iter().find(|x| x.use_spot).expect("spot in the failover list");
    assert!((spot.expected_cost.unwrap() - spot_expected).abs() < 1e-9, "{spot:?}");
    assert!((spot.total_cost - 9.995 * HOURS).abs() < 1e-9, "total_cost stays the list figure");
    assert!(p.notes.iter().any(|n| n.contains("minimizing expected cost") && n.contains("on demand")), "{:?}", p.notes);
}

#[test]
fn a_rarely_interrupted_spot_beats_a_cheaper_one_without_a_band() {
    let offers = vec![
        // No band (as every non-AWS spot market): charged as >20%.
        offer("gcp", "us-central1", Some("us-central1-a"), "a2-highgpu-8g", Some(("A100", 8.0)), 96.0, 680.0, Some(12.0), Some(9.995)),
        banded(
            offer("aws", "us-east-1", None, "p4d.24xlarge", Some(("A100", 8.0)), 96.0, 1152.0, Some(12.0), Some(9.996)),
            Some(SpotInterruption::Under5),
        ),
    ];
    let by_cost = run(offers.clone(), SPOT, Minimize::Cost).expect("plan");
    assert_eq!(by_cost.chosen.cloud, "gcp");

    let (gcp, aws) = (expected(9.995, 0.25), expected(9.996, 0.05));
    assert!(aws < gcp, "the test's premise: {aws} < {gcp}");
    let p = run(offers, SPOT, Minimize::ExpectedCost).expect("plan");
    assert_eq!(p.chosen.cloud, "aws");
    assert_eq!(p.chosen.spot_interruption, Some(SpotInterruption::Under5));
    assert!((p.chosen.expected_cost.unwrap() - aws).abs() < 1e-9);
    // Cheapest per cloud goes by the objective too.
    let order: Vec<&str> = p.per_cloud_cheapest.iter().map(|x| x.cloud.as_str()).collect();
    assert_eq!(order, ["aws", "gcp"]);
    assert!((p.per_cloud_cheapest[1].expected_cost.unwrap() - gcp).abs() < 1e-9);
    assert!(p.notes.iter().any(|n| n.contains("band <5%")), "{:?}", p.notes);
}

#[test]
fn overhead_must_be_a_non_negative_number_and_parses_from_text() {
    let o = PlanOptions { restart_overhead_hours: -1.0, ..opts(Minimize::ExpectedCost) };
    let task = parse_task_yaml(SPOT).unwrap();
    match plan(&task, &OfferIndex::from_offers(Vec::new()), &o) {
        Err(PlanError::Invalid { field, .. }) => assert_eq!(field, "restart_overhead_hours"),
        other => panic!("{other:?}"),
    }
    assert_eq!("expected-cost".parse::<Minimize>(), Ok(Minimize::ExpectedCost));
    assert_eq!(serde_json::to_string(&Minimize::ExpectedCost).unwrap(), "\"expected-cost\"");
    assert!("cheap".parse::<Minimize>().unwrap_err().contains("expected-cost"));
}
