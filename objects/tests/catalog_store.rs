//! The catalog store's publish protocol against moto's S3 server (scripts/ci-setup-moto.sh),
//! which enforces conditional puts as S3 does: `If-None-Match: *` on an existing key and a stale
//! `If-Match` both answer 412, `If-None-Match` on a GET of an unchanged object answers 304.

use std::time::Duration;

use object_store::ObjectStoreExt;
use skycat_objects::buckets;
use skycat_objects::catalog_store::{CatalogStore, CatalogStoreError, ManifestRead, PublishOptions, MANIFEST};
use skycat_objects::{Env, Source};
use skycat_testkit::moto::{start_moto, Moto};

fn env(moto: &Moto) -> Env {
    Env::from_pairs(&[
        ("AWS_ENDPOINT_URL", &moto.url),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ])
}

async fn store(moto: &Moto, bucket: &str) -> CatalogStore {
    let env = env(moto);
    let src = Source::parse(&format!("s3://{bucket}")).unwrap();
    buckets::create(&src, &env, None).await.unwrap();
    CatalogStore::open(&format!("s3://{bucket}/team/catalogs"), &env).await.unwrap()
}

/// A catalog's files, with `tag` in every file so that versions differ.
fn files(tag: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("aws.parquet".into(), format!("aws rows {tag}").into_bytes()),
        ("aws.idx".into(), format!("aws index {tag}").into_bytes()),
        ("gcp.parquet".into(), format!("gcp rows {tag}").into_bytes()),
        ("manifest.json".into(), format!("{{\"tag\": \"{tag}\"}}").into_bytes()),
    ]
}

fn opts(retries: u32) -> PublishOptions {
    PublishOptions { retries, ..Default::default() }
}

async fn current(store: &CatalogStore) -> (skycat_objects::catalog_store::StoreManifest, String) {
    match store.read_manifest(None).await.unwrap() {
        ManifestRead::Current { manifest, etag } => (manifest, etag),
        other => panic!("expected a manifest, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_poll_with_etags() {
    let moto = start_moto();
    let store = store(&moto, "catalog-poll").await;
    assert!(matches!(store.read_manifest(None).await.unwrap(), ManifestRead::Missing));

    let p1 = store.publish(files("one"), &opts(0)).await.unwrap();
    assert_eq!(p1.manifest.version, 1);
    let (m1, etag1) = current(&store).await;
    assert_eq!((m1.clone(), etag1.clone()), (p1.manifest.clone(), p1.etag.clone()));
    // Unchanged: a conditional GET answered 304, no body.
    assert!(matches!(store.read_manifest(Some(&etag1)).await.unwrap(), ManifestRead::Unchanged));
    let mut got = store.download(&m1).await.unwrap();
    got.sort();
    let mut want = files("one");
    want.sort();
    assert_eq!(got, want);

    let p2 = store.publish(files("two"), &opts(0)).await.unwrap();
    assert_eq!(p2.manifest.version, 2);
    assert_ne!(p2.manifest.id, m1.id, "new content, new immutable folder");
    match store.read_manifest(Some(&etag1)).await.unwrap() {
        ManifestRead::Current { manifest, .. } => assert_eq!(manifest.version, 2),
        other => panic!("{other:?}"),
    }
    // Version 1's files are still there for readers in flight.
    assert_eq!(store.download(&m1).await.unwrap().len(), 4);
    assert_eq!(p2.manifest.history.iter().map(|h| h.version).collect::<Vec<_>>(), [2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_one_swap_wins_per_version() {
    let moto = start_moto();
    let a = store(&moto, "catalog-race").await;
    // A second client, as on another host.
    let b = CatalogStore::open("s3://catalog-race/team/catalogs", &env(&moto)).await.unwrap();
    a.publish(files("base"), &opts(0)).await.unwrap();

    // Both read the same base, then both swap: the store accepts exactly one.
    let base = current(&a).await;
    let (pa, pb) = tokio::join!(a.upload_version(files("from-a")), b.upload_version(files("from-b")));
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    let o = opts(0);
    let (ra, rb) = tokio::join!(a.install(&pa, Some(&base), &o), b.install(&pb, Some(&base), &o));
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (ra, rb) => panic!("exactly one swap must win: {ra:?} / {rb:?}"),
    };
    assert_eq!(winner.manifest.version, 2);
    let msg = loser.to_string();
    assert!(matches!(loser, CatalogStoreError::Conflict { base: 1, .. }), "{msg}");
    assert!(msg.contains("now version 2") && msg.contains("run it again") && !msg.contains('\n'), "{msg}");
    // The store serves the winner whole.
    let (m, _) = current(&a).await;
    assert_eq!(m, winner.manifest);
    let tag = if m.id == pa.id { "from-a" } else { "from-b" };
    let mut got = a.download(&m).await.unwrap();
    got.sort();
    let mut want = files(tag);
    want.sort();
    assert_eq!(got, want);

    // The first publish on an empty prefix races too (If-None-Match: *).
    let fresh = CatalogStore::open("s3://catalog-race/other", &env(&moto)).await.unwrap();
    let (ra, rb) = tokio::join!(fresh.install(&pa, None, &o), fresh.install(&pb, None, &o));
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} / {rb:?}");

    // Publishers that retry on the new base: six at once all land, on distinct versions, and
    // every version names its own files only.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { s.publish(files(&format!("r{i}")), &opts(20)).await }));
    }
    let mut versions = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let p = t.await.unwrap().unwrap();
        conflicts += p.conflicts;
        versions.push(p.manifest.version);
    }
    versions.sort();
    assert_eq!(versions, (3..=8).collect::<Vec<_>>());
    let (m, _) = current(&a).await;
    assert_eq!(m.version, 8);
    let got = a.download(&m).await.unwrap();
    let tags: std::collections::BTreeSet<String> =
        got.iter().map(|(_, b)| String::from_utf8_lossy(b).rsplit(' ').next().unwrap().trim_matches(['"', '}']).to_string()).collect();
    assert_eq!(tags.len(), 1, "one version's files only: {tags:?}");
    eprintln!("six retrying publishers: {conflicts} lost swaps retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_and_missing_files_are_errors() {
    let moto = start_moto();
    let store = store(&moto, "catalog-bad").await;
    let p = store.publish(files("one"), &opts(0)).await.unwrap();
    let raw = store.object_store().clone();

    // A file the manifest names, deleted: an error naming its key.
    let gone = object_store::path::Path::from(store.key_of(&format!("versions/{}/gcp.parquet", p.manifest.id)));
    raw.delete(&gone).await.unwrap();
    let e = store.download(&p.manifest).await.unwrap_err().to_string();
    assert!(e.contains("gcp.parquet") && e.contains("missing"), "{e}");
    // Rewritten with other bytes: the checksum catches it.
    raw.put(&gone, b"tampered".to_vec().into()).await.unwrap();
    let e = store.download(&p.manifest).await.unwrap_err().to_string();
    assert!(e.contains("gcp.parquet") && e.contains("SHA-256"), "{e}");

    // A malformed manifest.
    let manifest = object_store::path::Path::from(store.key_of(MANIFEST));
    raw.put(&manifest, b"{\"format\": 1, \"version\": ".to_vec().into()).await.unwrap();
    let e = store.read_manifest(None).await.unwrap_err().to_string();
    assert!(e.contains("malformed manifest") && e.contains("current.json"), "{e}");
    // Publishing over it is refused too: a publisher never guesses a version.
    assert!(store.publish(files("two"), &opts(0)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_listed_versions() {
    let moto = start_moto();
    let store = store(&moto, "catalog-prune").await;
    let keep2 = PublishOptions { keep: 2, prune_grace: Duration::ZERO, ..Default::default() };
    let mut last = None;
    for i in 0..4 {
        last = Some(store.publish(files(&format!("v{i}")), &keep2).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.pruned, 1, "each publish prunes the one version that fell off the list");
    let listing = store
        .object_store()
        .list_with_delimiter(Some(&object_store::path::Path::from(store.key_of("versions"))))
        .await
        .unwrap();
    let mut ids: Vec<String> = listing.common_prefixes.iter().map(|p| p.filename().unwrap().to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = last.manifest.history.iter().map(|h| h.id.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
    // A long grace period spares even unlisted folders (a concurrent upload may be one).
    let keep1 = PublishOptions { keep: 1, ..Default::default() };
    let p = store.publish(files("v9"), &keep1).await.unwrap();
    assert_eq!(p.pruned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_one_line_error() {
    let env = Env::from_pairs(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let store = CatalogStore::open("s3://nowhere/p", &env).await.unwrap();
    let e = store.read_manifest(None).await.unwrap_err();
    assert!(matches!(e, CatalogStoreError::Unreachable { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("s3://nowhere/p/current.json") && !msg.contains('\n'), "{msg}");
    let e = CatalogStore::open("s3://UPPER/p", &env).await.err().unwrap().to_string();
    assert!(e.contains("--catalog-store"), "{e}");
}
