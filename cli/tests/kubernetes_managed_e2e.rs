//! A managed job on Kubernetes recovers from evictions: first onto another node of the cluster,
//! then, when the cluster is full, onto an SSH node pool ("burst"). skycat-testkit's EMULATION
//! of the Kubernetes API server is the control plane (testkit/emulators/kubernetes.md); each pod
//! runs in a network-namespace host where `pods/exec` starts the real agent, which sends
//! heartbeats over HTTPS to this test's heartbeat router at the pod's host IP.
//!
//! An eviction here is what a higher-priority workload does: the pod goes `Failed`/`Evicted`
//! (its processes are killed) and the new workload takes its GPU. The managed-jobs loop must see
//! that through the backend as a preemption, re-plan, and land where there is room: the other
//! node, then (both GPUs taken) the SSH pool, where the job finishes. Nothing is left in the
//! cluster at the end.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};
use skycat_testkit::k8s::{KubeEmulator, KubeNode, Sandbox};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::TestHosts;

const NET: u32 = 130;
const TOKEN: &str = "k8s-managed-token-1e7a";
const CONTEXT: &str = "emu-west";
const NAMESPACE: &str = "jobs";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn gpu_node(name: &str) -> KubeNode {
    KubeNode {
        name: name.into(),
        labels: map(&[("cloud.google.com/gke-accelerator", "nvidia-l4")]),
        allocatable: map(&[("cpu", "8"), ("memory", "32Gi"), ("nvidia.com/gpu", "1"), ("pods", "110")]),
        taints: Vec::new(),
    }
}

async fn wait_for(what: &str, timeout: Duration, m: &Managed, id: i64, f: impl FnMut(&JobView) -> bool) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

/// The running pod of the job's current attempt: (name, node).
fn running_pod(emu: &KubeEmulator) -> (String, String) {
    let pods: Vec<_> = emu.pods().into_iter().filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["namespace"] == NAMESPACE).collect();
    assert_eq!(pods.len(), 1, "{pods:#?}");
    (pods[0]["metadata"]["name"].as_str().unwrap().to_string(), pods[0]["spec"]["nodeName"].as_str().unwrap().to_string())
}

/// Evicts the pod and lets another workload take its node's GPU.
fn evict_for_another_workload(emu: &KubeEmulator, pod: &str, node: &str) {
    emu.evict_pod(NAMESPACE, pod);
    emu.add_pods_bulk("other-team", node, 1, map(&[("nvidia.com/gpu", "1"), ("cpu", "1")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_job_on_kubernetes_recovers_on_another_node_then_bursts_to_a_pool() {
    let emu = KubeEmulator::start(TOKEN).await;
    emu.add_node(gpu_node("l4-node-a"));
    emu.add_node(gpu_node("l4-node-b"));
    // Hosts 1-3 back pods; host 4 is the SSH pool's machine.
    let hosts = TestHosts::up(4, NET, "k8smj");
    emu.add_sandboxes(
        (1..=3)
            .map(|i| Sandbox { netns: hosts.ns(i), pod_ip: hosts.ip(i), host_ip: format!("10.231.{}.1", NET + i), home: hosts.home(i) })
            .collect(),
    );
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emu.kubeconfig_yaml(CONTEXT, NAMESPACE)).unwrap();
    // The only test in this binary: the process env is not shared with another test.
    std::env::set_var("KUBECONFIG", &kubeconfig);
    std::env::set_var("SKYCAT_SSH_READY_TIMEOUT_SECS", "30");
    common::mark_enabled(home.path(), "kubernetes", &format!("kubeconfig {}", kubeconfig.display()), "GET /api/v1/nodes?limit=1");
    // The cluster's GPUs cost less than the pool's: the job goes there while it has room.
    std::fs::write(
        home.path().join("config.yaml"),
        format!("kubernetes:\n  provision_timeout: 3\n  contexts:\n    {CONTEXT}:\n      gpu_hour_usd: 0.5\n"),
    )
    .unwrap();
    std::fs::write(
        home.path().join("ssh_node_pools.yaml"),
        format!(
            "burst:\n  hosts:\n    - {}\n  user: root\n  identity_file: {}\n  accelerators: L4:1\n  price_per_hour: 3.0\n",
            hosts.ip(4),
            hosts.key().display()
        ),
    )
    .unwrap();
    let (managed, _store, server) = common::managed_harness(home.path()).await;

    // A job that needs two recoveries to finish.
    let spec = skycat_optimizer::parse_task_yaml(
        "resources:\n  accelerators: L4:1\nrun: |\n  echo rc=$SKYCAT_JOB_RECOVERY_COUNT on $SKYCAT_NODE_IPS\n  \
         if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" -lt 2 ]; then sleep 300; fi\n  echo finished\n",
    )
    .expect("task");
    let req = skycat_controller::managed::JobRequest {
        name: Some("train".into()),
        task: skycat_controller::TaskRun { name: Some("train".into()), num_nodes: 1, run: spec.run.clone(), ..Default::default() },
        use_spot: false,
        strategy: Some("FAILOVER".into()),
        max_restarts_on_errors: 0,
        spec: Some(spec),
    };
    let id = managed.submit(req).await.expect("submit");

    let v = wait_for("the first attempt running on Kubernetes", Duration::from_secs(60), &managed, id, |v| v.status == "RUNNING").await;
    assert_eq!(v.attempts[0].pool, format!("kubernetes/{CONTEXT}"), "{v:#?}");
    let (pod1, node1) = running_pod(&emu);

    // Evicted: recovery on the other node.
    evict_for_another_workload(&emu, &pod1, &node1);
    let v = wait_for("recovery on the other node", Duration::from_secs(90), &managed, id, |v| v.attempts.len() >= 2 && v.status == "RUNNING").await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("Evicted"), "{v:#?}");
    assert_eq!(v.attempts[1].pool, format!("kubernetes/{CONTEXT}"), "{v:#?}");
    let (pod2, node2) = running_pod(&emu);
    assert_ne!(node2, node1, "the recovery must land on the node with room");

    // Evicted again, and now the cluster is full: it bursts to the pool and finishes there.
    evict_for_another_workload(&emu, &pod2, &node2);
    let v = wait_for("recovery on the SSH pool", Duration::from_secs(90), &managed, id, |v| v.attempts.len() >= 3 && v.status == "RUNNING").await;
    assert_eq!(v.attempts[1].outcome, "PREEMPTED", "{v:#?}");
    assert_eq!(v.attempts[2].pool, "ssh/burst", "{v:#?}");
    assert_eq!(v.attempts[2].hosts, vec![hosts.ip(4)]);
    assert_eq!(v.recovery_count, 2);
    let v = managed.wait(id, Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    let logs = managed.logs(id).await.unwrap().1;
    assert!(logs.iter().any(|(_, l)| l.contains("rc=2") && l.contains("finished")), "{logs:?}");

    // The job's pods are gone (the evicted ones included); only the other team's remain.
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.pods().iter().any(|p| p["metadata"]["namespace"] == NAMESPACE) {
        assert!(Instant::now() < deadline, "left after the job: {:#?}", emu.pods());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(emu.rejections().is_empty(), "requests the API server would refuse: {:?}", emu.rejections());
    server.abort();
}
