//! RunPod as a backend, through its GraphQL API ([`api`]). A launch, in order, per node: deploy a
//! pod (`podFindAndDeployOnDemand`, or `podRentInterruptable` with a bid for spot) of the planned
//! GPU type and count in the planned data center (Secure Cloud) or country (Community Cloud), with
//! `22/tcp` plus the task's `ports` exposed on a public IP and skycat's public key in `PUBLIC_KEY`
//! (RunPod's images install it for root when `startSsh` is set); then poll `pod` until
//! `runtime.ports` maps private port 22 to a public port. The controller connects to
//! `root@<public ip>:<public port>`.
//!
//! Offers are the catalog's: `{N}x_{GPU}_{SECURE|COMMUNITY}` (SkyPilot's names), region = country,
//! zone = data center. The GPU's RunPod id comes from SkyPilot's table ([`gpu_type_id`]).
//!
//! Spot pods cannot be stopped by skycat (as on AWS); a spot pod that RunPod moves to `EXITED`
//! was interrupted (RunPod stops, not deletes, interrupted pods): [`NodeState::Preempted`].
//!
//! Environment: `RUNPOD_API_KEY` (or `SKYCAT_RUNPOD_API_KEY`), `SKYCAT_RUNPOD_ENDPOINT`,
//! `SKYCAT_RUNPOD_BOOT_TIMEOUT_SECS` (default 1200: image pulls are slow),
//! `SKYCAT_RUNPOD_IMAGE` (default image when the task has no `image_id`).

pub mod api;

use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::api::{DeployInput, EnvVar, Pod, RunPodApi};
use super::{fmt_port_range, Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow};

/// RunPod's PyTorch-less base image with sshd and `PUBLIC_KEY` handling.
pub const DEFAULT_IMAGE: &str = "runpod/base:0.6.2-cuda12.4.1";
/// Container disk when the task sets no `disk_size`.
const DEFAULT_DISK_GB: u32 = 50;

/// skycat's canonical accelerator name → RunPod's GPU type id (SkyPilot's `GPU_NAME_MAP` in
/// `sky/provision/runpod/utils.py`, which names the catalog's instance types).
pub fn gpu_type_id(accelerator: &str) -> Option<&'static str> {
    Some(match accelerator {
        "MI300X" => "AMD Instinct MI300X OAM",
        "A100-80GB" => "NVIDIA A100 80GB PCIe",
        "A100-80GB-SXM" => "NVIDIA A100-SXM4-80GB",
        "A30" => "NVIDIA A30",
        "A40" => "NVIDIA A40",
        "B200" => "NVIDIA B200",
        "RTX3070" => "NVIDIA GeForce RTX 3070",
        "RTX3080" => "NVIDIA GeForce RTX 3080",
        "RTX3080Ti" => "NVIDIA GeForce RTX 3080 Ti",
        "RTX3090" => "NVIDIA GeForce RTX 3090",
        "RTX3090Ti" => "NVIDIA GeForce RTX 3090 Ti",
        "RTX4070Ti" => "NVIDIA GeForce RTX 4070 Ti",
        "RTX4080" => "NVIDIA GeForce RTX 4080",
        "RTX4080SUPER" => "NVIDIA GeForce RTX 4080 SUPER",
        "RTX4090" => "NVIDIA GeForce RTX 4090",
        "RTX5080" => "NVIDIA GeForce RTX 5080",
        "RTX5090" => "NVIDIA GeForce RTX 5090",
        "H100-SXM" => "NVIDIA H100 80GB HBM3",
        "H100-NVL" => "NVIDIA H100 NVL",
        "H100" => "NVIDIA H100 PCIe",
        "H200-SXM" => "NVIDIA H200",
        "L4" => "NVIDIA L4",
        "L40" => "NVIDIA L40",
        "L40S" => "NVIDIA L40S",
        "RTX2000-Ada" => "NVIDIA RTX 2000 Ada Generation",
        "RTX4000-Ada" => "NVIDIA RTX 4000 Ada Generation",
        "RTX4000-Ada-SFF" => "NVIDIA RTX 4000 SFF Ada Generation",
        "RTX5000-Ada" => "NVIDIA RTX 5000 Ada Generation",
        "RTX6000-Ada" => "NVIDIA RTX 6000 Ada Generation",
        "RTXA2000" => "NVIDIA RTX A2000",
        "RTXA4000" => "NVIDIA RTX A4000",
        "RTXA4500" => "NVIDIA RTX A4500",
        "RTXA5000" => "NVIDIA RTX A5000",
        "RTXA6000" => "NVIDIA RTX A6000",
        "RTXPRO4500" => "NVIDIA RTX PRO 4500 Blackwell",
        "RTXPRO6000" => "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "RTXPRO6000-WK" => "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "V100-16GB-FHHL" => "Tesla V100-FHHL-16GB",
        "V100-16GB-SXM2" => "Tesla V100-SXM2-16GB",
        "V100-32GB-SXM2" => "Tesla V100-SXM2-32GB",
        "V100-16GB-PCIe" => "Tesla V100-PCIE-16GB",
        _ => return None,
    })
}

/// An instance type `{N}x_{GPU}_{SECURE|COMMUNITY}`, split.
#[derive(Debug, Clone, PartialEq)]
pub struct PodType {
    pub gpu_count: u32,
    pub gpu_type_id: &'static str,
    /// `SECURE` or `COMMUNITY`.
    pub cloud_type: &'static str,
}

pub fn parse_instance_type(t: &str) -> Result<PodType, ProvisionError> {
    let bad = |why: &str| {
        ProvisionError::new(ErrorClass::Invalid, format!("instance_type {t:?}: {why} (RunPod types read like 1x_A100-80GB_SECURE)"))
    };
    let mut parts = t.splitn(2, '_');
    let count = parts.next().unwrap_or_default();
    let rest = parts.next().ok_or_else(|| bad("no GPU name"))?;
    let (gpu, cloud) = rest.rsplit_once('_').ok_or_else(|| bad("no SECURE/COMMUNITY suffix"))?;
    let gpu_count: u32 = count.strip_suffix('x').and_then(|n| n.parse().ok()).filter(|n| *n > 0).ok_or_else(|| bad("the GPU count is not like 1x"))?;
    let cloud_type = match cloud {
        "SECURE" => "SECURE",
        "COMMUNITY" => "COMMUNITY",
        _ => return Err(bad("the cloud is neither SECURE nor COMMUNITY")),
    };
    let gpu_type_id = gpu_type_id(gpu).ok_or_else(|| bad(&format!("GPU {gpu} has no RunPod GPU type id")))?;
    Ok(PodType { gpu_count, gpu_type_id, cloud_type })
}

/// The pod name of a cluster's node: `{cluster}-{id8}-{rank}`, so `down` finds every pod of the
/// cluster by prefix, even one deployed just before a crash.
pub fn pod_name(cluster: &str, cluster_id: &str, rank: u32) -> String {
    format!("{}{rank}", pod_prefix(cluster, cluster_id))
}

fn pod_prefix(cluster: &str, cluster_id: &str) -> String {
    format!("{cluster}-{}-", &cluster_id[..cluster_id.len().min(8)])
}

/// The deploy input of one node (pure: tested below and against the emulator's schema).
pub fn deploy_input(req: &ProvisionRequest, rank: u32, image: &str, public_key: &str) -> Result<DeployInput, ProvisionError> {
    let p = &req.placement;
    let pod = parse_instance_type(&p.instance_type)?;
    let mut ports = vec!["22/tcp".to_string()];
    for r in &req.ports {
        if r.0 != r.1 {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("resources.ports: RunPod maps single ports, not the range {}", fmt_port_range(*r)),
            ));
        }
        if r.0 != 22 {
            ports.push(format!("{}/tcp", r.0));
        }
    }
    let bid_per_gpu = if p.use_spot {
        // The plan's spot price is per node; RunPod bids per GPU-hour.
        let bid = p.hourly_price / f64::from(pod.gpu_count);
        if !(bid.is_finite() && bid > 0.0) {
            return Err(ProvisionError::new(ErrorClass::Invalid, format!("{}: no spot price to bid in {}", p.instance_type, p.region)));
        }
        Some((bid * 1000.0).round() / 1000.0)
    } else {
        None
    };
    let (data_center_id, country_code) = match (pod.cloud_type, &p.zone) {
        ("SECURE", Some(z)) => (Some(z.clone()), None),
        _ => (None, Some(p.region.clone())),
    };
    Ok(DeployInput {
        cloud_type: pod.cloud_type.to_string(),
        gpu_count: pod.gpu_count,
        gpu_type_id: pod.gpu_type_id.to_string(),
        name: pod_name(&req.cluster, &req.cluster_id, rank),
        image_name: image.to_string(),
        container_disk_in_gb: req.disk_size_gb.unwrap_or(DEFAULT_DISK_GB),
        volume_in_gb: 0,
        volume_mount_path: "/workspace".into(),
        min_vcpu_count: p.vcpus.filter(|v| *v >= 1.0).map(|v| v as u32),
        min_memory_in_gb: p.memory_gib.filter(|v| *v >= 1.0).map(|v| v as u32),
        ports: ports.join(","),
        env: vec![EnvVar { key: "PUBLIC_KEY".into(), value: public_key.trim().to_string() }],
        data_center_id,
        country_code,
        support_public_ip: true,
        start_ssh: true,
        bid_per_gpu,
    })
}

pub struct RunPod {
    cx: BackendContext,
    boot_timeout: Duration,
}

impl RunPod {
    pub fn new(cx: BackendContext) -> RunPod {
        let boot = std::env::var("SKYCAT_RUNPOD_BOOT_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(1200.0);
        RunPod { cx, boot_timeout: Duration::from_secs_f64(boot) }
    }

    fn api(&self) -> Result<RunPodApi, ProvisionError> {
        RunPodApi::from_env()
    }

    fn key(&self) -> Result<(std::path::PathBuf, String), ProvisionError> {
        crate::keys::ensure_ssh_key(&self.cx.home).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }

    fn image(req: &ProvisionRequest) -> String {
        req.image_id
            .as_ref()
            .and_then(|i| i.for_region(&req.placement.region).map(str::to_string))
            .map(|i| i.strip_prefix("docker:").unwrap_or(&i).to_string())
            .or_else(|| std::env::var("SKYCAT_RUNPOD_IMAGE").ok().filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
    }

    /// Polls until every pod maps port 22 publicly. A pod that ends or vanishes meanwhile is a
    /// capacity failure of this placement (a spot pod interrupted while starting).
    async fn wait_ready(&self, api: &RunPodApi, ids: &[String]) -> Result<Vec<Pod>, ProvisionError> {
        let deadline = Instant::now() + self.boot_timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            let mut ready = Vec::new();
            for id in ids {
                let Some(pod) = api.pod(id).await? else {
                    return Err(ProvisionError::new(ErrorClass::Capacity, format!("pod {id} vanished while starting")));
                };
                if let Some(s @ ("EXITED" | "PAUSED" | "DEAD" | "TERMINATED")) = pod.desired_status.as_deref() {
                    return Err(ProvisionError::new(ErrorClass::Capacity, format!("pod {id} is {s} while starting")));
                }
                if pod.ssh_endpoint().is_some() {
                    ready.push(pod);
                }
            }
            if ready.len() == ids.len() {
                return Ok(ready);
            }
            if Instant::now() > deadline {
                return Err(ProvisionError::new(
                    ErrorClass::Transient,
                    format!("pods have no SSH port mapping after {:?} (SKYCAT_RUNPOD_BOOT_TIMEOUT_SECS)", self.boot_timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn node_of(pod: &Pod, zone: Option<String>, key: &std::path::Path) -> Result<ProvisionedNode, ProvisionError> {
        let (host, port) = pod.ssh_endpoint().ok_or_else(|| {
            ProvisionError::new(ErrorClass::Transient, format!("pod {} has no public mapping of port 22", pod.id))
        })?;
        Ok(ProvisionedNode {
            instance_id: pod.id.clone(),
            zone,
            target: SshTarget { host: host.clone(), port, user: "root".into(), identity_file: key.to_path_buf() },
            private_ip: pod.private_ip(),
            public_ip: Some(host),
        })
    }

    fn gpu_count(cluster: &ClusterRow) -> Result<u32, ProvisionError> {
        let t = cluster.instance_type.as_deref().ok_or_else(|| {
            ProvisionError::new(ErrorClass::Invalid, format!("cluster {} has no instance type on record", cluster.name))
        })?;
        Ok(parse_instance_type(t)?.gpu_count)
    }

    async fn terminate_all(api: &RunPodApi, ids: &[String]) {
        for id in ids {
            if let Err(e) = api.terminate(id).await {
                tracing::warn!("terminating pod {id} after a failed launch: {e}");
            }
        }
    }
}

#[async_trait]
impl Backend for RunPod {
    fn infra(&self) -> &'static str {
        "runpod"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let api = self.api()?;
        let (key_path, public_key) = self.key()?;
        let image = Self::image(req);
        let inputs: Vec<DeployInput> =
            (0..req.num_nodes.max(1)).map(|rank| deploy_input(req, rank, &image, &public_key)).collect::<Result<_, _>>()?;
        let mut ids = Vec::new();
        for input in &inputs {
            match api.deploy(input).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    Self::terminate_all(&api, &ids).await;
                    return Err(e);
                }
            }
        }
        let zone = req.placement.zone.clone();
        let ready = async {
            let pods = self.wait_ready(&api, &ids).await?;
            ids.iter()
                .map(|id| {
                    let pod = pods.iter().find(|p| &p.id == id).ok_or_else(|| {
                        ProvisionError::new(ErrorClass::Transient, format!("pod {id} vanished while starting"))
                    })?;
                    Self::node_of(pod, zone.clone(), &key_path)
                })
                .collect::<Result<Vec<_>, _>>()
        }
        .await;
        match ready {
            Ok(nodes) => Ok(Provisioned { nodes, skipped: Vec::new() }),
            Err(e) => {
                // Leave nothing behind that bills.
                Self::terminate_all(&api, &ids).await;
                Err(e)
            }
        }
    }

    async fn describe(&self, cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let Some(id) = node.instance_id.as_deref() else {
            return Ok(NodeState::Terminated { reason: Some("no pod id recorded".into()) });
        };
        let Some(pod) = self.api()?.pod(id).await? else {
            return Ok(NodeState::Terminated { reason: Some(format!("pod {id} not found")) });
        };
        Ok(match pod.desired_status.as_deref() {
            Some("RUNNING") if pod.ssh_endpoint().is_some() => NodeState::Running,
            Some("RUNNING" | "CREATED" | "RESTARTING") | None => NodeState::Pending,
            // RunPod stops an interrupted spot pod; skycat never stops spot pods itself.
            Some(s @ ("EXITED" | "PAUSED")) if cluster.spot => {
                NodeState::Preempted { reason: format!("spot pod {id} interrupted (desiredStatus {s})") }
            }
            Some(s @ ("EXITED" | "PAUSED")) => NodeState::Stopped { reason: Some(format!("desiredStatus {s}")) },
            Some(s) => NodeState::Terminated { reason: Some(format!("desiredStatus {s}")) },
        })
    }

    async fn stop(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        if cluster.spot {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("cluster {} runs on spot pods, which skycat does not stop; use `skycat down {}`", cluster.name, cluster.name),
            ));
        }
        let api = self.api()?;
        for id in nodes.iter().filter_map(|n| n.instance_id.as_deref()) {
            api.stop(id).await?;
        }
        Ok(())
    }

    async fn start(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        let api = self.api()?;
        let (key_path, _) = self.key()?;
        let gpus = Self::gpu_count(cluster)?;
        let ids: Vec<String> = nodes.iter().filter_map(|n| n.instance_id.clone()).collect();
        for id in &ids {
            api.resume(id, gpus).await?;
        }
        let pods = self.wait_ready(&api, &ids).await?;
        // The public port of 22 usually changes on resume: the caller records the new one.
        nodes
            .iter()
            .map(|n| {
                let id = n.instance_id.as_deref().unwrap_or_default();
                let pod = pods.iter().find(|p| p.id == id).ok_or_else(|| {
                    ProvisionError::new(ErrorClass::Transient, format!("pod {id} vanished while starting"))
                })?;
                Self::node_of(pod, n.zone.clone(), &key_path)
            })
            .collect()
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        let api = self.api()?;
        // Every pod named after this cluster, not only the nodes on record.
        let prefix = pod_prefix(&cluster.name, &cluster.id);
        let mut ids: Vec<String> = api
            .pods()
            .await?
            .into_iter()
            .filter(|p| p.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
            .map(|p| p.id)
            .collect();
        for id in nodes.iter().filter_map(|n| n.instance_id.clone()) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for id in &ids {
            api.terminate(id).await?;
        }
        Ok(())
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let have: Vec<String> = cluster.ports.as_deref().unwrap_or("").split(',').map(|s| s.trim().to_string()).collect();
        let missing: Vec<String> = ports.iter().map(|p| fmt_port_range(*p)).filter(|p| p != "22" && !have.contains(p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ProvisionError::new(
            ErrorClass::Invalid,
            format!(
                "RunPod sets a pod's ports when it is deployed; cluster {} cannot open {} now: `skycat down {}` and launch again with them in resources.ports",
                cluster.name,
                missing.join(","),
                cluster.name
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skycat_optimizer::Placement;

    fn request(instance_type: &str, zone: Option<&str>, spot: bool) -> ProvisionRequest {
        ProvisionRequest {
            cluster: "c1".into(),
            cluster_id: "0123456789abcdef".into(),
            placement: Placement {
                cloud: "runpod".into(),
                region: "US".into(),
                zone: zone.map(str::to_string),
                instance_type: instance_type.into(),
                vcpus: Some(8.0),
                memory_gib: Some(80.0),
                accelerator: Some("A100-80GB".into()),
                count: 2.0,
                use_spot: spot,
                hourly_price: 2.38,
                num_nodes: 1,
                hourly_total: 2.38,
                hours: 1.0,
                total_cost: 2.38,
                egress_cost: 0.0,
                spot_interruption: None,
                expected_cost: None,
            },
            num_nodes: 1,
            ports: vec![(8888, 8888)],
            disk_size_gb: None,
            image_id: None,
            avoid_nodes: Vec::new(),
        }
    }

    #[test]
    fn instance_types() {
        let t = parse_instance_type("2x_A100-80GB_SECURE").unwrap();
        assert_eq!(t, PodType { gpu_count: 2, gpu_type_id: "NVIDIA A100 80GB PCIe", cloud_type: "SECURE" });
        assert_eq!(parse_instance_type("1x_RTX4000-Ada_COMMUNITY").unwrap().gpu_type_id, "NVIDIA RTX 4000 Ada Generation");
        for bad in ["", "A100", "0x_A100-80GB_SECURE", "2x_A100-80GB", "2x_A100-80GB_OTHER", "2x_NOPE_SECURE"] {
            let e = parse_instance_type(bad).unwrap_err();
            assert_eq!(e.class, ErrorClass::Invalid, "{bad}");
            assert!(e.message.contains("instance_type"), "{e}");
        }
    }

    #[test]
    fn deploy_inputs() {
        let i = deploy_input(&request("2x_A100-80GB_SECURE", Some("US-CA-2"), true), 0, DEFAULT_IMAGE, "ssh-ed25519 AAAA k\n").unwrap();
        assert_eq!(i.name, "c1-01234567-0");
        assert_eq!(i.ports, "22/tcp,8888/tcp");
        assert_eq!((i.data_center_id.as_deref(), i.country_code.as_deref()), (Some("US-CA-2"), None));
        assert_eq!(i.bid_per_gpu, Some(1.19));
        assert_eq!(i.env, vec![EnvVar { key: "PUBLIC_KEY".into(), value: "ssh-ed25519 AAAA k".into() }]);
        let j = serde_json::to_value(&i).unwrap();
        assert_eq!(j["gpuTypeId"], "NVIDIA A100 80GB PCIe");
        assert_eq!(j["bidPerGpu"], 1.19);
        assert!(j.get("countryCode").is_none());
        let od = deploy_input(&request("1x_A100-80GB_COMMUNITY", None, false), 1, "img", "k").unwrap();
        assert_eq!((od.country_code.as_deref(), od.bid_per_gpu), (Some("US"), None));
        assert!(serde_json::to_value(&od).unwrap().get("bidPerGpu").is_none());
        let mut r = request("1x_A100-80GB_SECURE", Some("US-CA-2"), false);
        r.ports = vec![(8000, 8010)];
        assert!(deploy_input(&r, 0, "img", "k").unwrap_err().message.contains("8000-8010"));
    }
}
