//! A context's capacity: its nodes (accelerator from labels, allocatable devices, CPUs and
//! memory, readiness, spot-ness, taints) and what the Running and Pending pods on them request,
//! read with one list of nodes and one list of pods. From it come `show-gpus --infra k8s`'s
//! rows (total, free, nodes per GPU) and the context's offers.
//!
//! Lists are decoded into the few fields used here rather than into full `k8s-openapi` objects:
//! a 10,000-pod list is mostly fields skycat never reads.

use std::collections::BTreeMap;

use serde::Deserialize;
use skycat_catalog::Offer;

use super::config::ContextPrice;
use super::labels::{accelerator_of, is_spot, NodeAccelerator, DEVICE_RESOURCES};

/// `metadata` as far as it is read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, rename = "resourceVersion")]
    pub resource_version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct List<T> {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub taints: Vec<Taint>,
    #[serde(default)]
    pub unschedulable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeStatus {
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeObject {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodSpec {
    #[serde(default, rename = "nodeName")]
    pub node_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodObject {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

impl PodObject {
    /// What the pod's containers request of `resource`, in the resource's unit (cores, bytes,
    /// devices).
    pub fn request(&self, resource: &str) -> f64 {
        self.spec.containers.iter().filter_map(|c| c.resources.requests.get(resource)).filter_map(|q| quantity(q)).sum()
    }

    pub fn phase(&self) -> &str {
        self.status.phase.as_deref().unwrap_or("Pending")
    }
}

/// A Kubernetes quantity (`500m`, `8`, `64Gi`, `1.5G`, `129Mi`) as a number.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult).filter(|v| v.is_finite() && *v >= 0.0)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One node as skycat plans over it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub accelerator: Option<NodeAccelerator>,
    /// `nvidia.com/gpu`, `amd.com/gpu` or `google.com/tpu`, when the node has devices.
    pub device_resource: Option<&'static str>,
    pub devices: f64,
    pub cpus: f64,
    pub memory_gib: f64,
    pub ready: bool,
    pub spot: bool,
    pub taints: Vec<Taint>,
    /// What non-terminated pods on the node request (devices, cores, GiB); `None` when pods
    /// could not be listed.
    pub used: Option<(f64, f64, f64)>,
}

impl NodeFacts {
    pub fn from_object(n: &NodeObject) -> NodeFacts {
        let alloc = &n.status.allocatable;
        let device = DEVICE_RESOURCES.iter().copied().find(|r| alloc.get(*r).and_then(|q| quantity(q)).is_some_and(|v| v > 0.0));
        let get = |k: &str| alloc.get(k).and_then(|q| quantity(q)).unwrap_or(0.0);
        let ready = n.status.conditions.iter().any(|c| c.kind == "Ready" && c.status == "True") && !n.spec.unschedulable;
        NodeFacts {
            name: n.metadata.name.clone(),
            accelerator: device.and_then(|_| accelerator_of(&n.metadata.labels)),
            device_resource: device,
            devices: device.map(get).unwrap_or(0.0),
            cpus: get("cpu"),
            memory_gib: get("memory") / GIB,
            ready,
            spot: is_spot(&n.metadata.labels),
            taints: n.spec.taints.clone(),
            used: None,
        }
    }

    /// Free devices, cores and GiB; `None` when pod requests are unknown.
    pub fn free(&self) -> Option<(f64, f64, f64)> {
        self.used.map(|(d, c, m)| ((self.devices - d).max(0.0), (self.cpus - c).max(0.0), (self.memory_gib - m).max(0.0)))
    }

    /// Whether a pod asking for `devices`, `cpus` and `memory_gib` fits now (a node whose usage
    /// is unknown is assumed to fit: the scheduler will tell).
    pub fn fits(&self, devices: f64, cpus: f64, memory_gib: f64) -> bool {
        if !self.ready {
            return false;
        }
        match self.free() {
            Some((d, c, m)) => d + 1e-9 >= devices && c + 1e-9 >= cpus && m + 1e-9 >= memory_gib,
            None => self.devices >= devices && self.cpus >= cpus && self.memory_gib >= memory_gib,
        }
    }

    /// How many pods asking for `devices`, `cpus` and `memory_gib` fit on the node now; `None`
    /// when its usage is unknown (pods cannot be listed).
    pub fn slots(&self, devices: f64, cpus: f64, memory_gib: f64) -> Option<u32> {
        if !self.ready {
            return Some(0);
        }
        let (d, c, m) = self.free()?;
        let fit = |have: f64, want: f64| if want > 0.0 { ((have + 1e-9) / want).floor() } else { f64::INFINITY };
        let n = fit(d, devices).min(fit(c, cpus)).min(fit(m, memory_gib));
        Some(if n.is_finite() { n.max(0.0) as u32 } else { u32::MAX })
    }

    /// The canonical accelerator name, when the node has a known one.
    pub fn accelerator_name(&self) -> Option<&str> {
        self.accelerator.as_ref().map(|a| a.info.name.as_str())
    }
}

/// A context's nodes, with what pods use of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub context: String,
    pub nodes: Vec<NodeFacts>,
    /// False when listing pods was forbidden: free counts are unknown.
    pub pods_visible: bool,
}

/// One `show-gpus --infra k8s` row.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuCapacity {
    pub context: String,
    pub accelerator: String,
    /// Devices per node (the largest node's).
    pub per_node: f64,
    pub total: f64,
    /// `None` when pods could not be listed.
    pub free: Option<f64>,
    pub nodes: usize,
    pub ready_nodes: usize,
}

impl Inventory {
    /// Builds the inventory from a node list and (when readable) a pod list.
    pub fn new(context: &str, nodes: &[NodeObject], pods: Option<&[PodObject]>) -> Inventory {
        let mut facts: Vec<NodeFacts> = nodes.iter().map(NodeFacts::from_object).collect();
        if let Some(pods) = pods {
            let mut used: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
            for p in pods {
                if !matches!(p.phase(), "Running" | "Pending") {
                    continue;
                }
                let Some(node) = p.spec.node_name.as_deref() else { continue };
                let e = used.entry(node).or_default();
                e.0 += DEVICE_RESOURCES.iter().map(|r| p.request(r)).sum::<f64>();
                e.1 += p.request("cpu");
                e.2 += p.request("memory") / GIB;
            }
            for f in &mut facts {
                f.used = Some(used.get(f.name.as_str()).copied().unwrap_or_default());
            }
        }
        Inventory { context: context.to_string(), nodes: facts, pods_visible: pods.is_some() }
    }

    /// Per accelerator: devices in total and free, and nodes.
    pub fn gpu_capacity(&self) -> Vec<GpuCapacity> {
        let mut by: BTreeMap<&str, GpuCapacity> = BTreeMap::new();
        for n in &self.nodes {
            let Some(name) = n.accelerator_name() else { continue };
            let e = by.entry(name).or_insert_with(|| GpuCapacity {
                context: self.context.clone(),
                accelerator: name.to_string(),
                per_node: 0.0,
                total: 0.0,
                free: self.pods_visible.then_some(0.0),
                nodes: 0,
                ready_nodes: 0,
            });
            e.per_node = e.per_node.max(n.devices);
            e.total += n.devices;
            e.nodes += 1;
            if n.ready {
                e.ready_nodes += 1;
                if let (Some(f), Some((d, _, _))) = (e.free.as_mut(), n.free()) {
                    *f += d;
                }
            }
        }
        by.into_values().collect()
    }

    /// The context's offers: per accelerator and spot-ness, one offer per power-of-two device
    /// count up to the largest node's, with that share of the node's CPUs and memory; and a
    /// ladder of CPU-only offers (2, 4, 8, … vCPUs at 4 GiB each) up to the largest node. Priced
    /// with `price` (GPU-hours + vCPU-hours), else at 0 with `price_breakdown` saying so.
    pub fn offers(&self, price: Option<ContextPrice>) -> Vec<Offer> {
        let now = chrono::Utc::now();
        let mut groups: BTreeMap<(String, bool), &NodeFacts> = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.accelerator.is_some() && n.devices >= 1.0) {
            let key = (n.accelerator_name().unwrap_or_default().to_string(), n.spot);
            let e = groups.entry(key).or_insert(n);
            if n.devices > e.devices {
                *e = n;
            }
        }
        let mut out = Vec::new();
        let mut offer = |accel: Option<&NodeAccelerator>, count: f64, cpus: f64, mem: f64, spot: bool| {
            let (amount, breakdown) = match price {
                Some(p) => (p.gpu_hour * count + p.vcpu_hour * cpus, format!("{count} GPU-h × ${} + {cpus} vCPU-h × ${}", p.gpu_hour, p.vcpu_hour)),
                None => (0.0, format!("unpriced: no kubernetes.contexts.{}.gpu_hour_usd / vcpu_hour_usd in config.yaml", self.context)),
            };
            out.push(Offer {
                cloud: super::INFRA.into(),
                instance_type: instance_type(cpus, mem, accel.map(|a| (a.info.name.as_str(), count))).into(),
                region: self.context.clone().into(),
                zone: None,
                accelerator_name: accel.map(|a| a.info.name.clone()).map(Into::into),
                accelerator_count: count,
                accelerator_memory_gib: accel.and_then(|a| a.info.memory_gib),
                accelerator_vendor: accel.map(|a| a.info.vendor.to_string()).map(Into::into),
                vcpus: Some(cpus),
                memory_gib: Some(mem),
                arch: None,
                price: (!spot).then_some(amount),
                spot_price: spot.then_some(amount),
                fetched_at: now,
                source: format!("kubernetes context {}", self.context).into(),
                price_breakdown: Some(breakdown.into()),
                spot_interruption: None,
                hyperv_generations: None,
            });
        };
        for ((_, spot), n) in &groups {
            let mut count = 1.0;
            while count <= n.devices {
                let share = count / n.devices;
                let cpus = (n.cpus * share).floor().max(1.0);
                let mem = (n.memory_gib * share).floor().max(1.0);
                offer(n.accelerator.as_ref(), count, cpus, mem, *spot);
                count *= 2.0;
            }
        }
        let biggest = self.nodes.iter().filter(|n| n.ready || !self.nodes.iter().any(|m| m.ready)).map(|n| (n.cpus, n.memory_gib)).fold((0.0f64, 0.0f64), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        let mut cpus = 2.0;
        while cpus <= biggest.0 && cpus * 4.0 <= biggest.1 + 1e-9 {
            offer(None, 0.0, cpus, cpus * 4.0, false);
            cpus *= 2.0;
        }
        out
    }

    /// Nodes a pod for `accelerator` (None: CPU-only) on the given market may be scheduled on.
    pub fn candidates<'a>(&'a self, accelerator: Option<&'a str>, spot: bool) -> impl Iterator<Item = &'a NodeFacts> + 'a {
        self.nodes.iter().filter(move |n| match accelerator {
            Some(a) => n.accelerator_name() == Some(a) && n.spot == spot,
            None => true,
        })
    }
}

/// SkyPilot's Kubernetes instance type names: `8CPU--32GB--2xH100`, `4CPU--16GB`.
pub fn instance_type(cpus: f64, mem: f64, accel: Option<(&str, f64)>) -> String {
    match accel {
        Some((a, n)) => format!("{cpus}CPU--{mem}GB--{n}x{a}"),
        None => format!("{cpus}CPU--{mem}GB"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> NodeObject {
        let path = format!("{}/src/backend/kubernetes/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("8"), Some(8.0));
        assert_eq!(quantity("64Gi"), Some(64.0 * GIB));
        assert_eq!(quantity("1.5G"), Some(1.5e9));
        assert_eq!(quantity("131072Ki"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("7Zi"), None);
        assert_eq!(quantity(""), None);
        assert_eq!(quantity("-1"), None);
    }

    #[test]
    fn real_shaped_nodes_from_each_stack() {
        // (fixture, accelerator, device resource, devices, spot, selector key)
        let cases = [
            ("gke-a100-node.json", "A100", "nvidia.com/gpu", 8.0, false, "cloud.google.com/gke-accelerator"),
            ("gke-spot-l4-node.json", "L4", "nvidia.com/gpu", 1.0, true, "cloud.google.com/gke-accelerator"),
            ("gke-tpu-v5e-node.json", "tpu-v5litepod-8", "google.com/tpu", 4.0, false, "cloud.google.com/gke-tpu-accelerator"),
            ("eks-karpenter-l40s-node.json", "L40S", "nvidia.com/gpu", 4.0, true, "karpenter.k8s.aws/instance-gpu-name"),
            ("gfd-h100-node.json", "H100", "nvidia.com/gpu", 8.0, false, "nvidia.com/gpu.product"),
            ("coreweave-a100-node.json", "A100-80GB", "nvidia.com/gpu", 8.0, false, "gpu.nvidia.com/class"),
        ];
        for (file, accel, resource, devices, spot, key) in cases {
            let f = NodeFacts::from_object(&fixture(file));
            assert_eq!(f.accelerator_name(), Some(accel), "{file}");
            assert_eq!(f.device_resource, Some(resource), "{file}");
            assert_eq!(f.devices, devices, "{file}");
            assert_eq!(f.spot, spot, "{file}");
            assert!(f.ready, "{file}");
            assert_eq!(f.accelerator.unwrap().selector.0, key, "{file}");
            assert!(f.cpus > 0.0 && f.memory_gib > 0.0, "{file}");
        }
    }

    #[test]
    fn free_counts_offers_and_unknown_usage() {
        let node = fixture("gfd-h100-node.json");
        let pod = |phase: &str, gpus: &str| -> PodObject {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": node.metadata.name, "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": gpus, "cpu": "4", "memory": "16Gi"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let pods = [pod("Running", "2"), pod("Pending", "1"), pod("Succeeded", "4")];
        let inv = Inventory::new("ctx", std::slice::from_ref(&node), Some(&pods));
        let cap = inv.gpu_capacity();
        assert_eq!(cap.len(), 1);
        assert_eq!((cap[0].accelerator.as_str(), cap[0].total, cap[0].free, cap[0].nodes), ("H100", 8.0, Some(5.0), 1));

        let hidden = Inventory::new("ctx", std::slice::from_ref(&node), None);
        assert_eq!(hidden.gpu_capacity()[0].free, None);
        // 5 GPUs, 223 - 8 cores and ~2 TiB free: five 1-GPU pods, two 2-GPU pods.
        let n = &inv.nodes[0];
        assert_eq!(n.slots(1.0, 4.0, 16.0), Some(5));
        assert_eq!(n.slots(2.0, 4.0, 16.0), Some(2));
        assert_eq!(hidden.nodes[0].slots(1.0, 1.0, 1.0), None);

        let offers = inv.offers(None);
        let counts: Vec<f64> = offers.iter().filter(|o| o.accelerator_name.is_some()).map(|o| o.accelerator_count).collect();
        assert_eq!(counts, [1.0, 2.0, 4.0, 8.0]);
        assert!(offers.iter().all(|o| o.price == Some(0.0) && o.price_breakdown.as_deref().unwrap().starts_with("unpriced")));
        assert!(offers.iter().any(|o| o.accelerator_name.is_none() && &*o.instance_type == "2CPU--8GB"));
        let priced = inv.offers(Some(ContextPrice { gpu_hour: 2.0, vcpu_hour: 0.05 }));
        let one = priced.iter().find(|o| o.accelerator_count == 1.0).unwrap();
        let cpus = one.vcpus.unwrap();
        assert!((one.price.unwrap() - (2.0 + 0.05 * cpus)).abs() < 1e-9);
        assert_eq!(one.region, "ctx".into());
        assert_eq!(one.cloud, "kubernetes".into());
    }
}
