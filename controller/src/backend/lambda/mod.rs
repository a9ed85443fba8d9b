//! Lambda Cloud as a backend, over its REST API ([`api`]). A launch, in order: register
//! skycat's SSH public key (`GET /ssh-keys`, `POST /ssh-keys` when no key with that public half
//! exists); read `GET /instance-types` and fail fast with a capacity error when the planned region
//! is not in the type's `regions_with_capacity_available` (launches are rate-limited to about one
//! per 12 s, so SkyPilot checks first too); one `POST /instance-operations/launch` per node, named
//! `skycat-<cluster id>-<rank>-<cluster>`; then `GET /instances` until every node is `active`.
//! The controller reaches the nodes over SSH at their public `ip`.
//!
//! Lambda has no zones, no spot market and no stop: `skycat stop` refuses before touching the
//! cluster and offers `skycat down` (as SkyPilot does), and autostop can only tear down.
//! Membership is by name prefix (older API versions have no tags), so `down` also finds a node
//! launched just before a crash.
//!
//! Errors by Lambda's `error.code`: `instance-operations/launch/insufficient-capacity` is a
//! capacity error (the region is blocked, the walk moves on), `global/quota-exceeded` a quota
//! error, `global/invalid-api-key` / `global/account-inactive` / `global/invalid-address` (and
//! HTTP 401/403) block the whole cloud, 429 and 5xx are transient.
//!
//! `$SKYCAT_HOME/config.yaml`:
//! ```yaml
//! lambda:
//!   ssh_user: ubuntu     # the image's login user (default ubuntu)
//! ```
//! Endpoint `SKYCAT_LAMBDA_ENDPOINT` (default `https://cloud.lambda.ai/`), key
//! `SKYCAT_LAMBDA_API_KEY` or `LAMBDA_API_KEY` — as the price fetcher and `skycat check` use.

pub mod api;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow};
use api::{ImageSpec, Instance, LambdaApi, LambdaError, LaunchRequest};

/// Lambda's capacity error code.
pub const INSUFFICIENT_CAPACITY: &str = "instance-operations/launch/insufficient-capacity";

/// The `lambda:` section of `$SKYCAT_HOME/config.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    #[serde(default)]
    pub ssh_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    lambda: Option<LambdaConfig>,
}

impl LambdaConfig {
    /// Reads the `lambda:` section (missing file or section: defaults). An unknown key is an
    /// error naming the file and the key.
    pub fn load(path: &std::path::Path) -> Result<LambdaConfig, ProvisionError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LambdaConfig::default()),
            Err(e) => return Err(ProvisionError::new(ErrorClass::Invalid, format!("{}: {e}", path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(LambdaConfig::default());
        }
        let f: ConfigFile = serde_yaml::from_str(&text)
            .map_err(|e| ProvisionError::new(ErrorClass::Invalid, format!("{}: lambda: {e}", path.display())))?;
        Ok(f.lambda.unwrap_or_default())
    }

    pub fn user(&self) -> String {
        self.ssh_user.clone().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "ubuntu".to_string())
    }
}

/// Maps a Lambda API error to a class, by the documented codes, else by HTTP status.
pub fn classify(e: &LambdaError) -> ProvisionError {
    let class = match (e.code.as_deref(), e.status) {
        (_, Some(429)) => ErrorClass::Transient,
        (Some(INSUFFICIENT_CAPACITY), _) => ErrorClass::Capacity,
        (Some("global/quota-exceeded"), _) => ErrorClass::Quota,
        (Some("global/invalid-api-key" | "global/account-inactive" | "global/invalid-address" | "global/forbidden"), _) => {
            ErrorClass::Auth
        }
        (Some(c), _) if c == "global/internal-error" || c.starts_with("provider/") => ErrorClass::Transient,
        (Some(_), _) => ErrorClass::Invalid,
        (None, Some(401 | 403)) => ErrorClass::Auth,
        (None, Some(s)) if s >= 500 => ErrorClass::Transient,
        (None, Some(_)) => ErrorClass::Invalid,
        // No answer at all (refused, timeout), or no key configured.
        (None, None) if e.op == "credentials" => ErrorClass::Auth,
        (None, None) => ErrorClass::Transient,
    };
    ProvisionError { class, code: e.code.clone(), message: e.to_string() }
}

/// Instance statuses (spec 1.5.3 + `preempted` from 1.8.3; `error` is undocumented but seen).
fn node_state(i: &Instance) -> NodeState {
    match i.status.as_str() {
        "active" => NodeState::Running,
        // SkyPilot counts `unhealthy` as INIT: it may recover.
        "booting" | "unhealthy" => NodeState::Pending,
        "preempted" => NodeState::Preempted { reason: format!("Lambda Cloud preempted instance {}", i.id) },
        "terminating" | "terminated" => NodeState::Terminated { reason: Some(format!("instance {} is {}", i.id, i.status)) },
        other => NodeState::Terminated { reason: Some(format!("instance {} has status {other:?}", i.id)) },
    }
}

/// `skycat-<first 8 of the cluster id>-`: every node of the cluster is named with it.
pub fn name_prefix(cluster_id: &str) -> String {
    format!("skycat-{}-", &cluster_id[..cluster_id.len().min(8)])
}

/// A node's instance name, at most 64 characters (the API's limit); the prefix and rank come
/// first so that truncating a long cluster name keeps them.
pub fn node_name(cluster: &str, cluster_id: &str, rank: u32) -> String {
    let mut n = format!("{}{rank}-{cluster}", name_prefix(cluster_id));
    if n.len() > 64 {
        let mut cut = 64;
        while !n.is_char_boundary(cut) {
            cut -= 1;
        }
        n.truncate(cut);
    }
    n
}

/// The message `skycat stop` gives on Lambda.
pub fn no_stop_message(cluster: &str) -> String {
    format!(
        "cluster {cluster} runs on Lambda Cloud, which cannot stop instances (only terminate them); \
         `skycat down {cluster}` tears it down"
    )
}

pub struct Lambda {
    cx: BackendContext,
    /// How long to wait for `active` (`SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS`, default 20 min: GPU VMs
    /// take minutes).
    boot_timeout: Duration,
    /// A client given by the caller instead of the one the environment describes (tests).
    api: Option<LambdaApi>,
}

impl Lambda {
    pub fn new(cx: BackendContext) -> Lambda {
        let boot = std::env::var("SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(1200.0);
        Lambda { cx, boot_timeout: Duration::from_secs_f64(boot), api: None }
    }

    /// A backend on this client, whatever the environment says.
    pub fn with_api(cx: BackendContext, api: LambdaApi) -> Lambda {
        Lambda { api: Some(api), ..Lambda::new(cx) }
    }

    fn config(&self) -> Result<LambdaConfig, ProvisionError> {
        LambdaConfig::load(&self.cx.home.root.join("config.yaml"))
    }

    fn api(&self) -> Result<LambdaApi, ProvisionError> {
        if let Some(a) = &self.api {
            return Ok(a.clone());
        }
        LambdaApi::from_env().map_err(|e| classify(&e))
    }

    fn key(&self) -> Result<(PathBuf, String), ProvisionError> {
        crate::keys::ensure_ssh_key(&self.cx.home).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }

    /// The name of a registered key with this public half, registering it when there is none.
    async fn ensure_key(&self, api: &LambdaApi, public: &str) -> Result<String, ProvisionError> {
        let same = |k: &api::SshKey| k.public_key.as_deref().is_some_and(|p| key_body(p) == key_body(public));
        let keys = api.ssh_keys().await.map_err(|e| classify(&e))?;
        if let Some(k) = keys.iter().find(|k| same(k)) {
            return Ok(k.name.clone());
        }
        let name = crate::keys::key_pair_name(public);
        if keys.iter().any(|k| k.name == name) {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("an SSH key named {name} is registered on Lambda Cloud with another public key; delete it or move $SKYCAT_HOME/keys"),
            ));
        }
        let k = api.add_ssh_key(&name, public.trim()).await.map_err(|e| classify(&e))?;
        Ok(k.name)
    }

    /// Polls `GET /instances` until every id is `active` with an IP. A node that ends while
    /// booting is a capacity failure (the caller terminates the rest).
    async fn wait_active(&self, api: &LambdaApi, ids: &[String]) -> Result<Vec<Instance>, ProvisionError> {
        let deadline = Instant::now() + self.boot_timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            let all = api.instances().await.map_err(|e| classify(&e))?;
            let mine: Vec<&Instance> = ids.iter().filter_map(|id| all.iter().find(|i| &i.id == id)).collect();
            if let Some(gone) = mine.iter().find(|i| node_state(i).is_gone()) {
                return Err(ProvisionError::new(
                    ErrorClass::Capacity,
                    format!("instance {} went {} while booting", gone.id, gone.status),
                ));
            }
            if mine.len() == ids.len() && mine.iter().all(|i| i.status == "active" && i.ip.is_some()) {
                return Ok(mine.into_iter().cloned().collect());
            }
            if Instant::now() > deadline {
                return Err(ProvisionError::new(
                    ErrorClass::Transient,
                    format!("instances not active after {:?} (SKYCAT_LAMBDA_BOOT_TIMEOUT_SECS)", self.boot_timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Terminates `ids`, logging (not failing) when that does not work: used after a failed launch.
    async fn cleanup(&self, api: &LambdaApi, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = api.terminate(ids).await {
            tracing::warn!("terminating {ids:?} after a failed launch: {e}");
        }
    }

    async fn launch_nodes(&self, api: &LambdaApi, req: &ProvisionRequest, key_name: &str, ids: &mut Vec<String>) -> Result<(), ProvisionError> {
        let p = &req.placement;
        let image = req.image_id.as_ref().and_then(|i| i.for_region(&p.region)).map(|s| match s.strip_prefix("family:") {
            Some(f) => ImageSpec::Family(f.to_string()),
            None => ImageSpec::Id(s.to_string()),
        });
        for rank in 0..req.num_nodes.max(1) {
            let body = LaunchRequest {
                region_name: p.region.clone(),
                instance_type_name: p.instance_type.clone(),
                ssh_key_names: vec![key_name.to_string()],
                file_system_names: Vec::new(),
                quantity: 1,
                name: node_name(&req.cluster, &req.cluster_id, rank),
                image: image.clone(),
            };
            let got = api.launch(&body).await.map_err(|e| classify(&e))?;
            let n = got.len();
            ids.extend(got);
            if n != 1 {
                return Err(ProvisionError::new(
                    ErrorClass::Capacity,
                    format!("launch of {} in {} returned {n} instance ids instead of 1", p.instance_type, p.region),
                ));
            }
        }
        Ok(())
    }

    /// Instances of `cluster`: named with its prefix, or on record.
    async fn cluster_instances(&self, api: &LambdaApi, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<Instance>, ProvisionError> {
        let prefix = name_prefix(&cluster.id);
        let all = api.instances().await.map_err(|e| classify(&e))?;
        Ok(all
            .into_iter()
            .filter(|i| {
                i.name.as_deref().is_some_and(|n| n.starts_with(&prefix))
                    || nodes.iter().any(|n| n.instance_id.as_deref() == Some(i.id.as_str()))
            })
            .collect())
    }
}

/// An OpenSSH public key without its comment (`ssh-ed25519 AAAA…`).
fn key_body(k: &str) -> String {
    k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl Backend for Lambda {
    fn infra(&self) -> &'static str {
        "lambda"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    fn cannot_stop(&self, cluster: &ClusterRow) -> Option<String> {
        Some(no_stop_message(&cluster.name))
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let p = &req.placement;
        if p.use_spot {
            return Err(ProvisionError::new(ErrorClass::Invalid, "Lambda Cloud sells no spot instances (use_spot)"));
        }
        if let Some(z) = &p.zone {
            return Err(ProvisionError::new(ErrorClass::Invalid, format!("Lambda Cloud has no zones (zone {z} in {})", p.region)));
        }
        let cfg = self.config()?;
        let api = self.api()?;
        let (key_path, public) = self.key()?;
        if !req.ports.is_empty() {
            let ports: Vec<String> = req.ports.iter().map(|r| super::fmt_port_range(*r)).collect();
            tracing::warn!(
                "Lambda Cloud: skycat does not change the account's firewall rules; make sure they allow TCP {}",
                ports.join(",")
            );
        }
        let key_name = self.ensure_key(&api, &public).await?;
        let types = api.instance_types().await.map_err(|e| classify(&e))?;
        let Some(t) = types.get(&p.instance_type) else {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("instance type {} is not offered by Lambda Cloud (GET /instance-types)", p.instance_type),
            ));
        };
        if !t.regions_with_capacity_available.iter().any(|r| r.name == p.region) {
            let with: Vec<&str> = t.regions_with_capacity_available.iter().map(|r| r.name.as_str()).collect();
            return Err(ProvisionError {
                class: ErrorClass::Capacity,
                code: None,
                message: format!(
                    "no capacity for {} in {} (GET /instance-types lists capacity in: {})",
                    p.instance_type,
                    p.region,
                    if with.is_empty() { "no region".to_string() } else { with.join(" ") }
                ),
            });
        }
        let mut ids = Vec::new();
        if let Err(e) = self.launch_nodes(&api, req, &key_name, &mut ids).await {
            self.cleanup(&api, &ids).await;
            return Err(e);
        }
        match self.wait_active(&api, &ids).await {
            Ok(active) => {
                let user = cfg.user();
                let nodes = ids
                    .iter()
                    .map(|id| {
                        let i = active.iter().find(|i| &i.id == id).expect("wait_active returns every id");
                        ProvisionedNode {
                            instance_id: i.id.clone(),
                            zone: None,
                            target: SshTarget {
                                host: i.ip.clone().unwrap_or_default(),
                                port: 22,
                                user: user.clone(),
                                identity_file: key_path.clone(),
                            },
                            private_ip: i.private_ip.clone(),
                            public_ip: i.ip.clone(),
                        }
                    })
                    .collect();
                Ok(Provisioned { nodes, skipped: Vec::new() })
            }
            Err(e) => {
                self.cleanup(&api, &ids).await;
                Err(e)
            }
        }
    }

    async fn describe(&self, _cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let Some(id) = node.instance_id.as_deref() else {
            return Ok(NodeState::Terminated { reason: Some("no instance id recorded".into()) });
        };
        let api = self.api()?;
        match api.instance(id).await.map_err(|e| classify(&e))? {
            Some(i) => Ok(node_state(&i)),
            None => Ok(NodeState::Terminated { reason: Some(format!("instance {id} not found")) }),
        }
    }

    async fn stop(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        Err(ProvisionError::new(ErrorClass::Invalid, no_stop_message(&cluster.name)))
    }

    async fn start(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        Err(ProvisionError::new(
            ErrorClass::Invalid,
            format!("cluster {} runs on Lambda Cloud, which has no stopped instances to start", cluster.name),
        ))
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let api = self.api()?;
        let live: Vec<String> = self
            .cluster_instances(&api, cluster, nodes)
            .await?
            .into_iter()
            .filter(|i| i.status != "terminated" && i.status != "terminating")
            .map(|i| i.id)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        match api.terminate(&live).await {
            Ok(_) => {}
            // Gone between the list and the call.
            Err(e) if e.code.as_deref() == Some("global/object-does-not-exist") => {}
            Err(e) => return Err(classify(&e)),
        }
        // Terminate answers before the VMs are gone: wait (bounded) so that `down` returning
        // means nothing of the cluster runs any more.
        let deadline = Instant::now() + self.boot_timeout.min(Duration::from_secs(300));
        let mut pause = Duration::from_millis(200);
        loop {
            let left: Vec<String> = self
                .cluster_instances(&api, cluster, nodes)
                .await?
                .into_iter()
                .filter(|i| live.contains(&i.id) && i.status != "terminated")
                .map(|i| format!("{} ({})", i.id, i.status))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                tracing::warn!("Lambda Cloud: {} still not terminated: {}", cluster.name, left.join(", "));
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let ports: Vec<String> = ports.iter().map(|r| super::fmt_port_range(*r)).collect();
        Err(ProvisionError::new(
            ErrorClass::Invalid,
            format!(
                "cluster {}: skycat does not change Lambda Cloud's account-wide firewall rules; allow TCP {} in the Lambda Cloud console",
                cluster.name,
                ports.join(",")
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
