//! Test harness: the real `skycat-agent` binary in a temp state dir, and a tiny std::net HTTP
//! server on 127.0.0.1 (heartbeat receiver, instance metadata).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_skycat-agent");

pub struct Agent {
    pub dir: tempfile::TempDir,
}

impl Agent {
    pub fn new(config: Value) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        Agent { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn cmd(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(BIN);
        c.arg("--state-dir").arg(self.path()).args(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }
    /// Runs a command with --json and parses stdout; panics with stderr on failure.
    pub fn json(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.cmd(&a, stdin);
        assert!(
            out.status.success(),
            "skycat-agent {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.agent_log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bad JSON from {args:?}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
    pub fn start(&self) -> u32 {
        let v = self.json(&["daemon", "--detach"], None);
        v["pid"].as_u64().unwrap() as u32
    }
    pub fn submit(&self, job: Value) -> u64 {
        self.json(&["submit"], Some(&job.to_string()))["job_id"]
            .as_u64()
            .unwrap()
    }
    pub fn status(&self) -> Value {
        self.json(&["status"], None)
    }
    pub fn job(&self, id: u64) -> Value {
        let st = self.status();
        st["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap()
    }
    pub fn wait_job(&self, id: u64, secs: u64) -> Value {
        self.json(
            &["wait", &id.to_string(), "--timeout", &secs.to_string()],
            None,
        )
    }
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path().join("agent.log")).unwrap_or_default()
    }
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.path().join("agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
    /// All files under the state dir except `secrets/` and `config.json` (which hold secrets by
    /// design, mode 0600).
    pub fn public_files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    if path.file_name().unwrap() != "secrets" {
                        walk(&path, out);
                    }
                } else if path.file_name().unwrap() != "config.json" {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Kill whatever jobs are still running, then the daemon.
        let out = self.cmd(&["--json", "status"], None);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            for j in v["jobs"].as_array().cloned().unwrap_or_default() {
                if let Some(pid) = j["pid"].as_u64() {
                    unsafe_kill(-(pid as i32), 9);
                }
            }
        }
        let _ = self.cmd(&["stop"], None);
        if let Some(pid) = self.daemon_pid() {
            unsafe_kill(pid as i32, 9);
        }
    }
}

pub fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | None
        ),
        Err(_) => false,
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> (u16, String) + Send + Sync>;

/// A one-thread HTTP/1.1 server on 127.0.0.1 that records requests.
pub struct Server {
    pub port: u16,
    pub reqs: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(port: u16, handler: Handler) -> Server {
        Self::start_recording(port, handler, Arc::new(Mutex::new(Vec::new())))
    }
    pub fn start_recording(port: u16, handler: Handler, reqs: Arc<Mutex<Vec<Req>>>) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, reqs2) = (stop.clone(), reqs.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if let Some(req) = serve(s, &handler) {
                            reqs2.lock().unwrap().push(req);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            reqs,
            stop,
            thread: Some(thread),
        }
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
    /// Closes the listening socket (connections are refused afterwards).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut s: TcpStream, handler: &Handler) -> Option<Req> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = read_request(&mut s)?;
    let (status, text) = handler(&req);
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = s.write_all(resp.as_bytes());
    Some(req)
}

/// A heartbeat receiver that checks the bearer token (401 otherwise) and records heartbeats.
pub fn heartbeat_server(port: u16, token: &'static str, reqs: Arc<Mutex<Vec<Req>>>) -> Server {
    Server::start_recording(
        port,
        Arc::new(move |r: &Req| {
            if r.method != "POST" || r.path != "/v1/agents/heartbeat" {
                return (404, "{}".into());
            }
            if r.header("authorization") != Some(&format!("Bearer {token}")) {
                return (401, r#"{"error":"bad token"}"#.into());
            }
            (200, "{}".into())
        }),
        reqs,
    )
}

/// Heartbeats accepted (2xx) so far, parsed, in arrival order.
pub fn heartbeats(reqs: &Arc<Mutex<Vec<Req>>>, token: &str) -> Vec<skycat_protocol::Heartbeat> {
    reqs.lock()
        .unwrap()
        .iter()
        .filter(|r| r.header("authorization") == Some(&format!("Bearer {token}")))
        .map(|r| serde_json::from_slice(&r.body).expect("heartbeat body is a protocol::Heartbeat"))
        .collect()
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) from `s`; None when it breaks off.
pub fn read_request<S: Read>(s: &mut S) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let req = Req {
        method,
        path,
        headers,
        body,
    };
    Some(req)
}
