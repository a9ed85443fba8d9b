//! A managed spot job on RunPod recovers from an injected interruption: the testkit's RunPod
//! GraphQL EMULATION is the control plane (testkit/emulators/runpod.md), network-namespace sshd
//! hosts are the pods (one at each pod's IP and mapped SSH port), the real agent reports
//! heartbeats over HTTPS to this test's heartbeat router.
//!
//! The emulator stops the spot pod as RunPod does on an interruption (`desiredStatus: EXITED`,
//! `runtime: null`) and its host goes away; the managed-jobs loop must see it through the backend
//! (`pod` query), record the attempt as PREEMPTED, relaunch with `podRentInterruptable` and finish
//! the job, and every pod must be terminated at the end.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};
use skycat_testkit::runpod::{EmulatorConfig, RunPodEmulator};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::TestHosts;

const NET: u32 = 235;
const KEY: &str = "rpa_EMULATED_MANAGED_KEY";

/// A host for every RUNNING pod (marked booted once up); the host goes when its pod stops or
/// is terminated.
fn watch_pods(hosts: Arc<TestHosts>, emu: Arc<RunPodEmulator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut up: BTreeMap<String, (u32, u16)> = BTreeMap::new();
        loop {
            let pods = emu.pods();
            for p in &pods {
                let have = up.get(&p.id).copied();
                match (have, p.desired_status == "RUNNING") {
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
                        up.insert(p.id.clone(), (i, port));
                        emu.mark_booted(&p.id);
                    }
                    (Some((i, _)), false) => {
                        let h = hosts.clone();
                        tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                        up.remove(&p.id);
                    }
                    (None, false) => {}
                }
            }
            let gone: Vec<(String, u32)> =
                up.iter().filter(|(id, _)| !pods.iter().any(|p| &p.id == *id)).map(|(id, v)| (id.clone(), v.0)).collect();
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
async fn managed_spot_job_on_runpod_recovers_after_an_interruption() {
    let emu = Arc::new(
        RunPodEmulator::start(EmulatorConfig { api_key: KEY.into(), ip_prefix: format!("10.229.{NET}."), first_public_port: 42022 })
            .await,
    );
    // The only test in this binary: the process env is not shared with another test.
    std::env::set_var("SKYCAT_RUNPOD_ENDPOINT", &emu.url);
    std::env::set_var("RUNPOD_API_KEY", KEY);
    std::env::remove_var("SKYCAT_RUNPOD_API_KEY");
    std::env::set_var("SKYCAT_RUNPOD_BOOT_TIMEOUT_SECS", "60");
    std::env::set_var("SKYCAT_SSH_READY_TIMEOUT_SECS", "60");
    let hosts = Arc::new(TestHosts::empty(NET, "rpmj"));
    let watcher = watch_pods(hosts.clone(), emu.clone());

    let home = tempfile::tempdir().unwrap();
    common::mark_enabled(home.path(), "runpod", "RUNPOD_API_KEY", "POST graphql query { myself { id } }");
    let (managed, _store, server) = common::managed_harness(home.path()).await;

    let id = common::submit_recovering_job(&managed, "  infra: runpod/US\n  accelerators: RTXA4500:1\n  use_spot: true\n", true).await;
    let v = wait_for("the first attempt running on RunPod", Duration::from_secs(90), &managed, id, |v| v.status == "RUNNING").await;
    let first = v.attempts[0].clone();
    assert!(first.pool.starts_with("runpod/US"), "{first:?}");
    assert!(first.spot);
    let pods = emu.pods();
    assert_eq!(pods.len(), 1, "{pods:?}");
    let first_pod = pods[0].clone();
    assert!(first_pod.spot, "{first_pod:?}");
    assert_eq!(first_pod.input["bidPerGpu"].as_f64(), Some(0.19));
    assert_eq!(first.hosts, vec![first_pod.ip.clone()]);

    // Interruption: RunPod stops the pod; its container (the host) goes with it.
    assert!(emu.preempt(&first_pod.id));
    let v = wait_for("recovery after the interruption", Duration::from_secs(120), &managed, id, |v| {
        v.attempts.len() >= 2 && v.status == "RUNNING"
    })
    .await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("interrupted"), "{v:#?}");
    assert_eq!(v.recovery_count, 1);

    common::assert_finished_after_recovery(&managed, id).await;

    // Teardown: every pod terminated, the interrupted one included.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !emu.pods().is_empty() {
        assert!(Instant::now() < deadline, "pods left after the job: {:?}", emu.pods());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deploys = emu.deploys();
    assert!(deploys.len() >= 2 && deploys.iter().all(|d| d.field == "podRentInterruptable"), "{deploys:?}");
    assert_eq!(emu.rejected(), Vec::<String>::new(), "requests the emulator's schema refused");
    assert!(emu.operations().iter().any(|o| o == "podTerminate"), "{:?}", emu.operations());
    watcher.abort();
    server.abort();
}
