//! Your prices, not the list price: `prices:` in config.yaml changes what `optimize` picks and
//! what `show-gpus` shows (marked custom, the list price beside it); `--max-hourly-cost` caps the
//! plan. Against the real shipped catalog, through the binary.

use std::path::Path;
use std::process::Output;

use skycat_testkit::output::{json, stderr, stdout};

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

/// On the shipped catalog GCP's 8×A100 is cheaper than Azure's, by less than 40% of Azure's.
const TASK: &str = "resources:\n  accelerators: A100:8\n  any_of:\n    - infra: azure\n    - infra: gcp\n";

fn price(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_40_percent_discount_on_one_cloud_flips_the_choice() {
    let home = tempfile::tempdir().unwrap();
    let task = home.path().join("task.yaml");
    std::fs::write(&task, TASK).unwrap();
    let task = task.to_str().unwrap();

    // List prices: one cloud is cheaper; the other's cheapest is dearer, by less than 40%'s worth.
    let list = json(&skycat(home.path(), &["optimize", task, "--json"]));
    let (winner, p_win) = (list["chosen"]["cloud"].as_str().unwrap().to_string(), price(&list["chosen"]["hourly_price"]));
    let other = list["per_cloud_cheapest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cloud"] != winner.as_str())
        .expect("both clouds sell A100:8")
        .clone();
    let (loser, p_lose) = (other["cloud"].as_str().unwrap().to_string(), price(&other["hourly_price"]));
    assert!(p_lose > p_win && p_lose * 0.6 < p_win, "{winner} {p_win} vs {loser} {p_lose}: 40% off would not flip");
    assert!(list.get("custom_prices").is_none(), "no rules, no custom prices");

    // 40% off the dearer cloud: it wins, at 60% of its list price, marked custom.
    std::fs::write(home.path().join("config.yaml"), format!("prices:\n  {loser}: {{discount: 0.40}}\n")).unwrap();
    let mine = json(&skycat(home.path(), &["optimize", task, "--json"]));
    assert_eq!(mine["chosen"]["cloud"], loser.as_str());
    assert_eq!(mine["chosen"]["instance_type"], other["instance_type"]);
    assert!((price(&mine["chosen"]["hourly_price"]) - p_lose * 0.6).abs() < 1e-9, "{}", mine["chosen"]);
    let custom = mine["custom_prices"].as_array().expect("custom_prices");
    let c = custom.iter().find(|c| c["instance_type"] == other["instance_type"] && c["region"] == mine["chosen"]["region"]).expect("chosen is custom");
    assert!((price(&c["list_hourly_price"]) - p_lose).abs() < 1e-9, "{c}");
    assert_eq!(c["rule"], format!("prices.{loser}.discount 40%"));
    assert!(custom.iter().all(|c| c["cloud"] == loser.as_str()), "only {loser} is discounted: {custom:?}");

    // The table says so too, with the list price beside it.
    let out = skycat(home.path(), &["optimize", task]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("custom (list"), "{text}");

    // show-gpus: effective price, list price beside it; --list-prices shows the catalog's.
    let itype = other["instance_type"].as_str().unwrap();
    let rows = json(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", &loser, "--json"]));
    let row = rows.as_array().unwrap().iter().find(|r| r["instance_type"] == itype).expect("row").clone();
    assert!((price(&row["list_price"]) - price(&row["price"]) / 0.6).abs() < 1e-6, "{row}");
    let rows = json(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", &loser, "--json", "--list-prices"]));
    let row = rows.as_array().unwrap().iter().find(|r| r["instance_type"] == itype).expect("row").clone();
    assert!(row.get("list_price").is_none(), "{row}");
    let table = stdout(&skycat(home.path(), &["show-gpus", "A100:8", "--cloud", &loser]));
    assert!(table.contains("custom (list"), "{table}");
}

#[test]
fn a_price_cap_under_the_cheapest_is_infeasible_and_names_the_cheapest() {
    let home = tempfile::tempdir().unwrap();
    let task = home.path().join("task.yaml");
    std::fs::write(&task, TASK).unwrap();
    let task = task.to_str().unwrap();
    let list = json(&skycat(home.path(), &["optimize", task, "--json"]));
    let cheapest = price(&list["chosen"]["hourly_price"]);

    // A cap just above the cheapest keeps exactly the placements at or under it.
    let cap = format!("{:.4}", cheapest + 0.001);
    let capped = json(&skycat(home.path(), &["optimize", task, "--json", "--max-hourly-cost", &cap]));
    assert!(capped["failover"].as_array().unwrap().iter().all(|p| price(&p["hourly_price"]) <= cheapest + 0.001));

    // Under it: infeasible, one line naming the cap and the cheapest price available.
    let out = skycat(home.path(), &["optimize", task, "--max-hourly-cost", "5"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("max_hourly_cost=5"), "{err}");
    assert!(err.contains(&format!("the cheapest available is ${cheapest:.4}/h per node")), "{err}");
    // A flag that is not a price is refused.
    let out = skycat(home.path(), &["optimize", task, "--max-hourly-cost", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--max-hourly-cost"), "{}", stderr(&out));
}

#[test]
fn a_bad_price_rule_is_a_one_line_error_naming_its_key() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.yaml"), "prices:\n  aws: {discount: 40}\n").unwrap();
    for args in [&["show-gpus", "A100:8"][..], &["optimize", "task.yaml"][..]] {
        std::fs::write(home.path().join("task.yaml"), TASK).unwrap();
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if a[0] == "optimize" {
            a[1] = home.path().join("task.yaml").display().to_string();
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = skycat(home.path(), &a);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("config.yaml: prices.aws.discount: must be a fraction below 1"), "{err}");
    }
}
