//! `skycat serve` replicas sharing a catalog store in moto's S3 server (scripts/ci-setup-moto.sh):
//! a publish picked up by polling, racing publishers, readers under load during publishes (never
//! a mix of two versions), the store going down and coming back, and bad versions that keep the
//! last good catalog. Replicas are in-process apps served on loopback ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use object_store::ObjectStoreExt;
use serde_json::Value;
use skycat_catalog::{CloudManifest, Manifest, Offer};
use skycat_objects::catalog_store::{CatalogStore, CatalogStoreError, PublishOptions};
use skycat_objects::{buckets, Env, Source};
use skycat_server::catalog_store::{PollOutcome, StoreReplica};
use skycat_server::{AppBuilder, AppState, CatalogData};
use skycat_testkit::moto::{start_moto, Moto};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

fn env(endpoint: &str) -> Env {
    Env::from_pairs(&[
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ])
}

async fn open_store(endpoint: &str, bucket: &str) -> CatalogStore {
    let env = env(endpoint);
    buckets::create(&Source::parse(&format!("s3://{bucket}")).unwrap(), &env, None).await.unwrap();
    CatalogStore::open(&format!("s3://{bucket}/catalogs"), &env).await.unwrap()
}

fn offer(cloud: &str, i: usize, tag: &str) -> Offer {
    Offer {
        accelerator_name: Some("A100".into()),
        accelerator_count: 1.0 + (i % 4) as f64,
        accelerator_memory_gib: Some(40.0),
        accelerator_vendor: Some("NVIDIA".into()),
        vcpus: Some(8.0),
        memory_gib: Some(64.0),
        arch: Some("x86_64".into()),
        price: Some(1.0 + i as f64),
        ..Offer::blank(cloud, &format!("{cloud}-gpu-{i}"), "r1", tag, Utc::now())
    }
}

/// A `$SKYCAT_HOME/catalogs` folder with aws and gcp files whose rows and manifest all carry
/// `tag` (the version marker the readers check).
fn write_catalogs(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut manifest = Manifest::default();
    for cloud in ["aws", "gcp"] {
        let rows: Vec<Offer> = (0..20).map(|i| offer(cloud, i, tag)).collect();
        let sha256 = skycat_catalog::index::publish(&dir.join(format!("{cloud}.parquet")), &rows).unwrap();
        manifest.clouds.insert(
            cloud.into(),
            CloudManifest {
                cloud: cloud.into(),
                source: tag.into(),
                as_of: tag.into(),
                fetched_at: Utc::now(),
                rows: rows.len(),
                sha256,
                regions_ok: vec!["r1".into()],
                regions_failed: Vec::new(),
                stale_regions: Vec::new(),
                notes: Vec::new(),
            },
        );
    }
    manifest.save_atomic(&dir.join("manifest.json")).unwrap();
}

struct Replica {
    _state: Arc<AppState>,
    link: Arc<StoreReplica>,
    url: String,
    _server: JoinHandle<()>,
}

/// A replica serving a small local catalog (tag `local`) until the store gives it one.
async fn replica(store: CatalogStore, scratch: &Path) -> Replica {
    let app = AppBuilder::new(CatalogData::from_offers(vec![offer("aws", 0, "local"), offer("gcp", 0, "local")])).build();
    let link = StoreReplica::new(
        store,
        app.state.clone(),
        scratch.join("cache"),
        scratch.join("config.yaml"),
        // The default grace period: a racing publisher's fresh upload is never pruned under it
        // (with no grace, the winner's prune may delete the loser's-to-be-retried files).
        PublishOptions { keep: 3, ..Default::default() },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router;
    let server = tokio::spawn(async move {
        skycat_server::axum::serve(listener, router).await.unwrap();
    });
    Replica { _state: app.state, link, url, _server: server }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

/// The version marker of a `/catalog/status` answer; panics on a mix (aws and gcp, or a
/// cloud's rows and its manifest entry, from different versions).
fn status_marker(v: &Value) -> String {
    let mut tags = BTreeSet::new();
    for c in v["clouds"].as_array().unwrap() {
        if matches!(c["cloud"].as_str(), Some("aws" | "gcp")) {
            tags.insert(c["source"].as_str().unwrap().to_string());
            if let Some(a) = c["as_of"].as_str() {
                tags.insert(a.to_string());
            }
        }
    }
    assert_eq!(tags.len(), 1, "a mix of versions in one answer: {tags:?}");
    tags.into_iter().next().unwrap()
}

/// The version marker of a `/catalog/offers?cloud=aws,gcp` answer, every row checked.
fn offers_marker(v: &Value) -> String {
    let tags: BTreeSet<&str> = v["offers"].as_array().unwrap().iter().map(|o| o["source"].as_str().unwrap()).collect();
    let clouds: BTreeSet<&str> = v["offers"].as_array().unwrap().iter().map(|o| o["cloud"].as_str().unwrap()).collect();
    assert_eq!(clouds.len(), 2, "both clouds answer");
    assert_eq!(tags.len(), 1, "a mix of versions in one answer: {tags:?}");
    tags.into_iter().next().unwrap().to_string()
}

async fn serving(r: &Replica) -> String {
    status_marker(&get_json(&reqwest::Client::new(), &format!("{}/catalog/status", r.url)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_a_second_replica_by_polling() {
    let moto = start_moto();
    let scratch = tempfile::tempdir().unwrap();
    let leader = replica(open_store(&moto.url, "store-poll").await, &scratch.path().join("a")).await;
    let follower = replica(open_store(&moto.url, "store-poll").await, &scratch.path().join("b")).await;
    let client = reqwest::Client::new();

    assert_eq!(follower.link.poll_once().await, PollOutcome::Empty);
    let h = get_json(&client, &format!("{}/healthz", follower.url)).await;
    assert_eq!(h["catalog_store"]["status"], "empty", "{h}");

    let home = scratch.path().join("home/catalogs");
    write_catalogs(&home, "v1");
    let p = leader.link.publish_dir(&home).await.unwrap();
    assert_eq!(p.manifest.version, 1);
    // The leader serves what it published (its refresh swaps it in): its poll finds nothing new.
    assert_eq!(leader.link.poll_once().await, PollOutcome::Unchanged);

    assert_eq!(serving(&follower).await, "local");
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 1, .. }));
    assert_eq!(serving(&follower).await, "v1");
    // The next poll is a 304.
    assert_eq!(follower.link.poll_once().await, PollOutcome::Unchanged);
    let h = get_json(&client, &format!("{}/healthz", follower.url)).await;
    let s = &h["catalog_store"];
    assert_eq!((s["status"].as_str(), s["serving"]["version"].as_u64(), s["versions_behind"].as_u64()), (Some("current"), Some(1), Some(0)), "{h}");
    assert_eq!(s["url"], "s3://store-poll/catalogs");

    // A second publish, seen by a background poller.
    write_catalogs(&home, "v2");
    leader.link.publish_dir(&home).await.unwrap();
    let poller = follower.link.clone().spawn_poller(Duration::from_millis(50));
    for _ in 0..200 {
        if serving(&follower).await == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    assert_eq!(serving(&follower).await, "v2");
    let metrics = client.get(format!("{}/metrics", follower.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("skycat_catalog_store_polls_total{result=\"swapped\"} 2"), "{metrics}");
    assert!(metrics.contains("skycat_catalog_store_serving_version 2"), "{metrics}");
    assert!(metrics.contains("skycat_catalog_store_lag_seconds 0"), "{metrics}");
    // Only the version in service stays in the replica's download cache.
    assert_eq!(std::fs::read_dir(scratch.path().join("b/cache")).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_never_lose_or_mix_a_catalog() {
    let moto = start_moto();
    let scratch = tempfile::tempdir().unwrap();
    let a = replica(open_store(&moto.url, "store-race").await, &scratch.path().join("a")).await;
    let b = replica(open_store(&moto.url, "store-race").await, &scratch.path().join("b")).await;
    let reader = replica(open_store(&moto.url, "store-race").await, &scratch.path().join("r")).await;
    let (home_a, home_b) = (scratch.path().join("ha"), scratch.path().join("hb"));
    write_catalogs(&home_a, "base");
    a.link.publish_dir(&home_a).await.unwrap();
    for round in 0..5 {
        write_catalogs(&home_a, &format!("a{round}"));
        write_catalogs(&home_b, &format!("b{round}"));
        let (ra, rb) = tokio::join!(a.link.publish_dir(&home_a), b.link.publish_dir(&home_b));
        let won: Vec<u64> = [&ra, &rb].iter().filter_map(|r| r.as_ref().ok().map(|p| p.manifest.version)).collect();
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert!(matches!(e, CatalogStoreError::Conflict { .. }), "a loser gets a conflict: {e}");
                assert!(e.to_string().contains("run it again"), "{e}");
            }
        }
        assert!(!won.is_empty(), "one publish wins each round");
        let distinct: BTreeSet<u64> = won.iter().copied().collect();
        assert_eq!(distinct.len(), won.len(), "one swap per version: {won:?}");
        // The reader gets the newest whole catalog: one publisher's, never a blend.
        let polled = reader.link.poll_once().await;
        assert!(matches!(polled, PollOutcome::Swapped { .. }), "{polled:?}");
        let tag = serving(&reader).await;
        assert!(tag == format!("a{round}") || tag == format!("b{round}"), "{tag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_under_load_see_one_version_per_answer() {
    let moto = start_moto();
    let scratch = tempfile::tempdir().unwrap();
    let publisher = replica(open_store(&moto.url, "store-load").await, &scratch.path().join("p")).await;
    let home = scratch.path().join("home");
    write_catalogs(&home, "v1");
    publisher.link.publish_dir(&home).await.unwrap();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let r = replica(open_store(&moto.url, "store-load").await, &scratch.path().join(format!("r{i}"))).await;
        assert!(matches!(r.link.poll_once().await, PollOutcome::Swapped { version: 1, .. }));
        replicas.push(r);
    }
    let pollers: Vec<_> = replicas.iter().map(|r| r.link.clone().spawn_poller(Duration::from_millis(20))).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let published_all = Arc::new(AtomicBool::new(false));

    // 4 clients × at least 500 requests, alternating /catalog/status and /catalog/offers, over
    // the 3 replicas; they go on until every publish has been served everywhere.
    let mut clients = JoinSet::new();
    for c in 0..4 {
        let urls = urls.clone();
        let done = published_all.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let mut seen: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            let mut n = 0usize;
            while n < 500 || !done.load(Ordering::SeqCst) {
                let r = (n + c) % urls.len();
                let tag = if n % 2 == 0 {
                    status_marker(&get_json(&http, &format!("{}/catalog/status", urls[r])).await)
                } else {
                    offers_marker(&get_json(&http, &format!("{}/catalog/offers?cloud=aws,gcp&limit=1000", urls[r])).await)
                };
                let v: u32 = tag.trim_start_matches('v').parse().unwrap();
                let history = seen.entry(r).or_default();
                // A replica never goes back to an older version.
                assert!(history.last().is_none_or(|last| *last <= v), "replica {r} went from v{:?} to v{v}", history.last());
                if history.last() != Some(&v) {
                    history.push(v);
                }
                n += 1;
            }
            (n, seen)
        });
    }
    for v in 2..=4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        write_catalogs(&home, &format!("v{v}"));
        publisher.link.publish_dir(&home).await.unwrap();
    }
    for _ in 0..600 {
        let mut all = true;
        for r in &replicas {
            all &= serving(r).await == "v4";
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    published_all.store(true, Ordering::SeqCst);
    let mut versions_seen = BTreeSet::new();
    let mut total = 0;
    while let Some(r) = clients.join_next().await {
        let (n, seen) = r.unwrap();
        total += n;
        versions_seen.extend(seen.values().flatten().copied());
    }
    for p in pollers {
        p.abort();
    }
    for r in &replicas {
        assert_eq!(serving(r).await, "v4");
    }
    assert!(total >= 2000);
    assert!(versions_seen.len() >= 2, "readers saw the swaps happen: {versions_seen:?}");
}

/// A TCP forwarder to moto that can be taken down (every connection cut, nothing listening) and
/// brought back on the same port: the store goes away and returns with its data.
struct Outage {
    port: u16,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Outage {
    async fn start(moto: &Moto) -> Outage {
        let target: SocketAddr = moto.url.trim_start_matches("http://").parse().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let mut o = Outage { port, target, task: None };
        o.up().await;
        o
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_keeps_serving_and_the_next_poll_catches_up() {
    let moto = start_moto();
    let mut outage = Outage::start(&moto).await;
    let scratch = tempfile::tempdir().unwrap();
    let publisher = replica(open_store(&moto.url, "store-down").await, &scratch.path().join("p")).await;
    let follower = replica(
        CatalogStore::open("s3://store-down/catalogs", &env(&outage.url())).await.unwrap(),
        &scratch.path().join("f"),
    )
    .await;
    let home = scratch.path().join("home");
    write_catalogs(&home, "v1");
    publisher.link.publish_dir(&home).await.unwrap();
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 1, .. }));

    outage.down().await;
    write_catalogs(&home, "v2");
    publisher.link.publish_dir(&home).await.unwrap();
    let PollOutcome::Failed(msg) = follower.link.poll_once().await else { panic!("the poll must fail") };
    assert!(msg.contains("s3://store-down/catalogs/current.json"), "{msg}");
    // Still answering from the last catalog, and saying why it may be behind.
    let client = reqwest::Client::new();
    assert_eq!(serving(&follower).await, "v1");
    let plan = client
        .post(format!("{}/optimize", follower.url))
        .json(&serde_json::json!({"kind": "task", "resources": {"accelerators": "A100:1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(plan.status(), 200);
    let plan: Value = plan.json().await.unwrap();
    assert!(plan.to_string().contains("aws-gpu-0") || plan.to_string().contains("gcp-gpu-0"), "{plan}");
    let h = get_json(&client, &format!("{}/healthz", follower.url)).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["catalog_store"]["status"], "unreachable", "{h}");
    assert_eq!(h["catalog_store"]["serving"]["version"], 1);
    assert!(h["catalog_store"]["last_error"].as_str().unwrap().contains("current.json"), "{h}");
    let metrics = client.get(format!("{}/metrics", follower.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("skycat_catalog_store_polls_total{result=\"error\"} 1"), "{metrics}");

    outage.up().await;
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 2, .. }));
    assert_eq!(serving(&follower).await, "v2");
    let h = get_json(&client, &format!("{}/healthz", follower.url)).await;
    assert_eq!((h["catalog_store"]["status"].as_str(), h["catalog_store"]["last_error"].is_null()), (Some("current"), true), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_keep_the_last_good_catalog() {
    let moto = start_moto();
    let scratch = tempfile::tempdir().unwrap();
    let store = open_store(&moto.url, "store-bad").await;
    let raw = store.object_store().clone();
    let publisher = replica(store.clone(), &scratch.path().join("p")).await;
    let follower = replica(open_store(&moto.url, "store-bad").await, &scratch.path().join("f")).await;
    let home = scratch.path().join("home");
    write_catalogs(&home, "v1");
    publisher.link.publish_dir(&home).await.unwrap();
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 1, .. }));
    let client = reqwest::Client::new();
    let expect_kept = |what: &'static str, want: &'static str| {
        let follower = &follower;
        let client = &client;
        async move {
            let PollOutcome::Failed(msg) = follower.link.poll_once().await else { panic!("{what}: the poll must fail") };
            assert!(msg.contains(want) && !msg.contains('\n'), "{what}: {msg}");
            assert_eq!(serving(follower).await, "v1", "{what}");
            let h = get_json(client, &format!("{}/healthz", follower.url)).await;
            assert_eq!(h["catalog_store"]["status"], "behind", "{what}: {h}");
            assert!(h["catalog_store"]["last_error"].as_str().unwrap().contains(want), "{what}: {h}");
        }
    };

    // A file the manifest names is missing.
    write_catalogs(&home, "v2");
    let p2 = publisher.link.publish_dir(&home).await.unwrap();
    let key = store.key_of(&format!("versions/{}/gcp.parquet", p2.manifest.id));
    let kept = raw.get(&key.as_str().into()).await.unwrap().bytes().await.unwrap();
    raw.delete(&key.as_str().into()).await.unwrap();
    expect_kept("missing file", "gcp.parquet").await;
    let h = get_json(&client, &format!("{}/healthz", follower.url)).await;
    assert_eq!(h["catalog_store"]["versions_behind"], 1, "{h}");
    // Put back: the next poll loads it (a failed version is retried, not remembered).
    raw.put(&key.as_str().into(), kept.to_vec().into()).await.unwrap();
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 2, .. }));

    // A malformed store manifest.
    let manifest_key = object_store::path::Path::from(store.key_of("current.json"));
    let good = raw.get(&manifest_key).await.unwrap().bytes().await.unwrap();
    raw.put(&manifest_key, b"{\"format\": 1, \"version\": \"nine\"}".to_vec().into()).await.unwrap();
    let PollOutcome::Failed(msg) = follower.link.poll_once().await else { panic!("malformed manifest") };
    assert!(msg.contains("malformed manifest"), "{msg}");
    assert_eq!(serving(&follower).await, "v2");
    raw.put(&manifest_key, good.to_vec().into()).await.unwrap();

    // Files intact as published but unreadable: a Parquet file that is not Parquet, then a
    // catalog manifest that is not JSON. Each is refused whole (no fallback to shipped rows for
    // that cloud, which would be a mix).
    write_catalogs(&home, "v3");
    std::fs::write(home.join("gcp.parquet"), b"not parquet").unwrap();
    std::fs::remove_file(home.join("gcp.idx")).unwrap();
    publisher.link.publish_dir(&home).await.unwrap();
    let PollOutcome::Failed(msg) = follower.link.poll_once().await else { panic!("bad parquet") };
    assert!(msg.contains("gcp.parquet"), "{msg}");
    assert_eq!(serving(&follower).await, "v2");
    write_catalogs(&home, "v4");
    std::fs::write(home.join("manifest.json"), b"{ nope").unwrap();
    publisher.link.publish_dir(&home).await.unwrap();
    let PollOutcome::Failed(msg) = follower.link.poll_once().await else { panic!("bad catalog manifest") };
    assert!(msg.contains("manifest"), "{msg}");
    assert_eq!(serving(&follower).await, "v2");
    // A good version after them is served.
    write_catalogs(&home, "v5");
    publisher.link.publish_dir(&home).await.unwrap();
    assert!(matches!(follower.link.poll_once().await, PollOutcome::Swapped { version: 5, .. }));
    assert_eq!(serving(&follower).await, "v5");
}
