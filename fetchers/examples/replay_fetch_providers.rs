//! Wall time of `fetch --all-regions` for Azure, GCP, Lambda (page), OCI and Vast.ai against a
//! loopback replay server serving the test fixtures (fetchers/tests/fixtures/<cloud>/) for
//! every region each provider lists: Azure's two eastus pages re-labelled for each of its 57
//! regions, GCP's two SKU pages and its TPU service page (43 regions, priced in three),
//! Lambda's pricing page (17 regions), OCI's price list and shapes (33 regions), Vast's bundles
//! (4 countries). RunPod is left out: its GraphQL replay dispatches on the request body (see
//! tests/runpod.rs).
//!
//! usage: cargo run -p skycat-fetchers --example replay_fetch_providers [CONCURRENCY]

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use skycat_catalog::SkycatHome;
use skycat_fetchers::providers::azure;
use skycat_fetchers::{run_fetch, FetchOptions};
use support::{ReplayServer, Reply};

fn azure_query(region: &str, skip: Option<u32>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("api-version", "2023-01-01-preview");
    q.append_pair(
        "$filter",
        &format!("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{region}'"),
    );
    if let Some(s) = skip {
        q.append_pair("$skip", &s.to_string());
    }
    format!("/api/retail/prices?{}", q.finish())
}

#[tokio::main]
async fn main() {
    let conc: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let p1 = include_str!("../tests/fixtures/azure/eastus-page1.json");
    let p2 = include_str!("../tests/fixtures/azure/eastus-page2.json");
    let mut b = ReplayServer::builder();
    for r in azure::ALL_REGIONS {
        b = b
            .get(&azure_query(r, None), Reply::json(p1.replace("eastus", r)))
            .get(&azure_query(r, Some(1000)), Reply::json(p2.replace("eastus", r)));
    }
    let skus = "/v1/services/6F81-5844-456A/skus";
    b = b
        .get(&format!("{skus}?key=k&pageSize=5000"), Reply::json(include_str!("../tests/fixtures/gcp/skus-page1.json")))
        .get(
            &format!("{skus}?key=k&pageSize=5000&pageToken=CgwI-p_UxgYQqMbcrwMSJDA2NTEtNzcyNC1GN0I5"),
            Reply::json(include_str!("../tests/fixtures/gcp/skus-page2.json")),
        )
        .get(
            "/v1/services/E000-3F24-B8AA/skus?key=k&pageSize=5000",
            Reply::json(include_str!("../tests/fixtures/gcp/tpu-service-skus.json")),
        )
        .get("/instances", Reply::text("text/html", include_str!("../tests/fixtures/lambda/pricing-page.html")))
        .get(
            "/pls/apex/cetools/api/v1/products/?currencyCode=USD",
            Reply::json(include_str!("../tests/fixtures/oci/products.json")),
        )
        .get("/a/ocom/docs/cloudestimator2/data/shapes.json", Reply::json(include_str!("../tests/fixtures/oci/shapes.json")))
        .post("/api/v0/bundles/", Reply::json(include_str!("../tests/fixtures/vast/bundles.json")));
    let srv = b.start().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = FetchOptions::new(SkycatHome::new(dir.path()));
    o.clouds = ["azure", "gcp", "lambda", "oci", "vast"].iter().map(|s| s.to_string()).collect();
    o.all_regions = true;
    o.concurrency = conc;
    o.isolate_env = true;
    o.force = true;
    for cloud in ["AZURE", "GCP", "LAMBDA", "OCI", "VAST"] {
        o.env_overrides.insert(format!("SKYCAT_{cloud}_ENDPOINT"), srv.base().to_string());
    }
    o.env_overrides.insert("SKYCAT_GCP_API_KEY".into(), "k".into());
    let t = Instant::now();
    let report = run_fetch(&o, &|_| {}).await.expect("fetch");
    let total = t.elapsed().as_secs_f64();
    for c in &report.clouds {
        println!(
            "{:<7} {:>3} regions ok, {} failed, {:>5} rows, {:.2} s{}",
            c.cloud,
            c.regions_ok.len(),
            c.regions_failed.len(),
            c.rows,
            c.seconds,
            c.not_published.as_deref().map(|r| format!(" (not published: {r})")).unwrap_or_default()
        );
    }
    println!("all five --all-regions, concurrency {conc}: {total:.2} s wall, {} requests served", srv.requests().len());
}
