//! What a cluster's nodes need on the network, as ARM request bodies (Microsoft.Resources
//! 2024-03-01, Microsoft.Network 2024-05-01): the cluster's resource group, one VNet with one
//! subnet, one NSG allowing SSH and the task's ports, and per node a Standard static public IP
//! and a NIC that references the subnet, the NSG and the IP. Only the fields the published
//! `…/examples/*Create.json` bodies use are sent.

use serde_json::{json, Value};

use crate::backend::fmt_port_range;

pub const VNET: &str = "skycat-vnet";
pub const SUBNET: &str = "default";
pub const NSG: &str = "skycat-nsg";
/// First priority of the task's port rules (SSH has 100). Azure allows 100–4096, unique.
const FIRST_PORT_PRIORITY: u32 = 110;

/// The cluster's resource group: `skycat-<cluster>-<id8>`, cut to ARM's 90 characters, with the
/// characters resource group names allow (letters, digits, `-_.()`; not ending in `.`).
pub fn resource_group(cluster: &str, cluster_id: &str) -> String {
    let id8 = &cluster_id[..cluster_id.len().min(8)];
    let clean: String =
        cluster.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.()".contains(c) { c } else { '-' }).collect();
    let mut name = format!("skycat-{}-{id8}", clean.chars().take(90 - 16).collect::<String>());
    while name.ends_with('.') {
        name.pop();
    }
    name
}

pub fn public_ip_name(rank: u32) -> String {
    format!("skycat-{rank}-ip")
}

pub fn nic_name(rank: u32) -> String {
    format!("skycat-{rank}-nic")
}

/// Tags that say which skycat cluster a resource belongs to.
pub fn tags(cluster: &str, cluster_id: &str) -> Value {
    json!({"skycat-cluster": cluster, "skycat-cluster-id": cluster_id})
}

pub fn resource_group_body(location: &str, tags: &Value) -> Value {
    json!({"location": location, "tags": tags})
}

pub fn vnet_body(location: &str, tags: &Value) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": SUBNET, "properties": {"addressPrefix": "10.0.0.0/20"}}]
        }
    })
}

/// Inbound allow rules: SSH at priority 100, then one rule per port range.
pub fn nsg_body(location: &str, tags: &Value, ports: &[(u16, u16)]) -> Value {
    let rule = |name: String, port: String, priority: u32| {
        json!({"name": name, "properties": {
            "protocol": "Tcp", "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": port,
            "access": "Allow", "priority": priority, "direction": "Inbound"}})
    };
    let mut rules = vec![rule("skycat-ssh".into(), "22".into(), 100)];
    let mut seen = vec![(22, 22)];
    for r in ports {
        if seen.contains(r) {
            continue;
        }
        let priority = FIRST_PORT_PRIORITY + seen.len() as u32 - 1;
        seen.push(*r);
        let p = fmt_port_range(*r);
        rules.push(rule(format!("skycat-port-{p}"), p, priority));
    }
    json!({"location": location, "tags": tags, "properties": {"securityRules": rules}})
}

pub fn public_ip_body(location: &str, tags: &Value) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}
    })
}

pub fn nic_body(location: &str, tags: &Value, subnet_id: &str, nsg_id: &str, ip_id: &str) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "networkSecurityGroup": {"id": nsg_id},
            "ipConfigurations": [{"name": "ipconfig1", "properties": {
                "privateIPAllocationMethod": "Dynamic",
                "subnet": {"id": subnet_id},
                "publicIPAddress": {"id": ip_id}
            }}]
        }
    })
}

/// A public IP resource's address, once assigned.
pub fn ip_address(ip: &Value) -> Option<String> {
    ip.pointer("/properties/ipAddress").and_then(Value::as_str).map(str::to_string)
}

/// A NIC's first private address.
pub fn private_ip(nic: &Value) -> Option<String> {
    nic.pointer("/properties/ipConfigurations/0/properties/privateIPAddress").and_then(Value::as_str).map(str::to_string)
}
