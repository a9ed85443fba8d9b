//! A managed Spot job on GCP recovers from an injected preemption: skycat-testkit's EMULATION
//! of the Compute Engine API v1 is the control plane (testkit/emulators/gcp.md), a
//! network-namespace sshd host stands at each VM's natIP while the VM is up, and the real agent
//! reports heartbeats over HTTPS to this test's heartbeat router.
//!
//! The emulator preempts the Spot VM as GCP does (status TERMINATED, no natIP, and a
//! `compute.instances.preempted` operation on it in the zone) and its host goes away; the
//! managed-jobs loop must see that through the backend as a preemption, record the attempt as
//! PREEMPTED, relaunch on a new Spot VM and finish the job; at the end no VM and no firewall rule
//! is left.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::home::Home;
use skycat_controller::lifecycle::Controller;
use skycat_controller::managed::{JobRequest, JobView, Managed, ManagedOptions};
use skycat_testkit::gcp::{GcpEmulator, GcpEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 245;
const PROJECT: &str = "skycat-managed-proj";
const TOKEN: &str = "ya29.managed-e2e-token-0c9d";

/// What `skycat check gcp` writes when `GET projects/{p}` answers (gcp_launch_e2e covers the
/// command itself).
fn gcp_enabled(dir: &std::path::Path) {
    let mut cache = skycat_controller::enabled::EnabledClouds::default();
    cache.clouds.insert(
        "gcp".into(),
        skycat_controller::enabled::CloudState {
            launch: true,
            status: skycat_controller::enabled::ENABLED.into(),
            credentials: "GOOGLE_OAUTH_ACCESS_TOKEN, GOOGLE_CLOUD_PROJECT".into(),
            verified: true,
            call: Some("GET compute/v1/projects/{project}".into()),
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

/// A host at the natIP of every VM that is up (PROVISIONING/STAGING/RUNNING), accepting its
/// `ssh-keys`; the host goes when the VM stops, is preempted or deleted.
fn watch_vms(hosts: Arc<TestHosts>, emu: Arc<GcpEmulator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut up: BTreeMap<String, (u32, String)> = BTreeMap::new();
        let mut next = 1u32;
        loop {
            let vms: Vec<_> =
                emu.instances().into_iter().filter(|v| matches!(v.status.as_str(), "PROVISIONING" | "STAGING" | "RUNNING")).collect();
            let stale: Vec<(String, u32)> = up
                .iter()
                .filter(|(k, (_, ip))| !vms.iter().any(|v| &format!("{}/{}", v.zone, v.name) == *k && &v.nat_ip == ip))
                .map(|(k, v)| (k.clone(), v.0))
                .collect();
            for (k, i) in stale {
                let h = hosts.clone();
                tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                up.remove(&k);
            }
            for v in vms {
                let key = format!("{}/{}", v.zone, v.name);
                if up.contains_key(&key) {
                    continue;
                }
                for k in &v.ssh_keys {
                    hosts.authorize(k);
                }
                let i = next;
                next += 1;
                let hip = format!("10.230.{}.{i}", hosts.net());
                let (h, ip) = (hosts.clone(), v.nat_ip.clone());
                tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip, &hip])).await.expect("up-at");
                up.insert(key, (i, v.nat_ip));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_for(what: &str, timeout: Duration, m: &Managed, id: i64, f: impl FnMut(&JobView) -> bool) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_spot_job_on_gcp_recovers_after_a_preemption() {
    let emu = Arc::new(GcpEmulator::start(GcpEmulatorConfig::new(PROJECT, TOKEN, NET as u8)).await);
    // The only test in this binary: the process env is not shared with another test.
    std::env::set_var("SKYCAT_GCP_COMPUTE_ENDPOINT", &emu.url);
    std::env::set_var("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    std::env::set_var("GOOGLE_CLOUD_PROJECT", PROJECT);
    std::env::remove_var("GOOGLE_APPLICATION_CREDENTIALS");
    std::env::remove_var("CLOUDSDK_CORE_PROJECT");
    std::env::set_var("SKYCAT_GCP_BOOT_TIMEOUT_SECS", "60");
    std::env::set_var("SKYCAT_SSH_READY_TIMEOUT_SECS", "60");
    let hosts = Arc::new(TestHosts::empty(NET, "gcpmj"));
    let watcher = watch_vms(hosts.clone(), emu.clone());

    let home = tempfile::tempdir().unwrap();
    gcp_enabled(home.path());
    // The test hosts accept root only.
    std::fs::write(home.path().join("config.yaml"), "gcp:\n  ssh_user: root\n").unwrap();
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
        "resources:\n  infra: gcp/us-central1\n  accelerators: T4:1\n  use_spot: true\n\
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
    let v = wait_for("the first attempt running on GCP", Duration::from_secs(90), &managed, id, |v| v.status == "RUNNING").await;
    let first = v.attempts[0].clone();
    assert!(first.pool.starts_with("gcp/us-central1"), "{first:?}");
    assert!(first.spot);
    let vms = emu.instances();
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm = vms[0].clone();
    assert!(vm.spot, "{vm:?}");
    assert_eq!(vm.body["scheduling"]["provisioningModel"], "SPOT");
    assert_eq!(first.hosts, vec![vm.nat_ip.clone()]);

    // Preemption: GCP stops the Spot VM (TERMINATED, natIP gone) and logs the system event.
    assert!(emu.preempt(&vm.zone, &vm.name));
    let v = wait_for("recovery after the preemption", Duration::from_secs(120), &managed, id, |v| {
        v.attempts.len() >= 2 && v.status == "RUNNING"
    })
    .await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("preempted"), "{v:#?}");
    assert_eq!(v.recovery_count, 1);

    let v = managed.wait(id, Duration::from_secs(60)).await.expect("job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    let logs = managed.logs(id).await.unwrap().1;
    assert!(logs.iter().any(|(_, l)| l.contains("rc=1") && l.contains("finished")), "{logs:?}");

    // Teardown: every VM deleted (the preempted one included) and no firewall rule left.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !emu.instances().is_empty() || !emu.firewalls().is_empty() {
        assert!(Instant::now() < deadline, "left after the job: {:?} {:?}", emu.instances(), emu.firewalls());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let inserts = emu.inserts();
    assert!(inserts.len() >= 2 && inserts.iter().all(|i| i.outcome.is_ok()), "{inserts:?}");
    assert!(emu.rejections().is_empty(), "requests the Compute API would refuse: {:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), 0);
    watcher.abort();
    server.abort();
}
