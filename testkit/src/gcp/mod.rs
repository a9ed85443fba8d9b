//! An EMULATION of the Compute Engine API v1 (instances, zone and global operations, firewalls)
//! and of Google's OAuth token endpoint, on a loopback port, for the GCP backend's tests. It is
//! not Google's code and holds no real data: wire shapes follow the published v1 reference as
//! recorded in testkit/emulators/gcp.md, which lists the sources and what is emulated.
//!
//! * Auth: `Authorization: Bearer <t>` where `t` is the configured access token or one the token
//!   endpoint issued; anything else is 401 with Google's `authError` envelope. `POST /token`
//!   verifies the RS256 JWT assertion against the configured service account's public key
//!   ([`token`]); a bad one is 400 `invalid_grant`.
//! * Bodies: instances.insert and firewalls.insert/patch are checked against the schemas
//!   ([`schema`]); a refusal is 400 `invalid` and is kept in [`GcpEmulator::rejections`], as is any
//!   request to a path or verb the API does not have.
//! * State machines: instances PROVISIONING → STAGING → RUNNING (one step per HTTP read),
//!   stop → STOPPING (while its operation runs) → TERMINATED (no natIP), start → STAGING →
//!   RUNNING with a new natIP, delete → STOPPING → gone. Every mutation answers an Operation PENDING → RUNNING → DONE (`wait` answers DONE);
//!   its effect lands when it is DONE.
//! * Faults per zone ([`GcpEmulator::fail_inserts`]): capacity and quota codes, delivered as the
//!   insert call's HTTP error or as the Operation's `error` after DONE. Preemption
//!   ([`GcpEmulator::preempt`]): the Spot VM goes TERMINATED (or is deleted, action DELETE) and the
//!   zone gets a `compute.instances.preempted` operation on it.
//! * natIPs come from the test's network-namespace range (`10.<public_octet>.<net>.<k>`), private
//!   IPs from `10.<private_octet>.<net>.<k>`; a test brings up an sshd host at each natIP.

mod firewall;
pub mod schema;
pub mod token;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use firewall::{firewall_insert, firewall_patch};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub use token::{ServiceAccount, TEST_ONLY_KEY_1, TEST_ONLY_KEY_2};

/// Where server-written links point (as captured from the real API).
const LINK_HOST: &str = "https://www.googleapis.com/compute/v1/";

/// An insert refusal injected for a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertFault {
    ZoneResourcePoolExhausted,
    ZoneResourcePoolExhaustedWithDetails,
    QuotaExceeded,
    UnsupportedOperation,
}

impl InsertFault {
    pub fn code(self) -> &'static str {
        match self {
            InsertFault::ZoneResourcePoolExhausted => "ZONE_RESOURCE_POOL_EXHAUSTED",
            InsertFault::ZoneResourcePoolExhaustedWithDetails => "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
            InsertFault::QuotaExceeded => "QUOTA_EXCEEDED",
            InsertFault::UnsupportedOperation => "UNSUPPORTED_OPERATION",
        }
    }

    /// (httpErrorStatusCode, httpErrorMessage) of the failed Operation.
    fn http(self) -> (u16, &'static str) {
        match self {
            InsertFault::QuotaExceeded => (403, "FORBIDDEN"),
            InsertFault::UnsupportedOperation => (400, "BAD REQUEST"),
            _ => (503, "SERVICE UNAVAILABLE"),
        }
    }
}

/// How a fault reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The insert call itself fails (HTTP error envelope; quota as 403 `quotaExceeded`).
    Sync,
    /// The insert answers an Operation that ends DONE with `error.errors[0].code`; the VM
    /// existed briefly (PROVISIONING) and is gone by then.
    Operation,
}

#[derive(Debug, Clone)]
pub struct GcpEmulatorConfig {
    pub project: String,
    /// A bearer accepted as is (what `GOOGLE_OAUTH_ACCESS_TOKEN` carries).
    pub access_token: String,
    /// The account the token endpoint issues tokens to.
    pub service_account: Option<ServiceAccount>,
    /// Third octet of the instance IPs (the test's NET).
    pub net: u8,
    pub public_octet: u8,
    pub private_octet: u8,
}

impl GcpEmulatorConfig {
    pub fn new(project: &str, access_token: &str, net: u8) -> GcpEmulatorConfig {
        GcpEmulatorConfig {
            project: project.into(),
            access_token: access_token.into(),
            service_account: None,
            net,
            public_octet: 226,
            private_octet: 227,
        }
    }
}

/// An instance as the test sees it (its natIP even before GET shows one: the host must be up
/// by RUNNING).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub zone: String,
    pub name: String,
    pub status: String,
    pub nat_ip: String,
    pub network_ip: String,
    pub machine_type: String,
    pub spot: bool,
    /// Public keys (`ssh-ed25519 AAAA…`) of the `ssh-keys` metadata.
    pub ssh_keys: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// The insert body as sent.
    pub body: Value,
}

/// One insert the emulator answered: zone, instance name and outcome (Ok, or the error code).
#[derive(Debug, Clone, PartialEq)]
pub struct InsertSeen {
    pub zone: String,
    pub name: String,
    pub outcome: Result<(), String>,
}

#[derive(Debug, Clone)]
struct Inst {
    view: InstanceView,
    reads_left: u32,
    termination_action: String,
    id: u64,
}

#[derive(Debug, Clone)]
enum Effect {
    None,
    Fail(InsertFault, String),
    Stop(String),
    Start(String),
    Delete(String),
    FirewallInsert(Value),
    FirewallPatch(String, Value),
    FirewallDelete(String),
}

#[derive(Debug, Clone)]
struct Op {
    name: String,
    zone: Option<String>,
    op_type: String,
    target_link: String,
    status: String,
    effect: Effect,
    error: Option<(String, String, u16, &'static str)>,
}

#[derive(Debug)]
struct State {
    cfg: GcpEmulatorConfig,
    token_url: String,
    instances: Vec<Inst>,
    firewalls: BTreeMap<String, Value>,
    ops: Vec<Op>,
    faults: BTreeMap<String, (InsertFault, Delivery)>,
    preempt_booting: Vec<String>,
    issued: Vec<String>,
    next_host: u32,
    next_id: u64,
    rejections: Vec<String>,
    auth_failures: u32,
    token_refusals: Vec<String>,
    inserts: Vec<InsertSeen>,
    calls: Vec<String>,
}

/// The emulator, serving until dropped.
pub struct GcpEmulator {
    /// `http://127.0.0.1:PORT/` — what `SKYCAT_GCP_COMPUTE_ENDPOINT` takes.
    pub url: String,
    /// `http://127.0.0.1:PORT/token` — a key file's `token_uri`.
    pub token_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GcpEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GcpEmulator {
    /// Binds a loopback port and serves on the current tokio runtime.
    pub async fn start(cfg: GcpEmulatorConfig) -> GcpEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let token_url = format!("{url}token");
        let state = Arc::new(Mutex::new(State {
            cfg,
            token_url: token_url.clone(),
            instances: Vec::new(),
            firewalls: BTreeMap::new(),
            ops: Vec::new(),
            faults: BTreeMap::new(),
            preempt_booting: Vec::new(),
            issued: Vec::new(),
            next_host: 2,
            next_id: 7_000_000_000_000_000_001,
            rejections: Vec::new(),
            auth_failures: 0,
            token_refusals: Vec::new(),
            inserts: Vec::new(),
            calls: Vec::new(),
        }));
        let st = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { handle(&st, method, uri, headers, body) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GcpEmulator { url, token_url, state, task }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every insert in `zone` (or in every zone of a region, given the region's name) fails with
    /// `fault`, delivered as `how`, until cleared.
    pub fn fail_inserts(&self, zone: &str, fault: InsertFault, how: Delivery) {
        self.st().faults.insert(zone.to_string(), (fault, how));
    }

    pub fn clear_faults(&self) {
        let mut st = self.st();
        st.faults.clear();
        st.preempt_booting.clear();
    }

    /// Spot VMs of `zone` are preempted as they would go from STAGING to RUNNING.
    pub fn preempt_while_booting(&self, zone: &str) {
        self.st().preempt_booting.push(zone.to_string());
    }

    /// GCP takes a Spot VM back: TERMINATED without natIP (or deleted, action DELETE), plus a
    /// `compute.instances.preempted` system operation. False when no such live Spot VM exists.
    pub fn preempt(&self, zone: &str, name: &str) -> bool {
        preempt_at(&mut self.st(), zone, name)
    }

    /// Live instances, in insert order.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.st().instances.iter().map(|i| i.view.clone()).collect()
    }

    /// Firewall rules as stored (name → resource).
    pub fn firewalls(&self) -> BTreeMap<String, Value> {
        self.st().firewalls.clone()
    }

    pub fn inserts(&self) -> Vec<InsertSeen> {
        self.st().inserts.clone()
    }

    /// Requests refused for their shape (schema, path, verb): must stay empty for a correct client.
    pub fn rejections(&self) -> Vec<String> {
        self.st().rejections.clone()
    }

    /// Compute requests refused for a missing or wrong bearer.
    pub fn auth_failures(&self) -> u32 {
        self.st().auth_failures
    }

    /// Token grants refused (their `error_description`).
    pub fn token_refusals(&self) -> Vec<String> {
        self.st().token_refusals.clone()
    }

    /// Tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.st().issued.len()
    }

    /// `METHOD /path` of every request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }
}

fn preempt_at(st: &mut State, zone: &str, name: &str) -> bool {
    let Some(pos) = st.instances.iter().position(|i| i.view.zone == zone && i.view.name == name && i.view.spot) else {
        return false;
    };
    let link = format!("{LINK_HOST}projects/{}/zones/{zone}/instances/{name}", st.cfg.project);
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    st.ops.push(Op {
        name: format!("systemevent-{ms}-{}", st.ops.len()),
        zone: Some(zone.to_string()),
        op_type: "compute.instances.preempted".into(),
        target_link: link,
        status: "DONE".into(),
        effect: Effect::None,
        error: None,
    });
    if st.instances[pos].termination_action == "DELETE" {
        st.instances.remove(pos);
    } else {
        st.instances[pos].view.status = "TERMINATED".into();
    }
    true
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, [("content-type", "application/json; charset=UTF-8")], v.to_string()).into_response()
}

/// Google's error envelope.
fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let s = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        _ => "UNAVAILABLE",
    };
    let mut e = json!({"code": status.as_u16(), "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]});
    if status == StatusCode::UNAUTHORIZED {
        e["errors"][0]["location"] = json!("Authorization");
        e["errors"][0]["locationType"] = json!("header");
        e["status"] = json!(s);
    }
    json_response(status, json!({ "error": e }))
}

fn invalid(st: &mut State, what: &str, why: String) -> Response {
    st.rejections.push(format!("{what}: {why}"));
    error(StatusCode::BAD_REQUEST, "invalid", &why)
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, "notFound", &format!("The resource '{what}' was not found"))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn handle(state: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut *guard;
    let path = uri.path().to_string();
    st.calls.push(format!("{method} {path}"));
    if path == "/token" {
        return grant(st, &method, &headers, &body);
    }
    let Some(rest) = path.strip_prefix("/compute/v1/projects/") else {
        st.rejections.push(format!("{method} {path}: not a compute/v1 path"));
        return not_found(&path);
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    if bearer.is_empty() || (bearer != st.cfg.access_token && !st.issued.iter().any(|t| t == bearer)) {
        st.auth_failures += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
    }
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segs[0] != st.cfg.project {
        return not_found(&format!("projects/{}", segs[0]));
    }
    let query: BTreeMap<String, String> = uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let parse = |st: &mut State, what: &str| -> Result<Value, Box<Response>> {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(Box::new(invalid(st, what, format!("Content-Type must be application/json (got {ct:?})"))));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| Box::new(invalid(st, what, format!("Invalid JSON payload received. {e}"))))
    };
    match (method.clone(), &segs[1..]) {
        (Method::GET, []) => {
            json_response(StatusCode::OK, json!({"kind": "compute#project", "name": st.cfg.project, "id": "5555555555555555555"}))
        }
        (Method::POST, ["zones", z, "instances"]) => match parse(st, "instances.insert") {
            Ok(b) => insert(st, z, b),
            Err(r) => *r,
        },
        (Method::GET, ["zones", z, "instances"]) => list_instances(st, z, query.get("filter").map(String::as_str).unwrap_or("")),
        (Method::GET, ["zones", z, "instances", n]) => get_instance(st, z, n),
        (Method::DELETE, ["zones", z, "instances", n]) => mutate(st, z, n, "delete"),
        (Method::POST, ["zones", z, "instances", n, a @ ("stop" | "start")]) => mutate(st, z, n, a),
        (Method::GET, ["zones", z, "operations"]) => list_ops(st, z, query.get("filter").map(String::as_str).unwrap_or("")),
        (Method::GET, ["zones", z, "operations", o]) => read_op(st, Some(z), o, false),
        (Method::POST, ["zones", z, "operations", o, "wait"]) => read_op(st, Some(z), o, true),
        (Method::GET, ["global", "operations", o]) => read_op(st, None, o, false),
        (Method::POST, ["global", "firewalls"]) => match parse(st, "firewalls.insert") {
            Ok(b) => firewall_insert(st, b),
            Err(r) => *r,
        },
        (Method::GET, ["global", "firewalls", n]) => match st.firewalls.get(*n) {
            Some(f) => json_response(StatusCode::OK, f.clone()),
            None => not_found(&format!("projects/{}/global/firewalls/{n}", st.cfg.project)),
        },
        (Method::PATCH, ["global", "firewalls", n]) => match parse(st, "firewalls.patch") {
            Ok(b) => firewall_patch(st, n, b),
            Err(r) => *r,
        },
        (Method::DELETE, ["global", "firewalls", n]) => {
            if !st.firewalls.contains_key(*n) {
                return not_found(&format!("projects/{}/global/firewalls/{n}", st.cfg.project));
            }
            let link = format!("{LINK_HOST}projects/{}/global/firewalls/{n}", st.cfg.project);
            new_op(st, None, "delete", link, Effect::FirewallDelete(n.to_string()))
        }
        _ => {
            st.rejections.push(format!("{method} {path}: no such method in Compute v1"));
            not_found(&path)
        }
    }
}

fn grant(st: &mut State, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    let refuse = |st: &mut State, why: String| {
        st.token_refusals.push(why.clone());
        json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant", "error_description": why}))
    };
    if *method != Method::POST {
        st.rejections.push(format!("{method} /token"));
        return json_response(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "invalid_request"}));
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        st.rejections.push(format!("POST /token: content type {ct:?}"));
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_request", "error_description": "Bad Request"}));
    }
    let Some(sa) = st.cfg.service_account.clone() else { return refuse(st, "Invalid JWT Signature.".into()) };
    let url = st.token_url.clone();
    match token::check_grant(&sa, body, &url, now_secs()) {
        Ok(()) => {
            let t = format!("ya29.emulated-{}-{}", st.issued.len() + 1, st.cfg.net);
            st.issued.push(t.clone());
            json_response(StatusCode::OK, json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"}))
        }
        Err(why) => refuse(st, why),
    }
}

fn zone_link(st: &State, zone: &str) -> String {
    format!("{LINK_HOST}projects/{}/zones/{zone}", st.cfg.project)
}

fn new_op(st: &mut State, zone: Option<&str>, op_type: &str, target_link: String, effect: Effect) -> Response {
    let name = format!("operation-{}-{:013x}-{}", now_secs() * 1000 + st.ops.len() as u64, st.next_id, st.ops.len());
    st.next_id += 1;
    let op = Op { name, zone: zone.map(str::to_string), op_type: op_type.into(), target_link, status: "PENDING".into(), effect, error: None };
    let v = op_json(st, &op);
    st.ops.push(op);
    json_response(StatusCode::OK, v)
}

fn op_json(st: &State, op: &Op) -> Value {
    let mut v = json!({
        "kind": "compute#operation",
        "id": format!("{}", 3_138_785_068_221_217_850u64 + st.ops.len() as u64),
        "name": op.name,
        "operationType": op.op_type,
        "targetLink": op.target_link,
        "status": op.status,
        "user": "emulated@example.iam.gserviceaccount.com",
        "progress": if op.status == "DONE" { 100 } else { 0 },
        "insertTime": "2026-12-01T10:00:00.000-08:00",
    });
    match &op.zone {
        Some(z) => {
            v["zone"] = json!(zone_link(st, z));
            v["selfLink"] = json!(format!("{}/operations/{}", zone_link(st, z), op.name));
        }
        None => v["selfLink"] = json!(format!("{LINK_HOST}projects/{}/global/operations/{}", st.cfg.project, op.name)),
    }
    if let Some((code, message, http, http_msg)) = &op.error {
        v["httpErrorStatusCode"] = json!(http);
        v["httpErrorMessage"] = json!(http_msg);
        v["endTime"] = json!("2026-12-01T10:00:05.000-08:00");
        v["error"] = json!({"errors": [{"code": code, "message": message}]});
    }
    v
}

fn fault_message(fault: InsertFault, zone: &str, project: &str) -> String {
    match fault {
        InsertFault::QuotaExceeded => format!("Quota 'NVIDIA_V100_GPUS' exceeded.  Limit: 0.0 in region {}.", zone.rsplit_once('-').map(|r| r.0).unwrap_or(zone)),
        InsertFault::UnsupportedOperation => "The instance was preempted during creation.".into(),
        _ => format!(
            "The zone 'projects/{project}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."
        ),
    }
}

fn insert(st: &mut State, zone: &str, body: Value) -> Response {
    let spec = match schema::instance_insert(&body, zone) {
        Ok(s) => s,
        Err(why) => return invalid(st, "instances.insert", why),
    };
    if st.instances.iter().any(|i| i.view.name == spec.name && i.view.zone == zone) {
        return error(StatusCode::CONFLICT, "alreadyExists", &format!("The resource 'projects/{}/zones/{zone}/instances/{}' already exists", st.cfg.project, spec.name));
    }
    let link = format!("{}/instances/{}", zone_link(st, zone), spec.name);
    let region = zone.rsplit_once('-').map(|r| r.0).unwrap_or(zone);
    if let Some((fault, how)) = st.faults.get(zone).or_else(|| st.faults.get(region)).copied() {
        let message = fault_message(fault, zone, &st.cfg.project);
        st.inserts.push(InsertSeen { zone: zone.into(), name: spec.name.clone(), outcome: Err(fault.code().into()) });
        if how == Delivery::Sync {
            return match fault {
                InsertFault::QuotaExceeded => error(StatusCode::FORBIDDEN, "quotaExceeded", &message),
                _ => error(StatusCode::SERVICE_UNAVAILABLE, fault.code(), &message),
            };
        }
        return new_op(st, Some(zone), "insert", link, Effect::Fail(fault, spec.name.clone()));
    }
    st.inserts.push(InsertSeen { zone: zone.into(), name: spec.name.clone(), outcome: Ok(()) });
    let k = st.next_host;
    st.next_host += 1;
    let id = st.next_id;
    st.next_id += 1;
    st.instances.push(Inst {
        view: InstanceView {
            zone: zone.into(),
            name: spec.name.clone(),
            status: "PROVISIONING".into(),
            nat_ip: format!("10.{}.{}.{k}", st.cfg.public_octet, st.cfg.net),
            network_ip: format!("10.{}.{}.{k}", st.cfg.private_octet, st.cfg.net),
            machine_type: spec.machine_type,
            spot: spec.spot,
            ssh_keys: spec.ssh_keys,
            labels: spec.labels.into_iter().collect(),
            tags: spec.tags,
            body,
        },
        reads_left: 1,
        termination_action: spec.termination_action,
        id,
    });
    new_op(st, Some(zone), "insert", link, Effect::None)
}

fn instance_json(st: &State, i: &Inst) -> Value {
    let v = &i.view;
    let zl = zone_link(st, &v.zone);
    let mut access = json!({"type": "ONE_TO_ONE_NAT", "name": "External NAT", "networkTier": "PREMIUM", "kind": "compute#accessConfig"});
    if matches!(v.status.as_str(), "STAGING" | "RUNNING" | "STOPPING") {
        access["natIP"] = json!(v.nat_ip);
    }
    let sched = v.body.get("scheduling").cloned().unwrap_or(json!({"onHostMaintenance": "MIGRATE", "automaticRestart": true, "provisioningModel": "STANDARD"}));
    let mut out = json!({
        "kind": "compute#instance",
        "id": i.id.to_string(),
        "name": v.name,
        "status": v.status,
        "zone": zl,
        "machineType": format!("{zl}/machineTypes/{}", v.machine_type),
        "networkInterfaces": [{
            "kind": "compute#networkInterface", "name": "nic0",
            "network": format!("{LINK_HOST}projects/{}/global/networks/default", st.cfg.project),
            "networkIP": v.network_ip, "accessConfigs": [access]
        }],
        "scheduling": sched,
        "tags": {"items": v.tags, "fingerprint": "42WmSpB8rSM="},
        "selfLink": format!("{zl}/instances/{}", v.name),
    });
    if !v.labels.is_empty() {
        out["labels"] = json!(v.labels);
    }
    if let Some(g) = v.body.get("guestAccelerators") {
        out["guestAccelerators"] = g.clone();
    }
    out
}

fn get_instance(st: &mut State, zone: &str, name: &str) -> Response {
    let project = st.cfg.project.clone();
    let Some(pos) = st.instances.iter().position(|i| i.view.zone == zone && i.view.name == name) else {
        return not_found(&format!("projects/{project}/zones/{zone}/instances/{name}"));
    };
    let v = instance_json(st, &st.instances[pos]);
    let i = &st.instances[pos];
    if i.view.status == "STAGING" && i.reads_left == 0 && i.view.spot && st.preempt_booting.contains(&i.view.zone) {
        let (z, n) = (i.view.zone.clone(), i.view.name.clone());
        preempt_at(st, &z, &n);
        return json_response(StatusCode::OK, v);
    }
    // Reads move booting and stopping VMs along.
    let i = &mut st.instances[pos];
    if i.reads_left > 0 {
        i.reads_left -= 1;
    } else {
        i.view.status = match i.view.status.as_str() {
            "PROVISIONING" => "STAGING",
            "STAGING" => "RUNNING",
            "STOPPING" => "TERMINATED",
            s => s,
        }
        .into();
    }
    json_response(StatusCode::OK, v)
}

/// Filters the emulation understands: `labels.KEY = VALUE` (instances) and
/// `operationType = "TYPE"` (operations); anything else is refused, so a client's filter that
/// would not narrow as meant fails the test.
fn parse_filter(filter: &str, field_prefix: &str) -> Option<(String, String)> {
    let (k, v) = filter.split_once('=')?;
    let (k, v) = (k.trim(), v.trim().trim_matches('"'));
    (k.starts_with(field_prefix) && !v.is_empty() && !v.contains(' ')).then(|| (k.to_string(), v.to_string()))
}

fn list_instances(st: &mut State, zone: &str, filter: &str) -> Response {
    let want = if filter.is_empty() {
        None
    } else {
        match parse_filter(filter, "labels.") {
            Some((k, v)) => Some((k.trim_start_matches("labels.").to_string(), v)),
            None => return invalid(st, "instances.list", format!("Invalid value for field 'filter': '{filter}'. Invalid list filter expression.")),
        }
    };
    let items: Vec<Value> = st
        .instances
        .iter()
        .filter(|i| i.view.zone == zone)
        .filter(|i| want.as_ref().is_none_or(|(k, v)| i.view.labels.get(k) == Some(v)))
        .map(|i| instance_json(st, i))
        .collect();
    let mut out = json!({"kind": "compute#instanceList", "id": format!("projects/{}/zones/{zone}/instances", st.cfg.project), "selfLink": format!("{}/instances", zone_link(st, zone))});
    if !items.is_empty() {
        out["items"] = json!(items);
    }
    json_response(StatusCode::OK, out)
}

fn list_ops(st: &mut State, zone: &str, filter: &str) -> Response {
    let want = if filter.is_empty() {
        None
    } else {
        match parse_filter(filter, "operationType") {
            Some((_, v)) => Some(v),
            None => return invalid(st, "zoneOperations.list", format!("Invalid value for field 'filter': '{filter}'. Invalid list filter expression.")),
        }
    };
    let items: Vec<Value> = st
        .ops
        .iter()
        .filter(|o| o.zone.as_deref() == Some(zone))
        .filter(|o| want.as_ref().is_none_or(|t| &o.op_type == t))
        .map(|o| op_json(st, o))
        .collect();
    let mut out = json!({"kind": "compute#operationList", "id": format!("projects/{}/zones/{zone}/operations", st.cfg.project), "selfLink": format!("{}/operations", zone_link(st, zone))});
    if !items.is_empty() {
        out["items"] = json!(items);
    }
    json_response(StatusCode::OK, out)
}

fn mutate(st: &mut State, zone: &str, name: &str, action: &str) -> Response {
    let Some(i) = st.instances.iter().find(|i| i.view.zone == zone && i.view.name == name) else {
        return not_found(&format!("projects/{}/zones/{zone}/instances/{name}", st.cfg.project));
    };
    let status = i.view.status.clone();
    let link = format!("{}/instances/{name}", zone_link(st, zone));
    let effect = match action {
        // Stopping a stopped VM is a no-op operation.
        "stop" if status == "TERMINATED" => return new_op(st, Some(zone), action, link, Effect::None),
        "stop" => Effect::Stop(name.into()),
        "start" => {
            if status != "TERMINATED" {
                // Starting a running VM is a no-op operation in GCP.
                return new_op(st, Some(zone), "start", link, Effect::None);
            }
            Effect::Start(name.into())
        }
        _ => Effect::Delete(name.into()),
    };
    // A stop or delete shows STOPPING while its operation runs.
    if matches!(effect, Effect::Stop(_) | Effect::Delete(_)) && status != "TERMINATED" {
        if let Some(i) = st.instances.iter_mut().find(|i| i.view.zone == zone && i.view.name == name) {
            i.view.status = "STOPPING".into();
        }
    }
    new_op(st, Some(zone), action, link, effect)
}

fn read_op(st: &mut State, zone: Option<&str>, name: &str, wait: bool) -> Response {
    let Some(pos) = st.ops.iter().position(|o| o.name == name && o.zone.as_deref() == zone) else {
        return not_found(&format!("operations/{name}"));
    };
    let next = match st.ops[pos].status.as_str() {
        _ if wait => "DONE",
        "PENDING" => "RUNNING",
        _ => "DONE",
    };
    if st.ops[pos].status != "DONE" && next == "DONE" {
        st.ops[pos].status = "DONE".into();
        let (effect, zone) = (st.ops[pos].effect.clone(), st.ops[pos].zone.clone().unwrap_or_default());
        if let Some(err) = apply(st, &zone, effect) {
            st.ops[pos].error = Some(err);
        }
    } else {
        st.ops[pos].status = next.into();
    }
    let v = op_json(st, &st.ops[pos]);
    json_response(StatusCode::OK, v)
}

/// Lands an operation's effect; an error to record in the operation, if it fails.
fn apply(st: &mut State, zone: &str, effect: Effect) -> Option<(String, String, u16, &'static str)> {
    let find = |st: &State, n: &str| st.instances.iter().position(|i| i.view.zone == zone && i.view.name == n);
    match effect {
        Effect::None => None,
        Effect::Fail(fault, _name) => {
            let (http, msg) = fault.http();
            Some((fault.code().into(), fault_message(fault, zone, &st.cfg.project), http, msg))
        }
        Effect::Stop(n) => {
            if let Some(p) = find(st, &n) {
                st.instances[p].view.status = "TERMINATED".into();
            }
            None
        }
        Effect::Start(n) => {
            if let Some(p) = find(st, &n) {
                let k = st.next_host;
                st.next_host += 1;
                let i = &mut st.instances[p];
                i.view.status = "STAGING".into();
                i.view.nat_ip = format!("10.{}.{}.{k}", st.cfg.public_octet, st.cfg.net);
                i.reads_left = 1;
            }
            None
        }
        Effect::Delete(n) => {
            match find(st, &n) {
                Some(p) => {
                    st.instances.remove(p);
                    None
                }
                None => Some(("RESOURCE_NOT_FOUND".into(), format!("The resource '{n}' was not found"), 404, "NOT FOUND")),
            }
        }
        Effect::FirewallInsert(v) => {
            let n = v["name"].as_str().unwrap_or_default().to_string();
            st.firewalls.insert(n, v);
            None
        }
        Effect::FirewallPatch(n, patch) => {
            if let (Some(fw), Some(p)) = (st.firewalls.get_mut(&n), patch.as_object()) {
                for (k, v) in p {
                    fw[k] = v.clone();
                }
            }
            None
        }
        Effect::FirewallDelete(n) => {
            st.firewalls.remove(&n);
            None
        }
    }
}
