//! The objects a launch creates: one pod per rank and a Service for `resources.ports`, and how
//! far a pod has got.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use skycat_optimizer::Placement;

use super::inventory::NodeFacts;
use super::{config::PortMode, exec::CONTAINER, CLUSTER_ID_LABEL};

/// What one pod asks for: the offer's share of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub accelerator: Option<String>,
    pub devices: f64,
    pub cpus: f64,
    pub memory_gib: f64,
}

impl Ask {
    pub fn from_placement(p: &Placement) -> Ask {
        Ask {
            accelerator: p.accelerator.clone(),
            devices: if p.accelerator.is_some() { p.count } else { 0.0 },
            cpus: p.vcpus.unwrap_or(1.0).max(0.1),
            memory_gib: p.memory_gib.unwrap_or(1.0).max(0.1),
        }
    }

    pub fn describe(&self) -> String {
        match &self.accelerator {
            Some(a) => format!("{}x{a} with {} CPUs and {} GiB", self.devices, self.cpus, self.memory_gib),
            None => format!("{} CPUs and {} GiB", self.cpus, self.memory_gib),
        }
    }
}

pub struct PodParams<'a> {
    pub cluster: &'a str,
    pub cluster_id: &'a str,
    pub rank: u32,
    pub image: String,
    pub ask: &'a Ask,
    /// The nodes the offer stands for: their accelerator label is the node selector, their
    /// taints are tolerated.
    pub candidates: &'a [&'a NodeFacts],
    pub controller_ip: Option<&'a str>,
    pub ports: &'a [(u16, u16)],
    /// Nodes the pod must not land on (where a managed job's earlier pods were preempted).
    pub avoid_nodes: &'a [String],
}

/// A DNS-1123 label from free text: lower case, `[a-z0-9-]`, at most `max` characters.
pub fn dns_label(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    out.truncate(max);
    out.trim_matches('-').to_string()
}

/// `<cluster>-<rank>-<id>`: unique per launch (the id), readable (the cluster), ≤ 63 characters.
pub fn pod_name(cluster: &str, cluster_id: &str, rank: u32) -> String {
    let id: String = cluster_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect::<String>().to_ascii_lowercase();
    let tail = format!("-{rank}-{id}");
    let mut head = dns_label(cluster, 63 - tail.len());
    if head.is_empty() {
        head = "skycat".into();
    }
    format!("{head}{tail}")
}

pub fn service_name(cluster: &str, cluster_id: &str) -> String {
    format!("{}-ports", pod_name(cluster, cluster_id, 0))
}

fn labels(cluster: &str, cluster_id: &str) -> serde_json::Value {
    json!({
        "app.kubernetes.io/managed-by": "skycat",
        "skycat.dev/cluster": dns_label(cluster, 63),
        CLUSTER_ID_LABEL: cluster_id,
    })
}

/// The pod for one rank.
pub fn pod_manifest(p: &PodParams) -> Result<Pod, String> {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    requests.insert("cpu".to_string(), json!(format!("{}m", (p.ask.cpus * 1000.0).round() as u64)));
    requests.insert("memory".to_string(), json!(format!("{}Mi", (p.ask.memory_gib * 1024.0).round() as u64)));
    let mut node_selector = BTreeMap::new();
    if p.ask.devices > 0.0 {
        let node = p.candidates.iter().find(|n| n.device_resource.is_some()).ok_or("no GPU node for the offer")?;
        let resource = node.device_resource.unwrap_or("nvidia.com/gpu");
        if p.ask.devices.fract() != 0.0 {
            return Err(format!("{} fractional {resource} cannot be requested from Kubernetes", p.ask.devices));
        }
        // Extended resources must be requested and limited alike.
        requests.insert(resource.to_string(), json!(format!("{}", p.ask.devices as u64)));
        limits.insert(resource.to_string(), json!(format!("{}", p.ask.devices as u64)));
        if let Some(a) = &node.accelerator {
            node_selector.insert(a.selector.0.clone(), a.selector.1.clone());
        }
    }
    let mut tolerations = BTreeSet::new();
    for n in p.candidates.iter().filter(|n| p.ask.devices == 0.0 || n.accelerator_name() == p.ask.accelerator.as_deref()) {
        for t in &n.taints {
            if t.effect == "NoSchedule" || t.effect == "NoExecute" {
                tolerations.insert((t.key.clone(), t.effect.clone()));
            }
        }
    }
    let tolerations: Vec<_> = tolerations.into_iter().map(|(key, effect)| json!({"key": key, "operator": "Exists", "effect": effect})).collect();
    let controller = match p.controller_ip {
        Some(ip) => json!({"name": "SKYCAT_CONTROLLER_IP", "value": ip}),
        // Where nothing is configured, the node the pod runs on stands for the controller.
        None => json!({"name": "SKYCAT_CONTROLLER_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}),
    };
    let container_ports: Vec<_> = p
        .ports
        .iter()
        .flat_map(|(a, b)| *a..=*b)
        .take(100)
        .map(|port| json!({"containerPort": port, "protocol": "TCP"}))
        .collect();
    let affinity = if p.avoid_nodes.is_empty() {
        json!({})
    } else {
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": p.avoid_nodes}]}
        ]}}})
    };
    let v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(p.cluster, p.cluster_id, p.rank),
            "labels": {
                "app.kubernetes.io/managed-by": "skycat",
                "skycat.dev/cluster": dns_label(p.cluster, 63),
                CLUSTER_ID_LABEL: p.cluster_id,
                "skycat.dev/rank": p.rank.to_string(),
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "affinity": affinity,
            "terminationGracePeriodSeconds": 5,
            "nodeSelector": node_selector,
            "tolerations": tolerations,
            "containers": [{
                "name": CONTAINER,
                "image": p.image,
                // The agent is started through exec; the container only has to stay up.
                "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
                "resources": {"requests": requests, "limits": limits},
                "env": [controller, {"name": "SKYCAT_CLUSTER", "value": p.cluster}],
                "ports": container_ports,
            }],
        },
    });
    serde_json::from_value(v).map_err(|e| format!("pod manifest: {e}"))
}

/// The Service that exposes the head pod's ports.
pub fn service_manifest(cluster: &str, cluster_id: &str, ports: &[(u16, u16)], mode: PortMode) -> Result<Service, String> {
    let list: Vec<u16> = ports.iter().flat_map(|(a, b)| *a..=*b).collect();
    if list.len() > 100 {
        return Err(format!("{} ports: a Kubernetes Service here exposes at most 100", list.len()));
    }
    let ports: Vec<_> = list.iter().map(|p| json!({"name": format!("p{p}"), "port": p, "targetPort": p, "protocol": "TCP"})).collect();
    let v = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(cluster, cluster_id), "labels": labels(cluster, cluster_id)},
        "spec": {
            "type": mode.service_type(),
            "selector": {CLUSTER_ID_LABEL: cluster_id, "skycat.dev/rank": "0"},
            "ports": ports,
        },
    });
    serde_json::from_value(v).map_err(|e| format!("service manifest: {e}"))
}

/// Port → `address:port` as reached from outside: the load balancer's address, or a node's
/// address and the node port.
pub fn service_endpoints(svc: &Service, node_ip: Option<String>) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    let spec = svc.spec.clone().unwrap_or_default();
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or(i.hostname.clone()));
    for p in spec.ports.unwrap_or_default() {
        let port = p.port as u16;
        let at = match (spec.type_.as_deref(), &lb, p.node_port, &node_ip) {
            (Some("LoadBalancer"), Some(addr), _, _) => format!("{addr}:{port}"),
            (Some("LoadBalancer"), None, _, _) => "(load balancer pending)".to_string(),
            (_, _, Some(np), Some(ip)) => format!("{ip}:{np}"),
            _ => continue,
        };
        out.insert(port, at);
    }
    out
}

/// How far a pod has got.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Running,
    Waiting,
    Unschedulable(String),
    Failed(String),
}

pub fn pod_progress(p: &Pod) -> Progress {
    let Some(s) = &p.status else { return Progress::Waiting };
    match s.phase.as_deref() {
        Some("Running") if s.pod_ip.is_some() => return Progress::Running,
        Some("Failed") | Some("Succeeded") => {
            return Progress::Failed([s.reason.clone(), s.message.clone()].into_iter().flatten().collect::<Vec<_>>().join(": "))
        }
        _ => {}
    }
    for c in s.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable") {
            return Progress::Unschedulable(c.message.clone().unwrap_or_default());
        }
    }
    // A container that cannot start (bad image) fails the launch instead of waiting forever.
    for cs in s.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|st| st.waiting.as_ref()) {
            if matches!(w.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CreateContainerConfigError")) {
                return Progress::Failed(format!("{}: {}", w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()));
            }
        }
    }
    Progress::Waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(pod_name("My_Cluster", "ab12cd34ef56", 3), "my-cluster-3-ab12cd34");
        let long = "x".repeat(100);
        assert!(pod_name(&long, "ab12", 0).len() <= 63);
        assert_eq!(pod_name("__", "ab", 0), "skycat-0-ab");
        assert_eq!(dns_label("-A.b-", 63), "a-b");
    }

    #[test]
    fn manifests() {
        let node: super::super::inventory::NodeObject = serde_json::from_str(include_str!("fixtures/gke-a100-node.json")).unwrap();
        let facts = NodeFacts::from_object(&node);
        let ask = Ask { accelerator: Some("A100".into()), devices: 2.0, cpus: 23.0, memory_gib: 165.0 };
        let cands = [&facts];
        let pod = pod_manifest(&PodParams {
            cluster: "train",
            cluster_id: "0123456789ab",
            rank: 1,
            image: "img".into(),
            ask: &ask,
            candidates: &cands,
            controller_ip: None,
            ports: &[(8080, 8081)],
            avoid_nodes: &["gke-old".to_string()],
        })
        .unwrap();
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "train-1-01234567");
        assert_eq!(v["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"], "nvidia-tesla-a100");
        assert_eq!(v["spec"]["tolerations"][0]["key"], "nvidia.com/gpu");
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "2");
        assert_eq!(c["resources"]["requests"]["cpu"], "23000m");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP");
        assert_eq!(c["ports"].as_array().unwrap().len(), 2);
        let term = &v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"][0]["values"][0], "gke-old");

        let svc = service_manifest("train", "0123456789ab", &[(8080, 8080)], PortMode::Nodeport).unwrap();
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["spec"]["type"], "NodePort");
        assert_eq!(v["spec"]["selector"]["skycat.dev/rank"], "0");
        assert!(service_manifest("t", "i", &[(1000, 2000)], PortMode::Nodeport).is_err());
    }
}
