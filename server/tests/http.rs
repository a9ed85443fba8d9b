//! The service over real HTTP on loopback: every endpoint, the error statuses and fields, YAML
//! bodies, the size limit and the timeout.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::{catalog_a, TestServer};
use skycat_server::{AppBuilder, CatalogData, ServerConfig};

async fn server() -> TestServer {
    TestServer::start(AppBuilder::new(CatalogData::from_offers(catalog_a()))).await
}

#[tokio::test]
async fn healthz_reports_the_catalog_in_service() {
    let s = server().await;
    let (status, body) = s.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["rows"], 8);
    assert_eq!(body["catalog_version"], 1);
    s.stop().await;
}

#[tokio::test]
async fn gpus_lists_counts_and_cheapest_prices_per_cloud() {
    let s = server().await;
    let (status, body) = s.get_json("/catalog/gpus").await;
    assert_eq!(status, 200);
    let accs = body["accelerators"].as_array().expect("accelerators");
    let names: Vec<&str> = accs.iter().map(|a| a["accelerator"].as_str().unwrap()).collect();
    assert_eq!(names, ["A100", "V100"]);
    let a100 = &accs[0];
    assert_eq!(a100["counts"], serde_json::json!([1.0, 8.0]));
    assert_eq!(a100["offers"], 4);
    let gcp = a100["clouds"].as_array().unwrap().iter().find(|c| c["cloud"] == "gcp").unwrap();
    // a2-highgpu-8g: 29.39 / 8 = 3.67375 < a2-highgpu-1g's 3.67.
    assert_eq!(gcp["cheapest_on_demand"]["instance_type"], "a2-highgpu-1g");
    assert_eq!(gcp["cheapest_spot"]["instance_type"], "a2-highgpu-8g");
    assert!((gcp["cheapest_spot"]["price_per_accelerator"].as_f64().unwrap() - 1.1).abs() < 1e-9);
    let aws = a100["clouds"].as_array().unwrap().iter().find(|c| c["cloud"] == "aws").unwrap();
    assert_eq!(aws["cheapest_spot"]["region"], "us-west-2");
    s.stop().await;
}

#[tokio::test]
async fn offers_filters_sorts_and_limits() {
    let s = server().await;
    let (status, body) = s.get_json("/catalog/offers?accelerator=a100&count=8").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], 3);
    let types: Vec<&str> = body["offers"].as_array().unwrap().iter().map(|o| o["instance_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["a2-highgpu-8g", "p4d.24xlarge", "p4d.24xlarge"]);

    let (_, body) = s.get_json("/catalog/offers?accelerator=A100&spot=true&limit=1").await;
    assert_eq!(body["matched"], 4);
    assert_eq!(body["offers"].as_array().unwrap().len(), 1);
    assert_eq!(body["offers"][0]["instance_type"], "a2-highgpu-1g");

    let (_, body) = s.get_json("/catalog/offers?cloud=aws&accelerator=none&min_vcpus=8&min_memory=32").await;
    let types: Vec<&str> = body["offers"].as_array().unwrap().iter().map(|o| o["instance_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["m6i.2xlarge"]);

    let (_, body) = s.get_json("/catalog/offers?zone=us-central1-a&cloud=gcp&cloud=aws").await;
    assert_eq!(body["matched"], 2);

    // The registry's aliases resolve to the canonical name.
    let (status, body) = s.get_json("/catalog/offers?accelerator=nvidia-tesla-v100").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offers"][0]["instance_type"], "p3.2xlarge");
    s.stop().await;
}

#[tokio::test]
async fn offers_rejects_bad_parameters_naming_them() {
    let s = server().await;
    let cases: &[(&str, u16, &str)] = &[
        ("count=abc", 400, "count"),
        ("count=-1", 422, "count"),
        ("count=NaN", 400, "count"),
        ("spot=maybe", 400, "spot"),
        ("limit=0", 422, "limit"),
        ("limit=100000000", 422, "limit"),
        ("limit=-3", 400, "limit"),
        ("min_vcpus=-2", 422, "min_vcpus"),
        ("min_memory=lots", 400, "min_memory"),
        ("cloud=nowhere", 422, "cloud"),
        ("accelerator=zzz-9000", 422, "accelerator"),
        ("acelerator=A100", 400, "acelerator"),
        ("count=1&count=2", 400, "count"),
    ];
    for (query, want_status, want_field) in cases {
        let (status, body) = s.get_json(&format!("/catalog/offers?{query}")).await;
        assert_eq!(status, *want_status, "{query}: {body}");
        assert_eq!(body["field"], *want_field, "{query}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{query}: {body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn status_reports_sources_age_and_no_refresh_yet() {
    let s = server().await;
    let (status, body) = s.get_json("/catalog/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"], 8);
    let clouds = body["clouds"].as_array().unwrap();
    assert_eq!(clouds.len(), 2);
    assert_eq!(clouds[0]["cloud"], "aws");
    assert_eq!(clouds[0]["rows"], 5);
    assert_eq!(clouds[0]["source"], "test://aws");
    assert_eq!(clouds[0]["fetched_at"], "2026-11-01T00:00:00Z");
    assert!(clouds[0]["age_seconds"].as_i64().unwrap() > 0);
    // Older than the 24 h default.
    assert_eq!(clouds[0]["stale"], true);
    assert!(body["last_refresh"].is_null());
    assert!(body["refresh_schedule"].is_null());
    s.stop().await;
}

/// An HTTP answer lists the first 10 failover placements unless `max_failover` asks for more
/// (0: all of them); the chosen placement and the cost do not depend on it.
#[tokio::test]
async fn optimize_failover_list_is_short_by_default() {
    let mut offers = catalog_a();
    for i in 0..30 {
        let region = format!("us-test-{i}");
        offers.push(common::offer("aws", "p4d.24xlarge", &region, None, Some(("A100", 8.0)), 96.0, 1152.0, Some(40.0 + i as f64), None));
    }
    let s = TestServer::start(AppBuilder::new(CatalogData::from_offers(offers))).await;
    let task = r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#;
    let (status, short) = s.post("/optimize", "application/json", task).await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(short["failover"].as_array().unwrap().len(), 10, "{short}");
    let (status, all) = s.post("/optimize?max_failover=0", "application/json", task).await;
    assert_eq!(status, 200, "{all}");
    let n_all = all["failover"].as_array().unwrap().len();
    assert!(n_all > 30, "{n_all}");
    let (_, some) = s.post("/optimize?max_failover=25", "application/json", task).await;
    assert_eq!(some["failover"].as_array().unwrap().len(), 25);
    assert_eq!(short["chosen"], all["chosen"]);
    assert_eq!(short["failover"].as_array().unwrap()[..], all["failover"].as_array().unwrap()[..10]);
    s.stop().await;
}

#[tokio::test]
async fn optimize_json_task_dag_and_fleet() {
    let s = server().await;
    let (status, body) = s
        .post("/optimize", "application/json", r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "task");
    assert_eq!(body["chosen"]["instance_type"], "a2-highgpu-8g");
    assert_eq!(body["chosen"]["cloud"], "gcp");
    assert!(body["failover"].as_array().unwrap().len() >= 3);

    // Plan options as query parameters.
    let (status, body) = s
        .post("/optimize?blocked=gcp&hours=10", "application/json", r#"{"kind": "task", "resources": {"accelerators": {"A100": 8}}}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chosen"]["cloud"], "aws");
    assert!((body["total_cost"].as_f64().unwrap() - 327.7).abs() < 1e-6, "{body}");

    let dag = r#"{"kind": "dag", "tasks": [
        {"name": "prep", "task": {"resources": {"cpus": "4+"}}, "output_gb": 50},
        {"name": "train", "task": {"resources": {"accelerators": "A100:1"}}}
      ], "edges": [{"from": "prep", "to": "train"}]}"#;
    let (status, body) = s.post("/optimize", "application/json", dag).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "dag");

    let fleet = r#"{"kind": "fleet", "target": {"accelerators": 16}, "accelerators": ["A100"]}"#;
    let (status, body) = s.post("/optimize", "application/json", fleet).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "fleet");
    s.stop().await;
}

#[tokio::test]
async fn optimize_accepts_skypilot_task_yaml() {
    let s = server().await;
    // SkyPilot's Llama-2 chatbot example, shape unchanged.
    let yaml = r#"
resources:
  accelerators: V100:1
  disk_size: 1024

envs:
  MODEL_SIZE: 7
  HF_TOKEN: # TODO: Fill with your own huggingface token, or use --env to pass.

setup: |
  conda activate chatbot
  if [ $? -ne 0 ]; then
    conda create -n chatbot python=3.9 -y
    conda activate chatbot
  fi

run: |
  conda activate chatbot
  python -u -m fastchat.serve.controller --host 127.0.0.1
"#;
    for ct in ["application/yaml", "text/yaml", "application/x-yaml; charset=utf-8"] {
        let (status, body) = s.post("/optimize", ct, yaml).await;
        assert_eq!(status, 200, "{ct}: {body}");
        assert_eq!(body["chosen"]["instance_type"], "p3.2xlarge", "{body}");
    }
    // CPU-only: SkyPilot's default of 8 vCPUs and at least 32 GiB.
    let (status, body) = s.post("/optimize", "text/yaml", "run: echo hi\n").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chosen"]["instance_type"], "m6i.2xlarge");
    s.stop().await;
}

#[tokio::test]
async fn optimize_errors_name_fields_and_never_500() {
    let s = server().await;
    // Malformed JSON: 400 with a position.
    let (status, body) = s.post("/optimize", "application/json", "{\"kind\": \"task\",\n \"resources\": {,}}").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["line"], 2);
    assert!(body["column"].as_u64().is_some());
    // Unknown field inside the task: 422 naming its path.
    let (status, body) = s
        .post("/optimize", "application/json", r#"{"kind": "task", "resources": {"acelerators": "A100:8"}}"#)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "resources.acelerators", "{body}");
    // Ill-typed field.
    let (status, body) =
        s.post("/optimize", "application/json", r#"{"kind": "task", "num_nodes": "two"}"#).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "num_nodes", "{body}");
    // Unknown kind.
    let (status, body) = s.post("/optimize", "application/json", r#"{"kind": "galaxy"}"#).await;
    assert_eq!(status, 422, "{body}");
    // YAML with an unknown field: 422 naming the field and line.
    let (status, body) = s.post("/optimize", "text/yaml", "resources:\n  acelerators: A100:8\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["field"].as_str().unwrap().contains("acelerators"), "{body}");
    assert_eq!(body["line"], 2, "{body}");
    // Malformed YAML: 400 with a position.
    let (status, body) = s.post("/optimize", "text/yaml", "resources:\n  accelerators: \"A100:8\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["line"].as_u64().is_some(), "{body}");
    // Semantically invalid: a bad accelerator count.
    let (status, body) = s
        .post("/optimize", "application/json", r#"{"kind": "task", "resources": {"accelerators": "A100:-1"}}"#)
        .await;
    assert!(status == 422 || status == 400, "{status} {body}");
    assert!(body["field"].as_str().is_some_and(|f| f.contains("accelerators")), "{body}");
    // Infeasible: 422 with the explanation and the nearest offers.
    let (status, body) = s
        .post("/optimize", "application/json", r#"{"kind": "task", "resources": {"accelerators": "A100:16"}}"#)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["kind"], "infeasible");
    assert!(!body["detail"]["nearest"].as_array().unwrap().is_empty(), "{body}");
    // Bad plan options.
    let (status, body) = s.post("/optimize?hours=-1", "application/json", r#"{"kind": "task"}"#).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "hours");
    let (status, body) = s.post("/optimize?minimize=speed", "application/json", r#"{"kind": "task"}"#).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "minimize");
    // expected-cost: the objective's figure on the chosen placement; a negative overhead is 422.
    let a100 = r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#;
    let (status, body) = s.post("/optimize?minimize=expected-cost&restart_overhead=0.5", "application/json", a100).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["minimize"], "expected-cost", "{body}");
    assert!(body["chosen"]["expected_cost"].as_f64().is_some(), "{body}");
    let (status, body) = s.post("/optimize?minimize=expected-cost&restart_overhead=-1", "application/json", a100).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "restart_overhead_hours", "{body}");
    let (status, body) = s.post("/optimize?fast=1", "application/json", r#"{"kind": "task"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "fast");
    // Empty body, wrong media type, invalid UTF-8.
    let (status, body) = s.post("/optimize", "application/json", "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "body");
    let (status, body) = s.post("/optimize", "text/plain", "resources: {}").await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["field"], "content-type");
    let (status, body) = s.post("/optimize", "text/yaml", vec![0xffu8, 0xfe, 0x00]).await;
    assert_eq!(status, 400, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413() {
    let s = server().await;
    let big = format!(r#"{{"kind": "task", "name": "{}"}}"#, "x".repeat(1024 * 1024 + 10));
    // With Content-Length (rejected before reading).
    let (status, body) = s.post("/optimize", "application/json", big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["field"], "body");
    assert_eq!(body["kind"], "too_large");
    // Streamed without Content-Length (rejected while reading).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util_stream(chunks);
    let (status, body) = s.post("/optimize", "application/json", reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["field"], "body");
    s.stop().await;
}

fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(chunks.into_iter())
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let s = server().await;
    let (status, body) = s.get_json("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["kind"], "not_found");
    let (status, body) = s.get_json("/optimize").await;
    assert_eq!(status, 405);
    assert_eq!(body["kind"], "method_not_allowed");
    assert!(body["error"].as_str().unwrap().contains("GET is not allowed on /optimize"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn extra_routers_are_mounted_and_the_timeout_answers_json() {
    let extra = axum::Router::new()
        .route("/agent/ping", get(|| async { "pong" }))
        .route(
            "/agent/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let config = ServerConfig { request_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let s = TestServer::start(AppBuilder::new(CatalogData::from_offers(catalog_a())).config(config).merge(extra)).await;
    let text = s.client.get(s.url("/agent/ping")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "pong");
    let started = std::time::Instant::now();
    let (status, body) = s.get_json("/agent/slow").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(4));
    // The extra routes are counted like the built-in ones.
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"route="/agent/slow",status="503""#), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_show_the_catalog() {
    let s = server().await;
    for _ in 0..3 {
        s.get_json("/catalog/gpus").await;
    }
    s.get_json("/catalog/offers?count=x").await;
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(text.contains(r#"skycat_http_requests_total{method="GET",route="/catalog/gpus",status="200"} 3"#), "{text}");
    assert!(text.contains(r#"skycat_http_requests_total{method="GET",route="/catalog/offers",status="400"} 1"#), "{text}");
    assert!(text.contains(r#"skycat_http_request_duration_seconds_count{method="GET",route="/catalog/gpus"} 3"#), "{text}");
    assert!(text.contains(r#"skycat_catalog_rows{cloud="gcp"} 3"#), "{text}");
    assert!(text.contains(r#"skycat_catalog_age_seconds{cloud="aws"}"#), "{text}");
    assert!(text.contains(r#"skycat_catalog_refreshes_total{result="error"} 0"#), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_route_and_the_optimizer_types() {
    let s = server().await;
    let (status, doc) = s.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/optimize", "/catalog/gpus", "/catalog/offers", "/catalog/status", "/healthz", "/metrics", "/openapi.json"] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["OptimizeRequest", "OptimizeResponse", "TaskSpec", "ErrorBody", "OffersResponse", "StatusResponse"] {
        assert!(schemas.get(name).is_some(), "missing schema {name}");
    }
    let params: Vec<&str> = doc["paths"]["/catalog/offers"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["accelerator", "count", "cloud", "region", "zone", "spot", "min_vcpus", "min_memory", "limit"] {
        assert!(params.contains(&p), "missing parameter {p}");
    }
    s.stop().await;
}
