//! Benchmark: `skycat launch` to the job running, through the real binary.
//!
//! * SSH pool: one network-namespace sshd host; a fresh cluster (the agent is uploaded and
//!   started) and a relaunch on the UP cluster (agent reused).
//! * AWS: moto's server is EC2, and a namespace host comes up at each instance's private IP (the
//!   "boot"). The launch prints how long the node took to answer SSH; that boot wait is taken out,
//!   the rest (key pair, security group, RunInstances, describe, connect, agent, submit) is
//!   skycat's own.
//!
//! * GCP, Azure, Lambda Cloud and RunPod: their loopback emulations (skycat-testkit) are the control planes,
//!   and a namespace host comes up at each instance's (pod's) address. Lambda's instance is
//!   `active` at once (no emulated boot), so only the SSH wait is taken out; a RunPod pod runs once
//!   its host is up, so the time to "Provisioned" (the host's start, seen by polling `pod`) is
//!   taken out too, the API calls in it with it (sub-millisecond on loopback).
//!
//! * Kubernetes: skycat-testkit's API-server emulation, a namespace host per pod; no boot (the
//!   pod runs once scheduled), so launch → running is all skycat's own plus the exec calls.
//!
//! `SKYCAT_BENCH_ONLY=kubernetes,ssh` runs only those; `SKYCAT_BENCH_AGENT=path` ships that agent
//! (e.g. `cargo build --profile agent -p skycat-agent`'s) instead of the debug one.
//!
//! "Running" is when the job's first command runs: it writes `date +%s.%N` into the host's home,
//! which this machine reads (namespace hosts share the filesystem).
//!
//!   scripts/bench-launch.sh [ROUNDS]     (root; scripts/ci-setup-sshd.sh and ci-setup-moto.sh)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::aws_hosts::{ec2, make_vpc, InstanceHosts};
use common::moto::start_moto;
use common::{agent_bin, TestHosts};

const SSH_NET: u32 = 210;
const AWS_NET: u32 = 215;
const LAMBDA_NET: u32 = 211;
const RUNPOD_NET: u32 = 212;
const GCP_NET: u32 = 213;
const AZURE_NET: u32 = 214;
const K8S_NET: u32 = 216;

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    agent: PathBuf,
}

impl Env {
    fn new(agent: &Path) -> Env {
        Env { home: tempfile::tempdir().unwrap(), user_home: tempfile::tempdir().unwrap(), agent: agent.to_path_buf() }
    }

    fn skycat(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args).env("SKYCAT_HOME", self.home.path()).env("HOME", self.user_home.path()).env("SKYCAT_AGENT_BIN", &self.agent);
        let out = c.output().expect("run skycat");
        assert!(out.status.success(), "skycat {args:?} failed:\n{}", text(&out));
        out
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Seconds from `t0` until one of `homes` holds `started.<job>` (the job's first command).
fn started_after(homes: &[PathBuf], job: u64, t0: f64) -> f64 {
    for _ in 0..6000 {
        for h in homes {
            if let Some(t) = std::fs::read_to_string(h.join(format!("started.{job}"))).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
                return t - t0;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("job {job} never started");
}

const TASK: &str = "name: bench\nrun: |\n  date +%s.%N > \"$HOME/started.$SKYCAT_JOB_ID\"\n  sleep 600\n";

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_ssh(rounds: usize, agent: &Path) {
    let hosts = TestHosts::up(1, SSH_NET, "bench");
    let env = Env::new(agent);
    env.write(
        "ssh_node_pools.yaml",
        &format!("bench:\n  hosts: [{}]\n  user: root\n  identity_file: {}\n", hosts.ip(1), hosts.key().display()),
    );
    let task = env.write("task.yaml", TASK);
    let homes = [hosts.home(1)];
    let (mut fresh, mut again) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let t0 = now();
        env.skycat(&["launch", "-c", "bench", task.to_str().unwrap(), "--infra", "ssh/bench", "-y"]);
        let f = started_after(&homes, 1, t0);
        let t0 = now();
        env.skycat(&["launch", "-c", "bench", task.to_str().unwrap(), "--infra", "ssh/bench", "-y"]);
        let a = started_after(&homes, 2, t0);
        println!("ssh round {r}: fresh cluster (upload + start agent) launch->running {f:.3}s; relaunch on the UP cluster {a:.3}s");
        fresh.push(f);
        again.push(a);
        env.skycat(&["down", "bench"]);
        for j in [1, 2] {
            let _ = std::fs::remove_file(hosts.home(1).join(format!("started.{j}")));
        }
    }
    println!("ssh median of {rounds}: fresh {:.3}s, relaunch {:.3}s", median(&mut fresh), median(&mut again));
}

async fn bench_aws(rounds: usize, agent: &Path) {
    let moto = start_moto();
    let east = ec2(&moto.url, "us-east-1").await;
    make_vpc(&east, "skycat-bench", 235).await;
    let hosts = Arc::new(TestHosts::empty(AWS_NET, "bencha"));
    let _watcher = InstanceHosts::watch(hosts.clone(), vec![east.clone()]);
    // The launches (children) inherit moto's endpoint and fake keys.
    skycat_testkit::moto::use_fake_aws(&moto.url);
    let env = Env::new(agent);
    env.write("config.yaml", "aws:\n  vpc_name: skycat-bench\n  use_internal_ips: true\n  ssh_user: root\n");
    let task = env.write(
        "task.yaml",
        &format!("{TASK}resources:\n  instance_type: m6i.large\n  image_id: ami-785db401\n  infra: aws/us-east-1\n"),
    );
    env.skycat(&["check", "aws"]);
    let (mut total, mut own) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let t0 = now();
        let out = env.skycat(&["launch", "-c", "benchaws", task.to_str().unwrap(), "-y"]);
        let log = text(&out);
        let boot: f64 = log
            .lines()
            .find_map(|l| l.strip_prefix("Node(s) answer SSH after ").and_then(|r| r.strip_suffix("s.")).and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("no boot-wait line in the launch output:\n{log}"));
        // Every host this run brought up (one per instance so far).
        let homes: Vec<PathBuf> = (1..=r as u32).map(|i| hosts.home(i)).collect();
        let t = started_after(&homes, 1, t0);
        println!("aws round {r}: launch->running {t:.3}s, of which boot wait (node answers SSH) {boot:.1}s; skycat's own {:.3}s", t - boot);
        total.push(t);
        own.push(t - boot);
        env.skycat(&["down", "benchaws"]);
        // The next cluster's job is job 1 again, maybe on a host at a reused address.
        for h in &homes {
            let _ = std::fs::remove_file(h.join("started.1"));
        }
    }
    println!("aws median of {rounds}: launch->running {:.3}s, without the boot wait {:.3}s", median(&mut total), median(&mut own));
}

/// The number right before `suffix` on the launch log's line that starts with `prefix`.
fn logged(log: &str, prefix: &str, suffix: &str) -> f64 {
    log.lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(prefix)?;
            rest[..rest.find(suffix)?].split_whitespace().last()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no `{prefix}…{suffix}` line in the launch output:\n{log}"))
}

/// Brings up a namespace host at the address of every instance `list` returns (id, address,
/// public SSH port, the key it was launched with) once `live`; returns the ids' host numbers.
fn watch_hosts(
    hosts: Arc<TestHosts>,
    list: impl Fn() -> Vec<(String, String, Option<u16>, Vec<String>)> + Send + 'static,
    booted: impl Fn(&str) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut up: std::collections::BTreeMap<String, u32> = Default::default();
        let mut next = 1u32;
        loop {
            for (id, ip, port, keys) in list() {
                if up.contains_key(&id) {
                    continue;
                }
                for k in &keys {
                    hosts.authorize(k);
                }
                let i = next;
                next += 1;
                let h = hosts.clone();
                let hip = format!("10.230.{}.{i}", h.net());
                let mut args = vec!["up-at".to_string(), i.to_string(), ip, hip];
                args.extend(port.map(|p| p.to_string()));
                tokio::task::spawn_blocking(move || h.script(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.expect("up-at");
                up.insert(id.clone(), i);
                booted(&id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// What a cloud's launch log says is not skycat's own time.
#[derive(Clone, Copy)]
enum BootWait {
    /// The wait for the new host to answer SSH (the provider reports the instance up at once).
    SshOnly,
    /// That, and the time to "Provisioned": the provider starts the instance only once its host
    /// is up (RunPod's pod), so the provisioning wait is the host's start too.
    ProvisionedAndSsh,
}

/// `rounds` launches of `task` as cluster `cluster` on a cloud whose instances come up as
/// `hosts`: launch → the job's first command, minus the boot wait, each round and the medians.
fn launch_rounds(cloud: &str, rounds: usize, env: &Env, task: &Path, cluster: &str, hosts: &TestHosts, boot: BootWait) {
    let (mut total, mut own) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let t0 = now();
        let out = tokio::task::block_in_place(|| env.skycat(&["launch", "-c", cluster, task.to_str().unwrap(), "-y"]));
        let log = text(&out);
        let provisioned = logged(&log, "Provisioned ", "s after launch.");
        let ssh = logged(&log, "Node(s) answer SSH after ", "s.");
        let homes: Vec<PathBuf> = (1..=r as u32).map(|i| hosts.home(i)).collect();
        let t = tokio::task::block_in_place(|| started_after(&homes, 1, t0));
        let wait = match boot {
            BootWait::SshOnly => ssh,
            BootWait::ProvisionedAndSsh => provisioned + ssh,
        };
        println!(
            "{cloud} round {r}: launch->running {t:.3}s; provisioned at {provisioned:.1}s, SSH wait {ssh:.1}s; boot wait {wait:.1}s; skycat's own {:.3}s",
            t - wait
        );
        total.push(t);
        own.push(t - wait);
        tokio::task::block_in_place(|| env.skycat(&["down", cluster]));
        for h in &homes {
            let _ = std::fs::remove_file(h.join("started.1"));
        }
    }
    println!("{cloud} median of {rounds}: launch->running {:.3}s, without the boot wait {:.3}s", median(&mut total), median(&mut own));
}

/// Stops a host watcher and waits for it: it holds the hosts, whose lock the next benchmark's
/// hosts wait for.
async fn stop_watching(watcher: tokio::task::JoinHandle<()>) {
    watcher.abort();
    let _ = watcher.await;
}

async fn bench_lambda(rounds: usize, agent: &Path) {
    use skycat_testkit::lambda_emulator::{LambdaEmulator, LambdaEmulatorConfig};
    const KEY: &str = "secret_lambda-bench_0a1b2c3d";
    let emu = Arc::new(LambdaEmulator::start(LambdaEmulatorConfig { boot_reads: 0, ..LambdaEmulatorConfig::new(KEY, LAMBDA_NET as u8) }).await);
    let hosts = Arc::new(TestHosts::empty(LAMBDA_NET, "benchl"));
    let e = emu.clone();
    let watcher = watch_hosts(
        hosts.clone(),
        move || {
            e.instances()
                .into_iter()
                .filter(|v| v.status == "booting" || v.status == "active")
                .map(|v| {
                    let keys = v.ssh_key_names.iter().filter_map(|k| e.ssh_key(k)).collect();
                    (v.id, v.ip, None, keys)
                })
                .collect()
        },
        |_| {},
    );
    std::env::set_var("SKYCAT_LAMBDA_ENDPOINT", &emu.url);
    std::env::set_var("LAMBDA_API_KEY", KEY);
    let env = Env::new(agent);
    env.write("config.yaml", "lambda:\n  ssh_user: root\n");
    let task = env.write("task.yaml", &format!("{TASK}resources:\n  infra: lambda\n  accelerators: A10:1\n"));
    tokio::task::block_in_place(|| env.skycat(&["check", "lambda"]));
    launch_rounds("lambda", rounds, &env, &task, "benchl", &hosts, BootWait::SshOnly);
    stop_watching(watcher).await;
}

async fn bench_runpod(rounds: usize, agent: &Path) {
    use skycat_testkit::runpod::{EmulatorConfig, RunPodEmulator};
    const KEY: &str = "rpa_EMULATED_BENCH_KEY";
    let emu = Arc::new(
        RunPodEmulator::start(EmulatorConfig { api_key: KEY.into(), ip_prefix: format!("10.229.{RUNPOD_NET}."), first_public_port: 43022 })
            .await,
    );
    let hosts = Arc::new(TestHosts::empty(RUNPOD_NET, "benchr"));
    let (e, b) = (emu.clone(), emu.clone());
    let watcher = watch_hosts(
        hosts.clone(),
        move || {
            e.pods()
                .into_iter()
                .filter(|p| p.desired_status == "RUNNING")
                .map(|p| (p.id, p.ip, Some(p.public_port), p.public_key.into_iter().collect()))
                .collect()
        },
        move |id| {
            b.mark_booted(id);
        },
    );
    std::env::set_var("SKYCAT_RUNPOD_ENDPOINT", &emu.url);
    std::env::set_var("RUNPOD_API_KEY", KEY);
    let env = Env::new(agent);
    let task = env.write("task.yaml", &format!("{TASK}resources:\n  infra: runpod/US\n  accelerators: RTXA4500:1\n"));
    tokio::task::block_in_place(|| env.skycat(&["check", "runpod"]));
    launch_rounds("runpod", rounds, &env, &task, "benchr", &hosts, BootWait::ProvisionedAndSsh);
    stop_watching(watcher).await;
}

async fn bench_gcp(rounds: usize, agent: &Path) {
    use skycat_testkit::gcp::{GcpEmulator, GcpEmulatorConfig};
    const TOKEN: &str = "ya29.bench-token-5e1f";
    const PROJECT: &str = "skycat-bench-proj";
    let emu = Arc::new(GcpEmulator::start(GcpEmulatorConfig::new(PROJECT, TOKEN, GCP_NET as u8)).await);
    let hosts = Arc::new(TestHosts::empty(GCP_NET, "benchg"));
    let e = emu.clone();
    let watcher = watch_hosts(
        hosts.clone(),
        move || {
            e.instances()
                .into_iter()
                .filter(|v| matches!(v.status.as_str(), "PROVISIONING" | "STAGING" | "RUNNING"))
                .map(|v| (format!("{}/{}/{}", v.zone, v.name, v.nat_ip), v.nat_ip, None, v.ssh_keys))
                .collect()
        },
        |_| {},
    );
    std::env::set_var("SKYCAT_GCP_COMPUTE_ENDPOINT", &emu.url);
    std::env::set_var("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    std::env::set_var("GOOGLE_CLOUD_PROJECT", PROJECT);
    let env = Env::new(agent);
    env.write("config.yaml", "gcp:\n  ssh_user: root\n");
    let task = env.write("task.yaml", &format!("{TASK}resources:\n  infra: gcp/us-central1\n  accelerators: T4:1\n"));
    tokio::task::block_in_place(|| env.skycat(&["check", "gcp"]));
    launch_rounds("gcp", rounds, &env, &task, "benchg", &hosts, BootWait::SshOnly);
    stop_watching(watcher).await;
}

async fn bench_azure(rounds: usize, agent: &Path) {
    use skycat_testkit::azure::{AzureEmulator, AzureEmulatorConfig};
    const SECRET: &str = "Emu8Q~azure-bench.secret_77c2";
    // Operations finish at the first poll: the emulation adds no provisioning time of its own.
    let cfg = AzureEmulatorConfig { lro_polls: 0, retry_after: 0, ..AzureEmulatorConfig::new(SECRET, AZURE_NET as u8) };
    let emu = Arc::new(AzureEmulator::start(cfg).await);
    let hosts = Arc::new(TestHosts::empty(AZURE_NET, "benchz"));
    let e = emu.clone();
    let watcher = watch_hosts(
        hosts.clone(),
        move || {
            e.vms()
                .into_iter()
                .filter(|v| v.power == "running" && v.provisioning == "Succeeded")
                .filter_map(|v| Some((v.id, v.public_ip?, None, v.ssh_keys)))
                .collect()
        },
        |_| {},
    );
    std::env::set_var("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &emu.url);
    std::env::set_var("SKYCAT_AZURE_LOGIN_ENDPOINT", &emu.url);
    std::env::set_var("AZURE_TENANT_ID", &emu.tenant);
    std::env::set_var("AZURE_CLIENT_ID", &emu.client_id);
    std::env::set_var("AZURE_CLIENT_SECRET", SECRET);
    std::env::set_var("AZURE_SUBSCRIPTION_ID", &emu.subscription);
    let env = Env::new(agent);
    env.write("config.yaml", "azure:\n  ssh_user: root\n");
    let task = env.write("task.yaml", &format!("{TASK}resources:\n  infra: azure\n  accelerators: V100:1\n"));
    tokio::task::block_in_place(|| env.skycat(&["check", "azure"]));
    launch_rounds("azure", rounds, &env, &task, "benchz", &hosts, BootWait::SshOnly);
    stop_watching(watcher).await;
}

async fn bench_kubernetes(rounds: usize, agent: &Path) {
    use std::collections::BTreeMap;

    use skycat_testkit::k8s::{KubeEmulator, KubeNode, Sandbox};
    let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let emu = KubeEmulator::start("bench-k8s-token").await;
    emu.add_node(KubeNode {
        name: "gpu-1".into(),
        labels: map(&[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")]),
        allocatable: map(&[("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", "1")]),
        taints: Vec::new(),
    });
    let hosts = TestHosts::up(1, K8S_NET, "benchk");
    emu.add_sandboxes(vec![Sandbox { netns: hosts.ns(1), pod_ip: hosts.ip(1), host_ip: format!("10.231.{}.1", K8S_NET + 1), home: hosts.home(1) }]);
    let env = Env::new(agent);
    let kubeconfig = env.write("kubeconfig", &emu.kubeconfig_yaml("bench", "default"));
    std::env::set_var("KUBECONFIG", &kubeconfig);
    tokio::task::block_in_place(|| env.skycat(&["check", "kubernetes"]));
    let task = env.write("task.yaml", &format!("resources:\n  infra: k8s/bench\n  accelerators: H100:1\n{}", TASK.trim_start_matches("name: bench\n")));
    // A pod's home is wiped when it is deleted: every round's job writes into host 1's.
    let mut total = Vec::new();
    for r in 1..=rounds {
        let t0 = now();
        tokio::task::block_in_place(|| env.skycat(&["launch", "-c", "benchk", task.to_str().unwrap(), "-y"]));
        let t = tokio::task::block_in_place(|| started_after(&[hosts.home(1)], 1, t0));
        println!("kubernetes round {r}: launch->running {t:.3}s (pod create, schedule, exec: agent upload and start, submit)");
        total.push(t);
        tokio::task::block_in_place(|| env.skycat(&["down", "benchk"]));
    }
    println!("kubernetes median of {rounds}: launch->running {:.3}s", median(&mut total));
}

/// Whether `SKYCAT_BENCH_ONLY` (comma-separated; unset = all) names `cloud`.
fn wanted(cloud: &str) -> bool {
    std::env::var("SKYCAT_BENCH_ONLY").map(|v| v.split(',').any(|c| c.trim() == cloud)).unwrap_or(true)
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` of benches passes nothing we need.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("SKYCAT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    // `SKYCAT_BENCH_AGENT`: the agent to ship (e.g. the small `--profile agent` build), else the
    // debug one the tests use.
    let agent = std::env::var_os("SKYCAT_BENCH_AGENT").map(PathBuf::from).unwrap_or_else(agent_bin);
    if wanted("ssh") {
        bench_ssh(rounds, &agent);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if wanted("aws") {
        rt.block_on(bench_aws(rounds, &agent));
    }
    if wanted("lambda") {
        rt.block_on(bench_lambda(rounds, &agent));
    }
    if wanted("runpod") {
        rt.block_on(bench_runpod(rounds, &agent));
    }
    if wanted("gcp") {
        rt.block_on(bench_gcp(rounds, &agent));
    }
    if wanted("azure") {
        rt.block_on(bench_azure(rounds, &agent));
    }
    if wanted("kubernetes") {
        rt.block_on(bench_kubernetes(rounds, &agent));
    }
}
