//! AWS EC2 end to end, through the Backend seam: moto's server is the control plane, network
//! namespace sshd hosts are the data plane (an instance that reaches `running` in moto gets a host
//! at its private IP, accepting the key pair the backend imported; see common/aws_hosts.rs).
//!
//! * the optimizer picks AWS (the embedded catalog's real prices) and the launch walks the plan;
//! * `RunInstances` creates the instance in moto in the planned zone (catalog zone ids mapped to
//!   the account's zone names), tagged with the cluster, with the security group opening 22 and
//!   the task's ports, and the root volume of `disk_size`;
//! * the agent starts on the host and the managed job runs;
//! * a spot preemption (the instance terminated in moto, the host cut off) is seen in the
//!   instance state and recovered in another zone, the preempted zone blocked;
//! * `down` terminates everything in moto and deletes the security group.
//!
//! Needs root, iproute2, openssh-server and moto (scripts/ci-setup-*.sh). Never skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_controller::managed::{JobView, Managed};

mod common;
use common::aws_hosts::{ec2, instances, make_vpc, InstanceHosts};
use common::moto::{start_moto, use_fake_aws};
use common::TestHosts;

const NET: u32 = 150;

fn aws_home(dir: &std::path::Path) {
    std::fs::write(dir.join("config.yaml"), "aws:\n  vpc_name: skycat-e2e\n  use_internal_ips: true\n  ssh_user: root\n").unwrap();
    common::mark_enabled(dir, "aws", "AWS_ACCESS_KEY_ID", "ec2:DescribeRegions");
}

async fn wait_for(what: &str, timeout: Duration, m: &Managed, id: i64, f: impl FnMut(&JobView) -> bool) -> JobView {
    common::wait_for_job(m, id, what, timeout, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_spot_job_on_ec2_recovers_in_another_zone() {
    let moto = start_moto();
    // The only test in this binary: the process env is not shared with another test.
    use_fake_aws(&moto.url);
    let east = ec2(&moto.url, "us-east-1").await;
    make_vpc(&east, "skycat-e2e", 232).await;
    let hosts = Arc::new(TestHosts::empty(NET, "aws"));
    let watcher = InstanceHosts::watch(hosts.clone(), vec![east.clone()]);

    let home = tempfile::tempdir().unwrap();
    aws_home(home.path());
    let (managed, store, server) = common::managed_harness(home.path()).await;

    // A spot job pinned to us-east-1 on a small real type; the plan orders its zones by the
    // catalog's spot prices.
    let id = common::submit_recovering_job(&managed, "  infra: aws/us-east-1\n  instance_type: m6i.large\n  use_spot: true\n  ports: 8888\n  disk_size: 64\n  image_id: ami-785db401\n", true).await;
    let v = wait_for("the first attempt running on EC2", Duration::from_secs(90), &managed, id, |v| v.status == "RUNNING").await;
    let first = v.attempts[0].clone();
    assert!(first.pool.starts_with("aws/us-east-1"), "{first:?}");
    assert!(first.spot);

    // The instance exists in moto, in the planned zone, tagged, with the task's port open.
    let inst = instances(&east).await;
    let live: Vec<_> = inst.iter().filter(|(_, v)| v.0 == "running").collect();
    assert_eq!(live.len(), 1, "{inst:?}");
    let (first_id, (_, first_ip, first_zone)) = live[0];
    assert_eq!(first_ip.as_deref(), Some(first.hosts[0].as_str()));
    let c = store.cluster(&first.cluster).await.unwrap().expect("cluster");
    let zone_id = c.infra.split('/').nth(2).expect("zone in infra").to_string();
    let zones = east.describe_availability_zones().zone_ids(&zone_id).send().await.unwrap();
    assert_eq!(zones.availability_zones()[0].zone_name(), first_zone.as_deref(), "planned zone {zone_id}");
    let d = east.describe_instances().instance_ids(first_id).send().await.unwrap();
    let i = &d.reservations()[0].instances()[0];
    assert!(i.tags().iter().any(|t| t.key() == Some("skycat-cluster") && t.value() == Some(first.cluster.as_str())));
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    // The groups ride on the network interface (it also carries the no-public-IP choice).
    let sg = i
        .security_groups()
        .iter()
        .chain(i.network_interfaces().iter().flat_map(|n| n.groups()))
        .find_map(|g| g.group_id())
        .expect("a security group on the instance")
        .to_string();
    assert_eq!(i.public_ip_address(), None, "use_internal_ips: no public IP");
    let g = east.describe_security_groups().group_ids(&sg).send().await.unwrap();
    let ports: Vec<(i32, i32)> =
        g.security_groups()[0].ip_permissions().iter().map(|p| (p.from_port().unwrap_or(0), p.to_port().unwrap_or(0))).collect();
    assert!(ports.contains(&(22, 22)) && ports.contains(&(8888, 8888)), "{ports:?}");

    // Preemption: the instance goes away in moto and its host is cut off.
    east.terminate_instances().instance_ids(first_id).send().await.unwrap();
    hosts.cut(watcher.host_of(first_id).expect("host of the first instance"));
    let v = wait_for("recovery on another zone", Duration::from_secs(120), &managed, id, |v| {
        v.attempts.len() >= 2 && v.status == "RUNNING"
    })
    .await;
    assert_eq!(v.attempts[0].outcome, "PREEMPTED", "{v:#?}");
    assert!(v.attempts[0].reason.as_deref().unwrap_or("").contains("terminated"), "{v:#?}");
    assert_eq!(v.recovery_count, 1);
    let c2 = store.cluster(&v.attempts[1].cluster).await.unwrap().expect("cluster 2");
    let zone2 = c2.infra.split('/').nth(2).unwrap_or_default().to_string();
    assert!(c2.infra.starts_with("aws/us-east-1/") && zone2 != zone_id, "{} after {zone_id}", c2.infra);
    let blocks = managed.blocks(id).await.unwrap();
    assert!(blocks.iter().any(|b| b.1 == zone_id && b.2 == "zone"), "{blocks:?}");

    common::assert_finished_after_recovery(&managed, id).await;

    // Teardown: every instance terminated in moto, the clusters' security groups gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<_> = instances(&east).await.into_iter().filter(|(_, v)| v.0 != "terminated").collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "instances left running after the job: {left:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The preempted attempt is torn down in the background (its node is gone): wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let groups = east.describe_security_groups().send().await.unwrap();
        let left: Vec<String> =
            groups.security_groups().iter().filter_map(|g| g.group_name()).filter(|n| n.starts_with("skycat-")).map(str::to_string).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "security groups left: {left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.abort();
}
