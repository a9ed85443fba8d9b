//! `skycat check` / `launch` / `logs` / `stop` / `down` on Lambda Cloud through the real binary:
//! the loopback EMULATION of Lambda's REST API (skycat-testkit's lambda_emulator, see
//! testkit/emulators/lambda.md) is the control plane, and a network-namespace sshd host comes up
//! at each instance's public IP (10.240.220.k) running the real agent.
//!
//! The failover walk is checked on the real plan for an A10: us-east-1 (cheapest, first in the
//! order) answers `instance-operations/launch/insufficient-capacity`, us-east-2 answers
//! `global/quota-exceeded`, us-east-3 has no capacity listed in `GET /instance-types` (refused
//! before any launch call); each blocks its region and the launch lands in us-midwest-1.
//! Lambda has no stop: `skycat stop` must refuse, name `skycat down`, and leave the cluster and
//! its job untouched. `down` must leave no instance running in the emulator, and no request the
//! backend sent may have been refused for its shape.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_testkit::lambda_emulator::{LambdaEmulator, LambdaEmulatorConfig, LaunchFault, REGIONS};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 220;
const KEY: &str = "secret_lambda-e2e_4f1c2d9a";

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    endpoint: String,
    agent: std::path::PathBuf,
}

impl Env {
    fn command(&self, args: &[&str], key: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.home.path())
            .env("HOME", self.user_home.path())
            .env("SKYCAT_AGENT_BIN", &self.agent)
            .env("SKYCAT_LAMBDA_ENDPOINT", &self.endpoint)
            .env("LAMBDA_API_KEY", key)
            .env_remove("SKYCAT_LAMBDA_API_KEY")
            .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
            .env("SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS", "60");
        c
    }

    /// Runs the binary without stalling the runtime that serves the emulator.
    fn skycat_with(&self, args: &[&str], key: &str) -> Output {
        tokio::task::block_in_place(|| self.command(args, key).output().expect("run skycat"))
    }

    fn skycat(&self, args: &[&str]) -> Output {
        self.skycat_with(args, KEY)
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Brings up a namespace sshd host at the public IP of every instance the emulator launched,
/// accepting the SSH key the instance was launched with (as Lambda installs it), until dropped.
struct InstanceHosts {
    up: Arc<Mutex<BTreeMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InstanceHosts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InstanceHosts {
    fn watch(hosts: Arc<TestHosts>, emu: Arc<LambdaEmulator>) -> InstanceHosts {
        let up: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let u = up.clone();
        let task = tokio::spawn(async move {
            let mut next = 1u32;
            loop {
                for v in emu.instances() {
                    if v.status != "booting" && v.status != "active" || u.lock().unwrap().contains_key(&v.id) {
                        continue;
                    }
                    for k in &v.ssh_key_names {
                        hosts.authorize(&emu.ssh_key(k).expect("the launch named a registered key"));
                    }
                    let i = next;
                    next += 1;
                    let hip = format!("10.230.{}.{i}", hosts.net());
                    let (h, ip) = (hosts.clone(), v.ip.clone());
                    tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip, &hip])).await.expect("up-at");
                    u.lock().unwrap().insert(v.id.clone(), i);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        InstanceHosts { up, task }
    }
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_on_lambda_fails_over_runs_refuses_stop_and_goes_down() {
    let emu = Arc::new(LambdaEmulator::start(LambdaEmulatorConfig::new(KEY, NET as u8)).await);
    let hosts = Arc::new(TestHosts::empty(NET, "lambda"));
    let watcher = InstanceHosts::watch(hosts.clone(), emu.clone());
    let env = Env {
        home: tempfile::tempdir().unwrap(),
        user_home: tempfile::tempdir().unwrap(),
        endpoint: emu.url.clone(),
        agent: agent_bin(),
    };
    // The test hosts accept root only (Lambda's images log in as ubuntu).
    write(&env.home.path().join("config.yaml"), "lambda:\n  ssh_user: root\n");
    let task = env.home.path().join("task.yaml");
    write(
        &task,
        "name: hello\nresources:\n  infra: lambda\n  accelerators: A10:1\n\
         run: echo \"hello from rank $SKYCAT_NODE_RANK of $SKYCAT_NUM_NODES\"\n",
    );

    // Not enabled yet; a wrong key is rejected by the emulator and does not enable it.
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]);
    assert!(!out.status.success() && text(&out).contains("not enabled") && text(&out).contains("lambda"), "{}", text(&out));
    let out = env.skycat_with(&["check", "lambda"], "wrong-key");
    assert!(!text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains("wrong-key"), "the key must never be printed: {}", text(&out));
    let refused = emu.auth_failures();
    assert!(refused >= 1, "the emulator must have refused the wrong key");
    let out = env.skycat(&["check", "lambda"]);
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains(KEY), "{}", text(&out));

    // The dry run prints the order launch walks: us-east-1 first.
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let rows: Vec<&str> = plan.lines().skip_while(|l| !l.starts_with("Failover order")).skip(2).take(4).collect();
    let regions: Vec<&str> = rows.iter().filter_map(|r| r.split_whitespace().nth(5)).collect();
    assert_eq!(regions, ["us-east-1", "us-east-2", "us-east-3", "us-midwest-1"], "{plan}");
    assert!(rows[0].contains("gpu_1x_a10"), "{plan}");

    emu.fail_launches("us-east-1", LaunchFault::InsufficientCapacity);
    emu.fail_launches("us-east-2", LaunchFault::QuotaExceeded);
    // Every region lists capacity but us-east-3 (the list is a hint: us-east-1/2 still refuse).
    let listed: Vec<&str> = REGIONS.iter().map(|r| r.0).filter(|r| *r != "us-east-3").collect();
    emu.set_capacity("gpu_1x_a10", &listed);
    let t0 = Instant::now();
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "-y"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch on the Lambda emulation + netns took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("instance-operations/launch/insufficient-capacity") && log.contains("blocking region lambda/us-east-1"), "{log}");
    assert!(log.contains("global/quota-exceeded") && log.contains("blocking region lambda/us-east-2"), "{log}");
    assert!(log.contains("no capacity for gpu_1x_a10 in us-east-3") && log.contains("blocking region lambda/us-east-3"), "{log}");
    let launches = emu.launches();
    let regions: Vec<&str> = launches.iter().map(|l| l.region.as_str()).collect();
    assert_eq!(regions, ["us-east-1", "us-east-2", "us-midwest-1"], "us-east-3 is refused before a launch call: {launches:?}");
    let landed: Vec<_> = launches.iter().filter(|l| l.outcome.is_ok()).collect();
    assert_eq!(landed.len(), 1, "{launches:?}");
    let instance = emu.instances().into_iter().find(|v| Ok(&v.id) == landed[0].outcome.as_ref()).expect("the landed instance");
    assert_eq!((instance.status.as_str(), instance.instance_type.as_str()), ("active", "gpu_1x_a10"));
    assert!(instance.name.as_deref().is_some_and(|n| n.starts_with("skycat-") && n.ends_with("-0-web")), "{instance:?}");
    assert!(watcher.up.lock().unwrap().contains_key(&instance.id));

    // The job ran on the instance's host.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.skycat(&["logs", "web", "1"]);
        if text(&out).contains("hello from rank 0 of 1") {
            break;
        }
        assert!(Instant::now() < deadline, "no job output: {}", text(&out));
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = env.skycat(&["status"]);
    assert!(text(&out).contains("lambda/us-midwest-1"), "{}", text(&out));

    // No stop on Lambda: refused before anything is touched, offering down.
    let out = env.skycat(&["stop", "web"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Lambda Cloud") && text(&out).contains("skycat down web"), "{}", text(&out));
    assert!(!text(&out).contains("Stopping"), "stop must not touch the agents first: {}", text(&out));
    let out = env.skycat(&["status"]);
    assert!(text(&out).contains("UP"), "{}", text(&out));
    assert_eq!(emu.instances().iter().filter(|v| v.status == "active").count(), 1);
    let out = env.skycat(&["exec", "web", "echo still-here-after-stop"]);
    assert!(out.status.success(), "{}", text(&out));

    // down terminates the instance: nothing is left running in the emulator.
    let out = env.skycat(&["down", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<_> = emu.instances().into_iter().filter(|v| v.status != "terminated").collect();
    assert!(left.is_empty(), "{left:?}");
    let out = env.skycat(&["status"]);
    assert!(text(&out).contains("No existing clusters"), "{}", text(&out));

    assert!(emu.rejections().is_empty(), "requests Lambda's API would refuse: {:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), refused, "only the wrong key of the check was refused");
    let calls = emu.calls();
    assert!(calls.iter().all(|c| c.contains(" /api/v1/")), "{calls:?}");
}
