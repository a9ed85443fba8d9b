//! Discovery documents (legacy, unaggregated JSON): `/version`, `/api`, `/api/v1`, `/apis`. The
//! verbs listed are the ones this emulation serves, so a client that reads them is not invited to
//! call what would be refused.

use serde_json::{json, Value};

use super::objects::KUBELET_VERSION;

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": KUBELET_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:03:26Z", "goVersion": "go1.23.6", "compiler": "gc", "platform": "linux/amd64"
    })
}

pub fn api_versions(host: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
}

pub fn api_groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

fn resource(name: &str, singular: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

/// Members of `kubectl get all`.
fn with_category_all(mut r: Value) -> Value {
    r["categories"] = json!(["all"]);
    r
}

pub fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            resource("events", "event", true, "Event", &["list"], &["ev"]),
            resource("namespaces", "namespace", false, "Namespace", &["get", "list"], &["ns"]),
            resource("nodes", "node", false, "Node", &["get", "list", "watch"], &["no"]),
            with_category_all(resource("pods", "pod", true, "Pod", &["create", "delete", "get", "list", "watch"], &["po"])),
            resource("pods/exec", "", true, "PodExecOptions", &["create", "get"], &[]),
            with_category_all(resource("services", "service", true, "Service", &["create", "delete", "get", "list", "watch"], &["svc"])),
        ]
    })
}
