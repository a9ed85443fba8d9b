//! Azure as a backend, over Azure Resource Manager REST ([`api`], tokens from [`auth`]). A
//! launch, in order: `PUT` the cluster's resource group (`skycat-<cluster>-<id8>`, in the planned
//! region); in it a VNet with one subnet, an NSG allowing SSH and the task's ports, and per node a
//! Standard static public IP, a NIC and the VM (`PUT …/virtualMachines/skycat-<id8>-<rank>`, spot
//! with `priority: Spot`, `evictionPolicy: Delete`, `maxPrice: -1`), each PUT followed to the end
//! of its long-running operation; then `GET …/instanceView` until `PowerState/running`. The
//! controller reaches the nodes over SSH at their public IPs.
//!
//! `stop` deallocates (compute billing stops, the disk and the static IP stay), `start` starts;
//! spot clusters are not stopped (as SkyPilot refuses): `skycat down` instead. `down` deletes the
//! whole resource group, so nothing of the cluster is left. A failed launch deletes it too.
//!
//! Errors by ARM's `error.code`, from the PUT's answer or the operation's: `SkuNotAvailable`,
//! `AllocationFailed`, `ZonalAllocationFailed` and `Overconstrained…` are capacity (the region is
//! blocked, the walk moves on), `OperationNotAllowed` / `QuotaExceeded` quota, auth codes
//! (`AuthenticationFailed`, `InvalidAuthenticationToken`, `AuthorizationFailed`, AAD's
//! `invalid_client`…) block the cloud, 429 and 5xx are transient. Eviction: a spot VM whose
//! instance view shows `PowerState/deallocated`, or that is gone, was preempted.
//!
//! `$SKYCAT_HOME/config.yaml`:
//! ```yaml
//! azure:
//!   admin_username: azureuser  # the VM's adminUsername (default azureuser)
//!   ssh_user: azureuser        # who skycat logs in as (default: admin_username; an image that
//!                              # sets up another login user, e.g. root, says so here)
//! ```
//! Endpoints `SKYCAT_AZURE_MANAGEMENT_ENDPOINT` (ARM), `SKYCAT_AZURE_LOGIN_ENDPOINT` or
//! `AZURE_AUTHORITY_HOST` (login) — the variables `skycat check azure` and the price fetcher use.
//! Credentials: `AZURE_SUBSCRIPTION_ID` with `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`
//! (or `AZURE_ACCESS_TOKEN`).

pub mod api;
pub mod auth;
pub mod network;
pub mod vm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow};
use api::{ArmError, AzureApi, COMPUTE_API, NETWORK_API, RESOURCES_API};

/// Names Azure refuses as `adminUsername` (Compute's `InvalidParameter` list).
const RESERVED_USERS: &[&str] = &[
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root",
    "server", "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5",
];

/// The `azure:` section of `$SKYCAT_HOME/config.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    #[serde(default)]
    pub admin_username: Option<String>,
    #[serde(default)]
    pub ssh_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    azure: Option<AzureConfig>,
}

impl AzureConfig {
    /// Reads the `azure:` section (missing file or section: defaults); an unknown key or a name
    /// Azure refuses is an error naming the file and the key.
    pub fn load(path: &std::path::Path) -> Result<AzureConfig, ProvisionError> {
        let bad = |m: String| ProvisionError::new(ErrorClass::Invalid, format!("{}: azure: {m}", path.display()));
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AzureConfig::default()),
            Err(e) => return Err(ProvisionError::new(ErrorClass::Invalid, format!("{}: {e}", path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(AzureConfig::default());
        }
        let f: ConfigFile = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string().replace('\n', " ")))?;
        let c = f.azure.unwrap_or_default();
        let admin = c.admin();
        let valid = !admin.is_empty()
            && admin.len() <= 64
            && admin.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            && !admin.starts_with('-');
        if !valid || RESERVED_USERS.contains(&admin.to_ascii_lowercase().as_str()) {
            return Err(bad(format!("admin_username {admin:?} is not allowed by Azure (reserved, or not 1–64 letters, digits, - and _)")));
        }
        Ok(c)
    }

    pub fn admin(&self) -> String {
        self.admin_username.clone().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).unwrap_or_else(|| "azureuser".into())
    }

    pub fn user(&self) -> String {
        self.ssh_user.clone().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).unwrap_or_else(|| self.admin())
    }
}

/// Capacity codes (sync 409 or in a failed operation).
pub const CAPACITY_CODES: &[&str] = &[
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
];

/// Maps an ARM or login error to a class, by code, else by HTTP status.
pub fn classify(e: &ArmError) -> ProvisionError {
    let code = e.code.as_deref().unwrap_or_default();
    let class = match (code, e.status) {
        (_, Some(429)) => ErrorClass::Transient,
        (c, _) if CAPACITY_CODES.contains(&c) => ErrorClass::Capacity,
        ("OperationNotAllowed" | "QuotaExceeded", _) => ErrorClass::Quota,
        (
            "AuthenticationFailed" | "InvalidAuthenticationToken" | "InvalidAuthenticationTokenTenant"
            | "ExpiredAuthenticationToken" | "AuthorizationFailed" | "SubscriptionNotFound" | "invalid_client"
            | "unauthorized_client" | "invalid_tenant" | "invalid_grant",
            _,
        ) => ErrorClass::Auth,
        ("InternalServerError" | "InternalExecutionError" | "RetryableError" | "TooManyRequests", _) => ErrorClass::Transient,
        ("", Some(401 | 403)) => ErrorClass::Auth,
        (_, Some(s)) if s >= 500 => ErrorClass::Transient,
        ("", None) if e.op == "credentials" || e.op == api::SUBSCRIPTION_VAR => ErrorClass::Auth,
        // A malformed endpoint variable: fixing the configuration is the only way out.
        ("", None) if e.op.starts_with("SKYCAT_AZURE_") => ErrorClass::Invalid,
        ("", None) => ErrorClass::Transient,
        _ => ErrorClass::Invalid,
    };
    ProvisionError { class, code: e.code.clone(), message: e.to_string() }
}

fn cls(e: ArmError) -> ProvisionError {
    classify(&e)
}

/// The VM of rank `rank`: `skycat-<id8>-<rank>` (also its computerName: ≤64, no `_`).
pub fn vm_name(cluster_id: &str, rank: u32) -> String {
    format!("skycat-{}-{rank}", &cluster_id[..cluster_id.len().min(8)])
}

/// The message `skycat stop` gives for a spot cluster.
pub fn no_stop_message(cluster: &str) -> String {
    format!("cluster {cluster} runs on Azure spot VMs, which skycat does not stop (an eviction deletes them); `skycat down {cluster}` tears it down")
}

pub struct Azure {
    cx: BackendContext,
    /// How long to wait for `PowerState/running` (`SKYCAT_AZURE_BOOT_TIMEOUT_SECS`, default 20 min).
    boot_timeout: Duration,
    api: Option<AzureApi>,
}

impl Azure {
    pub fn new(cx: BackendContext) -> Azure {
        let boot = std::env::var("SKYCAT_AZURE_BOOT_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(1200.0);
        Azure { cx, boot_timeout: Duration::from_secs_f64(boot), api: None }
    }

    /// A backend on this client, whatever the environment says.
    pub fn with_api(cx: BackendContext, api: AzureApi) -> Azure {
        Azure { api: Some(api), ..Azure::new(cx) }
    }

    fn config(&self) -> Result<AzureConfig, ProvisionError> {
        AzureConfig::load(&self.cx.home.root.join("config.yaml"))
    }

    fn api(&self) -> Result<AzureApi, ProvisionError> {
        match &self.api {
            Some(a) => Ok(a.clone()),
            None => AzureApi::from_env().map_err(cls),
        }
    }

    fn key(&self) -> Result<(PathBuf, String), ProvisionError> {
        crate::keys::ensure_ssh_key(&self.cx.home).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }

    fn net(&self, api: &AzureApi, rg: &str, kind: &str, name: &str) -> String {
        format!("{}/providers/Microsoft.Network/{kind}/{name}", api.rg_path(rg))
    }

    fn vm_path(api: &AzureApi, rg: &str, vm: &str) -> String {
        format!("{}/providers/Microsoft.Compute/virtualMachines/{vm}", api.rg_path(rg))
    }

    /// `/subscriptions/…/virtualMachines/<name>` → (resource group, VM name).
    fn parse_vm_id(id: &str) -> Result<(String, String), ProvisionError> {
        let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
        let at = |k: &str| segs.iter().position(|s| s.eq_ignore_ascii_case(k)).and_then(|i| segs.get(i + 1)).map(|s| s.to_string());
        match (at("resourceGroups"), at("virtualMachines")) {
            (Some(rg), Some(vm)) => Ok((rg, vm)),
            _ => Err(ProvisionError::new(ErrorClass::Invalid, format!("instance id {id:?} is not an Azure VM resource id"))),
        }
    }

    /// Creates everything of the cluster in `rg`; the nodes with their addresses.
    async fn create(&self, api: &AzureApi, req: &ProvisionRequest, rg: &str, cfg: &AzureConfig) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        let p = &req.placement;
        let loc = p.region.as_str();
        let tags = network::tags(&req.cluster, &req.cluster_id);
        let (key_path, public) = self.key()?;
        let image = match req.image_id.as_ref().and_then(|i| i.for_region(loc)) {
            Some(i) => vm::image_reference(i)?,
            None => vm::image_reference(if p.accelerator.is_some() { vm::GPU_IMAGE } else { vm::CPU_IMAGE })?,
        };
        // Bad input fails before anything is made.
        vm::disk_gb(req.disk_size_gb)?;
        api.put(&api.rg_path(rg), RESOURCES_API, &network::resource_group_body(loc, &tags)).await.map_err(cls)?;
        let vnet = self.net(api, rg, "virtualNetworks", network::VNET);
        api.put(&vnet, NETWORK_API, &network::vnet_body(loc, &tags)).await.map_err(cls)?;
        let nsg = self.net(api, rg, "networkSecurityGroups", network::NSG);
        api.put(&nsg, NETWORK_API, &network::nsg_body(loc, &tags, &req.ports)).await.map_err(cls)?;
        let subnet_id = format!("/{vnet}/subnets/{}", network::SUBNET);
        let admin = cfg.admin();
        let mut vms = Vec::new();
        for rank in 0..req.num_nodes.max(1) {
            let ip = self.net(api, rg, "publicIPAddresses", &network::public_ip_name(rank));
            api.put(&ip, NETWORK_API, &network::public_ip_body(loc, &tags)).await.map_err(cls)?;
            let nic = self.net(api, rg, "networkInterfaces", &network::nic_name(rank));
            let body = network::nic_body(loc, &tags, &subnet_id, &format!("/{nsg}"), &format!("/{ip}"));
            api.put(&nic, NETWORK_API, &body).await.map_err(cls)?;
            let name = vm_name(&req.cluster_id, rank);
            let body = vm::vm_body(&vm::VmSpec {
                location: loc,
                tags: &tags,
                size: &p.instance_type,
                image: image.clone(),
                disk_gb: req.disk_size_gb,
                computer_name: &name,
                admin_username: &admin,
                public_key: &public,
                nic_id: &format!("/{nic}"),
                spot: p.use_spot,
            })?;
            let created = api.put(&Self::vm_path(api, rg, &name), COMPUTE_API, &body).await.map_err(cls)?;
            vms.push((rank, name, created));
        }
        let mut nodes = Vec::new();
        for (rank, name, created) in vms {
            self.wait_running(api, rg, &name).await?;
            let id = created.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("/{}", Self::vm_path(api, rg, &name)));
            nodes.push(self.node(api, rg, rank, id, &key_path, &cfg.user()).await?);
        }
        Ok(nodes)
    }

    /// A node's addresses, read from its public IP and NIC.
    async fn node(&self, api: &AzureApi, rg: &str, rank: u32, id: String, key: &std::path::Path, user: &str) -> Result<ProvisionedNode, ProvisionError> {
        let ip = api.get(&self.net(api, rg, "publicIPAddresses", &network::public_ip_name(rank)), NETWORK_API).await.map_err(cls)?;
        let nic = api.get(&self.net(api, rg, "networkInterfaces", &network::nic_name(rank)), NETWORK_API).await.map_err(cls)?;
        let public_ip = ip.as_ref().and_then(network::ip_address);
        let Some(host) = public_ip.clone() else {
            return Err(ProvisionError::new(ErrorClass::Transient, format!("VM {id}: its public IP has no address")));
        };
        Ok(ProvisionedNode {
            instance_id: id,
            zone: None,
            target: SshTarget { host, port: 22, user: user.to_string(), identity_file: key.to_path_buf() },
            private_ip: nic.as_ref().and_then(network::private_ip),
            public_ip,
        })
    }

    /// Polls the instance view until `PowerState/running`; a failed or vanished VM is a capacity
    /// failure (Azure's allocation failures can surface there too).
    async fn wait_running(&self, api: &AzureApi, rg: &str, vm: &str) -> Result<(), ProvisionError> {
        let deadline = Instant::now() + self.boot_timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            let view = api.get(&format!("{}/instanceView", Self::vm_path(api, rg, vm)), COMPUTE_API).await.map_err(cls)?;
            let codes = view.as_ref().map(vm::status_codes).unwrap_or_default();
            if let Some(f) = codes.iter().find(|c| c.to_ascii_lowercase().starts_with("provisioningstate/failed")) {
                let code = f.split('/').nth(2).map(str::to_string);
                let class = match code.as_deref() {
                    Some(c) if CAPACITY_CODES.contains(&c) => ErrorClass::Capacity,
                    _ => ErrorClass::Invalid,
                };
                return Err(ProvisionError { class, code, message: format!("VM {vm}: {f}") });
            }
            match view {
                None => return Err(ProvisionError::new(ErrorClass::Capacity, format!("VM {vm} vanished while starting"))),
                Some(_) if codes.iter().any(|c| c == "PowerState/running") => return Ok(()),
                Some(_) => {}
            }
            if Instant::now() > deadline {
                return Err(ProvisionError::new(
                    ErrorClass::Transient,
                    format!("VM {vm} not running after {:?} (SKYCAT_AZURE_BOOT_TIMEOUT_SECS)", self.boot_timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
    }

    /// Deletes the resource group (and with it every resource of the cluster), waiting for it.
    async fn delete_group(&self, api: &AzureApi, rg: &str) -> Result<(), ProvisionError> {
        api.delete(&api.rg_path(rg), RESOURCES_API, &[("forceDeletionTypes", "Microsoft.Compute/virtualMachines")])
            .await
            .map_err(cls)
    }
}

#[async_trait]
impl Backend for Azure {
    fn infra(&self) -> &'static str {
        "azure"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    fn cannot_stop(&self, cluster: &ClusterRow) -> Option<String> {
        cluster.spot.then(|| no_stop_message(&cluster.name))
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        if let Some(z) = &req.placement.zone {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("skycat places Azure VMs by region only (zone {z} in {})", req.placement.region),
            ));
        }
        let cfg = self.config()?;
        let api = self.api()?;
        let rg = network::resource_group(&req.cluster, &req.cluster_id);
        match self.create(&api, req, &rg, &cfg).await {
            Ok(nodes) => Ok(Provisioned { nodes, skipped: Vec::new() }),
            Err(e) => {
                // Nothing may be left behind: the group holds everything this attempt made
                // (a VM whose allocation failed stays with provisioningState Failed otherwise).
                if let Err(d) = self.delete_group(&api, &rg).await {
                    tracing::warn!("deleting resource group {rg} after a failed launch: {d}");
                }
                Err(e)
            }
        }
    }

    async fn describe(&self, cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let Some(id) = node.instance_id.as_deref() else {
            return Ok(NodeState::Terminated { reason: Some("no VM id recorded".into()) });
        };
        let (rg, vm) = Self::parse_vm_id(id)?;
        let api = self.api()?;
        let view = api.get(&format!("{}/instanceView", Self::vm_path(&api, &rg, &vm)), COMPUTE_API).await.map_err(cls)?;
        Ok(vm::node_state(&vm, view.as_ref(), cluster.spot))
    }

    async fn stop(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        if cluster.spot {
            return Err(ProvisionError::new(ErrorClass::Invalid, no_stop_message(&cluster.name)));
        }
        let api = self.api()?;
        for id in nodes.iter().filter_map(|n| n.instance_id.as_deref()) {
            let (rg, vm) = Self::parse_vm_id(id)?;
            api.action(&format!("{}/deallocate", Self::vm_path(&api, &rg, &vm)), COMPUTE_API).await.map_err(cls)?;
        }
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        let api = self.api()?;
        let cfg = self.config()?;
        let (key_path, _) = self.key()?;
        let mut out = Vec::new();
        for n in nodes {
            let Some(id) = n.instance_id.clone() else {
                return Err(ProvisionError::new(ErrorClass::Invalid, format!("cluster {}: node {} has no VM id", cluster.name, n.rank)));
            };
            let (rg, vm) = Self::parse_vm_id(&id)?;
            api.action(&format!("{}/start", Self::vm_path(&api, &rg, &vm)), COMPUTE_API).await.map_err(cls)?;
            self.wait_running(&api, &rg, &vm).await?;
            out.push(self.node(&api, &rg, n.rank, id, &key_path, &cfg.user()).await?);
        }
        Ok(out)
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let api = self.api()?;
        let mut groups = vec![network::resource_group(&cluster.name, &cluster.id)];
        for id in nodes.iter().filter_map(|n| n.instance_id.as_deref()) {
            let (rg, _) = Self::parse_vm_id(id)?;
            if !groups.iter().any(|g| g.eq_ignore_ascii_case(&rg)) {
                groups.push(rg);
            }
        }
        for rg in groups {
            self.delete_group(&api, &rg).await?;
        }
        Ok(())
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let api = self.api()?;
        let rg = network::resource_group(&cluster.name, &cluster.id);
        let Some(group) = api.get(&api.rg_path(&rg), RESOURCES_API).await.map_err(cls)? else {
            return Err(ProvisionError::new(ErrorClass::Invalid, format!("cluster {}: resource group {rg} not found", cluster.name)));
        };
        let loc = group.get("location").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut all = super::parse_ports(
            &cluster.ports.as_deref().unwrap_or_default().split(',').filter(|s| !s.trim().is_empty()).map(str::to_string).collect::<Vec<_>>(),
        )?;
        all.extend(ports.iter().copied().filter(|p| !all.contains(p)).collect::<Vec<_>>());
        let body = network::nsg_body(&loc, &network::tags(&cluster.name, &cluster.id), &all);
        api.put(&self.net(&api, &rg, "networkSecurityGroups", network::NSG), NETWORK_API, &body).await.map_err(cls)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
