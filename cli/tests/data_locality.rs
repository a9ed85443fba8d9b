//! `skycat optimize` with a task that reads buckets: each bucket's region and size are looked up
//! (moto's S3 on loopback) and every placement is charged moving the data there.

use std::path::Path;
use std::process::{Command, Output};

use skycat_testkit::moto::start_moto;
use skycat_testkit::output::{json, stderr, stdout};
use skycat_testkit::storage::http;

/// A SigV4-shaped header (moto checks no signature) scoped to `region`.
fn auth(region: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=testing/20250101/{region}/s3/aws4_request, SignedHeaders=host, Signature=0")
}

/// Makes `bucket` in `region` and stores `objects` (key, size in bytes) in it.
fn bucket(endpoint: &str, bucket: &str, region: &str, objects: &[(&str, usize)]) {
    let a = auth(region);
    let config = format!(
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
    );
    let headers = [("Authorization", a.as_str()), ("Content-Type", "application/xml")];
    let (code, body) = http(endpoint, "PUT", &format!("/{bucket}"), &headers, config.as_bytes());
    assert_eq!(code, 200, "create {bucket} in {region}: {body}");
    for (key, size) in objects {
        let (code, body) = http(endpoint, "PUT", &format!("/{bucket}/{key}"), &[("Authorization", a.as_str())], &vec![7u8; *size]);
        assert_eq!(code, 200, "put s3://{bucket}/{key}: {body}");
    }
}

fn optimize(home: &Path, endpoint: &str, task: &str, args: &[&str]) -> Output {
    let file = home.join("task.yaml");
    std::fs::write(&file, task).unwrap();
    Command::new(env!("CARGO_BIN_EXE_skycat"))
        .arg("optimize")
        .arg(&file)
        .args(args)
        .env("SKYCAT_HOME", home)
        .env("AWS_ENDPOINT_URL_S3", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .env_remove("SKYCAT_API_TOKEN")
        .output()
        .expect("run skycat")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn mounted_bucket_is_located_sized_and_priced() {
    let moto = start_moto();
    // 3 MB + 1 MB under train/, and 1 MB outside the prefix that must not count.
    bucket(&moto.url, "locdata", "us-west-2", &[("train/a.bin", 3_000_000), ("train/b.bin", 1_000_000), ("other.bin", 1_000_000)]);
    let home = tempfile::tempdir().unwrap();
    let task = "resources:\n  accelerators: A100:8\nfile_mounts:\n  /data: s3://locdata/train\n";

    let plan = json(&optimize(home.path(), &moto.url, task, &["--json"]));
    let inputs = plan["inputs"].as_array().expect("inputs in the plan");
    assert_eq!(inputs.len(), 1, "{plan:#}");
    assert_eq!(inputs[0]["name"], "s3://locdata/train");
    assert_eq!(inputs[0]["location"], serde_json::json!({"cloud": "aws", "region": "us-west-2"}));
    assert!(close(inputs[0]["size_gb"].as_f64().unwrap(), 0.004), "{}", inputs[0]);
    // Every placement carries its egress; the chosen one's is the plan's.
    assert!(plan["failover"].as_array().unwrap().iter().all(|p| p["egress_cost"].is_number()));
    assert_eq!(plan["egress_cost"], plan["chosen"]["egress_cost"]);
    let total = plan["total_cost"].as_f64().unwrap();
    let compute = plan["hourly_total"].as_f64().unwrap() * plan["chosen"]["hours"].as_f64().unwrap();
    assert!(close(total, compute + plan["egress_cost"].as_f64().unwrap()), "{plan:#}");

    // The table has the egress column and the total line splits compute and egress.
    let out = optimize(home.path(), &moto.url, task, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("EGRESS($)") && text.contains("TOTAL($)"), "{text}");
    assert!(text.contains("+ egress $"), "{text}");
    assert!(text.contains("s3://locdata/train") && text.contains("aws/us-west-2") && text.contains("0.0040"), "{text}");
    assert_eq!(stderr(&out).trim(), "", "no warning when every lookup works");
}

#[test]
fn inputs_entry_is_located_and_pulls_the_plan_to_its_region() {
    let moto = start_moto();
    bucket(&moto.url, "bigdata", "us-west-2", &[("shards/0", 1000)]);
    let home = tempfile::tempdir().unwrap();
    // SkyPilot's `inputs:` gives the size (500 GB); the lookup gives the region.
    let task = "resources:\n  cloud: aws\n  accelerators: A100:8\ninputs:\n  s3://bigdata/shards: 500\n";
    let plan = json(&optimize(home.path(), &moto.url, task, &["--json"]));
    assert_eq!(plan["inputs"][0]["location"]["region"], "us-west-2", "{plan:#}");
    assert_eq!(plan["inputs"][0]["size_gb"], 500.0);
    assert_eq!(plan["chosen"]["region"], "us-west-2", "{plan:#}");
    assert_eq!(plan["egress_cost"], 0.0);
    // Any other AWS region pays 500 GB at AWS's inter-region rate (catalog-data/egress.json).
    let elsewhere = plan["failover"].as_array().unwrap().iter().find(|p| p["region"] != "us-west-2").cloned().expect("another region");
    assert!(close(elsewhere["egress_cost"].as_f64().unwrap(), 500.0 * 0.02), "{elsewhere}");

    // Without the lookup the region is unknown: every AWS region pays the inter-region rate.
    let plan = json(&optimize(home.path(), &moto.url, task, &["--json", "--no-lookup"]));
    assert_eq!(plan["inputs"][0]["location"], serde_json::json!({"cloud": "aws", "region": null}));
    assert!(close(plan["egress_cost"].as_f64().unwrap(), 10.0), "{plan:#}");

    // --input gives the location without a lookup, and replaces the entry.
    let plan = json(&optimize(home.path(), &moto.url, task, &["--json", "--input", "s3://bigdata/shards@us-east-1=500"]));
    assert_eq!(plan["inputs"].as_array().unwrap().len(), 1);
    assert_eq!(plan["chosen"]["region"], "us-east-1", "{plan:#}");
}

#[test]
fn a_failed_lookup_is_one_warning_and_the_plan_goes_on() {
    let moto = start_moto();
    bucket(&moto.url, "present", "eu-west-1", &[("x", 10)]);
    let home = tempfile::tempdir().unwrap();
    let task = "resources:\n  accelerators: A100:8\nfile_mounts:\n  /a: s3://present\n  /b:\n    source: s3://absent-bucket/data\n    mode: MOUNT\n";
    let out = optimize(home.path(), &moto.url, task, &["--json"]);
    let plan = json(&out);
    let names: Vec<&str> = plan["inputs"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["s3://present"], "{plan:#}");
    assert_eq!(plan["inputs"][0]["location"]["region"], "eu-west-1");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("warning: s3://absent-bucket/data: not priced") && lines[0].contains("no such bucket"), "{err}");

    // --no-lookup contacts nothing: the mounts are named as not priced.
    let out = optimize(home.path(), &moto.url, task, &["--json", "--no-lookup"]);
    let plan = json(&out);
    assert!(plan.get("inputs").is_none(), "{plan:#}");
    assert_eq!(stderr(&out).lines().filter(|l| l.contains("not priced (--no-lookup)")).count(), 2, "{}", stderr(&out));
}
