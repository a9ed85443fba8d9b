//! `skycat show-gpus` and `skycat catalog` against the real shipped catalog, through the binary.

use std::path::Path;
use std::process::Output;

use skycat_testkit::output::{json, stderr, stdout};

fn skycat(home: &Path, args: &[&str]) -> Output {
    skycat_testkit::output::run_in(env!("CARGO_BIN_EXE_skycat"), home, args)
}

#[test]
fn p4d_a100x8_in_us_east_1_shows_its_catalog_price() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "aws", "--region", "us-east-1", "--json"]);
    let rows = json(&out);
    let rows = rows.as_array().expect("array");
    let p4d: Vec<_> = rows.iter().filter(|r| r["instance_type"] == "p4d.24xlarge").collect();
    // us-east-1 lists p4d.24xlarge in three zones, all at the 32.7726 list price, spot per zone.
    assert_eq!(p4d.len(), 3, "{rows:#?}");
    for r in &p4d {
        assert_eq!(r["price"], 32.7726);
        assert_eq!(r["accelerator"], "A100");
        assert_eq!(r["count"], 8.0);
    }
    let zones: Vec<&str> = p4d.iter().filter_map(|r| r["zone"].as_str()).collect();
    assert!(zones.contains(&"use1-az6"), "{zones:?}");
    let spot6 = p4d.iter().find(|r| r["zone"] == "use1-az6").map(|r| r["spot_price"].clone());
    assert_eq!(spot6, Some(serde_json::json!(6.8179)));

    // The human table names the instance and the price too.
    let table = skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "aws"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.contains("p4d.24xlarge") && text.contains("32.773"), "{text}");
}

#[test]
fn gcp_a2_highgpu_1g_is_host_plus_a100() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = skycat(home.path(), &["show-gpus", "A100:1", "--cloud", "gcp", "--region", "us-central1", "--json"]);
    let rows = json(&out);
    let a2 = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["instance_type"] == "a2-highgpu-1g" && r["zone"] == "us-central1-a")
        .cloned()
        .expect("a2-highgpu-1g in us-central1-a");
    // Host 0.73948 + one A100 2.93391; spot 0.29576 + 1.1472.
    let price = a2["price"].as_f64().expect("price");
    assert!((price - (0.73948 + 2.93391)).abs() < 1e-9, "{a2}");
    let spot = a2["spot_price"].as_f64().expect("spot");
    assert!((spot - (0.29576 + 1.1472)).abs() < 1e-9, "{a2}");
}

#[test]
fn summary_lists_common_gpus_with_prices_per_cloud() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = skycat(home.path(), &["show-gpus", "--json"]);
    let rows = json(&out);
    let rows = rows.as_array().expect("array");
    let h100_aws = rows.iter().find(|r| r["accelerator"] == "H100" && r["cloud"] == "aws").expect("H100 on aws");
    assert_eq!(h100_aws["counts"], serde_json::json!([8.0]));
    assert!(h100_aws["on_demand_per_device"].as_f64().is_some_and(|p| p > 1.0));
    for cloud in ["aws", "gcp", "azure", "lambda", "oci", "runpod", "vast"] {
        assert!(rows.iter().any(|r| r["cloud"] == cloud), "{cloud} missing from the summary");
    }
    let text = stdout(&skycat(home.path(), &["show-gpus"]));
    assert!(text.contains("COMMON_GPU") && text.contains("GOOGLE_TPU"), "{text}");
}

#[test]
fn unknown_accelerator_suggests_names_and_fails() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = skycat(home.path(), &["show-gpus", "H1000"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown accelerator `H1000`") && err.contains("H100"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let out = skycat(home.path(), &["show-gpus", "A100:3"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("offered counts: 1, 2, 4, 8, 16"), "{}", stderr(&out));
}

#[test]
fn corrupt_user_catalog_falls_back_to_the_shipped_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("catalogs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("aws.parquet"), b"PAR1 this is not parquet").expect("write");
    let out = skycat(home.path(), &["show-gpus", "A100:8", "--cloud", "aws", "--json"]);
    let rows = json(&out);
    assert!(rows.as_array().is_some_and(|r| r.iter().any(|x| x["instance_type"] == "p4d.24xlarge")));
    let err = stderr(&out);
    assert!(err.contains("aws.parquet") && err.contains("using the shipped catalog for aws"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let info = json(&skycat(home.path(), &["catalog", "info", "--json"]));
    let aws = info.as_array().and_then(|a| a.iter().find(|r| r["cloud"] == "aws").cloned()).expect("aws row");
    assert_eq!(aws["origin"], "shipped default");
}

/// Corrupt copies of the shipped `cloud.parquet` that make polars panic rather than fail
/// (pola-rs/polars#15020), found by a deterministic search over byte flips; empty if this polars
/// panics on none of them.
fn panicking_corruptions(cloud: &str, want: usize) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data").join(format!("{cloud}.parquet"));
    let original = std::fs::read(&path).expect("shipped catalog file");
    let mut state = 0x0BAD_CA7A_1065_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut found = Vec::new();
    for _ in 0..3_000 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= (next() as u8).max(1);
        }
        if let Err(e) = skycat_catalog::parquet::read_offers_bytes(&bytes) {
            if e.to_string().contains("the decoder failed") {
                found.push(bytes);
                if found.len() == want {
                    break;
                }
            }
        }
    }
    found
}

#[test]
fn a_user_catalog_that_crashes_the_decoder_falls_back_with_one_warning_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("catalogs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // lambda and do: files that make polars panic (if this polars still does); vast: truncated.
    let mut corrupt = vec![];
    for cloud in ["lambda", "do"] {
        if let Some(bytes) = panicking_corruptions(cloud, 1).pop() {
            std::fs::write(dir.join(format!("{cloud}.parquet")), bytes).expect("write");
            corrupt.push(cloud);
        }
    }
    let vast = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data/vast.parquet")).expect("vast");
    std::fs::write(dir.join("vast.parquet"), &vast[..vast.len() / 3]).expect("write");
    corrupt.push("vast");

    let out = skycat(home.path(), &["catalog", "info", "--json"]);
    assert!(out.status.success(), "exit {:?}: {}", out.status, stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), corrupt.len(), "one warning line per corrupt file, nothing else: {err}");
    for cloud in &corrupt {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("{cloud}.parquet: not a readable Parquet file")))
            .unwrap_or_else(|| panic!("no warning for {cloud}: {err}"));
        assert!(line.starts_with("warning: "), "{line}");
        assert!(line.ends_with(&format!("; using the shipped catalog for {cloud}")), "{line}");
    }
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");

    let info = json(&out);
    for cloud in &corrupt {
        let row = info.as_array().and_then(|a| a.iter().find(|r| r["cloud"] == *cloud).cloned()).expect("cloud row");
        assert_eq!(row["origin"], "shipped default", "{cloud}");
        assert!(row["rows"].as_u64().is_some_and(|n| n > 0), "{cloud}");
    }
}

#[test]
fn user_catalog_takes_precedence_per_cloud() {
    let home = tempfile::tempdir().expect("tempdir");
    // Export the shipped lambda rows, keep one, and install it as the user's lambda catalog.
    let export = home.path().join("export");
    let out = skycat(home.path(), &["catalog", "export", "--format", "skypilot", "--clouds", "lambda", export.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = export.join("lambda").join("vms.csv");
    let (offers, _) = skycat_catalog::skypilot::import_csv("lambda", &csv, chrono::Utc::now(), "test").expect("import");
    let one = vec![offers.into_iter().find(|o| &*o.instance_type == "gpu_8x_h100_sxm5").expect("h100 row")];
    skycat_catalog::parquet::write_offers_atomic(&home.path().join("catalogs").join("lambda.parquet"), &one).expect("write");

    let info = json(&skycat(home.path(), &["catalog", "info", "--json"]));
    let rows = info.as_array().expect("array");
    let lambda = rows.iter().find(|r| r["cloud"] == "lambda").expect("lambda");
    assert_eq!(lambda["rows"], 1);
    assert!(lambda["origin"].as_str().is_some_and(|o| o.ends_with("lambda.parquet")));
    let aws = rows.iter().find(|r| r["cloud"] == "aws").expect("aws");
    assert_eq!(aws["origin"], "shipped default");
    assert!(aws["rows"].as_u64().is_some_and(|n| n > 3000));
}

#[test]
fn skypilot_export_matches_the_reference_layout_and_values() {
    let home = tempfile::tempdir().expect("tempdir");
    let export = home.path().join("export");
    let out = skycat(home.path(), &["catalog", "export", export.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference-prices");
    for cloud in ["aws", "gcp", "azure", "lambda", "oci", "runpod", "vast"] {
        let exported = std::fs::read_to_string(export.join(cloud).join("vms.csv")).expect("exported file");
        let header = exported.lines().next().unwrap_or_default();
        if let Ok(reference_csv) = std::fs::read_to_string(reference.join(format!("{cloud}.csv"))) {
            assert_eq!(header, reference_csv.lines().next().unwrap_or_default(), "{cloud} header");
        }
        // Re-importing the export gives the catalog's own rows back.
        let (back, _) =
            skycat_catalog::skypilot::import_csv(cloud, &export.join(cloud).join("vms.csv"), chrono::Utc::now(), "x")
                .expect("re-import");
        let shipped = json(&skycat(home.path(), &["catalog", "info", "--json"]));
        let rows = shipped.as_array().and_then(|a| a.iter().find(|r| r["cloud"] == cloud).cloned()).expect("cloud row");
        assert_eq!(back.len() as u64, rows["rows"].as_u64().unwrap_or_default(), "{cloud}: every row comes back");
    }
    // A known row survives with its exact price.
    let aws = std::fs::read_to_string(export.join("aws").join("vms.csv")).expect("aws");
    assert!(aws.lines().any(|l| l.starts_with("p4d.24xlarge,A100,8.0,96.0,1152.0,") && l.contains(",32.7726,6.8179,us-east-1,use1-az6")), "p4d row");
    // Azure's Hyper-V generations come back in its `Generation` column, as SkyPilot's file has them.
    let azure = std::fs::read_to_string(export.join("azure").join("vms.csv")).expect("azure");
    assert!(azure.lines().any(|l| l.starts_with("Standard_M8ms,") && l.ends_with(",1.5365,0.177466,eastus2,\"V1,V2\"")), "M8ms row");
    assert!(azure.lines().any(|l| l.starts_with("Standard_NC24ads_A100_v4,") && l.ends_with(",eastus,V2")), "NC24ads row");
    assert!(azure.lines().any(|l| l.starts_with("Standard_NC12,") && l.ends_with(",westus2,V1")), "NC12 row");
    assert!(azure.lines().skip(1).all(|l| !l.ends_with(',')), "every Azure row has its generation");
}
