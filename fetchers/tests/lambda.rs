//! Lambda provider against a replay server: the instance-types API (keyed; 503 and 429 before
//! the answer; 401 without a valid key; a truncated answer) and, without a key, the public
//! pricing page (fixtures/lambda/pricing-page.html, whose structure the provider documents)
//! and a redesigned page without a table, which must fail loudly.

mod support;

use skycat_catalog::home::SkycatHome;
use skycat_catalog::Offer;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::lambda::{Lambda, KNOWN_REGIONS};
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};
use support::{ReplayServer, Reply};

const API: &str = include_str!("fixtures/lambda/instance-types.json");
const API_BAD: &str = include_str!("fixtures/lambda/instance-types-truncated.json");
const UNAUTHORIZED: &str = include_str!("fixtures/lambda/error-invalid-api-key.json");
const PAGE: &str = include_str!("fixtures/lambda/pricing-page.html");
const PAGE_REDESIGNED: &str = include_str!("fixtures/lambda/pricing-page-redesigned.html");
const PATH: &str = "/api/v1/instance-types";

#[allow(clippy::too_many_arguments)]
fn offer(
    cx: &FetchContext,
    src: &str,
    name: &str,
    gpu: Option<(&str, f64, f64)>,
    vcpus: f64,
    mem: f64,
    arch: &str,
    price: f64,
    breakdown: Option<&str>,
) -> Offer {
    let mut o = cx.offer("lambda", name, "us-east-1", src);
    if let Some((g, n, m)) = gpu {
        o.accelerator_name = Some(g.into());
        o.accelerator_count = n;
        o.accelerator_memory_gib = Some(m);
        o.accelerator_vendor = Some("nvidia".into());
    }
    o.vcpus = Some(vcpus);
    o.memory_gib = Some(mem);
    o.arch = Some(arch.into());
    o.price = Some(price);
    o.price_breakdown = breakdown.map(str::to_string).map(Into::into);
    o
}

#[tokio::test]
async fn api_offers_every_type_in_each_region() {
    let srv = ReplayServer::builder()
        .route("GET", PATH, vec![Reply::status(503), Reply::too_many(1), Reply::json(API)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", srv.base()), ("LAMBDA_API_KEY", "secret_key")]);
    let got = Lambda.fetch_region(&cx, "us-east-1").await.expect("us-east-1");
    let src = srv.url(PATH);
    let want = vec![
        offer(&cx, &src, "cpu_4x_general", None, 4.0, 16.0, "x86_64", 0.2, None),
        offer(&cx, &src, "gpu_1x_a10", Some(("A10", 1.0, 24.0)), 30.0, 200.0, "x86_64", 0.75, None),
        offer(&cx, &src, "gpu_1x_a100_sxm4", Some(("A100", 1.0, 40.0)), 30.0, 200.0, "x86_64", 1.29, None),
        offer(&cx, &src, "gpu_1x_gh200", Some(("GH200", 1.0, 96.0)), 64.0, 432.0, "arm64", 1.49, None),
        offer(&cx, &src, "gpu_1x_h100_pcie", Some(("H100", 1.0, 80.0)), 26.0, 200.0, "x86_64", 2.49, None),
        offer(&cx, &src, "gpu_8x_a100_80gb_sxm4", Some(("A100-80GB", 8.0, 80.0)), 240.0, 1800.0, "x86_64", 14.32, None),
        offer(&cx, &src, "gpu_8x_h100_sxm5", Some(("H100", 8.0, 80.0)), 208.0, 1800.0, "x86_64", 23.92, None),
        offer(&cx, &src, "gpu_8x_v100", Some(("V100", 8.0, 16.0)), 92.0, 448.0, "x86_64", 4.4, None),
    ];
    assert_eq!(got, want);
    // Same prices in another region, one API call for the run.
    let west = Lambda.fetch_region(&cx, "us-west-3").await.unwrap();
    assert_eq!(west.len(), 8);
    assert!(west.iter().all(|o| &*o.region == "us-west-3"));
    assert_eq!(srv.hits("GET", PATH), 3);
    let req = &srv.requests()[2];
    assert_eq!(req.headers.get("authorization").map(String::as_str), Some("Bearer secret_key"));
    let regions = Lambda.regions(&cx).await.unwrap();
    assert_eq!(regions, KNOWN_REGIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn refused_key_and_malformed_answer_are_errors() {
    let srv = ReplayServer::builder()
        .route("GET", PATH, vec![Reply::new(401, "application/json", UNAUTHORIZED)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", srv.base()), ("SKYCAT_LAMBDA_API_KEY", "expired")]);
    let err = Lambda.fetch_region(&cx, "us-east-1").await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("global/invalid-api-key"), "{err}");

    let srv = ReplayServer::builder().get(PATH, Reply::json(API_BAD)).start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", srv.base()), ("SKYCAT_LAMBDA_API_KEY", "k")]);
    let err = Lambda.fetch_region(&cx, "us-east-1").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("lambda instance-types"), "{err}");
}

#[tokio::test]
async fn without_a_key_the_pricing_page_is_scraped() {
    let srv = ReplayServer::builder()
        .route("GET", "/instances", vec![Reply::status(503), Reply::text("text/html; charset=utf-8", PAGE)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", srv.base())]);
    let got = Lambda.fetch_region(&cx, "us-east-1").await.expect("scraped");
    let src = srv.url("/instances");
    let want = vec![
        offer(&cx, &src, "gpu_8x_a100_sxm_40_gb", Some(("A100", 8.0, 40.0)), 124.0, 1800.0, "x86_64", 1.99 * 8.0,
            Some("pricing page: $1.99 per GPU-hour x 8")),
        offer(&cx, &src, "gpu_8x_a100_sxm_80_gb", Some(("A100-80GB", 8.0, 80.0)), 240.0, 1800.0, "x86_64", 2.79 * 8.0,
            Some("pricing page: $2.79 per GPU-hour x 8")),
        offer(&cx, &src, "gpu_8x_b200_sxm6", Some(("B200", 8.0, 180.0)), 208.0, 2900.0, "x86_64", 6.69 * 8.0,
            Some("pricing page: $6.69 per GPU-hour x 8")),
        offer(&cx, &src, "gpu_8x_h100_sxm", Some(("H100", 8.0, 80.0)), 208.0, 1800.0, "x86_64", 3.99 * 8.0,
            Some("pricing page: $3.99 per GPU-hour x 8")),
    ];
    assert_eq!(got, want);
    assert_eq!(cx.skipped_for("lambda").get("pricing-page row without a GPU count"), Some(&1));
    assert!(srv.requests().iter().all(|r| !r.headers.contains_key("authorization")));
    assert!(cx.notes_for("lambda").iter().any(|n| n.contains("scraped")));
}

#[tokio::test]
async fn a_redesigned_page_fails_loudly_and_the_run_keeps_old_rows() {
    let srv = ReplayServer::builder()
        .route(
            "GET",
            "/instances",
            vec![Reply::text("text/html", PAGE), Reply::text("text/html", PAGE_REDESIGNED)],
        )
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["lambda".into()];
    opts.regions = vec!["us-east-1".into(), "us-west-1".into()];
    opts.env_overrides.insert("SKYCAT_LAMBDA_ENDPOINT".into(), srv.base().to_string());
    opts.retry = RetryPolicy::fast_for_tests();
    opts.force = true;
    let first = run_fetch(&opts, &|_| {}).await.unwrap();
    assert!(first.clouds[0].published, "{:?}", first.clouds[0]);

    let second = run_fetch(&opts, &|_| {}).await.unwrap();
    let r = &second.clouds[0];
    assert!(r.regions_ok.is_empty());
    assert_eq!(r.regions_failed.len(), 2);
    for (_, e) in &r.regions_failed {
        assert!(e.contains("lambda pricing page") && e.contains("no <table>"), "{e}");
    }
    assert!(!r.published, "every region failed: nothing is published");
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("lambda.parquet")).unwrap();
    let ours = rows.iter().filter(|o| &*o.instance_type == "gpu_8x_h100_sxm" && &*o.region == "us-east-1").count();
    assert_eq!(ours, 1, "the previous catalog is intact");
}
