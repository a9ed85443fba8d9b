//! `skycat cost-report` over a seeded ledger: the per-cluster report marks a custom pinned price;
//! `--all-users --since` gives per-user, per-cloud costs of what was metered in the window.

use std::path::Path;
use std::process::Output;

use chrono::{Duration, Utc};
use skycat_controller::store::{ClusterRow, Store};
use skycat_protocol::CostRecord;
use skycat_testkit::output::{json, stderr, stdout};

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

fn cluster(id: &str, name: &str, infra: &str, itype: &str, price: f64) -> ClusterRow {
    let now = Utc::now().to_rfc3339();
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: "TERMINATED".into(),
        infra: infra.into(),
        pool: String::new(),
        num_nodes: 1,
        price_per_hour: price,
        spot: false,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: now.clone(),
        updated_at: now,
        terminated_at: None,
        instance_type: Some(itype.into()),
        ports: None,
    }
}

fn record(c: &ClusterRow, hours_ago: i64, usd: f64) -> CostRecord {
    let to = Utc::now() - Duration::hours(hours_ago);
    CostRecord {
        cluster: c.name.clone(),
        node_id: "n0".into(),
        launch_id: Some("l1".into()),
        from: to - Duration::hours(1),
        to,
        seconds: 3600.0,
        price_per_hour: c.price_per_hour,
        usd,
        kind: "metered".into(),
    }
}

#[test]
fn cost_report_marks_custom_prices_and_reports_the_team_since_a_date() {
    let home = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&home.path().join("state.db")).await.unwrap();
        // An AWS cluster at the discounted p4d price, and a GCP one at its list price.
        let aws = cluster("c-aws", "train", "aws/us-east-1/use1-az6", "p4d.24xlarge", 32.7726 * 0.6);
        let gcp = cluster("c-gcp", "eval", "gcp/us-central1/us-central1-a", "a2-highgpu-1g", 3.67339);
        for c in [&aws, &gcp] {
            store.insert_cluster(c, "x").await.unwrap();
        }
        // AWS: metered 2 h ago and 40 days ago; GCP: 1 h ago.
        store.record_costs(&aws, &[record(&aws, 2, 19.66), record(&aws, 40 * 24, 100.0)], "test").await.unwrap();
        store.record_costs(&gcp, &[record(&gcp, 1, 3.67)], "test").await.unwrap();
    });
    std::fs::write(home.path().join("config.yaml"), "prices:\n  aws: {discount: 0.40}\n").unwrap();

    let out = skycat(home.path(), &["cost-report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let train = text.lines().find(|l| l.contains("train")).expect("train row");
    assert!(train.contains("19.66 custom"), "{text}");
    let eval = text.lines().find(|l| l.contains("eval")).expect("eval row");
    assert!(!eval.contains("custom"), "{text}");
    let rows = json(&skycat(home.path(), &["cost-report", "--json"]));
    let train = rows.as_array().unwrap().iter().find(|r| r["name"] == "train").unwrap().clone();
    assert_eq!(train["custom_price"], "prices.aws.discount 40%", "{train}");

    // The team since 30 days ago: the 40-day-old record is out.
    let team = json(&skycat(home.path(), &["cost-report", "--all-users", "--since", "30d", "--json"]));
    assert!((team["per_cloud"]["aws"].as_f64().unwrap() - 19.66).abs() < 1e-9, "{team}");
    assert!((team["per_cloud"]["gcp"].as_f64().unwrap() - 3.67).abs() < 1e-9, "{team}");
    assert!((team["per_user"]["(cli)"].as_f64().unwrap() - 23.33).abs() < 1e-9, "{team}");
    let lines = team["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{team}");
    assert_eq!(lines[0]["cluster"], "train", "dearest first: {team}");
    // Without --since, everything; a bad --since is a one-line error.
    let all = json(&skycat(home.path(), &["cost-report", "--all-users", "--json"]));
    assert!((all["total_usd"].as_f64().unwrap() - 123.33).abs() < 1e-9, "{all}");
    let out = skycat(home.path(), &["cost-report", "--all-users", "--since", "last week"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--since") && stderr(&out).trim().lines().count() == 1, "{}", stderr(&out));
    let table = stdout(&skycat(home.path(), &["cost-report", "--all-users", "--since", "30d"]));
    assert!(table.contains("Per user: (cli) $ 23.3300") && table.contains("Per cloud: aws $ 19.6600, gcp $ 3.6700"), "{table}");
}
