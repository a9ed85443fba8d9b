//! The VM: its create body (Microsoft.Compute 2024-07-01 `VirtualMachine_Create_WithSshAuthentication`
//! shape, with `priority: Spot`, `evictionPolicy: Delete` and `billingProfile.maxPrice: -1` for
//! spot), and what its instance view says.

use serde_json::{json, Value};

use crate::backend::{ErrorClass, NodeState, ProvisionError};

/// SkyPilot's default for Azure GPU VMs (Ubuntu 22.04 HPC with NVIDIA drivers, Gen2), and
/// Ubuntu 22.04 Gen2 for CPU VMs.
pub const GPU_IMAGE: &str = "microsoft-dsvm:ubuntu-hpc:2204:latest";
pub const CPU_IMAGE: &str = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest";
/// SkyPilot's default OS disk size.
pub const DEFAULT_DISK_GB: u32 = 256;
/// Azure's largest managed OS disk.
const MAX_OS_DISK_GB: u32 = 4095;

/// `imageReference` from a task's `image_id`: `publisher:offer:sku:version` (SkyPilot's form) or
/// an image resource id (`/subscriptions/…/images/…`, a gallery image version).
pub fn image_reference(image: &str) -> Result<Value, ProvisionError> {
    let image = image.trim();
    if image.starts_with("/subscriptions/") {
        return Ok(json!({"id": image}));
    }
    let parts: Vec<&str> = image.split(':').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(ProvisionError::new(
            ErrorClass::Invalid,
            format!("image_id {image:?}: Azure images are publisher:offer:sku:version or an image resource id"),
        ));
    }
    Ok(json!({"publisher": parts[0], "offer": parts[1], "sku": parts[2], "version": parts[3]}))
}

/// Everything a VM body is made of.
pub struct VmSpec<'a> {
    pub location: &'a str,
    pub tags: &'a Value,
    pub size: &'a str,
    pub image: Value,
    pub disk_gb: Option<u32>,
    pub computer_name: &'a str,
    pub admin_username: &'a str,
    pub public_key: &'a str,
    pub nic_id: &'a str,
    pub spot: bool,
}

/// The OS disk size: the task's `disk_size`, else the default, within Azure's range.
pub fn disk_gb(asked: Option<u32>) -> Result<u32, ProvisionError> {
    let disk = asked.unwrap_or(DEFAULT_DISK_GB);
    if disk == 0 || disk > MAX_OS_DISK_GB {
        return Err(ProvisionError::new(
            ErrorClass::Invalid,
            format!("resources.disk_size: {disk} GB is outside Azure's OS disk range 1–{MAX_OS_DISK_GB} GB"),
        ));
    }
    Ok(disk)
}

pub fn vm_body(s: &VmSpec<'_>) -> Result<Value, ProvisionError> {
    let disk = disk_gb(s.disk_gb)?;
    let mut props = json!({
        "hardwareProfile": {"vmSize": s.size},
        "storageProfile": {
            "imageReference": s.image,
            "osDisk": {"createOption": "FromImage", "diskSizeGB": disk, "deleteOption": "Delete",
                       "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}
        },
        "osProfile": {
            "computerName": s.computer_name,
            "adminUsername": s.admin_username,
            "linuxConfiguration": {
                "disablePasswordAuthentication": true,
                "ssh": {"publicKeys": [{
                    "path": format!("/home/{}/.ssh/authorized_keys", s.admin_username),
                    "keyData": s.public_key.trim()
                }]}
            }
        },
        "networkProfile": {"networkInterfaces": [{"id": s.nic_id, "properties": {"primary": true, "deleteOption": "Delete"}}]}
    });
    if s.spot {
        props["priority"] = json!("Spot");
        props["evictionPolicy"] = json!("Delete");
        // -1: never evicted for price, only for capacity (billed at most the on-demand price).
        props["billingProfile"] = json!({"maxPrice": -1});
    }
    Ok(json!({"location": s.location, "tags": s.tags, "properties": props}))
}

/// The codes of an instance view's `statuses`.
pub fn status_codes(view: &Value) -> Vec<String> {
    view.get("statuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.get("code").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A node's state from its VM's instance view (`None`: the VM is gone). A spot VM that is
/// deallocated or gone was evicted (skycat never stops spot VMs; they are made with
/// `evictionPolicy: Delete`, and a Deallocate-policy VM made elsewhere shows deallocated).
pub fn node_state(vm: &str, view: Option<&Value>, spot: bool) -> NodeState {
    let Some(view) = view else {
        return if spot {
            NodeState::Preempted { reason: format!("spot VM {vm} was evicted (deleted)") }
        } else {
            NodeState::Terminated { reason: Some(format!("VM {vm} not found")) }
        };
    };
    let codes = status_codes(view);
    if let Some(f) = codes.iter().find(|c| c.to_ascii_lowercase().starts_with("provisioningstate/failed")) {
        return NodeState::Terminated { reason: Some(format!("VM {vm}: {f}")) };
    }
    let power = codes.iter().find_map(|c| c.strip_prefix("PowerState/")).unwrap_or_default();
    match power {
        "running" => NodeState::Running,
        "starting" | "" => NodeState::Pending,
        "deallocated" | "deallocating" if spot => {
            NodeState::Preempted { reason: format!("spot VM {vm} was evicted (PowerState/{power})") }
        }
        "deallocated" | "deallocating" | "stopped" | "stopping" => {
            NodeState::Stopped { reason: Some(format!("PowerState/{power}")) }
        }
        other => NodeState::Terminated { reason: Some(format!("VM {vm}: PowerState/{other}")) },
    }
}
