//! `skycat check` / `launch` / `logs` / `stop` / `start` / `exec` / `down` on Azure through the
//! real binary: the loopback EMULATION of Azure Resource Manager and of the identity platform's
//! token endpoint (skycat-testkit's `azure`, see testkit/emulators/azure.md) is the control
//! plane, and a network-namespace sshd host comes up at each running VM's public IP
//! (10.242.250.k) running the real agent, accepting the key the VM was created with.
//!
//! The task is the seed's chatbot (optimizer/tests/fixtures/llama2_chatbot.yaml: `V100:1`,
//! `disk_size: 1024`) launched with `--infra azure`. Its setup and run fetch conda packages and
//! model weights from the internet, so the test launches a copy of the YAML whose `resources`
//! section (and `envs`) are byte-identical to the fixture's and whose `setup`/`run` are local
//! commands; the test asserts the sections are identical.
//!
//! Failover on the real plan: the first region answers the VM's long-running operation with
//! `AllocationFailed`, the second refuses the VM PUT with 409 `SkuNotAvailable`; each blocks
//! its region (and leaves no resource group behind) and the launch lands in the third. Then
//! stop (deallocate: the host goes) → start (the host comes back at the same static IP) → a job
//! runs again → down deletes the resource group: nothing is left in the emulator, and no request
//! the backend sent was refused for its shape.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skycat_testkit::azure::{AzureEmulator, AzureEmulatorConfig, Fault};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 250;
const SECRET: &str = "Emu8Q~azure-e2e.secret_7c1d";

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    agent: std::path::PathBuf,
    url: String,
    tenant: String,
    client_id: String,
    subscription: String,
}

impl Env {
    fn command(&self, args: &[&str], secret: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.home.path())
            .env("HOME", self.user_home.path())
            .env("SKYCAT_AGENT_BIN", &self.agent)
            .env("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &self.url)
            .env("SKYCAT_AZURE_LOGIN_ENDPOINT", &self.url)
            .env("AZURE_TENANT_ID", &self.tenant)
            .env("AZURE_CLIENT_ID", &self.client_id)
            .env("AZURE_CLIENT_SECRET", secret)
            .env("AZURE_SUBSCRIPTION_ID", &self.subscription)
            .env_remove("AZURE_ACCESS_TOKEN")
            .env_remove("AZURE_AUTHORITY_HOST")
            .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
            .env("SKYCAT_AZURE_BOOT_TIMEOUT_SECS", "60");
        c
    }

    /// Runs the binary without stalling the runtime that serves the emulator.
    async fn skycat_with(&self, args: &[&str], secret: &str) -> Output {
        tokio::process::Command::from(self.command(args, secret)).output().await.expect("run skycat")
    }

    async fn skycat(&self, args: &[&str]) -> Output {
        self.skycat_with(args, SECRET).await
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).expect("write");
}

/// Brings up a namespace sshd host at the public IP of every running VM (accepting the keys the
/// VM was created with), and takes it down while the VM is deallocated or gone, until dropped.
struct VmHosts {
    /// VM id → host index, for the hosts that are up.
    up: Arc<Mutex<BTreeMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VmHosts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VmHosts {
    fn watch(hosts: Arc<TestHosts>, emu: Arc<AzureEmulator>) -> VmHosts {
        let up: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let u = up.clone();
        let task = tokio::spawn(async move {
            // A VM keeps its host index across stop/start.
            let mut index: BTreeMap<String, u32> = BTreeMap::new();
            // A VM keeps its disk, so its SSH host key, across deallocate/start.
            let mut keys: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            loop {
                let vms = emu.vms();
                for v in &vms {
                    let running = v.power == "running" && v.provisioning == "Succeeded";
                    let have = u.lock().unwrap().contains_key(&v.id);
                    if running && !have {
                        let Some(ip) = v.public_ip.clone() else { continue };
                        for k in &v.ssh_keys {
                            hosts.authorize(k);
                        }
                        let n = index.len() as u32 + 1;
                        let i = *index.entry(v.id.clone()).or_insert(n);
                        let hip = format!("10.230.{}.{i}", hosts.net());
                        let h = hosts.clone();
                        let restarted = keys.get(&v.id).cloned();
                        let saved = tokio::task::spawn_blocking(move || {
                            h.script(&["up-at", &i.to_string(), &ip, &hip]);
                            keep_host_key(&h, i, restarted)
                        })
                        .await
                        .expect("up-at");
                        keys.insert(v.id.clone(), saved);
                        u.lock().unwrap().insert(v.id.clone(), i);
                    } else if !running && have && v.power.starts_with("dealloc") {
                        let i = u.lock().unwrap().remove(&v.id).expect("up");
                        let h = hosts.clone();
                        tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                    }
                }
                let gone: Vec<(String, u32)> =
                    u.lock().unwrap().iter().filter(|(id, _)| !vms.iter().any(|v| &v.id == *id)).map(|(id, i)| (id.clone(), *i)).collect();
                for (id, i) in gone {
                    let h = hosts.clone();
                    tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                    u.lock().unwrap().remove(&id);
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

/// The host key of host `i` (testhosts.sh makes a new one at each `up-at`); with `restore`, puts
/// that key back first and restarts the host's sshd, as a VM started again keeps its disk.
fn keep_host_key(h: &TestHosts, i: u32, restore: Option<Vec<u8>>) -> Vec<u8> {
    let dir = h.home(i).parent().expect("host dir").to_path_buf();
    let key = dir.join("ssh_host_ed25519_key");
    if let Some(old) = restore {
        std::fs::write(&key, &old).expect("restore host key");
        let _ = std::fs::remove_file(dir.join("ssh_host_ed25519_key.pub"));
        let pid = std::fs::read_to_string(dir.join("sshd.pid")).expect("sshd pid");
        let st = Command::new("kill").arg(pid.trim()).status().expect("kill sshd");
        assert!(st.success(), "stopping host {i}'s sshd failed");
        let _ = std::fs::remove_file(dir.join("sshd.pid"));
        let cfg = dir.join("sshd_config");
        let st = Command::new("ip")
            .args(["netns", "exec", &h.ns(i), "/usr/sbin/sshd", "-f"])
            .arg(&cfg)
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .status()
            .expect("start sshd");
        assert!(st.success(), "restarting host {i}'s sshd failed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dir.join("sshd.pid").exists() {
            assert!(Instant::now() < deadline, "host {i}'s sshd did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::fs::read(&key).expect("host key")
}

/// The chatbot fixture with local setup/run: everything else byte-identical.
fn chatbot_copy() -> (String, String) {
    let fixture = std::fs::read_to_string(common::repo_root().join("optimizer/tests/fixtures/llama2_chatbot.yaml")).expect("fixture");
    let setup = fixture.find("\nsetup: |").expect("setup section") + 1;
    let envs = fixture.find("\nenvs:").expect("envs section") + 1;
    let local = "setup: |\n  echo chatbot-setup-ran > setup-marker\n\n\
                 run: |\n  echo \"chatbot on rank $SKYCAT_NODE_RANK: model ${MODEL_SIZE}b, $(cat setup-marker)\"\n\n";
    let copy = format!("{}{local}{}", &fixture[..setup], &fixture[envs..]);
    (fixture, copy)
}

/// The `resources:` block of a task YAML (up to the next top-level key).
fn resources_section(yaml: &str) -> String {
    let start = yaml.find("resources:").expect("resources");
    let rest = &yaml[start..];
    let end = rest.lines().skip(1).position(|l| !l.is_empty() && !l.starts_with(' ')).expect("a key after resources");
    rest.lines().take(end + 1).collect::<Vec<_>>().join("\n")
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
async fn chatbot_on_azure_fails_over_stops_starts_and_goes_down() {
    let emu = Arc::new(AzureEmulator::start(AzureEmulatorConfig::new(SECRET, NET as u8)).await);
    let hosts = Arc::new(TestHosts::empty(NET, "azure"));
    let watcher = VmHosts::watch(hosts.clone(), emu.clone());
    let env = Env {
        home: tempfile::tempdir().unwrap(),
        user_home: tempfile::tempdir().unwrap(),
        agent: agent_bin(),
        url: emu.url.clone(),
        tenant: emu.tenant.clone(),
        client_id: emu.client_id.clone(),
        subscription: emu.subscription.clone(),
    };
    // The VMs are created with adminUsername azureuser (Azure refuses root); the test hosts
    // accept root only, so skycat logs in as root here.
    write(&env.home.path().join("config.yaml"), "azure:\n  ssh_user: root\n");
    let (fixture, copy) = chatbot_copy();
    assert_eq!(resources_section(&copy), resources_section(&fixture));
    assert!(resources_section(&copy).contains("V100:1") && resources_section(&copy).contains("disk_size: 1024"));
    let task = env.home.path().join("chatbot-meta.yaml");
    write(&task, &copy);
    let t = task.to_str().unwrap();
    let launch = |dry: bool| {
        let mut a = vec!["launch", "-c", "chat", t, "--infra", "azure", "--env", "HF_TOKEN=hf_emulated"];
        a.push(if dry { "--dryrun" } else { "-y" });
        a
    };

    // A wrong secret: the token endpoint refuses it, the cloud stays disabled, nothing printed.
    let out = env.skycat_with(&["check", "azure"], "wrong-secret").await;
    assert!(!text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains("wrong-secret"), "the secret must never be printed: {}", text(&out));
    let refused = emu.auth_failures();
    assert!(refused >= 1, "the emulator must have refused the wrong secret: {}", text(&out));
    let out = env.skycat(&launch(true)).await;
    assert!(!out.status.success() && text(&out).contains("not enabled"), "{}", text(&out));
    let out = env.skycat(&["check", "azure"]).await;
    assert!(out.status.success() && text(&out).contains("enabled (launch)"), "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // The dry run's order: the first two regions get faults.
    let out = env.skycat(&launch(true)).await;
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let rows: Vec<&str> = plan.lines().skip_while(|l| !l.starts_with("Failover order")).skip(2).take(3).collect();
    let regions: Vec<String> = rows
        .iter()
        .map(|r| {
            r.split_whitespace()
                .find(|w| emu_region(w))
                .unwrap_or_else(|| panic!("no Azure region in failover row {r:?}: {plan}"))
                .to_string()
        })
        .collect();
    assert_eq!(regions.len(), 3, "{plan}");
    let size = rows[0].split_whitespace().find(|w| w.starts_with("Standard_")).expect("a VM size").to_string();
    emu.fail_region(&regions[0], Fault::AllocationFailed);
    emu.fail_region(&regions[1], Fault::SkuNotAvailable);

    let t0 = Instant::now();
    let out = env.skycat(&launch(false)).await;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch on the Azure emulation + netns took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("AllocationFailed") && log.contains(&format!("blocking region azure/{}", regions[0])), "{log}");
    assert!(log.contains("SkuNotAvailable") && log.contains(&format!("blocking region azure/{}", regions[1])), "{log}");
    let puts = emu.vm_puts();
    let tried: Vec<(&str, bool)> = puts.iter().map(|p| (p.location.as_str(), p.outcome.is_ok())).collect();
    assert_eq!(tried, [(regions[0].as_str(), false), (regions[1].as_str(), false), (regions[2].as_str(), true)], "{puts:?}");
    // Each failed attempt's resource group is gone; one VM runs, as the plan asked.
    assert_eq!(emu.resource_groups().len(), 1, "{:?}", emu.resource_groups());
    let vms = emu.vms();
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm = vms[0].clone();
    assert_eq!((vm.location.as_str(), vm.size.as_str(), vm.power.as_str()), (regions[2].as_str(), size.as_str(), "running"));
    assert_eq!(vm.body["properties"]["storageProfile"]["osDisk"]["diskSizeGB"], 1024);
    assert_eq!(vm.admin_username, "azureuser");
    assert!(!vm.spot);

    // The job ran on the VM's host: setup, then run, with the task's envs.
    wait_logs(&env, "chat", "1", "chatbot on rank 0: model 7b, chatbot-setup-ran").await;
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains(&format!("azure/{}", regions[2])), "{}", text(&out));

    // stop deallocates (the host goes); start brings the VM back at its static IP.
    let out = env.skycat(&["stop", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(emu.vms()[0].power, "deallocated");
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.hosts_up() > 0 {
        assert!(Instant::now() < deadline, "the host of a deallocated VM is still up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = env.skycat(&["start", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(emu.vms()[0].power, "running");
    assert_eq!(emu.vms()[0].public_ip, vm.public_ip);
    let out = env.skycat(&["exec", "chat", "echo back-on-$SKYCAT_TESTHOST"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_logs(&env, "chat", "2", "back-on-").await;

    // down deletes the resource group: nothing of the cluster is left.
    let out = env.skycat(&["down", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(emu.resource_groups().is_empty(), "{:?}", emu.resource_groups());
    assert!(emu.vms().is_empty(), "{:?}", emu.vms());
    assert!(emu.network_resources().is_empty(), "{:?}", emu.network_resources());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.hosts_up() > 0 {
        assert!(Instant::now() < deadline, "VM hosts still up after down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = env.skycat(&["status"]).await;
    assert!(text(&out).contains("No existing clusters"), "{}", text(&out));

    assert!(emu.rejections().is_empty(), "requests ARM would refuse: {:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), refused, "only the wrong secret of the check was refused");
    let calls = emu.calls();
    for c in ["/oauth2/v2.0/token", "/instanceView", "/deallocate", "/start", "/operationresults/"] {
        assert!(calls.iter().any(|x| x.contains(c)), "{c} never called: {calls:?}");
    }
}

/// An Azure region name as the catalog spells them (`eastus`, `westus2`, `southcentralus`).
fn emu_region(w: &str) -> bool {
    let w = w.trim_start_matches("azure/");
    w.len() > 4 && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) && w.chars().any(|c| c.is_ascii_lowercase())
        && ["east", "west", "north", "south", "central", "uk", "japan", "korea", "brazil", "canada", "france", "germany", "india", "norway", "switzerland", "uae", "australia", "asia", "europe", "sweden", "qatar", "israel", "italy", "poland", "mexico", "spain"]
            .iter()
            .any(|p| w.contains(p))
}
