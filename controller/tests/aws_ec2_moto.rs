//! The EC2 backend against moto's server on a loopback port, reached through the SDK's standard
//! `AWS_ENDPOINT_URL_EC2` with fake credentials: key pair, security group with the task's ports,
//! RunInstances on demand and on spot (InstanceMarketOptions; read back as instance-lifecycle
//! spot), describe, stop,
//! start, terminate, and the state read after a terminate.
//!
//! moto must be installed: `scripts/ci-setup-moto.sh` (CI runs it). Without it this test fails,
//! saying so.

use std::process::Command;

use skycat_controller::aws_ec2::{Ec2Backend, Ec2Error, LaunchSpec, NodeGone, CLUSTER_TAG};

mod common;
use common::moto::{start_moto, use_fake_aws};

/// A fresh ed25519 public key in OpenSSH format (ssh-keygen ships with openssh-client).
fn public_key(dir: &std::path::Path) -> String {
    let key = dir.join("id");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "skycat-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (install openssh-client)");
    assert!(st.success());
    std::fs::read_to_string(key.with_extension("pub")).expect("read public key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_backend_every_call_against_moto() {
    let moto = start_moto();
    // The only test in this binary: setting the process env is not racing another test.
    use_fake_aws(&moto.url);
    let ec2 = Ec2Backend::from_env("us-east-1").await;

    // Key pair: imported once, idempotent.
    let dir = tempfile::tempdir().expect("tempdir");
    let pk = public_key(dir.path());
    ec2.ensure_key_pair("skycat-test", &pk).await.expect("ImportKeyPair");
    ec2.ensure_key_pair("skycat-test", &pk).await.expect("key pair exists: no second import");

    // Security group with SSH + the task's ports; the second call finds it and adds nothing.
    let ports = skycat_controller::backend::parse_ports(&["8080".into(), "8000-8010".into()]).expect("ports");
    let sg = ec2.ensure_security_group("skycat-test-sg", None, &ports, "0.0.0.0/0").await.expect("CreateSecurityGroup");
    assert!(sg.starts_with("sg-"), "{sg}");
    let again = ec2.ensure_security_group("skycat-test-sg", None, &ports, "0.0.0.0/0").await.expect("idempotent");
    assert_eq!(sg, again);
    // A new port on the existing group is authorized.
    let more = ec2.ensure_security_group("skycat-test-sg", None, &[(9000, 9000)], "0.0.0.0/0").await.expect("authorize more");
    assert_eq!(sg, more);

    let base = LaunchSpec {
        image_id: "ami-12c6146b".into(), // one of the AMIs moto ships
        instance_type: "t3.micro".into(),
        key_name: Some("skycat-test".into()),
        security_group_ids: vec![sg.clone()],
        availability_zone: Some("us-east-1a".into()),
        tags: vec![("skycat-managed-job".into(), "7".into())],
        ..Default::default()
    };

    // On demand.
    let od = ec2
        .run_instances(&LaunchSpec { cluster: "od".into(), count: 1, ..base.clone() })
        .await
        .expect("RunInstances on demand");
    assert_eq!(od.len(), 1);
    assert!(!od[0].spot && od[0].spot_request_id.is_none(), "{od:?}");
    assert_eq!(od[0].zone.as_deref(), Some("us-east-1a"));
    assert!(od[0].tags.contains(&(CLUSTER_TAG.to_string(), "od".to_string())), "{:?}", od[0].tags);

    // Spot: a one-time spot request per instance, instance-lifecycle spot.
    let spot = ec2
        .run_instances(&LaunchSpec { cluster: "sp".into(), count: 2, spot: true, ..base.clone() })
        .await
        .expect("RunInstances spot");
    assert_eq!(spot.len(), 2);
    let described = ec2.describe_cluster("sp").await.expect("DescribeInstances");
    assert_eq!(described.len(), 2);
    assert!(described.iter().all(|i| i.spot && i.preemption().is_none()), "{described:?}");
    assert!(described.iter().all(|i| i.tags.contains(&("skycat-managed-job".to_string(), "7".to_string()))));
    // The on-demand instances stay on demand.
    assert!(ec2.describe_cluster("od").await.expect("describe od").iter().all(|i| !i.spot));

    // Stop / start the on-demand instance.
    let ids = vec![od[0].id.clone()];
    let stopped = ec2.stop(&ids).await.expect("StopInstances");
    assert!(matches!(stopped[0].1.as_str(), "stopping" | "stopped"), "{stopped:?}");
    let now = ec2.describe_ids(&ids).await.expect("DescribeInstances by id");
    assert_eq!(now[0].state, "stopped");
    assert!(matches!(now[0].preemption(), Some(NodeGone::Ended { .. })), "a user stop is no spot interruption");
    let started = ec2.start(&ids).await.expect("StartInstances");
    assert!(matches!(started[0].1.as_str(), "pending" | "running"), "{started:?}");
    assert_eq!(ec2.describe_ids(&ids).await.expect("describe")[0].state, "running");

    // Terminate everything; a terminated spot instance ended by the user is not "preempted".
    let spot_ids: Vec<String> = spot.iter().map(|i| i.id.clone()).collect();
    let gone = ec2.terminate(&spot_ids).await.expect("TerminateInstances");
    assert!(gone.iter().all(|(_, s)| matches!(s.as_str(), "shutting-down" | "terminated")), "{gone:?}");
    let after = ec2.describe_cluster("sp").await.expect("describe");
    assert!(after.iter().all(|i| i.state == "terminated"), "{after:?}");
    for i in &after {
        match i.preemption() {
            Some(NodeGone::Ended { state, .. }) => assert_eq!(state, "terminated"),
            other => panic!("user terminate read as {other:?}"),
        }
    }
    ec2.terminate(&ids).await.expect("terminate on-demand");

    // Errors name the call and region.
    let err = ec2.describe_ids(&["i-0123456789abcdef0".into()]).await.expect_err("unknown id");
    assert!(matches!(&err, Ec2Error::Api { op: "DescribeInstances", .. }), "{err}");
    assert!(err.to_string().contains("us-east-1"), "{err}");
    let err = ec2.run_instances(&LaunchSpec { cluster: "x".into(), count: 1, image_id: String::new(), ..base }).await.expect_err("no AMI");
    assert!(err.to_string().contains("image_id"), "{err}");
}
