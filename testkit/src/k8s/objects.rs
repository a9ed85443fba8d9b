//! Node and Pod objects as the API reference (v1.32) shapes them, and their transitions: what the
//! kubelet, the scheduler and the node lifecycle controller write into `status`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{KubeNode, Sandbox};

pub const KUBELET_VERSION: &str = "v1.32.4";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// RFC 3339 UTC to the second, as metav1.Time marshals.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn condition(kind: &str, status: &str, reason: Option<&str>, message: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

// ---- nodes ----

pub fn node_object(node: &KubeNode, uid: &str, index: usize) -> Value {
    let mut labels = Map::new();
    // What the kubelet labels every node with; the test's labels win.
    labels.insert("kubernetes.io/hostname".into(), json!(node.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!("amd64"));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!("amd64"));
    for (k, v) in &node.labels {
        labels.insert(k.clone(), json!(v));
    }
    let taints: Vec<Value> = node.taints.iter().map(taint_json).collect();
    let mut spec = json!({"podCIDR": format!("10.244.{}.0/24", index % 256), "podCIDRs": [format!("10.244.{}.0/24", index % 256)]});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    let stamp = now();
    let conditions = json!([
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp, "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
        {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp, "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
        {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp, "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
        {"type": "Ready", "status": "True", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp, "reason": "KubeletReady", "message": "kubelet is posting ready status"},
    ]);
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": node.name, "uid": uid, "resourceVersion": "0", "creationTimestamp": stamp, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": spec,
        "status": {
            "capacity": node.allocatable,
            "allocatable": node.allocatable,
            "conditions": conditions,
            // Never dialed: a documentation-only style private range per node.
            "addresses": [{"type": "InternalIP", "address": format!("10.240.{}.{}", index / 250, index % 250 + 2)}, {"type": "Hostname", "address": node.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", index + 1),
                "systemUUID": format!("{:08x}-0000-4000-8000-{:012x}", index + 1, index + 1),
                "bootID": format!("{:08x}-1111-4000-8000-{:012x}", index + 1, index + 1),
                "kernelVersion": "6.1.0-emulated",
                "osImage": "Ubuntu 22.04.4 LTS",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64"
            }
        }
    })
}

fn taint_json(t: &super::Taint) -> Value {
    let mut v = json!({"key": t.key, "effect": t.effect});
    if let Some(value) = &t.value {
        v["value"] = json!(value);
    }
    v
}

pub fn node_is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// NotReady as the node lifecycle controller writes it when the kubelet stops posting: every
/// condition Unknown ("Kubelet stopped posting node status.") and the unreachable NoSchedule taint;
/// Ready again removes the taint.
pub fn node_with_readiness(node: &Value, ready: bool) -> Value {
    let mut node = node.clone();
    let stamp = now();
    for c in node["status"]["conditions"].as_array_mut().into_iter().flatten() {
        let is_ready = c["type"] == "Ready";
        c["lastTransitionTime"] = json!(stamp);
        if ready {
            c["status"] = json!(if is_ready { "True" } else { "False" });
            c["reason"] = json!(if is_ready { "KubeletReady" } else { "KubeletHasSufficientMemory" });
            c["message"] = json!(if is_ready { "kubelet is posting ready status" } else { "kubelet has sufficient resources" });
        } else {
            c["status"] = json!("Unknown");
            c["reason"] = json!("NodeStatusUnknown");
            c["message"] = json!("Kubelet stopped posting node status.");
        }
    }
    let mut taints: Vec<Value> =
        node["spec"]["taints"].as_array().cloned().unwrap_or_default().into_iter().filter(|t| t["key"] != UNREACHABLE_TAINT).collect();
    if !ready {
        taints.push(json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": stamp}));
    }
    if taints.is_empty() {
        if let Some(spec) = node["spec"].as_object_mut() {
            spec.remove("taints");
        }
    } else {
        node["spec"]["taints"] = json!(taints);
    }
    node
}

// ---- pods ----

/// The container named `name`, or the first one when none is named.
pub fn container<'a>(pod: &'a Value, name: Option<&str>) -> Option<&'a Value> {
    let containers = pod["spec"]["containers"].as_array()?;
    match name {
        None | Some("") => containers.first(),
        Some(n) => containers.iter().find(|c| c["name"] == n),
    }
}

/// Sets the Ready and ContainersReady conditions (the node went NotReady or came back).
pub fn pod_with_ready(pod: &Value, ready: bool) -> Value {
    let mut pod = pod.clone();
    let status = if ready { "True" } else { "False" };
    for c in pod["status"]["conditions"].as_array_mut().into_iter().flatten() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["status"] = json!(status);
            c["lastTransitionTime"] = json!(now());
        }
    }
    for cs in pod["status"]["containerStatuses"].as_array_mut().into_iter().flatten() {
        cs["ready"] = json!(ready);
    }
    pod
}

/// Bound by the scheduler: spec.nodeName and PodScheduled True (the Binding subresource).
pub fn pod_scheduled(pod: &Value, node: &str) -> Value {
    let mut pod = pod.clone();
    pod["spec"]["nodeName"] = json!(node);
    pod["status"]["conditions"] = json!([condition("PodScheduled", "True", None, None)]);
    // The kubelet's view until a sandbox is free: containers waiting in ContainerCreating.
    let waiting: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}))
        .collect();
    pod["status"]["containerStatuses"] = json!(waiting);
    pod
}

/// Unschedulable: stays Pending with PodScheduled False.
pub fn pod_unschedulable(pod: &Value, message: &str) -> Value {
    let mut pod = pod.clone();
    pod["status"]["conditions"] = json!([condition("PodScheduled", "False", Some("Unschedulable"), Some(message))]);
    pod
}

pub fn unschedulable_message(pod: &Value) -> Option<&str> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")?["message"]
        .as_str()
}

/// Running in `sandbox`: the kubelet's status once every container started.
pub fn pod_running(pod: &Value, sandbox: &Sandbox) -> Value {
    let mut pod = pod.clone();
    let stamp = now();
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:{:064x}", c["image"].as_str().unwrap_or(""), i + 1),
                "containerID": format!("containerd://{:064x}", (i + 1) * 7919),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": stamp}}, "lastState": {}
            })
        })
        .collect();
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", "True", None, None),
            condition("Initialized", "True", None, None),
            condition("Ready", "True", None, None),
            condition("ContainersReady", "True", None, None),
            condition("PodScheduled", "True", None, None),
        ],
        "hostIP": sandbox.host_ip, "hostIPs": [{"ip": sandbox.host_ip}],
        "podIP": sandbox.pod_ip, "podIPs": [{"ip": sandbox.pod_ip}],
        "startTime": stamp,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].clone(),
    });
    pod
}

/// Evicted by the kubelet (node-pressure eviction): Failed, reason Evicted, containers terminated.
pub fn pod_evicted(pod: &Value) -> Value {
    let mut pod = pod.clone();
    let stamp = now();
    pod["status"]["phase"] = json!("Failed");
    pod["status"]["reason"] = json!("Evicted");
    pod["status"]["message"] = json!("The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. ");
    for c in pod["status"]["conditions"].as_array_mut().into_iter().flatten() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["status"] = json!("False");
            c["reason"] = json!("PodFailed");
            c["lastTransitionTime"] = json!(stamp);
        }
    }
    let mut conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.push(condition("DisruptionTarget", "True", Some("TerminationByKubelet"), Some("The node was low on resource: memory.")));
    pod["status"]["conditions"] = json!(conditions);
    for cs in pod["status"]["containerStatuses"].as_array_mut().into_iter().flatten() {
        let started = cs["state"]["running"]["startedAt"].clone();
        cs["ready"] = json!(false);
        cs["started"] = json!(false);
        cs["state"] = json!({"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown", "message": "The container could not be located when the pod was terminated", "startedAt": started, "finishedAt": stamp}});
    }
    pod
}

/// A Running pod bound to `node` with no sandbox (accounting only); its pod IP is a made-up
/// address that is never dialed.
pub fn bulk_pod(
    namespace: &str,
    name: &str,
    uid: &str,
    (node, host_ip): (&str, &str),
    requests: &BTreeMap<String, String>,
    k: usize,
) -> Value {
    let stamp = now();
    let ip = format!("10.244.{}.{}", (k / 250) % 256, k % 250 + 2);
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "0", "creationTimestamp": stamp, "labels": {"app": "bulk"}},
        "spec": {
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": requests, "limits": {}}}],
            "nodeName": node, "restartPolicy": "Always", "schedulerName": "default-scheduler"
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
            "hostIP": host_ip, "podIP": ip, "podIPs": [{"ip": ip}], "startTime": stamp,
            "containerStatuses": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}],
            "qosClass": "Burstable"
        }
    })
}

/// The value of a pod's `valueFrom.fieldRef.fieldPath` that exec's environment can carry.
pub fn pod_field(pod: &Value, path: &str) -> Option<String> {
    let v = match path {
        "metadata.name" => &pod["metadata"]["name"],
        "metadata.namespace" => &pod["metadata"]["namespace"],
        "metadata.uid" => &pod["metadata"]["uid"],
        "spec.nodeName" => &pod["spec"]["nodeName"],
        "spec.serviceAccountName" => &pod["spec"]["serviceAccountName"],
        "status.podIP" => &pod["status"]["podIP"],
        "status.hostIP" => &pod["status"]["hostIP"],
        _ => {
            let rest = path.strip_prefix("metadata.labels['").or_else(|| path.strip_prefix("metadata.annotations['"))?;
            let key = rest.strip_suffix("']")?;
            let map = if path.starts_with("metadata.labels") { "labels" } else { "annotations" };
            &pod["metadata"][map][key]
        }
    };
    v.as_str().map(str::to_string)
}
