//! `skycat check` / `show-gpus --infra k8s` / `launch` / `exec` / `logs` / `status --endpoints` /
//! `ssh` / `stop` / `down` / autostop on Kubernetes through the real binary. The control plane is skycat-testkit's
//! loopback EMULATION of the Kubernetes API server (testkit/emulators/kubernetes.md): TLS with
//! the CA in the kubeconfig, a bearer token, a scheduler that honours requests, node selectors
//! and taints, and `pods/exec` over WebSocket that runs real processes in a network-namespace
//! host per pod, so the real agent runs in each "pod".
//!
//! Checked: the free GPU count `show-gpus` reads drops when pods are placed and comes back after
//! `down`; a two-node launch gets one pod per rank (selector, tolerations, requests and limits
//! from the offer) whose IPs are `SKYCAT_NODE_IPS`; the task's port becomes a NodePort Service
//! that `status --endpoints` shows; `skycat ssh` runs through exec; `stop` refuses and names
//! `down`; `down` leaves no pod and no Service; no request the backend sent was refused for its
//! shape. A forbidden pod list makes free counts unknown, not 0.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use skycat_testkit::k8s::{KubeEmulator, KubeNode, Sandbox, Taint};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 120;
const TOKEN: &str = "k8s-e2e-token-6b2f0c1d";
const CONTEXT: &str = "emu-east";

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    agent: std::path::PathBuf,
}

impl Env {
    fn skycat(&self, args: &[&str]) -> Output {
        tokio::task::block_in_place(|| {
            Command::new(env!("CARGO_BIN_EXE_skycat"))
                .args(args)
                .env("SKYCAT_HOME", self.home.path())
                .env("HOME", self.user_home.path())
                .env("KUBECONFIG", &self.kubeconfig)
                .env("SKYCAT_AGENT_BIN", &self.agent)
                .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
                .output()
                .expect("run skycat")
        })
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A GPU node as GPU Feature Discovery labels it, tainted as GPU pools usually are.
pub fn h100_node(name: &str, gpus: u32) -> KubeNode {
    KubeNode {
        name: name.into(),
        labels: map(&[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"), ("nvidia.com/gpu.memory", "81559")]),
        allocatable: map(&[("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", &gpus.to_string()), ("pods", "110")]),
        taints: vec![Taint { key: "nvidia.com/gpu".into(), value: Some("present".into()), effect: "NoSchedule".into() }],
    }
}

/// Host i of `hosts` as a pod sandbox.
pub fn sandbox(hosts: &TestHosts, i: u32) -> Sandbox {
    Sandbox { netns: hosts.ns(i), pod_ip: hosts.ip(i), host_ip: format!("10.231.{}.1", hosts.net() + i), home: hosts.home(i) }
}

/// `show-gpus --infra k8s` row for H100 in the context: (total, free) as printed.
fn h100_row(env: &Env) -> (String, String) {
    let out = env.skycat(&["show-gpus", "--infra", "k8s"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let row = t.lines().find(|l| l.contains(CONTEXT) && l.contains("H100")).unwrap_or_else(|| panic!("no H100 row: {t}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // CONTEXT GPU PER-NODE TOTAL FREE NODES
    (cols[3].to_string(), cols[4].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_show_gpus_launch_ports_ssh_refused_stop_and_down() {
    let emu = KubeEmulator::start(TOKEN).await;
    emu.add_node(h100_node("gpu-node-1", 2));
    emu.add_node(h100_node("gpu-node-2", 2));
    let hosts = TestHosts::up(3, NET, "k8s");
    emu.add_sandboxes((1..=3).map(|i| sandbox(&hosts, i)).collect());
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emu.kubeconfig_yaml(CONTEXT, "ml")).unwrap();
    let env = Env { home, user_home: tempfile::tempdir().unwrap(), kubeconfig, agent: agent_bin() };
    std::fs::write(
        env.home.path().join("config.yaml"),
        format!("kubernetes:\n  contexts:\n    {CONTEXT}:\n      gpu_hour_usd: 1.5\n      vcpu_hour_usd: 0.02\n"),
    )
    .unwrap();

    // check enables launching with an authenticated read on the context.
    let out = env.skycat(&["check", "kubernetes"]);
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN), "the token must never be printed: {}", text(&out));
    assert_eq!(h100_row(&env), ("4".into(), "4".into()));

    let task = env.home.path().join("task.yaml");
    std::fs::write(
        &task,
        "name: pair\nnum_nodes: 2\nresources:\n  infra: k8s/emu-east\n  accelerators: H100:1\n  ports: 8080\n\
         run: |\n  echo \"rank $SKYCAT_NODE_RANK of $SKYCAT_NUM_NODES gpus=$SKYCAT_NUM_GPUS_PER_NODE\"\n  echo \"ips: $(echo $SKYCAT_NODE_IPS)\"\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let out = env.skycat(&["launch", "-c", "pair", task.to_str().unwrap(), "-y"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch of 2 pods on the Kubernetes emulation took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("kubernetes/emu-east"), "{log}");

    // One pod per rank, shaped by the offer.
    let pods = emu.pods();
    assert_eq!(pods.len(), 2, "{pods:#?}");
    let mut ips = Vec::new();
    for p in &pods {
        assert_eq!(p["metadata"]["namespace"], "ml");
        assert_eq!(p["metadata"]["labels"]["skycat.dev/cluster"], "pair");
        assert_eq!(p["spec"]["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
        assert_eq!(p["spec"]["tolerations"][0]["key"], "nvidia.com/gpu");
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(c["resources"]["requests"]["nvidia.com/gpu"], "1");
        assert_eq!(p["status"]["phase"], "Running");
        ips.push(p["status"]["podIP"].as_str().unwrap().to_string());
    }
    // Two of the four GPUs are taken.
    assert_eq!(h100_row(&env), ("4".into(), "2".into()));

    // Both ranks ran, and saw both pod IPs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let out = env.skycat(&["logs", "pair", "1"]);
        let t = text(&out);
        if t.contains("rank 0 of 2") && t.contains("rank 1 of 2") {
            break t;
        }
        assert!(Instant::now() < deadline, "no job output: {t}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(logs.contains("gpus=1"), "{logs}");
    for ip in &ips {
        assert!(logs.contains(ip.as_str()), "SKYCAT_NODE_IPS must list {ip}: {logs}");
    }

    // exec: a second job on both pods, through the exec transport.
    let out = env.skycat(&["exec", "pair", "echo exec-ok-$SKYCAT_NODE_RANK"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = text(&env.skycat(&["logs", "pair", "2"]));
        if t.contains("exec-ok-0") && t.contains("exec-ok-1") {
            break;
        }
        assert!(Instant::now() < deadline, "no exec output: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // The port is a NodePort Service on the head pod; status --endpoints says where.
    let svcs = emu.services();
    assert_eq!(svcs.len(), 1, "{svcs:#?}");
    assert_eq!(svcs[0]["spec"]["type"], "NodePort");
    assert_eq!(svcs[0]["spec"]["selector"]["skycat.dev/rank"], "0");
    let node_port = svcs[0]["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    let out = env.skycat(&["status", "pair", "--endpoints"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8080: ") && text(&out).contains(&format!(":{node_port}")), "{}", text(&out));

    // skycat ssh: through exec (no TTY here: pipes stay pipes).
    let out = env.skycat(&["ssh", "pair", "--", "echo", "hello-from-$HOSTNAME"]);
    assert!(out.status.success(), "{}", text(&out));
    let head = pods.iter().find(|p| p["metadata"]["labels"]["skycat.dev/rank"] == "0").unwrap();
    assert!(text(&out).contains(&format!("hello-from-{}", head["metadata"]["name"].as_str().unwrap())), "{}", text(&out));
    let out = env.skycat(&["ssh", "pair", "--", "exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));

    // No stop for pods: refused before anything is touched, naming down.
    let out = env.skycat(&["stop", "pair"]);
    assert!(!out.status.success() && text(&out).contains("skycat down pair"), "{}", text(&out));
    assert_eq!(emu.pods().len(), 2);

    // A forbidden pod list: free is unknown, not 0.
    emu.forbid_pod_list(true);
    assert_eq!(h100_row(&env), ("4".into(), "?".into()));
    emu.forbid_pod_list(false);

    // down: no pod and no Service left; the GPUs are free again.
    let out = env.skycat(&["down", "pair"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(emu.pods().is_empty(), "{:#?}", emu.pods());
    assert!(emu.services().is_empty(), "{:#?}", emu.services());
    assert_eq!(h100_row(&env), ("4".into(), "4".into()));

    // Autostop: a pod cannot stop, so an idle cluster is torn down and its GPU freed.
    let short = env.home.path().join("short.yaml");
    std::fs::write(&short, "resources:\n  infra: k8s/emu-east\n  accelerators: H100:1\nrun: echo short\n").unwrap();
    let out = env.skycat(&["launch", "-c", "idle", short.to_str().unwrap(), "-i", "0.05", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h100_row(&env), ("4".into(), "3".into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = env.skycat(&["status"]);
        if !text(&out).contains("idle") && emu.pods().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the idle cluster was not torn down: {} {:#?}", text(&out), emu.pods());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(h100_row(&env), ("4".into(), "4".into()));
    assert!(emu.rejections().is_empty(), "requests the API server would refuse: {:?}", emu.rejections());
}
