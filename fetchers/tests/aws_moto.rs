//! AWS signed calls against moto's server (real instance-type specs and per-zone offerings as
//! moto ships them), with the bulk files from a replay server; the Pricing API source against a
//! replay server speaking awsJson1_1.
//!
//! moto must be installed: `scripts/ci-setup-moto.sh` (CI runs it). Without it these tests
//! fail, saying so.

mod support;

use skycat_fetchers::providers::aws::Aws;
use skycat_fetchers::{AwsOnDemandSource, FetchContext, Provider};
use skycat_testkit::moto::start_moto;
use support::{ReplayServer, Reply};

const IDX: &str = "/offers/v1.0/aws/AmazonEC2/current/region_index.json";

async fn bulk() -> ReplayServer {
    ReplayServer::builder()
        .get(IDX, Reply::json(include_str!("fixtures/aws/region_index.json")))
        .get(
            "/offers/v1.0/aws/AmazonEC2/current/us-east-1/index.csv",
            Reply::text("text/csv", include_str!("fixtures/aws/us-east-1.csv")),
        )
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_specs_zones_and_spot_from_moto() {
    let moto = start_moto();
    let srv = bulk().await;
    let cx = FetchContext::for_tests(&[
        ("SKYCAT_AWS_OFFER_URL", srv.base()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL_EC2", &moto.url),
    ]);
    let offers = Aws.fetch_region(&cx, "us-east-1").await.expect("fetch against moto");
    assert!(
        !cx.notes_for("aws").iter().any(|n| n.contains("credentials")),
        "signed calls ran: {:?}",
        cx.notes_for("aws")
    );

    // g5.xlarge: moto's DescribeInstanceTypeOfferings lists it in us-east-1a/b/c/d/f (not e),
    // whose zone IDs moto's DescribeAvailabilityZones gives as use1-az6/1/2/4/5.
    let g5: Vec<_> = offers.iter().filter(|o| &*o.instance_type == "g5.xlarge").collect();
    let zones: Vec<&str> = g5.iter().map(|o| o.zone.as_deref().unwrap()).collect();
    assert_eq!(zones, vec!["use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"]);
    for o in &g5 {
        // DescribeInstanceTypes: A10G, 22888 MiB patched to 24 GiB, 4 vCPU, 16384 MiB.
        assert_eq!(o.accelerator_name.as_deref(), Some("A10G"));
        assert_eq!(o.accelerator_count, 1.0);
        assert_eq!(o.accelerator_memory_gib, Some(24.0));
        assert_eq!(o.accelerator_vendor.as_deref(), Some("nvidia"));
        assert_eq!(o.vcpus, Some(4.0));
        assert_eq!(o.memory_gib, Some(16.0));
        assert_eq!(o.arch.as_deref(), Some("x86_64"));
        assert_eq!(o.price, Some(1.006));
        // DescribeSpotPriceHistory: moto ships a price per type and zone.
        let spot = o.spot_price.expect("spot price from moto");
        assert!(spot > 0.0 && spot < 1.006, "{spot}");
        assert!(o.source.contains("DescribeSpotPriceHistory"));
    }

    // p4d.24xlarge: 8 x A100 40 GiB, 96 vCPU, 1152 GiB.
    let p4d = offers.iter().find(|o| &*o.instance_type == "p4d.24xlarge").expect("p4d offered in a zone");
    assert_eq!(
        (p4d.accelerator_name.as_deref(), p4d.accelerator_count, p4d.accelerator_memory_gib),
        (Some("A100"), 8.0, Some(40.0))
    );
    assert_eq!((p4d.vcpus, p4d.memory_gib), (Some(96.0), Some(1152.0)));

    // m7g.large: arm64 from processorInfo.
    let m7g = offers.iter().find(|o| &*o.instance_type == "m7g.large").expect("m7g");
    assert_eq!(m7g.arch.as_deref(), Some("arm64"));
    assert!(m7g.accelerator_name.is_none());

    // Every offer is per zone, and every zone is one of moto's us-east-1 zones.
    for o in &offers {
        let z = o.zone.as_deref().expect("per-zone offers with EC2 data");
        assert!(z.starts_with("use1-az") && z.len() == "use1-az1".len(), "{z}");
    }
    // The bulk file's on-demand types are all there (moto offers each of them).
    let mut types: Vec<&str> = offers.iter().filter(|o| o.price.is_some()).map(|o| o.instance_type.as_ref()).collect();
    types.dedup();
    assert_eq!(types, vec!["g5.xlarge", "g6.xlarge", "m5.large", "m7g.large", "p4d.24xlarge"]);
}

fn price_item(sku: &str, itype: &str, vcpu: &str, mem: &str, gpu: Option<&str>, usd: &str, os: &str) -> String {
    let gpu = gpu.map(|g| format!(",\"gpu\":\"{g}\"")).unwrap_or_default();
    let doc = format!(
        r#"{{"product":{{"productFamily":"Compute Instance","attributes":{{"memory":"{mem}","vcpu":"{vcpu}","capacitystatus":"Used","locationType":"AWS Region","operatingSystem":"{os}","regionCode":"us-east-1","physicalProcessor":"AMD EPYC 7R32","instanceType":"{itype}","tenancy":"Shared","usagetype":"BoxUsage:{itype}","preInstalledSw":"NA","licenseModel":"No License required","marketoption":"OnDemand","operation":"RunInstances"{gpu}}},"sku":"{sku}"}},"serviceCode":"AmazonEC2","terms":{{"OnDemand":{{"{sku}.JRTCKXETXF":{{"priceDimensions":{{"{sku}.JRTCKXETXF.6YS6EN2CT7":{{"unit":"Hrs","endRange":"Inf","description":"${usd} per On Demand Linux {itype} Instance Hour","appliesTo":[],"rateCode":"{sku}.JRTCKXETXF.6YS6EN2CT7","beginRange":"0","pricePerUnit":{{"USD":"{usd}"}}}}}},"sku":"{sku}","effectiveDate":"2025-09-01T00:00:00Z","offerTermCode":"JRTCKXETXF","termAttributes":{{}}}}}}}},"version":"20250912225308","publicationDate":"2025-09-12T22:53:08Z"}}"#
    );
    serde_json::to_string(&doc).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pricing_api_source_pages_through_get_products() {
    let moto = start_moto();
    let page1 = format!(
        r#"{{"FormatVersion":"aws_v1","NextToken":"tok-2","PriceList":[{},{}]}}"#,
        price_item("B7Y8ZCTQ6HRRUCF6", "g5.xlarge", "4", "16 GiB", Some("1"), "1.0060000000", "Linux"),
        price_item("WINDOWSSKU000001", "g5.xlarge", "4", "16 GiB", Some("1"), "1.1900000000", "Windows"),
    );
    let page2 = format!(
        r#"{{"FormatVersion":"aws_v1","PriceList":[{}]}}"#,
        price_item("M5LARGESKU000001", "m5.large", "2", "8 GiB", None, "0.0960000000", "Linux"),
    );
    let pricing = ReplayServer::builder()
        .route(
            "POST",
            "/",
            vec![
                Reply::new(200, "application/x-amz-json-1.1", page1),
                Reply::new(200, "application/x-amz-json-1.1", page2),
            ],
        )
        .start()
        .await;
    let mut cx = FetchContext::for_tests(&[
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL_EC2", &moto.url),
        ("AWS_ENDPOINT_URL_PRICING", pricing.base()),
    ]);
    cx.aws_ondemand_source = AwsOnDemandSource::PricingApi;
    let offers = Aws.fetch_region(&cx, "us-east-1").await.expect("pricing api");
    let mut od: Vec<(&str, Option<f64>)> =
        offers.iter().filter(|o| o.price.is_some()).map(|o| (o.instance_type.as_ref(), o.price)).collect();
    od.dedup();
    assert_eq!(od, vec![("g5.xlarge", Some(1.006)), ("m5.large", Some(0.096))]);
    assert_eq!(cx.skipped_for("aws").get("aws pricing api: not a Linux on-demand instance price"), Some(&1));

    let reqs = pricing.requests();
    assert_eq!(reqs.len(), 2, "two pages");
    assert_eq!(reqs[0].headers.get("x-amz-target").map(String::as_str), Some("AWSPriceListService.GetProducts"));
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["ServiceCode"], "AmazonEC2");
    let filters = body["Filters"].as_array().unwrap();
    assert!(filters.iter().any(|f| f["Field"] == "regionCode" && f["Value"] == "us-east-1"), "{body}");
    let body2: serde_json::Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(body2["NextToken"], "tok-2");
}
