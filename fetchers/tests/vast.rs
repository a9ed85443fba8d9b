//! Vast.ai provider against a replay server serving `POST /api/v0/bundles/` in the real wire
//! format (fixtures/vast/bundles.json): offers aggregated per (country, GPU, count) with median
//! and cheapest prices; offers that must be left out (rented, no location, unknown GPU); a 503
//! and a 429 before the answer; a truncated answer and a non-JSON content type.

mod support;

use skycat_catalog::home::SkycatHome;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::vast::Vast;
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};
use support::{ReplayServer, Reply};

const BUNDLES: &str = include_str!("fixtures/vast/bundles.json");
const BUNDLES_BAD: &str = include_str!("fixtures/vast/bundles-truncated.json");
const PATH: &str = "/api/v0/bundles/";

#[tokio::test]
async fn offers_are_aggregated_per_country_gpu_and_count() {
    let srv = ReplayServer::builder()
        .route("POST", PATH, vec![Reply::status(503), Reply::too_many(1), Reply::json(BUNDLES)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_VAST_ENDPOINT", srv.base())]);
    assert_eq!(Vast.regions(&cx).await.unwrap(), vec!["HU", "MY", "SE", "US"]);
    let us = Vast.fetch_region(&cx, "US").await.expect("US");
    type Row<'a> = (&'a str, Option<&'a str>, f64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);
    let got: Vec<Row> = us
        .iter()
        .map(|o| {
            (
                o.instance_type.as_ref(),
                o.accelerator_name.as_deref(),
                o.accelerator_count,
                o.price,
                o.spot_price,
                o.vcpus,
                o.memory_gib,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1x-H100-SXM", Some("H100-SXM"), 1.0, Some((2.13 + 2.40) / 2.0), Some((1.5 + 1.6) / 2.0), Some(32.0), Some(251.93)),
            ("1x-RTX4090", Some("RTX4090"), 1.0, Some(0.3222), Some(0.21), Some(8.0), Some(31.45)),
            ("8x-H100-SXM", Some("H100-SXM"), 8.0, Some(17.9472), Some(12.8), Some(224.0), Some(2015.46)),
        ]
    );
    assert_eq!(
        us[1].price_breakdown.as_deref(),
        Some("on-demand median of 3 offers $0.3222 (cheapest $0.29, offer 24839301); spot median min_bid $0.21 (cheapest $0.18)")
    );
    assert_eq!(
        us[0].price_breakdown.as_deref(),
        Some("on-demand median of 2 offers $2.265 (cheapest $2.13, offer 25110988); spot median min_bid $1.55 (cheapest $1.5)")
    );
    assert!(us.iter().all(|o| &*o.region == "US" && o.zone.is_none() && o.accelerator_vendor.as_deref() == Some("nvidia")));

    let se = Vast.fetch_region(&cx, "SE").await.unwrap();
    assert_eq!(se.len(), 1);
    assert_eq!((se[0].instance_type.as_ref(), se[0].price, se[0].memory_gib), ("1x-RTX4090", Some(0.3222), Some(62.97)));
    let my = Vast.fetch_region(&cx, "MY").await.unwrap();
    assert_eq!((my[0].instance_type.as_ref(), my[0].price, my[0].accelerator_memory_gib), ("2x-RTX5090", Some(1.2), Some(32.0)));
    assert!(Vast.fetch_region(&cx, "CA").await.unwrap().is_empty());

    // One search per run (after a 503 and a 429), with the CLI's default filters, no key.
    assert_eq!(srv.hits("POST", PATH), 3);
    let req = srv.requests().pop().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["rentable"], serde_json::json!({"eq": true}));
    assert_eq!(body["rented"], serde_json::json!({"eq": false}));
    assert_eq!(body["type"], "on-demand");
    assert!(!req.headers.contains_key("authorization"));
    let skipped = cx.skipped_for("vast");
    assert_eq!(skipped.get("offer not rentable"), Some(&1), "{skipped:?}");
    assert_eq!(skipped.get("offer without a country"), Some(&1), "{skipped:?}");
    assert_eq!(skipped.get("GPU model not in the accelerator registry"), Some(&1), "{skipped:?}");
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let srv = ReplayServer::builder().post(PATH, Reply::json(BUNDLES_BAD)).start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_VAST_ENDPOINT", srv.base()), ("VAST_API_KEY", "vk")]);
    let err = Vast.fetch_region(&cx, "US").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert_eq!(srv.requests()[0].headers.get("authorization").map(String::as_str), Some("Bearer vk"));

    let srv = ReplayServer::builder().post(PATH, Reply::text("text/html", "<html>maintenance</html>")).start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_VAST_ENDPOINT", srv.base())]);
    let err = Vast.fetch_region(&cx, "US").await.unwrap_err();
    assert!(err.to_string().contains("expected application/json"), "{err}");
}

#[tokio::test]
async fn a_failed_search_keeps_the_previous_catalog() {
    let srv = ReplayServer::builder()
        .route("POST", PATH, vec![Reply::json(BUNDLES), Reply::json(BUNDLES_BAD)])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["vast".into()];
    opts.all_regions = true;
    opts.env_overrides.insert("SKYCAT_VAST_ENDPOINT".into(), srv.base().to_string());
    opts.retry = RetryPolicy::fast_for_tests();
    opts.force = true;
    let first = run_fetch(&opts, &|_| {}).await.unwrap();
    assert_eq!(first.clouds[0].regions_ok, vec!["HU", "MY", "SE", "US"]);
    let second = run_fetch(&opts, &|_| {}).await.unwrap();
    let r = &second.clouds[0];
    assert!(!r.published);
    assert!(r.error.is_some() || !r.regions_failed.is_empty(), "{r:?}");
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("vast.parquet")).unwrap();
    assert!(rows.iter().any(|o| &*o.instance_type == "1x-RTX4090" && &*o.region == "SE"));
}
