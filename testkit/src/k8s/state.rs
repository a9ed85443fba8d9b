//! The emulator's store: objects kept with their serialized bytes (lists of 10,000 pods are
//! concatenations, not serializations), one resourceVersion counter for every kind as etcd's
//! revision is, and the event log that watches replay from a resourceVersion.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::objects;
use super::quantity::parse_milli;
use super::sandbox::{Released, SandboxSlot, SlotUse};
use super::KubeNode;

/// Watch events older than this many are forgotten; a watch from before them is 410 Gone, as a
/// compacted etcd answers.
const EVENT_LOG_LIMIT: usize = 200_000;

/// An object and its JSON bytes (with `metadata.resourceVersion` already set).
pub struct Stored {
    pub value: Value,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Node,
    Pod,
    Service,
}

pub struct Event {
    pub resource_version: u64,
    pub resource: Resource,
    pub event_type: &'static str,
    pub stored: Arc<Stored>,
    /// The object before a MODIFIED change: a watch with a selector turns a change into ADDED or
    /// DELETED when the object starts or stops matching, as the real watch cache does.
    pub previous: Option<Arc<Stored>>,
}

pub struct PodEntry {
    pub stored: Arc<Stored>,
    /// Summed container requests in milli-units, plus `pods: 1000` (one pod), parsed once.
    pub requests: BTreeMap<String, i128>,
    /// Index into [`State::sandboxes`] while the pod runs in one.
    pub sandbox: Option<usize>,
    /// Inserted by `add_pods_bulk`: Running without a sandbox.
    pub bulk: bool,
}

impl PodEntry {
    pub fn phase(&self) -> &str {
        self.stored.value["status"]["phase"].as_str().unwrap_or("")
    }
    pub fn node_name(&self) -> Option<&str> {
        self.stored.value["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
    }
    /// Succeeded and Failed pods hold no resources on their node.
    pub fn terminated(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }
}

pub type PodKey = (String, String);

pub struct State {
    pub token: String,
    resource_version: u64,
    uid_counter: u64,
    uid_seed: u64,
    pub nodes: BTreeMap<String, Arc<Stored>>,
    pub pods: BTreeMap<PodKey, PodEntry>,
    pub services: BTreeMap<PodKey, Arc<Stored>>,
    pub namespaces: BTreeSet<String>,
    events: VecDeque<Arc<Event>>,
    pub events_tx: broadcast::Sender<Arc<Event>>,
    pub sandboxes: Vec<SandboxSlot>,
    pub requests: Vec<String>,
    pub rejections: Vec<String>,
    pub forbid_pod_list: bool,
    /// The next `bulk-<k>` per namespace for `add_pods_bulk`.
    bulk_next: BTreeMap<String, usize>,
    /// Counts sandboxes made free again, so the scheduler knows to look at waiting pods.
    pub sandboxes_freed: u64,
    pub load_balancer_pool: VecDeque<String>,
    pub load_balancer_next: u32,
    pub cluster_ip_next: u32,
    pub node_ports: BTreeSet<u16>,
}

impl State {
    pub fn new(token: &str) -> State {
        let (events_tx, _) = broadcast::channel(65_536);
        State {
            token: token.to_string(),
            resource_version: 1000,
            uid_counter: 0,
            // Clock and pid: two emulators in one test (two contexts) hand out different uids.
            uid_seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0)
                ^ ((std::process::id() as u64) << 32),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            services: BTreeMap::new(),
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"].iter().map(|s| s.to_string()).collect(),
            events: VecDeque::new(),
            events_tx,
            sandboxes: Vec::new(),
            requests: Vec::new(),
            rejections: Vec::new(),
            forbid_pod_list: false,
            sandboxes_freed: 0,
            bulk_next: BTreeMap::new(),
            load_balancer_pool: VecDeque::new(),
            load_balancer_next: 0,
            cluster_ip_next: 0,
            node_ports: BTreeSet::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// The oldest resourceVersion a watch can still start after.
    pub fn oldest_watchable(&self) -> u64 {
        self.events.front().map(|e| e.resource_version.saturating_sub(1)).unwrap_or(self.resource_version)
    }

    /// Events after `after`, for a watch's replay.
    pub fn events_after(&self, after: u64) -> Vec<Arc<Event>> {
        let start = self.events.partition_point(|e| e.resource_version <= after);
        self.events.range(start..).cloned().collect()
    }

    /// A UUID-shaped uid, unique within this emulator (counter) and across emulators (seed).
    pub fn new_uid(&mut self) -> String {
        self.uid_counter += 1;
        let seed = self.uid_seed;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            seed & 0xffff_ffff,
            self.uid_counter >> 16 & 0xffff,
            self.uid_counter & 0xfff,
            seed >> 32 & 0xfff,
            self.uid_counter
        )
    }

    /// Stamps a new resourceVersion on `value`, serializes it and records the watch event.
    pub fn commit(&mut self, resource: Resource, event_type: &'static str, value: Value) -> Arc<Stored> {
        self.commit_change(resource, event_type, value, None)
    }

    /// As [`State::commit`], for a change of `previous`.
    pub fn commit_change(
        &mut self,
        resource: Resource,
        event_type: &'static str,
        mut value: Value,
        previous: Option<Arc<Stored>>,
    ) -> Arc<Stored> {
        self.resource_version += 1;
        value["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let bytes = serde_json::to_vec(&value).expect("JSON value serializes");
        let stored = Arc::new(Stored { value, bytes });
        let event = Arc::new(Event { resource_version: self.resource_version, resource, event_type, stored: stored.clone(), previous });
        if self.events.len() >= EVENT_LOG_LIMIT {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        let _ = self.events_tx.send(event); // no watcher is fine
        stored
    }

    pub fn reject(&mut self, what: String) {
        self.rejections.push(what);
    }

    // ---- nodes ----

    pub fn add_node(&mut self, node: &KubeNode) {
        let uid = self.new_uid();
        let index = self.nodes.len();
        let previous = self.nodes.get(&node.name).cloned();
        let event_type = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        let value = objects::node_object(node, &uid, index);
        let stored = self.commit_change(Resource::Node, event_type, value, previous);
        self.nodes.insert(node.name.clone(), stored);
    }

    pub fn node_ready(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| objects::node_is_ready(&n.value))
    }

    pub fn set_node_ready(&mut self, name: &str, ready: bool) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        if objects::node_is_ready(&node.value) == ready {
            return;
        }
        let value = objects::node_with_readiness(&node.value, ready);
        let previous = Some(node.clone());
        let stored = self.commit_change(Resource::Node, "MODIFIED", value, previous);
        self.nodes.insert(name.to_string(), stored);
        // The node lifecycle controller marks the node's pods not Ready (MarkPodsNotReady); they
        // come back Ready when the kubelet reports again.
        let keys: Vec<PodKey> =
            self.pods.iter().filter(|(_, p)| p.node_name() == Some(name) && !p.terminated()).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let Some(entry) = self.pods.get(&key) else {
                continue;
            };
            if entry.phase() != "Running" {
                continue;
            }
            let value = objects::pod_with_ready(&entry.stored.value, ready);
            self.replace_pod(&key, value);
        }
    }

    /// Deletes the node and its pods; returns the sandboxes to reset.
    pub fn remove_node(&mut self, name: &str) -> Vec<Released> {
        let Some(node) = self.nodes.remove(name) else {
            return Vec::new();
        };
        let keys: Vec<PodKey> = self.pods.iter().filter(|(_, p)| p.node_name() == Some(name)).map(|(k, _)| k.clone()).collect();
        let mut released = Vec::new();
        for key in keys {
            if let Some((_, freed)) = self.delete_pod(&key) {
                released.extend(freed);
            }
        }
        self.commit(Resource::Node, "DELETED", node.value.clone());
        released
    }

    // ---- pods ----

    /// Replaces a pod's object (MODIFIED), keeping its bookkeeping.
    pub fn replace_pod(&mut self, key: &PodKey, value: Value) {
        let previous = self.pods.get(key).map(|e| e.stored.clone());
        let stored = self.commit_change(Resource::Pod, "MODIFIED", value, previous);
        if let Some(entry) = self.pods.get_mut(key) {
            entry.stored = stored;
        }
    }

    /// Stores a validated, defaulted new pod (ADDED).
    pub fn insert_pod(&mut self, value: Value, bulk: bool) -> Arc<Stored> {
        let namespace = value["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let requests = pod_requests(&value);
        let stored = self.commit(Resource::Pod, "ADDED", value);
        self.namespaces.insert(namespace.clone());
        self.pods.insert((namespace, name), PodEntry { stored: stored.clone(), requests, sandbox: None, bulk });
        stored
    }

    /// Deletes the pod (DELETED); returns its last object and the sandbox to reset, if any.
    pub fn delete_pod(&mut self, key: &PodKey) -> Option<(Arc<Stored>, Option<Released>)> {
        let entry = self.pods.remove(key)?;
        let released = entry.sandbox.and_then(|i| self.release_sandbox(i));
        let mut value = entry.stored.value.clone();
        if value["metadata"].get("deletionTimestamp").is_none() {
            value["metadata"]["deletionTimestamp"] = json!(objects::now());
            value["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        let stored = self.commit(Resource::Pod, "DELETED", value);
        Some((stored, released))
    }

    pub fn evict_pod(&mut self, namespace: &str, name: &str) -> Vec<Released> {
        let key = (namespace.to_string(), name.to_string());
        let Some(entry) = self.pods.get_mut(&key) else {
            return Vec::new();
        };
        if entry.terminated() {
            return Vec::new();
        }
        let sandbox = entry.sandbox.take();
        let value = objects::pod_evicted(&entry.stored.value);
        self.replace_pod(&key, value);
        sandbox.and_then(|i| self.release_sandbox(i)).into_iter().collect()
    }

    pub fn add_pods_bulk(&mut self, namespace: &str, node: &str, n: usize, requests: &BTreeMap<String, String>) {
        // A pod's hostIP is its node's InternalIP.
        let host_ip = self
            .nodes
            .get(node)
            .and_then(|n| {
                n.value["status"]["addresses"].as_array()?.iter().find(|a| a["type"] == "InternalIP")?["address"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let mut added = 0;
        while added < n {
            let k = *self.bulk_next.entry(namespace.to_string()).and_modify(|k| *k += 1).or_insert(0);
            let name = format!("bulk-{k}");
            if self.pods.contains_key(&(namespace.to_string(), name.clone())) {
                continue; // a test's own pod has the name
            }
            let uid = self.new_uid();
            let value = objects::bulk_pod(namespace, &name, &uid, (node, &host_ip), requests, k);
            self.insert_pod(value, true);
            added += 1;
        }
    }

    // ---- sandboxes ----

    /// Marks the sandbox as being reset (not free until [`super::sandbox::reset_and_free`]).
    fn release_sandbox(&mut self, index: usize) -> Option<Released> {
        let slot = self.sandboxes.get_mut(index)?;
        slot.in_use = SlotUse::Resetting;
        Some(Released { index, sandbox: slot.sandbox.clone(), baseline_pids: slot.baseline_pids.clone() })
    }

    pub fn take_all_sandboxes(&mut self) -> Vec<Released> {
        let used: Vec<usize> =
            self.sandboxes.iter().enumerate().filter(|(_, s)| !matches!(s.in_use, SlotUse::Free)).map(|(i, _)| i).collect();
        used.into_iter().filter_map(|i| self.release_sandbox(i)).collect()
    }
}

/// A pod's requests as the scheduler counts them: the sum over its containers (a resource with a
/// limit and no request requests its limit, as API defaulting does), plus one pod.
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i128> {
    let mut total: BTreeMap<String, i128> = BTreeMap::new();
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let resources = &container["resources"];
        let mut own: BTreeMap<String, i128> = BTreeMap::new();
        for source in ["limits", "requests"] {
            // requests are read second so they win over limits
            for (name, quantity) in resources[source].as_object().into_iter().flatten() {
                let text = match quantity {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                if let Some(milli) = parse_milli(&text) {
                    own.insert(name.clone(), milli);
                }
            }
        }
        for (name, milli) in own {
            *total.entry(name).or_default() += milli;
        }
    }
    *total.entry("pods".to_string()).or_default() += 1000;
    total
}
