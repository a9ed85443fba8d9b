//! `skycat check` / `launch` / `logs` / `status --endpoints` / `down` on AWS through the real
//! binary: moto's server is the control plane (behind a loopback proxy that injects EC2's own
//! capacity and quota errors), network-namespace sshd hosts are the instances (one comes up at
//! each instance's private IP, see controller/tests/common/aws_hosts.rs).
//!
//! The failover walk is checked on the real plan: the task allows us-east-1 and us-west-2; the
//! cheapest spot zone (use1-az1 = moto's us-east-1b) answers InsufficientInstanceCapacity, the
//! region us-east-1 answers VcpuLimitExceeded, so the launch must block the zone, then the region,
//! say why on one line each, and land in us-west-2.
//!
//! Needs root, iproute2, openssh-server and moto (scripts/ci-setup-*.sh). Never skipped.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::aws_hosts::{ec2, instances, make_vpc, InstanceHosts};
use common::ec2_faults::{Ec2FaultProxy, Fault};
use common::moto::start_moto;
use common::{agent_bin, TestHosts};

const NET: u32 = 160;

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    endpoint: String,
    agent: std::path::PathBuf,
}

impl Env {
    /// `skycat ARGS` with this test's homes and agent, on moto's fake keys at `endpoint`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.args(args)
            .env("SKYCAT_HOME", self.home.path())
            .env("HOME", self.user_home.path())
            .env("SKYCAT_AGENT_BIN", &self.agent)
            .env("AWS_ENDPOINT_URL_EC2", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("SKYCAT_SSH_READY_TIMEOUT_SECS", "60")
            .env("SKYCAT_AWS_BOOT_TIMEOUT_SECS", "60");
        c
    }

    /// Runs the binary from the async test without stalling the runtime: the EC2 fault proxy
    /// the binary talks to is a task of this runtime, and a task parked in a blocked worker's
    /// LIFO slot could not be stolen (seen: `skycat down` waiting 11 minutes on the proxy).
    fn skycat(&self, args: &[&str]) -> Output {
        tokio::task::block_in_place(|| self.command(args).output().expect("run skycat"))
    }

    async fn skycat_async(&self, args: &[&str]) -> Output {
        tokio::process::Command::from(self.command(args)).output().await.expect("run skycat")
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_on_ec2_fails_over_runs_and_goes_down() {
    let moto = start_moto();
    let proxy = Ec2FaultProxy::start(&moto.url).await;
    let east = ec2(&moto.url, "us-east-1").await;
    let west = ec2(&moto.url, "us-west-2").await;
    make_vpc(&east, "skycat-e2e", 233).await;
    make_vpc(&west, "skycat-e2e", 234).await;
    let hosts = Arc::new(TestHosts::empty(NET, "awscli"));
    let _watcher = InstanceHosts::watch(hosts.clone(), vec![east.clone(), west.clone()]);

    let env = Env {
        home: tempfile::tempdir().unwrap(),
        user_home: tempfile::tempdir().unwrap(),
        endpoint: proxy.url.clone(),
        agent: agent_bin(),
    };
    write(&env.home.path().join("config.yaml"), "aws:\n  vpc_name: skycat-e2e\n  use_internal_ips: true\n  ssh_user: root\n");

    // Not enabled yet: the plan says which cloud would serve and how to enable it.
    let task = env.home.path().join("task.yaml");
    write(
        &task,
        "name: hello\nresources:\n  instance_type: m6i.large\n  use_spot: true\n  image_id: ami-785db401\n  ports: 8888\n  any_of:\n    - infra: aws/us-east-1\n    - infra: aws/us-west-2\n\
         run: echo \"hello from rank $SKYCAT_NODE_RANK of $SKYCAT_NUM_NODES\"\n",
    );
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not enabled") && text(&out).contains("aws"), "{}", text(&out));

    let out = env.skycat(&["check", "aws"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("enabled"), "{}", text(&out));

    // The dry run prints the plan launch will walk: the cheapest spot zone first.
    let out = env.skycat(&["launch", "-c", "web", task.to_str().unwrap(), "--dryrun"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    let first_row = plan.lines().skip_while(|l| !l.starts_with("Failover order")).nth(2).unwrap_or_default().to_string();
    assert!(first_row.contains("us-east-1/use1-az1") && first_row.contains("m6i.large"), "{plan}");

    // The zone's fault names its region too, so it is the more specific one for that zone.
    proxy.inject(Fault {
        region: Some("us-east-1".into()),
        zone: Some("us-east-1b".into()),
        code: "InsufficientInstanceCapacity".into(),
        ..Default::default()
    });
    proxy.fail_region("us-east-1", "VcpuLimitExceeded");
    let t0 = Instant::now();
    let out = env.skycat_async(&["launch", "-c", "web", task.to_str().unwrap(), "-y"]).await;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("launch on moto + netns took {:.2}s:\n{log}", t0.elapsed().as_secs_f64());
    assert!(log.contains("InsufficientInstanceCapacity") && log.contains("blocking zone use1-az1"), "{log}");
    assert!(log.contains("VcpuLimitExceeded") && log.contains("blocking region aws/us-east-1"), "{log}");
    let seen = proxy.run_instances_seen();
    let landed: Vec<_> = seen.iter().filter(|s| s.injected.is_none()).collect();
    assert_eq!(landed.len(), 1, "{seen:?}");
    assert_eq!(landed[0].region.as_deref(), Some("us-west-2"), "{seen:?}");
    assert_eq!(landed[0].zone.as_deref(), Some("us-west-2d"), "the cheapest us-west-2 spot zone (usw2-az4): {seen:?}");

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
    assert!(text(&out).contains("aws/us-west-2/usw2-az4"), "{}", text(&out));
    let out = env.skycat(&["status", "--endpoint", "8888", "web"]);
    let ip = instances(&west).await.into_values().find(|v| v.0 == "running").and_then(|v| v.1).expect("running instance");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{ip}:8888"), "{}", text(&out));

    // `ssh web` works with the system ssh through the generated config.
    let cfg = env.home.path().join("ssh/config");
    let out = Command::new("ssh")
        .args(["-F", cfg.to_str().unwrap(), "-o", "BatchMode=yes", "web", "echo on-$SKYCAT_TESTHOST"])
        .output()
        .expect("ssh");
    assert!(text(&out).contains("on-"), "{}", text(&out));

    // down terminates the instance in moto.
    let out = env.skycat(&["down", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let live: Vec<_> = instances(&west).await.into_iter().filter(|(_, v)| v.0 != "terminated").collect();
    assert!(live.is_empty(), "{live:?}");
    let out = env.skycat(&["status"]);
    assert!(text(&out).contains("No existing clusters"), "{}", text(&out));
}
