//! An EMULATION of Lambda Cloud's REST API (`/api/v1`) on a loopback port, for the backend's
//! tests. It is not Lambda's code and holds no real data: wire shapes follow Lambda's published
//! OpenAPI spec (v1.5.3, v1.8.3) as recorded in testkit/emulators/lambda.md, which lists the
//! sources and what is emulated.
//!
//! * Auth: `Authorization: Bearer <key>` or HTTP Basic `<key>:`; anything else is HTTP 401 with
//!   `global/invalid-api-key`, Lambda's body.
//! * Every request body is checked against the spec's schema (unknown field, missing required
//!   field, wrong type → 400 `global/invalid-parameters`); each such refusal, and any request to
//!   a path or verb the API does not have, is kept in [`LambdaEmulator::rejections`] so a test
//!   can assert that the client never sent one.
//! * Instances: `booting` (no `ip` yet) for a few reads, then `active`; terminate makes them
//!   `terminating`, then `terminated`, then they leave the listing. Reads are HTTP `GET
//!   /instances[/{id}]`; the test's own calls ([`LambdaEmulator::instances`]) never advance them.
//! * Faults, per region: [`LambdaEmulator::fail_launches`] (insufficient capacity, quota),
//!   [`LambdaEmulator::set_capacity`] (what `regions_with_capacity_available` lists, and so what
//!   a launch accepts), [`LambdaEmulator::preempt`] (status `preempted`, spec 1.8.3).
//! * Instance IPs come from the test's network-namespace range: public `10.<pub>.<net>.<k>`,
//!   private `10.<priv>.<net>.<k>`, k = 2, 3, …; a test brings up an sshd host at each public IP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Regions of spec 1.8.3's enum, with their descriptions.
pub const REGIONS: &[(&str, &str)] = &[
    ("europe-central-1", "Germany"),
    ("asia-south-1", "India"),
    ("australia-east-1", "Australia"),
    ("me-west-1", "Israel"),
    ("asia-northeast-1", "Osaka, Japan"),
    ("asia-northeast-2", "Seoul, South Korea"),
    ("us-east-1", "Virginia, USA"),
    ("us-east-2", "Washington DC, USA"),
    ("us-east-3", "Washington DC, USA"),
    ("us-west-1", "California, USA"),
    ("us-west-2", "Arizona, USA"),
    ("us-west-3", "Utah, USA"),
    ("us-south-1", "Texas, USA"),
    ("us-south-2", "North Texas, USA"),
    ("us-south-3", "Central Texas, USA"),
    ("us-midwest-1", "Illinois, USA"),
    ("us-midwest-2", "Illinois, USA"),
];

/// (name, description, gpu_description, cents/h, vcpus, memory GiB, storage GiB, gpus).
type TypeRow = (&'static str, &'static str, &'static str, i64, u32, u32, u32, u32);

/// The instance types the emulator sells, shaped like the spec's examples.
const TYPES: &[TypeRow] = &[
    ("gpu_1x_a10", "1x A10 (24 GB PCIe)", "A10 (24 GB PCIe)", 75, 30, 200, 1400, 1),
    ("gpu_1x_a100_sxm4", "1x A100 (40 GB SXM4)", "A100 (40 GB SXM4)", 129, 30, 200, 512, 1),
    ("gpu_8x_h100_sxm5", "8x H100 (80 GB SXM5)", "H100 (80 GB SXM5)", 2392, 208, 1800, 24780, 8),
    ("gpu_1x_gh200", "1x GH200 (96 GB)", "GH200 (96 GB)", 149, 64, 432, 4096, 1),
];

/// A launch refusal injected for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchFault {
    /// 400 `instance-operations/launch/insufficient-capacity`.
    InsufficientCapacity,
    /// 400 `global/quota-exceeded`.
    QuotaExceeded,
}

#[derive(Debug, Clone)]
pub struct LambdaEmulatorConfig {
    /// The key the emulated account accepts.
    pub api_key: String,
    /// Third octet of the instance IPs (the test's NET).
    pub net: u8,
    /// Second octet of public IPs.
    pub public_octet: u8,
    /// Second octet of private IPs.
    pub private_octet: u8,
    /// HTTP reads an instance stays `booting` for.
    pub boot_reads: u32,
}

impl LambdaEmulatorConfig {
    pub fn new(api_key: &str, net: u8) -> LambdaEmulatorConfig {
        LambdaEmulatorConfig { api_key: api_key.into(), net, public_octet: 240, private_octet: 241, boot_reads: 2 }
    }
}

/// An instance as the test sees it (IPs even while booting: the host must be up by `active`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub ip: String,
    pub private_ip: String,
    pub region: String,
    pub instance_type: String,
    pub ssh_key_names: Vec<String>,
    /// Left the listing (some reads after `terminated`).
    pub delisted: bool,
}

/// One launch request the emulator answered.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSeen {
    pub region: String,
    pub instance_type: String,
    pub name: Option<String>,
    /// The instance id, or the error code.
    pub outcome: Result<String, String>,
}

#[derive(Debug, Clone)]
struct Instance {
    view: InstanceView,
    reads_left: u32,
    image: Option<Value>,
}

#[derive(Debug)]
struct State {
    cfg: LambdaEmulatorConfig,
    instances: Vec<Instance>,
    keys: Vec<(String, String, String)>,
    capacity: BTreeMap<String, BTreeSet<String>>,
    faults: BTreeMap<String, LaunchFault>,
    next_host: u32,
    next_id: u64,
    rejections: Vec<String>,
    auth_failures: u32,
    launches: Vec<LaunchSeen>,
    calls: Vec<String>,
}

/// The emulator, serving until dropped.
pub struct LambdaEmulator {
    /// `http://127.0.0.1:PORT/` — what `SKYCAT_LAMBDA_ENDPOINT` takes (`api/v1/` is below it).
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LambdaEmulator {
    /// Binds a loopback port and serves on the current tokio runtime.
    pub async fn start(cfg: LambdaEmulatorConfig) -> LambdaEmulator {
        let all: BTreeSet<String> = REGIONS.iter().map(|r| r.0.to_string()).collect();
        let capacity = TYPES.iter().map(|t| (t.0.to_string(), all.clone())).collect();
        let state = Arc::new(Mutex::new(State {
            cfg,
            instances: Vec::new(),
            keys: Vec::new(),
            capacity,
            faults: BTreeMap::new(),
            next_host: 2,
            next_id: 1,
            rejections: Vec::new(),
            auth_failures: 0,
            launches: Vec::new(),
            calls: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let st = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { handle(&st, method, uri, headers, body) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LambdaEmulator { url, state, task }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every launch in `region` fails with `fault` until [`LambdaEmulator::clear_faults`].
    pub fn fail_launches(&self, region: &str, fault: LaunchFault) {
        self.st().faults.insert(region.to_string(), fault);
    }

    pub fn clear_faults(&self) {
        self.st().faults.clear();
    }

    /// The regions with capacity for `instance_type` (listed by `GET /instance-types`; a launch
    /// elsewhere is refused with insufficient capacity).
    pub fn set_capacity(&self, instance_type: &str, regions: &[&str]) {
        self.st().capacity.insert(instance_type.to_string(), regions.iter().map(|r| r.to_string()).collect());
    }

    /// The provider takes the instance back: status `preempted`.
    pub fn preempt(&self, id: &str) -> bool {
        let mut st = self.st();
        match st.instances.iter_mut().find(|i| i.view.id == id && !i.view.delisted) {
            Some(i) => {
                i.view.status = "preempted".into();
                true
            }
            None => false,
        }
    }

    /// Every instance ever launched, in launch order.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.st().instances.iter().map(|i| i.view.clone()).collect()
    }

    /// The image object a launch sent for `id`, if any.
    pub fn image_of(&self, id: &str) -> Option<Value> {
        self.st().instances.iter().find(|i| i.view.id == id).and_then(|i| i.image.clone())
    }

    /// The public key registered under `name`.
    pub fn ssh_key(&self, name: &str) -> Option<String> {
        self.st().keys.iter().find(|k| k.1 == name).map(|k| k.2.clone())
    }

    /// Registered key names.
    pub fn ssh_key_names(&self) -> Vec<String> {
        self.st().keys.iter().map(|k| k.1.clone()).collect()
    }

    pub fn launches(&self) -> Vec<LaunchSeen> {
        self.st().launches.clone()
    }

    /// Requests refused for their shape (schema, path, verb): must stay empty for a correct client.
    pub fn rejections(&self) -> Vec<String> {
        self.st().rejections.clone()
    }

    /// Requests refused for a missing or wrong key.
    pub fn auth_failures(&self) -> u32 {
        self.st().auth_failures
    }

    /// `METHOD /path` of every request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str, suggestion: Option<&str>) -> Response {
    let mut e = json!({ "code": code, "message": message });
    if let Some(s) = suggestion {
        e["suggestion"] = json!(s);
    }
    (status, [("content-type", "application/json")], json!({ "error": e }).to_string()).into_response()
}

fn ok(data: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], json!({ "data": data }).to_string()).into_response()
}

/// 400 `global/invalid-parameters`, recorded.
fn invalid(st: &mut State, what: &str, why: String) -> Response {
    st.rejections.push(format!("{what}: {why}"));
    error(StatusCode::BAD_REQUEST, "global/invalid-parameters", &format!("Invalid request data. {why}"), None)
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, "global/object-does-not-exist", &format!("Specified {what} does not exist."), None)
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = ((c[0] as u32) << 16) | ((*c.get(1).unwrap_or(&0) as u32) << 8) | (*c.get(2).unwrap_or(&0) as u32);
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn authorized(cfg: &LambdaEmulatorConfig, headers: &HeaderMap) -> bool {
    let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return false };
    h == format!("Bearer {}", cfg.api_key) || h == format!("Basic {}", b64(format!("{}:", cfg.api_key).as_bytes()))
}

fn handle(state: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut *guard;
    let path = uri.path().to_string();
    st.calls.push(format!("{method} {path}"));
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        st.rejections.push(format!("{method} {path}: not an /api/v1 path"));
        return not_found("resource");
    };
    if !authorized(&st.cfg, &headers) {
        st.auth_failures += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            Some("Check your API key or create a new one, then try again."),
        );
    }
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    // Parses a POST body as a JSON object (content type and shape checked).
    let parse = |st: &mut State, what: &str| -> Result<Map<String, Value>, Box<Response>> {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(Box::new(invalid(st, what, format!("Content-Type must be application/json (got {ct:?})"))));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Box::new(invalid(st, what, "the body must be a JSON object".into()))),
            Err(e) => Err(Box::new(invalid(st, what, format!("the body is not JSON ({e})")))),
        }
    };
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["instance-types"]) => instance_types(st),
        (Method::POST, ["instance-operations", "launch"]) => match parse(st, "launch") {
            Ok(b) => launch(st, b),
            Err(e) => *e,
        },
        (Method::POST, ["instance-operations", op @ ("terminate" | "restart")]) => {
            let op = op.to_string();
            match parse(st, &op) {
                Ok(b) => operate(st, &op, b),
                Err(e) => *e,
            }
        }
        (Method::GET, ["instances"]) => {
            let ids: Vec<usize> = (0..st.instances.len()).filter(|k| !st.instances[*k].view.delisted).collect();
            let list: Vec<Value> = ids.into_iter().filter_map(|k| observe(st, k)).collect();
            ok(Value::Array(list))
        }
        (Method::GET, ["instances", id]) => match st.instances.iter().position(|i| i.view.id == *id && !i.view.delisted) {
            Some(k) => match observe(st, k) {
                Some(v) => ok(v),
                None => not_found("instance"),
            },
            None => not_found("instance"),
        },
        (Method::GET, ["ssh-keys"]) => {
            ok(Value::Array(st.keys.iter().map(|(id, name, pk)| json!({"id": id, "name": name, "public_key": pk})).collect()))
        }
        (Method::POST, ["ssh-keys"]) => match parse(st, "ssh-keys") {
            Ok(b) => add_key(st, b),
            Err(e) => *e,
        },
        (Method::DELETE, ["ssh-keys", id]) => {
            let before = st.keys.len();
            st.keys.retain(|k| k.0 != *id);
            if st.keys.len() == before {
                not_found("SSH key")
            } else {
                ok(json!({}))
            }
        }
        (_, ["instance-types"] | ["instance-operations", _] | ["instances"] | ["instances", _] | ["ssh-keys"] | ["ssh-keys", _]) => {
            st.rejections.push(format!("{method} {path}: method not allowed"));
            error(StatusCode::METHOD_NOT_ALLOWED, "global/invalid-parameters", "Method not allowed.", None)
        }
        _ => {
            st.rejections.push(format!("{method} {path}: no such endpoint"));
            not_found("resource")
        }
    }
}

fn region_json(name: &str) -> Value {
    let d = REGIONS.iter().find(|r| r.0 == name).map(|r| r.1).unwrap_or("");
    json!({ "name": name, "description": d })
}

fn type_json(name: &str) -> Value {
    let t = TYPES.iter().find(|t| t.0 == name).copied().unwrap_or((name, "", "", 0, 0, 0, 0, 0));
    json!({
        "name": t.0, "description": t.1, "gpu_description": t.2, "price_cents_per_hour": t.3,
        "specs": { "vcpus": t.4, "memory_gib": t.5, "storage_gib": t.6, "gpus": t.7 }
    })
}

fn instance_types(st: &State) -> Response {
    let mut data = Map::new();
    for t in TYPES {
        let regions: Vec<Value> = REGIONS
            .iter()
            .filter(|r| st.capacity.get(t.0).is_some_and(|c| c.contains(r.0)))
            .map(|r| region_json(r.0))
            .collect();
        data.insert(t.0.into(), json!({ "instance_type": type_json(t.0), "regions_with_capacity_available": regions }));
    }
    ok(Value::Object(data))
}

/// One HTTP read of instance `k`: advances its state machine, then renders it. `None` once it
/// left the listing.
fn observe(st: &mut State, k: usize) -> Option<Value> {
    let boot_reads = st.cfg.boot_reads;
    let i = &mut st.instances[k];
    match i.view.status.as_str() {
        "booting" => {
            if i.reads_left == 0 {
                i.view.status = "active".into();
            } else {
                i.reads_left -= 1;
            }
        }
        "terminating" => {
            i.view.status = "terminated".into();
            i.reads_left = boot_reads;
        }
        "terminated" => {
            if i.reads_left == 0 {
                i.view.delisted = true;
                return None;
            }
            i.reads_left -= 1;
        }
        _ => {}
    }
    Some(render(i))
}

fn render(i: &Instance) -> Value {
    let v = &i.view;
    let booting = v.status == "booting";
    let ip = if booting { Value::Null } else { json!(v.ip) };
    let private = if booting { Value::Null } else { json!(v.private_ip) };
    let active = v.status == "active";
    let not_launched = json!({"available": false, "reason_code": "vm-has-not-launched", "reason_description": "The instance has not launched yet."});
    json!({
        "id": v.id, "name": v.name, "ip": ip, "private_ip": private, "status": v.status,
        "ssh_key_names": v.ssh_key_names, "file_system_names": [],
        "region": region_json(&v.region), "instance_type": type_json(&v.instance_type),
        "hostname": ip, "jupyter_token": format!("{:032x}", 0xfeed_u128 ^ v.id.len() as u128),
        "jupyter_url": format!("https://jupyter-{}.lambdaspaces.com/", v.id),
        "is_reserved": false,
        "actions": {
            "migrate": not_launched,
            "rebuild": {"available": active}, "restart": {"available": active},
            "cold_reboot": {"available": active}, "terminate": {"available": v.status != "terminated" && v.status != "terminating"}
        },
        "tags": []
    })
}

/// Checks `body` against the launch schema (spec 1.8.3, plus 1.5.3's `quantity`).
fn check_launch(b: &Map<String, Value>) -> Result<(), String> {
    const ALLOWED: &[&str] = &[
        "region_name", "instance_type_name", "ssh_key_names", "file_system_names", "quantity", "name", "hostname", "image",
        "user_data", "tags", "firewall_rulesets", "file_system_mounts",
    ];
    if let Some(k) = b.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    for req in ["region_name", "instance_type_name", "ssh_key_names"] {
        if !b.contains_key(req) {
            return Err(format!("missing required field {req:?}"));
        }
    }
    let string = |k: &str| b.get(k).and_then(Value::as_str);
    let region = string("region_name").ok_or("region_name must be a string")?;
    if !REGIONS.iter().any(|r| r.0 == region) {
        return Err(format!("region_name {region:?} is not a region"));
    }
    string("instance_type_name").ok_or("instance_type_name must be a string")?;
    let names = b["ssh_key_names"].as_array().ok_or("ssh_key_names must be an array")?;
    if names.len() != 1 || !names[0].is_string() {
        return Err("ssh_key_names must hold exactly one name".into());
    }
    if let Some(f) = b.get("file_system_names") {
        let a = f.as_array().ok_or("file_system_names must be an array")?;
        if a.len() > 1 || a.iter().any(|x| !x.is_string()) {
            return Err("file_system_names holds at most one name".into());
        }
    }
    if let Some(q) = b.get("quantity") {
        if q.as_u64() != Some(1) {
            return Err(format!("quantity must be 1 (got {q})"));
        }
    }
    match b.get("name") {
        None | Some(Value::Null) => {}
        Some(Value::String(n)) if n.chars().count() <= 64 => {}
        Some(other) => return Err(format!("name must be a string of at most 64 characters (got {other})")),
    }
    if let Some(h) = b.get("hostname") {
        let h = h.as_str().ok_or("hostname must be a string")?;
        let ok = !h.is_empty()
            && h.len() <= 63
            && h.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !h.starts_with('-');
        if !ok {
            return Err(format!("hostname {h:?} does not match ^[a-z0-9][0-9a-z-]{{0,62}}$"));
        }
    }
    if let Some(img) = b.get("image") {
        let o = img.as_object().ok_or("image must be an object")?;
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        if !(keys == ["id"] || keys == ["family"]) || !o.values().all(Value::is_string) {
            return Err(format!("image must be {{\"id\": string}} or {{\"family\": string}} (got {img})"));
        }
    }
    if let Some(u) = b.get("user_data") {
        let u = u.as_str().ok_or("user_data must be a string")?;
        if u.len() > 1 << 20 {
            return Err("user_data exceeds 1 MB".into());
        }
    }
    let objects = |k: &str, fields: &[&str]| -> Result<(), String> {
        let Some(v) = b.get(k) else { return Ok(()) };
        let a = v.as_array().ok_or(format!("{k} must be an array"))?;
        for x in a {
            let o = x.as_object().ok_or(format!("{k} entries must be objects"))?;
            let mut ks: Vec<&str> = o.keys().map(String::as_str).collect();
            ks.sort();
            let mut want = fields.to_vec();
            want.sort();
            if ks != want || !o.values().all(Value::is_string) {
                return Err(format!("{k} entries must be {fields:?} strings (got {x})"));
            }
        }
        Ok(())
    };
    objects("tags", &["key", "value"])?;
    objects("firewall_rulesets", &["id"])?;
    objects("file_system_mounts", &["mount_point", "file_system_id"])?;
    Ok(())
}

fn launch(st: &mut State, b: Map<String, Value>) -> Response {
    if let Err(why) = check_launch(&b) {
        return invalid(st, "launch", why);
    }
    let region = b["region_name"].as_str().unwrap_or_default().to_string();
    let itype = b["instance_type_name"].as_str().unwrap_or_default().to_string();
    let name = b.get("name").and_then(Value::as_str).map(str::to_string);
    let key = b["ssh_key_names"][0].as_str().unwrap_or_default().to_string();
    let mut seen = LaunchSeen { region: region.clone(), instance_type: itype.clone(), name: name.clone(), outcome: Err(String::new()) };
    let refuse = |st: &mut State, seen: &mut LaunchSeen, status: StatusCode, code: &str, msg: &str, sugg: Option<&str>| {
        seen.outcome = Err(code.to_string());
        st.launches.push(seen.clone());
        error(status, code, msg, sugg)
    };
    if !TYPES.iter().any(|t| t.0 == itype) {
        return refuse(st, &mut seen, StatusCode::NOT_FOUND, "global/object-does-not-exist", "Specified instance type does not exist.", None);
    }
    if !st.keys.iter().any(|k| k.1 == key) {
        return refuse(st, &mut seen, StatusCode::NOT_FOUND, "global/object-does-not-exist", "Specified SSH key does not exist.", None);
    }
    match st.faults.get(&region).copied() {
        Some(LaunchFault::QuotaExceeded) => {
            return refuse(st, &mut seen, StatusCode::BAD_REQUEST, "global/quota-exceeded", "Quota exceeded.", Some("Contact Support to increase your quota."))
        }
        Some(LaunchFault::InsufficientCapacity) => {
            return refuse(st, &mut seen, StatusCode::BAD_REQUEST, "instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", None)
        }
        None => {}
    }
    if !st.capacity.get(&itype).is_some_and(|c| c.contains(&region)) {
        return refuse(st, &mut seen, StatusCode::BAD_REQUEST, "instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", None);
    }
    let k = st.next_host;
    st.next_host += 1;
    let id = format!("{:016x}{:016x}", 0x5eed_1a3b_dac0_0000u64 ^ u64::from(st.cfg.net), st.next_id);
    st.next_id += 1;
    let view = InstanceView {
        id: id.clone(),
        name,
        status: "booting".into(),
        ip: format!("10.{}.{}.{k}", st.cfg.public_octet, st.cfg.net),
        private_ip: format!("10.{}.{}.{k}", st.cfg.private_octet, st.cfg.net),
        region,
        instance_type: itype,
        ssh_key_names: vec![key],
        delisted: false,
    };
    let reads_left = st.cfg.boot_reads;
    st.instances.push(Instance { view, reads_left, image: b.get("image").cloned() });
    seen.outcome = Ok(id.clone());
    st.launches.push(seen);
    ok(json!({ "instance_ids": [id] }))
}

fn operate(st: &mut State, op: &str, b: Map<String, Value>) -> Response {
    if let Some(k) = b.keys().find(|k| k.as_str() != "instance_ids") {
        return invalid(st, op, format!("unknown field {k:?}"));
    }
    let Some(ids) = b.get("instance_ids").and_then(Value::as_array) else {
        return invalid(st, op, "missing required field \"instance_ids\" (an array)".into());
    };
    if ids.is_empty() || ids.iter().any(|i| !i.is_string()) {
        return invalid(st, op, "instance_ids must be a non-empty array of strings".into());
    }
    let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
    let mut ks = Vec::new();
    for id in &ids {
        match st.instances.iter().position(|i| i.view.id == *id && !i.view.delisted && i.view.status != "terminated") {
            Some(k) => ks.push(k),
            None => return not_found("instance"),
        }
    }
    let boot_reads = st.cfg.boot_reads;
    let mut out = Vec::new();
    for k in ks {
        let i = &mut st.instances[k];
        if op == "terminate" {
            i.view.status = "terminating".into();
        } else {
            if i.view.status != "active" {
                return error(StatusCode::BAD_REQUEST, "global/invalid-parameters", "Instance cannot be restarted now.", None);
            }
            i.view.status = "booting".into();
            i.reads_left = boot_reads;
        }
        out.push(render(i));
    }
    let key = if op == "terminate" { "terminated_instances" } else { "restarted_instances" };
    ok(json!({ key: out }))
}

fn add_key(st: &mut State, b: Map<String, Value>) -> Response {
    if let Some(k) = b.keys().find(|k| k.as_str() != "name" && k.as_str() != "public_key") {
        return invalid(st, "ssh-keys", format!("unknown field {k:?}"));
    }
    let Some(name) = b.get("name").and_then(Value::as_str) else {
        return invalid(st, "ssh-keys", "missing required field \"name\" (a string)".into());
    };
    if name.is_empty() || name.chars().count() > 64 {
        return invalid(st, "ssh-keys", "name must be 1 to 64 characters".into());
    }
    let Some(pk) = b.get("public_key").and_then(Value::as_str) else {
        // Lambda would generate a pair and return the private half; the emulator does not.
        return invalid(st, "ssh-keys", "public_key missing: key generation is not emulated".into());
    };
    if pk.len() > 4096 || !(pk.starts_with("ssh-") || pk.starts_with("ecdsa-")) {
        return invalid(st, "ssh-keys", "public_key is not an OpenSSH public key of at most 4096 characters".into());
    }
    if st.keys.iter().any(|k| k.1 == name) {
        return error(StatusCode::BAD_REQUEST, "global/invalid-parameters", "Invalid request data. SSH key name must be unique.", None);
    }
    let id = format!("{:032x}", 0xabcd_0000_u128 + st.keys.len() as u128);
    st.keys.push((id.clone(), name.to_string(), pk.to_string()));
    ok(json!({ "id": id, "name": name, "public_key": pk }))
}

#[cfg(test)]
mod tests {
    use super::b64;

    #[test]
    fn basic_auth_encoding() {
        assert_eq!(b64(b"key:"), "a2V5Og==");
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"abc"), "YWJj");
    }
}
