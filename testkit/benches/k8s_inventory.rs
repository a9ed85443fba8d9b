//! Benchmark: what skycat reads from a Kubernetes context before planning — the node list, the
//! pod list, the inventory (accelerators from labels, free = allocatable − requests) and the
//! offers — for a cluster of 1,000 nodes and 10,000 pods on skycat-testkit's API-server
//! emulation (loopback HTTPS). The emulator serves on this process's runtime, so its time is in
//! the figure, as a real API server's would be.
//!
//!   scripts/bench-k8s-inventory.sh [ROUNDS]

use std::collections::BTreeMap;
use std::time::Instant;

use skycat_controller::backend::kubernetes::Kubernetes;
use skycat_controller::backend::{Backend, BackendContext};
use skycat_controller::home::Home;
use skycat_controller::ssh::SshOptions;
use skycat_controller::store::Store;
use skycat_testkit::k8s::{KubeEmulator, KubeNode, Taint};

const NODES: usize = 1_000;
const PODS_PER_NODE: usize = 10;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A mixed fleet: GKE A100 and L4 pools, Karpenter L40S spot nodes, GFD H100 nodes, CPU nodes.
fn node(i: usize) -> KubeNode {
    let (labels, gpus): (Vec<(&str, &str)>, &str) = match i % 5 {
        0 => (vec![("cloud.google.com/gke-accelerator", "nvidia-tesla-a100")], "8"),
        1 => (vec![("cloud.google.com/gke-accelerator", "nvidia-l4"), ("cloud.google.com/gke-spot", "true")], "1"),
        2 => (vec![("karpenter.k8s.aws/instance-gpu-name", "l40s"), ("karpenter.sh/capacity-type", "spot")], "4"),
        3 => (vec![("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")], "8"),
        _ => (vec![], "0"),
    };
    let mut allocatable = map(&[("cpu", "95"), ("memory", "640Gi"), ("pods", "110")]);
    if gpus != "0" {
        allocatable.insert("nvidia.com/gpu".into(), gpus.into());
    }
    let mut l = map(&labels);
    l.insert("kubernetes.io/hostname".into(), format!("node-{i:04}"));
    KubeNode {
        name: format!("node-{i:04}"),
        labels: l,
        allocatable,
        taints: if gpus != "0" { vec![Taint { key: "nvidia.com/gpu".into(), value: Some("present".into()), effect: "NoSchedule".into() }] } else { vec![] },
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("SKYCAT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let emu = KubeEmulator::start("bench-inventory-token").await;
        for i in 0..NODES {
            emu.add_node(node(i));
        }
        // Per node: one pod holding a GPU (on GPU nodes), the rest CPU-only.
        for i in 0..NODES {
            let node = format!("node-{i:04}");
            let gpu = if i % 5 == 4 { "0" } else { "1" };
            emu.add_pods_bulk("team", &node, 1, map(&[("cpu", "1"), ("memory", "4Gi"), ("nvidia.com/gpu", gpu)]));
            emu.add_pods_bulk("team", &node, PODS_PER_NODE - 1, map(&[("cpu", "1"), ("memory", "4Gi")]));
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, emu.kubeconfig_yaml("big", "default")).unwrap();
        std::env::set_var("KUBECONFIG", &kubeconfig);
        let home = Home::at(dir.path().join("home"));
        home.ensure().unwrap();
        let store = Store::open(&home.state_db()).await.unwrap();
        let cx = BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store };
        let k8s = Kubernetes::new(cx);
        let clients = k8s.clients();
        // One warm-up: the client and its TLS connection, as a long-running `skycat serve` has.
        k8s.refresh_offers().await.expect("offers");
        let (mut offers_ms, mut inv_ms) = (Vec::new(), Vec::new());
        let mut offers = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            k8s.refresh_offers().await.expect("offers");
            offers_ms.push(t.elapsed().as_secs_f64() * 1e3);
            offers = k8s.offers(&[]).len();
            let t = Instant::now();
            let inv = clients.inventory("big").await.expect("inventory");
            inv_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(inv.nodes.len(), NODES);
        }
        let cap = clients.inventory("big").await.unwrap().gpu_capacity();
        for c in &cap {
            println!("  {:<10} total {:>5} free {:>5} nodes {}", c.accelerator, c.total, c.free.unwrap_or(-1.0), c.nodes);
        }
        println!(
            "k8s inventory, {NODES} nodes / {} pods: refresh_offers (lists + inventory + {offers} offers) median {:.1} ms; inventory alone median {:.1} ms ({rounds} rounds)",
            NODES * PODS_PER_NODE,
            median(&mut offers_ms),
            median(&mut inv_ms)
        );
    });
}
