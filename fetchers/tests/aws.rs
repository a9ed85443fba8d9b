//! AWS provider and fetch engine against a replay server serving the bulk offer files in their
//! wire format (fixtures made with scripts/gen-aws-offer-csv.py's row builder).

mod support;

use std::collections::BTreeMap;

use skycat_catalog::manifest::Manifest;
use skycat_catalog::{Offer, SkycatHome};
use skycat_fetchers::providers::aws::Aws;
use skycat_fetchers::{run_fetch, FetchContext, FetchError, FetchOptions, Provider, RetryPolicy};
use support::{ReplayServer, Reply};

const IDX: &str = "/offers/v1.0/aws/AmazonEC2/current/region_index.json";
fn csv_path(region: &str) -> String {
    format!("/offers/v1.0/aws/AmazonEC2/current/{region}/index.csv")
}
const CSV: &str = "text/csv";

async fn server() -> ReplayServer {
    ReplayServer::builder()
        .get(IDX, Reply::json(include_str!("fixtures/aws/region_index.json")))
        .get(&csv_path("us-east-1"), Reply::text(CSV, include_str!("fixtures/aws/us-east-1.csv")))
        .route(
            "GET",
            &csv_path("us-west-2"),
            vec![Reply::status(503), Reply::text(CSV, include_str!("fixtures/aws/us-west-2.csv"))],
        )
        .route(
            "GET",
            &csv_path("eu-west-1"),
            vec![Reply::too_many(1), Reply::text(CSV, include_str!("fixtures/aws/eu-west-1.csv"))],
        )
        .get(&csv_path("ap-south-1"), Reply::text(CSV, include_str!("fixtures/aws/malformed.csv")))
        .start()
        .await
}

struct Exp {
    t: &'static str,
    acc: Option<(&'static str, f64, f64, &'static str)>,
    vcpus: f64,
    mem: f64,
    arch: &'static str,
    price: f64,
}

fn expected(cx: &FetchContext, base: &str, region: &str, rows: &[Exp]) -> Vec<Offer> {
    let src = format!("{base}{}#version=20250912225308", csv_path(region));
    rows.iter()
        .map(|e| {
            let mut o = cx.offer("aws", e.t, region, &src);
            if let Some((n, c, m, v)) = e.acc {
                o.accelerator_name = Some(n.into());
                o.accelerator_count = c;
                o.accelerator_memory_gib = Some(m);
                o.accelerator_vendor = Some(v.into());
            }
            o.vcpus = Some(e.vcpus);
            o.memory_gib = Some(e.mem);
            o.arch = Some(e.arch.into());
            o.price = Some(e.price);
            o
        })
        .collect()
}

#[tokio::test]
async fn bulk_files_without_credentials_give_exact_offers() {
    let srv = server().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_AWS_OFFER_URL", srv.base())]);
    let aws = Aws;

    // Local Zone price files are not regions.
    let regions = aws.regions(&cx).await.expect("region index");
    assert_eq!(regions, vec!["ap-south-1", "eu-west-1", "us-east-1", "us-west-2"]);

    let got = aws.fetch_region(&cx, "us-east-1").await.expect("us-east-1");
    let want = expected(
        &cx,
        srv.base(),
        "us-east-1",
        &[
            Exp { t: "g5.xlarge", acc: Some(("A10G", 1.0, 24.0, "nvidia")), vcpus: 4.0, mem: 16.0, arch: "x86_64", price: 1.006 },
            Exp { t: "g6.xlarge", acc: Some(("L4", 1.0, 24.0, "nvidia")), vcpus: 4.0, mem: 16.0, arch: "x86_64", price: 0.8048 },
            Exp { t: "m5.large", acc: None, vcpus: 2.0, mem: 8.0, arch: "x86_64", price: 0.096 },
            Exp { t: "m7g.large", acc: None, vcpus: 2.0, mem: 8.0, arch: "arm64", price: 0.0816 },
            Exp {
                t: "p4d.24xlarge",
                acc: Some(("A100", 8.0, 40.0, "nvidia")),
                vcpus: 96.0,
                mem: 1152.0,
                arch: "x86_64",
                price: 32.7726,
            },
        ],
    );
    assert_eq!(got, want);

    let skipped = cx.skipped_for("aws");
    let want_skipped: BTreeMap<String, u64> = [
        ("aws bulk: not an OnDemand term", 2),
        ("aws bulk: not Linux/Shared/Used", 4),
        ("aws bulk: pre-installed software", 1),
        ("aws bulk: other location (Local Zone, Wavelength, other region)", 1),
        ("aws bulk: zero price", 1),
        ("aws: Local Zone / Wavelength price files", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(skipped, want_skipped);
    let notes = cx.notes_for("aws");
    assert!(notes.iter().any(|n| n.contains("no AWS credentials")), "{notes:?}");

    // 503 once, then the file.
    let w2 = aws.fetch_region(&cx, "us-west-2").await.expect("us-west-2 after a 503");
    assert_eq!(w2.iter().map(|o| (o.instance_type.as_ref(), o.price)).collect::<Vec<_>>(), vec![
        ("g5.xlarge", Some(1.006)),
        ("m5.large", Some(0.096))
    ]);
    assert_eq!(srv.hits("GET", &csv_path("us-west-2")), 2);

    // 429 with Retry-After: 1, then the file.
    let t0 = std::time::Instant::now();
    let e1 = aws.fetch_region(&cx, "eu-west-1").await.expect("eu-west-1 after a 429");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(900), "Retry-After honoured");
    assert_eq!(e1.iter().map(|o| (o.instance_type.as_ref(), o.price)).collect::<Vec<_>>(), vec![
        ("g5.xlarge", Some(1.123)),
        ("m5.large", Some(0.107))
    ]);
    assert_eq!(srv.hits("GET", &csv_path("eu-west-1")), 2);

    // An HTML page instead of the CSV: the region fails, naming the file.
    match aws.fetch_region(&cx, "ap-south-1").await {
        Err(FetchError::Malformed { what, message }) => {
            assert!(what.ends_with("/ap-south-1/index.csv"), "{what}");
            assert!(message.contains("preamble"), "{message}");
        }
        other => panic!("expected a malformed-file error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_region_missing_from_the_bulk_files_fails_with_the_status() {
    let srv = server().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_AWS_OFFER_URL", srv.base())]);
    match Aws.fetch_region(&cx, "xx-nowhere-1").await {
        Err(FetchError::Http { status: 404, url, .. }) => assert!(url.contains("xx-nowhere-1")),
        other => panic!("expected 404, got {other:?}"),
    }
}

fn seed_offer(t: &str, region: &str, price: f64) -> Offer {
    Offer {
        cloud: "aws".into(),
        instance_type: t.into(),
        region: region.into(),
        zone: None,
        accelerator_name: None,
        accelerator_count: 0.0,
        accelerator_memory_gib: None,
        accelerator_vendor: None,
        vcpus: Some(2.0),
        memory_gib: Some(8.0),
        arch: Some("x86_64".into()),
        price: Some(price),
        spot_price: None,
        fetched_at: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc),
        source: "seed".into(),
        price_breakdown: None,
        spot_interruption: None,
        hyperv_generations: None,
    }
}

fn options(home: &SkycatHome, base: &str, regions: &[&str]) -> FetchOptions {
    let mut o = FetchOptions::new(home.clone());
    o.clouds = vec!["aws".into()];
    o.regions = regions.iter().map(|s| s.to_string()).collect();
    o.isolate_env = true;
    o.env_overrides.insert("SKYCAT_AWS_OFFER_URL".into(), base.into());
    o.retry = RetryPolicy::fast_for_tests();
    o
}

#[tokio::test]
async fn failed_region_keeps_last_good_rows_marked_stale() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let cat = home.catalogs_dir().join("aws.parquet");
    // The previous catalog: old prices in us-east-1 and ap-south-1, and a region not fetched now.
    let previous = vec![
        seed_offer("m5.large", "us-east-1", 0.090),
        seed_offer("c4.large", "us-east-1", 0.100),
        seed_offer("m5.large", "ap-south-1", 0.101),
        seed_offer("m5.xlarge", "ap-south-1", 0.202),
        seed_offer("m5.large", "sa-east-1", 0.153),
    ];
    skycat_catalog::parquet::write_offers_atomic(&cat, &previous).unwrap();

    let opts = options(&home, srv.base(), &["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"]);
    let events = std::sync::Mutex::new(Vec::new());
    let report = run_fetch(&opts, &|e| events.lock().unwrap().push(format!("{e:?}"))).await.expect("run");
    let r = &report.clouds[0];
    assert_eq!(r.regions_ok, vec!["eu-west-1", "us-east-1", "us-west-2"]);
    assert_eq!(r.regions_failed.len(), 1);
    assert_eq!(r.regions_failed[0].0, "ap-south-1");
    assert_eq!(r.stale_regions, vec!["ap-south-1"]);
    assert!(r.published, "{r:?}");
    assert_eq!(r.fresh_rows, 5 + 2 + 2);
    assert_eq!(r.rows, 9 + 2 + 1);

    let now = skycat_catalog::parquet::read_offers(&cat).unwrap();
    let mut kept: Vec<(String, String, Option<f64>)> =
        now.iter().filter(|o| &*o.region != "us-east-1" && &*o.region != "us-west-2" && &*o.region != "eu-west-1")
            .map(|o| (o.region.to_string(), o.instance_type.to_string(), o.price)).collect();
    kept.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(kept, vec![
        ("ap-south-1".to_string(), "m5.large".to_string(), Some(0.101)),
        ("ap-south-1".to_string(), "m5.xlarge".to_string(), Some(0.202)),
        ("sa-east-1".to_string(), "m5.large".to_string(), Some(0.153)),
    ]);
    // us-east-1 is replaced wholesale: c4.large is gone, m5.large has the new price.
    let e1: Vec<(&str, Option<f64>)> =
        now.iter().filter(|o| &*o.region == "us-east-1").map(|o| (o.instance_type.as_ref(), o.price)).collect();
    assert_eq!(e1, vec![
        ("g5.xlarge", Some(1.006)),
        ("g6.xlarge", Some(0.8048)),
        ("m5.large", Some(0.096)),
        ("m7g.large", Some(0.0816)),
        ("p4d.24xlarge", Some(32.7726))
    ]);

    let m = Manifest::load(&home.catalogs_dir().join("manifest.json")).unwrap();
    let am = &m.clouds["aws"];
    assert_eq!(am.stale_regions, vec!["ap-south-1"]);
    assert_eq!(am.regions_failed, vec!["ap-south-1"]);
    assert_eq!(am.regions_ok, vec!["eu-west-1", "us-east-1", "us-west-2"]);
    assert_eq!(am.rows, 12);
    assert_eq!(am.as_of, "2025-09-12T22:53:08Z");
    let bytes = std::fs::read(&cat).unwrap();
    assert_eq!(am.sha256, skycat_catalog::fsutil::sha256_hex(&bytes));

    // History snapshot and diff.
    let hist = skycat_fetchers::run::history_files(&home, "aws").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(skycat_catalog::parquet::read_offers(&hist[0]).unwrap(), now);
    let d = r.diff.as_ref().unwrap();
    assert_eq!(d.types_removed, vec!["c4.large"]);
    assert_eq!(d.types_added, vec!["g5.xlarge", "g6.xlarge", "m7g.large", "p4d.24xlarge"]);
    assert_eq!(d.prices_changed, 1);
    assert_eq!(d.biggest_moves[0].instance_type, "m5.large");

    let ev = events.lock().unwrap();
    assert!(ev.iter().any(|e| e.contains("RegionFailed") && e.contains("ap-south-1")));

    // price-history reads the snapshot.
    let pts = skycat_fetchers::history::price_history(&home, "A10G", None, Some("us-east-1")).unwrap();
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].instance_type, "g5.xlarge");
}

#[tokio::test]
async fn a_big_shrink_is_refused_without_force() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let cat = home.catalogs_dir().join("aws.parquet");
    let previous: Vec<Offer> = (0..20).map(|i| seed_offer(&format!("m9.size{i}"), "us-east-1", 0.1 + i as f64)).collect();
    skycat_catalog::parquet::write_offers_atomic(&cat, &previous).unwrap();
    let before = std::fs::read(&cat).unwrap();

    let opts = options(&home, srv.base(), &["us-east-1"]);
    let report = run_fetch(&opts, &|_| {}).await.expect("run");
    let r = &report.clouds[0];
    assert!(!r.published);
    assert!(r.not_published.as_deref().unwrap().contains("row count dropped from 20 to 5"), "{r:?}");
    assert!(report.has_failures());
    assert_eq!(std::fs::read(&cat).unwrap(), before, "catalog untouched");
    assert!(!home.catalogs_dir().join("manifest.json").exists());
    assert!(skycat_fetchers::run::history_files(&home, "aws").unwrap().is_empty());

    // Dry run: nothing written either.
    let mut dry = options(&home, srv.base(), &["us-east-1"]);
    dry.dry_run = true;
    dry.force = true;
    let report = run_fetch(&dry, &|_| {}).await.expect("dry run");
    assert_eq!(report.clouds[0].not_published.as_deref(), Some("dry run"));
    assert_eq!(std::fs::read(&cat).unwrap(), before);

    let mut forced = options(&home, srv.base(), &["us-east-1"]);
    forced.force = true;
    let report = run_fetch(&forced, &|_| {}).await.expect("forced run");
    assert!(report.clouds[0].published);
    assert_eq!(skycat_catalog::parquet::read_offers(&cat).unwrap().len(), 5);
}

#[tokio::test]
async fn unknown_cloud_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = FetchOptions::new(SkycatHome::new(dir.path()));
    o.clouds = vec!["nimbus".into()];
    match run_fetch(&o, &|_| {}).await {
        Err(FetchError::Config(m)) => assert!(m.contains("unknown cloud `nimbus`") && m.contains("aws"), "{m}"),
        other => panic!("{other:?}"),
    }
}
