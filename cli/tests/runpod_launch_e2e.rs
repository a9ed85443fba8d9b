//! `skycat check` / `launch` / `logs` / `stop` / `start` / `exec` / `down` on RunPod through the
//! real binary: the testkit's RunPod GraphQL EMULATION is the control plane
//! (testkit/emulators/runpod.md), network-namespace sshd hosts are the pods. Each pod's host comes
//! up at the pod's public IP with its sshd on the pod's mapped public port (RunPod maps a public
//! port to the container's 22), accepting the key the backend passed in the pod's `PUBLIC_KEY`.
//!
//! Failover: the plan's first data center answers RunPod's "no longer any instances available",
//! so the launch must block that zone, say so, and land in the next data center of the plan.
//! Spot: `skycat stop` on a spot cluster refuses and offers `down`. Every GraphQL request the
//! backend sent must have passed the emulator's schema validation.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_testkit::runpod::{EmulatorConfig, PodState, RunPodEmulator};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 230;
const KEY: &str = "rpa_EMULATED0123456789TESTKEY";

/// Brings up a namespace host for every pod the emulator runs (and marks it booted), takes it
/// down when the pod stops or goes, until dropped. Host index = the pod's creation order.
struct PodHosts {
    /// pod id → (host index, public port) of the hosts that are up.
    up: Arc<Mutex<BTreeMap<String, (u32, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodHosts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodHosts {
    fn watch(hosts: Arc<TestHosts>, emu: Arc<RunPodEmulator>) -> PodHosts {
        let up: Arc<Mutex<BTreeMap<String, (u32, u16)>>> = Arc::default();
        let u = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let pods: Vec<PodState> = emu.pods();
                for p in &pods {
                    let have = u.lock().unwrap().get(&p.id).copied();
                    let want = p.desired_status == "RUNNING";
                    match (have, want) {
                        (Some((_, port)), true) if port == p.public_port => {}
                        (_, true) => {
                            if let Some(k) = &p.public_key {
                                hosts.authorize(k);
                            }
                            let (h, i, ip, port) = (hosts.clone(), p.seq, p.ip.clone(), p.public_port);
                            let hip = format!("10.230.{}.{i}", h.net());
                            tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip, &hip, &port.to_string()]))
                                .await
                                .expect("up-at");
                            u.lock().unwrap().insert(p.id.clone(), (i, port));
                            emu.mark_booted(&p.id);
                        }
                        (Some((i, _)), false) => {
                            let h = hosts.clone();
                            tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                            u.lock().unwrap().remove(&p.id);
                        }
                        (None, false) => {}
                    }
                }
                // Terminated pods: their hosts go.
                let gone: Vec<(String, u32)> = u
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(id, _)| !pods.iter().any(|p| &p.id == *id))
                    .map(|(id, v)| (id.clone(), v.0))
                    .collect();
                for (id, i) in gone {
                    let h = hosts.clone();
                    tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                    u.lock().unwrap().remove(&id);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        PodHosts { up, task }
    }

    fn hosts_up(&self) -> usize {
        self.up.lock().unwrap().len()
    }
}

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    endpoint: String,
    key: String,
    agent: std::path::PathBuf,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.home.path())
            .env("HOME", self.user_home.path())
            .env("SKYCAT_AGENT_BIN", &self.agent)
            .env("SKYCAT_RUNPOD_ENDPOINT", &self.endpoint)
            .env("RUNPOD_API_KEY", &self.key)
            .env_remove("SKYCAT_RUNPOD_API_KEY")
            .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
            .env("SKYCAT_RUNPOD_BOOT_TIMEOUT_SECS", "60");
        c
    }

    /// The binary, run off the runtime's workers: the emulator and the host watcher are tasks of
    /// this runtime and must keep running meanwhile.
    async fn skycat(&self, args: &[&str]) -> Output {
        tokio::process::Command::from(self.command(args)).output().await.expect("run skycat")
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).expect("write");
}

/// The zone of the dry run's first failover row (its REGION/ZONE column reads `US/US-CA-1`).
fn first_zone(plan: &str) -> String {
    let row = plan.lines().skip_while(|l| !l.starts_with("Failover order")).nth(2).unwrap_or_default();
    row.split(|c: char| c.is_whitespace() || c == '│' || c == '|')
        .find_map(|w| w.strip_prefix("US/"))
        .unwrap_or_else(|| panic!("no US/<zone> in the first failover row: {plan}"))
        .to_string()
}

async fn wait_logs(env: &Env, cluster: &str, job: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.skycat(&["logs", cluster, job]).await;
        if text(&out).contains(want) {
            return;
        }
        assert!(Instant::now() < deadline, "no {want:?} in job {job}'s output: {}", text(&out));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_on_runpod_fails_over_stops_starts_and_goes_down() {
    let emu = Arc::new(
        RunPodEmulator::start(EmulatorConfig {
            api_key: KEY.into(),
            ip_prefix: format!("10.229.{NET}."),
            first_public_port: 41022,
        })
        .await,
    );
    let hosts = Arc::new(TestHosts::empty(NET, "runpod"));
    let watcher = PodHosts::watch(hosts.clone(), emu.clone());
    let mut env = Env {
        home: tempfile::tempdir().unwrap(),
        user_home: tempfile::tempdir().unwrap(),
        endpoint: emu.url.clone(),
        key: "rpa_WRONG".into(),
        agent: agent_bin(),
    };
    let task = env.home.path().join("task.yaml");
    write(
        &task,
        "name: hello\nresources:\n  accelerators: L4:1\n  infra: runpod/US\n  ports: 8888\n\
         run: echo \"hello from rank $SKYCAT_NODE_RANK of $SKYCAT_NUM_NODES\"\n",
    );

    // A wrong key: check says so and the cloud stays disabled.
    let out = env.skycat(&["check", "runpod"]).await;
    assert!(!text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(emu.unauthorized() > 0, "the wrong key never reached the emulator: {}", text(&out));
    let out = env.skycat(&["launch", "-c", "gpu", task.to_str().unwrap(), "--dryrun"]).await;
    assert!(!out.status.success() && text(&out).contains("not enabled"), "{}", text(&out));

    env.key = KEY.into();
    let out = env.skycat(&["check", "runpod"]).await;
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));

    let out = env.skycat(&["launch", "-c", "gpu", task.to_str().unwrap(), "--dryrun"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let exhausted = first_zone(&plan);
    assert!(plan.contains("1x_L4_SECURE"), "{plan}");

    // The plan's first data center has no stock: the launch blocks it and moves on.
    emu.inject_capacity(&exhausted);
    let t0 = Instant::now();
    let out = env.skycat(&["launch", "-c", "gpu", task.to_str().unwrap(), "-y"]).await;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch on the RunPod emulator + netns took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("no longer any instances available") && log.contains(&format!("blocking zone {exhausted}")), "{log}");
    let deploys = emu.deploys();
    assert_eq!(deploys[0].data_center_id.as_deref(), Some(exhausted.as_str()), "{deploys:?}");
    assert!(deploys[0].injected.is_some(), "{deploys:?}");
    let landed: Vec<_> = deploys.iter().filter(|d| d.injected.is_none()).collect();
    assert_eq!(landed.len(), 1, "{deploys:?}");
    assert_eq!(landed[0].field, "podFindAndDeployOnDemand");
    let zone = landed[0].data_center_id.clone().expect("a data center");
    assert_ne!(zone, exhausted);
    let pods = emu.pods();
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = pods[0].clone();
    assert_eq!(pod.input["gpuTypeId"], "NVIDIA L4");
    assert_eq!(pod.input["ports"], "22/tcp,8888/tcp");
    assert_eq!(pod.input["cloudType"], "SECURE");
    assert!(pod.public_key.as_deref().is_some_and(|k| k.starts_with("ssh-ed25519 ")), "{pod:?}");

    // The job ran on the pod's host, reached at the mapped port.
    wait_logs(&env, "gpu", "1", "hello from rank 0 of 1").await;
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains(&format!("runpod/US/{zone}")), "{}", text(&out));
    let cfg = std::fs::read_to_string(env.home.path().join("ssh/config")).unwrap_or_default();
    assert!(cfg.contains(&pod.ip) && cfg.contains(&pod.public_port.to_string()), "{cfg}");

    // stop → EXITED (the host goes); start → RUNNING on a new public port, the agent back.
    let out = env.skycat(&["stop", "gpu"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(emu.pods()[0].desired_status, "EXITED");
    let out = env.skycat(&["start", "gpu"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let resumed = emu.pods()[0].clone();
    assert_eq!(resumed.desired_status, "RUNNING");
    assert_ne!(resumed.public_port, pod.public_port, "the emulator maps a new port on resume");
    let out = env.skycat(&["exec", "gpu", "echo back-on-$SKYCAT_TESTHOST"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_logs(&env, "gpu", "2", "back-on-").await;

    // A spot cluster (RTX A4500: the catalog bids $0.19/GPU-hour in US data centers) goes
    // through podRentInterruptable with that bid, cannot be stopped (skycat offers `down`).
    let spot = env.home.path().join("spot.yaml");
    write(&spot, "resources:\n  accelerators: RTXA4500:1\n  infra: runpod/US\n  use_spot: true\nrun: echo spot\n");
    let out = env.skycat(&["launch", "-c", "cheap", spot.to_str().unwrap(), "-y"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let spot_pod = emu.pods().into_iter().find(|p| p.spot).expect("a spot pod");
    assert_eq!(spot_pod.input["gpuTypeId"], "NVIDIA RTX A4500");
    assert_eq!(spot_pod.input["bidPerGpu"].as_f64(), Some(0.19), "{spot_pod:?}");
    assert_eq!(emu.deploys().last().map(|d| d.field.clone()).as_deref(), Some("podRentInterruptable"));
    let out = env.skycat(&["stop", "cheap"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("skycat down cheap"), "{}", text(&out));
    let out = env.skycat(&["down", "cheap"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!emu.pods().iter().any(|p| p.spot), "{:?}", emu.pods());

    // down terminates the pod: nothing left in the emulator, no host left up.
    let out = env.skycat(&["down", "gpu"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(emu.pods().is_empty(), "{:?}", emu.pods());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.hosts_up() > 0 {
        assert!(Instant::now() < deadline, "pod hosts still up after down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains("No existing clusters"), "{}", text(&out));
    assert_eq!(emu.rejected(), Vec::<String>::new(), "requests the emulator's schema refused");
    let ops = emu.operations();
    for op in ["myself", "podFindAndDeployOnDemand", "pod", "podStop", "podResume", "podTerminate"] {
        assert!(ops.iter().any(|o| o == op), "{op} never called: {ops:?}");
    }
}
