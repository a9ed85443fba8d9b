//! `skycat check` / `launch` / `logs` / `stop` / `start` / `exec` / `down` on GCP through the real
//! binary: the loopback EMULATION of the Compute Engine API v1 and Google's token endpoint
//! (skycat-testkit's `gcp`, see testkit/emulators/gcp.md) is the control plane, and a
//! network-namespace sshd host comes up at each instance's natIP running the real agent.
//!
//! * `launch_on_gcp_fails_over_stops_starts_and_goes_down` (NET 240): `skycat check gcp` verifies
//!   a bearer token (a wrong one is refused and never printed); the launch itself runs on a
//!   service-account key file (TEST-ONLY key, JWT assertion verified by the emulator's token
//!   endpoint). The plan's first zone answers `ZONE_RESOURCE_POOL_EXHAUSTED` in the insert's
//!   Operation: the zone is blocked and the launch lands in another zone of the region. The job
//!   runs; stop → start (a new natIP) → a second job runs; down deletes the VM and the
//!   cluster's firewall rule: nothing is left in the emulator.
//! * `gcp_exhausted_everywhere_fails_over_to_lambda` (NET 240 too: the host lock runs the two
//!   tests one after the other): the cross-cloud failover of issue 12. A task that may run on
//!   a T4 on GCP (cheapest) or an A10 on Lambda Cloud: every GCP zone of the plan is exhausted
//!   (stockouts on both the call and the Operation path), so the launch walks on to Lambda (its
//!   loopback emulation runs in the same test) and the job runs there.
//!
//! No request either emulator refused for its shape is allowed. Needs root, iproute2 and
//! openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_testkit::gcp::token::key_file_json;
use skycat_testkit::gcp::{Delivery, GcpEmulator, GcpEmulatorConfig, InsertFault, ServiceAccount, TEST_ONLY_KEY_1, TEST_ONLY_KEY_2};
use skycat_testkit::lambda_emulator::{LambdaEmulator, LambdaEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const PROJECT: &str = "skycat-e2e-proj";
const TOKEN: &str = "ya29.e2e-static-token-5b1f";
const SA_EMAIL: &str = "launcher@skycat-e2e-proj.iam.gserviceaccount.com";
const LAMBDA_KEY: &str = "secret_gcp-e2e_lambda_77aa";

fn emulator_config(net: u32) -> GcpEmulatorConfig {
    let mut cfg = GcpEmulatorConfig::new(PROJECT, TOKEN, net as u8);
    cfg.service_account = Some(ServiceAccount::for_key(SA_EMAIL, "e2e-key-1", TEST_ONLY_KEY_1));
    cfg
}

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    agent: std::path::PathBuf,
    vars: BTreeMap<&'static str, String>,
}

impl Env {
    fn new() -> Env {
        Env { home: tempfile::tempdir().unwrap(), user_home: tempfile::tempdir().unwrap(), agent: agent_bin(), vars: BTreeMap::new() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.home.path())
            .env("HOME", self.user_home.path())
            .env("SKYCAT_AGENT_BIN", &self.agent)
            .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
            .env("SKYCAT_GCP_BOOT_TIMEOUT_SECS", "60")
            .env("SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS", "60");
        for v in [
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_CLOUD_PROJECT",
            "CLOUDSDK_CORE_PROJECT",
            "GOOGLE_API_KEY",
            "SKYCAT_GCP_API_KEY",
            "SKYCAT_LAMBDA_API_KEY",
            "LAMBDA_API_KEY",
        ] {
            c.env_remove(v);
        }
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// The binary, run off the runtime's workers: the emulators and the host watcher are tasks
    /// of this runtime and must keep running meanwhile.
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

/// Keeps a namespace sshd host up at the address of every live VM of the emulators (a GCP VM
/// while PROVISIONING/STAGING/RUNNING, at its natIP; a Lambda instance while booting/active),
/// accepting the key the VM was given; moves it when a start gave a new natIP, removes it when
/// the VM stops or goes. Until dropped.
struct VmHosts {
    /// VM (cloud/zone/name or id) → (host index, address).
    up: Arc<Mutex<BTreeMap<String, (u32, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VmHosts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VmHosts {
    fn watch(hosts: Arc<TestHosts>, gcp: Arc<GcpEmulator>, lambda: Option<Arc<LambdaEmulator>>) -> VmHosts {
        let up: Arc<Mutex<BTreeMap<String, (u32, String)>>> = Arc::default();
        let u = up.clone();
        let next = Arc::new(AtomicU32::new(1));
        let task = tokio::spawn(async move {
            loop {
                // (key, address, public keys) of every VM that should have a host now.
                let mut want: Vec<(String, String, Vec<String>)> = gcp
                    .instances()
                    .into_iter()
                    .filter(|v| matches!(v.status.as_str(), "PROVISIONING" | "STAGING" | "RUNNING"))
                    .map(|v| (format!("gcp/{}/{}", v.zone, v.name), v.nat_ip, v.ssh_keys))
                    .collect();
                if let Some(l) = &lambda {
                    for v in l.instances() {
                        if v.status == "booting" || v.status == "active" {
                            let keys = v.ssh_key_names.iter().filter_map(|k| l.ssh_key(k)).collect();
                            want.push((format!("lambda/{}", v.id), v.ip, keys));
                        }
                    }
                }
                let have: Vec<(String, (u32, String))> = u.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for (key, (i, ip)) in have {
                    if !want.iter().any(|w| w.0 == key && w.1 == ip) {
                        let h = hosts.clone();
                        tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                        u.lock().unwrap().remove(&key);
                    }
                }
                for (key, ip, keys) in want {
                    if u.lock().unwrap().contains_key(&key) {
                        continue;
                    }
                    for k in &keys {
                        hosts.authorize(k);
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let hip = format!("10.230.{}.{i}", hosts.net());
                    let (h, ip2) = (hosts.clone(), ip.clone());
                    tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip2, &hip])).await.expect("up-at");
                    u.lock().unwrap().insert(key, (i, ip));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        VmHosts { up, task }
    }

    fn hosts_up(&self) -> usize {
        self.up.lock().unwrap().len()
    }
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

/// The zones of the dry run's failover rows, in order (`us-central1-a`, …).
fn plan_zones(plan: &str) -> Vec<String> {
    plan.lines()
        .skip_while(|l| !l.starts_with("Failover order"))
        .skip(1)
        .filter_map(|l| l.split(|c: char| c.is_whitespace() || c == '/' || c == '│' || c == '|').find(|w| is_zone(w)).map(str::to_string))
        .collect()
}

fn is_zone(w: &str) -> bool {
    let parts: Vec<&str> = w.split('-').collect();
    parts.len() == 3 && parts[2].len() == 1 && parts[1].ends_with(|c: char| c.is_ascii_digit()) && parts.iter().all(|p| !p.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_on_gcp_fails_over_stops_starts_and_goes_down() {
    const NET: u32 = 240;
    let gcp = Arc::new(GcpEmulator::start(emulator_config(NET)).await);
    let hosts = Arc::new(TestHosts::empty(NET, "gcp"));
    let watcher = VmHosts::watch(hosts.clone(), gcp.clone(), None);
    let mut env = Env::new();
    // The test hosts accept root only.
    write(&env.home.path().join("config.yaml"), "gcp:\n  ssh_user: root\n");
    let key_file = env.home.path().join("sa-key.json");
    write(&key_file, &key_file_json(PROJECT, SA_EMAIL, "e2e-key-1", TEST_ONLY_KEY_1, &gcp.token_url));
    let task = env.home.path().join("task.yaml");
    write(
        &task,
        "name: hello\nresources:\n  infra: gcp/us-central1\n  accelerators: T4:1\n  ports: 8888\n\
         run: echo \"hello from rank $SKYCAT_NODE_RANK of $SKYCAT_NUM_NODES\"\n",
    );
    env.vars.insert("SKYCAT_GCP_COMPUTE_ENDPOINT", gcp.url.clone());
    env.vars.insert("GOOGLE_CLOUD_PROJECT", PROJECT.into());

    // A wrong token: refused by the emulator, never printed, GCP stays disabled.
    env.vars.insert("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.wrong-token-e2e".into());
    let out = env.skycat(&["check", "gcp"]).await;
    assert!(!text(&out).contains("enabled (launch)") && !text(&out).contains("wrong-token-e2e"), "{}", text(&out));
    assert!(gcp.auth_failures() >= 1, "the wrong token never reached the emulator: {}", text(&out));
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]).await;
    assert!(!out.status.success() && text(&out).contains("not enabled"), "{}", text(&out));
    let refused = gcp.auth_failures();

    env.vars.insert("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN.into());
    let out = env.skycat(&["check", "gcp"]).await;
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN), "{}", text(&out));

    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let zones = plan_zones(&plan);
    assert!(!zones.is_empty(), "{plan}");
    let exhausted = zones[0].clone();
    assert!(exhausted.starts_with("us-central1-"), "{plan}");

    // From here on the binary has only the service-account key file: its project_id and a
    // token from the emulated token endpoint.
    env.vars.remove("GOOGLE_OAUTH_ACCESS_TOKEN");
    env.vars.remove("GOOGLE_CLOUD_PROJECT");

    // `skycat check gcp` with only a key file exchanges it as a launch does: a key the account
    // does not have is refused at the token endpoint (GCP stays disabled), the right one enables.
    let wrong_key = env.home.path().join("sa-wrong-key.json");
    write(&wrong_key, &key_file_json(PROJECT, SA_EMAIL, "e2e-key-2", TEST_ONLY_KEY_2, &gcp.token_url));
    env.vars.insert("GOOGLE_APPLICATION_CREDENTIALS", wrong_key.display().to_string());
    let out = env.skycat(&["check", "gcp"]).await;
    assert!(!text(&out).contains("enabled (launch)") && !text(&out).contains("PRIVATE KEY"), "{}", text(&out));
    assert_eq!(gcp.token_refusals().len(), 1, "{:?}", gcp.token_refusals());
    env.vars.insert("GOOGLE_APPLICATION_CREDENTIALS", key_file.display().to_string());
    let out = env.skycat(&["check", "gcp"]).await;
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains("PRIVATE KEY") && !text(&out).contains("ya29."), "{}", text(&out));
    assert!(gcp.tokens_issued() >= 1);

    gcp.fail_inserts(&exhausted, InsertFault::ZoneResourcePoolExhausted, Delivery::Operation);
    let t0 = Instant::now();
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "-y"]).await;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch on the GCP emulation + netns took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("ZONE_RESOURCE_POOL_EXHAUSTED") && log.contains(&format!("blocking zone {exhausted}")), "{log}");
    assert!(gcp.tokens_issued() >= 2 && gcp.token_refusals().len() == 1, "only the wrong key was refused: {:?}", gcp.token_refusals());
    let inserts = gcp.inserts();
    assert_eq!(inserts[0].zone, exhausted, "{inserts:?}");
    assert_eq!(inserts[0].outcome, Err("ZONE_RESOURCE_POOL_EXHAUSTED".to_string()));
    let landed: Vec<_> = inserts.iter().filter(|i| i.outcome.is_ok()).collect();
    assert_eq!(landed.len(), 1, "{inserts:?}");
    assert_ne!(landed[0].zone, exhausted);
    let vms = gcp.instances();
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm = vms[0].clone();
    assert_eq!(vm.status, "RUNNING");
    assert_eq!(vm.body["guestAccelerators"][0]["acceleratorType"], format!("zones/{}/acceleratorTypes/nvidia-tesla-t4", vm.zone));
    assert_eq!(vm.body["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert!(vm.name.starts_with("skycat-") && vm.name.ends_with("-0-web"), "{vm:?}");
    let rules = gcp.firewalls();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = rules.values().next().unwrap();
    assert_eq!(rule["allowed"][0]["ports"], serde_json::json!(["22", "8888"]));
    assert_eq!(rule["targetTags"], serde_json::json!(vm.tags));

    // The job ran on the VM's host.
    wait_logs(&env, "web", "1", "hello from rank 0 of 1").await;
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains(&format!("gcp/us-central1/{}", vm.zone)) || text(&out).contains(&vm.zone), "{}", text(&out));

    // stop → TERMINATED (the host goes); start → RUNNING at a new natIP, and a job runs there.
    let out = env.skycat(&["stop", "web"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stopped = gcp.instances()[0].clone();
    assert_eq!(stopped.status, "TERMINATED", "{stopped:?}");
    let out = env.skycat(&["start", "web"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let started = gcp.instances()[0].clone();
    assert_eq!(started.status, "RUNNING");
    assert_ne!(started.nat_ip, vm.nat_ip, "start gives a new ephemeral natIP");
    let out = env.skycat(&["exec", "web", "echo back-on-$SKYCAT_NODE_RANK"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_logs(&env, "web", "2", "back-on-0").await;

    // down: nothing left in the emulator — no VM, no firewall rule — and no host up.
    let out = env.skycat(&["down", "web"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(gcp.instances().is_empty(), "{:?}", gcp.instances());
    assert!(gcp.firewalls().is_empty(), "{:?}", gcp.firewalls());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.hosts_up() > 0 {
        assert!(Instant::now() < deadline, "VM hosts still up after down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains("No existing clusters"), "{}", text(&out));

    assert!(gcp.rejections().is_empty(), "requests the Compute API would refuse: {:?}", gcp.rejections());
    assert_eq!(gcp.auth_failures(), refused, "only the wrong token of the first check was refused");
    let calls = gcp.calls();
    for c in ["POST /token", "/global/firewalls", "/instances/", "/stop", "/start", "/wait", "DELETE "] {
        assert!(calls.iter().any(|x| x.contains(c)), "{c} never called: {calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_exhausted_everywhere_fails_over_to_lambda() {
    const NET: u32 = 240;
    let gcp = Arc::new(GcpEmulator::start(emulator_config(NET)).await);
    let lambda = Arc::new(LambdaEmulator::start(LambdaEmulatorConfig::new(LAMBDA_KEY, NET as u8)).await);
    let hosts = Arc::new(TestHosts::empty(NET, "gcpx"));
    let watcher = VmHosts::watch(hosts.clone(), gcp.clone(), Some(lambda.clone()));
    let mut env = Env::new();
    write(&env.home.path().join("config.yaml"), "gcp:\n  ssh_user: root\nlambda:\n  ssh_user: root\n");
    env.vars.insert("SKYCAT_GCP_COMPUTE_ENDPOINT", gcp.url.clone());
    env.vars.insert("GOOGLE_CLOUD_PROJECT", PROJECT.into());
    env.vars.insert("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN.into());
    env.vars.insert("SKYCAT_LAMBDA_ENDPOINT", lambda.url.clone());
    env.vars.insert("LAMBDA_API_KEY", LAMBDA_KEY.into());
    let out = env.skycat(&["check", "gcp", "lambda"]).await;
    assert!(out.status.success() && text(&out).matches("enabled (launch)").count() == 2, "{}", text(&out));

    // A T4 in us-central1 (GCP, cheapest) or an A10 on Lambda Cloud.
    let task = env.home.path().join("task.yaml");
    write(
        &task,
        "name: anywhere\nresources:\n  any_of:\n    - infra: gcp/us-central1\n      accelerators: T4:1\n\
         \x20   - infra: lambda\n      accelerators: A10:1\n\
         run: echo \"ran on $SKYCAT_NUM_NODES node(s)\"\n",
    );
    let out = env.skycat(&["launch", "-c", "x", task.to_str().unwrap(), "--dryrun"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let order: Vec<&str> = plan.lines().skip_while(|l| !l.starts_with("Failover order")).skip(2).collect();
    let first = order.first().copied().unwrap_or_default();
    assert!(first.contains("gcp") && first.contains("n1-"), "GCP's T4 must be the cheapest placement: {plan}");
    let gcp_zones: Vec<String> = {
        let mut z = plan_zones(&plan);
        z.dedup();
        z
    };
    assert!(!gcp_zones.is_empty() && gcp_zones.iter().all(|z| z.starts_with("us-central1-")), "{plan}");

    // Every zone of the region is out: one answers on the call, the others in the Operation.
    gcp.fail_inserts("us-central1", InsertFault::ZoneResourcePoolExhaustedWithDetails, Delivery::Operation);
    gcp.fail_inserts(&gcp_zones[0], InsertFault::ZoneResourcePoolExhausted, Delivery::Sync);
    let out = env.skycat(&["launch", "-c", "x", task.to_str().unwrap(), "-y"]).await;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("cross-cloud launch:\n{log}");
    let tried: Vec<String> = gcp.inserts().iter().map(|i| i.zone.clone()).collect();
    let mut distinct = tried.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), tried.len(), "each zone is tried once, then blocked: {tried:?}");
    for z in &gcp_zones {
        assert!(tried.contains(z), "zone {z} of the plan was not tried: {tried:?}\n{log}");
        assert!(log.contains(&format!("blocking zone {z}")), "{log}");
    }
    assert!(gcp.inserts().iter().all(|i| i.outcome.is_err()));
    assert!(gcp.instances().is_empty() && gcp.firewalls().is_empty(), "a failed GCP launch leaves nothing behind");
    let launched = lambda.launches();
    assert_eq!(launched.iter().filter(|l| l.outcome.is_ok()).count(), 1, "{launched:?}");
    wait_logs(&env, "x", "1", "ran on 1 node(s)").await;
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains("lambda/"), "{}", text(&out));

    let out = env.skycat(&["down", "x"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(lambda.instances().iter().all(|v| v.status == "terminated"), "{:?}", lambda.instances());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.hosts_up() > 0 {
        assert!(Instant::now() < deadline, "VM hosts still up after down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gcp.rejections().is_empty(), "{:?}", gcp.rejections());
    assert!(lambda.rejections().is_empty(), "{:?}", lambda.rejections());
}
