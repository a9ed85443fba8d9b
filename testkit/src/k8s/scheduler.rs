//! The scheduler and kubelet in one loop (every 50 ms): binds each Pending pod without a node to
//! the first Ready node that passes the default profile's filters in their order (TaintToleration,
//! NodeAffinity's nodeSelector, NodeResourcesFit), then starts bound pods in a free sandbox.
//! An unschedulable pod gets PodScheduled False with the scheduler's FitError message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::objects;
use super::sandbox::SlotUse;
use super::state::{PodKey, State};

pub async fn run(state: Arc<Mutex<State>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A pass only follows a change (a new resourceVersion or a freed sandbox): with 10,000 pods
    // an idle cluster costs nothing.
    let mut seen = (0, 0);
    loop {
        tick.tick().await;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = (state.resource_version(), state.sandboxes_freed);
        if now == seen {
            continue;
        }
        schedule_pending(&mut state);
        start_bound(&mut state);
        seen = (state.resource_version(), state.sandboxes_freed);
    }
}

/// Requests of the non-terminated pods on each node, in milli-units.
fn node_usage(state: &State) -> BTreeMap<String, BTreeMap<String, i128>> {
    let mut usage: BTreeMap<String, BTreeMap<String, i128>> = BTreeMap::new();
    for pod in state.pods.values() {
        let Some(node) = pod.node_name() else {
            continue;
        };
        if pod.terminated() {
            continue;
        }
        let used = usage.entry(node.to_string()).or_default();
        for (resource, milli) in &pod.requests {
            *used.entry(resource.clone()).or_default() += milli;
        }
    }
    usage
}

fn schedule_pending(state: &mut State) {
    let pending: Vec<PodKey> =
        state.pods.iter().filter(|(_, p)| p.node_name().is_none() && p.phase() == "Pending").map(|(k, _)| k.clone()).collect();
    if pending.is_empty() {
        return;
    }
    let mut usage = node_usage(state);
    for key in pending {
        let Some(entry) = state.pods.get(&key) else {
            continue;
        };
        let pod = entry.stored.value.clone();
        let requests = entry.requests.clone();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut chosen = None;
        for (name, node) in &state.nodes {
            let empty = BTreeMap::new();
            let used = usage.get(name).unwrap_or(&empty);
            match node_filter(&pod, &requests, &node.value, used) {
                Ok(()) => {
                    chosen = Some(name.clone());
                    break;
                }
                Err(node_reasons) => {
                    for r in node_reasons {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        match chosen {
            Some(node) => {
                let used = usage.entry(node.clone()).or_default();
                for (resource, milli) in &requests {
                    *used.entry(resource.clone()).or_default() += milli;
                }
                let value = objects::pod_scheduled(&pod, &node);
                state.replace_pod(&key, value);
            }
            None => {
                let message = fit_error(state.nodes.len(), &reasons);
                if objects::unschedulable_message(&pod) != Some(message.as_str()) {
                    state.replace_pod(&key, objects::pod_unschedulable(&pod, &message));
                }
            }
        }
    }
}

/// The scheduler's FitError text: `0/3 nodes are available: 1 node(s) didn't match Pod's node
/// affinity/selector, 2 Insufficient nvidia.com/gpu.` (reasons sorted as strings).
fn fit_error(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    parts.sort();
    if parts.is_empty() {
        return format!("0/{nodes} nodes are available.");
    }
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// Why `node` cannot take the pod, in the default filters' order; Ok when it can.
fn node_filter(pod: &Value, requests: &BTreeMap<String, i128>, node: &Value, used: &BTreeMap<String, i128>) -> Result<(), Vec<String>> {
    if node["spec"]["unschedulable"] == true {
        return Err(vec!["node(s) were unschedulable".into()]);
    }
    let tolerations = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = taint["effect"].as_str().unwrap_or("");
        if !matches!(effect, "NoSchedule" | "NoExecute") {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint["key"].as_str().unwrap_or(""),
                taint["value"].as_str().unwrap_or("")
            )]);
        }
    }
    let labels = &node["metadata"]["labels"];
    let selector_ok = pod["spec"]["nodeSelector"].as_object().into_iter().flatten().all(|(k, v)| labels[k] == *v);
    if !selector_ok || !node_affinity_ok(pod, node) {
        return Err(vec!["node(s) didn't match Pod's node affinity/selector".into()]);
    }
    if !objects::node_is_ready(node) {
        // Reached only if the unreachable taint was tolerated.
        return Err(vec!["node(s) were not ready".into()]);
    }
    let allocatable = &node["status"]["allocatable"];
    let mut insufficient = Vec::new();
    for (resource, want) in requests {
        if *want <= 0 {
            continue;
        }
        let have =
            allocatable[resource].as_str().and_then(super::quantity::parse_milli).unwrap_or(if resource == "pods" { 110_000 } else { 0 });
        let in_use = used.get(resource).copied().unwrap_or(0);
        if in_use + want > have {
            insufficient.push(if resource == "pods" { "Too many pods".to_string() } else { format!("Insufficient {resource}") });
        }
    }
    if insufficient.is_empty() {
        Ok(())
    } else {
        Err(insufficient)
    }
}

/// v1 Toleration.ToleratesTaint.
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or("");
    if !effect.is_empty() && effect != taint["effect"].as_str().unwrap_or("") {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or("");
    if !key.is_empty() && key != taint["key"].as_str().unwrap_or("") {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => !key.is_empty() && toleration["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or(""),
        _ => false,
    }
}

/// requiredDuringSchedulingIgnoredDuringExecution node selector terms (ORed; expressions ANDed):
/// label expressions, and field expressions on `metadata.name` (the only field the API allows).
fn node_affinity_ok(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    let name = node["metadata"]["name"].as_str();
    terms.iter().any(|term| {
        let fields_ok = term["matchFields"].as_array().into_iter().flatten().all(|expr| {
            let values: Vec<&str> = expr["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match (expr["key"].as_str(), expr["operator"].as_str()) {
                (Some("metadata.name"), Some("In")) => name.is_some_and(|n| values.contains(&n)),
                (Some("metadata.name"), Some("NotIn")) => name.is_none_or(|n| !values.contains(&n)),
                _ => false,
            }
        });
        fields_ok && term["matchExpressions"].as_array().into_iter().flatten().all(|expr| {
            let key = expr["key"].as_str().unwrap_or("");
            let value = labels[key].as_str();
            let values: Vec<&str> = expr["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match expr["operator"].as_str().unwrap_or("") {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                "Gt" | "Lt" => {
                    let (Some(have), Some(limit)) =
                        (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok()))
                    else {
                        return false;
                    };
                    if expr["operator"] == "Gt" {
                        have > limit
                    } else {
                        have < limit
                    }
                }
                _ => false,
            }
        })
    })
}

/// The kubelet: a bound Pending pod on a Ready node takes a free sandbox and runs.
fn start_bound(state: &mut State) {
    let waiting: Vec<PodKey> = state
        .pods
        .iter()
        .filter(|(_, p)| !p.bulk && p.phase() == "Pending" && p.sandbox.is_none())
        .filter(|(_, p)| p.node_name().is_some_and(|n| state.node_ready(n)))
        .map(|(k, _)| k.clone())
        .collect();
    for key in waiting {
        let Some(index) = state.sandboxes.iter().position(|s| s.in_use == SlotUse::Free) else {
            return;
        };
        state.sandboxes[index].in_use = SlotUse::Pod(key.0.clone(), key.1.clone());
        let sandbox = state.sandboxes[index].sandbox.clone();
        let Some(entry) = state.pods.get_mut(&key) else {
            continue;
        };
        entry.sandbox = Some(index);
        let value = objects::pod_running(&entry.stored.value, &sandbox);
        state.replace_pod(&key, value);
    }
}
