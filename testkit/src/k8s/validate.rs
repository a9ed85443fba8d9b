//! Create-time checks and defaults for Pods, as the API server's decoding (strict field
//! validation), validation (422 Invalid) and defaulting/admission do. Unknown fields are refused
//! (fieldValidation=Strict) whatever the request says, so a typo in a client's body fails its test.

use serde_json::{json, Map, Value};

use super::objects::now;
use super::quantity::parse_milli;

/// A refused body: HTTP code, Status reason and message.
#[derive(Debug)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

pub fn bad_request(message: String) -> Refusal {
    Refusal { code: 400, reason: "BadRequest", message }
}

fn invalid(kind: &str, name: &str, detail: String) -> Refusal {
    Refusal { code: 422, reason: "Invalid", message: format!("{kind} \"{name}\" is invalid: {detail}") }
}

const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];
const POD_SPEC_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
];
const CONTAINER_FIELDS: &[&str] = &[
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
];
const RESOURCES_FIELDS: &[&str] = &["claims", "limits", "requests"];
const TOLERATION_FIELDS: &[&str] = &["effect", "key", "operator", "tolerationSeconds", "value"];
const ENV_FIELDS: &[&str] = &["name", "value", "valueFrom"];

/// `strict decoding error: unknown field "path.x"` for the first field of `object` not in `known`.
pub fn unknown_field(object: &Value, known: &[&str], path: &str) -> Option<String> {
    let map = object.as_object()?;
    let field = map.keys().find(|k| !known.contains(&k.as_str()))?;
    let full = if path.is_empty() { field.clone() } else { format!("{path}.{field}") };
    Some(format!("unknown field \"{full}\""))
}

/// A lowercase RFC 1123 subdomain (object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label_loose)
}

fn is_dns1123_label_loose(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') && b[0] != b'-' && b[b.len() - 1] != b'-'
}

/// A lowercase RFC 1123 label (container and port names, at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_label_loose(s)
}

pub const SUBDOMAIN_HELP: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Parses the body and checks apiVersion/kind and the namespace against the request's.
pub fn decode(body: &[u8], kind: &str, namespace: &str) -> Result<Value, Refusal> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("the body of the request was in an unknown format: {e}")))?;
    if !value.is_object() {
        return Err(bad_request("the body of the request was in an unknown format: not a JSON object".into()));
    }
    match value["kind"].as_str() {
        None | Some("") => return Err(bad_request(format!("Object 'Kind' is missing in '{}'", String::from_utf8_lossy(body)))),
        Some(k) if k != kind => return Err(bad_request(format!("the kind in the data ({k}) does not match the expected kind ({kind})"))),
        _ => {}
    }
    match value["apiVersion"].as_str() {
        Some("v1") => {}
        other => {
            return Err(bad_request(format!(
                "the API version in the data ({}) does not match the expected API version (v1)",
                other.unwrap_or("")
            )))
        }
    }
    if let Some(ns) = value["metadata"]["namespace"].as_str() {
        if ns != namespace {
            return Err(bad_request("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
    }
    Ok(value)
}

/// The object's name, or `generateName` + `suffix`.
pub fn object_name(value: &Value, kind: &str, suffix: &str) -> Result<String, Refusal> {
    let meta = &value["metadata"];
    let name = match (meta["name"].as_str().filter(|n| !n.is_empty()), meta["generateName"].as_str().filter(|n| !n.is_empty())) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}{suffix}"),
        (None, None) => return Err(invalid(kind, "", "metadata.name: Required value: name or generateName is required".into())),
    };
    if !is_dns1123_subdomain(&name) {
        return Err(invalid(kind, &name, format!("metadata.name: Invalid value: \"{name}\": {SUBDOMAIN_HELP}")));
    }
    Ok(name)
}

fn strict(value: &Value) -> Result<(), Refusal> {
    let strict_error =
        |detail: String| bad_request(format!("Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: {detail}"));
    let checks: Vec<(&Value, &[&str], String)> = {
        let mut c: Vec<(&Value, &[&str], String)> = vec![
            (value, &["apiVersion", "kind", "metadata", "spec", "status"], String::new()),
            (&value["metadata"], OBJECT_META_FIELDS, "metadata".into()),
            (&value["spec"], POD_SPEC_FIELDS, "spec".into()),
        ];
        for (i, container) in value["spec"]["containers"].as_array().into_iter().flatten().enumerate() {
            let path = format!("spec.containers[{i}]");
            c.push((container, CONTAINER_FIELDS, path.clone()));
            c.push((&container["resources"], RESOURCES_FIELDS, format!("{path}.resources")));
            for (j, env) in container["env"].as_array().into_iter().flatten().enumerate() {
                c.push((env, ENV_FIELDS, format!("{path}.env[{j}]")));
            }
        }
        for (i, toleration) in value["spec"]["tolerations"].as_array().into_iter().flatten().enumerate() {
            c.push((toleration, TOLERATION_FIELDS, format!("spec.tolerations[{i}]")));
        }
        c
    };
    for (object, known, path) in checks {
        if let Some(detail) = unknown_field(object, known, &path) {
            return Err(strict_error(detail));
        }
    }
    Ok(())
}

/// Validates a Pod create body for `namespace` and returns the defaulted object, named.
pub fn new_pod(body: &[u8], namespace: &str, suffix: &str, uid: &str) -> Result<Value, Refusal> {
    let mut pod = decode(body, "Pod", namespace)?;
    strict(&pod)?;
    let name = object_name(&pod, "Pod", suffix)?;
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        return Err(invalid("Pod", &name, "spec.containers: Required value".into()));
    }
    for (i, c) in containers.iter().enumerate() {
        let cname = c["name"].as_str().unwrap_or("");
        if cname.is_empty() {
            return Err(invalid("Pod", &name, format!("spec.containers[{i}].name: Required value")));
        }
        if !is_dns1123_label(cname) {
            return Err(invalid("Pod", &name, format!("spec.containers[{i}].name: Invalid value: \"{cname}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")));
        }
        if containers[..i].iter().any(|o| o["name"] == cname) {
            return Err(invalid("Pod", &name, format!("spec.containers[{i}].name: Duplicate value: \"{cname}\"")));
        }
        if c["image"].as_str().unwrap_or("").trim().is_empty() {
            return Err(invalid("Pod", &name, format!("spec.containers[{i}].image: Required value")));
        }
        for source in ["requests", "limits"] {
            for (resource, q) in c["resources"][source].as_object().into_iter().flatten() {
                let text = match q {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                if parse_milli(&text).is_none_or(|m| m < 0) {
                    return Err(bad_request(format!("Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (spec.containers[{i}].resources.{source}.{resource}: {q})")));
                }
            }
        }
    }
    for (i, t) in pod["spec"]["tolerations"].as_array().into_iter().flatten().enumerate() {
        let operator = t["operator"].as_str().unwrap_or("Equal");
        if !matches!(operator, "Equal" | "Exists") {
            return Err(invalid(
                "Pod",
                &name,
                format!("spec.tolerations[{i}].operator: Unsupported value: \"{operator}\": supported values: \"Equal\", \"Exists\""),
            ));
        }
        if operator == "Exists" && t["value"].as_str().is_some_and(|v| !v.is_empty()) {
            return Err(invalid(
                "Pod",
                &name,
                format!(
                    "spec.tolerations[{i}].operator: Invalid value: \"{}\": value must be empty when `operator` is 'Exists'",
                    t["value"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    apply_defaults(&mut pod, &name, namespace, uid);
    Ok(pod)
}

fn apply_defaults(pod: &mut Value, name: &str, namespace: &str, uid: &str) {
    let meta = pod["metadata"].as_object_mut().expect("checked object");
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(namespace));
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("resourceVersion");
    let spec = pod["spec"].as_object_mut().expect("checked object");
    let defaults: [(&str, Value); 9] = [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("serviceAccountName", json!("default")),
        ("serviceAccount", json!("default")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
    ];
    for (k, v) in defaults {
        spec.entry(k).or_insert(v);
    }
    spec.entry("priority").or_insert(json!(0));
    // The DefaultTolerationSeconds admission plugin adds these to every pod.
    let tolerations = spec.entry("tolerations").or_insert(json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            if !list.iter().any(|t| t["key"] == key) {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    let mut qos_parts = (true, true); // (all guaranteed, all empty)
    for c in spec.get_mut("containers").and_then(Value::as_array_mut).into_iter().flatten() {
        let image = c["image"].as_str().unwrap_or("").to_string();
        let last = image.rsplit('/').next().unwrap_or("");
        let latest = !last.contains(':') || image.ends_with(":latest");
        let c = c.as_object_mut().expect("checked container");
        c.entry("imagePullPolicy").or_insert(json!(if latest && !image.contains('@') { "Always" } else { "IfNotPresent" }));
        c.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
        c.entry("terminationMessagePolicy").or_insert(json!("File"));
        let resources = c.entry("resources").or_insert(json!({}));
        // A resource with a limit and no request requests its limit.
        let limits: Map<String, Value> = resources["limits"].as_object().cloned().unwrap_or_default();
        if !limits.is_empty() {
            let requests = resources.as_object_mut().expect("object").entry("requests").or_insert(json!({}));
            for (k, v) in &limits {
                requests.as_object_mut().map(|r| r.entry(k.clone()).or_insert(v.clone()));
            }
        }
        let requests = resources["requests"].as_object().cloned().unwrap_or_default();
        // QoS looks at cpu and memory only (an extended resource alone leaves a pod BestEffort).
        if ["cpu", "memory"].iter().any(|r| requests.contains_key(*r) || limits.contains_key(*r)) {
            qos_parts.1 = false;
        }
        let same = |r: &str| requests.get(r).is_some() && requests.get(r) == limits.get(r);
        if !(same("cpu") && same("memory")) {
            qos_parts.0 = false;
        }
    }
    let qos = match qos_parts {
        (_, true) => "BestEffort",
        (true, false) => "Guaranteed",
        _ => "Burstable",
    };
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}
