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

use skycat_controller::home::Home;
use skycat_controller::lifecycle::Controller;
use skycat_controller::managed::{JobRequest, JobView, Managed, ManagedOptions};
use skycat_testkit::azure::{AzureEmulator, AzureEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 255;
const SECRET: &str = "Emu8Q~azure-managed.secret_51ab";

/// What `skycat check azure` writes when `GET /subscriptions/{id}` answers (azure_launch_e2e
/// covers the command itself).
fn azure_enabled(dir: &std::path::Path) {
    let mut cache = skycat_controller::enabled::EnabledClouds::default();
    cache.clouds.insert(
        "azure".into(),
        skycat_controller::enabled::CloudState {
            launch: true,
            status: skycat_controller::enabled::ENABLED.into(),
            credentials: "AZURE_SUBSCRIPTION_ID, AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET".into(),
            verified: true,
            call: Some("GET subscriptions/{id}".into()),
            error: None,
            checked_at: chrono::Utc::now(),
        },
    );
    skycat_controller::enabled::save(&Home::at(dir), &cache).unwrap();
}

fn embedded_catalog() -> Vec<skycat_catalog::Offer> {
    let empty = tempfile::tempdir().unwrap();
    skycat_catalog::Catalog::load(&skycat_catalog::SkycatHome::new(empty.path())).expect("embedded catalog").catalog.into_offers()
}

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
    azure_enabled(home.path());
    // VMs are made for adminUsername azureuser; the test hosts accept root only.
    std::fs::write(home.path().join("config.yaml"), "azure:\n  ssh_user: root\n").unwrap();
    let (tls, pin) = common::agent_cert(home.path());
    let ctl = Controller::open(Home::at(home.path())).await.expect("controller").with_agent_bin(agent_bin()).with_server_cert_sha256(pin);
    let store = ctl.store.clone();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let opts = ManagedOptions {
        server_url: Some(format!("https://{{controller_ip}}:{port}")),
        heartbeat_secs: 1.0,
        deadline: Duration::from_secs(4),
        poll: Duration::from_millis(300),
        metadata_url: None,
        metadata_poll_secs: 0.5,
        termination_grace_secs: 2.0,
        launch_retry_for: Duration::from_secs(60),
        ssh_connect_timeout: Duration::from_secs(3),
    };
    let offers = Arc::new(embedded_catalog());
    let catalog: skycat_controller::managed::CatalogSource = Arc::new(move || offers.as_ref().clone());
    let managed = Managed::new(ctl, opts, catalog).await.expect("managed");
    let app = skycat_server::routes::heartbeat::router(store.clone()).merge(skycat_server::routes::jobs::router(
        managed.clone(),
        skycat_server::Auth { verifier: std::sync::Arc::new(store.clone()) },
    ));
    let server = common::spawn_tls(listener, app, &tls, std::future::pending());

    let spec = skycat_optimizer::parse_task_yaml(
        "resources:\n  infra: azure\n  accelerators: V100:1\n  use_spot: true\n\
         run: |\n  echo rc=$SKYCAT_JOB_RECOVERY_COUNT\n  if [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ]; then sleep 300; fi\n  echo finished\n",
    )
    .expect("task");
    let req = JobRequest {
        name: Some("train".into()),
        task: skycat_controller::TaskRun { name: Some("train".into()), num_nodes: 1, run: spec.run.clone(), ..Default::default() },
        use_spot: true,
        strategy: Some("FAILOVER".into()),
        max_restarts_on_errors: 0,
        spec: Some(spec),
    };
    let id = managed.submit(req).await.expect("submit");
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

    let v = managed.wait(id, Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    let logs = managed.logs(id).await.unwrap().1;
    assert!(logs.iter().any(|(_, l)| l.contains("rc=1") && l.contains("finished")), "{logs:?}");

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
