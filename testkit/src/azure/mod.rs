//! An EMULATION of the Azure Resource Manager REST API (the Microsoft.Resources, .Network and
//! .Compute calls skycat makes) and of the Microsoft identity platform's client-credentials token
//! endpoint, on one loopback port, for skycat's Azure backend tests. It is not Azure: it follows
//! the published shapes listed in testkit/emulators/azure.md and nothing more.
//!
//! * Auth: `POST /{tenant}/oauth2/v2.0/token` (form) issues bearer tokens for the configured
//!   service principal; a wrong secret is HTTP 401 `invalid_client` with an `AADSTS7000215` body.
//!   ARM calls need `Authorization: Bearer <issued token>`: none is 401 `AuthenticationFailed`,
//!   another is 401 `InvalidAuthenticationToken`.
//! * Every ARM call needs the provider's `api-version`; every PUT body is checked against the
//!   model ([`schema`]). Refusals (and unknown paths or verbs) are kept in
//!   [`AzureEmulator::rejections`] so a test can assert the client never sent one.
//! * Long-running operations: PUT VM answers 201, deallocate / start / VM DELETE 202, all with
//!   `Azure-AsyncOperation` + `Location` + `Retry-After`; network PUTs 201 with
//!   `Azure-AsyncOperation`; resource group DELETE 202 with `Location` only. An operation is
//!   `InProgress` for `lro_polls` reads, then `Succeeded` (its effect applied) or `Failed`.
//! * VMs: `Creating` → `Succeeded` + `PowerState/running`; deallocate → `deallocating` →
//!   `deallocated`; start → `starting` → `running`. [`AzureEmulator::evict`] evicts a spot VM as
//!   its `evictionPolicy` says (Delete: the VM and its NIC are gone; Deallocate: deallocated).
//! * Faults per region ([`AzureEmulator::fail_region`]): `SkuNotAvailable` and quota
//!   (`OperationNotAllowed`) as the VM PUT's 409, `AllocationFailed` / `ZonalAllocationFailed` as
//!   the operation's error (the VM stays with `provisioningState: Failed`, as Azure leaves it).
//! * Public IPs are `10.<public_octet>.<net>.<k>`, private `10.<private_octet>.<net>.<k>`: a test
//!   brings up a network-namespace sshd host at each running VM's public IP.

mod compute;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const RESOURCES_APIS: &[&str] = &["2024-03-01", "2021-04-01"];
pub const SUBSCRIPTION_APIS: &[&str] = &["2022-12-01"];
pub const NETWORK_APIS: &[&str] = &["2024-05-01"];
pub const COMPUTE_APIS: &[&str] = &["2024-07-01", "2024-11-01"];

/// Capacity and quota refusals injected per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// VM PUT → 409 `SkuNotAvailable`.
    SkuNotAvailable,
    /// VM PUT → 409 `OperationNotAllowed` (cores quota).
    Quota,
    /// VM PUT → 201, then the operation fails with `AllocationFailed`.
    AllocationFailed,
    /// As AllocationFailed, with `ZonalAllocationFailed`.
    ZonalAllocationFailed,
}

#[derive(Debug, Clone)]
pub struct AzureEmulatorConfig {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription: String,
    /// Third octet of the VMs' addresses (the test's NET).
    pub net: u8,
    pub public_octet: u8,
    pub private_octet: u8,
    /// Reads an operation stays `InProgress`.
    pub lro_polls: u32,
    /// What `Retry-After` says, in seconds.
    pub retry_after: u32,
}

impl AzureEmulatorConfig {
    pub fn new(client_secret: &str, net: u8) -> AzureEmulatorConfig {
        AzureEmulatorConfig {
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
            client_secret: client_secret.into(),
            subscription: "00000000-1111-2222-3333-444444444444".into(),
            net,
            public_octet: 242,
            private_octet: 243,
            lro_polls: 1,
            retry_after: 0,
        }
    }
}

/// A VM as the test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub size: String,
    /// `Creating`, `Succeeded`, `Failed`, `Deleting`.
    pub provisioning: String,
    /// `starting`, `running`, `deallocating`, `deallocated`, or empty (never allocated).
    pub power: String,
    pub spot: bool,
    pub admin_username: String,
    pub ssh_keys: Vec<String>,
    pub public_ip: Option<String>,
    /// The PUT body as sent.
    pub body: Value,
}

/// One VM PUT as the emulator answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmPut {
    pub location: String,
    pub size: String,
    /// Ok(VM name), or the error code (sync or from the operation).
    pub outcome: Result<String, String>,
}

#[derive(Debug, Clone)]
enum Effect {
    None,
    VmCreated(String),
    VmFailed(String),
    VmDeallocated(String),
    VmStarted(String),
    VmDeleted(String),
    GroupDeleted(String),
}

#[derive(Debug)]
struct Op {
    polls_left: u32,
    error: Option<(String, String)>,
    effect: Effect,
    done: bool,
}

#[derive(Debug, Clone)]
struct Resource {
    /// Canonical id (`/subscriptions/…/resourceGroups/rg/providers/Microsoft.Network/…`).
    id: String,
    body: Value,
}

#[derive(Debug, Clone)]
struct Vm {
    view: VmView,
    nic: String,
    vm_id: String,
}

#[derive(Debug)]
struct State {
    cfg: AzureEmulatorConfig,
    tokens: Vec<String>,
    /// lowercase name → (name, location, tags, deleting).
    groups: BTreeMap<String, (String, String, Value, bool)>,
    /// lowercase id → network resource.
    resources: BTreeMap<String, Resource>,
    /// lowercase id → VM.
    vms: BTreeMap<String, Vm>,
    ops: BTreeMap<String, Op>,
    faults: BTreeMap<String, Fault>,
    next_public: u32,
    next_private: u32,
    next_op: u64,
    rejections: Vec<String>,
    auth_failures: u32,
    vm_puts: Vec<VmPut>,
    calls: Vec<String>,
    base: String,
}

/// The emulator, serving until dropped.
pub struct AzureEmulator {
    /// `http://127.0.0.1:PORT/`: both the ARM and the login endpoint.
    pub url: String,
    pub tenant: String,
    pub client_id: String,
    pub subscription: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AzureEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AzureEmulator {
    /// Binds a loopback port and serves on the current tokio runtime.
    pub async fn start(cfg: AzureEmulatorConfig) -> AzureEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (tenant, client_id, subscription) = (cfg.tenant.clone(), cfg.client_id.clone(), cfg.subscription.clone());
        let state = Arc::new(Mutex::new(State {
            cfg,
            tokens: Vec::new(),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            vms: BTreeMap::new(),
            ops: BTreeMap::new(),
            faults: BTreeMap::new(),
            next_public: 2,
            next_private: 4,
            next_op: 1,
            rejections: Vec::new(),
            auth_failures: 0,
            vm_puts: Vec::new(),
            calls: Vec::new(),
            base: url.trim_end_matches('/').to_string(),
        }));
        let st = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { handle(&st, method, uri, headers, body) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AzureEmulator { url, tenant, client_id, subscription, state, task }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every VM PUT in `region` fails with `fault` until [`AzureEmulator::clear_faults`].
    pub fn fail_region(&self, region: &str, fault: Fault) {
        self.st().faults.insert(region.to_ascii_lowercase(), fault);
    }

    pub fn clear_faults(&self) {
        self.st().faults.clear();
    }

    /// Evicts the spot VM `name` as its evictionPolicy says; false if there is no such spot VM.
    pub fn evict(&self, name: &str) -> bool {
        let mut st = self.st();
        let Some(key) = st.vms.iter().find(|(_, v)| v.view.name.eq_ignore_ascii_case(name) && v.view.spot).map(|(k, _)| k.clone()) else {
            return false;
        };
        evict(&mut st, &key);
        true
    }

    pub fn vms(&self) -> Vec<VmView> {
        self.st().vms.values().map(|v| v.view.clone()).collect()
    }

    /// Resource groups (names).
    pub fn resource_groups(&self) -> Vec<String> {
        self.st().groups.values().map(|g| g.0.clone()).collect()
    }

    /// Ids of every network resource left.
    pub fn network_resources(&self) -> Vec<String> {
        self.st().resources.values().map(|r| r.id.clone()).collect()
    }

    /// A network resource's stored body, by case-insensitive id suffix (`networkSecurityGroups/skycat-nsg`).
    pub fn network_resource(&self, suffix: &str) -> Option<Value> {
        let s = suffix.to_ascii_lowercase();
        self.st().resources.iter().find(|(k, _)| k.ends_with(&s)).map(|(_, r)| r.body.clone())
    }

    pub fn vm_puts(&self) -> Vec<VmPut> {
        self.st().vm_puts.clone()
    }

    /// Requests refused for their shape (schema, api-version, path, verb).
    pub fn rejections(&self) -> Vec<String> {
        self.st().rejections.clone()
    }

    pub fn auth_failures(&self) -> u32 {
        self.st().auth_failures
    }

    /// `METHOD /path` of every request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }
}

fn arm_error(status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(t) = target {
        e["target"] = json!(t);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

fn reject(st: &mut State, what: String, status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Response {
    st.rejections.push(format!("{what}: {code}: {message}"));
    arm_error(status, code, message, target)
}

fn handle(st: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
    let path = uri.path().to_string();
    st.calls.push(format!("{method} {path}"));
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_ascii_lowercase(), percent_decode(v))))
        .collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    if l.len() == 4 && l[1] == "oauth2" && l[2] == "v2.0" && l[3] == "token" && method == Method::POST {
        return token(&mut st, segs[0], &body);
    }
    // ARM: the bearer first.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match auth.strip_prefix("Bearer ") {
        None => {
            st.auth_failures += 1;
            return www(arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                None,
            ));
        }
        Some(t) if !st.tokens.iter().any(|k| k == t) => {
            st.auth_failures += 1;
            return www(arm_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "The access token is invalid.", None));
        }
        Some(_) => {}
    }
    if l.first() != Some(&"subscriptions") || l.len() < 2 {
        return reject(&mut st, format!("{method} {path}"), StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None);
    }
    if !segs[1].eq_ignore_ascii_case(&st.cfg.subscription) {
        let m = format!("The subscription '{}' could not be found.", segs[1]);
        return arm_error(StatusCode::NOT_FOUND, "SubscriptionNotFound", &m, None);
    }
    let sub = st.cfg.subscription.clone();
    // Operation monitors: their URLs carry their own api-version.
    if l.len() == 8 && l[2] == "providers" && l[4] == "locations" && l[6] == "operations" && method == Method::GET {
        if query.get("monitor").map(String::as_str) == Some("true") {
            return location_status(&mut st, segs[7]);
        }
        return async_status(&mut st, segs[7]);
    }
    if l.len() == 4 && l[2] == "operationresults" && method == Method::GET {
        return location_status(&mut st, segs[3]);
    }
    let provider_api = match l.get(5).copied() {
        _ if l.len() == 2 => SUBSCRIPTION_APIS,
        _ if l.len() == 4 => RESOURCES_APIS,
        Some("microsoft.network") => NETWORK_APIS,
        Some("microsoft.compute") => COMPUTE_APIS,
        _ => return reject(&mut st, format!("{method} {path}"), StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None),
    };
    let what = format!("{method} {path}");
    match query.get("api-version") {
        None => {
            return reject(&mut st, what, StatusCode::BAD_REQUEST, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.", None)
        }
        Some(v) if !provider_api.contains(&v.as_str()) => {
            let m = format!("The api-version '{v}' is invalid. The supported versions are '{}'.", provider_api.join(","));
            return reject(&mut st, what, StatusCode::BAD_REQUEST, "InvalidApiVersionParameter", &m, None);
        }
        Some(_) => {}
    }
    if l.len() == 2 && method == Method::GET {
        return axum::Json(json!({
            "id": format!("/subscriptions/{sub}"), "subscriptionId": sub, "tenantId": st.cfg.tenant,
            "displayName": "EMULATED subscription", "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"}
        }))
        .into_response();
    }
    if l.len() < 4 || l[2] != "resourcegroups" {
        return reject(&mut st, what, StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None);
    }
    let rg_key = l[3].to_string();
    if l.len() == 4 {
        return resource_group(&mut st, &method, segs[3], &rg_key, &body, &what);
    }
    let Some(group) = st.groups.get(&rg_key).filter(|g| !g.3).map(|g| g.0.clone()) else {
        let m = format!("Resource group '{}' could not be found.", segs[3]);
        return arm_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound", &m, None);
    };
    if l.len() < 8 || l[4] != "providers" {
        return reject(&mut st, what, StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None);
    }
    let canonical_type = match (l[5], l[6]) {
        ("microsoft.network", "virtualnetworks") => "Microsoft.Network/virtualNetworks",
        ("microsoft.network", "networksecuritygroups") => "Microsoft.Network/networkSecurityGroups",
        ("microsoft.network", "publicipaddresses") => "Microsoft.Network/publicIPAddresses",
        ("microsoft.network", "networkinterfaces") => "Microsoft.Network/networkInterfaces",
        ("microsoft.compute", "virtualmachines") => "Microsoft.Compute/virtualMachines",
        _ => return reject(&mut st, what, StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None),
    };
    let name = segs[7];
    let id = format!("/subscriptions/{sub}/resourceGroups/{group}/providers/{canonical_type}/{name}");
    let key = id.to_ascii_lowercase();
    let action = l.get(8).copied();
    if canonical_type.starts_with("Microsoft.Compute") {
        return compute::compute(&mut st, &method, action, &id, &key, name, &group, &query, &body, &what);
    }
    network(&mut st, &method, action, canonical_type, &id, &key, name, &group, &body, &what)
}

fn www(mut r: Response) -> Response {
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\""),
    );
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 1..i + 3]), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity platform's token endpoint (client credentials only).
fn token(st: &mut State, tenant: &str, body: &[u8]) -> Response {
    let form: BTreeMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (percent_decode(k), percent_decode(v))))
        .collect();
    let aad = |status: StatusCode, error: &str, code: u32, text: &str| {
        let body = json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 0b6c2a1e-emulated\r\nCorrelation ID: 5f0e-emulated\r\nTimestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code], "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "0b6c2a1e-emulated", "correlation_id": "5f0e-emulated",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}")
        });
        (status, axum::Json(body)).into_response()
    };
    if !tenant.eq_ignore_ascii_case(&st.cfg.tenant) {
        st.auth_failures += 1;
        return aad(StatusCode::BAD_REQUEST, "invalid_tenant", 90002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        st.rejections.push(format!("token: grant_type {:?}", form.get("grant_type")));
        return aad(StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.");
    }
    if form.get("scope").map(String::as_str) != Some("https://management.azure.com/.default") {
        st.rejections.push(format!("token: scope {:?}", form.get("scope")));
        return aad(StatusCode::BAD_REQUEST, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
    }
    if form.get("client_id").map(String::as_str) != Some(st.cfg.client_id.as_str()) {
        st.auth_failures += 1;
        let m = format!("Application with identifier '{}' was not found in the directory '{tenant}'.", form.get("client_id").cloned().unwrap_or_default());
        return aad(StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &m);
    }
    if form.get("client_secret").map(String::as_str) != Some(st.cfg.client_secret.as_str()) {
        st.auth_failures += 1;
        let m = format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", st.cfg.client_id);
        return aad(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &m);
    }
    let t = format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.emulated-{}.sig", st.tokens.len() + 1);
    st.tokens.push(t.clone());
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t})).into_response()
}

fn new_op(st: &mut State, location: &str, error: Option<(String, String)>, effect: Effect) -> (String, HeaderMap) {
    let id = format!("{:08x}-0000-4000-8000-{:012x}", st.next_op, st.next_op);
    st.next_op += 1;
    st.ops.insert(id.clone(), Op { polls_left: st.cfg.lro_polls, error, effect, done: false });
    let sub = &st.cfg.subscription;
    let base = &st.base;
    let mut h = HeaderMap::new();
    let async_url = format!("{base}/subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/operations/{id}?p=emulated&api-version=2024-07-01");
    h.insert("azure-asyncoperation", HeaderValue::from_str(&async_url).expect("header"));
    let monitor = format!("{base}/subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/operations/{id}?monitor=true&api-version=2024-07-01");
    h.insert("location", HeaderValue::from_str(&monitor).expect("header"));
    h.insert("retry-after", HeaderValue::from(st.cfg.retry_after));
    (id, h)
}

/// Advances an operation by one read; (finished, error).
fn advance(st: &mut State, id: &str) -> Option<(bool, Option<(String, String)>)> {
    let op = st.ops.get_mut(id)?;
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Some((false, None));
    }
    let first = !op.done;
    op.done = true;
    let (error, effect) = (op.error.clone(), op.effect.clone());
    if first {
        apply(st, effect);
    }
    Some((true, error))
}

fn apply(st: &mut State, effect: Effect) {
    match effect {
        Effect::None => {}
        Effect::VmCreated(k) | Effect::VmStarted(k) => {
            if let Some(v) = st.vms.get_mut(&k) {
                v.view.provisioning = "Succeeded".into();
                v.view.power = "running".into();
            }
        }
        Effect::VmFailed(k) => {
            if let Some(v) = st.vms.get_mut(&k) {
                v.view.provisioning = "Failed".into();
                v.view.power = String::new();
            }
        }
        Effect::VmDeallocated(k) => {
            if let Some(v) = st.vms.get_mut(&k) {
                v.view.power = "deallocated".into();
            }
        }
        Effect::VmDeleted(k) => delete_vm(st, &k),
        Effect::GroupDeleted(g) => {
            st.groups.remove(&g);
            let inside = |id: &str| id.split('/').nth(4).is_some_and(|x| x.eq_ignore_ascii_case(&g));
            st.resources.retain(|k, _| !inside(k));
            st.vms.retain(|k, _| !inside(k));
        }
    }
}

fn delete_vm(st: &mut State, key: &str) {
    if let Some(v) = st.vms.remove(key) {
        let nic_deleted = v.view.body.pointer("/properties/networkProfile/networkInterfaces/0/properties/deleteOption").and_then(Value::as_str) == Some("Delete");
        if nic_deleted {
            st.resources.remove(&v.nic.to_ascii_lowercase());
        }
    }
}

fn evict(st: &mut State, key: &str) {
    let delete = st.vms.get(key).and_then(|v| v.view.body.pointer("/properties/evictionPolicy")).and_then(Value::as_str) == Some("Delete");
    if delete {
        delete_vm(st, key);
    } else if let Some(v) = st.vms.get_mut(key) {
        v.view.power = "deallocated".into();
    }
}

fn async_status(st: &mut State, id: &str) -> Response {
    let Some((done, error)) = advance(st, id) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The operation was not found.", None);
    };
    let mut body = json!({"name": id, "startTime": "2026-01-01T00:00:00.0000000+00:00"});
    match (done, error) {
        (false, _) => body["status"] = json!("InProgress"),
        (true, None) => {
            body["status"] = json!("Succeeded");
            body["endTime"] = json!("2026-01-01T00:00:05.0000000+00:00");
        }
        (true, Some((code, message))) => {
            body["status"] = json!("Failed");
            body["endTime"] = json!("2026-01-01T00:00:05.0000000+00:00");
            body["error"] = json!({"code": code, "message": message});
        }
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert("retry-after", HeaderValue::from(st.cfg.retry_after));
    r
}

fn location_status(st: &mut State, id: &str) -> Response {
    match advance(st, id) {
        None => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The operation was not found.", None),
        Some((false, _)) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            let url = format!("{}/subscriptions/{}/operationresults/{id}?api-version=2024-03-01", st.base, st.cfg.subscription);
            r.headers_mut().insert("location", HeaderValue::from_str(&url).expect("header"));
            r.headers_mut().insert("retry-after", HeaderValue::from(st.cfg.retry_after));
            r
        }
        Some((true, None)) => StatusCode::OK.into_response(),
        Some((true, Some((code, message)))) => arm_error(StatusCode::CONFLICT, &code, &message, None),
    }
}

fn resource_group(st: &mut State, method: &Method, name: &str, key: &str, body: &[u8], what: &str) -> Response {
    let sub = st.cfg.subscription.clone();
    let view = |g: &(String, String, Value, bool)| {
        json!({"id": format!("/subscriptions/{sub}/resourceGroups/{}", g.0), "name": g.0, "type": "Microsoft.Resources/resourceGroups",
               "location": g.1, "tags": g.2, "properties": {"provisioningState": if g.3 { "Deleting" } else { "Succeeded" }}})
    };
    let not_found = || arm_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound", &format!("Resource group '{name}' could not be found."), None);
    match *method {
        Method::GET => match st.groups.get(key) {
            Some(g) => axum::Json(view(g)).into_response(),
            None => not_found(),
        },
        Method::PUT => {
            let v = match parse(st, body, &schema::RESOURCE_GROUP, what) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let existed = st.groups.contains_key(key);
            let g = (name.to_string(), v["location"].as_str().unwrap_or_default().to_string(), v.get("tags").cloned().unwrap_or(json!({})), false);
            let out = view(&g);
            st.groups.insert(key.to_string(), g);
            (if existed { StatusCode::OK } else { StatusCode::CREATED }, axum::Json(out)).into_response()
        }
        Method::DELETE => {
            let Some(g) = st.groups.get_mut(key) else { return not_found() };
            g.3 = true;
            let (id, _) = new_op(st, "", None, Effect::GroupDeleted(key.to_string()));
            let url = format!("{}/subscriptions/{sub}/operationresults/{id}?api-version=2024-03-01", st.base);
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().insert("location", HeaderValue::from_str(&url).expect("header"));
            r.headers_mut().insert("retry-after", HeaderValue::from(st.cfg.retry_after));
            r
        }
        _ => reject(st, what.to_string(), StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "The requested method is not allowed.", None),
    }
}

fn parse(st: &mut State, body: &[u8], s: &schema::S, what: &str) -> Result<Value, Box<Response>> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let m = format!("The request content was invalid and could not be deserialized: '{e}'.");
            return Err(Box::new(reject(st, what.to_string(), StatusCode::BAD_REQUEST, "InvalidRequestContent", &m, None)));
        }
    };
    if let Err(r) = schema::check(&v, s, "") {
        return Err(Box::new(reject(st, what.to_string(), StatusCode::BAD_REQUEST, r.code, &r.message, r.target.as_deref())));
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn network(st: &mut State, method: &Method, action: Option<&str>, ty: &str, id: &str, key: &str, name: &str, group: &str, body: &[u8], what: &str) -> Response {
    if action.is_some() {
        return reject(st, what.to_string(), StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None);
    }
    match *method {
        Method::GET => match st.resources.get(key) {
            Some(r) => axum::Json(r.body.clone()).into_response(),
            None => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("The Resource '{ty}/{name}' under resource group '{group}' was not found."), None),
        },
        Method::PUT => {
            let s = match ty {
                "Microsoft.Network/virtualNetworks" => &schema::VNET,
                "Microsoft.Network/networkSecurityGroups" => &schema::NSG,
                "Microsoft.Network/publicIPAddresses" => &schema::PUBLIC_IP,
                _ => &schema::NIC,
            };
            let mut v = match parse(st, body, s, what) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            // References must resolve to resources that exist.
            let mut refs: Vec<String> = Vec::new();
            if let Some(n) = v.pointer("/properties/networkSecurityGroup/id").and_then(Value::as_str) {
                refs.push(n.to_string());
            }
            for c in v.pointer("/properties/ipConfigurations").and_then(Value::as_array).cloned().unwrap_or_default() {
                for p in ["/properties/subnet/id", "/properties/publicIPAddress/id"] {
                    if let Some(x) = c.pointer(p).and_then(Value::as_str) {
                        refs.push(x.to_string());
                    }
                }
            }
            for r in refs {
                if !resolves(st, &r) {
                    let m = format!("Resource {r} referenced by resource {id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.");
                    return reject(st, what.to_string(), StatusCode::BAD_REQUEST, "InvalidResourceReference", &m, None);
                }
            }
            if ty.ends_with("networkSecurityGroups") {
                let rules = v.pointer("/properties/securityRules").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut seen = Vec::new();
                for r in &rules {
                    let p = r.pointer("/properties/priority").and_then(Value::as_i64).unwrap_or_default();
                    let dir = r.pointer("/properties/direction").and_then(Value::as_str).unwrap_or_default().to_string();
                    if !(100..=4096).contains(&p) || seen.contains(&(p, dir.clone())) {
                        let m = format!("Security rule {} has invalid Priority {p}. Value provided: {p} Allowed values: 100-4096, unique per direction.", r["name"]);
                        return reject(st, what.to_string(), StatusCode::BAD_REQUEST, "SecurityRuleInvalidPriority", &m, None);
                    }
                    seen.push((p, dir));
                }
            }
            let existed = st.resources.contains_key(key);
            v["id"] = json!(id);
            v["name"] = json!(name);
            v["type"] = json!(ty);
            v["etag"] = json!("W/\"00000000-0000-0000-0000-000000000001\"");
            if v.get("properties").is_none() {
                v["properties"] = json!({});
            }
            v["properties"]["provisioningState"] = json!("Succeeded");
            let (pub_oct, priv_oct, net) = (st.cfg.public_octet, st.cfg.private_octet, st.cfg.net);
            if ty.ends_with("publicIPAddresses") && !existed {
                v["properties"]["ipAddress"] = json!(format!("10.{pub_oct}.{net}.{}", st.next_public));
                st.next_public += 1;
            }
            let has_config = v.pointer("/properties/ipConfigurations/0").is_some();
            if ty.ends_with("networkInterfaces") && !existed && has_config {
                v["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = json!(format!("10.{priv_oct}.{net}.{}", st.next_private));
                st.next_private += 1;
            }
            if ty.ends_with("virtualNetworks") {
                if let Some(subs) = v.pointer_mut("/properties/subnets").and_then(Value::as_array_mut) {
                    for s in subs {
                        let sn = s["name"].as_str().unwrap_or_default().to_string();
                        s["id"] = json!(format!("{id}/subnets/{sn}"));
                    }
                }
            }
            st.resources.insert(key.to_string(), Resource { id: id.to_string(), body: v.clone() });
            let loc = v["location"].as_str().unwrap_or_default().to_string();
            let (_, mut headers) = new_op(st, &loc, None, Effect::None);
            // Network PUTs answer with Azure-AsyncOperation only.
            headers.remove("location");
            let mut shown = v;
            shown["properties"]["provisioningState"] = json!("Updating");
            let mut r = (if existed { StatusCode::OK } else { StatusCode::CREATED }, axum::Json(shown)).into_response();
            r.headers_mut().extend(headers);
            r
        }
        _ => reject(st, what.to_string(), StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "The requested method is not allowed.", None),
    }
}

/// Whether a referenced id (a resource or a VNet's subnet) exists.
fn resolves(st: &State, id: &str) -> bool {
    let k = id.to_ascii_lowercase();
    if st.resources.contains_key(&k) {
        return true;
    }
    if let Some((vnet, sub)) = k.split_once("/subnets/") {
        return st.resources.get(vnet).is_some_and(|r| {
            r.body.pointer("/properties/subnets").and_then(Value::as_array).is_some_and(|a| a.iter().any(|s| s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(sub))))
        });
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("https%3A%2F%2Fmanagement.azure.com%2F.default"), "https://management.azure.com/.default");
        assert_eq!(super::percent_decode("a+b%"), "a b%");
    }
}
