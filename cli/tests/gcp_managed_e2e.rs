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

use skycat_controller::managed::{JobView, Managed};
use skycat_testkit::gcp::{GcpEmulator, GcpEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::TestHosts;

const NET: u32 = 245;
const PROJECT: &str = "skycat-managed-proj";
const TOKEN: &str = "ya29.managed-e2e-token-0c9d";

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
    common::mark_enabled(home.path(), "gcp", "GOOGLE_OAUTH_ACCESS_TOKEN, GOOGLE_CLOUD_PROJECT", "GET compute/v1/projects/{project}");
    // The test hosts accept root only.
    std::fs::write(home.path().join("config.yaml"), "gcp:\n  ssh_user: root\n").unwrap();
    let (managed, _store, server) = common::managed_harness(home.path()).await;
    let id = common::submit_recovering_job(&managed, "  infra: gcp/us-central1\n  accelerators: T4:1\n  use_spot: true\n", true).await;
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

    common::assert_finished_after_recovery(&managed, id).await;

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
