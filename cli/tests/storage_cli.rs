//! `skycat storage ls|delete` through the real binary, over a storage object made in moto's S3
//! (loopback) the way `skycat launch` makes one (`mounts::storage::ensure`).

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use skycat_controller::home::Home;
use skycat_controller::mounts::storage::{ensure, Placement};
use skycat_controller::mounts::{StorageObject, StoreKind};
use skycat_controller::store::Store;
use skycat_testkit::moto::start_moto;
use skycat_testkit::storage::http;

const BIN: &str = env!("CARGO_BIN_EXE_skycat");

fn skycat(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SKYCAT_HOME", home)
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skycat")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_delete_a_made_bucket() {
    const SECRET: &str = "storage-cli-secret-93ac1";
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f.txt"), b"x").unwrap();
    std::fs::write(src.join("g.txt"), b"yy").unwrap();

    // Empty at first.
    let out = skycat(&home, &["storage", "ls"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), "No existing storage.");

    {
        let h = Home::at(&home);
        h.ensure().unwrap();
        let db = Store::open(&h.state_db()).await.unwrap();
        let obj = StorageObject { name: "cli-made".into(), store: Some(StoreKind::S3), sources: vec![src.clone()], persistent: true };
        let env: BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_ENDPOINT_URL", moto.url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let url = ensure(&db, &h, &obj, &Placement { cluster: "c1", cloud: "aws", region: Some("us-west-2") }, &env).await.unwrap();
        assert_eq!(url, "s3://cli-made");
    }
    let (_, body) = http(&moto.url, "GET", "/cli-made?location", &[], b"");
    assert!(body.contains("us-west-2"), "made in the cluster's region: {body}");
    // The credentials are sealed in the state DB, not in clear.
    let db_bytes = std::fs::read(home.join("state.db")).unwrap();
    assert!(!db_bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));

    let out = skycat(&home, &["storage", "ls"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let line = stdout.lines().find(|l| l.contains("cli-made")).unwrap_or_else(|| panic!("{stdout}"));
    for want in ["s3", "s3://cli-made", "c1", "yes", "READY"] {
        assert!(line.contains(want), "{want} in {line}");
    }
    let out = skycat(&home, &["storage", "ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["region"], "us-west-2");

    // Refusals: no terminal and no --yes; an unknown name (nothing deleted by either).
    let out = skycat(&home, &["storage", "delete", "cli-made"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("--yes") && stderr.lines().count() == 1, "{stderr}");
    let out = skycat(&home, &["storage", "delete", "cli-made", "nope-bucket", "--yes"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("storage nope-bucket: no such storage object"), "{stderr}");
    let (status, _) = http(&moto.url, "HEAD", "/cli-made", &[], b"");
    assert_eq!(status, 200);

    // Deleted with the sealed credentials (this environment has none).
    let out = skycat(&home, &["storage", "delete", "cli-made", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "Deleted storage cli-made (2 object(s)).");
    let (status, _) = http(&moto.url, "HEAD", "/cli-made", &[], b"");
    assert_eq!(status, 404);
    assert_eq!(text(&skycat(&home, &["storage", "ls"])).0.trim(), "No existing storage.");
}
