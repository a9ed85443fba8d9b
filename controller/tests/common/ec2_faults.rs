//! A fault-injecting HTTP proxy for EC2's Query API, on a loopback port, in front of moto's
//! server: every request is forwarded unchanged (method, path and query, headers with
//! `Authorization`, body) and every answer comes back unchanged (status, headers, body), except
//! the `RunInstances` calls a test told it to fail: those get EC2's real error XML with the real
//! HTTP status, so that aws-sdk-ec2 parses them into a service error with that code (and retries
//! what the SDK retries: the 5xx `InsufficientInstanceCapacity`, throttling).
//!
//! ```ignore
//! let proxy = Ec2FaultProxy::start(&moto.url).await;
//! std::env::set_var("AWS_ENDPOINT_URL_EC2", &proxy.url);
//! proxy.fail_zone("us-east-1a", "InsufficientInstanceCapacity");
//! proxy.fail_region("us-east-2", "VcpuLimitExceeded");
//! ```
//!
//! What it reads of a request: `Action`, `InstanceType`, `Placement.AvailabilityZone`,
//! `InstanceMarketOptions.MarketType`, `MaxCount` from the form body (or the query string),
//! and the region from the SigV4 credential scope of the `Authorization` header
//! (`Credential=AKID/20260101/us-east-2/ec2/aws4_request`). It dials only its upstream.
//!
//! One header may be added on the way up: reqwest puts `accept: */*` on a request that has no
//! `Accept` (the SDK sends none); moto does not look at it.
#![allow(dead_code)] // each suite uses a subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;

#[allow(unused_imports)] // the proxy's own tests start moto through this module
pub use super::moto::{start_moto, Moto};

/// The market of a RunInstances (`InstanceMarketOptions.MarketType`; on demand when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Market {
    OnDemand,
    Spot,
    /// Another `MarketType` (`capacity-block`).
    Other(String),
}

/// One RunInstances the proxy saw (each SDK retry is one more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRun {
    /// The region of the SigV4 credential scope.
    pub region: Option<String>,
    /// `Placement.AvailabilityZone`.
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub market: Market,
    /// `MaxCount`.
    pub count: Option<u32>,
    /// The error code the proxy answered with; `None`: forwarded to the upstream.
    pub injected: Option<String>,
    /// The HTTP status the client got (the injected one, or the upstream's; 502 when the
    /// upstream could not be reached).
    pub status: u16,
}

/// A fault: RunInstances calls matching every `Some` field get `code`. When several faults match,
/// the most specific one (most `Some` fields) wins, then the one added last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub market: Option<Market>,
    /// EC2's error code: `InsufficientInstanceCapacity`, `VcpuLimitExceeded`,
    /// `InstanceLimitExceeded`, `Unsupported`, `RequestLimitExceeded`, … (see [`error_status`]).
    pub code: String,
    /// How many matching calls fail; `None`: all of them until cleared.
    pub times: Option<u32>,
}

impl Fault {
    fn matches(&self, run: &SeenRun) -> bool {
        let eq = |want: &Option<String>, got: &Option<String>| want.as_ref().is_none_or(|w| got.as_ref() == Some(w));
        eq(&self.region, &run.region)
            && eq(&self.zone, &run.zone)
            && eq(&self.instance_type, &run.instance_type)
            && self.market.as_ref().is_none_or(|m| *m == run.market)
    }

    fn specificity(&self) -> usize {
        [self.region.is_some(), self.zone.is_some(), self.instance_type.is_some(), self.market.is_some()]
            .iter()
            .filter(|b| **b)
            .count()
    }
}

#[derive(Default)]
struct Shared {
    faults: Vec<Fault>,
    runs: Vec<SeenRun>,
    /// (region, Action) of every request, in order.
    actions: Vec<(Option<String>, String)>,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    shared: Mutex<Shared>,
}

impl Proxy {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The proxy; stopped when dropped.
pub struct Ec2FaultProxy {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_EC2`.
    pub url: String,
    proxy: Arc<Proxy>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Ec2FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (moto's `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Ec2FaultProxy {
        let client = reqwest::Client::builder()
            .no_proxy() // never through an HTTP(S)_PROXY of the environment: upstream is loopback
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        let proxy =
            Arc::new(Proxy { upstream: upstream.trim_end_matches('/').to_string(), client, shared: Mutex::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(proxy.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ec2FaultProxy { url: format!("http://{addr}"), proxy, _stop: stop }
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.proxy.lock().faults.push(fault);
    }

    /// RunInstances with `Placement.AvailabilityZone == zone` answer `code`.
    pub fn fail_zone(&self, zone: &str, code: &str) {
        self.inject(Fault { zone: Some(zone.to_string()), code: code.to_string(), ..Fault::default() });
    }

    /// Every RunInstances signed for `region` answers `code`.
    pub fn fail_region(&self, region: &str, code: &str) {
        self.inject(Fault { region: Some(region.to_string()), code: code.to_string(), ..Fault::default() });
    }

    /// Removes the faults that name `zone`.
    pub fn heal_zone(&self, zone: &str) {
        self.proxy.lock().faults.retain(|f| f.zone.as_deref() != Some(zone));
    }

    /// Removes the faults that name `region` (and no zone).
    pub fn heal_region(&self, region: &str) {
        self.proxy.lock().faults.retain(|f| f.zone.is_some() || f.region.as_deref() != Some(region));
    }

    /// Removes every fault (what was seen stays).
    pub fn clear(&self) {
        self.proxy.lock().faults.clear();
    }

    /// Every RunInstances so far, in order.
    pub fn run_instances_seen(&self) -> Vec<SeenRun> {
        self.proxy.lock().runs.clone()
    }

    /// The `Action` of every request so far, in order.
    pub fn actions_seen(&self) -> Vec<String> {
        self.proxy.lock().actions.iter().map(|(_, a)| a.clone()).collect()
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for h in HOP_BY_HOP {
        out.remove(*h);
    }
    out
}

async fn handle(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("ec2 fault proxy: reading the request body: {e}")),
    };
    let region = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(sigv4_region);
    let mut params: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    params.extend(form_urlencoded::parse(&body).into_owned());
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = param("Action").unwrap_or_default();
    proxy.lock().actions.push((region.clone(), action.clone()));

    if action != "RunInstances" {
        return forward(&proxy, parts, body).await.0;
    }
    let mut run = SeenRun {
        region,
        zone: param("Placement.AvailabilityZone"),
        instance_type: param("InstanceType"),
        market: match param("InstanceMarketOptions.MarketType").as_deref() {
            None | Some("") => Market::OnDemand,
            Some("spot") => Market::Spot,
            Some(other) => Market::Other(other.to_string()),
        },
        count: param("MaxCount").and_then(|c| c.parse().ok()),
        injected: None,
        status: 0,
    };
    let fault = {
        let mut shared = proxy.lock();
        let best = shared
            .faults
            .iter()
            .enumerate()
            .filter(|(_, f)| f.matches(&run))
            .max_by_key(|(i, f)| (f.specificity(), *i))
            .map(|(i, _)| i);
        best.map(|i| {
            let f = shared.faults[i].clone();
            if let Some(n) = shared.faults[i].times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    shared.faults.remove(i);
                }
            }
            let failed_zones: Vec<String> = shared
                .faults
                .iter()
                .filter(|g| g.code == f.code)
                .filter_map(|g| g.zone.clone())
                .chain(std::iter::once(f.zone.clone().unwrap_or_default()))
                .collect();
            (f.code, failed_zones)
        })
    };
    let response = match fault {
        Some((code, failed_zones)) => {
            let (status, message) = error_status_message(&code, &run, &failed_zones);
            run.injected = Some(code.clone());
            run.status = status.as_u16();
            error_response(status, &code, &message)
        }
        None => {
            let (resp, status) = forward(&proxy, parts, body).await;
            run.status = status;
            resp
        }
    };
    proxy.lock().runs.push(run);
    response
}

/// Sends the request on to the upstream unchanged and returns its answer unchanged.
async fn forward(proxy: &Proxy, parts: axum::http::request::Parts, body: Bytes) -> (Response, u16) {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path}", proxy.upstream);
    let sent = proxy.client.request(parts.method, &url).headers(end_to_end(&parts.headers)).body(body).send().await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return (plain(StatusCode::BAD_GATEWAY, format!("ec2 fault proxy: {url}: {e}")), 502),
    };
    let status = upstream.status();
    let headers = end_to_end(upstream.headers());
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return (plain(StatusCode::BAD_GATEWAY, format!("ec2 fault proxy: reading {url}: {e}")), 502),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    (resp, status.as_u16())
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp
}

/// The region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-2/ec2/aws4_request, SignedHeaders=…`.
pub fn sigv4_region(authorization: &str) -> Option<String> {
    let cred = authorization.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next()?;
    let scope: Vec<&str> = cred.split('/').collect();
    // AKID / date / region / service / aws4_request
    (scope.len() >= 5).then(|| scope[scope.len() - 3].to_string()).filter(|r| !r.is_empty())
}

/// The HTTP status EC2 answers `code` with: 500 for the capacity and internal server errors, 503
/// for throttling and unavailability, 400 for the client errors.
pub fn error_status(code: &str) -> StatusCode {
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientAddressCapacity"
        | "InsufficientCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
        "RequestLimitExceeded" | "Unavailable" | "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// EC2's status and message for `code` on `run`, in the shapes EC2 writes them.
fn error_status_message(code: &str, run: &SeenRun, failed_zones: &[String]) -> (StatusCode, String) {
    let itype = run.instance_type.as_deref().unwrap_or("the requested instance type");
    // The other zones of the region (EC2 names those it has capacity in; here: a, b, c less the
    // zones failed with this code).
    let others = || {
        let base = run
            .zone
            .as_deref()
            .map(|z| z.trim_end_matches(|c: char| c.is_ascii_lowercase()).to_string())
            .or_else(|| run.region.clone())
            .unwrap_or_default();
        let zones: Vec<String> =
            ["a", "b", "c"].iter().map(|l| format!("{base}{l}")).filter(|z| !failed_zones.contains(z)).collect();
        zones.join(", ")
    };
    let message = match code {
        "InsufficientInstanceCapacity" if run.market == Market::Spot => {
            "There is no Spot capacity available that matches your request.".to_string()
        }
        "InsufficientInstanceCapacity" => match &run.zone {
            Some(zone) => format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({zone}). \
                 Our system will be working on provisioning additional capacity. You can currently get {itype} capacity \
                 by not specifying an Availability Zone in your request or choosing {}.",
                others()
            ),
            None => format!(
                "We currently do not have sufficient {itype} capacity in the Region you requested. \
                 Our system will be working on provisioning additional capacity."
            ),
        },
        "VcpuLimitExceeded" => "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the \
             instance bucket that the specified instance type belongs to. Please visit \
             http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
            .to_string(),
        "InstanceLimitExceeded" => format!(
            "You have requested more instances ({}) than your current instance limit of 0 allows for the specified \
             instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to \
             this limit.",
            run.count.unwrap_or(1)
        ),
        "MaxSpotInstanceCountExceeded" => "Max spot instance count exceeded".to_string(),
        "Unsupported" => match &run.zone {
            Some(zone) => format!(
                "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({zone}). \
                 Please retry your request by not specifying an Availability Zone or choosing {}.",
                others()
            ),
            None => "The requested configuration is currently not supported. Please check the documentation for \
                     supported configurations."
                .to_string(),
        },
        "RequestLimitExceeded" => "Request limit exceeded.".to_string(),
        "InsufficientHostCapacity" => "Insufficient capacity.".to_string(),
        "InternalError" => "An internal error has occurred.".to_string(),
        "Unavailable" => "The server is overloaded and can't handle the request.".to_string(),
        other => format!("{other} (injected by the test's EC2 fault proxy)"),
    };
    (error_status(code), message)
}

/// EC2's error document:
/// `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors><RequestID>…</RequestID></Response>`.
pub fn error_xml(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    )
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let id = request_id();
    let mut resp = Response::new(Body::from(error_xml(code, message, &id)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml;charset=UTF-8"));
    h.insert(header::SERVER, HeaderValue::from_static("AmazonEC2"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(HeaderName::from_static("x-amzn-requestid"), v);
    }
    resp
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A version-4-shaped UUID, unique in the process (EC2's request ids are UUIDs).
fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    fn mix(mut z: u64) -> u64 {
        // splitmix64
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let a = mix(t ^ u64::from(std::process::id()).rotate_left(40) ^ n.rotate_left(20));
    let b = mix(a ^ n);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
