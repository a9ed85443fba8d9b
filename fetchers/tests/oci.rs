//! OCI provider against a replay server serving the cetools price list and the Cost Estimator
//! shapes in the real wire format (fixtures/oci/): a 503 and a 429 before the answers, shapes
//! that must be left out (hidden, inactive, DenseIO), tiered A1 prices, and a truncated file.

mod support;

use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::oci::{Oci, ALL_REGIONS};
use skycat_fetchers::{FetchError, Provider};
use support::{ReplayServer, Reply};

const PRODUCTS: &str = include_str!("fixtures/oci/products.json");
const SHAPES: &str = include_str!("fixtures/oci/shapes.json");
const SHAPES_BAD: &str = include_str!("fixtures/oci/shapes-truncated.json");
const PRICES_PATH: &str = "/pls/apex/cetools/api/v1/products/";
const SHAPES_PATH: &str = "/a/ocom/docs/cloudestimator2/data/shapes.json";

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("price");
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test]
async fn gpu_fixed_and_flex_shapes_in_every_region() {
    let srv = ReplayServer::builder()
        .route("GET", &format!("{PRICES_PATH}?currencyCode=USD"), vec![Reply::status(503), Reply::json(PRODUCTS)])
        .route("GET", SHAPES_PATH, vec![Reply::too_many(1), Reply::json(SHAPES)])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_OCI_ENDPOINT", srv.base())]);
    let regions = Oci.regions(&cx).await.unwrap();
    assert_eq!(regions.len(), 33);
    assert_eq!(regions, ALL_REGIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>());

    let ash = Oci.fetch_region(&cx, "us-ashburn-1").await.expect("us-ashburn-1");
    let fra = Oci.fetch_region(&cx, "eu-frankfurt-1").await.expect("eu-frankfurt-1");
    assert_eq!(srv.hits("GET", PRICES_PATH), 2);
    assert_eq!(srv.hits("GET", SHAPES_PATH), 2);
    // 6 GPU shapes, 14 E4 Flex sizes, 12 A1 Flex sizes (A1 stops at 80 vCPUs), 1 fixed BM.
    assert_eq!(ash.len(), 6 + 14 + 12 + 1);
    assert_eq!(fra.len(), ash.len());

    type Row<'a> = (&'a str, Option<&'a str>, f64, Option<f64>, Option<f64>, Option<f64>);
    let gpu: Vec<Row> = ash
        .iter()
        .filter(|o| o.accelerator_name.is_some())
        .map(|o| {
            (o.instance_type.as_ref(), o.accelerator_name.as_deref(), o.accelerator_count, o.vcpus, o.memory_gib, o.price)
        })
        .collect();
    // Figures as in SkyPilot's OCI catalog (reference-prices/oci.csv), H100 from the price list.
    assert_eq!(
        gpu,
        vec![
            ("VM.GPU.A10.1", Some("A10"), 1.0, Some(30.0), Some(240.0), Some(2.0)),
            ("VM.GPU.A10.2", Some("A10"), 2.0, Some(60.0), Some(480.0), Some(4.0)),
            ("BM.GPU.A10.4", Some("A10"), 4.0, Some(128.0), Some(1024.0), Some(8.0)),
            ("BM.GPU4.8", Some("A100"), 8.0, Some(128.0), Some(2048.0), Some(24.4)),
            ("BM.GPU.A100-v2.8", Some("A100-80GB"), 8.0, Some(256.0), Some(2048.0), Some(32.0)),
            ("BM.GPU.H100.8", Some("H100"), 8.0, Some(224.0), Some(2048.0), Some(80.0)),
        ]
    );
    assert!(ash.iter().filter(|o| o.accelerator_name.is_some()).all(|o| o.spot_price.is_none()));

    let by = |n: &str| ash.iter().find(|o| *o.instance_type == *n).unwrap_or_else(|| panic!("{n}"));
    // E4 Flex: 0.037 / 0.0185 (2 vCPU, 8 GB) and 1.568 / 0.784 (64 vCPU, 512 GB) as in oci.csv.
    let e4 = by("VM.Standard.E4.Flex$_2_8");
    close(e4.price, 0.037);
    close(e4.spot_price, 0.0185);
    assert_eq!((e4.vcpus, e4.memory_gib, e4.arch.as_deref()), (Some(2.0), Some(8.0), Some("x86_64")));
    close(by("VM.Standard.E4.Flex$_64_512").price, 1.568);
    close(by("VM.Standard.E4.Flex$_64_512").spot_price, 0.784);
    // A1: marginal tier (0.01 / OCPU-hour, 0.0015 / GB-hour), 1 OCPU = 1 vCPU, no preemptible.
    let a1 = by("VM.Standard.A1.Flex$_4_16");
    close(a1.price, 4.0 * 0.01 + 16.0 * 0.0015);
    assert_eq!((a1.arch.as_deref(), a1.spot_price), (Some("arm64"), None));
    assert!(!ash.iter().any(|o| o.instance_type.starts_with("VM.Standard.A1.Flex$_128")));
    let bm = by("BM.Standard.E4.128");
    close(bm.price, 128.0 * 0.025 + 2048.0 * 0.0015);
    assert_eq!(bm.vcpus, Some(256.0));
    assert!(fra.iter().all(|o| &*o.region == "eu-frankfurt-1" && o.zone.is_none()));
    assert_eq!(cx.skipped_for("oci").get("hidden, inactive or out-of-scope shape"), Some(&3));
}

#[tokio::test]
async fn a_malformed_shapes_file_fails_every_region() {
    let srv = ReplayServer::builder()
        .get(&format!("{PRICES_PATH}?currencyCode=USD"), Reply::json(PRODUCTS))
        .get(SHAPES_PATH, Reply::json(SHAPES_BAD))
        .start()
        .await;
    let cx = FetchContext::for_tests(&[("SKYCAT_OCI_ENDPOINT", srv.base())]);
    let err = Oci.fetch_region(&cx, "us-ashburn-1").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("oci shapes"), "{err}");
    assert_eq!(Oci.fetch_region(&cx, "uk-london-1").await.unwrap_err(), err);
    assert_eq!(srv.hits("GET", SHAPES_PATH), 1);
}
