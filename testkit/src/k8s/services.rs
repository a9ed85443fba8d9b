//! Services (create, get, list, watch, delete) of type ClusterIP, NodePort and LoadBalancer:
//! the body is checked as the API server validates it, a cluster IP comes from 10.96.0.0/12,
//! node ports from 30000–32767, and a LoadBalancer gets `status.loadBalancer.ingress[0].ip` at
//! once from a test-settable pool (default 10.97.0.x). No address is ever dialed.

use serde_json::{json, Value};

use super::routes::{json_response, lock, not_found, status, Call, Shared};
use super::state::{Resource, State};
use super::validate::{self, bad_request, is_dns1123_label, unknown_field, Refusal};

const SPEC_FIELDS: &[&str] = &[
    "allocateLoadBalancerNodePorts",
    "clusterIP",
    "clusterIPs",
    "externalIPs",
    "externalName",
    "externalTrafficPolicy",
    "healthCheckNodePort",
    "internalTrafficPolicy",
    "ipFamilies",
    "ipFamilyPolicy",
    "loadBalancerClass",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "ports",
    "publishNotReadyAddresses",
    "selector",
    "sessionAffinity",
    "sessionAffinityConfig",
    "trafficDistribution",
    "type",
];
const PORT_FIELDS: &[&str] = &["appProtocol", "name", "nodePort", "port", "protocol", "targetPort"];
const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

fn invalid(name: &str, detail: String) -> Refusal {
    Refusal { code: 422, reason: "Invalid", message: format!("Service \"{name}\" is invalid: {detail}") }
}

fn strict(svc: &Value) -> Result<(), Refusal> {
    let mut checks: Vec<(&Value, &[&str], String)> =
        vec![(svc, &["apiVersion", "kind", "metadata", "spec", "status"], String::new()), (&svc["spec"], SPEC_FIELDS, "spec".into())];
    for (i, p) in svc["spec"]["ports"].as_array().into_iter().flatten().enumerate() {
        checks.push((p, PORT_FIELDS, format!("spec.ports[{i}]")));
    }
    for (object, known, path) in checks {
        if let Some(detail) = unknown_field(object, known, &path) {
            return Err(bad_request(format!("Service in version \"v1\" cannot be handled as a Service: strict decoding error: {detail}")));
        }
    }
    Ok(())
}

fn port_number(v: &Value) -> Option<u16> {
    v.as_u64().filter(|p| (1..=65535).contains(p)).map(|p| p as u16)
}

/// Checks the ports and fills their defaults; node ports are allocated when `node_ports`.
fn check_ports(state: &mut State, name: &str, ports: &mut [Value], node_ports: bool) -> Result<Vec<u16>, Refusal> {
    if ports.is_empty() {
        return Err(invalid(name, "spec.ports: Required value".into()));
    }
    let many = ports.len() > 1;
    let mut names = Vec::new();
    let mut requested_node_ports = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let path = format!("spec.ports[{i}]");
        let Some(port) = port_number(&p["port"]) else {
            return Err(invalid(name, format!("{path}.port: Invalid value: {}: must be between 1 and 65535, inclusive", p["port"])));
        };
        let port_name = p["name"].as_str().unwrap_or("").to_string();
        if many && port_name.is_empty() {
            return Err(invalid(name, format!("{path}.name: Required value")));
        }
        if !port_name.is_empty() && !is_dns1123_label(&port_name) {
            return Err(invalid(name, format!("{path}.name: Invalid value: \"{port_name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
        }
        if names.contains(&port_name) {
            return Err(invalid(name, format!("{path}.name: Duplicate value: \"{port_name}\"")));
        }
        names.push(port_name);
        let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(invalid(
                name,
                format!("{path}.protocol: Unsupported value: \"{protocol}\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
            ));
        }
        p["protocol"] = json!(protocol);
        match &p["targetPort"] {
            Value::Null => p["targetPort"] = json!(port),
            Value::Number(_) if port_number(&p["targetPort"]).is_some() => {}
            Value::String(s)
                if !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {}
            other => {
                return Err(invalid(
                    name,
                    format!("{path}.targetPort: Invalid value: {other}: must be between 1 and 65535, inclusive, or an IANA service name"),
                ))
            }
        }
        match &p["nodePort"] {
            Value::Null => {}
            v if !node_ports => {
                return Err(invalid(name, format!("{path}.nodePort: Forbidden: may not be used when `type` is 'ClusterIP' ({v})")))
            }
            v => {
                let wanted = port_number(v).filter(|n| NODE_PORT_RANGE.contains(n));
                let Some(wanted) = wanted else {
                    return Err(invalid(name, format!("{path}.nodePort: Invalid value: {v}: provided port is not in the valid range. The range of valid ports is 30000-32767")));
                };
                if state.node_ports.contains(&wanted) || requested_node_ports.contains(&wanted) {
                    return Err(invalid(name, format!("{path}.nodePort: Invalid value: {wanted}: provided port is already allocated")));
                }
                requested_node_ports.push(wanted);
            }
        }
    }
    let mut allocated = Vec::new();
    if node_ports {
        for p in ports.iter_mut() {
            let port = match port_number(&p["nodePort"]) {
                Some(n) => n,
                None => {
                    let free = NODE_PORT_RANGE
                        .clone()
                        .find(|n| !state.node_ports.contains(n) && !requested_node_ports.contains(n) && !allocated.contains(n));
                    let Some(free) = free else {
                        return Err(Refusal { code: 500, reason: "InternalError", message: "range is full".into() });
                    };
                    p["nodePort"] = json!(free);
                    free
                }
            };
            allocated.push(port);
        }
    }
    Ok(allocated)
}

fn build(state: &mut State, body: &[u8], namespace: &str) -> Result<Value, Refusal> {
    let mut svc = validate::decode(body, "Service", namespace)?;
    strict(&svc)?;
    let suffix = super::routes::name_suffix(state.resource_version());
    let name = validate::object_name(&svc, "Service", &suffix)?;
    if state.services.contains_key(&(namespace.to_string(), name.clone())) {
        return Err(Refusal { code: 409, reason: "AlreadyExists", message: format!("services \"{name}\" already exists") });
    }
    let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    if !matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        return Err(invalid(&name, format!("spec.type: Unsupported value: \"{kind}\": supported values: \"ClusterIP\", \"LoadBalancer\", \"NodePort\" (ExternalName is not emulated)")));
    }
    let mut ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let node_ports = check_ports(state, &name, &mut ports, kind != "ClusterIP")?;
    state.node_ports.extend(node_ports);
    state.cluster_ip_next += 1;
    let n = state.cluster_ip_next + 9; // 10.96.0.1 is the kubernetes service, .10 kube-dns
    let cluster_ip = format!("10.96.{}.{}", n / 254, n % 254 + 1);
    let spec = &mut svc["spec"];
    spec["ports"] = json!(ports);
    spec["type"] = json!(kind);
    spec["clusterIP"] = json!(cluster_ip);
    spec["clusterIPs"] = json!([cluster_ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    spec["internalTrafficPolicy"] = json!(spec["internalTrafficPolicy"].as_str().unwrap_or("Cluster"));
    spec["sessionAffinity"] = json!(spec["sessionAffinity"].as_str().unwrap_or("None"));
    if kind != "ClusterIP" {
        spec["externalTrafficPolicy"] = json!(spec["externalTrafficPolicy"].as_str().unwrap_or("Cluster"));
    }
    svc["status"] = json!({"loadBalancer": {}});
    if kind == "LoadBalancer" {
        svc["spec"]["allocateLoadBalancerNodePorts"] = json!(true);
        let ip = state.load_balancer_pool.pop_front().unwrap_or_else(|| {
            state.load_balancer_next += 1;
            format!("10.97.{}.{}", state.load_balancer_next / 254, state.load_balancer_next % 254)
        });
        svc["status"]["loadBalancer"]["ingress"] = json!([{"ip": ip, "ipMode": "VIP"}]);
    }
    let uid = state.new_uid();
    let meta = &mut svc["metadata"];
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    meta["uid"] = json!(uid);
    meta["creationTimestamp"] = json!(super::objects::now());
    Ok(svc)
}

pub fn create(state: &Shared, call: &Call, namespace: &str, body: &[u8]) -> axum::response::Response {
    let mut s = lock(state);
    match build(&mut s, body, namespace) {
        Ok(svc) => {
            let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
            s.namespaces.insert(namespace.to_string());
            let stored = s.commit(Resource::Service, "ADDED", svc);
            s.services.insert((namespace.to_string(), name), stored.clone());
            json_response(201, stored.bytes.clone())
        }
        Err(refusal) => {
            if refusal.code != 409 {
                s.reject(format!("{}: {} {}", call.line, refusal.code, refusal.message));
            }
            let details = (refusal.code == 409).then(|| json!({"kind": "services"}));
            status(refusal.code, refusal.reason, &refusal.message, details)
        }
    }
}

pub fn delete(state: &Shared, namespace: &str, name: &str) -> axum::response::Response {
    let mut s = lock(state);
    let Some(svc) = s.services.remove(&(namespace.to_string(), name.to_string())) else {
        return not_found("services", name);
    };
    for p in svc.value["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_u64() {
            s.node_ports.remove(&(n as u16));
        }
    }
    let stored = s.commit(Resource::Service, "DELETED", svc.value.clone());
    json_response(200, stored.bytes.clone())
}
