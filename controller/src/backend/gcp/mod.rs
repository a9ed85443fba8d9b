//! Google Compute Engine as a backend, over the Compute API v1 ([`api`], auth in [`auth`]).
//!
//! A launch, in order: one firewall rule per cluster (`firewalls.insert`, named
//! `skycat-<id8>-allow`, TCP 22 plus the task's ports, `targetTags` the cluster's network tag
//! `skycat-<id8>`); one `instances.insert` per node in the placement's zone, named
//! `skycat-<id8>-<rank>-<cluster>`, labelled `skycat-cluster-id=<id>`; each insert's Operation
//! waited with `zoneOperations.wait`; then `instances.get` until every node is `RUNNING` with a
//! `natIP`. The controller reaches the nodes over SSH at that address, as the `ssh-keys`
//! metadata user.
//!
//! Machine and GPU: the placement's instance type is the machine type. A2/A3/A4/G2 types carry
//! their GPUs; on N1 the planned accelerator (T4, P4, V100, P100, K80) is attached with
//! `guestAccelerators`. Any GPU, and Spot, need `onHostMaintenance=TERMINATE` (GCP refuses live
//! migration with accelerators). Spot is `provisioningModel=SPOT`, `instanceTerminationAction=STOP`
//! and no automatic restart. TPU slices are not VMs: they are not offered by this backend.
//!
//! Errors: `ZONE_RESOURCE_POOL_EXHAUSTED`, `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS` and
//! `UNSUPPORTED_OPERATION` block the zone (capacity), `QUOTA_EXCEEDED` / `quotaExceeded` the region
//! (quota) — whether the insert call itself was refused or its Operation ended `DONE` with the
//! error; a failed launch deletes whatever it created (instances, the firewall rule). 401, refused
//! tokens and permission errors block the whole cloud; 429 and 5xx are transient.
//!
//! Preemption: a Spot VM that GCP took back is `TERMINATED` (or gone) and its zone has a
//! `compute.instances.preempted` operation whose `targetLink` is the VM; [`Backend::describe`]
//! reports that as [`NodeState::Preempted`], which is what managed jobs recover from.
//!
//! `$SKYCAT_HOME/config.yaml`:
//! ```yaml
//! gcp:
//!   project: my-project      # else GOOGLE_CLOUD_PROJECT / CLOUDSDK_CORE_PROJECT / the key file's project_id
//!   ssh_user: gcpuser        # the ssh-keys metadata user (default gcpuser, as SkyPilot)
//!   image: projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts
//!   network: global/networks/default
//! ```
//! Endpoint `SKYCAT_GCP_COMPUTE_ENDPOINT` (default `https://compute.googleapis.com/`, as the price
//! fetcher and `skycat check` use); credentials `GOOGLE_OAUTH_ACCESS_TOKEN` or
//! `GOOGLE_APPLICATION_CREDENTIALS` (see [`auth`]).

pub mod api;
pub use skycat_gcp_auth as auth;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow};
use api::{
    AcceleratorConfig, AccessConfig, AttachedDisk, ComputeApi, Firewall, FirewallAllowed, GcpError, InitializeParams, Instance,
    InstanceInsert, Metadata, MetadataItem, NetworkInterface, Scheduling, Tags,
};
use auth::Credentials;

pub const DEFAULT_IMAGE: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts";
pub const DEFAULT_NETWORK: &str = "global/networks/default";
/// Boot disk size when the task names none (SkyPilot's default).
pub const DEFAULT_DISK_GB: u32 = 256;
/// The label every node of a cluster carries (what `down` lists by).
pub const CLUSTER_LABEL: &str = "skycat-cluster-id";
/// The operation type of a Spot preemption.
pub const PREEMPTED_OP: &str = "compute.instances.preempted";

/// Operation error codes that mean "no capacity here now" (SkyPilot blocks the zone on them).
pub const CAPACITY_CODES: &[&str] =
    &["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "UNSUPPORTED_OPERATION", "RESOURCE_NOT_READY"];

/// The `gcp:` section of `$SKYCAT_HOME/config.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub ssh_user: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    gcp: Option<GcpConfig>,
}

impl GcpConfig {
    /// Reads the `gcp:` section (missing file or section: defaults); an unknown key is an error
    /// naming the file and the key.
    pub fn load(path: &std::path::Path) -> Result<GcpConfig, ProvisionError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(GcpConfig::default()),
            Err(e) => return Err(ProvisionError::new(ErrorClass::Invalid, format!("{}: {e}", path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(GcpConfig::default());
        }
        let f: ConfigFile = serde_yaml::from_str(&text)
            .map_err(|e| ProvisionError::new(ErrorClass::Invalid, format!("{}: gcp: {e}", path.display())))?;
        Ok(f.gcp.unwrap_or_default())
    }

    pub fn user(&self) -> String {
        self.ssh_user.clone().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "gcpuser".to_string())
    }
}

/// Maps a Compute (or token endpoint) error to a class: by code first, then by HTTP status.
pub fn classify(e: &GcpError) -> ProvisionError {
    let code = e.code.as_deref();
    let class = match (code, e.status) {
        (Some(c), _) if CAPACITY_CODES.contains(&c) => ErrorClass::Capacity,
        (Some("QUOTA_EXCEEDED" | "quotaExceeded"), _) => ErrorClass::Quota,
        (Some("rateLimitExceeded" | "userRateLimitExceeded" | "RESOURCE_OPERATION_RATE_EXCEEDED" | "backendError" | "internalError"), _) => {
            ErrorClass::Transient
        }
        (
            Some(
                "invalid_grant" | "invalid_client" | "unauthorized_client" | "authError" | "UNAUTHENTICATED" | "forbidden"
                | "accessNotConfigured" | "PERMISSION_DENIED",
            ),
            _,
        ) => ErrorClass::Auth,
        (_, Some(401 | 403)) => ErrorClass::Auth,
        (_, Some(429)) => ErrorClass::Transient,
        (_, Some(s)) if s >= 500 => ErrorClass::Transient,
        (_, Some(_)) | (Some(_), None) => ErrorClass::Invalid,
        (None, None) if e.op == "credentials" || e.op == "project" => ErrorClass::Auth,
        (None, None) => ErrorClass::Transient,
    };
    ProvisionError { class, code: e.code.clone(), message: e.to_string() }
}

/// A GCP resource name: lower-case letters, digits and hyphens, starting with a letter.
fn name_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        out.push(if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' });
    }
    out
}

fn fit_name(mut n: String) -> String {
    n.truncate(63);
    while n.ends_with('-') {
        n.pop();
    }
    n
}

fn id8(cluster_id: &str) -> String {
    name_part(&cluster_id[..cluster_id.len().min(8)])
}

/// The cluster's network tag (what its firewall rule targets).
pub fn cluster_tag(cluster_id: &str) -> String {
    format!("skycat-{}", id8(cluster_id))
}

pub fn firewall_name(cluster_id: &str) -> String {
    format!("skycat-{}-allow", id8(cluster_id))
}

/// `skycat-<id8>-<rank>-<cluster>`, at most 63 characters.
pub fn node_name(cluster: &str, cluster_id: &str, rank: u32) -> String {
    fit_name(format!("skycat-{}-{rank}-{}", id8(cluster_id), name_part(cluster)))
}

/// The label value of a cluster id.
pub fn cluster_label(cluster_id: &str) -> String {
    fit_name(name_part(cluster_id))
}

/// GCP's accelerator type for a catalog GPU attached to an N1 host.
pub fn n1_accelerator_type(gpu: &str) -> Option<&'static str> {
    Some(match gpu.to_ascii_uppercase().as_str() {
        "T4" => "nvidia-tesla-t4",
        "P4" => "nvidia-tesla-p4",
        "V100" => "nvidia-tesla-v100",
        "P100" => "nvidia-tesla-p100",
        "K80" => "nvidia-tesla-k80",
        _ => return None,
    })
}

/// The instances.insert body for one node.
pub fn insert_body(req: &ProvisionRequest, cfg: &GcpConfig, zone: &str, rank: u32, ssh_user: &str, public_key: &str) -> Result<InstanceInsert, ProvisionError> {
    let p = &req.placement;
    let bad = |m: String| ProvisionError::new(ErrorClass::Invalid, m);
    if p.instance_type.starts_with("tpu-") {
        return Err(bad(format!("{}: TPU slices are not VMs; skycat's GCP backend launches VMs only", p.instance_type)));
    }
    let family = p.instance_type.split('-').next().unwrap_or_default();
    let gpus = p.accelerator.as_deref().filter(|_| p.count > 0.0);
    let mut guest_accelerators = Vec::new();
    if let (Some(gpu), "n1") = (gpus, family) {
        let Some(t) = n1_accelerator_type(gpu) else {
            return Err(bad(format!("{gpu} cannot be attached to an N1 machine ({} in {zone})", p.instance_type)));
        };
        if p.count.fract() != 0.0 {
            return Err(bad(format!("{gpu}:{} is not a whole number of GPUs for {}", p.count, p.instance_type)));
        }
        guest_accelerators.push(AcceleratorConfig {
            accelerator_type: format!("zones/{zone}/acceleratorTypes/{t}"),
            accelerator_count: p.count as u32,
        });
    }
    let scheduling = if p.use_spot {
        Scheduling {
            on_host_maintenance: "TERMINATE".into(),
            automatic_restart: false,
            provisioning_model: Some("SPOT".into()),
            instance_termination_action: Some("STOP".into()),
        }
    } else {
        Scheduling {
            on_host_maintenance: if gpus.is_some() { "TERMINATE" } else { "MIGRATE" }.into(),
            automatic_restart: true,
            provisioning_model: None,
            instance_termination_action: None,
        }
    };
    let image = req
        .image_id
        .as_ref()
        .and_then(|i| i.for_region(&p.region))
        .map(str::to_string)
        .or_else(|| cfg.image.clone())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string());
    let disk = req.disk_size_gb.unwrap_or(DEFAULT_DISK_GB);
    if disk < 10 {
        return Err(bad(format!("disk_size: {disk} GB is below GCP's 10 GB minimum for a boot disk")));
    }
    let key = public_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Ok(InstanceInsert {
        name: node_name(&req.cluster, &req.cluster_id, rank),
        machine_type: format!("zones/{zone}/machineTypes/{}", p.instance_type),
        disks: vec![AttachedDisk {
            boot: true,
            auto_delete: true,
            initialize_params: InitializeParams { source_image: image, disk_size_gb: disk.to_string() },
        }],
        network_interfaces: vec![NetworkInterface {
            network: cfg.network.clone().unwrap_or_else(|| DEFAULT_NETWORK.to_string()),
            access_configs: vec![AccessConfig { kind: Some("ONE_TO_ONE_NAT".into()), name: Some("External NAT".into()), nat_ip: None }],
        }],
        guest_accelerators,
        scheduling,
        metadata: Metadata { items: vec![MetadataItem { key: "ssh-keys".into(), value: format!("{ssh_user}:{key} skycat") }] },
        labels: BTreeMap::from([
            (CLUSTER_LABEL.to_string(), cluster_label(&req.cluster_id)),
            ("skycat-cluster".to_string(), fit_name(name_part(&req.cluster))),
        ]),
        tags: Tags { items: vec![cluster_tag(&req.cluster_id)] },
    })
}

/// The firewall rule's `allowed`: TCP 22 and the given ranges.
fn allowed(ports: &[(u16, u16)]) -> Vec<FirewallAllowed> {
    let mut list = vec!["22".to_string()];
    for r in ports {
        let s = super::fmt_port_range(*r);
        if !list.contains(&s) {
            list.push(s);
        }
    }
    vec![FirewallAllowed { ip_protocol: "tcp".into(), ports: list }]
}

/// The zone of a cluster's node: its row's, else the cluster's infra (`gcp/<region>/<zone>`).
fn zone_of(cluster: &ClusterRow, node: Option<&NodeRow>) -> Option<String> {
    node.and_then(|n| n.zone.clone()).filter(|z| !z.is_empty()).or_else(|| cluster.infra.split('/').nth(2).map(str::to_string))
}

fn node_state(i: &Instance, preempted: bool) -> NodeState {
    match i.status.as_str() {
        "RUNNING" => NodeState::Running,
        "PROVISIONING" | "STAGING" | "REPAIRING" | "PENDING" => NodeState::Pending,
        _ if preempted => NodeState::Preempted { reason: format!("GCP preempted Spot VM {} ({PREEMPTED_OP})", i.name) },
        "STOPPING" | "TERMINATED" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "PENDING_STOP" => {
            NodeState::Stopped { reason: Some(format!("instance {} is {}", i.name, i.status)) }
        }
        other => NodeState::Terminated { reason: Some(format!("instance {} has status {other:?}", i.name)) },
    }
}

pub struct Gcp {
    cx: BackendContext,
    /// How long to wait for `RUNNING` (`SKYCAT_GCP_BOOT_TIMEOUT_SECS`, default 20 min).
    boot_timeout: Duration,
    /// A client given by the caller instead of the one the environment describes (tests).
    api: Option<ComputeApi>,
}

impl Gcp {
    pub fn new(cx: BackendContext) -> Gcp {
        let boot = std::env::var("SKYCAT_GCP_BOOT_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(1200.0);
        Gcp { cx, boot_timeout: Duration::from_secs_f64(boot), api: None }
    }

    /// A backend on this client, whatever the environment says.
    pub fn with_api(cx: BackendContext, api: ComputeApi) -> Gcp {
        Gcp { api: Some(api), ..Gcp::new(cx) }
    }

    fn config(&self) -> Result<GcpConfig, ProvisionError> {
        GcpConfig::load(&self.cx.home.root.join("config.yaml"))
    }

    fn api(&self, cfg: &GcpConfig) -> Result<ComputeApi, ProvisionError> {
        if let Some(a) = &self.api {
            return Ok(a.clone());
        }
        let creds = Credentials::from_env().map_err(|e| classify(&GcpError::from(e)))?;
        let project = auth::PROJECT_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()))
            .or_else(|| cfg.project.clone().filter(|p| !p.trim().is_empty()))
            .or_else(|| creds.key_project())
            .ok_or_else(|| {
                ProvisionError::new(
                    ErrorClass::Auth,
                    format!("no GCP project: set {} or gcp.project in $SKYCAT_HOME/config.yaml", auth::PROJECT_VARS.join(" or ")),
                )
            })?;
        let endpoint = std::env::var(api::ENDPOINT_VAR).ok().filter(|e| !e.trim().is_empty());
        let api = ComputeApi::new(endpoint.as_deref().unwrap_or(api::DEFAULT_ENDPOINT), &project, creds).map_err(|e| classify(&e))?;
        Ok(api.with_op_timeout(self.boot_timeout))
    }

    fn key(&self) -> Result<(PathBuf, String), ProvisionError> {
        crate::keys::ensure_ssh_key(&self.cx.home).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }

    /// Creates the cluster's rule, or widens it to `ports` when it exists.
    async fn ensure_firewall(&self, api: &ComputeApi, cfg: &GcpConfig, cluster_id: &str, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let name = firewall_name(cluster_id);
        let want = allowed(ports);
        match api.get_firewall(&name).await.map_err(|e| classify(&e))? {
            Some(fw) => {
                let mut have: Vec<String> = fw.allowed.iter().filter(|a| a.ip_protocol == "tcp").flat_map(|a| a.ports.clone()).collect();
                let before = have.len();
                for p in &want[0].ports {
                    if !have.contains(p) {
                        have.push(p.clone());
                    }
                }
                if have.len() != before || fw.allowed.len() != 1 {
                    let op = api
                        .patch_firewall_allowed(&name, &[FirewallAllowed { ip_protocol: "tcp".into(), ports: have }])
                        .await
                        .map_err(|e| classify(&e))?;
                    api.wait(op, &format!("firewalls.patch {name}")).await.map_err(|e| classify(&e))?;
                }
            }
            None => {
                let network = cfg.network.clone().unwrap_or_else(|| DEFAULT_NETWORK.to_string());
                let fw = Firewall {
                    name: name.clone(),
                    network: if network.starts_with("projects/") { network } else { format!("projects/{}/{network}", api.project()) },
                    direction: "INGRESS".into(),
                    priority: 1000,
                    allowed: want,
                    source_ranges: vec!["0.0.0.0/0".into()],
                    target_tags: vec![cluster_tag(cluster_id)],
                };
                let op = api.insert_firewall(&fw).await.map_err(|e| classify(&e))?;
                api.wait(op, &format!("firewalls.insert {name}")).await.map_err(|e| classify(&e))?;
            }
        }
        Ok(())
    }

    async fn delete_firewall(&self, api: &ComputeApi, cluster_id: &str) -> Result<(), GcpError> {
        let name = firewall_name(cluster_id);
        match api.delete_firewall(&name).await {
            Ok(op) => api.wait(op, &format!("firewalls.delete {name}")).await.map(|_| ()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes instances (404 is fine) and waits for the deletions.
    async fn delete_instances(&self, api: &ComputeApi, zone: &str, names: &[String]) -> Result<(), GcpError> {
        let mut ops = Vec::new();
        for n in names {
            match api.delete_instance(zone, n).await {
                Ok(op) => ops.push((n, op)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        for (n, op) in ops {
            match api.wait(op, &format!("instances.delete {n}")).await {
                Ok(_) => {}
                Err(e) if e.code.as_deref() == Some("RESOURCE_NOT_FOUND") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// After a failed launch: deletes what it made, logging (not failing) what could not be.
    async fn cleanup(&self, api: &ComputeApi, zone: &str, names: &[String], cluster_id: &str) {
        if let Err(e) = self.delete_instances(api, zone, names).await {
            tracing::warn!("deleting {names:?} after a failed launch: {e}");
        }
        if let Err(e) = self.delete_firewall(api, cluster_id).await {
            tracing::warn!("deleting firewall rule {} after a failed launch: {e}", firewall_name(cluster_id));
        }
    }

    /// Inserts every node and waits for the insert operations; `names` gets each node whose
    /// insert was accepted (so the caller can delete it).
    async fn insert_nodes(
        &self,
        api: &ComputeApi,
        req: &ProvisionRequest,
        cfg: &GcpConfig,
        zone: &str,
        public: &str,
        names: &mut Vec<String>,
    ) -> Result<(), ProvisionError> {
        let user = cfg.user();
        let mut ops = Vec::new();
        for rank in 0..req.num_nodes.max(1) {
            let body = insert_body(req, cfg, zone, rank, &user, public)?;
            let op = api.insert_instance(zone, &body).await.map_err(|e| classify(&e))?;
            names.push(body.name.clone());
            ops.push((body.name, op));
        }
        for (name, op) in ops {
            api.wait(op, &format!("instances.insert {name} in {zone}")).await.map_err(|e| classify(&e))?;
        }
        Ok(())
    }

    /// Polls `instances.get` until every node is `RUNNING` with a `natIP`. A node that ends or
    /// vanishes while booting is a capacity failure (GCP took it back).
    async fn wait_running(&self, api: &ComputeApi, zone: &str, names: &[String]) -> Result<Vec<Instance>, ProvisionError> {
        let deadline = Instant::now() + self.boot_timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let mut all = Vec::new();
            for n in names {
                match api.get_instance(zone, n).await.map_err(|e| classify(&e))? {
                    Some(i) if matches!(i.status.as_str(), "TERMINATED" | "STOPPING" | "STOPPED" | "SUSPENDED") => {
                        return Err(ProvisionError::new(ErrorClass::Capacity, format!("instance {n} went {} while booting in {zone}", i.status)))
                    }
                    Some(i) => all.push(i),
                    None => return Err(ProvisionError::new(ErrorClass::Capacity, format!("instance {n} vanished while booting in {zone}"))),
                }
            }
            if all.iter().all(|i| i.status == "RUNNING" && i.nat_ip().is_some()) {
                return Ok(all);
            }
            if Instant::now() > deadline {
                return Err(ProvisionError::new(
                    ErrorClass::Transient,
                    format!("instances not RUNNING after {:?} (SKYCAT_GCP_BOOT_TIMEOUT_SECS)", self.boot_timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn nodes_of(&self, cfg: &GcpConfig, zone: &str, key_path: &std::path::Path, running: &[Instance]) -> Vec<ProvisionedNode> {
        running
            .iter()
            .map(|i| ProvisionedNode {
                instance_id: i.name.clone(),
                zone: Some(zone.to_string()),
                target: SshTarget { host: i.nat_ip().unwrap_or_default(), port: 22, user: cfg.user(), identity_file: key_path.to_path_buf() },
                private_ip: i.network_ip(),
                public_ip: i.nat_ip(),
            })
            .collect()
    }

    /// Whether the zone has a `compute.instances.preempted` operation on instance `name`.
    async fn was_preempted(&self, api: &ComputeApi, zone: &str, name: &str) -> Result<bool, ProvisionError> {
        let ops = api
            .list_zone_operations(zone, &format!("operationType = \"{PREEMPTED_OP}\""))
            .await
            .map_err(|e| classify(&e))?;
        let suffix = format!("/zones/{zone}/instances/{name}");
        Ok(ops.iter().any(|o| o.operation_type.as_deref() == Some(PREEMPTED_OP) && o.target_link.as_deref().is_some_and(|l| l.ends_with(&suffix))))
    }

    /// (zone, instance names) of every node of the cluster: listed by label in each zone it
    /// used, plus the nodes on record.
    async fn cluster_instances(&self, api: &ComputeApi, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<BTreeMap<String, Vec<String>>, ProvisionError> {
        let mut by_zone: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in nodes {
            if let (Some(z), Some(id)) = (zone_of(cluster, Some(n)), n.instance_id.clone()) {
                by_zone.entry(z).or_default().push(id);
            }
        }
        if let Some(z) = zone_of(cluster, None) {
            by_zone.entry(z).or_default();
        }
        let filter = format!("labels.{CLUSTER_LABEL} = {}", cluster_label(&cluster.id));
        for (zone, names) in by_zone.iter_mut() {
            for i in api.list_instances(zone, &filter).await.map_err(|e| classify(&e))? {
                if !names.contains(&i.name) {
                    names.push(i.name);
                }
            }
        }
        Ok(by_zone)
    }
}

#[async_trait]
impl Backend for Gcp {
    fn infra(&self) -> &'static str {
        "gcp"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    /// The catalog's GCP VMs (TPU slices are not VMs).
    fn offers(&self, catalog: &[skycat_catalog::Offer]) -> Vec<skycat_catalog::Offer> {
        catalog.iter().filter(|o| &*o.cloud == "gcp" && !o.instance_type.starts_with("tpu-")).cloned().collect()
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let p = &req.placement;
        let Some(zone) = p.zone.clone().filter(|z| !z.is_empty()) else {
            return Err(ProvisionError::new(ErrorClass::Invalid, format!("GCP placements need a zone ({} in {} has none)", p.instance_type, p.region)));
        };
        let cfg = self.config()?;
        // Checks the body before any call: a bad request creates nothing.
        let (key_path, public) = self.key()?;
        insert_body(req, &cfg, &zone, 0, &cfg.user(), &public)?;
        let api = self.api(&cfg)?;
        self.ensure_firewall(&api, &cfg, &req.cluster_id, &req.ports).await?;
        let mut names = Vec::new();
        if let Err(e) = self.insert_nodes(&api, req, &cfg, &zone, &public, &mut names).await {
            self.cleanup(&api, &zone, &names, &req.cluster_id).await;
            return Err(e);
        }
        match self.wait_running(&api, &zone, &names).await {
            Ok(running) => Ok(Provisioned { nodes: self.nodes_of(&cfg, &zone, &key_path, &running), skipped: Vec::new() }),
            Err(e) => {
                self.cleanup(&api, &zone, &names, &req.cluster_id).await;
                Err(e)
            }
        }
    }

    async fn describe(&self, cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let (Some(name), Some(zone)) = (node.instance_id.as_deref(), zone_of(cluster, Some(node))) else {
            return Ok(NodeState::Terminated { reason: Some("no instance name or zone recorded".into()) });
        };
        let api = self.api(&self.config()?)?;
        match api.get_instance(&zone, name).await.map_err(|e| classify(&e))? {
            Some(i) if i.status == "RUNNING" || !i.is_spot() => Ok(node_state(&i, false)),
            Some(i) => {
                let preempted = self.was_preempted(&api, &zone, name).await?;
                Ok(node_state(&i, preempted))
            }
            // instanceTerminationAction=DELETE, or deleted by hand.
            None => {
                if cluster.spot && self.was_preempted(&api, &zone, name).await? {
                    return Ok(NodeState::Preempted { reason: format!("GCP preempted and deleted Spot VM {name} ({PREEMPTED_OP})") });
                }
                Ok(NodeState::Terminated { reason: Some(format!("instance {name} not found in {zone}")) })
            }
        }
    }

    async fn stop(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let api = self.api(&self.config()?)?;
        let mut ops = Vec::new();
        for n in nodes {
            let (Some(name), Some(zone)) = (n.instance_id.as_deref(), zone_of(cluster, Some(n))) else { continue };
            let op = api.instance_action(&zone, name, "stop").await.map_err(|e| classify(&e))?;
            ops.push((name.to_string(), op));
        }
        for (name, op) in ops {
            api.wait(op, &format!("instances.stop {name}")).await.map_err(|e| classify(&e))?;
        }
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        let cfg = self.config()?;
        let api = self.api(&cfg)?;
        let (key_path, _) = self.key()?;
        let mut by_zone: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ops = Vec::new();
        for n in nodes {
            let (Some(name), Some(zone)) = (n.instance_id.clone(), zone_of(cluster, Some(n))) else {
                return Err(ProvisionError::new(ErrorClass::Invalid, format!("node {} of {} has no instance on record", n.rank, cluster.name)));
            };
            let op = api.instance_action(&zone, &name, "start").await.map_err(|e| classify(&e))?;
            ops.push((name.clone(), op));
            by_zone.entry(zone).or_default().push(name);
        }
        for (name, op) in ops {
            api.wait(op, &format!("instances.start {name}")).await.map_err(|e| classify(&e))?;
        }
        let mut out = Vec::new();
        for (zone, names) in &by_zone {
            let running = self.wait_running(&api, zone, names).await?;
            out.extend(self.nodes_of(&cfg, zone, &key_path, &running));
        }
        // In the nodes' order (rank).
        out.sort_by_key(|p| nodes.iter().position(|n| n.instance_id.as_deref() == Some(p.instance_id.as_str())));
        Ok(out)
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let api = self.api(&self.config()?)?;
        for (zone, names) in self.cluster_instances(&api, cluster, nodes).await? {
            self.delete_instances(&api, &zone, &names).await.map_err(|e| classify(&e))?;
        }
        self.delete_firewall(&api, &cluster.id).await.map_err(|e| classify(&e))
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let cfg = self.config()?;
        let api = self.api(&cfg)?;
        self.ensure_firewall(&api, &cfg, &cluster.id, ports).await
    }
}

#[cfg(test)]
mod tests;
