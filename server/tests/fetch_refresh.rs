//! The production refresh path: the real fetchers against a loopback replay of Lambda's
//! instance-types API publish into a temporary SKYCAT_HOME, the server reloads it and swaps;
//! when the provider fails, the catalog in service stays and the error shows in the status.

#![cfg(feature = "fetch")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use common::TestServer;
use skycat_catalog::SkycatHome;
use skycat_fetchers::{FetchOptions, RetryPolicy};
use skycat_server::{load_catalog, AppBuilder, FetchRefresh, RefreshAction};

const INSTANCE_TYPES: &str = include_str!("../../fetchers/tests/fixtures/lambda/instance-types.json");

/// A replay of `GET /api/v1/instance-types`; answers 500 while `failing` is set.
async fn lambda_replay(failing: Arc<AtomicBool>) -> String {
    let app = axum::Router::new().route(
        "/api/v1/instance-types",
        get(move || {
            let failing = failing.clone();
            async move {
                if failing.load(Ordering::SeqCst) {
                    (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], "replayed outage".to_owned())
                } else {
                    (StatusCode::OK, [("content-type", "application/json")], INSTANCE_TYPES.to_owned())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_fetchers_refresh_the_served_catalog_and_failures_keep_it() {
    let failing = Arc::new(AtomicBool::new(false));
    let endpoint = lambda_replay(failing.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());

    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["lambda".into()];
    opts.env_overrides.insert("SKYCAT_LAMBDA_ENDPOINT".into(), endpoint);
    opts.env_overrides.insert("SKYCAT_LAMBDA_API_KEY".into(), "replay-key".into());
    opts.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    let action: Arc<dyn RefreshAction> = Arc::new(FetchRefresh::new(opts));

    // Start from what the empty home holds: the shipped default catalog.
    let initial = load_catalog(&home).unwrap();
    let initial_rows = initial.offers.len();
    let s = TestServer::start(AppBuilder::new(initial).refresh_action(action)).await;
    let (_, status) = s.get_json("/catalog/status").await;
    let lambda = status["clouds"].as_array().unwrap().iter().find(|c| c["cloud"] == "lambda").cloned();
    if let Some(l) = &lambda {
        assert_eq!(l["origin"], "embedded", "{status}");
    }

    let outcome = s.refresher.as_ref().unwrap().refresh_now().await;
    assert!(outcome.ok, "{outcome:?}");
    let (_, status) = s.get_json("/catalog/status").await;
    assert_eq!(status["catalog_version"], 2);
    let lambda = status["clouds"].as_array().unwrap().iter().find(|c| c["cloud"] == "lambda").unwrap().clone();
    assert_eq!(lambda["origin"], "user", "{status}");
    assert!(lambda["path"].as_str().unwrap().ends_with("lambda.parquet"));
    assert!(!lambda["source"].as_str().unwrap().is_empty(), "{lambda}");
    assert!(lambda["age_seconds"].as_i64().unwrap() < 600, "{lambda}");
    assert_eq!(lambda["stale"], false);
    let (_, offers) = s.get_json("/catalog/offers?cloud=lambda&limit=1000").await;
    assert!(offers["matched"].as_u64().unwrap() > 0);
    assert!(offers["offers"].as_array().unwrap().iter().any(|o| o["instance_type"] == "gpu_1x_a10"), "{offers}");
    let served_rows = status["rows"].as_u64().unwrap();
    let _ = initial_rows;

    // The provider goes down: the refresh fails, the catalog in service stays.
    failing.store(true, Ordering::SeqCst);
    let outcome = s.refresher.as_ref().unwrap().refresh_now().await;
    assert!(!outcome.ok, "{outcome:?}");
    let (_, status) = s.get_json("/catalog/status").await;
    assert_eq!(status["catalog_version"], 2);
    assert_eq!(status["rows"].as_u64().unwrap(), served_rows);
    let err = status["last_refresh"]["error"].as_str().unwrap();
    assert!(err.contains("lambda"), "{err}");
    let (code, _) = s.get_json("/catalog/offers?cloud=lambda").await;
    assert_eq!(code, 200);
    s.stop().await;
}
