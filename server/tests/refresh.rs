//! Catalog refresh: atomic swaps under concurrent load with zero failed requests; a failed
//! refresh keeps the last good catalog and shows its error; the cron schedule drives refreshes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{catalog_a, catalog_b, TestServer};
use skycat_server::refresh::{parse_schedule, RefreshError};
use skycat_server::{AppBuilder, CatalogData, RefreshAction};

/// A refresh that alternates between catalog B and catalog A, deterministically.
fn alternating() -> Arc<dyn RefreshAction> {
    let n = Arc::new(AtomicUsize::new(0));
    Arc::new(move || {
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            let offers = if i % 2 == 0 { catalog_b() } else { catalog_a() };
            Ok::<_, RefreshError>(CatalogData::from_offers(offers))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_concurrent_load_fail_no_request() {
    let s = TestServer::start(
        AppBuilder::new(CatalogData::from_offers(catalog_a())).refresh_action(alternating()),
    )
    .await;
    let refresher = s.refresher.clone().expect("refresher");
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 500;
    const SWAPS: u64 = 20;

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let client = s.client.clone();
        let base = s.base.clone();
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut seen_prices = std::collections::BTreeSet::new();
            for i in 0..REQUESTS {
                // Mix the routes: optimize (JSON and YAML) and catalog reads.
                let result = match (c + i) % 3 {
                    0 => client
                        .post(format!("{base}/optimize"))
                        .header("content-type", "application/json")
                        .body(r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#)
                        .send()
                        .await,
                    1 => client
                        .post(format!("{base}/optimize"))
                        .header("content-type", "text/yaml")
                        .body("resources:\n  accelerators: A100:8\n")
                        .send()
                        .await,
                    _ => client.get(format!("{base}/catalog/offers?accelerator=A100&count=8&limit=1")).send().await,
                };
                match result {
                    Ok(resp) if resp.status().is_success() => {
                        let body: serde_json::Value = match resp.json().await {
                            Ok(b) => b,
                            Err(e) => {
                                failures.push(format!("body: {e}"));
                                continue;
                            }
                        };
                        let price = if body["kind"] == "task" {
                            body["chosen"]["hourly_price"].as_f64()
                        } else {
                            body["offers"][0]["price"].as_f64()
                        };
                        match price {
                            Some(p) => {
                                seen_prices.insert((p * 100.0).round() as i64);
                            }
                            None => failures.push(format!("no price in {body}")),
                        }
                    }
                    Ok(resp) => failures.push(format!("status {}", resp.status())),
                    Err(e) => failures.push(format!("transport: {e}")),
                }
            }
            (failures, seen_prices)
        }));
    }
    // 20 swaps while the clients run.
    let swapper = tokio::spawn(async move {
        for _ in 0..SWAPS {
            let outcome = refresher.refresh_now().await;
            assert!(outcome.ok, "{outcome:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut all_prices = std::collections::BTreeSet::new();
    for c in clients {
        let (failures, prices) = c.await.expect("client task");
        assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
        all_prices.extend(prices);
    }
    swapper.await.expect("swapper");
    // Every answer came from catalog A (gcp at 29.39) or catalog B (aws at 21.50), never a mix.
    assert!(all_prices.iter().all(|p| *p == 2939 || *p == 2150), "{all_prices:?}");
    let (_, status) = s.get_json("/catalog/status").await;
    assert_eq!(status["catalog_version"], 1 + SWAPS);
    assert_eq!(status["last_refresh"]["ok"], true);
    let (_, health) = s.get_json("/healthz").await;
    assert_eq!(health["catalog_version"], 1 + SWAPS);
    s.stop().await;
}

#[tokio::test]
async fn a_swap_changes_answers_and_status() {
    let s = TestServer::start(
        AppBuilder::new(CatalogData::from_offers(catalog_a())).refresh_action(alternating()),
    )
    .await;
    let task = r#"{"kind": "task", "resources": {"accelerators": "A100:8"}}"#;
    let (_, before) = s.post("/optimize", "application/json", task).await;
    assert_eq!(before["chosen"]["cloud"], "gcp");
    // The same request again is answered from the answer cache, with the same answer.
    assert_eq!(s.state.answers.len(), 1);
    let (_, again) = s.post("/optimize", "application/json", task).await;
    assert_eq!(again, before);
    assert_eq!(s.state.answers.len(), 1);
    let outcome = s.refresher.as_ref().unwrap().refresh_now().await;
    assert!(outcome.ok);
    assert_eq!(outcome.rows, Some(9));
    // A new catalog: the remembered answer is not served.
    let (_, after) = s.post("/optimize", "application/json", task).await;
    assert_eq!(after["chosen"]["cloud"], "aws");
    assert_eq!(s.state.answers.len(), 1);
    let (_, status) = s.get_json("/catalog/status").await;
    assert_eq!(status["catalog_version"], 2);
    assert_eq!(status["rows"], 9);
    assert_eq!(status["clouds"].as_array().unwrap().len(), 3);
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skycat_catalog_refreshes_total{result="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"skycat_catalog_rows{cloud="lambda"} 1"#), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_and_reports_the_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let failing: Arc<dyn RefreshAction> = Arc::new(move || {
        let i = c.fetch_add(1, Ordering::SeqCst);
        async move {
            match i {
                0 => Err::<CatalogData, RefreshError>("aws: GET https://pricing.us-east-1.amazonaws.com: 503 Service Unavailable".into()),
                1 => Ok(CatalogData::default()),
                _ => panic!("provider code panicked"),
            }
        }
    });
    let s = TestServer::start(AppBuilder::new(CatalogData::from_offers(catalog_a())).refresh_action(failing)).await;
    let r = s.refresher.clone().unwrap();

    let outcome = r.refresh_now().await;
    assert!(!outcome.ok);
    let (status, body) = s.get_json("/catalog/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["catalog_version"], 1);
    assert_eq!(body["rows"], 8);
    assert_eq!(body["last_refresh"]["ok"], false);
    assert!(body["last_refresh"]["error"].as_str().unwrap().contains("503 Service Unavailable"), "{body}");
    let (status, offers) = s.get_json("/catalog/offers?accelerator=A100").await;
    assert_eq!(status, 200);
    assert_eq!(offers["matched"], 4);

    // An empty result is refused too.
    let outcome = r.refresh_now().await;
    assert!(!outcome.ok);
    assert!(outcome.error.as_deref().unwrap().contains("empty"), "{outcome:?}");
    // And a panicking refresh is a failed refresh, not a dead server.
    let outcome = r.refresh_now().await;
    assert!(!outcome.ok);
    let (status, body) = s.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["catalog_version"], 1);

    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skycat_catalog_refreshes_total{result="error"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"skycat_catalog_refreshes_total{result="ok"} 0"#), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn the_cron_schedule_drives_refreshes() {
    // Every second.
    let schedule = parse_schedule("* * * * * *").unwrap();
    let s = TestServer::start(
        AppBuilder::new(CatalogData::from_offers(catalog_a())).refresh_action(alternating()).schedule(schedule),
    )
    .await;
    let (_, status) = s.get_json("/catalog/status").await;
    assert_eq!(status["refresh_schedule"], "* * * * * *");
    assert!(status["next_refresh"].is_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = s.get_json("/catalog/status").await;
        if status["catalog_version"].as_u64().unwrap() >= 3 {
            assert_eq!(status["last_refresh"]["ok"], true);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled refresh happened: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
