//! The data plane of the AWS tests: moto is the control plane, and every instance that reaches
//! `running` in moto gets a network-namespace sshd host at the instance's private IP, accepting
//! the key pair the instance was launched with (read back from moto). The VPC and subnets are
//! created in moto inside the test's own range (10.232.0.0/16 and up), so nothing dials any
//! other address: moto's default VPC (172.31.0.0/16) is never used.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

use super::TestHosts;

/// An EC2 client for `region` against `url` (moto), with fake credentials.
pub async fn ec2(url: &str, region: &str) -> Client {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "skycat-tests");
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(creds)
        .build();
    Client::from_conf(conf)
}

/// Creates VPC `name` with CIDR `10.<second>.0.0/16` in `region` and one /24 subnet per zone
/// (`10.<second>.<k>.0/24`). Returns zone name → subnet CIDR.
pub async fn make_vpc(c: &Client, name: &str, second: u8) -> BTreeMap<String, String> {
    let vpc = c
        .create_vpc()
        .cidr_block(format!("10.{second}.0.0/16"))
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Vpc).tags(Tag::builder().key("Name").value(name).build()).build(),
        )
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let zones = c.describe_availability_zones().send().await.expect("DescribeAvailabilityZones");
    let mut out = BTreeMap::new();
    for (k, z) in zones.availability_zones().iter().enumerate() {
        let zone = z.zone_name().expect("zone name").to_string();
        let cidr = format!("10.{second}.{}.0/24", k + 1);
        c.create_subnet().vpc_id(&vpc_id).cidr_block(&cidr).availability_zone(&zone).send().await.expect("CreateSubnet");
        out.insert(zone, cidr);
    }
    out
}

/// Instances (id → (state, private ip, zone)) of a region.
pub async fn instances(c: &Client) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    let Ok(r) = c.describe_instances().send().await else { return out };
    for res in r.reservations() {
        for i in res.instances() {
            let id = i.instance_id().unwrap_or_default().to_string();
            let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
            let zone = i.placement().and_then(|p| p.availability_zone()).map(str::to_string);
            out.insert(id, (state, i.private_ip_address().map(str::to_string), zone));
        }
    }
    out
}

/// Brings up a host for every running instance of the watched regions, until dropped.
pub struct InstanceHosts {
    pub hosts: Arc<TestHosts>,
    /// instance id → (host index, private ip).
    pub up: Arc<Mutex<BTreeMap<String, (u32, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InstanceHosts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InstanceHosts {
    pub fn watch(hosts: Arc<TestHosts>, clients: Vec<Client>) -> InstanceHosts {
        let up: Arc<Mutex<BTreeMap<String, (u32, String)>>> = Arc::default();
        let (h, u) = (hosts.clone(), up.clone());
        let task = tokio::spawn(async move {
            let mut next = 1u32;
            loop {
                for c in &clients {
                    for (id, (state, ip, _)) in instances(c).await {
                        let Some(ip) = ip.filter(|_| state == "running") else { continue };
                        if u.lock().unwrap().contains_key(&id) {
                            continue;
                        }
                        // moto hands a terminated instance's address to the next one: the old
                        // host (cut off, preempted) goes first.
                        let stale: Vec<(String, u32)> =
                            u.lock().unwrap().iter().filter(|(_, v)| v.1 == ip).map(|(k, v)| (k.clone(), v.0)).collect();
                        for (old_id, old_i) in stale {
                            let hh = h.clone();
                            tokio::task::spawn_blocking(move || hh.script(&["rm", &old_i.to_string()])).await.expect("rm");
                            u.lock().unwrap().insert(old_id, (old_i, String::new()));
                        }
                        authorize_key_of(c, &id, &h).await;
                        let i = next;
                        next += 1;
                        // Host side of host i: 10.230.<net>.<i>, unique per host.
                        let hip = format!("10.230.{}.{i}", h.net());
                        let hh = h.clone();
                        let ip2 = ip.clone();
                        tokio::task::spawn_blocking(move || hh.script(&["up-at", &i.to_string(), &ip2, &hip]))
                            .await
                            .expect("up-at");
                        u.lock().unwrap().insert(id, (i, ip));
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        InstanceHosts { hosts, up, task }
    }

    /// The host index serving an instance, once it is up.
    pub fn host_of(&self, instance: &str) -> Option<u32> {
        self.up.lock().unwrap().get(instance).map(|x| x.0)
    }
}

/// Appends the public key of the instance's key pair (as moto holds it) to the hosts'
/// authorized_keys.
async fn authorize_key_of(c: &Client, instance: &str, hosts: &TestHosts) {
    let r = c.describe_instances().instance_ids(instance).send().await.expect("DescribeInstances");
    let key_name = r.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.key_name().map(str::to_string));
    let Some(key_name) = key_name else { return };
    let kp = c
        .describe_key_pairs()
        .filters(Filter::builder().name("key-name").values(&key_name).build())
        .include_public_key(true)
        .send()
        .await
        .expect("DescribeKeyPairs");
    let public = kp.key_pairs().iter().find_map(|k| k.public_key().map(str::to_string)).expect("moto keeps the imported public key");
    hosts.authorize(&public);
}
