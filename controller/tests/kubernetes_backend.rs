//! The Kubernetes backend against skycat-testkit's API-server EMULATION
//! (testkit/emulators/kubernetes.md), without network namespaces: what `describe` calls a pod
//! whose node goes NotReady, is removed (a reclaimed spot node), or which is evicted or deleted
//! (all preemptions, for managed jobs); the fast capacity refusal before any pod is made when
//! the cluster is full; offers and free counts; and a wrong token as an auth error.

use std::collections::BTreeMap;

use skycat_controller::backend::kubernetes::Kubernetes;
use skycat_controller::backend::{Backend, BackendContext, ErrorClass, NodeState, ProvisionRequest};
use skycat_controller::home::Home;
use skycat_controller::ssh::SshOptions;
use skycat_controller::store::{ClusterRow, NodeRow, Store};
use skycat_optimizer::Placement;
use skycat_testkit::k8s::{KubeEmulator, KubeNode};

const TOKEN: &str = "k8s-backend-token-77c1";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn l4_node(name: &str, spot: bool) -> KubeNode {
    let mut labels = map(&[("cloud.google.com/gke-accelerator", "nvidia-l4")]);
    if spot {
        labels.insert("cloud.google.com/gke-spot".into(), "true".into());
    }
    KubeNode { name: name.into(), labels, allocatable: map(&[("cpu", "8"), ("memory", "32Gi"), ("nvidia.com/gpu", "1")]), taints: Vec::new() }
}

async fn backend(emu: &KubeEmulator, token: &str, dir: &std::path::Path) -> Kubernetes {
    let mut kubeconfig = emu.kubeconfig_yaml("emu", "ml");
    kubeconfig = kubeconfig.replace(TOKEN, token);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let home = Home::at(dir.join("home"));
    home.ensure().unwrap();
    std::fs::write(home.root.join("config.yaml"), format!("kubernetes:\n  kubeconfig: {}\n", path.display())).unwrap();
    let store = Store::open(&home.state_db()).await.unwrap();
    Kubernetes::new(BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store })
}

fn cluster() -> ClusterRow {
    ClusterRow {
        id: "c0ffee".into(),
        name: "t".into(),
        status: "UP".into(),
        infra: "kubernetes/emu".into(),
        pool: "emu".into(),
        num_nodes: 1,
        price_per_hour: 0.0,
        spot: false,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: String::new(),
        updated_at: String::new(),
        terminated_at: None,
        instance_type: None,
        ports: None,
    }
}

/// The node row of a pod the emulator placed (as a launch records it).
fn node_row(pod: &str) -> NodeRow {
    NodeRow {
        cluster_id: "c0ffee".into(),
        rank: 0,
        node_id: "t-0".into(),
        pool: "emu".into(),
        ip: "10.0.0.1".into(),
        port: 0,
        user: format!("k8s:emu/other/{pod}"),
        identity_file: String::new(),
        state_dir: String::new(),
        agent_bin: String::new(),
        last_heartbeat_at: None,
        last_seq: 0,
        accrued_usd: 0.0,
        metered_seconds: 0.0,
        idle_seconds: None,
        instance_id: Some(pod.into()),
        zone: None,
    }
}

fn pod_on(emu: &KubeEmulator, node: &str) -> String {
    emu.pods().iter().find(|p| p["spec"]["nodeName"] == node).and_then(|p| p["metadata"]["name"].as_str()).expect("a pod on the node").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_calls_every_kind_of_pod_loss_a_preemption() {
    let emu = KubeEmulator::start(TOKEN).await;
    for n in ["n-ready", "n-notready", "n-removed", "n-evict"] {
        emu.add_node(l4_node(n, n == "n-removed"));
        emu.add_pods_bulk("other", n, 1, map(&[("cpu", "1")]));
    }
    let dir = tempfile::tempdir().unwrap();
    let k = backend(&emu, TOKEN, dir.path()).await;
    let c = cluster();
    let state = |pod: String| {
        let k = &k;
        let c = &c;
        async move { k.describe(c, &node_row(&pod)).await.expect("describe") }
    };
    assert_eq!(state(pod_on(&emu, "n-ready")).await, NodeState::Running);

    let p = pod_on(&emu, "n-notready");
    emu.set_node_ready("n-notready", false);
    assert!(matches!(state(p).await, NodeState::Preempted { reason } if reason.contains("n-notready is NotReady")));

    let p = pod_on(&emu, "n-evict");
    emu.evict_pod("other", &p);
    assert!(matches!(state(p).await, NodeState::Preempted { reason } if reason.contains("Evicted")));

    // A reclaimed spot node: the node and its pods are gone.
    let p = pod_on(&emu, "n-removed");
    emu.remove_node("n-removed");
    assert!(matches!(state(p).await, NodeState::Preempted { reason } if reason.contains("deleted")));
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_free_counts_and_a_full_cluster_refused_before_any_pod() {
    let emu = KubeEmulator::start(TOKEN).await;
    emu.add_node(l4_node("a", false));
    emu.add_node(l4_node("b", true));
    let dir = tempfile::tempdir().unwrap();
    let k = backend(&emu, TOKEN, dir.path()).await;
    k.refresh_offers().await.unwrap();
    let offers = k.offers(&[]);
    let l4: Vec<_> = offers.iter().filter(|o| o.accelerator_name.as_deref() == Some("L4")).collect();
    assert_eq!(l4.len(), 2, "one on-demand and one spot offer: {l4:#?}");
    assert!(l4.iter().any(|o| o.price == Some(0.0) && o.spot_price.is_none()));
    assert!(l4.iter().any(|o| o.spot_price == Some(0.0) && o.price.is_none()));
    assert!(l4.iter().all(|o| &*o.region == "emu" && &*o.cloud == "kubernetes" && &*o.instance_type == "8CPU--32GB--1xL4"));

    // The on-demand node's GPU is taken: an on-demand launch is refused at once, no pod made.
    emu.add_pods_bulk("other", "a", 1, map(&[("nvidia.com/gpu", "1")]));
    let cap = k.gpu_capacity(None).await.unwrap().remove(0).unwrap();
    assert_eq!((cap[0].total, cap[0].free), (2.0, Some(1.0)));
    let placement = Placement {
        cloud: "kubernetes".into(),
        region: "emu".into(),
        zone: None,
        instance_type: "8CPU--32GB--1xL4".into(),
        vcpus: Some(8.0),
        memory_gib: Some(32.0),
        accelerator: Some("L4".into()),
        count: 1.0,
        use_spot: false,
        hourly_price: 0.0,
        num_nodes: 1,
        hourly_total: 0.0,
        hours: 1.0,
        total_cost: 0.0,
        egress_cost: 0.0,
        spot_interruption: None,
        expected_cost: None,
    };
    let req = ProvisionRequest {
        cluster: "t".into(),
        cluster_id: "c0ffee".into(),
        placement,
        num_nodes: 1,
        ports: Vec::new(),
        disk_size_gb: None,
        image_id: None,
        avoid_nodes: Vec::new(),
    };
    let before = emu.pods().len();
    let e = k.provision(&req).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Capacity, "{e}");
    assert!(e.message.contains("no room"), "{e}");
    assert_eq!(emu.pods().len(), before, "no pod may be created for a full cluster");

    // Pods hidden: free is unknown, not 0.
    emu.forbid_pod_list(true);
    let cap = k.gpu_capacity(None).await.unwrap().remove(0).unwrap();
    assert_eq!(cap[0].free, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_an_auth_error_naming_the_context() {
    let emu = KubeEmulator::start(TOKEN).await;
    emu.add_node(l4_node("a", false));
    let dir = tempfile::tempdir().unwrap();
    let k = backend(&emu, "not-the-token", dir.path()).await;
    let e = k.refresh_offers().await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth, "{e}");
    assert!(e.message.contains("kubernetes context emu"), "{e}");
    assert!(!e.message.contains("not-the-token"), "{e}");
    let check = k.check().await;
    assert!(!check.verified && check.has_credentials, "{check:?}");
}
