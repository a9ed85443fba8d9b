//! A real server on 127.0.0.1:0 and a small catalog for the HTTP tests.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use skycat_catalog::Offer;
use skycat_server::{App, AppBuilder, AppState, Refresher};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    pub refresher: Option<Arc<Refresher>>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(builder: AppBuilder) -> TestServer {
        let app: App = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = app.state.clone();
        let refresher = app.refresher.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            state,
            refresher,
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        let body = resp.json::<serde_json::Value>().await.expect("JSON body");
        (status, body)
    }

    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
    }
}

pub fn offer(
    cloud: &str,
    instance_type: &str,
    region: &str,
    zone: Option<&str>,
    acc: Option<(&str, f64)>,
    vcpus: f64,
    memory: f64,
    price: Option<f64>,
    spot: Option<f64>,
) -> Offer {
    Offer {
        cloud: cloud.into(),
        instance_type: instance_type.into(),
        region: region.into(),
        zone: zone.map(str::to_owned).map(Into::into),
        accelerator_name: acc.map(|a| a.0.to_owned()).map(Into::into),
        accelerator_count: acc.map_or(0.0, |a| a.1),
        accelerator_memory_gib: acc.map(|a| if a.0 == "A100" { 40.0 } else { 16.0 }),
        accelerator_vendor: acc.map(|_| "nvidia".to_owned()).map(Into::into),
        vcpus: Some(vcpus),
        memory_gib: Some(memory),
        arch: Some("x86_64".into()),
        price,
        spot_price: spot,
        fetched_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("date"),
        source: format!("test://{cloud}").into(),
        price_breakdown: None,
        spot_interruption: None,
        hyperv_generations: None,
    }
}

/// Catalog A: two clouds, A100 and V100 and CPU instances. Cheapest A100:8 on demand is
/// gcp a2-highgpu-8g at 29.39.
pub fn catalog_a() -> Vec<Offer> {
    vec![
        offer("aws", "p4d.24xlarge", "us-east-1", None, Some(("A100", 8.0)), 96.0, 1152.0, Some(32.77), Some(12.0)),
        offer("aws", "p4d.24xlarge", "us-west-2", None, Some(("A100", 8.0)), 96.0, 1152.0, Some(32.77), Some(11.5)),
        offer("aws", "p3.2xlarge", "us-east-1", None, Some(("V100", 1.0)), 8.0, 61.0, Some(3.06), Some(0.92)),
        offer("aws", "m6i.2xlarge", "us-east-1", None, None, 8.0, 32.0, Some(0.384), Some(0.15)),
        offer("aws", "m6i.xlarge", "us-east-1", None, None, 4.0, 16.0, Some(0.192), None),
        offer("gcp", "a2-highgpu-8g", "us-central1", Some("us-central1-a"), Some(("A100", 8.0)), 96.0, 680.0, Some(29.39), Some(8.8)),
        offer("gcp", "a2-highgpu-1g", "us-central1", Some("us-central1-a"), Some(("A100", 1.0)), 12.0, 85.0, Some(3.67), Some(1.1)),
        offer("gcp", "n2-standard-8", "us-central1", Some("us-central1-b"), None, 8.0, 32.0, Some(0.389), Some(0.09)),
    ]
}

/// Catalog B: the same shapes with different prices (aws becomes the cheapest A100:8), plus a
/// third cloud. Each catalog's answers tell which one served a request.
pub fn catalog_b() -> Vec<Offer> {
    let mut v = catalog_a();
    for o in &mut v {
        if &*o.cloud == "aws" && &*o.instance_type == "p4d.24xlarge" {
            o.price = Some(21.5);
        }
    }
    v.push(offer("lambda", "gpu_1x_a100", "us-east-1", None, Some(("A100", 1.0)), 30.0, 200.0, Some(1.29), None));
    v
}
