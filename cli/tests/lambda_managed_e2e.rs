//! A managed job on Lambda Cloud recovers when Lambda takes its instance back: the testkit's
//! Lambda Cloud EMULATION is the control plane (testkit/emulators/lambda.md), network-namespace
//! sshd hosts are the instances (one at each instance's public IP), and the real agent reports
//! heartbeats over HTTPS to this test's heartbeat router.
//!
//! Lambda sells no spot market, so the job is on demand; what Lambda can still do is end an
//! instance under the job (`status: preempted` in its API, spec 1.8.3). The emulator sets that
//! status and the instance's host goes away; the managed-jobs loop must see it through the
//! backend (`GET /instances/{id}`), record the attempt as PREEMPTED, launch again and finish the
//! job, and no instance may be left running at the end.
//!
//! Needs root, iproute2 and openssh-server (scripts/ci-setup-sshd.sh). Never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};
use skycat_testkit::lambda_emulator::{LambdaEmulator, LambdaEmulatorConfig};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::TestHosts;

const NET: u32 = 225;
const KEY: &str = "secret_lambda-managed_77e0a1b3";

/// A host for every booting or active instance, accepting the key it was launched with; the
/// host goes when the instance is preempted or terminated.
fn watch_instances(hosts: Arc<TestHosts>, emu: Arc<LambdaEmulator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut up: BTreeMap<String, u32> = BTreeMap::new();
        let mut next = 1u32;
        loop {
            for v in emu.instances() {
                let live = v.status == "booting" || v.status == "active";
                match (up.get(&v.id).copied(), live) {
                    (None, true) => {
                        for k in &v.ssh_key_names {
                            hosts.authorize(&emu.ssh_key(k).expect("the launch named a registered key"));
                        }
                        let i = next;
                        next += 1;
                        let (h, ip) = (hosts.clone(), v.ip.clone());
                        let hip = format!("10.230.{}.{i}", h.net());
                        tokio::task::spawn_blocking(move || h.script(&["up-at", &i.to_string(), &ip, &hip])).await.expect("up-at");
                        up.insert(v.id.clone(), i);
                    }
                    (Some(i), false) => {
                        let h = hosts.clone();
                        tokio::task::spawn_blocking(move || h.script(&["rm", &i.to_string()])).await.expect("rm");
                        up.remove(&v.id);
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_for(what: &str, timeout: Duration, m: &Managed, id: i64, f: impl FnMut(&JobView) -> bool) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_job_on_lambda_recovers_after_its_instance_is_taken_back() {
    let emu = Arc::new(LambdaEmulator::start(LambdaEmulatorConfig::new(KEY, NET as u8)).await);
    // The only test in this binary: the process env is not shared with another test.
    std::env::set_var("SKYCAT_LAMBDA_ENDPOINT", &emu.url);
    std::env::set_var("LAMBDA_API_KEY", KEY);
    std::env::remove_var("SKYCAT_LAMBDA_API_KEY");
    std::env::set_var("SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS", "60");
    std::env::set_var("SKYCAT_SSH_READY_TIMEOUT_SECS", "60");
    let hosts = Arc::new(TestHosts::empty(NET, "lmj"));
    let watcher = watch_instances(hosts.clone(), emu.clone());

    let home = tempfile::tempdir().unwrap();
    // The test hosts accept root only (Lambda's images log in as ubuntu).
    std::fs::write(home.path().join("config.yaml"), "lambda:\n  ssh_user: root\n").unwrap();
    common::mark_enabled(home.path(), "lambda", "LAMBDA_API_KEY", "GET /api/v1/instance-types");
    let (managed, _store, server) = common::managed_harness(home.path()).await;

    let id = common::submit_recovering_job(&managed, "  infra: lambda\n  accelerators: A10:1\n", false).await;
    let v = wait_for("the first attempt running on Lambda", Duration::from_secs(90), &managed, id, |v| v.status == "RUNNING").await;
    let first = v.attempts[0].clone();
    assert!(first.pool.starts_with("lambda/"), "{first:?}");
    assert!(!first.spot, "Lambda has no spot market: {first:?}");
    let live: Vec<_> = emu.instances().into_iter().filter(|i| i.status == "active").collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let taken = live[0].clone();
    assert_eq!(taken.instance_type, "gpu_1x_a10");
    assert_eq!(first.hosts, vec![taken.ip.clone()]);

    // Lambda takes the instance back; its host goes with it.
    assert!(emu.preempt(&taken.id));
    let v = wait_for("recovery after the instance was taken back", Duration::from_secs(120), &managed, id, |v| {
        v.attempts.len() >= 2 && v.status == "RUNNING"
    })
    .await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("preempted"), "{v:#?}");
    assert_eq!(v.recovery_count, 1);
    assert_ne!(v.attempts[1].hosts, first.hosts, "the job runs on a new instance");

    common::assert_finished_after_recovery(&managed, id).await;

    // Teardown: no instance left running; the preempted one was terminated too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<_> = emu.instances().into_iter().filter(|i| i.status != "terminated").collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "instances left after the job: {left:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(emu.launches().iter().filter(|l| l.outcome.is_ok()).count() >= 2, "{:?}", emu.launches());
    assert!(emu.rejections().is_empty(), "requests Lambda's API would refuse: {:?}", emu.rejections());
    watcher.abort();
    server.abort();
}
