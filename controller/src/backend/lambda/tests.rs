//! The Lambda backend against the loopback emulation of Lambda Cloud's API (skycat-testkit's
//! lambda_emulator): every request it sends is schema-checked there, so a wrong field fails here.

use super::*;
use crate::backend::{BackendContext, ErrorClass};
use crate::home::Home;
use crate::ssh::SshOptions;
use crate::store::Store;
use skycat_optimizer::Placement;
use skycat_testkit::lambda_emulator::{LambdaEmulator, LambdaEmulatorConfig, LaunchFault};

fn err(code: Option<&str>, status: Option<u16>) -> LambdaError {
    LambdaError { op: "POST instance-operations/launch".into(), status, code: code.map(str::to_string), message: "m".into() }
}

#[test]
fn error_codes_are_classified() {
    let c = |code, status| classify(&err(code, status)).class;
    assert_eq!(c(Some(INSUFFICIENT_CAPACITY), Some(400)), ErrorClass::Capacity);
    assert_eq!(c(Some("global/quota-exceeded"), Some(400)), ErrorClass::Quota);
    assert_eq!(c(Some("global/invalid-api-key"), Some(401)), ErrorClass::Auth);
    assert_eq!(c(Some("global/account-inactive"), Some(403)), ErrorClass::Auth);
    assert_eq!(c(Some("global/invalid-parameters"), Some(400)), ErrorClass::Invalid);
    assert_eq!(c(Some("provider/internal-unavailable"), Some(503)), ErrorClass::Transient);
    assert_eq!(c(None, Some(429)), ErrorClass::Transient);
    assert_eq!(c(None, Some(502)), ErrorClass::Transient);
    assert_eq!(c(None, Some(403)), ErrorClass::Auth);
    assert_eq!(c(None, None), ErrorClass::Transient);
    let e = classify(&err(Some(INSUFFICIENT_CAPACITY), Some(400)));
    assert_eq!(e.code.as_deref(), Some(INSUFFICIENT_CAPACITY));
    assert!(e.to_string().contains(INSUFFICIENT_CAPACITY), "{e}");
}

#[test]
fn node_names_keep_prefix_and_rank_within_64_chars() {
    assert_eq!(node_name("web", "0123456789abcdef", 0), "skycat-01234567-0-web");
    let long = node_name(&"é".repeat(80), "0123456789abcdef", 3);
    assert!(long.len() <= 64 && long.starts_with("skycat-01234567-3-"), "{long}");
}

#[test]
fn config_section() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yaml");
    assert_eq!(LambdaConfig::load(&p).unwrap().user(), "ubuntu");
    std::fs::write(&p, "aws:\n  vpc_name: v\nlambda:\n  ssh_user: root\n").unwrap();
    assert_eq!(LambdaConfig::load(&p).unwrap().user(), "root");
    std::fs::write(&p, "lambda:\n  ssh_usr: root\n").unwrap();
    let e = LambdaConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("ssh_usr") && e.contains("config.yaml") && !e.contains('\n'), "{e}");
}

fn placement(region: &str, instance_type: &str) -> Placement {
    Placement {
        cloud: "lambda".into(),
        region: region.into(),
        zone: None,
        instance_type: instance_type.into(),
        vcpus: None,
        memory_gib: None,
        accelerator: Some("A10".into()),
        count: 1.0,
        use_spot: false,
        hourly_price: 0.75,
        num_nodes: 1,
        hourly_total: 0.75,
        hours: 1.0,
        total_cost: 0.75,
        egress_cost: 0.0,
        spot_interruption: None,
        expected_cost: None,
    }
}

fn request(cluster: &str, id: &str, p: Placement, n: u32) -> ProvisionRequest {
    ProvisionRequest {
        cluster: cluster.into(),
        cluster_id: id.into(),
        placement: p,
        num_nodes: n,
        ports: Vec::new(),
        disk_size_gb: None,
        image_id: None,
        avoid_nodes: Vec::new(),
    }
}

fn cluster_row(name: &str, id: &str) -> ClusterRow {
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: "UP".into(),
        infra: "lambda/us-east-1".into(),
        pool: String::new(),
        num_nodes: 1,
        price_per_hour: 0.75,
        spot: false,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: String::new(),
        updated_at: String::new(),
        terminated_at: None,
        instance_type: Some("gpu_1x_a10".into()),
        ports: None,
    }
}

fn node_row(cluster_id: &str, rank: u32, n: &ProvisionedNode) -> NodeRow {
    NodeRow {
        cluster_id: cluster_id.into(),
        rank,
        instance_id: Some(n.instance_id.clone()),
        node_id: n.instance_id.clone(),
        ..crate::lifecycle::node_at("", &n.target)
    }
}

async fn backend(emu: &LambdaEmulator, key: &str, home: &std::path::Path) -> Lambda {
    let home = Home::at(home);
    let store = Store::open(&home.state_db()).await.unwrap();
    let cx = BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store };
    Lambda::with_api(cx, LambdaApi::new(&emu.url, api::ApiKey::new(key)).unwrap())
}

#[tokio::test]
async fn provision_describe_and_terminate_on_the_emulator() {
    let emu = LambdaEmulator::start(LambdaEmulatorConfig::new("key-1", 250)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&emu, "key-1", dir.path()).await;
    let id = "c0ffee00aa11bb22";

    let got = b.provision(&request("train", id, placement("us-east-1", "gpu_1x_a10"), 2)).await.unwrap();
    assert_eq!(got.nodes.len(), 2);
    let seen = emu.instances();
    assert_eq!(seen.len(), 2);
    for (rank, (n, v)) in got.nodes.iter().zip(&seen).enumerate() {
        assert_eq!(n.instance_id, v.id);
        assert_eq!((n.target.host.as_str(), n.target.port, n.target.user.as_str()), (v.ip.as_str(), 22, "ubuntu"));
        assert_eq!(n.private_ip.as_deref(), Some(v.private_ip.as_str()));
        assert_eq!(v.name.as_deref(), Some(format!("skycat-c0ffee00-{rank}-train").as_str()));
        assert_eq!(v.status, "active");
    }
    // skycat's key was registered once, under its fingerprint name, and both nodes use it.
    let (_, public) = crate::keys::ensure_ssh_key(&b.cx.home).unwrap();
    let names = emu.ssh_key_names();
    assert_eq!(names, vec![crate::keys::key_pair_name(&public)]);
    assert_eq!(emu.ssh_key(&names[0]).as_deref(), Some(public.trim()));
    assert!(seen.iter().all(|v| v.ssh_key_names == names));

    let c = cluster_row("train", id);
    let rows: Vec<NodeRow> = got.nodes.iter().enumerate().map(|(r, n)| node_row(id, r as u32, n)).collect();
    assert_eq!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Running);
    assert!(emu.preempt(&rows[1].node_id));
    assert!(matches!(b.describe(&c, &rows[1]).await.unwrap(), NodeState::Preempted { .. }));

    // No stop on Lambda: refused with the way out.
    assert!(b.cannot_stop(&c).unwrap().contains("skycat down train"));
    let e = b.stop(&c, &rows).await.unwrap_err();
    assert!(e.to_string().contains("skycat down train"), "{e}");

    // Terminate finds the nodes by name (even with no rows on record) and waits until they end.
    b.terminate(&c, &[]).await.unwrap();
    assert!(emu.instances().iter().all(|v| v.status == "terminated"), "{:?}", emu.instances());
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Terminated { .. }));

    // A second launch from the same home reuses the registered key.
    let got = b.provision(&request("again", "d00d00d00d", placement("us-west-1", "gpu_1x_a10"), 1)).await.unwrap();
    assert_eq!(emu.ssh_key_names().len(), 1);
    // restart reboots the VM: booting, then active again.
    let api = b.api().unwrap();
    let r = api.restart(std::slice::from_ref(&got.nodes[0].instance_id)).await.unwrap();
    assert_eq!(r[0].status, "booting");
    b.wait_active(&api, std::slice::from_ref(&got.nodes[0].instance_id)).await.unwrap();
    b.terminate(&cluster_row("again", "d00d00d00d"), &[]).await.unwrap();

    assert!(emu.rejections().is_empty(), "requests the API would refuse: {:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), 0);
}

#[tokio::test]
async fn capacity_quota_and_auth_errors_are_classified_and_leave_nothing() {
    let emu = LambdaEmulator::start(LambdaEmulatorConfig::new("key-2", 251)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&emu, "key-2", dir.path()).await;
    let req = |region: &str| request("x", "abcdef0123", placement(region, "gpu_1x_a10"), 1);

    emu.fail_launches("us-east-1", LaunchFault::InsufficientCapacity);
    let e = b.provision(&req("us-east-1")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Capacity, Some(INSUFFICIENT_CAPACITY)), "{e}");

    emu.fail_launches("us-east-2", LaunchFault::QuotaExceeded);
    let e = b.provision(&req("us-east-2")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Quota, Some("global/quota-exceeded")), "{e}");

    // Not listed with capacity: refused before any launch call (launches are rate-limited).
    emu.set_capacity("gpu_1x_a10", &["us-west-1"]);
    let launches = emu.launches().len();
    let e = b.provision(&req("us-west-2")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Capacity, "{e}");
    assert!(e.to_string().contains("us-west-1"), "{e}");
    assert_eq!(emu.launches().len(), launches);

    let e = b.provision(&req_type(&b, "gpu_9x_nothing")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Invalid, "{e}");

    let wrong = backend(&emu, "not-the-key", dir.path()).await;
    let e = wrong.provision(&req("us-west-1")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Auth, Some("global/invalid-api-key")), "{e}");
    assert!(!e.to_string().contains("not-the-key"), "{e}");

    assert!(emu.instances().is_empty(), "{:?}", emu.instances());
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}

fn req_type(_b: &Lambda, t: &str) -> ProvisionRequest {
    request("x", "abcdef0123", placement("us-west-1", t), 1)
}

#[tokio::test]
async fn a_node_that_ends_while_booting_fails_the_launch_and_the_rest_is_terminated() {
    let mut cfg = LambdaEmulatorConfig::new("key-3", 252);
    cfg.boot_reads = 50;
    let emu = std::sync::Arc::new(LambdaEmulator::start(cfg).await);
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&emu, "key-3", dir.path()).await;
    let e2 = emu.clone();
    // Preempt the second node as soon as it exists (while the backend waits for `active`).
    let watcher = tokio::spawn(async move {
        loop {
            if let Some(v) = e2.instances().get(1) {
                e2.preempt(&v.id);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let e = b.provision(&request("p", "feedbeef00", placement("us-east-1", "gpu_1x_a10"), 2)).await.unwrap_err();
    watcher.await.unwrap();
    assert_eq!(e.class, ErrorClass::Capacity, "{e}");
    assert!(e.to_string().contains("preempted"), "{e}");
    let v = emu.instances();
    assert_eq!(v[0].status, "terminating", "{v:?}");
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}
