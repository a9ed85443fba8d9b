//! The cron refresh of replicas sharing a PostgreSQL state database (testkit::postgres, the real
//! advisory-lock lease) and a catalog store in moto's S3 server (testkit::moto), assembled as
//! `skycat serve` assembles them (`skycat_server::prepare`), with the real fetchers against a
//! loopback replay of Lambda's instance-types API:
//! - on a tick only the leader fetches (one provider request per tick, whatever the number of
//!   replicas) and publishes; a follower's tick fetches nothing and leaves its catalog alone;
//! - the follower gets each version from its store poller and never steps back to an older one;
//! - after the leader resigns, the new leader fetches and publishes the next version, and the old
//!   one, now a follower, fetches nothing;
//! - a leader that stops leading while its fetch is in flight publishes nothing.

#![cfg(feature = "fetch")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use skycat_catalog::SkycatHome;
use skycat_controller::leader::{Leadership, LeaseOptions};
use skycat_fetchers::{FetchOptions, RetryPolicy};
use skycat_objects::catalog_store::CatalogStore;
use skycat_objects::{buckets, Env, Source};
use skycat_server::catalog_store::PollOutcome;
use skycat_server::replica::{Replica, ReplicaStatus};
use skycat_server::{CatalogStoreOptions, Prepared, RefreshMode, ServeOptions, ServerConfig};
use skycat_testkit::moto::start_moto;
use skycat_testkit::postgres::Postgres;

const INSTANCE_TYPES: &str = include_str!("../../fetchers/tests/fixtures/lambda/instance-types.json");
// The lease's beat is a fifth of this, and a leader whose check takes longer than a beat steps
// down: 1.5 s (a 300 ms beat) made the leader step down mid-fetch under CI's load (a clean-clone
// run, 2026-12-03). This test is about who fetches, not about takeover time (leader_lease.rs).
const TAKEOVER: Duration = Duration::from_secs(5);

/// A replay of `GET /api/v1/instance-types` that counts the requests it gets and holds its
/// answers while `hold` is set.
async fn lambda_replay(requests: Arc<AtomicUsize>, hold: Arc<AtomicBool>) -> String {
    let app = axum::Router::new().route(
        "/api/v1/instance-types",
        get(move || {
            let (requests, hold) = (requests.clone(), hold.clone());
            async move {
                requests.fetch_add(1, Ordering::SeqCst);
                while hold.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (StatusCode::OK, [("content-type", "application/json")], INSTANCE_TYPES.to_owned())
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

/// The replica's view of the real lease, as `skycat serve` gives it to the server.
struct Lease(Leadership);

impl ReplicaStatus for Lease {
    fn role(&self) -> &'static str {
        self.0.role()
    }
    fn database_reachable(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async { true })
    }
    fn render_metrics(&self) -> String {
        self.0.render_metrics()
    }
}

fn store_env(endpoint: &str) -> Env {
    Env::from_pairs(&[
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ])
}

const STORE_URL: &str = "s3://replica-refresh/catalogs";

/// One replica: its own `$SKYCAT_HOME`, a fetch refresh of Lambda (the replay), the store.
async fn replica(home: &std::path::Path, lease: Leadership, lambda: &str, store_endpoint: &str) -> Prepared {
    let home = SkycatHome::new(home);
    let mut fetch = FetchOptions::new(home.clone());
    fetch.clouds = vec!["lambda".into()];
    fetch.env_overrides.insert("SKYCAT_LAMBDA_ENDPOINT".into(), lambda.to_owned());
    fetch.env_overrides.insert("SKYCAT_LAMBDA_API_KEY".into(), "replay-key".into());
    fetch.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        home,
        // Never due during the test: the ticks are driven by hand.
        refresh: Some("0 0 0 1 1 * 2099".into()),
        refresh_mode: RefreshMode::Fetch(fetch),
        config: ServerConfig { replica: Some(Replica(Arc::new(Lease(lease)))), ..ServerConfig::default() },
        streaming: Vec::new(),
        tls: None,
        catalog_store: Some(CatalogStoreOptions { url: STORE_URL.into(), poll_interval: Duration::from_secs(3600), keep: 5 }),
    };
    let store = CatalogStore::open(STORE_URL, &store_env(store_endpoint)).await.unwrap();
    skycat_server::prepare(&opts, axum::Router::new(), Some(store)).await.unwrap()
}

async fn one_leader(leases: &[Leadership]) -> usize {
    let deadline = Instant::now() + TAKEOVER * 4;
    loop {
        let leaders: Vec<usize> = (0..leases.len()).filter(|&i| leases[i].is_leader()).collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn serving_version(r: &Prepared) -> Option<u64> {
    r.app.state.catalog_store_health().and_then(|h| h.serving.map(|v| v.version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_fetches_and_publishes_and_followers_follow_the_store() {
    let pg = Postgres::start();
    let db = pg.create_database("replica_refresh");
    let moto = start_moto();
    buckets::create(&Source::parse("s3://replica-refresh").unwrap(), &store_env(&moto.url), None).await.unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(AtomicBool::new(false));
    let lambda = lambda_replay(requests.clone(), hold.clone()).await;

    let leases: Vec<Leadership> = (0..2).map(|_| Leadership::compete(&db, LeaseOptions { takeover: TAKEOVER }).unwrap()).collect();
    let leader = one_leader(&leases).await;
    let follower = 1 - leader;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = Vec::new();
    for i in 0..2 {
        let r = replica(dirs[i].path(), leases[i].clone(), &lambda, &moto.url).await;
        assert_eq!(r.first_poll, Some(PollOutcome::Empty), "nothing published yet");
        replicas.push(r);
    }
    let refresher = |i: usize| replicas[i].app.refresher.clone().expect("a refresh action");

    // A tick on every replica (the follower's first): one fetch, one version.
    let before = replicas[follower].app.state.snapshot().version;
    let f = refresher(follower).refresh_now().await;
    assert!(f.ok && f.deferred.is_some(), "the follower deferred: {f:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 0, "the follower fetched nothing");
    assert_eq!(replicas[follower].app.state.snapshot().version, before, "and swapped nothing");
    assert!(replicas[follower].app.state.last_refresh().is_none(), "a deferred tick is not a refresh");
    let l = refresher(leader).refresh_now().await;
    assert!(l.ok && l.deferred.is_none(), "the leader refreshed: {l:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one provider fetch for the tick");
    assert_eq!(serving_version(&replicas[leader]), Some(1), "the leader published version 1 and serves it");

    // The follower's poller swaps the published version in.
    let polled = replicas[follower].store.as_ref().unwrap().poll_once().await;
    assert!(matches!(polled, PollOutcome::Swapped { version: 1, .. }), "{polled:?}");
    let lambda_rows = |r: &Prepared| r.app.state.snapshot().offers().iter().filter(|o| &*o.cloud == "lambda").count();
    assert!(lambda_rows(&replicas[follower]) > 0);
    assert_eq!(lambda_rows(&replicas[follower]), lambda_rows(&replicas[leader]));

    // The next tick: the leader publishes version 2, the follower polls it, and the follower's own
    // tick keeps version 2 in service (a reload or a fetch of its own would replace it).
    assert!(refresher(leader).refresh_now().await.ok);
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    let polled = replicas[follower].store.as_ref().unwrap().poll_once().await;
    assert!(matches!(polled, PollOutcome::Swapped { version: 2, .. }), "{polled:?}");
    let served = replicas[follower].app.state.snapshot().version;
    let f = refresher(follower).refresh_now().await;
    assert!(f.deferred.is_some(), "{f:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 2, "the follower fetched nothing");
    assert_eq!(replicas[follower].app.state.snapshot().version, served, "the follower's catalog stayed");
    assert_eq!(serving_version(&replicas[follower]), Some(2));

    // The leader resigns: the follower leads, fetches and publishes version 3; the old leader's
    // tick now fetches nothing and its poller moves it forward to version 3.
    leases[leader].resign();
    assert_eq!(one_leader(&leases).await, follower);
    let l = refresher(follower).refresh_now().await;
    assert!(l.ok && l.deferred.is_none(), "{l:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert_eq!(serving_version(&replicas[follower]), Some(3));
    let old = refresher(leader).refresh_now().await;
    assert!(old.deferred.is_some(), "the old leader follows: {old:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    let polled = replicas[leader].store.as_ref().unwrap().poll_once().await;
    assert!(matches!(polled, PollOutcome::Swapped { version: 3, .. }), "{polled:?}");

    // The leader stops leading while its fetch is in flight: it publishes nothing and swaps
    // nothing in (the next leader publishes).
    hold.store(true, Ordering::SeqCst);
    let served = replicas[follower].app.state.snapshot().version;
    let r = refresher(follower);
    let tick = tokio::spawn(async move { r.refresh_now().await });
    while requests.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leases[follower].resign();
    hold.store(false, Ordering::SeqCst);
    let out = tick.await.unwrap();
    assert!(!out.ok && out.error.as_deref().unwrap_or("").contains("stopped leading"), "{out:?}");
    assert_eq!(replicas[follower].app.state.snapshot().version, served);
    assert_eq!(replicas[leader].store.as_ref().unwrap().poll_once().await, PollOutcome::Unchanged, "no version 4");
}
