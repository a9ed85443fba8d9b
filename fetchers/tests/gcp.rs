//! GCP provider against a replay server serving Cloud Billing Catalog SKU pages (and Compute
//! API machine/accelerator types) in the real wire format (fixtures/gcp/). Rates are the unit
//! prices behind SkyPilot's published GCP catalog (reference-prices/gcp.csv), so the joined host
//! prices can be checked against it.

mod support;

use skycat_catalog::home::SkycatHome;
use skycat_catalog::manifest::Manifest;
use skycat_catalog::Offer;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::gcp::Gcp;
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};
use support::{ReplayServer, Reply};

const PAGE1: &str = include_str!("fixtures/gcp/skus-page1.json");
const PAGE2: &str = include_str!("fixtures/gcp/skus-page2.json");
const PAGE2_BAD: &str = include_str!("fixtures/gcp/skus-page2-truncated.json");
const SKUS: &str = "/v1/services/6F81-5844-456A/skus";
const TOKEN: &str = "CgwI-p_UxgYQqMbcrwMSJDA2NTEtNzcyNC1GN0I5";
const KEY: &str = "test-key";

const TPU_SKUS: &str = "/v1/services/E000-3F24-B8AA/skus";
const TPU_PAGE: &str = include_str!("fixtures/gcp/tpu-service-skus.json");

fn sku_routes(b: support::Builder, page2: Vec<Reply>) -> support::Builder {
    b.route("GET", &format!("{SKUS}?key={KEY}&pageSize=5000"), vec![Reply::status(503), Reply::json(PAGE1)])
        .route("GET", &format!("{SKUS}?key={KEY}&pageSize=5000&pageToken={TOKEN}"), page2)
        .get(&format!("{TPU_SKUS}?key={KEY}&pageSize=5000"), Reply::json(TPU_PAGE))
}

fn find<'a>(offers: &'a [Offer], name: &str, gpu: Option<(&str, f64)>) -> &'a Offer {
    offers
        .iter()
        .find(|o| {
            *o.instance_type == *name
                && match gpu {
                    None => o.accelerator_name.is_none(),
                    Some((g, n)) => o.accelerator_name.as_deref() == Some(g) && o.accelerator_count == n,
                }
        })
        .unwrap_or_else(|| panic!("no offer {name} {gpu:?}"))
}

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("price present");
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test]
async fn joins_hosts_and_gpus_from_published_shapes() {
    let srv = sku_routes(ReplayServer::builder(), vec![Reply::too_many(1), Reply::json(PAGE2)]).start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", srv.base()), ("SKYCAT_GCP_API_KEY", KEY)]);
    let us = Gcp.fetch_region(&cx, "us-central1").await.expect("us-central1");
    let eu = Gcp.fetch_region(&cx, "europe-west4").await.expect("europe-west4");
    // One SKU listing per run, shared by the regions: page 1 (503 then 200), page 2 (429 then 200).
    assert_eq!(srv.hits("GET", SKUS), 4);

    // 22 n1 hosts + 9 a2 + 8 g2, and n1 with T4 (16 + 16 + 22) and V100 (10 + 13 + 16 + 22).
    assert_eq!(us.len(), 22 + 9 + 8 + 54 + 61);
    // No G2 rates in europe-west4 (its L4 rate alone does not make a launchable offer).
    assert_eq!(eu.len(), 22 + 9 + 54 + 61);
    assert!(us.iter().all(|o| &*o.region == "us-central1" && o.zone.is_none() && &*o.cloud == "gcp"));

    let n1 = find(&us, "n1-standard-8", None);
    close(n1.price, 8.0 * 0.031611 + 30.0 * 0.004237);
    close(n1.spot_price, 8.0 * 0.00813041 + 30.0 * 0.00104189);
    // SkyPilot's catalog: n1-standard-8 us-central1 0.38 / 0.0963.
    assert!((n1.price.unwrap() - 0.38).abs() < 1e-4 && (n1.spot_price.unwrap() - 0.0963).abs() < 1e-4);
    assert_eq!((n1.vcpus, n1.memory_gib, n1.accelerator_count), (Some(8.0), Some(30.0), 0.0));

    let t4 = find(&us, "n1-standard-8", Some(("T4", 1.0)));
    close(t4.price, 8.0 * 0.031611 + 30.0 * 0.004237 + 0.35);
    close(t4.spot_price, 8.0 * 0.00813041 + 30.0 * 0.00104189 + 0.14);
    assert_eq!(t4.accelerator_memory_gib, Some(16.0));
    assert_eq!(
        t4.price_breakdown.as_deref(),
        Some(
            "on-demand: host 8 vCPU x $0.031611 + 30 GiB x $0.004237 = $0.379998; GPU 1 x T4 x $0.35 = $0.35 | \
             spot: host 8 vCPU x $0.00813 + 30 GiB x $0.001042 = $0.0963; GPU 1 x T4 x $0.14 = $0.14"
        )
    );
    // T4 x 4 fits n1-standard-96 (96 vCPU / 360 GiB); T4 x 1 does not (48 vCPU max).
    find(&us, "n1-standard-96", Some(("T4", 4.0)));
    assert!(!us.iter().any(|o| &*o.instance_type == "n1-standard-96" && o.accelerator_count == 1.0));
    // V100 x 1 allows at most 12 vCPUs.
    assert!(!us.iter().any(|o| &*o.instance_type == "n1-standard-16" && o.accelerator_name.as_deref() == Some("V100") && o.accelerator_count == 1.0));

    let a2 = find(&us, "a2-highgpu-1g", Some(("A100", 1.0)));
    close(a2.price, 12.0 * 0.031611 + 85.0 * 0.004237 + 2.93391);
    close(a2.spot_price, 12.0 * 0.01264 + 85.0 * 0.001695 + 1.1472);
    let ultra = find(&us, "a2-ultragpu-1g", Some(("A100-80GB", 1.0)));
    close(ultra.price, 12.0 * 0.031611 + 170.0 * 0.004237 + 1.8462);
    assert_eq!(ultra.accelerator_memory_gib, Some(80.0));
    let g2 = find(&us, "g2-standard-48", Some(("L4", 4.0)));
    close(g2.price, 48.0 * 0.024988 + 192.0 * 0.002927 + 4.0 * 0.56004);
    close(g2.spot_price, 48.0 * 0.009996 + 192.0 * 0.001172 + 4.0 * 0.2231);

    let a2eu = find(&eu, "a2-highgpu-8g", Some(("A100", 8.0)));
    close(a2eu.price, 96.0 * 0.034802 + 680.0 * 0.004664 + 8.0 * 1.61365);
    let n1eu = find(&eu, "n1-highcpu-16", None);
    // SkyPilot: 0.624 / 0.23194 (its memory is 14.4004 GiB, the shape table's 0.9 GiB x 16).
    assert!((n1eu.price.unwrap() - 0.624).abs() < 1e-4, "{:?}", n1eu.price);
    assert!((n1eu.spot_price.unwrap() - 0.23194).abs() < 1e-4, "{:?}", n1eu.spot_price);
    // A3 (H100) has no rates in the fixture: not offered.
    assert!(!us.iter().any(|o| o.instance_type.starts_with("a3-")));

    let skipped = cx.skipped_for("gcp");
    assert_eq!(skipped.get("commitment price"), Some(&1), "{skipped:?}");
    assert_eq!(skipped.get("sole tenancy, custom, premium, reserved, DWS or workstation SKU"), Some(&2), "{skipped:?}");
    assert_eq!(skipped.get("not a compute SKU"), Some(&1), "{skipped:?}");
}

#[tokio::test]
async fn needs_a_key_and_reports_a_malformed_page() {
    let srv = sku_routes(ReplayServer::builder(), vec![Reply::json(PAGE2_BAD)]).start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", srv.base())]);
    let err = Gcp.fetch_region(&cx, "us-central1").await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("SKYCAT_GCP_API_KEY"), "{err}");
    assert_eq!(srv.hits("GET", SKUS), 0);

    let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", srv.base()), ("GOOGLE_API_KEY", KEY)]);
    let err = Gcp.fetch_region(&cx, "us-central1").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("SKU page 2"), "{err}");
    // The shared failure reaches every region without a second download.
    let again = Gcp.fetch_region(&cx, "europe-west4").await.unwrap_err();
    assert_eq!(again, err);
}

fn compute(b: support::Builder, europe_machine_types: Vec<Reply>) -> support::Builder {
    let p = "/compute/v1/projects/skycat-test";
    b.get(&format!("{p}/regions"), Reply::json(include_str!("fixtures/gcp/compute-regions.json")))
        .get(&format!("{p}/regions/us-central1"), Reply::json(include_str!("fixtures/gcp/compute-region-us-central1.json")))
        .get(&format!("{p}/regions/europe-west4"), Reply::json(include_str!("fixtures/gcp/compute-region-europe-west4.json")))
        .get(
            &format!("{p}/zones/us-central1-a/machineTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-machinetypes-us-central1-a.json")),
        )
        .get(
            &format!("{p}/zones/us-central1-a/acceleratorTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-acceleratortypes-us-central1-a.json")),
        )
        .get(
            &format!("{p}/zones/us-central1-b/machineTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-machinetypes-us-central1-b-page1.json")),
        )
        .get(
            &format!("{p}/zones/us-central1-b/machineTypes?pageToken=Cgkz-EXAMPLE-page2"),
            Reply::json(include_str!("fixtures/gcp/compute-machinetypes-us-central1-b-page2.json")),
        )
        .get(
            &format!("{p}/zones/us-central1-b/acceleratorTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-acceleratortypes-us-central1-b.json")),
        )
        .route("GET", &format!("{p}/zones/europe-west4-a/machineTypes"), europe_machine_types)
        .get(
            &format!("{p}/zones/europe-west4-a/acceleratorTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-acceleratortypes-europe-west4-a.json")),
        )
}

fn compute_env(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SKYCAT_GCP_ENDPOINT", base.to_string()),
        ("SKYCAT_GCP_COMPUTE_ENDPOINT", base.to_string()),
        ("SKYCAT_GCP_API_KEY", KEY.to_string()),
        ("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.test-token".to_string()),
        ("GOOGLE_CLOUD_PROJECT", "skycat-test".to_string()),
    ]
}

#[tokio::test]
async fn compute_api_gives_zones_and_machine_types() {
    let bad = include_str!("fixtures/gcp/compute-machinetypes-europe-west4-a-truncated.json");
    let srv = compute(sku_routes(ReplayServer::builder(), vec![Reply::json(PAGE2)]), vec![Reply::json(bad)])
        .start()
        .await;
    let env = compute_env(srv.base());
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cx = FetchContext::for_tests(&env_ref);
    assert_eq!(Gcp.regions(&cx).await.unwrap(), vec!["europe-west4", "us-central1"]);
    let us = Gcp.fetch_region(&cx, "us-central1").await.expect("us-central1");
    let got: Vec<(&str, Option<&str>, Option<&str>, f64)> = us
        .iter()
        .map(|o| (o.instance_type.as_ref(), o.zone.as_deref(), o.accelerator_name.as_deref(), o.accelerator_count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("n1-standard-8", Some("us-central1-a"), None, 0.0),
            ("n1-standard-8", Some("us-central1-a"), Some("T4"), 1.0),
            ("n1-standard-8", Some("us-central1-a"), Some("T4"), 2.0),
            ("n1-standard-8", Some("us-central1-a"), Some("T4"), 4.0),
            ("a2-highgpu-1g", Some("us-central1-a"), Some("A100"), 1.0),
            ("a2-ultragpu-1g", Some("us-central1-b"), Some("A100-80GB"), 1.0),
            ("g2-standard-4", Some("us-central1-b"), Some("L4"), 1.0),
        ]
    );
    close(us[4].price, 12.0 * 0.031611 + 85.0 * 0.004237 + 2.93391);
    close(us[6].price, 4.0 * 0.024988 + 16.0 * 0.002927 + 0.56004);
    assert_eq!(us[0].memory_gib, Some(30.0));
    assert_eq!(cx.skipped_for("gcp").get("deprecated machine type"), Some(&1));
    let auth = srv.requests().into_iter().find(|r| r.path.ends_with("/machineTypes")).unwrap();
    assert_eq!(auth.headers.get("authorization").map(String::as_str), Some("Bearer ya29.test-token"));

    let err = Gcp.fetch_region(&cx, "europe-west4").await.unwrap_err();
    assert!(err.to_string().contains("machine types of europe-west4-a"), "{err}");
}

#[tokio::test]
async fn run_marks_the_region_with_a_malformed_page_stale() {
    let good = include_str!("fixtures/gcp/compute-machinetypes-europe-west4-a.json");
    let bad = include_str!("fixtures/gcp/compute-machinetypes-europe-west4-a-truncated.json");
    let srv = compute(sku_routes(ReplayServer::builder(), vec![Reply::json(PAGE2)]), vec![Reply::json(good), Reply::json(bad)])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["gcp".into()];
    opts.all_regions = true;
    for (k, v) in compute_env(srv.base()) {
        opts.env_overrides.insert(k.into(), v);
    }
    opts.retry = RetryPolicy::fast_for_tests();
    opts.force = true;

    let first = run_fetch(&opts, &|_| {}).await.expect("first run");
    assert_eq!(first.clouds[0].regions_ok, vec!["europe-west4", "us-central1"], "{:?}", first.clouds[0]);
    let second = run_fetch(&opts, &|_| {}).await.expect("second run");
    let r = &second.clouds[0];
    assert_eq!(r.regions_ok, vec!["us-central1"]);
    assert_eq!(r.stale_regions, vec!["europe-west4"]);
    let m = Manifest::load(&home.catalogs_dir().join("manifest.json")).unwrap();
    assert_eq!(m.clouds["gcp"].stale_regions, vec!["europe-west4"]);
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("gcp.parquet")).unwrap();
    let eu: Vec<&Offer> = rows.iter().filter(|o| &*o.region == "europe-west4" && o.zone.as_deref() == Some("europe-west4-a")).collect();
    // n1-standard-8 alone and with 1, 2 and 4 T4, and a2-highgpu-1g, kept from the first run.
    assert_eq!(eu.len(), 5, "{eu:?}");
}

#[tokio::test]
async fn tpu_slices_a3_below_8_a4_and_newer_families() {
    let families = include_str!("fixtures/gcp/skus-families.json");
    let srv = ReplayServer::builder()
        .get(&format!("{SKUS}?key={KEY}&pageSize=5000"), Reply::json(families))
        .route("GET", &format!("{TPU_SKUS}?key={KEY}&pageSize=5000"), vec![Reply::too_many(1), Reply::json(TPU_PAGE)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", srv.base()), ("SKYCAT_GCP_API_KEY", KEY)]);
    let us = Gcp.fetch_region(&cx, "us-central1").await.expect("us-central1");
    // 4 a3-highgpu + 18 c3 + 5 m3 + 1 a4 + 8 tpu-v6e slices.
    assert_eq!(us.len(), 4 + 18 + 5 + 1 + 8, "{:?}", us.iter().map(|o| &o.instance_type).collect::<Vec<_>>());
    assert_eq!(srv.hits("GET", TPU_SKUS), 2);

    // A3 with 1 GPU: spot only; SkyPilot's us-central1 rows: host spot 0.27193 + H100 spot 2.253.
    let a3 = find(&us, "a3-highgpu-1g", Some(("H100", 1.0)));
    assert_eq!(a3.price, None);
    close(a3.spot_price, 26.0 * 0.00513 + 234.0 * 0.000592094 + 2.253);
    assert!((a3.spot_price.unwrap() - (0.27193 + 2.253)).abs() < 1e-5);
    assert!(a3.price_breakdown.as_deref().unwrap().starts_with("on-demand: not sold (spot or flex-start only) | spot: host 26 vCPU"));
    // A3 with 8 GPUs: SkyPilot host 9.46006 + 8 x H100 4.20076.
    let a3_8 = find(&us, "a3-highgpu-8g", Some(("H100", 8.0)));
    close(a3_8.price, 208.0 * 0.02231 + 1872.0 * 0.002574573 + 8.0 * 4.20076);
    assert!((a3_8.price.unwrap() - (9.46006 + 8.0 * 4.20076)).abs() < 1e-4);

    // A4: 8 B200 slices with the VM included (SkyPilot's B200 x 8 row: 90.216); no spot rate here.
    let a4 = find(&us, "a4-highgpu-8g", Some(("B200", 8.0)));
    close(a4.price, 90.216);
    assert_eq!(a4.spot_price, None);
    assert_eq!((a4.vcpus, a4.memory_gib, a4.accelerator_memory_gib), (Some(224.0), Some(3968.0), Some(180.0)));
    assert_eq!(a4.price_breakdown.as_deref(), Some("on-demand: GPU slice 8 x B200 x $11.277 (VM share included) = $90.216"));
    // The spot slice SKU is tagged OnDemand (a known Catalog data bug): its description decides.
    let east = Gcp.fetch_region(&cx, "us-east4").await.expect("us-east4");
    let a4e = find(&east, "a4-highgpu-8g", Some(("B200", 8.0)));
    close(a4e.price, 90.216);
    close(a4e.spot_price, 64.44);

    // C3 has only spot rates in the fixture; M3 only on-demand ones.
    let c3 = find(&us, "c3-highcpu-22", None);
    assert_eq!((c3.price, c3.vcpus, c3.memory_gib), (None, Some(22.0), Some(44.0)));
    close(c3.spot_price, 22.0 * 0.00513 + 44.0 * 0.000687);
    let m3 = find(&us, "m3-ultramem-32", None);
    close(m3.price, 32.0 * 0.0348 + 976.0 * 0.0051);
    assert_eq!(m3.spot_price, None);

    // TPU slices: chips x per-chip rate; v6e names count chips (SkyPilot: tpu-v6e-1 2.7 / 0.64833).
    let v6e = find(&us, "tpu-v6e-8", Some(("tpu-v6e-8", 1.0)));
    close(v6e.price, 8.0 * 2.7);
    close(v6e.spot_price, 8.0 * 0.64833);
    assert_eq!((v6e.vcpus, v6e.zone.as_deref(), v6e.accelerator_vendor.as_deref()), (None, None, Some("google")));
    assert_eq!(
        v6e.price_breakdown.as_deref(),
        Some("on-demand: 8 chips x $2.7/chip-hour = $21.6 | spot: 8 chips x $0.64833/chip-hour = $5.18664")
    );
    close(find(&us, "tpu-v6e-1", Some(("tpu-v6e-1", 1.0))).price, 2.7);
    // v4 (Cloud TPU service): the pod SKU prices a v4-8 (4 chips); SkyPilot: v4-8 12.88 / 3.686, v4-16 25.76 / 7.372.
    let c2 = Gcp.fetch_region(&cx, "us-central2").await.expect("us-central2");
    assert_eq!(c2.len(), 10);
    let v4 = find(&c2, "tpu-v4-16", Some(("tpu-v4-16", 1.0)));
    close(v4.price, 25.76);
    close(v4.spot_price, 7.372);
    assert!(v4.source.ends_with("/v1/services/E000-3F24-B8AA/skus"), "{}", v4.source);
    assert_eq!(
        v4.price_breakdown.as_deref(),
        Some("on-demand: 8 chips x $3.22/chip-hour (SKU $12.88 per 4 chips) = $25.76 | spot: 8 chips x $0.9215/chip-hour (SKU $3.686 per 4 chips) = $7.372")
    );
    // v5e names count chips, v5p names count TensorCores (2 per chip).
    let v5e = Gcp.fetch_region(&cx, "asia-south2").await.expect("asia-south2");
    close(find(&v5e, "tpu-v5litepod-4", Some(("tpu-v5litepod-4", 1.0))).price, 4.0 * 1.44132);
    let v5p = Gcp.fetch_region(&cx, "southamerica-east1").await.expect("southamerica-east1");
    close(find(&v5p, "tpu-v5p-8", Some(("tpu-v5p-8", 1.0))).price, 4.0 * 6.430995);
    // europe-west4: the v6e rate alone, and the v3 SKU is counted, not offered.
    let eu = Gcp.fetch_region(&cx, "europe-west4").await.expect("europe-west4");
    assert_eq!(eu.len(), 8);
    close(find(&eu, "tpu-v6e-1", Some(("tpu-v6e-1", 1.0))).price, 2.97);

    let skipped = cx.skipped_for("gcp");
    assert_eq!(skipped.get("TPU generation not offered (v2, v3, TPU7x)"), Some(&2), "{skipped:?}");
    assert_eq!(skipped.get("sole tenancy, custom, premium, reserved, DWS or workstation SKU"), Some(&1), "{skipped:?}");
}

#[tokio::test]
async fn a_failing_tpu_listing_fails_the_run_with_its_service() {
    let srv = ReplayServer::builder()
        .get(&format!("{SKUS}?key={KEY}&pageSize=5000"), Reply::json(include_str!("fixtures/gcp/skus-families.json")))
        .get(&format!("{TPU_SKUS}?key={KEY}&pageSize=5000"), Reply::malformed("application/json"))
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", srv.base()), ("SKYCAT_GCP_API_KEY", KEY)]);
    let err = Gcp.fetch_region(&cx, "us-central1").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("SKU page 1 of services/E000-3F24-B8AA"), "{err}");
}

#[tokio::test]
async fn compute_api_zones_price_a4_slices_and_a3_spot_only() {
    let p = "/compute/v1/projects/skycat-test";
    let srv = ReplayServer::builder()
        .get(&format!("{SKUS}?key={KEY}&pageSize=5000"), Reply::json(include_str!("fixtures/gcp/skus-families.json")))
        .get(&format!("{TPU_SKUS}?key={KEY}&pageSize=5000"), Reply::json(TPU_PAGE))
        .get(&format!("{p}/regions/us-east4"), Reply::json(include_str!("fixtures/gcp/compute-region-us-east4.json")))
        .get(
            &format!("{p}/zones/us-east4-b/machineTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-machinetypes-us-east4-b.json")),
        )
        .get(
            &format!("{p}/zones/us-east4-b/acceleratorTypes"),
            Reply::json(include_str!("fixtures/gcp/compute-acceleratortypes-us-east4-b.json")),
        )
        .start()
        .await;
    let env = compute_env(srv.base());
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cx = FetchContext::for_tests(&env_ref);
    let east = Gcp.fetch_region(&cx, "us-east4").await.expect("us-east4");
    let got: Vec<(&str, Option<&str>, Option<f64>, Option<f64>)> =
        east.iter().map(|o| (o.instance_type.as_ref(), o.zone.as_deref(), o.price, o.spot_price)).collect();
    let a3_spot = 26.0 * 0.00513 + 234.0 * 0.000592094 + 2.253;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].0, got[0].1, got[0].2), ("a3-highgpu-1g", Some("us-east4-b"), None));
    assert!((got[0].3.unwrap() - a3_spot).abs() < 1e-9);
    assert_eq!((got[1].0, got[1].1), ("a4-highgpu-8g", Some("us-east4-b")));
    close(got[1].2, 90.216);
    close(got[1].3, 64.44);
    assert_eq!((east[1].accelerator_name.as_deref(), east[1].accelerator_count, east[1].memory_gib), (Some("B200"), 8.0, Some(3968.0)));
}
