//! A small replay server for provider tests: serves fixtures by method + path (+ query), with
//! scripted failures. Include it from a test file with `mod support;`.
//!
//! ```ignore
//! let srv = support::ReplayServer::builder()
//!     .route("GET", "/api/v1/items", vec![Reply::status(503), Reply::json(r#"{"a":1}"#)])
//!     .route("GET", "/api/v1/items?page=2", vec![Reply::too_many(1), Reply::json("…")])
//!     .start().await;
//! let base = srv.base();          // "http://127.0.0.1:PORT"
//! assert_eq!(srv.hits("GET", "/api/v1/items"), 2);
//! ```
//!
//! Matching: a route registered with a query matches a request whose decoded query pairs are
//! the same multiset (order and percent-encoding don't matter); a route registered without a
//! query matches that path with any query, when no query route matched. Unknown routes get 404.
//! Each route holds a script of replies: each request takes the next one, and the last one
//! repeats forever. In bodies, `{{BASE}}` is replaced by the server's base URL, so absolute
//! paging links can point back at the server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (and stream nothing meanwhile).
    pub delay: Duration,
    /// Send the headers and the first half of the body, then stall for `delay` per 64 KiB
    /// chunk: a slow download (used to kill a fetch mid-transfer).
    pub trickle: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
            trickle: None,
        }
    }
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Reply::new(200, "application/json", body)
    }
    pub fn text(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply::new(200, content_type, body)
    }
    /// An error status with a short text body.
    pub fn status(status: u16) -> Self {
        Reply::new(status, "text/plain", format!("scripted {status}"))
    }
    /// 429 with `Retry-After: <secs>`.
    pub fn too_many(retry_after_secs: u64) -> Self {
        Reply::status(429).header("Retry-After", &retry_after_secs.to_string())
    }
    /// 200 with a body that is not valid for its content type.
    pub fn malformed(content_type: &str) -> Self {
        Reply::new(200, content_type, "{\"truncated\": [1, 2,")
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn trickled(mut self, per_chunk: Duration) -> Self {
        self.trickle = Some(per_chunk);
        self
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

struct Route {
    method: String,
    path: String,
    query: Option<Vec<(String, String)>>,
    script: Vec<Reply>,
    served: usize,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    log: Vec<Recorded>,
    base: String,
}

pub struct Builder {
    routes: Vec<Route>,
}

fn split(path_and_query: &str) -> (String, Option<Vec<(String, String)>>) {
    match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(decode_query(q))),
        None => (path_and_query.to_string(), None),
    }
}

fn decode_query(q: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    v.sort();
    v
}

impl Builder {
    /// Register a route; `path_and_query` like `/x/y` or `/x/y?a=1&b=2`.
    pub fn route(mut self, method: &str, path_and_query: &str, script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a route needs at least one reply");
        let (path, query) = split(path_and_query);
        self.routes.push(Route { method: method.to_ascii_uppercase(), path, query, script, served: 0 });
        self
    }
    pub fn get(self, path_and_query: &str, reply: Reply) -> Self {
        self.route("GET", path_and_query, vec![reply])
    }
    pub fn post(self, path_and_query: &str, reply: Reply) -> Self {
        self.route("POST", path_and_query, vec![reply])
    }

    pub async fn start(self) -> ReplayServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State { routes: self.routes, log: Vec::new(), base: base.clone() }));
        let st = state.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { handle(st, method, uri, headers, body).await }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        ReplayServer { addr, base, state, shutdown: Some(tx), task: Some(task) }
    }
}

async fn handle(st: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(|s| s.to_string());
    let reply = {
        let mut s = st.lock().unwrap();
        s.log.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
        });
        let decoded = query.as_deref().map(decode_query).unwrap_or_default();
        let m = method.to_string();
        let idx = s
            .routes
            .iter()
            .position(|r| r.method == m && r.path == path && r.query.as_ref() == Some(&decoded))
            .or_else(|| s.routes.iter().position(|r| r.method == m && r.path == path && r.query.is_none()));
        let base = s.base.clone();
        idx.map(|i| {
            let r = &mut s.routes[i];
            let reply = r.script[r.served.min(r.script.len() - 1)].clone();
            r.served += 1;
            (reply, base)
        })
    };
    let Some((reply, base)) = reply else {
        return (StatusCode::NOT_FOUND, format!("no replay route for {method} {uri}")).into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let body = substitute(&reply.body, &base);
    let mut hm = HeaderMap::new();
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            hm.append(k, v);
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply.trickle {
        None => (status, hm, body).into_response(),
        Some(per_chunk) => {
            let chunks: Vec<Vec<u8>> = body.chunks(64 * 1024).map(|c| c.to_vec()).collect();
            let stream = futures::stream::iter(chunks.into_iter().enumerate()).then(move |(i, c)| async move {
                if i > 0 {
                    tokio::time::sleep(per_chunk).await;
                }
                Ok::<_, std::io::Error>(Bytes::from(c))
            });
            (status, hm, axum::body::Body::from_stream(stream)).into_response()
        }
    }
}

use futures::StreamExt as _;

fn substitute(body: &[u8], base: &str) -> Vec<u8> {
    const PAT: &[u8] = b"{{BASE}}";
    if !body.windows(PAT.len()).any(|w| w == PAT) {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(PAT) {
            out.extend_from_slice(base.as_bytes());
            i += PAT.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

pub struct ReplayServer {
    pub addr: SocketAddr,
    base: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReplayServer {
    pub fn builder() -> Builder {
        Builder { routes: Vec::new() }
    }
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }
    /// `base` + `path` (path starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }
    /// Requests received for `method` + `path` (any query).
    pub fn hits(&self, method: &str, path: &str) -> usize {
        let m = method.to_ascii_uppercase();
        self.state.lock().unwrap().log.iter().filter(|r| r.method == m && r.path == path).count()
    }
    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
