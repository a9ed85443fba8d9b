//! `POST /optimize?input=…`: a task's data inputs, located, priced into each placement.

mod common;

use common::{catalog_a, TestServer};
use skycat_server::{AppBuilder, CatalogData};

async fn server() -> TestServer {
    TestServer::start(AppBuilder::new(CatalogData::from_offers(catalog_a()))).await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

const TASK: &str = r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#;

#[tokio::test]
async fn input_query_parameter_moves_the_plan_to_the_data() {
    let s = server().await;
    // Without inputs: GCP's a2-highgpu-8g ($29.39) beats AWS's p4d ($32.77).
    let (status, body) = s.post("/optimize", "application/json", TASK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chosen"]["cloud"], "gcp");
    assert_eq!(body["egress_cost"], 0.0);
    assert!(body.get("inputs").is_none(), "{body}");

    // 500 GB in us-east-1: AWS us-east-1 pays no egress, GCP 500 × $0.09 (AWS internet rate).
    let q = enc("s3://data/train@us-east-1=500");
    let (status, body) = s.post(&format!("/optimize?input={q}"), "application/json", TASK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chosen"]["cloud"], "aws");
    assert_eq!(body["chosen"]["region"], "us-east-1");
    assert_eq!(body["chosen"]["egress_cost"], 0.0);
    assert_eq!(body["inputs"][0]["name"], "s3://data/train");
    assert_eq!(body["inputs"][0]["location"]["region"], "us-east-1");
    assert_eq!(body["inputs"][0]["size_gb"], 500.0);
    let gcp = body["per_cloud_cheapest"].as_array().unwrap().iter().find(|p| p["cloud"] == "gcp").cloned().unwrap();
    let egress = gcp["egress_cost"].as_f64().unwrap();
    assert!((egress - 45.0).abs() < 1e-9, "{gcp}");
    assert!((gcp["total_cost"].as_f64().unwrap() - (29.39 + 45.0)).abs() < 1e-9, "{gcp}");

    // A malformed input is a 422 naming the parameter.
    let (status, body) = s.post(&format!("/optimize?input={}", enc("s3://data=lots")), "application/json", TASK).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "input");
    s.stop().await;
}

#[tokio::test]
async fn openapi_documents_the_input_parameter_and_the_egress_fields() {
    let s = server().await;
    let (status, doc) = s.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let params = doc["paths"]["/optimize"]["post"]["parameters"].as_array().expect("parameters");
    assert!(params.iter().any(|p| p["name"] == "input"), "{params:?}");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Placement"]["properties"]["egress_cost"].is_object(), "{}", schemas["Placement"]);
    assert!(schemas["Plan"]["properties"]["inputs"].is_object(), "{}", schemas["Plan"]);
    assert!(schemas["InputEgress"].is_object());
    s.stop().await;
}
