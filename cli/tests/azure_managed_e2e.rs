//! A managed spot job on Azure recovers from an injected eviction: the testkit's Azure Resource
//! Manager EMULATION is the control plane (testkit/emulators/azure.md), a network-namespace sshd
//! host comes up at each running VM's public IP, and the real agent reports heartbeats over HTTPS
//! to this test's heartbeat router.
//!
//! The emulator evicts the Spot VM as Azure does with `evictionPolicy: Delete` (the VM and its NIC
//! are gone; its host goes with it). The managed-jobs loop must see it through the backend (the
//! VM's instance view answers 404), record the attempt as PREEMPTED, relaunch a Spot VM and finish
//! the job, and every resource group must be deleted at the end.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};
use skycat_testkit::azure::{AzureEmulator, AzureEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::TestHosts;

const NET: u32 = 255;
const SECRET: &str = "Emu8Q~azure-managed.secret_51ab";

/// A host for every running VM; the host goes when its VM is deallocated or gone.
fn watch_vms(hosts: Arc<TestHosts>, emu: Arc<AzureEmulator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut up: BTreeMap<String, u32> = BTreeMap::new();
        let mut next = 1u32;
        loop {
            let vms = emu.vms();
            for v in &vms {
                let running = v.power == "running" && v.provisioning == "Succeeded";
                match (up.get(&v.id).copied(), running) {
                    (None, true) => {
                        let Some(ip) = v.public_ip.clone() else { continue };
                        for k in &v.ssh_keys {
                            hosts.authorize(k);
                        }
                        let i = next;
                        next += 1;
                        let (h, hip) = (hosts.clone(), format!("10.230.{}.{i}", hosts.net()));
                        tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip, &hip])).await.expect("up-at");
                        up.insert(v.id.clone(), i);
                    }
                    (Some(i), false) if v.power.starts_with("dealloc") => {
                        let h = hosts.clone();
                        tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                        up.remove(&v.id);
                    }
                    _ => {}
                }
            }
            let gone: Vec<(String, u32)> = up.iter().filter(|(id, _)| !vms.iter().any(|v| &v.id == *id)).map(|(id, i)| (id.clone(), *i)).collect();
            for (id, i) in gone {
                let h = hosts.clone();
                tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                up.remove(&id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_for(what: &str, timeout: Duration, m: &Managed, id: i64, f: impl FnMut(&JobView) -> bool) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_spot_job_on_azure_recovers_after_an_eviction() {
    let emu = Arc::new(AzureEmulator::start(AzureEmulatorConfig::new(SECRET, NET as u8)).await);
    // The only test in this binary: the process env is not shared with another test.
    std::env::set_var("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &emu.url);
    std::env::set_var("SKYCAT_AZURE_LOGIN_ENDPOINT", &emu.url);
    std::env::set_var("AZURE_TENANT_ID", &emu.tenant);
    std::env::set_var("AZURE_CLIENT_ID", &emu.client_id);
    std::env::set_var("AZURE_CLIENT_SECRET", SECRET);
    std::env::set_var("AZURE_SUBSCRIPTION_ID", &emu.subscription);
    std::env::remove_var("AZURE_ACCESS_TOKEN");
    std::env::remove_var("AZURE_AUTHORITY_HOST");
    std::env::set_var("SKYCAT_AZURE_BOOT_TIMEOUT_SECS", "60");
    std::env::set_var("SKYCAT_SSH_READY_TIMEOUT_SECS", "60");
    let hosts = Arc::new(TestHosts::empty(NET, "azmj"));
    let watcher = watch_vms(hosts.clone(), emu.clone());

    let home = tempfile::tempdir().unwrap();
    common::mark_enabled(
        home.path(),
        "azure",
        "AZURE_SUBSCRIPTION_ID, AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
        "GET subscriptions/{id}",
    );
    // VMs are made for adminUsername azureuser; the test hosts accept root only.
    std::fs::write(home.path().join("config.yaml"), "azure:\n  ssh_user: root\n").unwrap();
    let (managed, _store, server) = common::managed_harness(home.path()).await;
    let id = common::submit_recovering_job(&managed, "  infra: azure\n  accelerators: V100:1\n  use_spot: true\n", true).await;
    let v = wait_for("the first attempt running on Azure", Duration::from_secs(90), &managed, id, |v| v.status == "RUNNING").await;
    let first = v.attempts[0].clone();
    assert!(first.pool.starts_with("azure/"), "{first:?}");
    assert!(first.spot);
    let vms = emu.vms();
    assert_eq!(vms.len(), 1, "{vms:?}");
    let first_vm = vms[0].clone();
    assert!(first_vm.spot, "{first_vm:?}");
    assert_eq!(first_vm.body["properties"]["priority"], "Spot");
    assert_eq!(first_vm.body["properties"]["evictionPolicy"], "Delete");
    assert_eq!(first.hosts, vec![first_vm.public_ip.clone().expect("a public IP")]);

    // Eviction: Azure deletes the Spot VM; its host goes with it.
    assert!(emu.evict(&first_vm.name));
    let v = wait_for("recovery after the eviction", Duration::from_secs(120), &managed, id, |v| {
        v.attempts.len() >= 2 && v.status == "RUNNING"
    })
    .await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("evicted"), "{v:#?}");
    assert_eq!(v.recovery_count, 1);

    common::assert_finished_after_recovery(&managed, id).await;

    // Teardown: every resource group deleted, the evicted VM's included.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !emu.resource_groups().is_empty() || !emu.vms().is_empty() {
        assert!(Instant::now() < deadline, "left after the job: {:?} {:?}", emu.resource_groups(), emu.vms());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(emu.network_resources().is_empty(), "{:?}", emu.network_resources());
    let puts = emu.vm_puts();
    assert!(puts.len() >= 2 && puts.iter().all(|p| p.outcome.is_ok()), "{puts:?}");
    assert!(emu.rejections().is_empty(), "requests ARM would refuse: {:?}", emu.rejections());
    watcher.abort();
    server.abort();
}
