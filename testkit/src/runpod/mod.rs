//! An EMULATION of RunPod's GraphQL API (`POST /graphql`) on a loopback port, for skycat's
//! RunPod backend tests. Not RunPod: it follows the published shapes listed in
//! testkit/emulators/runpod.md and nothing more.
//!
//! * Auth: `Authorization: Bearer <key>` or `?api_key=<key>`; a missing or wrong key is HTTP 401.
//! * Every operation is parsed and validated against the served part of the schema
//!   ([`schema`]): an unknown field, argument or input field, a wrong scalar or enum, a missing
//!   required field is a graphql-js-style error (HTTP 400), and is also recorded in
//!   [`RunPodEmulator::rejected`] so a test can assert that none happened.
//! * Pods keep a state machine: deploy → `RUNNING` with `runtime: null` (pulling the image) →
//!   booted (the test brought its host up: `runtime.ports` maps private 22 to a public port on
//!   the pod's IP) → `podStop` → `EXITED` → `podResume` → `RUNNING` (a new public port) →
//!   `podTerminate` → gone. [`RunPodEmulator::preempt`] moves a spot pod to `EXITED` as RunPod
//!   does on an interruption.
//! * Faults: [`RunPodEmulator::inject`] makes deploys in one data center or country answer with
//!   RunPod's error (HTTP 200, `errors[]`, `data: {field: null}`).
//!
//! Pods get IPs `<ip_prefix><n>` (the test's network-namespace range) and public ports counting
//! up from `first_public_port`; the test runs an sshd for each pod at that address and port.

pub mod graphql;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// RunPod's stock error (runpod-graphql.md, "Errors").
pub const NO_INSTANCES: &str =
    "There are no longer any instances available with the requested specifications. Please refresh and try again.";

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub api_key: String,
    /// Pod `n` (from 1) gets `<ip_prefix><n>`, e.g. `10.229.230.`.
    pub ip_prefix: String,
    pub first_public_port: u16,
}

/// One pod as the emulator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    pub id: String,
    pub name: String,
    /// The deploy input as sent.
    pub input: Value,
    pub spot: bool,
    pub desired_status: String,
    /// The test's host for this pod is up: `runtime` is reported.
    pub booted: bool,
    pub ip: String,
    pub public_port: u16,
    pub gpu_count: u32,
    pub data_center_id: Option<String>,
    pub country_code: Option<String>,
    /// The `PUBLIC_KEY` env entry (RunPod's images install it for root).
    pub public_key: Option<String>,
    /// 1-based creation order (the host index tests use).
    pub seq: u32,
}

/// One deploy attempt as the emulator answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployCall {
    pub field: String,
    pub data_center_id: Option<String>,
    pub country_code: Option<String>,
    /// The injected error message, when the deploy was refused.
    pub injected: Option<String>,
    pub pod: Option<String>,
}

#[derive(Debug, Clone)]
struct Fault {
    location: String,
    message: String,
    code: Option<String>,
}

#[derive(Default)]
struct State {
    pods: BTreeMap<String, PodState>,
    seq: u32,
    next_port: u16,
    faults: Vec<Fault>,
    deploys: Vec<DeployCall>,
    rejected: Vec<String>,
    unauthorized: u32,
    operations: Vec<String>,
}

struct Shared {
    cfg: EmulatorConfig,
    state: Mutex<State>,
}

/// The emulator, served until dropped.
pub struct RunPodEmulator {
    /// `http://127.0.0.1:<port>/`: the value of `SKYCAT_RUNPOD_ENDPOINT`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunPodEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunPodEmulator {
    pub async fn start(cfg: EmulatorConfig) -> RunPodEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let state = State { next_port: cfg.first_public_port, ..Default::default() };
        let shared = Arc::new(Shared { cfg, state: Mutex::new(state) });
        let app = Router::new().route("/graphql", post(handle)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RunPodEmulator { url: format!("http://{addr}/"), shared, task }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deploys in `location` (a data center id or a country code) fail with `message`.
    pub fn inject(&self, location: &str, message: &str, code: Option<&str>) {
        self.state().faults.push(Fault { location: location.into(), message: message.into(), code: code.map(str::to_string) });
    }

    /// Deploys in `location` fail with RunPod's "no longer any instances available".
    pub fn inject_capacity(&self, location: &str) {
        self.inject(location, NO_INSTANCES, Some("SUPPLY_CONSTRAINT"));
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    pub fn pods(&self) -> Vec<PodState> {
        self.state().pods.values().cloned().collect()
    }

    /// The pod's container is up (its host runs sshd at `ip:public_port`).
    pub fn mark_booted(&self, id: &str) {
        if let Some(p) = self.state().pods.get_mut(id) {
            if p.desired_status == "RUNNING" {
                p.booted = true;
            }
        }
    }

    /// A spot interruption: RunPod stops the pod (`EXITED`, `runtime: null`) without notice.
    pub fn preempt(&self, id: &str) -> bool {
        match self.state().pods.get_mut(id) {
            Some(p) if p.spot => {
                p.desired_status = "EXITED".into();
                p.booted = false;
                true
            }
            _ => false,
        }
    }

    pub fn deploys(&self) -> Vec<DeployCall> {
        self.state().deploys.clone()
    }

    /// Requests refused by validation (schema or syntax): a test asserts this stays empty.
    pub fn rejected(&self) -> Vec<String> {
        self.state().rejected.clone()
    }

    /// Requests refused for a missing or wrong key.
    pub fn unauthorized(&self) -> u32 {
        self.state().unauthorized
    }

    /// Root fields of every accepted operation, in order.
    pub fn operations(&self) -> Vec<String> {
        self.state().operations.clone()
    }
}

fn gql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, axum::Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }))).into_response()
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = bearer.or(params.get("api_key").map(String::as_str));
    if key != Some(shared.cfg.api_key.as_str()) {
        shared.state.lock().unwrap_or_else(|p| p.into_inner()).unauthorized += 1;
        // RunPod answers a refused key with HTTP 401 (runpod-python checks the status); the
        // body is not documented.
        return (StatusCode::UNAUTHORIZED, "401 Unauthorized").into_response();
    }
    let reject = |msg: String, code: &str| {
        shared.state.lock().unwrap_or_else(|p| p.into_inner()).rejected.push(msg.clone());
        gql_error(StatusCode::BAD_REQUEST, &msg, code)
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return reject("POST body is not JSON".into(), "BAD_REQUEST");
    };
    let Some(query) = req.get("query").and_then(Value::as_str) else {
        return reject("POST body missing `query`".into(), "BAD_REQUEST");
    };
    let variables: BTreeMap<String, Value> = match req.get("variables") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return reject("`variables` must be an object".into(), "BAD_REQUEST"),
    };
    let op = match graphql::parse(query) {
        Ok(op) => op,
        Err(e) => return reject(e, "GRAPHQL_PARSE_FAILED"),
    };
    if let Err(e) = schema::validate(&op, &variables) {
        return reject(e.message, e.code);
    }
    let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut data = serde_json::Map::new();
    let mut errors = Vec::new();
    for f in &op.selection {
        st.operations.push(f.name.clone());
        let args: BTreeMap<String, Value> = f.args.iter().map(|(k, v)| (k.clone(), graphql::to_json(v, &variables))).collect();
        let input = args.get("input").cloned().unwrap_or(Value::Null);
        let result = execute(&shared.cfg, &mut st, &f.name, &input);
        let key = f.response_key().to_string();
        match result {
            Ok(v) => {
                let v = match &f.selection {
                    Some(sel) => graphql::project(&v, sel),
                    None => v,
                };
                data.insert(key, v);
            }
            Err((message, code)) => {
                let mut e = json!({ "message": message, "path": [key.clone()] });
                if let Some(c) = code {
                    e["extensions"] = json!({ "code": c });
                }
                errors.push(e);
                data.insert(key, Value::Null);
            }
        }
    }
    let mut out = json!({ "data": Value::Object(data) });
    if !errors.is_empty() {
        out["errors"] = Value::Array(errors);
    }
    // GraphQL errors come back with HTTP 200.
    (StatusCode::OK, axum::Json(out)).into_response()
}

type ExecError = (String, Option<String>);

fn execute(cfg: &EmulatorConfig, st: &mut State, field: &str, input: &Value) -> Result<Value, ExecError> {
    let pod_id = || input.get("podId").and_then(Value::as_str).unwrap_or_default().to_string();
    match field {
        "myself" => Ok(json!({ "id": "user_emulated", "pods": st.pods.values().map(pod_json).collect::<Vec<_>>() })),
        "pod" => Ok(st.pods.get(&pod_id()).map(pod_json).unwrap_or(Value::Null)),
        "podFindAndDeployOnDemand" | "podRentInterruptable" => deploy(cfg, st, field, input),
        "podStop" => {
            let p = st.pods.get_mut(&pod_id()).ok_or_else(|| ("pod not found".to_string(), None))?;
            p.desired_status = "EXITED".into();
            p.booted = false;
            Ok(pod_json(p))
        }
        "podResume" | "podBidResume" => {
            let port = st.next_port;
            let p = st.pods.get_mut(&pod_id()).ok_or_else(|| ("pod not found".to_string(), None))?;
            if (field == "podBidResume") != p.spot {
                return Err((format!("{field} does not apply to this pod"), None));
            }
            let gpus = input.get("gpuCount").and_then(Value::as_u64).unwrap_or(0);
            if gpus != u64::from(p.gpu_count) {
                return Err(("There are not enough free GPUs on the host machine to start this pod.".into(), None));
            }
            if p.desired_status != "EXITED" {
                return Err((format!("pod is {}, not stopped", p.desired_status), None));
            }
            p.desired_status = "RUNNING".into();
            p.booted = false;
            // A resumed pod gets a new public port mapping.
            p.public_port = port;
            st.next_port = port.saturating_add(1);
            Ok(pod_json(st.pods.get(&pod_id()).expect("pod")))
        }
        "podTerminate" => match st.pods.remove(&pod_id()) {
            Some(_) => Ok(Value::Null),
            None => Err(("pod not found to terminate".into(), None)),
        },
        other => Err((format!("{other} is not served by the emulator"), None)),
    }
}

fn deploy(cfg: &EmulatorConfig, st: &mut State, field: &str, input: &Value) -> Result<Value, ExecError> {
    let s = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
    let dc = s("dataCenterId");
    let cc = s("countryCode");
    let mut call = DeployCall { field: field.into(), data_center_id: dc.clone(), country_code: cc.clone(), injected: None, pod: None };
    let fault = st.faults.iter().find(|f| Some(&f.location) == dc.as_ref() || Some(&f.location) == cc.as_ref()).cloned();
    if let Some(f) = fault {
        call.injected = Some(f.message.clone());
        st.deploys.push(call);
        return Err((f.message, f.code));
    }
    // What RunPod needs to place a pod, though the schema leaves it nullable.
    for required in ["gpuTypeId", "imageName", "cloudType"] {
        if input.get(required).is_none_or(Value::is_null) {
            st.deploys.push(call);
            return Err((format!("{required} is required"), Some("BAD_USER_INPUT".into())));
        }
    }
    let gpu_count = input.get("gpuCount").and_then(Value::as_u64).unwrap_or(1) as u32;
    st.seq += 1;
    let seq = st.seq;
    let id = pod_id(seq);
    let public_key = input
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("key").and_then(Value::as_str) == Some("PUBLIC_KEY"))
        .and_then(|e| e.get("value").and_then(Value::as_str))
        .map(str::to_string);
    let pod = PodState {
        id: id.clone(),
        name: s("name").unwrap_or_default(),
        input: input.clone(),
        spot: field == "podRentInterruptable",
        desired_status: "RUNNING".into(),
        booted: false,
        ip: format!("{}{seq}", cfg.ip_prefix),
        public_port: st.next_port,
        gpu_count,
        data_center_id: dc,
        country_code: cc,
        public_key,
        seq,
    };
    st.next_port = st.next_port.saturating_add(1);
    let out = pod_json(&pod);
    st.pods.insert(id.clone(), pod);
    call.pod = Some(id);
    st.deploys.push(call);
    Ok(out)
}

/// 14 lowercase alphanumerics, as RunPod's pod ids.
fn pod_id(seq: u32) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = u64::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    (0..14)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize] as char;
            x = x / 36 + u64::from(seq).wrapping_mul(7919);
            c
        })
        .collect()
}

fn pod_json(p: &PodState) -> Value {
    let bid = p.input.get("bidPerGpu").and_then(Value::as_f64);
    let env: Vec<String> = p
        .input
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| format!("{}={}", e.get("key").and_then(Value::as_str).unwrap_or(""), e.get("value").and_then(Value::as_str).unwrap_or("")))
        .collect();
    let runtime = if p.booted && p.desired_status == "RUNNING" {
        let mut ports = vec![json!({ "ip": p.ip, "isIpPublic": true, "privatePort": 22, "publicPort": p.public_port, "type": "tcp" })];
        // Other exposed ports: `http` ones go through RunPod's proxy (a private address).
        let spec = p.input.get("ports").and_then(Value::as_str).unwrap_or("");
        for (k, entry) in spec.split(',').filter(|e| !e.trim().is_empty()).enumerate() {
            let (port, kind) = entry.trim().split_once('/').unwrap_or((entry.trim(), "tcp"));
            let Ok(port) = port.parse::<u16>() else { continue };
            if port == 22 {
                continue;
            }
            ports.push(json!({
                "ip": if kind == "http" { format!("100.65.0.{}", p.seq) } else { p.ip.clone() },
                "isIpPublic": kind != "http",
                "privatePort": port,
                "publicPort": 60000u16.saturating_add(p.seq as u16 * 10 + k as u16),
                "type": kind,
            }));
        }
        json!({ "uptimeInSeconds": 1, "ports": ports, "gpus": [], "container": { "cpuPercent": 0, "memoryPercent": 0 } })
    } else {
        Value::Null
    };
    json!({
        "id": p.id,
        "name": p.name,
        "desiredStatus": p.desired_status,
        "lastStatusChange": format!("Rented by User: emulated ({})", p.desired_status),
        "costPerHr": bid.map(|b| b * f64::from(p.gpu_count)).unwrap_or(0.44 * f64::from(p.gpu_count)),
        "gpuCount": p.gpu_count,
        "vcpuCount": p.input.get("minVcpuCount").cloned().unwrap_or(json!(4)),
        "memoryInGb": p.input.get("minMemoryInGb").cloned().unwrap_or(json!(24)),
        "podType": if p.spot { "INTERRUPTABLE" } else { "RESERVED" },
        "imageName": p.input.get("imageName").cloned().unwrap_or(Value::Null),
        "machineId": format!("m{}", &p.id[..11]),
        "env": env,
        "machine": { "gpuDisplayName": p.input.get("gpuTypeId").cloned().unwrap_or(Value::Null), "podHostId": format!("{}-{:08x}", p.id, p.seq) },
        "runtime": runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ids_look_like_runpods() {
        let a = pod_id(1);
        assert_eq!(a.len(), 14);
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(pod_id(1), pod_id(2));
    }
}
