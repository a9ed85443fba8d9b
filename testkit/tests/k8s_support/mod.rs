//! Support for the Kubernetes emulator's tests: a raw HTTPS client (HTTP/1.1 by hand over
//! tokio-rustls, trusting only the emulator's CA), watch streams, WebSocket exec sessions
//! (tokio-tungstenite), and network-namespace test hosts from scripts/testhosts.sh.
#![allow(dead_code)] // each test uses a subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use skycat_testkit::k8s::{sandboxes_from_testhosts, KubeEmulator, Sandbox};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const TOKEN: &str = "k8s-emulator-test-token";
/// Third octet base of the test hosts' networks (10.231.<NET+i>.0/30): scripts/testhosts.sh
/// allows NET+i ≤ 254 and the other suites use 100–200 and 220–255.
pub const NET: u32 = 210;

/// Waits are bounded so a broken emulator fails the test instead of hanging it; nothing asserts
/// how fast anything is.
pub const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Client {
    addr: String,
    token: String,
    connector: tokio_rustls::TlsConnector,
}

pub struct Reply {
    /// From sending the request to reading the status line (the server's part, mostly).
    pub first_byte: Duration,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn read_head(reader: &mut BufReader<TlsStream<TcpStream>>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
}

/// One chunk of a chunked body; None at the last chunk.
async fn read_chunk(reader: &mut BufReader<TlsStream<TcpStream>>) -> Option<Vec<u8>> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line).await.ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
    let mut data = vec![0u8; size + 2];
    reader.read_exact(&mut data).await.ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

impl Client {
    pub fn new(emulator: &KubeEmulator, token: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        let ca = emulator.ca_pem();
        let der = pem_to_der(&ca);
        roots.add(rustls::pki_types::CertificateDer::from(der)).expect("CA certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            addr: emulator.server().trim_start_matches("https://").to_string(),
            token: token.to_string(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(&self.addr).await.expect("connect to the emulator");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        self.connector.connect(name, tcp).await.expect("TLS handshake with the emulator's CA")
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>, accept: &str) -> BufReader<TlsStream<TcpStream>> {
        let mut tls = self.connect().await;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: {accept}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        tls.write_all(head.as_bytes()).await.expect("write request");
        tls.write_all(body.as_bytes()).await.expect("write body");
        BufReader::new(tls)
    }

    pub async fn request_accept(&self, method: &str, path: &str, body: Option<&Value>, accept: &str) -> Reply {
        let started = std::time::Instant::now();
        let mut reader = self.send(method, path, body, accept).await;
        let (status, headers) = read_head(&mut reader).await;
        let first_byte = started.elapsed();
        let mut body = Vec::new();
        if is_chunked(&headers) {
            while let Some(chunk) = read_chunk(&mut reader).await {
                body.extend(chunk);
            }
        } else {
            reader.read_to_end(&mut body).await.expect("read body");
        }
        Reply { first_byte, status, headers, body }
    }

    /// A request with raw body bytes (malformed on purpose).
    pub async fn request_raw(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let started = std::time::Instant::now();
        let mut tls = self.connect().await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        tls.write_all(head.as_bytes()).await.expect("write request");
        tls.write_all(body).await.expect("write body");
        let mut reader = BufReader::new(tls);
        let (status, headers) = read_head(&mut reader).await;
        let first_byte = started.elapsed();
        let mut body = Vec::new();
        reader.read_to_end(&mut body).await.expect("read body");
        Reply { first_byte, status, headers, body }
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.request_accept(method, path, body, "application/json").await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    /// A watch stream (`path` carries `watch=1`).
    pub async fn watch(&self, path: &str) -> Watch {
        let mut reader = self.send("GET", path, None, "application/json").await;
        let (status, headers) = read_head(&mut reader).await;
        assert_eq!(status, 200, "watch {path}");
        assert!(is_chunked(&headers), "a watch is a chunked stream: {headers:?}");
        Watch { reader, buffer: Vec::new() }
    }

    /// Opens a pods/exec WebSocket offering `protocols`; the chosen protocol comes back.
    pub async fn exec(&self, path_and_query: &str, protocols: &str) -> Result<(WebSocketStream<TlsStream<TcpStream>>, String), String> {
        let tls = self.connect().await;
        let mut request = format!("wss://{}{path_and_query}", self.addr).into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert("Authorization", format!("Bearer {}", self.token).parse().expect("header"));
        headers.insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
        match tokio_tungstenite::client_async(request, tls).await {
            Ok((ws, response)) => {
                let chosen = response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                Ok((ws, chosen))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
                Err(format!("{} {body}", response.status().as_u16()))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM base64")
}

pub struct Watch {
    reader: BufReader<TlsStream<TcpStream>>,
    buffer: Vec<u8>,
}

impl Watch {
    /// The next WatchEvent; panics when the stream ends or nothing comes within [`PATIENCE`].
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buffer.drain(..=end).collect();
                    return serde_json::from_slice(&line).expect("a WatchEvent per line");
                }
                let chunk = read_chunk(&mut self.reader).await.expect("watch stream ended");
                self.buffer.extend(chunk);
            }
        })
        .await
        .expect("a watch event within the patience")
    }

    /// Events until one of `event_type` for the object named `name`.
    pub async fn until(&mut self, event_type: &str, name: &str) -> Value {
        loop {
            let event = self.next().await;
            if event["type"] == event_type && event["object"]["metadata"]["name"] == name {
                return event;
            }
        }
    }
}

/// What an exec session produced.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub status: Value,
}

/// Sends `stdin` (then, in v5, closes it) and collects the channels until the server closes.
pub async fn run_exec(mut ws: WebSocketStream<TlsStream<TcpStream>>, stdin: Option<&[u8]>, close_stdin: bool) -> ExecOutput {
    if let Some(data) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(data);
        ws.send(Message::Binary(frame.into())).await.expect("send stdin");
    }
    if close_stdin {
        ws.send(Message::Binary(vec![255u8, 0].into())).await.expect("send close-stdin");
    }
    let mut out = ExecOutput::default();
    tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Binary(data) = message else {
                continue;
            };
            let text = String::from_utf8_lossy(&data[1..]).to_string();
            match data[0] {
                1 => out.stdout.push_str(&text),
                2 => out.stderr.push_str(&text),
                3 => out.status = serde_json::from_str(&text).expect("a Status on channel 3"),
                other => panic!("unexpected channel {other}"),
            }
        }
    })
    .await
    .expect("the exec session ends within the patience");
    out
}

/// Exec path for `pod` in `default` running `argv`.
pub fn exec_path(pod: &str, argv: &[&str], stdin: bool, tty: bool) -> String {
    let mut q: Vec<String> =
        argv.iter().map(|a| format!("command={}", form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>())).collect();
    q.push(format!("stdin={stdin}"));
    q.push("stdout=true".into());
    q.push(format!("stderr={}", !tty));
    q.push(format!("tty={tty}"));
    format!("/api/v1/namespaces/default/pods/{pod}/exec?{}", q.join("&"))
}

/// Polls the emulator's pod snapshot until `pred` holds for the pod.
pub async fn wait_pod(emulator: &KubeEmulator, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(pod) = emulator.pods().into_iter().find(|p| p["metadata"]["name"] == name) {
            if pred(&pod) {
                return pod;
            }
            assert!(tokio::time::Instant::now() < deadline, "pod {name} never became {what}: {pod:#}");
        } else {
            assert!(tokio::time::Instant::now() < deadline, "pod {name} never appeared");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` until it holds (bounded by [`PATIENCE`]).
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_running(emulator: &KubeEmulator, name: &str) -> Value {
    wait_pod(emulator, name, "Running", |p| p["status"]["phase"] == "Running").await
}

pub fn pod_body(name: &str, requests: &[(&str, &str)]) -> Value {
    let requests: serde_json::Map<String, Value> = requests.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "skycat-test"}},
        "spec": {"containers": [{"name": "main", "image": "ubuntu:22.04", "command": ["sleep", "infinity"],
            "resources": {"requests": requests},
            "env": [{"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, {"name": "GREETING", "value": "hello"}]}]}
    })
}

// ---- network-namespace test hosts ----

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ has a parent").to_path_buf()
}

/// Hosts 1..=n from scripts/testhosts.sh, brought down on drop; holds the cross-suite lock that
/// serializes every suite using test hosts.
pub struct TestHosts {
    dir: tempfile::TempDir,
    prefix: String,
    n: u32,
    _lock: std::fs::File,
}

impl TestHosts {
    pub fn up(n: u32) -> TestHosts {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        assert_eq!(uid.as_deref().unwrap_or("?"), "0", "exec tests need network namespaces: run as root, after scripts/ci-setup-sshd.sh");
        assert!(Path::new("/usr/sbin/sshd").exists(), "openssh-server missing: run scripts/ci-setup-sshd.sh (as root) first");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/skycat-controller-e2e.lock")
            .expect("open lock file");
        lock.lock().expect("lock");
        let prefix = format!("skycat-test-k8semu{}-{}-", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let dir = tempfile::Builder::new().prefix("skycat-k8semu").tempdir().expect("tempdir");
        let hosts = TestHosts { dir, prefix, n, _lock: lock };
        hosts.script(&["up", &n.to_string()]);
        hosts
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testhosts.sh"))
            .args(args)
            .env("SKYCAT_TESTHOSTS_DIR", self.dir.path())
            .env("SKYCAT_TESTHOSTS_PREFIX", &self.prefix)
            .env("SKYCAT_TESTHOSTS_NET", NET.to_string())
            .output()
            .expect("run scripts/testhosts.sh");
        assert!(
            out.status.success(),
            "testhosts.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn sandboxes(&self) -> Vec<Sandbox> {
        sandboxes_from_testhosts(self.dir.path(), &self.prefix, NET, self.n)
    }

    /// Names of the processes in host i's namespace.
    pub fn process_names(&self, i: u32) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "pids", &format!("{}{i}", self.prefix)]).output().expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/testhosts.sh"))
            .arg("down")
            .env("SKYCAT_TESTHOSTS_DIR", self.dir.path())
            .env("SKYCAT_TESTHOSTS_PREFIX", &self.prefix)
            .env("SKYCAT_TESTHOSTS_NET", NET.to_string())
            .output();
    }
}
