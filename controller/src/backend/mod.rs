//! Provisioning backends: one [`Backend`] per infra prefix (`ssh`, `aws`, …), registered in
//! [`Backends::registry`]. A backend turns a planned placement into running nodes, reports a
//! node's state as its provider sees it, and stops, starts and terminates nodes. Which placement
//! to try comes from the optimizer (see [`crate::placement`]); the failover walk over the plan,
//! with SkyPilot's zone → region → cloud blocking, is written once, there.
//!
//! A new cloud is one new file in this folder plus one line in [`Backends::registry`].

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod kubernetes;
pub mod lambda;
mod rest;
pub mod runpod;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use skycat_optimizer::Placement;

use crate::home::Home;
use crate::ssh::{SshOptions, SshTarget};
use crate::store::{ClusterRow, NodeRow, Store};
use crate::transport::{NodeTransport, SshTransport};

/// What kind of failure a provider reported, which decides what the failover walk blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No capacity for this type here right now (EC2 `InsufficientInstanceCapacity`, a pool with
    /// too few free hosts).
    Capacity,
    /// An account limit (EC2 `VcpuLimitExceeded`, `InstanceLimitExceeded`): per region.
    Quota,
    /// Credentials missing or refused: the whole cloud is unusable.
    Auth,
    /// The request cannot work here (type not offered in this zone, bad image, no subnet).
    Invalid,
    /// Throttling, timeouts, 5xx: worth trying the next placement.
    Transient,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Capacity => "no capacity",
            ErrorClass::Quota => "quota exceeded",
            ErrorClass::Auth => "not authorized",
            ErrorClass::Invalid => "invalid request",
            ErrorClass::Transient => "transient error",
        })
    }
}

/// What the failover walk excludes after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockScope {
    Zone,
    Region,
    Cloud,
}

/// A provisioning failure, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class}: {message}")]
pub struct ProvisionError {
    pub class: ErrorClass,
    /// The provider's own code, when it gave one (`InsufficientInstanceCapacity`).
    pub code: Option<String>,
    pub message: String,
}

impl ProvisionError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> ProvisionError {
        ProvisionError { class, code: None, message: message.into() }
    }

    /// SkyPilot's blocking rules: capacity and invalid-here errors block the zone (the region
    /// when the placement has no zone), quotas the region, auth the whole cloud.
    pub fn block_scope(&self, placement_has_zone: bool) -> BlockScope {
        let zone_or_region = if placement_has_zone { BlockScope::Zone } else { BlockScope::Region };
        match self.class {
            ErrorClass::Capacity | ErrorClass::Invalid | ErrorClass::Transient => zone_or_region,
            ErrorClass::Quota => BlockScope::Region,
            ErrorClass::Auth => BlockScope::Cloud,
        }
    }
}

/// A node as its provider sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    Pending,
    Running,
    Stopped { reason: Option<String> },
    Terminated { reason: Option<String> },
    /// Taken back by the provider (a spot interruption).
    Preempted { reason: String },
}

impl NodeState {
    /// Gone for good or for now: the node cannot run work.
    pub fn is_gone(&self) -> bool {
        matches!(self, NodeState::Stopped { .. } | NodeState::Terminated { .. } | NodeState::Preempted { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            NodeState::Pending => "pending".into(),
            NodeState::Running => "running".into(),
            NodeState::Stopped { reason } => with_reason("stopped", reason.as_deref()),
            NodeState::Terminated { reason } => with_reason("terminated", reason.as_deref()),
            NodeState::Preempted { reason } => format!("preempted ({reason})"),
        }
    }
}

fn with_reason(s: &str, r: Option<&str>) -> String {
    match r {
        Some(r) if !r.is_empty() => format!("{s} ({r})"),
        _ => s.to_string(),
    }
}

/// What to provision: one placement of the plan, for one cluster.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub cluster: String,
    pub cluster_id: String,
    pub placement: Placement,
    pub num_nodes: u32,
    /// Inclusive TCP port ranges to open (the task's `resources.ports`).
    pub ports: Vec<(u16, u16)>,
    pub disk_size_gb: Option<u32>,
    /// The task's `image_id`: one image, or one per region.
    pub image_id: Option<ImageId>,
    /// Hosts (pool backends) that must not be used, e.g. a managed job's preempted hosts.
    pub avoid_nodes: Vec<String>,
}

/// SkyPilot's `image_id`: a string, or a map from region to image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ImageId {
    One(String),
    PerRegion(BTreeMap<String, String>),
}

impl ImageId {
    /// The image for `region`, if one applies.
    pub fn for_region(&self, region: &str) -> Option<&str> {
        match self {
            ImageId::One(s) => Some(s.as_str()),
            ImageId::PerRegion(m) => m.get(region).map(String::as_str),
        }
    }
}

/// One provisioned node, reachable through the backend's transport.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionedNode {
    /// The provider's id (EC2 instance id; `user@ip:port` for pool hosts).
    pub instance_id: String,
    pub zone: Option<String>,
    /// Where the transport connects.
    pub target: SshTarget,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
}

/// What a provisioning call produced: the nodes, and what it tried and skipped on the way (pool
/// hosts that did not answer), for the user to see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provisioned {
    pub nodes: Vec<ProvisionedNode>,
    /// (what, why) per skipped candidate.
    pub skipped: Vec<(String, String)>,
}

/// What every backend gets: the controller's home, state store and SSH settings.
#[derive(Clone)]
pub struct BackendContext {
    pub home: Home,
    pub store: Store,
    pub ssh: SshOptions,
}

/// One provisioning backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The infra prefix (`ssh`, `aws`): the `cloud` of the offers it serves.
    fn infra(&self) -> &'static str;

    /// How the controller reaches this backend's nodes (SSH for VMs and pool hosts).
    fn transport(&self) -> Arc<dyn NodeTransport> {
        Arc::new(SshTransport { opts: self.context().ssh.clone() })
    }

    /// The controller's home, store and SSH settings the backend was made with.
    fn context(&self) -> &BackendContext;

    /// The offers this backend can serve, from the catalog's rows (clouds) or its own
    /// configuration (SSH pools, which are not in the catalog).
    fn offers(&self, catalog: &[skycat_catalog::Offer]) -> Vec<skycat_catalog::Offer> {
        catalog.iter().filter(|o| *o.cloud == *self.infra()).cloned().collect()
    }

    /// Re-reads offers that come from live capacity rather than the catalog (Kubernetes
    /// clusters' free GPUs), for [`Backend::offers`] to serve; a no-op elsewhere.
    async fn refresh_offers(&self) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// Port → address where the cluster's opened ports are reached from outside, when that is
    /// not the head node's IP and the port itself (a Kubernetes Service); `None` otherwise.
    async fn endpoints(&self, _cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<Option<BTreeMap<u16, String>>, ProvisionError> {
        Ok(None)
    }

    /// Provisions `req.num_nodes` nodes at `req.placement`, waiting until they run. On error
    /// nothing is left running.
    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError>;

    /// The provider's view of one node.
    async fn describe(&self, cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError>;

    /// Why this backend's nodes can never be stopped (Lambda Cloud only terminates), for
    /// `skycat stop` to refuse before it touches the cluster; `None` when [`Backend::stop`] works.
    fn cannot_stop(&self, _cluster: &ClusterRow) -> Option<String> {
        None
    }

    /// Whether autostop tears the cluster down even without `--down`: where nodes cannot stop
    /// and an idle node still holds what others could use (a pod's GPUs).
    fn autostop_tears_down(&self) -> bool {
        false
    }

    /// Stops the nodes (the disk is kept; billing of compute stops).
    async fn stop(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError>;

    /// Starts stopped nodes again and returns them, with their (possibly new) addresses.
    async fn start(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError>;

    /// Terminates the nodes and whatever the backend created for the cluster.
    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError>;

    /// Opens inclusive TCP port ranges to the cluster's nodes.
    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError>;
}

/// The registered backends.
#[derive(Clone)]
pub struct Backends {
    by_infra: BTreeMap<&'static str, Arc<dyn Backend>>,
}

impl Backends {
    /// Every backend skycat has: one line each.
    pub fn registry(cx: &BackendContext) -> Backends {
        let list: Vec<Arc<dyn Backend>> = vec![
            Arc::new(ssh::SshPools::new(cx.clone())),
            Arc::new(aws::Aws::new(cx.clone())),
            Arc::new(azure::Azure::new(cx.clone())),
            Arc::new(gcp::Gcp::new(cx.clone())),
            Arc::new(kubernetes::Kubernetes::new(cx.clone())),
            Arc::new(lambda::Lambda::new(cx.clone())),
            Arc::new(runpod::RunPod::new(cx.clone())),
        ];
        Backends { by_infra: list.into_iter().map(|b| (b.infra(), b)).collect() }
    }

    /// Infra prefixes that can launch (the registry's names).
    pub fn names(&self) -> Vec<&'static str> {
        self.by_infra.keys().copied().collect()
    }

    pub fn get(&self, infra: &str) -> Option<Arc<dyn Backend>> {
        self.by_infra.get(infra).cloned()
    }

    /// The backend of a cluster (its infra's first segment).
    pub fn for_cluster(&self, c: &ClusterRow) -> Result<Arc<dyn Backend>, ProvisionError> {
        let cloud = c.infra.split('/').next().unwrap_or_default();
        self.get(cloud).ok_or_else(|| {
            ProvisionError::new(ErrorClass::Invalid, format!("cluster {} runs on {cloud:?}, which has no backend", c.name))
        })
    }
}

/// Clouds that have a provisioning backend (the registry without `ssh`), for code that has no
/// context at hand, such as `skycat check`. A test keeps it equal to the registry.
pub const CLOUD_BACKENDS: &[&str] = &["aws", "azure", "gcp", "kubernetes", "lambda", "runpod"];

/// Parses a task's `ports` entries ("8080", "8000-8010") into inclusive ranges.
pub fn parse_ports(ports: &[String]) -> Result<Vec<(u16, u16)>, ProvisionError> {
    let bad = |p: &str| {
        ProvisionError::new(ErrorClass::Invalid, format!("resources.ports: {p:?} is not a port or a range like 8000-8010"))
    };
    ports
        .iter()
        .map(|p| {
            let p = p.trim();
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            let a: u16 = a.trim().parse().map_err(|_| bad(p))?;
            let b: u16 = b.trim().parse().map_err(|_| bad(p))?;
            if a == 0 || b < a {
                return Err(bad(p));
            }
            Ok((a, b))
        })
        .collect()
}

/// `8080` or `8000-8010`.
pub fn fmt_port_range((a, b): (u16, u16)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_follows_the_error_class() {
        let e = |c| ProvisionError::new(c, "x");
        assert_eq!(e(ErrorClass::Capacity).block_scope(true), BlockScope::Zone);
        assert_eq!(e(ErrorClass::Capacity).block_scope(false), BlockScope::Region);
        assert_eq!(e(ErrorClass::Quota).block_scope(true), BlockScope::Region);
        assert_eq!(e(ErrorClass::Auth).block_scope(true), BlockScope::Cloud);
        assert_eq!(e(ErrorClass::Invalid).block_scope(true), BlockScope::Zone);
    }

    #[test]
    fn the_static_list_matches_the_registry() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let home = Home::at(dir.path());
            let store = Store::open(&home.state_db()).await.unwrap();
            let cx = BackendContext { ssh: SshOptions::new(home.known_hosts()), home, store };
            let mut names = Backends::registry(&cx).names();
            names.retain(|n| *n != "ssh");
            assert_eq!(names, CLOUD_BACKENDS);
        });
    }

    #[test]
    fn ports_and_images() {
        assert_eq!(parse_ports(&["8080".into(), "8000-8010".into()]).unwrap(), vec![(8080, 8080), (8000, 8010)]);
        for bad in ["0", "x", "9-8", "70000"] {
            assert!(parse_ports(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(fmt_port_range((1, 1)), "1");
        let m: ImageId = serde_json::from_str(r#"{"us-east-1": "ami-1"}"#).unwrap();
        assert_eq!(m.for_region("us-east-1"), Some("ami-1"));
        assert_eq!(m.for_region("us-west-2"), None);
        let one: ImageId = serde_json::from_str(r#""ami-2""#).unwrap();
        assert_eq!(one.for_region("anywhere"), Some("ami-2"));
    }
}
