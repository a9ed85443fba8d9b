//! The GCP backend against the loopback EMULATION of the Compute API v1 and Google's token
//! endpoint (skycat-testkit's `gcp`): every request body is schema-checked there, so a wrong field
//! fails here.

use super::auth::{Credentials, Secret, ServiceAccountKey};
use super::*;
use crate::backend::{BackendContext, ErrorClass};
use crate::home::Home;
use crate::ssh::SshOptions;
use crate::store::Store;
use skycat_optimizer::Placement;
use skycat_testkit::gcp::token::key_file_json;
use skycat_testkit::gcp::{schema, Delivery, GcpEmulator, GcpEmulatorConfig, InsertFault, ServiceAccount, TEST_ONLY_KEY_1, TEST_ONLY_KEY_2};

const PROJECT: &str = "skycat-emulated";
const TOKEN: &str = "ya29.static-test-token";
const SA_EMAIL: &str = "skycat-test@skycat-emulated.iam.gserviceaccount.com";

fn placement(zone: &str, instance_type: &str, gpu: Option<(&str, f64)>, spot: bool) -> Placement {
    Placement {
        cloud: "gcp".into(),
        region: zone.rsplit_once('-').map(|r| r.0).unwrap_or(zone).into(),
        zone: Some(zone.into()),
        instance_type: instance_type.into(),
        vcpus: None,
        memory_gib: None,
        accelerator: gpu.map(|g| g.0.to_string()),
        count: gpu.map(|g| g.1).unwrap_or(0.0),
        use_spot: spot,
        hourly_price: 1.0,
        num_nodes: 1,
        hourly_total: 1.0,
        hours: 1.0,
        total_cost: 1.0,
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
        ports: vec![(8888, 8888)],
        disk_size_gb: Some(120),
        image_id: None,
        avoid_nodes: Vec::new(),
    }
}

fn cluster_row(name: &str, id: &str, zone: &str, spot: bool) -> ClusterRow {
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: "UP".into(),
        infra: format!("gcp/{}/{zone}", zone.rsplit_once('-').map(|r| r.0).unwrap_or(zone)),
        pool: String::new(),
        num_nodes: 1,
        price_per_hour: 1.0,
        spot,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: String::new(),
        updated_at: String::new(),
        terminated_at: None,
        instance_type: Some("n1-standard-8".into()),
        ports: None,
    }
}

fn node_row(cluster_id: &str, rank: u32, n: &ProvisionedNode) -> NodeRow {
    NodeRow {
        cluster_id: cluster_id.into(),
        rank,
        instance_id: Some(n.instance_id.clone()),
        node_id: n.instance_id.clone(),
        zone: n.zone.clone(),
        ..crate::lifecycle::node_at("", &n.target)
    }
}

async fn backend(api: ComputeApi, home: &std::path::Path) -> Gcp {
    let home = Home::at(home);
    let store = Store::open(&home.state_db()).await.unwrap();
    let cx = BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store };
    Gcp::with_api(cx, api)
}

fn token_api(emu: &GcpEmulator, token: &str) -> ComputeApi {
    ComputeApi::new(&emu.url, PROJECT, Credentials::Token(Secret::new(token))).unwrap()
}

fn key_api(emu: &GcpEmulator, dir: &std::path::Path, pem: &str) -> ComputeApi {
    let path = dir.join("sa.json");
    std::fs::write(&path, key_file_json(PROJECT, SA_EMAIL, "kid-1", pem, &emu.token_url)).unwrap();
    let key = ServiceAccountKey::load(&path).unwrap();
    ComputeApi::new(&emu.url, PROJECT, Credentials::service_account(key, path)).unwrap()
}

fn config(net: u8) -> GcpEmulatorConfig {
    let mut cfg = GcpEmulatorConfig::new(PROJECT, TOKEN, net);
    cfg.service_account = Some(ServiceAccount::for_key(SA_EMAIL, "kid-1", TEST_ONLY_KEY_1));
    cfg
}

#[test]
fn error_codes_are_classified() {
    let e = |code: Option<&str>, status: Option<u16>| GcpError { op: "x".into(), status, code: code.map(str::to_string), message: "m".into() };
    let c = |code, status| classify(&e(code, status)).class;
    assert_eq!(c(Some("ZONE_RESOURCE_POOL_EXHAUSTED"), Some(503)), ErrorClass::Capacity);
    assert_eq!(c(Some("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"), None), ErrorClass::Capacity);
    assert_eq!(c(Some("UNSUPPORTED_OPERATION"), Some(400)), ErrorClass::Capacity);
    assert_eq!(c(Some("QUOTA_EXCEEDED"), Some(403)), ErrorClass::Quota);
    assert_eq!(c(Some("quotaExceeded"), Some(403)), ErrorClass::Quota);
    assert_eq!(c(Some("authError"), Some(401)), ErrorClass::Auth);
    assert_eq!(c(Some("invalid_grant"), Some(400)), ErrorClass::Auth);
    assert_eq!(c(Some("forbidden"), Some(403)), ErrorClass::Auth);
    assert_eq!(c(Some("rateLimitExceeded"), Some(403)), ErrorClass::Transient);
    assert_eq!(c(Some("notFound"), Some(404)), ErrorClass::Invalid);
    assert_eq!(c(Some("invalid"), Some(400)), ErrorClass::Invalid);
    assert_eq!(c(None, Some(502)), ErrorClass::Transient);
    assert_eq!(c(None, None), ErrorClass::Transient);
}

#[test]
fn names_tags_and_bodies() {
    assert_eq!(node_name("My_Cluster", "0123456789abcdef", 2), "skycat-01234567-2-my-cluster");
    let long = node_name(&"x".repeat(80), "0123456789abcdef", 3);
    assert!(long.len() <= 63 && long.starts_with("skycat-01234567-3-"), "{long}");
    assert_eq!(cluster_tag("0123456789abcdef"), "skycat-01234567");
    assert_eq!(firewall_name("0123456789abcdef"), "skycat-01234567-allow");

    let cfg = GcpConfig::default();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests me@host";
    // N1 + V100 on Spot: attached GPU, SPOT, TERMINATE, no restart.
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "n1-standard-8", Some(("V100", 1.0)), true), 1);
    let b = insert_body(&req, &cfg, "us-central1-a", 0, "gcpuser", key).unwrap();
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["guestAccelerators"], serde_json::json!([{"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-v100", "acceleratorCount": 1}]));
    assert_eq!(
        v["scheduling"],
        serde_json::json!({"onHostMaintenance": "TERMINATE", "automaticRestart": false, "provisioningModel": "SPOT", "instanceTerminationAction": "STOP"})
    );
    assert_eq!(v["disks"][0]["initializeParams"]["diskSizeGb"], "120");
    assert_eq!(v["metadata"]["items"][0]["value"], "gcpuser:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests skycat");
    assert!(schema::instance_insert(&v, "us-central1-a").is_ok());
    // A2 carries its GPUs: none attached, still TERMINATE.
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "a2-highgpu-1g", Some(("A100", 1.0)), false), 1);
    let v = serde_json::to_value(insert_body(&req, &cfg, "us-central1-a", 0, "u", key).unwrap()).unwrap();
    assert!(v.get("guestAccelerators").is_none(), "{v}");
    assert_eq!(v["scheduling"]["onHostMaintenance"], "TERMINATE");
    // CPU only: live migration.
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "n2-standard-4", None, false), 1);
    let v = serde_json::to_value(insert_body(&req, &cfg, "us-central1-a", 0, "u", key).unwrap()).unwrap();
    assert_eq!(v["scheduling"]["onHostMaintenance"], "MIGRATE");
    // Not launchable: a TPU slice, an L4 on N1 — one line naming what is wrong.
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "tpu-v4-8", Some(("tpu-v4", 8.0)), false), 1);
    let e = insert_body(&req, &cfg, "us-central1-a", 0, "u", key).unwrap_err();
    assert!(e.to_string().contains("tpu-v4-8") && e.class == ErrorClass::Invalid, "{e}");
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "n1-standard-8", Some(("L4", 1.0)), false), 1);
    let e = insert_body(&req, &cfg, "us-central1-a", 0, "u", key).unwrap_err().to_string();
    assert!(e.contains("L4") && e.contains("N1") && !e.contains('\n'), "{e}");

    // The emulator's schema is strict: an unknown field, a GPU with live migration, a bad enum.
    let mut bad = v.clone();
    bad["bootDiskSizeGb"] = serde_json::json!(100);
    assert!(schema::instance_insert(&bad, "us-central1-a").unwrap_err().contains("bootDiskSizeGb"));
    let req = request("c", "0123456789abcdef", placement("us-central1-a", "n1-standard-8", Some(("T4", 1.0)), false), 1);
    let mut bad = serde_json::to_value(insert_body(&req, &cfg, "us-central1-a", 0, "u", key).unwrap()).unwrap();
    bad["scheduling"]["onHostMaintenance"] = "MIGRATE".into();
    assert!(schema::instance_insert(&bad, "us-central1-a").unwrap_err().contains("live migration"));
    bad["scheduling"]["provisioningModel"] = "CHEAP".into();
    assert!(schema::instance_insert(&bad, "us-central1-a").unwrap_err().contains("provisioningModel"));
    assert!(schema::instance_insert(&v, "us-east1-b").unwrap_err().contains("zone us-east1-b"));
}

#[test]
fn config_section() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yaml");
    assert_eq!(GcpConfig::load(&p).unwrap().user(), "gcpuser");
    std::fs::write(&p, "lambda:\n  ssh_user: x\ngcp:\n  ssh_user: root\n  project: my-project-1\n").unwrap();
    let c = GcpConfig::load(&p).unwrap();
    assert_eq!((c.user().as_str(), c.project.as_deref()), ("root", Some("my-project-1")));
    std::fs::write(&p, "gcp:\n  projct: x\n").unwrap();
    let e = GcpConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("projct") && e.contains("config.yaml"), "{e}");
}

#[tokio::test]
async fn service_account_tokens_are_exchanged_and_a_wrong_signature_is_refused() {
    let emu = GcpEmulator::start(config(241)).await;
    let dir = tempfile::tempdir().unwrap();

    // The right key: a token is issued and used for every call of a whole launch and down.
    let b = backend(key_api(&emu, dir.path(), TEST_ONLY_KEY_1), dir.path()).await;
    let id = "aa00bb11cc22dd33";
    let got = b.provision(&request("sa", id, placement("us-central1-a", "n1-standard-4", None, false), 1)).await.unwrap();
    assert_eq!(got.nodes.len(), 1);
    assert_eq!(emu.tokens_issued(), 1, "the token is cached across calls");
    b.terminate(&cluster_row("sa", id, "us-central1-a", false), &[]).await.unwrap();
    assert!(emu.instances().is_empty() && emu.firewalls().is_empty());

    // Key 2 under the same account: the endpoint refuses the signature; nothing is created and
    // the whole cloud is blocked (auth).
    let dir2 = tempfile::tempdir().unwrap();
    let b = backend(key_api(&emu, dir2.path(), TEST_ONLY_KEY_2), dir2.path()).await;
    let e = b.provision(&request("sa", id, placement("us-central1-a", "n1-standard-4", None, false), 1)).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Auth, Some("invalid_grant")), "{e}");
    assert!(e.to_string().contains("Invalid JWT Signature."), "{e}");
    assert!(!e.to_string().contains("BEGIN PRIVATE KEY"), "{e}");
    assert_eq!(emu.token_refusals(), vec!["Invalid JWT Signature.".to_string()]);
    assert_eq!(emu.tokens_issued(), 1);

    // A wrong bearer: Google's 401 authError, never echoed.
    let b = backend(token_api(&emu, "ya29.not-the-token"), dir.path()).await;
    let e = b.provision(&request("t", id, placement("us-central1-a", "n1-standard-4", None, false), 1)).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Auth, Some("authError")), "{e}");
    assert!(!e.to_string().contains("not-the-token"), "{e}");
    assert!(emu.auth_failures() >= 1);
    assert!(emu.instances().is_empty() && emu.firewalls().is_empty());
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}

#[tokio::test]
async fn capacity_and_quota_errors_from_both_paths_leave_nothing() {
    let emu = GcpEmulator::start(config(242)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(token_api(&emu, TOKEN), dir.path()).await;
    let req = |zone: &str| request("x", "abcdef0123456789", placement(zone, "n1-standard-8", Some(("T4", 1.0)), false), 2);
    let cases = [
        ("us-central1-a", InsertFault::ZoneResourcePoolExhausted, Delivery::Sync, ErrorClass::Capacity),
        ("us-central1-b", InsertFault::ZoneResourcePoolExhaustedWithDetails, Delivery::Operation, ErrorClass::Capacity),
        ("us-central1-c", InsertFault::UnsupportedOperation, Delivery::Operation, ErrorClass::Capacity),
        ("us-east1-b", InsertFault::QuotaExceeded, Delivery::Sync, ErrorClass::Quota),
        ("us-east1-c", InsertFault::QuotaExceeded, Delivery::Operation, ErrorClass::Quota),
    ];
    for (zone, fault, how, class) in cases {
        emu.fail_inserts(zone, fault, how);
        let e = b.provision(&req(zone)).await.unwrap_err();
        assert_eq!(e.class, class, "{zone} {fault:?} {how:?}: {e}");
        let want = if how == Delivery::Sync && fault == InsertFault::QuotaExceeded { "quotaExceeded" } else { fault.code() };
        assert_eq!(e.code.as_deref(), Some(want), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(emu.instances().is_empty(), "{zone}: {:?}", emu.instances());
        assert!(emu.firewalls().is_empty(), "{zone}: the cluster's firewall rule is deleted after a failed launch");
    }
    // Both nodes were tried on the operation path (each insert answered an operation).
    assert_eq!(emu.inserts().iter().filter(|i| i.zone == "us-central1-b").count(), 2);
    emu.clear_faults();
    let got = b.provision(&req("us-central1-a")).await.unwrap();
    assert_eq!(got.nodes.len(), 2);
    b.terminate(&cluster_row("x", "abcdef0123456789", "us-central1-a", false), &[]).await.unwrap();
    assert!(emu.instances().is_empty() && emu.firewalls().is_empty());
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}

#[tokio::test]
async fn launch_stop_start_preempt_and_terminate() {
    let emu = GcpEmulator::start(config(243)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(token_api(&emu, TOKEN), dir.path()).await;
    let id = "c0ffee00aa11bb22";
    let zone = "europe-west4-a";

    let got = b.provision(&request("train", id, placement(zone, "n1-standard-8", Some(("V100", 1.0)), true), 1)).await.unwrap();
    let v = &emu.instances()[0];
    let n = &got.nodes[0];
    assert_eq!((n.instance_id.as_str(), n.zone.as_deref()), ("skycat-c0ffee00-0-train", Some(zone)));
    assert_eq!(n.public_ip.as_deref(), Some(v.nat_ip.as_str()));
    assert_eq!(n.private_ip.as_deref(), Some(v.network_ip.as_str()));
    assert_eq!((n.target.host.as_str(), n.target.port, n.target.user.as_str()), (v.nat_ip.as_str(), 22, "gcpuser"));
    let (_, public) = crate::keys::ensure_ssh_key(&b.cx.home).unwrap();
    assert_eq!(v.ssh_keys, vec![public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")]);
    assert!(v.spot && v.tags == vec!["skycat-c0ffee00".to_string()]);
    assert_eq!(v.labels.get(CLUSTER_LABEL).map(String::as_str), Some(id));
    let fw = &emu.firewalls()["skycat-c0ffee00-allow"];
    assert_eq!(fw["allowed"], serde_json::json!([{"IPProtocol": "tcp", "ports": ["22", "8888"]}]));
    assert_eq!(fw["targetTags"], serde_json::json!(["skycat-c0ffee00"]));

    let c = cluster_row("train", id, zone, true);
    let rows = vec![node_row(id, 0, n)];
    assert_eq!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Running);

    // open_ports widens the one rule.
    b.open_ports(&c, &[(9000, 9010)]).await.unwrap();
    assert_eq!(emu.firewalls()["skycat-c0ffee00-allow"]["allowed"][0]["ports"], serde_json::json!(["22", "8888", "9000-9010"]));

    // stop → TERMINATED (a stop is not a preemption: no system event); start → a new natIP.
    b.stop(&c, &rows).await.unwrap();
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Stopped { .. }));
    let back = b.start(&c, &rows).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_ne!(back[0].public_ip, n.public_ip, "start gives the VM a new ephemeral natIP");
    assert_eq!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Running);

    // GCP takes the Spot VM back.
    assert!(emu.preempt(zone, &n.instance_id));
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Preempted { .. }));

    // down lists the cluster by label (no rows needed) and removes the rule too.
    b.terminate(&c, &[]).await.unwrap();
    assert!(emu.instances().is_empty(), "{:?}", emu.instances());
    assert!(emu.firewalls().is_empty());
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Preempted { .. }), "the preemption is still on record");
    let c2 = cluster_row("train", id, zone, false);
    assert!(matches!(b.describe(&c2, &rows[0]).await.unwrap(), NodeState::Terminated { .. }));
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), 0);
}

#[tokio::test]
async fn a_vm_preempted_while_booting_fails_the_launch_and_is_deleted() {
    let emu = GcpEmulator::start(config(244)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(token_api(&emu, TOKEN), dir.path()).await;
    emu.preempt_while_booting("us-west1-b");
    let e = b.provision(&request("p", "feedbeef00000000", placement("us-west1-b", "g2-standard-8", Some(("L4", 1.0)), true), 1)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Capacity, "{e}");
    assert!(e.to_string().contains("TERMINATED"), "{e}");
    assert!(emu.instances().is_empty(), "the half-created VM is deleted: {:?}", emu.instances());
    assert!(emu.firewalls().is_empty());
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}
