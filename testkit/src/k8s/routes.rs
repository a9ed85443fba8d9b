//! Request dispatch: bearer auth, the core/v1 paths this emulation serves, and `Status` errors.
//! Anything else is 404 (or 405 for a verb a path lacks) and is kept as a rejection.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State as Ext};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::listing::{list_body, page, ListKey, Selectors};
use super::state::{Resource, State};
use super::{discovery, exec, openapi, sandbox, services, table, validate, watch};

pub type Shared = Arc<Mutex<State>>;

pub fn router(state: Shared) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

pub fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn json_response(code: u16, body: Vec<u8>) -> Response {
    json_typed(code, body, "application/json")
}

fn json_typed(code: u16, body: Vec<u8>, content_type: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .header("Cache-Control", "no-cache, private")
        .body(Body::from(body))
        .expect("response")
}

pub fn value_response(code: u16, value: &Value) -> Response {
    json_response(code, serde_json::to_vec(value).expect("JSON value serializes"))
}

/// A metav1.Status failure.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        body["details"] = d;
    }
    value_response(code, &body)
}

pub fn not_found(kind_plural: &str, name: &str) -> Response {
    status(404, "NotFound", &format!("{kind_plural} \"{name}\" not found"), Some(json!({"name": name, "kind": kind_plural})))
}

/// What a handler gets: the parsed request.
pub struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub line: String,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn params(&self, name: &str) -> Vec<String> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("1" | "true" | "True"))
    }
    pub fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').next().unwrap_or("").contains("as=Table"))
    }
}

/// Refuses the request and records why.
pub fn refuse(state: &Shared, call: &Call, code: u16, reason: &str, message: &str) -> Response {
    lock(state).reject(format!("{}: {code} {message}", call.line));
    status(code, reason, message, None)
}

async fn handle(Ext(state): Ext<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let line = if raw_query.is_empty() { format!("{method} {path}") } else { format!("{method} {path}?{raw_query}") };
    let authorized = {
        let mut s = lock(&state);
        s.requests.push(line.clone());
        let expected = format!("Bearer {}", s.token);
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    };
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized", None);
    }
    let call = Call {
        method,
        segments: path.split('/').filter(|s| !s.is_empty()).map(|s| s.to_string()).collect(),
        query: form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect(),
        headers: req.headers().clone(),
        line,
    };
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let get = call.method == Method::GET;
    match segments.as_slice() {
        ["version"] if get => value_response(200, &discovery::version()),
        ["api"] if get => {
            let host = call.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
            value_response(200, &discovery::api_versions(&host))
        }
        ["api", "v1"] if get => value_response(200, &discovery::core_v1_resources()),
        ["apis"] if get => value_response(200, &discovery::api_groups()),
        ["openapi", "v3"] if get => value_response(200, &openapi::discovery()),
        ["openapi", "v3", "api", "v1"] if get => value_response(200, &openapi::core_v1()),
        // The OpenAPI v2 document is not emulated (kubectl 1.32 reads v3). Not a rejection: a
        // real server has it.
        ["openapi", ..] => status(404, "NotFound", "the server could not find the requested resource", None),
        ["api", "v1", "nodes"] if get => list_or_watch(&state, &call, Resource::Node, None).await,
        ["api", "v1", "nodes", name] if get => get_one(&state, &call, Resource::Node, None, name),
        ["api", "v1", "pods"] if get => list_or_watch(&state, &call, Resource::Pod, None).await,
        ["api", "v1", "services"] if get => list_or_watch(&state, &call, Resource::Service, None).await,
        ["api", "v1", "namespaces"] if get => namespaces(&state, None),
        ["api", "v1", "namespaces", ns] if get => namespaces(&state, Some(ns)),
        ["api", "v1", "namespaces", _, "events"] if get => {
            let rv = lock(&state).resource_version();
            json_response(
                200,
                format!("{{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"items\":[]}}")
                    .into_bytes(),
            )
        }
        ["api", "v1", "namespaces", ns, "pods"] if get => list_or_watch(&state, &call, Resource::Pod, Some(ns)).await,
        ["api", "v1", "namespaces", ns, "pods"] if call.method == Method::POST => create_pod(&state, &call, ns, req).await,
        ["api", "v1", "namespaces", ns, "pods", name] if get => get_one(&state, &call, Resource::Pod, Some(ns), name),
        ["api", "v1", "namespaces", ns, "pods", name] if call.method == Method::DELETE => delete_pod(&state, &call, ns, name, req).await,
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] if get || call.method == Method::POST => {
            let (ns, name) = (ns.to_string(), name.to_string());
            exec::handle(state.clone(), &call, &ns, &name, req).await
        }
        ["api", "v1", "namespaces", ns, "services"] if get => list_or_watch(&state, &call, Resource::Service, Some(ns)).await,
        ["api", "v1", "namespaces", ns, "services"] if call.method == Method::POST => {
            let ns = ns.to_string();
            match read_body(req).await {
                Ok(body) => services::create(&state, &call, &ns, &body),
                Err(response) => response,
            }
        }
        ["api", "v1", "namespaces", ns, "services", name] if get => get_one(&state, &call, Resource::Service, Some(ns), name),
        ["api", "v1", "namespaces", ns, "services", name] if call.method == Method::DELETE => services::delete(&state, ns, name),
        ["version"]
        | ["api"]
        | ["api", "v1"]
        | ["apis"]
        | ["api", "v1", "nodes", ..]
        | ["api", "v1", "pods"]
        | ["api", "v1", "services"]
        | ["api", "v1", "namespaces", ..] => {
            let message = format!("the server does not allow this method on the requested resource ({} {path})", call.method);
            refuse(&state, &call, 405, "MethodNotAllowed", &message)
        }
        _ => refuse(&state, &call, 404, "NotFound", "the server could not find the requested resource"),
    }
}

async fn read_body(req: Request) -> Result<Vec<u8>, Response> {
    axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| status(400, "BadRequest", &format!("reading the request body: {e}"), None))
}

fn plural(resource: Resource) -> &'static str {
    match resource {
        Resource::Node => "nodes",
        Resource::Pod => "pods",
        Resource::Service => "services",
    }
}

fn kind(resource: Resource) -> &'static str {
    match resource {
        Resource::Node => "Node",
        Resource::Pod => "Pod",
        Resource::Service => "Service",
    }
}

/// 403 for a pod list while `forbid_pod_list` is set, worded as the RBAC authorizer words it.
fn forbidden_pod_list(state: &Shared, call: &Call, namespace: Option<&str>) -> Option<Response> {
    if !lock(state).forbid_pod_list {
        return None;
    }
    let verb = if call.is_watch() { "watch" } else { "list" };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "pods is forbidden: User \"system:serviceaccount:skycat:skycat\" cannot {verb} resource \"pods\" in API group \"\" {scope}"
    );
    Some(status(403, "Forbidden", &message, Some(json!({"kind": "pods"}))))
}

async fn list_or_watch(state: &Shared, call: &Call, resource: Resource, namespace: Option<&str>) -> Response {
    if resource == Resource::Pod {
        if let Some(response) = forbidden_pod_list(state, call, namespace) {
            return response;
        }
    }
    let selectors = match Selectors::from_query(&call.query, resource) {
        Ok(s) => s,
        Err(message) => return refuse(state, call, 400, "BadRequest", &message),
    };
    if call.is_watch() {
        return watch::serve(state, call, resource, namespace.map(str::to_string), selectors);
    }
    let limit: usize = call.param("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let continue_token = call.param("continue").unwrap_or("");
    let s = lock(state);
    let in_namespace = |value: &Value| namespace.is_none_or(|ns| value["metadata"]["namespace"] == ns);
    let unfiltered = selectors.is_empty();
    let items: Vec<(ListKey, &Arc<super::state::Stored>)> = match resource {
        Resource::Node => {
            s.nodes.iter().filter(|(_, n)| unfiltered || selectors.matches(&n.value)).map(|(k, n)| (("", k.as_str()), n)).collect()
        }
        Resource::Pod => {
            let in_scope = |ns: &str| namespace.is_none_or(|want| want == ns);
            s.pods
                .iter()
                .filter(|((ns, _), p)| in_scope(ns) && (unfiltered || selectors.matches(&p.stored.value)))
                .map(|((ns, name), p)| ((ns.as_str(), name.as_str()), &p.stored))
                .collect()
        }
        Resource::Service => s
            .services
            .iter()
            .filter(|(_, v)| in_namespace(&v.value) && selectors.matches(&v.value))
            .map(|((ns, name), v)| ((ns.as_str(), name.as_str()), v))
            .collect(),
    };
    let rv = s.resource_version();
    let page = match page(items, limit, continue_token, rv) {
        Ok(p) => p,
        Err(message) => {
            drop(s);
            return refuse(state, call, 400, "BadRequest", &message);
        }
    };
    if call.wants_table() {
        let values: Vec<&Value> = page.items.iter().map(|s| &s.value).collect();
        let include = call.param("includeObject").unwrap_or("Metadata");
        let body = table::render(resource, &values, page.resource_version, include, page.continue_token.as_deref());
        return json_typed(200, body, "application/json;as=Table;v=v1;g=meta.k8s.io");
    }
    json_response(200, list_body(kind(resource), &page))
}

fn get_one(state: &Shared, call: &Call, resource: Resource, namespace: Option<&str>, name: &str) -> Response {
    let s = lock(state);
    let key = (namespace.unwrap_or("").to_string(), name.to_string());
    let stored = match resource {
        Resource::Node => s.nodes.get(name).cloned(),
        Resource::Pod => s.pods.get(&key).map(|p| p.stored.clone()),
        Resource::Service => s.services.get(&key).cloned(),
    };
    drop(s);
    let Some(stored) = stored else {
        return not_found(plural(resource), name);
    };
    if call.wants_table() {
        let rv = stored.value["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        let body = table::render(resource, &[&stored.value], rv, call.param("includeObject").unwrap_or("Metadata"), None);
        return json_typed(200, body, "application/json;as=Table;v=v1;g=meta.k8s.io");
    }
    json_response(200, stored.bytes.clone())
}

fn namespaces(state: &Shared, name: Option<&str>) -> Response {
    let s = lock(state);
    let object = |ns: &str| json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns, "uid": format!("00000000-0000-4000-8000-{:012x}", ns.len()), "resourceVersion": "1", "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    match name {
        Some(ns) if s.namespaces.contains(ns) => value_response(200, &object(ns)),
        Some(ns) => not_found("namespaces", ns),
        None => {
            let items: Vec<Value> = s.namespaces.iter().map(|ns| object(ns)).collect();
            value_response(
                200,
                &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": s.resource_version().to_string()}, "items": items}),
            )
        }
    }
}

/// A random-looking 5-character suffix for generateName, from the names' alphabet.
pub fn name_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    (0..5)
        .map(|_| {
            x ^= x >> 13;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

async fn create_pod(state: &Shared, call: &Call, namespace: &str, req: Request) -> Response {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let mut s = lock(state);
    let uid = s.new_uid();
    let suffix = name_suffix(s.resource_version());
    let pod = match validate::new_pod(&body, namespace, &suffix, &uid) {
        Ok(pod) => pod,
        Err(refusal) => {
            s.reject(format!("{}: {} {}", call.line, refusal.code, refusal.message));
            return status(refusal.code, refusal.reason, &refusal.message, None);
        }
    };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    if s.pods.contains_key(&(namespace.to_string(), name.clone())) {
        return status(409, "AlreadyExists", &format!("pods \"{name}\" already exists"), Some(json!({"name": name, "kind": "pods"})));
    }
    let stored = s.insert_pod(pod, false);
    json_response(201, stored.bytes.clone())
}

async fn delete_pod(state: &Shared, call: &Call, namespace: &str, name: &str, req: Request) -> Response {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if !body.is_empty() && serde_json::from_slice::<Value>(&body).map(|v| !v.is_object()).unwrap_or(true) {
        return refuse(state, call, 400, "BadRequest", "the body of the request was in an unknown format: not DeleteOptions");
    }
    let deleted = lock(state).delete_pod(&(namespace.to_string(), name.to_string()));
    let Some((stored, released)) = deleted else {
        return not_found("pods", name);
    };
    // The answer comes once the pod's processes are gone and its home is empty.
    let shared = state.clone();
    let _ = tokio::task::spawn_blocking(move || sandbox::reset_and_free(&shared, released.into_iter().collect())).await;
    json_response(200, stored.bytes.clone())
}
