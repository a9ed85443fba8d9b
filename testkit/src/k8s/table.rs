//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, what `kubectl
//! get` asks for): a meta.k8s.io/v1 Table with the columns of the real printers
//! (pkg/printers/internalversion/printers.go) for nodes, pods and services. Each row carries its
//! object as PartialObjectMetadata (the default, `includeObject=Metadata`: kubectl reads labels
//! for `-L` and the namespace for `-A` from it), the whole object (`Object`) or nothing (`None`).

use serde_json::{json, Value};

use super::state::Resource;

fn column(name: &str, kind: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

/// kubectl's "AGE" (apimachinery duration.HumanDuration).
pub fn human_age(created: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if minutes < 10 => format!("{minutes}m{}s", secs % 60),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 192 => format!("{days}d{}h", hours % 24),
        _ => format!("{days}d"),
    }
}

fn age(object: &Value) -> String {
    human_age(object["metadata"]["creationTimestamp"].as_str().unwrap_or(""))
}

fn text(v: &Value) -> String {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or("<none>").to_string()
}

fn node_columns() -> Vec<Value> {
    vec![
        column("Name", "string", "name", "Name must be unique within a namespace.", 0),
        column("Status", "string", "", "The status of the node", 0),
        column("Roles", "string", "", "The roles of the node", 0),
        column("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        column("Version", "string", "", "Kubelet Version reported by the node.", 0),
        column("Internal-IP", "string", "", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
        column("External-IP", "string", "", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
        column("OS-Image", "string", "", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
        column("Kernel-Version", "string", "", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
        column(
            "Container-Runtime",
            "string",
            "",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            1,
        ),
    ]
}

fn node_cells(node: &Value) -> Vec<Value> {
    let ready = node["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if node["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let address = |kind: &str| {
        node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .map(|a| text(&a["address"]))
            .unwrap_or("<none>".into())
    };
    let info = &node["status"]["nodeInfo"];
    vec![
        node["metadata"]["name"].clone(),
        json!(status),
        json!(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }),
        json!(age(node)),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(text(&info["osImage"])),
        json!(text(&info["kernelVersion"])),
        json!(text(&info["containerRuntimeVersion"])),
    ]
}

fn pod_columns() -> Vec<Value> {
    vec![
        column("Name", "string", "name", "Name must be unique within a namespace.", 0),
        column("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
        column("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
        column(
            "Restarts",
            "string",
            "",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            0,
        ),
        column("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        column("IP", "string", "", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
        column("Node", "string", "", "NodeName is a request to schedule this pod onto a specific node.", 1),
        column("Nominated Node", "string", "", "nominatedNodeName is set when this pod preempts other pods on the node.", 1),
        column("Readiness Gates", "string", "", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
    ]
}

/// The printer's STATUS: the pod's reason, else a waiting/terminated container's reason, else
/// the phase.
fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["phase"].as_str().unwrap_or("Pending").to_string();
    if let Some(r) = status["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    for cs in status["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = r.to_string();
        } else if let Some(r) = cs["state"]["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
            if status["reason"].is_null() {
                reason = r.to_string();
            }
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        reason = "Terminating".into();
    }
    reason
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    let total = pod["spec"]["containers"].as_array().map(Vec::len).unwrap_or(0);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    vec![
        pod["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts.to_string()),
        json!(age(pod)),
        json!(text(&pod["status"]["podIP"])),
        json!(text(&pod["spec"]["nodeName"])),
        json!(text(&pod["status"]["nominatedNodeName"])),
        json!("<none>"),
    ]
}

fn service_columns() -> Vec<Value> {
    vec![
        column("Name", "string", "name", "Name must be unique within a namespace.", 0),
        column("Type", "string", "", "type determines how the Service is exposed.", 0),
        column("Cluster-IP", "string", "", "clusterIP is the IP address of the service.", 0),
        column(
            "External-IP",
            "string",
            "",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            0,
        ),
        column("Port(s)", "string", "", "The list of ports that are exposed by this service.", 0),
        column("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        column("Selector", "string", "", "Route service traffic to pods with label keys and values matching this selector.", 1),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let external: Vec<String> = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect();
    let external = match (spec["type"].as_str(), external.is_empty()) {
        (Some("LoadBalancer"), true) => "<pending>".to_string(),
        (_, true) => "<none>".to_string(),
        _ => external.join(","),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_u64() {
                Some(np) => format!("{}:{np}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    let selector: Vec<String> =
        spec["selector"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    vec![
        svc["metadata"]["name"].clone(),
        spec["type"].clone(),
        json!(text(&spec["clusterIP"])),
        json!(external),
        json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") }),
        json!(age(svc)),
        json!(if selector.is_empty() { "<none>".to_string() } else { selector.join(",") }),
    ]
}

fn partial_metadata(object: &Value) -> Value {
    let mut meta = object["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

/// A kind's row printer.
type Printer = fn(&Value) -> Vec<Value>;

/// The Table for `objects` as JSON bytes.
pub fn render(
    resource: Resource,
    objects: &[&Value],
    resource_version: u64,
    include_object: &str,
    continue_token: Option<&str>,
) -> Vec<u8> {
    let (columns, cells): (Vec<Value>, Printer) = match resource {
        Resource::Node => (node_columns(), node_cells),
        Resource::Pod => (pod_columns(), pod_cells),
        Resource::Service => (service_columns(), service_cells),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o)});
            match include_object {
                "None" => {}
                "Object" => row["object"] = (*o).clone(),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows});
    serde_json::to_vec(&table).expect("JSON value serializes")
}
