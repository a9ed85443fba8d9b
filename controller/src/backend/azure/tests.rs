//! The Azure backend against the loopback EMULATION of ARM and the token endpoint
//! (skycat-testkit's `azure`): every PUT body it sends is schema-checked there, so a wrong field
//! fails here.

use std::time::Duration;

use super::*;
use crate::backend::{BackendContext, ErrorClass};
use crate::home::Home;
use crate::ssh::SshOptions;
use crate::store::Store;
use auth::{Credential, Secret};
use skycat_optimizer::Placement;
use skycat_testkit::azure::{AzureEmulator, AzureEmulatorConfig, Fault};

const SECRET: &str = "emulated~client.secret_0123456789";

fn arm(code: Option<&str>, status: Option<u16>) -> ArmError {
    ArmError { op: "PUT virtualMachines/x".into(), status, code: code.map(str::to_string), message: "m".into() }
}

#[test]
fn error_codes_are_classified() {
    let c = |code, status| classify(&arm(code, status)).class;
    for code in CAPACITY_CODES {
        assert_eq!(c(Some(code), Some(409)), ErrorClass::Capacity, "{code}");
        assert_eq!(c(Some(code), None), ErrorClass::Capacity, "{code} from an operation");
    }
    assert_eq!(c(Some("OperationNotAllowed"), Some(409)), ErrorClass::Quota);
    assert_eq!(c(Some("QuotaExceeded"), None), ErrorClass::Quota);
    assert_eq!(c(Some("InvalidAuthenticationToken"), Some(401)), ErrorClass::Auth);
    assert_eq!(c(Some("AuthorizationFailed"), Some(403)), ErrorClass::Auth);
    assert_eq!(c(Some("invalid_client"), Some(401)), ErrorClass::Auth);
    assert_eq!(c(Some("InvalidParameter"), Some(400)), ErrorClass::Invalid);
    assert_eq!(c(Some("InternalServerError"), Some(500)), ErrorClass::Transient);
    assert_eq!(c(None, Some(429)), ErrorClass::Transient);
    assert_eq!(c(None, Some(503)), ErrorClass::Transient);
    assert_eq!(c(None, Some(403)), ErrorClass::Auth);
    assert_eq!(c(None, None), ErrorClass::Transient);
}

#[test]
fn names_config_and_bodies() {
    assert_eq!(network::resource_group("web", "0123456789abcdef"), "skycat-web-01234567");
    assert_eq!(network::resource_group("a b/c", "0123"), "skycat-a-b-c-0123");
    assert!(network::resource_group(&"x".repeat(200), "0123456789").len() <= 90);
    assert_eq!(vm_name("0123456789abcdef", 2), "skycat-01234567-2");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yaml");
    let c = AzureConfig::load(&p).unwrap();
    assert_eq!((c.admin(), c.user()), ("azureuser".to_string(), "azureuser".to_string()));
    std::fs::write(&p, "lambda:\n  ssh_user: root\nazure:\n  ssh_user: root\n").unwrap();
    let c = AzureConfig::load(&p).unwrap();
    assert_eq!((c.admin(), c.user()), ("azureuser".to_string(), "root".to_string()));
    std::fs::write(&p, "azure:\n  admin_username: root\n").unwrap();
    let e = AzureConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("admin_username") && e.contains("\"root\"") && !e.contains('\n'), "{e}");
    std::fs::write(&p, "azure:\n  adminuser: x\n").unwrap();
    let e = AzureConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("adminuser") && e.contains("config.yaml") && !e.contains('\n'), "{e}");

    assert_eq!(vm::image_reference("Canonical:ubuntu-24_04-lts:server:latest").unwrap()["offer"], "ubuntu-24_04-lts");
    let image = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i";
    assert_eq!(vm::image_reference(image).unwrap()["id"], image);
    let e = vm::image_reference("ubuntu").unwrap_err();
    assert_eq!(e.class, ErrorClass::Invalid);
    assert!(e.to_string().contains("image_id"), "{e}");

    // The NSG: SSH first, then each port range once, with unique priorities.
    let nsg = network::nsg_body("eastus", &serde_json::json!({}), &[(8080, 8080), (22, 22), (8000, 8010), (8080, 8080)]);
    let rules = nsg["properties"]["securityRules"].as_array().unwrap();
    let got: Vec<(&str, i64)> =
        rules.iter().map(|r| (r["properties"]["destinationPortRange"].as_str().unwrap(), r["properties"]["priority"].as_i64().unwrap())).collect();
    assert_eq!(got, [("22", 100), ("8080", 110), ("8000-8010", 111)]);
}

#[test]
fn instance_views_map_to_node_states() {
    let view = |codes: &[&str]| serde_json::json!({"statuses": codes.iter().map(|c| serde_json::json!({"code": c})).collect::<Vec<_>>()});
    let ok = "ProvisioningState/succeeded";
    assert_eq!(vm::node_state("v", Some(&view(&[ok, "PowerState/running"])), false), NodeState::Running);
    assert_eq!(vm::node_state("v", Some(&view(&[ok, "PowerState/starting"])), false), NodeState::Pending);
    assert!(matches!(vm::node_state("v", Some(&view(&[ok, "PowerState/deallocated"])), false), NodeState::Stopped { .. }));
    assert!(matches!(vm::node_state("v", Some(&view(&[ok, "PowerState/deallocated"])), true), NodeState::Preempted { .. }));
    assert!(matches!(vm::node_state("v", None, true), NodeState::Preempted { .. }));
    assert!(matches!(vm::node_state("v", None, false), NodeState::Terminated { .. }));
    let failed = vm::node_state("v", Some(&view(&["ProvisioningState/failed/AllocationFailed"])), false);
    assert!(matches!(&failed, NodeState::Terminated { reason: Some(r) } if r.contains("AllocationFailed")), "{failed:?}");
}

fn placement(region: &str, size: &str, spot: bool) -> Placement {
    Placement {
        cloud: "azure".into(),
        region: region.into(),
        zone: None,
        instance_type: size.into(),
        vcpus: None,
        memory_gib: None,
        accelerator: Some("V100".into()),
        count: 1.0,
        use_spot: spot,
        hourly_price: 3.06,
        num_nodes: 1,
        hourly_total: 3.06,
        hours: 1.0,
        total_cost: 3.06,
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
        disk_size_gb: Some(1024),
        image_id: None,
        avoid_nodes: Vec::new(),
    }
}

fn cluster_row(name: &str, id: &str, spot: bool) -> ClusterRow {
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: "UP".into(),
        infra: "azure/eastus".into(),
        pool: String::new(),
        num_nodes: 1,
        price_per_hour: 3.06,
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
        instance_type: Some("Standard_NC6s_v3".into()),
        ports: Some("8888".into()),
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

fn api_for(emu: &AzureEmulator, secret: &str) -> AzureApi {
    let cred = Credential::ClientSecret { tenant: emu.tenant.clone(), client_id: emu.client_id.clone(), secret: Secret::new(secret) };
    AzureApi::new(&emu.url, &emu.url, &emu.subscription, cred)
        .unwrap()
        .with_timeouts(Duration::from_millis(50), Duration::from_secs(30))
}

async fn backend(emu: &AzureEmulator, secret: &str, home: &std::path::Path) -> Azure {
    let home = Home::at(home);
    let store = Store::open(&home.state_db()).await.unwrap();
    let cx = BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store };
    Azure::with_api(cx, api_for(emu, secret))
}

#[tokio::test]
async fn token_exchange_with_a_wrong_secret_is_refused_with_the_aadsts_error() {
    let emu = AzureEmulator::start(AzureEmulatorConfig::new(SECRET, 250)).await;
    let wrong = api_for(&emu, "not-the-secret");
    let e = wrong.subscription_info().await.unwrap_err();
    assert_eq!((e.code.as_deref(), e.status), (Some("invalid_client"), Some(401)), "{e}");
    assert!(e.message.starts_with("AADSTS7000215: Invalid client secret provided"), "{e}");
    assert!(!e.message.contains("Trace ID") && !e.to_string().contains("not-the-secret"), "{e}");
    assert_eq!(classify(&e).class, ErrorClass::Auth);
    assert!(!format!("{wrong:?}").contains("not-the-secret"));
    assert_eq!(emu.auth_failures(), 1);

    let right = api_for(&emu, SECRET);
    let sub = right.subscription_info().await.unwrap();
    assert_eq!(sub["subscriptionId"], emu.subscription.as_str());
    // A forged bearer is refused by ARM with its own error.
    let forged = AzureApi::new(&emu.url, &emu.url, &emu.subscription, Credential::Token(Secret::new("eyJforged"))).unwrap();
    let e = forged.subscription_info().await.unwrap_err();
    assert_eq!((e.code.as_deref(), e.status), (Some("InvalidAuthenticationToken"), Some(401)), "{e}");
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}

#[tokio::test]
async fn provision_stop_start_evict_and_terminate_on_the_emulator() {
    let emu = AzureEmulator::start(AzureEmulatorConfig::new(SECRET, 250)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&emu, SECRET, dir.path()).await;
    let id = "c0ffee00aa11bb22";

    let got = b.provision(&request("chat", id, placement("eastus", "Standard_NC6s_v3", false), 2)).await.unwrap();
    assert_eq!(got.nodes.len(), 2);
    assert!(emu.rejections().is_empty(), "requests ARM would refuse: {:?}", emu.rejections());
    assert_eq!(emu.resource_groups(), ["skycat-chat-c0ffee00"]);
    let vms = emu.vms();
    assert_eq!(vms.len(), 2);
    let (_, public) = crate::keys::ensure_ssh_key(&b.cx.home).unwrap();
    for (rank, n) in got.nodes.iter().enumerate() {
        let v = vms.iter().find(|v| v.id == n.instance_id).expect("the VM of the node");
        assert_eq!(v.name, format!("skycat-c0ffee00-{rank}"));
        assert_eq!((v.power.as_str(), v.provisioning.as_str(), v.spot), ("running", "Succeeded", false));
        assert_eq!(n.public_ip, v.public_ip);
        assert_eq!((n.target.port, n.target.user.as_str()), (22, "azureuser"));
        assert_eq!(v.ssh_keys, [public.trim()]);
        let props = &v.body["properties"];
        assert_eq!(props["storageProfile"]["osDisk"]["diskSizeGB"], 1024);
        assert_eq!(props["storageProfile"]["imageReference"]["publisher"], "microsoft-dsvm");
        assert_eq!(props["hardwareProfile"]["vmSize"], "Standard_NC6s_v3");
        assert!(props.get("priority").is_none() && props.get("evictionPolicy").is_none());
        assert!(n.private_ip.as_deref().is_some_and(|ip| ip.starts_with("10.243.250.")), "{n:?}");
    }
    let nsg = emu.network_resource("networkSecurityGroups/skycat-nsg").unwrap();
    let ports: Vec<&str> =
        nsg["properties"]["securityRules"].as_array().unwrap().iter().map(|r| r["properties"]["destinationPortRange"].as_str().unwrap()).collect();
    assert_eq!(ports, ["22", "8888"]);

    let c = cluster_row("chat", id, false);
    let rows: Vec<NodeRow> = got.nodes.iter().enumerate().map(|(r, n)| node_row(id, r as u32, n)).collect();
    assert_eq!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Running);
    assert!(b.cannot_stop(&c).is_none());
    b.stop(&c, &rows).await.unwrap();
    assert!(emu.vms().iter().all(|v| v.power == "deallocated"), "{:?}", emu.vms());
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Stopped { .. }));
    let again = b.start(&c, &rows).await.unwrap();
    assert_eq!(again.iter().map(|n| n.public_ip.clone()).collect::<Vec<_>>(), got.nodes.iter().map(|n| n.public_ip.clone()).collect::<Vec<_>>());
    assert!(emu.vms().iter().all(|v| v.power == "running"));
    b.open_ports(&c, &[(9000, 9001)]).await.unwrap();
    let nsg = emu.network_resource("networkSecurityGroups/skycat-nsg").unwrap();
    assert_eq!(nsg["properties"]["securityRules"].as_array().unwrap().len(), 3);

    b.terminate(&c, &rows).await.unwrap();
    assert!(emu.resource_groups().is_empty() && emu.vms().is_empty() && emu.network_resources().is_empty());
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Terminated { .. }));

    // Spot: the Spot fields are sent, stop is refused, an eviction (policy Delete) is a preemption.
    let sid = "5b0700aa11";
    let got = b.provision(&request("cheap", sid, placement("westus2", "Standard_NC6s_v3", true), 1)).await.unwrap();
    let v = emu.vms().pop().unwrap();
    assert_eq!(v.body["properties"]["priority"], "Spot");
    assert_eq!(v.body["properties"]["evictionPolicy"], "Delete");
    assert_eq!(v.body["properties"]["billingProfile"]["maxPrice"], -1);
    let c = cluster_row("cheap", sid, true);
    let rows = vec![node_row(sid, 0, &got.nodes[0])];
    assert!(b.cannot_stop(&c).unwrap().contains("skycat down cheap"));
    assert!(b.stop(&c, &rows).await.unwrap_err().to_string().contains("skycat down cheap"));
    assert!(emu.evict(&v.name));
    assert!(matches!(b.describe(&c, &rows[0]).await.unwrap(), NodeState::Preempted { .. }));
    b.terminate(&c, &rows).await.unwrap();
    assert!(emu.resource_groups().is_empty());

    assert!(emu.rejections().is_empty(), "requests ARM would refuse: {:?}", emu.rejections());
    assert_eq!(emu.auth_failures(), 0);
}

#[tokio::test]
async fn sync_and_async_capacity_errors_are_classified_and_leave_nothing() {
    let emu = AzureEmulator::start(AzureEmulatorConfig::new(SECRET, 251)).await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&emu, SECRET, dir.path()).await;
    let req = |region: &str| request("x", "abcdef0123", placement(region, "Standard_NC6s_v3", false), 1);

    emu.fail_region("eastus", Fault::SkuNotAvailable);
    let e = b.provision(&req("eastus")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Capacity, Some("SkuNotAvailable")), "{e}");
    assert!(emu.resource_groups().is_empty() && emu.network_resources().is_empty());

    emu.fail_region("westus2", Fault::AllocationFailed);
    let e = b.provision(&req("westus2")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Capacity, Some("AllocationFailed")), "{e}");
    assert!(e.to_string().contains("sufficient capacity"), "{e}");
    assert!(emu.resource_groups().is_empty() && emu.vms().is_empty(), "the failed VM's group is deleted: {:?}", emu.vms());

    emu.fail_region("southcentralus", Fault::ZonalAllocationFailed);
    let e = b.provision(&req("southcentralus")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Capacity, Some("ZonalAllocationFailed")), "{e}");

    emu.fail_region("eastus2", Fault::Quota);
    let e = b.provision(&req("eastus2")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Quota, Some("OperationNotAllowed")), "{e}");
    assert!(e.to_string().contains("quota"), "{e}");

    let puts: Vec<(String, Result<String, String>)> = emu.vm_puts().into_iter().map(|p| (p.location, p.outcome)).collect();
    assert_eq!(puts.len(), 4, "{puts:?}");
    assert!(puts.iter().all(|p| p.1.is_err()), "{puts:?}");

    // Bad input is one clear error, before any call.
    let mut bad = req("westeurope");
    bad.disk_size_gb = Some(9000);
    emu.clear_faults();
    let e = b.provision(&bad).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Invalid);
    assert!(e.to_string().contains("disk_size"), "{e}");

    let wrong = backend(&emu, "nope", dir.path()).await;
    let e = wrong.provision(&req("westeurope")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Auth, Some("invalid_client")), "{e}");
    assert!(emu.resource_groups().is_empty() && emu.vms().is_empty() && emu.network_resources().is_empty());
    assert!(emu.rejections().is_empty(), "{:?}", emu.rejections());
}
