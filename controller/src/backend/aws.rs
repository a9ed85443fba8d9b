//! AWS EC2 as a backend, through aws-sdk-ec2 ([`crate::aws_ec2`]). A launch, in order:
//! import skycat's SSH key as a key pair; create the cluster's security group opening 22 plus the
//! task's `ports`; `RunInstances` on demand or on spot in the planned zone, tagged with the
//! cluster, with `disk_size` on the image's root device and the task's `image_id` (else the
//! newest Ubuntu 22.04 image, or AWS's Deep Learning base image for GPU types); wait until every
//! instance runs. The controller then reaches the nodes over SSH.
//!
//! `$SKYCAT_HOME/config.yaml`, as SkyPilot's `~/.sky/config.yaml`:
//! ```yaml
//! aws:
//!   vpc_name: my-vpc          # launch into this VPC's subnets (default: the default VPC)
//!   use_internal_ips: true    # no public IPs; the controller connects to private IPs
//!   ssh_user: ubuntu          # the image's login user (skycat extension; default ubuntu)
//! ```
//! Endpoint and credentials: the SDK's standard chain (`AWS_ENDPOINT_URL_EC2`, profiles, …).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::aws_ec2::{Ec2Backend, Ec2Error, Ec2Instance, LaunchSpec, NodeGone};
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow};

/// Canonical's account (Ubuntu images) and AWS's (Deep Learning AMIs).
const CANONICAL: &str = "099720109477";
const AMAZON: &str = "amazon";

/// The `aws:` section of `$SKYCAT_HOME/config.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    #[serde(default)]
    pub vpc_name: Option<String>,
    #[serde(default)]
    pub use_internal_ips: bool,
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// SkyPilot's key; accepted for compatibility (security groups are per cluster here).
    #[serde(default)]
    pub security_group_name: Option<String>,
    /// SkyPilot's key; accepted, tags are applied to instances.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    aws: Option<AwsConfig>,
}

impl AwsConfig {
    /// Reads the `aws:` section (missing file or section: defaults). An unknown key is an error
    /// naming the file and the key.
    pub fn load(path: &std::path::Path) -> Result<AwsConfig, ProvisionError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AwsConfig::default()),
            Err(e) => return Err(ProvisionError::new(ErrorClass::Invalid, format!("{}: {e}", path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(AwsConfig::default());
        }
        let f: ConfigFile = serde_yaml::from_str(&text)
            .map_err(|e| ProvisionError::new(ErrorClass::Invalid, format!("{}: aws: {e}", path.display())))?;
        Ok(f.aws.unwrap_or_default())
    }

    pub fn user(&self) -> String {
        self.ssh_user.clone().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "ubuntu".to_string())
    }
}

/// Maps an EC2 API error to a class, by the documented error codes.
pub fn classify(e: &Ec2Error) -> ProvisionError {
    let code = match e {
        Ec2Error::Api { code, .. } => code.clone(),
        Ec2Error::Invalid { .. } => None,
    };
    let message = e.to_string();
    let class = match code.as_deref() {
        Some(
            "InsufficientInstanceCapacity" | "InsufficientHostCapacity" | "InsufficientReservedInstanceCapacity"
            | "InsufficientCapacity" | "SpotMaxPriceTooLow" | "InsufficientFreeAddressesInSubnet",
        ) => ErrorClass::Capacity,
        Some(
            "VcpuLimitExceeded" | "InstanceLimitExceeded" | "MaxSpotInstanceCountExceeded" | "VolumeLimitExceeded"
            | "AddressLimitExceeded",
        ) => ErrorClass::Quota,
        Some(
            "AuthFailure" | "UnauthorizedOperation" | "OptInRequired" | "Blocked" | "PendingVerification"
            | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken",
        ) => ErrorClass::Auth,
        Some("RequestLimitExceeded" | "Throttling" | "InternalError" | "ServiceUnavailable" | "Unavailable") => {
            ErrorClass::Transient
        }
        Some(_) => ErrorClass::Invalid,
        None => match e {
            Ec2Error::Invalid { .. } => ErrorClass::Invalid,
            // No code: the request never got an answer (connection refused, timeout).
            Ec2Error::Api { .. } => ErrorClass::Transient,
        },
    };
    ProvisionError { class, code, message }
}

pub struct Aws {
    cx: BackendContext,
    clients: Mutex<BTreeMap<String, Ec2Backend>>,
    /// Seconds to wait for instances to reach `running` (`SKYCAT_AWS_BOOT_TIMEOUT_SECS`).
    boot_timeout: Duration,
}

impl Aws {
    pub fn new(cx: BackendContext) -> Aws {
        let boot = std::env::var("SKYCAT_AWS_BOOT_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(600.0);
        Aws { cx, clients: Mutex::new(BTreeMap::new()), boot_timeout: Duration::from_secs_f64(boot) }
    }

    fn config(&self) -> Result<AwsConfig, ProvisionError> {
        AwsConfig::load(&self.cx.home.root.join("config.yaml"))
    }

    async fn client(&self, region: &str) -> Ec2Backend {
        if let Some(c) = self.clients.lock().ok().and_then(|m| m.get(region).cloned()) {
            return c;
        }
        let c = Ec2Backend::from_env(region).await;
        if let Ok(mut m) = self.clients.lock() {
            m.insert(region.to_string(), c.clone());
        }
        c
    }

    /// skycat's SSH key for clouds, created on first use: `$SKYCAT_HOME/keys/skycat-key`.
    fn key(&self) -> Result<(PathBuf, String), ProvisionError> {
        crate::keys::ensure_ssh_key(&self.cx.home).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }

    fn sg_name(cluster: &ClusterRow) -> String {
        sg_name(&cluster.name, &cluster.id)
    }

    async fn image(&self, ec2: &Ec2Backend, req: &ProvisionRequest) -> Result<crate::aws_ec2::Ec2Image, ProvisionError> {
        let region = &req.placement.region;
        if let Some(id) = req.image_id.as_ref().and_then(|i| i.for_region(region)) {
            let id = id.strip_prefix("ami:").unwrap_or(id);
            return ec2.image(id).await.map_err(|e| classify(&e))?.ok_or_else(|| {
                ProvisionError::new(ErrorClass::Invalid, format!("image_id {id} does not exist in {region}"))
            });
        }
        let arm = req.placement.instance_type.split('.').next().is_some_and(|f| f.contains('g') && !f.starts_with('g') && !f.starts_with('p'));
        let arch = if arm { "arm64" } else { "amd64" };
        let (owner, pattern) = if req.placement.accelerator.is_some() {
            (AMAZON, format!("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"))
        } else {
            (CANONICAL, format!("ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-{arch}-server-*"))
        };
        ec2.newest_image(owner, &pattern).await.map_err(|e| classify(&e))?.ok_or_else(|| {
            ProvisionError::new(
                ErrorClass::Invalid,
                format!("no default image ({pattern}) in {region}; set resources.image_id or --image-id"),
            )
        })
    }

    async fn wait_running(&self, ec2: &Ec2Backend, ids: &[String]) -> Result<Vec<Ec2Instance>, ProvisionError> {
        let deadline = Instant::now() + self.boot_timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            let found = ec2.describe_ids(ids).await.map_err(|e| classify(&e))?;
            if let Some(gone) = found.iter().find_map(|i| i.preemption().map(|g| (i.id.clone(), g))) {
                let why = match gone.1 {
                    NodeGone::SpotInterrupted { code } => format!("{} was interrupted while starting ({code})", gone.0),
                    NodeGone::Ended { state, code } => format!("{} is {state} while starting ({})", gone.0, code.unwrap_or_default()),
                };
                return Err(ProvisionError::new(ErrorClass::Capacity, why));
            }
            if found.len() == ids.len() && found.iter().all(|i| i.state == "running") {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(ProvisionError::new(
                    ErrorClass::Transient,
                    format!("instances not running after {:?} (SKYCAT_AWS_BOOT_TIMEOUT_SECS)", self.boot_timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn node_of(&self, i: &Ec2Instance, cfg: &AwsConfig, key: &std::path::Path) -> Result<ProvisionedNode, ProvisionError> {
        let addr = if cfg.use_internal_ips { i.private_ip.clone() } else { i.public_ip.clone() };
        let Some(host) = addr else {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!(
                    "instance {} has no {} IP{}",
                    i.id,
                    if cfg.use_internal_ips { "private" } else { "public" },
                    if cfg.use_internal_ips { "" } else { " (set aws.use_internal_ips: true to connect over private IPs)" }
                ),
            ));
        };
        Ok(ProvisionedNode {
            instance_id: i.id.clone(),
            zone: i.zone.clone(),
            target: SshTarget { host, port: 22, user: cfg.user(), identity_file: key.to_path_buf() },
            private_ip: i.private_ip.clone(),
            public_ip: i.public_ip.clone(),
        })
    }

    fn region_of(cluster: &ClusterRow) -> Result<String, ProvisionError> {
        cluster
            .infra
            .split('/')
            .nth(1)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ProvisionError::new(ErrorClass::Invalid, format!("cluster {} has no region in {:?}", cluster.name, cluster.infra)))
    }

    async fn vpc(&self, ec2: &Ec2Backend, cfg: &AwsConfig, region: &str) -> Result<String, ProvisionError> {
        ec2.find_vpc(cfg.vpc_name.as_deref()).await.map_err(|e| classify(&e))?.ok_or_else(|| {
            ProvisionError::new(
                ErrorClass::Invalid,
                match &cfg.vpc_name {
                    Some(n) => format!("no VPC tagged Name={n} in {region} (aws.vpc_name)"),
                    None => format!("no default VPC in {region}; set aws.vpc_name in config.yaml"),
                },
            )
        })
    }
}

/// `use1-az1` (an id) rather than `us-east-1a` (a name).
fn is_zone_id(z: &str) -> bool {
    z.contains("-az")
}

/// The per-cluster security group's name.
pub fn sg_name(cluster: &str, cluster_id: &str) -> String {
    format!("skycat-{cluster}-{}", &cluster_id[..cluster_id.len().min(8)])
}

#[async_trait]
impl Backend for Aws {
    fn infra(&self) -> &'static str {
        "aws"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let cfg = self.config()?;
        let p = &req.placement;
        let ec2 = self.client(&p.region).await;
        let (key_path, public_key) = self.key()?;
        let key_name = crate::keys::key_pair_name(&public_key);
        ec2.ensure_key_pair(&key_name, &public_key).await.map_err(|e| classify(&e))?;
        let vpc = self.vpc(&ec2, &cfg, &p.region).await?;
        let zone = match p.zone.as_deref() {
            Some(z) if is_zone_id(z) => Some(ec2.zone_name(z).await.map_err(|e| classify(&e))?.ok_or_else(|| {
                ProvisionError::new(ErrorClass::Invalid, format!("zone id {z} does not exist in {}", p.region))
            })?),
            other => other.map(str::to_string),
        };
        let subnets = ec2.subnets(&vpc, zone.as_deref()).await.map_err(|e| classify(&e))?;
        let Some(subnet) = subnets.first() else {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("VPC {vpc} has no subnet in {}", zone.as_deref().unwrap_or(&p.region)),
            ));
        };
        let sg = ec2
            .ensure_security_group(&sg_name(&req.cluster, &req.cluster_id), Some(&vpc), &req.ports, "0.0.0.0/0")
            .await
            .map_err(|e| classify(&e))?;
        let image = self.image(&ec2, req).await?;
        let mut tags = vec![("skycat-cluster-id".to_string(), req.cluster_id.clone())];
        tags.extend(cfg.labels.clone().unwrap_or_default());
        let spec = LaunchSpec {
            cluster: req.cluster.clone(),
            image_id: image.id.clone(),
            instance_type: p.instance_type.clone(),
            count: req.num_nodes.max(1),
            spot: p.use_spot,
            max_spot_price: None,
            key_name: Some(key_name),
            security_group_ids: vec![sg],
            availability_zone: Some(subnet.zone.clone()),
            subnet_id: Some(subnet.id.clone()),
            tags,
            associate_public_ip: Some(!cfg.use_internal_ips),
            disk_size_gb: req.disk_size_gb,
            root_device_name: image.root_device_name.clone(),
        };
        let launched = ec2.run_instances(&spec).await.map_err(|e| classify(&e))?;
        let ids: Vec<String> = launched.iter().map(|i| i.id.clone()).collect();
        let ready = async {
            let running = self.wait_running(&ec2, &ids).await?;
            // RunInstances returns instances in no promised order: rank them by id order given.
            let mut out = Vec::new();
            for id in &ids {
                let i = running.iter().find(|i| &i.id == id).ok_or_else(|| {
                    ProvisionError::new(ErrorClass::Transient, format!("instance {id} vanished while starting"))
                })?;
                out.push(self.node_of(i, &cfg, &key_path)?);
            }
            Ok::<_, ProvisionError>(out)
        }
        .await;
        match ready {
            Ok(nodes) => Ok(Provisioned { nodes, skipped: Vec::new() }),
            Err(e) => {
                // Leave nothing behind that bills.
                if let Err(t) = ec2.terminate(&ids).await {
                    tracing::warn!("terminating {ids:?} after a failed launch: {t}");
                }
                Err(e)
            }
        }
    }

    async fn describe(&self, cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let ec2 = self.client(&Self::region_of(cluster)?).await;
        let Some(id) = node.instance_id.as_deref() else {
            return Ok(NodeState::Terminated { reason: Some("no instance id recorded".into()) });
        };
        let found = ec2.describe_ids(&[id.to_string()]).await;
        let inst = match found {
            Ok(v) => v.into_iter().next(),
            Err(Ec2Error::Api { code: Some(c), .. }) if c == "InvalidInstanceID.NotFound" => None,
            Err(e) => return Err(classify(&e)),
        };
        let Some(i) = inst else {
            return Ok(NodeState::Terminated { reason: Some(format!("instance {id} not found")) });
        };
        Ok(match i.preemption() {
            Some(NodeGone::SpotInterrupted { code }) => NodeState::Preempted { reason: format!("spot interruption: {code}") },
            Some(NodeGone::Ended { state, code }) if state == "stopping" || state == "stopped" => NodeState::Stopped { reason: code },
            Some(NodeGone::Ended { code, .. }) => NodeState::Terminated { reason: code },
            None if i.state == "running" => NodeState::Running,
            None => NodeState::Pending,
        })
    }

    async fn stop(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        if cluster.spot {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("cluster {} runs on spot instances, which cannot be stopped; use `skycat down {}`", cluster.name, cluster.name),
            ));
        }
        let ec2 = self.client(&Self::region_of(cluster)?).await;
        let ids: Vec<String> = nodes.iter().filter_map(|n| n.instance_id.clone()).collect();
        ec2.stop(&ids).await.map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        let cfg = self.config()?;
        let (key_path, _) = self.key()?;
        let ec2 = self.client(&Self::region_of(cluster)?).await;
        let ids: Vec<String> = nodes.iter().filter_map(|n| n.instance_id.clone()).collect();
        ec2.start(&ids).await.map_err(|e| classify(&e))?;
        let running = self.wait_running(&ec2, &ids).await?;
        ids.iter()
            .map(|id| {
                let i = running.iter().find(|i| &i.id == id).ok_or_else(|| {
                    ProvisionError::new(ErrorClass::Transient, format!("instance {id} vanished while starting"))
                })?;
                self.node_of(i, &cfg, &key_path)
            })
            .collect()
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let ec2 = self.client(&Self::region_of(cluster)?).await;
        // Everything tagged with this cluster's id, not only the nodes on record: an instance
        // launched just before a crash is found by its tag.
        let tagged: Vec<Ec2Instance> = ec2
            .describe_cluster(&cluster.name)
            .await
            .map_err(|e| classify(&e))?
            .into_iter()
            .filter(|i| i.tags.iter().any(|(k, v)| k == "skycat-cluster-id" && v == &cluster.id))
            .collect();
        let mut ids: Vec<String> = tagged.iter().filter(|i| i.state != "terminated").map(|i| i.id.clone()).collect();
        // Nodes on record that the tag query did not find at all (tags not yet visible).
        for n in nodes {
            if let Some(id) = &n.instance_id {
                if !tagged.iter().any(|i| &i.id == id) {
                    ids.push(id.clone());
                }
            }
        }
        if !ids.is_empty() {
            match ec2.terminate(&ids).await {
                Ok(_) => {}
                Err(Ec2Error::Api { code: Some(c), .. }) if c == "InvalidInstanceID.NotFound" => {}
                Err(e) => return Err(classify(&e)),
            }
        }
        // The security group can go once its instances are gone; EC2 refuses while they shut
        // down (DependencyViolation): try for a while, then leave it (it costs nothing).
        let cfg = self.config()?;
        let vpc = ec2.find_vpc(cfg.vpc_name.as_deref()).await.ok().flatten();
        if let Ok(Some(sg)) = ec2.security_group_id(&Self::sg_name(cluster), vpc.as_deref()).await {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                match ec2.delete_security_group(&sg).await {
                    Ok(()) => break,
                    Err(e) if Instant::now() < until => {
                        tracing::debug!("deleting {sg}: {e}");
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    Err(e) => {
                        tracing::warn!("security group {sg} of {} left in place: {e}", cluster.name);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let cfg = self.config()?;
        let ec2 = self.client(&Self::region_of(cluster)?).await;
        let vpc = self.vpc(&ec2, &cfg, ec2.region()).await?;
        ec2.ensure_security_group(&Self::sg_name(cluster), Some(&vpc), ports, "0.0.0.0/0").await.map_err(|e| classify(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> Ec2Error {
        Ec2Error::Api { op: "RunInstances", region: "us-east-1".into(), code: Some(code.into()), message: "m".into() }
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(classify(&api("InsufficientInstanceCapacity")).class, ErrorClass::Capacity);
        assert_eq!(classify(&api("VcpuLimitExceeded")).class, ErrorClass::Quota);
        assert_eq!(classify(&api("UnauthorizedOperation")).class, ErrorClass::Auth);
        assert_eq!(classify(&api("RequestLimitExceeded")).class, ErrorClass::Transient);
        assert_eq!(classify(&api("Unsupported")).class, ErrorClass::Invalid);
        let e = classify(&api("VcpuLimitExceeded"));
        assert_eq!(e.code.as_deref(), Some("VcpuLimitExceeded"));
    }

    #[test]
    fn config_section() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        assert_eq!(AwsConfig::load(&p).unwrap(), AwsConfig::default());
        std::fs::write(&p, "fetch:\n  regions:\n    aws: [us-east-1]\naws:\n  vpc_name: v\n  use_internal_ips: true\n").unwrap();
        let c = AwsConfig::load(&p).unwrap();
        assert_eq!((c.vpc_name.as_deref(), c.use_internal_ips, c.user().as_str()), (Some("v"), true, "ubuntu"));
        std::fs::write(&p, "aws:\n  vpc_nmae: v\n").unwrap();
        let e = AwsConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("vpc_nmae") && e.contains("config.yaml"), "{e}");
        assert_eq!(sg_name("c", "0123456789abcdef"), "skycat-c-01234567");
    }
}
