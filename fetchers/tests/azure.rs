//! Azure provider against a replay server serving Retail Prices API pages in the real wire
//! format (fixtures/azure/): two pages for eastus linked by an absolute `NextPageLink` on
//! prices.azure.com, a region answering 503 once, a 429 on a second page, filtered rows
//! (Windows, Low Priority, Reservation, DevTest, Cloud Services, Dedicated Host), a preview SKU
//! listed at 0, and a truncated page.

mod support;

use skycat_catalog::home::SkycatHome;
use skycat_catalog::manifest::Manifest;
use skycat_catalog::Offer;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::azure::{self, Azure};
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};
use support::{ReplayServer, Reply};

const EASTUS_1: &str = include_str!("fixtures/azure/eastus-page1.json");
const EASTUS_2: &str = include_str!("fixtures/azure/eastus-page2.json");
const WESTUS2: &str = include_str!("fixtures/azure/westus2.json");
const SOUTHCENTRAL: &str = include_str!("fixtures/azure/southcentralus.json");
const SOUTHCENTRAL_BAD: &str = include_str!("fixtures/azure/southcentralus-truncated.json");

fn query(region: &str, skip: Option<u32>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("api-version", "2023-01-01-preview");
    q.append_pair(
        "$filter",
        &format!("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{region}'"),
    );
    if let Some(s) = skip {
        q.append_pair("$skip", &s.to_string());
    }
    q.finish()
}

fn route(prefix: &str, region: &str, skip: Option<u32>) -> String {
    format!("{prefix}/api/retail/prices?{}", query(region, skip))
}

async fn server(prefix: &str, southcentral: Vec<Reply>) -> ReplayServer {
    ReplayServer::builder()
        .route("GET", &route(prefix, "eastus", None), vec![Reply::json(EASTUS_1)])
        .route("GET", &route(prefix, "eastus", Some(1000)), vec![Reply::too_many(1), Reply::json(EASTUS_2)])
        .route("GET", &route(prefix, "westus2", None), vec![Reply::status(503), Reply::json(WESTUS2)])
        .route("GET", &route(prefix, "southcentralus", None), southcentral)
        .start()
        .await
}

#[allow(clippy::too_many_arguments)]
fn expect(
    cx: &FetchContext,
    sku: &str,
    region: &str,
    gpu: Option<(&str, f64, f64)>,
    vcpus: f64,
    mem: Option<f64>,
    price: Option<f64>,
    spot: Option<f64>,
    source: &str,
) -> Offer {
    let mut o = cx.offer("azure", sku, region, source);
    if let Some((name, count, gib)) = gpu {
        o.accelerator_name = Some(name.into());
        o.accelerator_count = count;
        o.accelerator_memory_gib = Some(gib);
        o.accelerator_vendor = Some("nvidia".into());
    }
    o.vcpus = Some(vcpus);
    o.memory_gib = mem;
    o.arch = Some("x86_64".into());
    o.price = price;
    o.spot_price = spot;
    if price.is_none() && spot.is_none() {
        o.price_breakdown = Some("listed with price 0 (preview): no price".into());
    }
    o
}

#[tokio::test]
async fn eastus_pages_filters_and_preview() {
    let srv = server("", vec![Reply::json(SOUTHCENTRAL)]).await;
    let cx = FetchContext::for_tests(&[("SKYCAT_AZURE_ENDPOINT", srv.base())]);
    let offers = Azure.fetch_region(&cx, "eastus").await.expect("eastus");
    let src = format!("{}/{}", srv.base(), route("", "eastus", None).trim_start_matches('/'));
    let want = vec![
        expect(&cx, "Standard_D2s_v5", "eastus", None, 2.0, Some(8.0), Some(0.096), None, &src),
        expect(&cx, "Standard_NC24ads_A100_v4", "eastus", Some(("A100-80GB", 1.0, 80.0)), 24.0, Some(220.0), Some(3.673), Some(0.444433), &src),
        expect(&cx, "Standard_NC4as_T4_v3", "eastus", Some(("T4", 1.0, 16.0)), 4.0, Some(28.0), Some(0.526), Some(0.062699), &src),
        expect(&cx, "Standard_NC6s_v3", "eastus", Some(("V100", 1.0, 16.0)), 6.0, Some(112.0), Some(3.06), Some(0.3978), &src),
        expect(&cx, "Standard_ND96amsr_A100_v4", "eastus", Some(("A100-80GB", 8.0, 80.0)), 96.0, Some(1900.0), Some(32.77), Some(3.6047), &src),
        expect(&cx, "Standard_ND96isr_H200_v5", "eastus", Some(("H200", 8.0, 141.0)), 96.0, Some(1850.0), None, None, &src),
    ];
    // The source URL is the first page's; compare it loosely (percent-encoding may differ).
    let mut got = offers.clone();
    for o in &mut got {
        assert!(o.source.starts_with(srv.base()), "{}", o.source);
        o.source = src.clone().into();
    }
    assert_eq!(got, want);

    // The absolute NextPageLink on prices.azure.com was followed on the replay server, after a 429.
    let reqs = srv.requests();
    let skips: Vec<_> = reqs.iter().filter(|r| r.query.as_deref().is_some_and(|q| q.contains("skip=1000"))).collect();
    assert_eq!(skips.len(), 2, "page 2 asked twice (429 then 200): {reqs:?}");

    let skipped = cx.skipped_for("azure");
    for reason in ["Windows", "low priority", "reservation or other non-consumption price", "DevTest price", "Cloud Services", "dedicated host"] {
        assert_eq!(skipped.get(reason), Some(&1), "{reason}: {skipped:?}");
    }
    assert!(cx.notes_for("azure").iter().any(|n| n.contains("Standard_ND96isr_H200_v5") && n.contains("without a price")));
}

#[tokio::test]
async fn retries_503_and_reports_malformed_page() {
    let srv = server("", vec![Reply::json(SOUTHCENTRAL_BAD)]).await;
    let cx = FetchContext::for_tests(&[("SKYCAT_AZURE_ENDPOINT", srv.base())]);
    let west = Azure.fetch_region(&cx, "westus2").await.expect("westus2 after one 503");
    let names: Vec<(&str, Option<f64>, Option<f64>)> =
        west.iter().map(|o| (o.instance_type.as_ref(), o.price, o.spot_price)).collect();
    assert_eq!(
        names,
        vec![
            ("Standard_NC24ads_A100_v4", Some(3.673), Some(0.615962)),
            ("Standard_NC4as_T4_v3", Some(0.526), Some(0.061595)),
            ("Standard_NC6s_v3", Some(3.06), Some(0.35343)),
        ]
    );
    assert_eq!(srv.hits("GET", "/api/retail/prices"), 2);
    let err = Azure.fetch_region(&cx, "southcentralus").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("southcentralus"), "{err}");
}

#[tokio::test]
async fn paging_keeps_a_proxy_path_prefix() {
    let srv = server("/azure-proxy", vec![Reply::json(SOUTHCENTRAL)]).await;
    let endpoint = format!("{}/azure-proxy", srv.base());
    let cx = FetchContext::for_tests(&[("SKYCAT_AZURE_ENDPOINT", &endpoint)]);
    let offers = Azure.fetch_region(&cx, "eastus").await.expect("eastus behind a proxy prefix");
    assert_eq!(offers.len(), 6);
    assert_eq!(srv.hits("GET", "/azure-proxy/api/retail/prices"), 3);
}

#[tokio::test]
async fn run_marks_the_malformed_region_stale() {
    let srv = server("", vec![Reply::json(SOUTHCENTRAL), Reply::json(SOUTHCENTRAL_BAD)]).await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["azure".into()];
    opts.regions = vec!["eastus".into(), "westus2".into(), "southcentralus".into()];
    opts.env_overrides.insert("SKYCAT_AZURE_ENDPOINT".into(), srv.base().to_string());
    opts.retry = RetryPolicy::fast_for_tests();
    opts.force = true;

    let first = run_fetch(&opts, &|_| {}).await.expect("first run");
    let r = &first.clouds[0];
    assert_eq!(r.regions_ok, vec!["eastus", "southcentralus", "westus2"]);
    assert!(r.published, "{r:?}");

    let second = run_fetch(&opts, &|_| {}).await.expect("second run");
    let r = &second.clouds[0];
    assert_eq!(r.regions_ok, vec!["eastus", "westus2"]);
    assert_eq!(r.regions_failed.len(), 1);
    assert_eq!(r.regions_failed[0].0, "southcentralus");
    assert_eq!(r.stale_regions, vec!["southcentralus"]);

    let manifest = Manifest::load(&home.catalogs_dir().join("manifest.json")).unwrap();
    let m = &manifest.clouds["azure"];
    assert_eq!(m.stale_regions, vec!["southcentralus"]);
    assert_eq!(m.regions_failed, vec!["southcentralus"]);

    // The stale region keeps its last good rows.
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("azure.parquet")).unwrap();
    let south: Vec<(&str, Option<f64>)> = rows
        .iter()
        .filter(|o| &*o.region == "southcentralus" && o.instance_type.starts_with("Standard_NC"))
        .map(|o| (o.instance_type.as_ref(), o.price))
        .collect();
    assert!(south.contains(&("Standard_NC24ads_A100_v4", Some(4.408))), "{south:?}");
    assert!(south.contains(&("Standard_NC6s_v3", Some(3.366))), "{south:?}");
}

#[tokio::test]
async fn resource_skus_api_gives_specs_with_credentials() {
    let skus = "/subscriptions/sub-1/providers/Microsoft.Compute/skus";
    let first = format!("{skus}?api-version=2021-07-01&$filter=location eq 'westus'");
    let second = format!("{first}&$skiptoken=MTAwMA==");
    let srv = ReplayServer::builder()
        .route("GET", &route("", "westus", None), vec![Reply::json(include_str!("fixtures/azure/westus-m8ms.json"))])
        .post("/tenant-1/oauth2/v2.0/token", Reply::json(include_str!("fixtures/azure/aad-token.json")))
        .get(&first, Reply::json(include_str!("fixtures/azure/resource-skus-westus-page1.json")))
        .route("GET", &second, vec![Reply::status(503), Reply::json(include_str!("fixtures/azure/resource-skus-westus-page2.json"))])
        .start()
        .await;
    let cx = FetchContext::for_tests(&[
        ("SKYCAT_AZURE_ENDPOINT", srv.base()),
        ("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", srv.base()),
        ("SKYCAT_AZURE_LOGIN_ENDPOINT", srv.base()),
        ("AZURE_SUBSCRIPTION_ID", "sub-1"),
        ("AZURE_TENANT_ID", "tenant-1"),
        ("AZURE_CLIENT_ID", "client-1"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
    ]);
    let offers = Azure.fetch_region(&cx, "westus").await.expect("westus");
    assert_eq!(offers.len(), 1);
    let m = &offers[0];
    // The naming convention knows 8 vCPUs but not the M-series memory: 218.75 GiB is the API's.
    assert_eq!((m.instance_type.as_ref(), m.vcpus, m.memory_gib), ("Standard_M8ms", Some(8.0), Some(218.75)));
    assert_eq!((m.price, m.spot_price, m.accelerator_count), (Some(1.997), Some(0.21967), 0.0));
    // The Resource SKUs' HyperVGenerations reach the catalog row (SkyPilot's `Generation`).
    assert_eq!(m.hyperv_generations.map(|g| g.label()).as_deref(), Some("V1,V2"));

    let reqs = srv.requests();
    let token = reqs.iter().find(|r| r.method == "POST").expect("token request");
    let form = String::from_utf8(token.body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials") && form.contains("client_id=client-1"), "{form}");
    let sku_reqs: Vec<_> = reqs.iter().filter(|r| r.path == skus).collect();
    assert_eq!(sku_reqs.len(), 3, "page 1, then the absolute nextLink on the replay server (503, 200)");
    assert!(sku_reqs.iter().all(|r| r.headers.get("authorization").map(String::as_str)
        == Some("Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.replay.signature")));
}

#[tokio::test]
async fn resource_skus_give_hyperv_generations() {
    let skus = "/subscriptions/sub-1/providers/Microsoft.Compute/skus";
    let first = format!("{skus}?api-version=2021-07-01&$filter=location eq 'westus'");
    let second = format!("{first}&$skiptoken=MTAwMA==");
    let page2 = include_str!("fixtures/azure/resource-skus-westus-page2.json");
    let bad = page2.replace("\"V1,V2\"", "\"Gen2\"");
    let srv = ReplayServer::builder()
        .route("GET", &route("", "westus", None), vec![Reply::json(include_str!("fixtures/azure/westus-m8ms.json"))])
        .post("/tenant-1/oauth2/v2.0/token", Reply::json(include_str!("fixtures/azure/aad-token.json")))
        .get(&first, Reply::json(include_str!("fixtures/azure/resource-skus-westus-page1.json")))
        .route("GET", &second, vec![Reply::too_many(1), Reply::json(page2), Reply::json(bad)])
        .start()
        .await;
    let env = [
        ("SKYCAT_AZURE_ENDPOINT", srv.base()),
        ("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", srv.base()),
        ("SKYCAT_AZURE_LOGIN_ENDPOINT", srv.base()),
        ("AZURE_SUBSCRIPTION_ID", "sub-1"),
        ("AZURE_TENANT_ID", "tenant-1"),
        ("AZURE_CLIENT_ID", "client-1"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
    ];
    let cx = FetchContext::for_tests(&env);
    let specs = azure::resource_sku_specs(&cx, "westus").await.expect("specs").expect("credentials");
    let gens: Vec<(&str, Option<String>)> = specs.iter().map(|(k, s)| (k.as_str(), s.generation_cell())).collect();
    // SkyPilot's Azure catalog: Standard_M8ms "V1,V2" (reference-prices/azure.csv).
    assert_eq!(gens, vec![("standard_d2s_v5", Some("V1,V2".into())), ("standard_m8ms", Some("V1,V2".into()))]);
    let m8ms = specs["standard_m8ms"].hyperv_generations.expect("generations");
    assert!(m8ms.supports(1) && m8ms.supports(2));

    // A value that is not a V<n> list names the size; fetch_region falls back to the SKU names.
    let cx = FetchContext::for_tests(&env);
    let err = azure::resource_sku_specs(&cx, "westus").await.unwrap_err();
    assert!(err.to_string().contains("Standard_M8ms") && err.to_string().contains("Gen2"), "{err}");
    let offers = Azure.fetch_region(&cx, "westus").await.expect("westus from names");
    assert_eq!(offers[0].memory_gib, None);
    assert!(cx.notes_for("azure").iter().any(|n| n.contains("Resource SKUs API failed for westus")));

    // Without credentials there is nothing to ask.
    let cx = FetchContext::for_tests(&[("SKYCAT_AZURE_ENDPOINT", srv.base())]);
    assert!(azure::resource_sku_specs(&cx, "westus").await.unwrap().is_none());
}
