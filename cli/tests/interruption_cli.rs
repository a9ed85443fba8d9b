//! Spot interruption bands through the binary: `show-gpus` shows them where the catalog has
//! them, `optimize` shows them on spot placements and `--minimize expected-cost` ranks by them.
//! The user catalog is the shipped AWS p4d.24xlarge rows (real prices) with a band set by the
//! test: SkyPilot's CSV, the shipped catalog's source, has none.

use std::path::Path;
use std::process::Output;

use skycat_catalog::SpotInterruption;
use skycat_testkit::output::{json, stderr, stdout};

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

#[test]
fn bands_show_in_show_gpus_and_optimize_and_drive_expected_cost() {
    let home = tempfile::tempdir().expect("tempdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data/aws.parquet");
    let mut rows: Vec<_> = skycat_catalog::parquet::read_offers(&shipped)
        .expect("shipped aws")
        .into_iter()
        .filter(|o| &*o.instance_type == "p4d.24xlarge" && o.spot_price.is_some())
        .collect();
    assert!(!rows.is_empty(), "the shipped catalog prices p4d.24xlarge spot");
    assert!(rows.iter().all(|o| o.spot_interruption.is_none()), "shipped rows carry no band");
    for o in &mut rows {
        o.spot_interruption = Some(SpotInterruption::Over20);
    }
    skycat_catalog::parquet::write_offers_atomic(&home.path().join("catalogs").join("aws.parquet"), &rows).expect("write");

    let listed = json(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "aws", "--json"]));
    assert_eq!(listed[0]["spot_interruption"], ">20%", "{listed}");
    let table = stdout(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "aws", "--all-regions"]));
    assert!(table.contains("SPOT_INTERRUPTION") && table.contains(">20%"), "{table}");
    // Clouds without bands: no column.
    let gcp = stdout(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "gcp"]));
    assert!(!gcp.contains("SPOT_INTERRUPTION"), "{gcp}");

    let task = home.path().join("task.yaml");
    std::fs::write(&task, "resources:\n  accelerators: A100:8\n  infra: aws\n  use_spot: true\n").unwrap();
    let task = task.to_str().unwrap();
    let plan = json(&skycat(home.path(), &["optimize", task, "--json"]));
    assert_eq!(plan["chosen"]["spot_interruption"], ">20%", "{}", plan["chosen"]);
    assert!(plan["chosen"].get("expected_cost").is_none());

    let out = skycat(home.path(), &["optimize", task, "--minimize", "expected-cost", "--restart-overhead", "1", "--hours", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("INTERRUPTION") && text.contains("EXPECTED($)") && text.contains("minimizing expected cost"), "{text}");
    let plan = json(&skycat(home.path(), &["optimize", task, "--json", "--minimize", "expected-cost", "--restart-overhead", "1", "--hours", "10"]));
    let (total, expected) = (plan["total_cost"].as_f64().unwrap(), plan["chosen"]["expected_cost"].as_f64().unwrap());
    let lambda = -(0.75f64).ln() / 730.0;
    assert!((expected - total * (1.0 + lambda)).abs() < 1e-9, "{expected} vs {total}");

    let bad = skycat(home.path(), &["optimize", task, "--minimize", "cheapest"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("expected-cost"), "{}", stderr(&bad));
}
