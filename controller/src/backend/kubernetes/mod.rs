//! Kubernetes as a backend: every kubeconfig context (or those `allowed_contexts` lists) is a
//! region of the infra `k8s`, its GPU nodes are offers with live free counts ([`inventory`]),
//! and each node of a cluster is a pod reached through `pods/exec` ([`exec`]), not SSH.
//!
//! A launch, in order: read the context's nodes and pods and fail fast with a capacity error
//! when no node has room (so the failover walk bursts to the next placement at once); create
//! one pod per rank, `<cluster>-<rank>-<id>`, labelled with the cluster, with the offer's CPUs,
//! memory and devices as requests (devices also as limits), the accelerator label of the
//! offer's nodes as node selector and their taints tolerated; wait until every pod runs, and
//! give up with a capacity error when one stays unschedulable for `provision_timeout` seconds
//! (default 10), deleting what was made. `resources.ports` become one Service (NodePort or
//! LoadBalancer) on the head pod.
//!
//! A pod cannot be stopped: `skycat stop` refuses and offers `down`, and autostop tears down.
//! The provider's view of a node ([`Backend::describe`]) calls a pod that was evicted, deleted,
//! or whose node is NotReady or gone, preempted: a managed job recovers from it, on this
//! cluster if it has room, else wherever the plan goes next.
//!
//! Prices: `kubernetes.contexts.<ctx>.gpu_hour_usd` / `vcpu_hour_usd` in `config.yaml`
//! ([`config`]); without them offers cost 0 and say so in their price breakdown, so capacity
//! you own is preferred and `cost-report` meters what you configured.

pub mod config;
pub mod exec;
pub mod inventory;
pub mod labels;
mod pods;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use skycat_catalog::Offer;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::store::{ClusterRow, NodeRow};
use crate::transport::NodeTransport;
use config::KubeSettings;
use exec::{is_transient, KubeTransport, PodRef};
use inventory::{GpuCapacity, Inventory, List, NodeObject, PodObject};

/// The infra name, SkyPilot's cloud name (`--infra k8s/<context>` means `kubernetes/<context>`).
pub const INFRA: &str = "kubernetes";

/// The label that carries a pod's cluster id.
pub const CLUSTER_ID_LABEL: &str = "skycat.dev/cluster-id";

fn err(class: ErrorClass, msg: impl Into<String>) -> ProvisionError {
    ProvisionError::new(class, msg)
}

/// Maps an API error: 401/403 are auth (the context is unusable), 409 and 422 invalid,
/// 403 quota messages quota, 429/5xx and connection trouble transient.
pub fn classify(context: &str, e: &kube::Error) -> ProvisionError {
    let class = match e {
        kube::Error::Api(s) if s.code == 403 && s.message.contains("exceeded quota") => ErrorClass::Quota,
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ErrorClass::Auth,
        _ if is_transient(e) => ErrorClass::Transient,
        _ => ErrorClass::Invalid,
    };
    let mut pe = err(class, format!("kubernetes context {context}: {e}"));
    if let kube::Error::Api(s) = e {
        pe.code = Some(s.reason.clone()).filter(|r| !r.is_empty());
    }
    pe
}

/// The kubeconfig's clients, one per context, made on first use.
pub struct Clients {
    home: PathBuf,
    by_context: Mutex<HashMap<String, kube::Client>>,
}

impl Clients {
    fn settings(&self) -> Result<KubeSettings, ProvisionError> {
        KubeSettings::load(&self.home.join("config.yaml"))
    }

    fn kubeconfig(&self, s: &KubeSettings) -> Result<Kubeconfig, ProvisionError> {
        let path = s.kubeconfig_path().ok_or_else(|| err(ErrorClass::Auth, "no kubeconfig: set KUBECONFIG or kubernetes.kubeconfig"))?;
        Kubeconfig::read_from(&path).map_err(|e| err(ErrorClass::Auth, format!("kubeconfig {}: {e}", path.display())))
    }

    /// The contexts skycat uses, with their namespaces.
    pub fn contexts(&self) -> Result<Vec<(String, String)>, ProvisionError> {
        let s = self.settings()?;
        let kc = self.kubeconfig(&s)?;
        Ok(kc
            .contexts
            .iter()
            .filter(|c| s.allows(&c.name))
            .map(|c| {
                let ns = s
                    .context(&c.name)
                    .namespace
                    .or_else(|| c.context.as_ref().and_then(|x| x.namespace.clone()))
                    .unwrap_or_else(|| "default".to_string());
                (c.name.clone(), ns)
            })
            .collect())
    }

    pub async fn client(&self, context: &str) -> Result<kube::Client, ProvisionError> {
        if let Some(c) = self.by_context.lock().map_err(|_| err(ErrorClass::Transient, "client cache poisoned"))?.get(context) {
            return Ok(c.clone());
        }
        let s = self.settings()?;
        let kc = self.kubeconfig(&s)?;
        // kube's TLS uses the process default provider; none is implied when both ring and
        // aws-lc-rs are linked. An error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let opts = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| err(ErrorClass::Auth, format!("kubernetes context {context}: {e}")))?;
        let client = kube::Client::try_from(cfg).map_err(|e| err(ErrorClass::Auth, format!("kubernetes context {context}: {e}")))?;
        if let Ok(mut m) = self.by_context.lock() {
            m.insert(context.to_string(), client.clone());
        }
        Ok(client)
    }

    /// One context's nodes and (when allowed) pods.
    pub async fn inventory(&self, context: &str) -> Result<Inventory, ProvisionError> {
        let client = self.client(context).await?;
        let nodes: List<NodeObject> = list(&client, "/api/v1/nodes").await.map_err(|e| classify(context, &e))?;
        let pods = match list::<PodObject>(&client, "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed").await {
            Ok(p) => Some(p.items),
            // Listing pods cluster-wide is often not granted: free counts become unknown.
            Err(kube::Error::Api(s)) if s.code == 403 => None,
            Err(e) => return Err(classify(context, &e)),
        };
        Ok(Inventory::new(context, &nodes.items, pods.as_deref()))
    }
}

/// A list call decoded into skycat's slim objects.
async fn list<T: serde::de::DeserializeOwned>(client: &kube::Client, path: &str) -> Result<List<T>, kube::Error> {
    let req = http::Request::get(path).body(Vec::new()).map_err(kube::Error::HttpError)?;
    client.request::<List<T>>(req).await
}

/// What `skycat check kubernetes` found.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeCheck {
    pub credentials: String,
    pub has_credentials: bool,
    pub verified: bool,
    pub call: Option<String>,
    pub error: Option<String>,
}

impl KubeCheck {
    fn none(why: String) -> KubeCheck {
        KubeCheck { credentials: "none found".into(), has_credentials: false, verified: false, call: None, error: Some(why) }
    }
}

pub struct Kubernetes {
    cx: BackendContext,
    clients: Arc<Clients>,
    /// The offers read by the last [`Backend::refresh_offers`].
    offers: Mutex<Vec<Offer>>,
}

/// The message `skycat stop` gives for a pod cluster.
pub fn no_stop_message(cluster: &str) -> String {
    format!("cluster {cluster} runs on Kubernetes, where a pod cannot be stopped (only deleted); `skycat down {cluster}` tears it down")
}

impl Kubernetes {
    pub fn new(cx: BackendContext) -> Kubernetes {
        let clients = Arc::new(Clients { home: cx.home.root.clone(), by_context: Mutex::new(HashMap::new()) });
        Kubernetes { cx, clients, offers: Mutex::new(Vec::new()) }
    }

    pub fn clients(&self) -> Arc<Clients> {
        self.clients.clone()
    }

    /// `show-gpus --infra k8s`: per context and accelerator, devices in total and free. A
    /// context that cannot be read is reported as its error.
    pub async fn gpu_capacity(&self, only: Option<&str>) -> Result<Vec<Result<Vec<GpuCapacity>, ProvisionError>>, ProvisionError> {
        let mut out = Vec::new();
        for (ctx, _) in self.clients.contexts()? {
            if only.is_some_and(|o| o != ctx) {
                continue;
            }
            out.push(self.clients.inventory(&ctx).await.map(|i| i.gpu_capacity()));
        }
        Ok(out)
    }

    /// `skycat check kubernetes`: the kubeconfig and its contexts, each verified with an
    /// authenticated read (`GET /api/v1/nodes?limit=1`, which offers need anyway). Launching is
    /// enabled when at least one context answers.
    pub async fn check(&self) -> KubeCheck {
        let path = self.clients.settings().ok().and_then(|s| s.kubeconfig_path());
        let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.kube/config".into());
        let contexts = match self.clients.contexts() {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => return KubeCheck::none(format!("kubeconfig {shown}: no context (or none in allowed_contexts)")),
            Err(e) => return KubeCheck::none(e.message),
        };
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for (ctx, _) in &contexts {
            let r = async {
                let client = self.clients.client(ctx).await?;
                list::<NodeObject>(&client, "/api/v1/nodes?limit=1").await.map_err(|e| classify(ctx, &e))
            };
            match r.await {
                Ok(_) => ok.push(ctx.clone()),
                Err(e) => errors.push(e.message),
            }
        }
        KubeCheck {
            credentials: format!("kubeconfig {shown} (contexts: {})", contexts.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")),
            has_credentials: true,
            verified: !ok.is_empty(),
            call: Some("GET /api/v1/nodes?limit=1 per context".into()),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    fn namespace_of(&self, context: &str) -> Result<String, ProvisionError> {
        self.clients
            .contexts()?
            .into_iter()
            .find(|(c, _)| c == context)
            .map(|(_, ns)| ns)
            .ok_or_else(|| err(ErrorClass::Invalid, format!("kubernetes context {context} is not in the kubeconfig (or not in allowed_contexts)")))
    }

    /// The cluster's context: the infra after `kubernetes/` (context names may hold `/`).
    fn context_of(cluster: &ClusterRow) -> String {
        cluster.infra.strip_prefix("kubernetes/").unwrap_or_default().to_string()
    }

    /// Waits until every pod runs; a capacity error when one stays unschedulable past the
    /// timeout, an invalid one when a pod fails to start.
    async fn wait_running(&self, context: &str, api: &Api<Pod>, names: &[String], timeout: Duration) -> Result<Vec<Pod>, ProvisionError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let mut running = Vec::new();
            for n in names {
                let p = api.get(n).await.map_err(|e| classify(context, &e))?;
                match pods::pod_progress(&p) {
                    pods::Progress::Running => running.push(p),
                    pods::Progress::Waiting => {}
                    pods::Progress::Unschedulable(why) if started.elapsed() >= timeout => {
                        return Err(err(ErrorClass::Capacity, format!("kubernetes context {context}: pod {n} unschedulable for {}s: {why}", timeout.as_secs())));
                    }
                    pods::Progress::Unschedulable(_) => {}
                    pods::Progress::Failed(why) => {
                        return Err(err(ErrorClass::Invalid, format!("kubernetes context {context}: pod {n} failed to start: {why}")))
                    }
                }
            }
            if running.len() == names.len() {
                return Ok(running);
            }
            // Image pulls and container starts have no fixed bound; unschedulable pods do.
            if started.elapsed() > timeout.max(Duration::from_secs(600)) {
                return Err(err(ErrorClass::Transient, format!("kubernetes context {context}: pods not running after {}s", started.elapsed().as_secs())));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn delete_pods(&self, api: &Api<Pod>, names: &[String]) {
        for n in names {
            if let Err(e) = api.delete(n, &DeleteParams::default()).await {
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    tracing::warn!("deleting pod {n}: {e}");
                }
            }
        }
    }
}

#[async_trait]
impl Backend for Kubernetes {
    fn infra(&self) -> &'static str {
        INFRA
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    fn transport(&self) -> Arc<dyn NodeTransport> {
        Arc::new(KubeTransport { clients: self.clients.clone() })
    }

    fn offers(&self, _catalog: &[Offer]) -> Vec<Offer> {
        self.offers.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn refresh_offers(&self) -> Result<(), ProvisionError> {
        let settings = self.clients.settings()?;
        let mut all = Vec::new();
        let mut errors = Vec::new();
        for (ctx, _) in self.clients.contexts()? {
            match self.clients.inventory(&ctx).await {
                Ok(inv) => all.extend(inv.offers(settings.context(&ctx).price())),
                Err(e) => errors.push(e),
            }
        }
        if let Ok(mut o) = self.offers.lock() {
            *o = all;
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn cannot_stop(&self, cluster: &ClusterRow) -> Option<String> {
        Some(no_stop_message(&cluster.name))
    }

    fn autostop_tears_down(&self) -> bool {
        // An idle pod keeps its GPUs from the team: autostop frees them.
        true
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let p = &req.placement;
        let context = p.region.clone();
        let settings = self.clients.settings()?;
        let namespace = self.namespace_of(&context)?;
        let inv = self.clients.inventory(&context).await?;
        let ask = pods::Ask::from_placement(p);
        // Fail fast when the cluster is full: the walk then bursts elsewhere at once.
        let all: Vec<_> = inv.candidates(p.accelerator.as_deref(), p.use_spot).collect();
        if all.is_empty() {
            return Err(err(ErrorClass::Invalid, format!("context {context} has no nodes for {}", ask.describe())));
        }
        let candidates: Vec<_> = all.into_iter().filter(|n| !req.avoid_nodes.contains(&n.name)).collect();
        if candidates.is_empty() {
            return Err(err(ErrorClass::Capacity, format!("context {context}: every node for {} is one this job was preempted on", ask.describe())));
        }
        // Room for every rank now (one pod each); with pod usage hidden, at least a node big
        // enough (the scheduler has the last word either way).
        let room = if inv.pods_visible {
            let slots: u64 = candidates.iter().filter_map(|n| n.slots(ask.devices, ask.cpus, ask.memory_gib)).map(u64::from).sum();
            slots >= u64::from(req.num_nodes)
        } else {
            candidates.iter().any(|n| n.fits(ask.devices, ask.cpus, ask.memory_gib))
        };
        if !room {
            return Err(err(
                ErrorClass::Capacity,
                format!("context {context}: no room for {} pod(s) of {} now", req.num_nodes, ask.describe()),
            ));
        }
        let client = self.clients.client(&context).await?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let ctx_settings = settings.context(&context);
        let mut names = Vec::new();
        for rank in 0..req.num_nodes {
            let pod = pods::pod_manifest(&pods::PodParams {
                cluster: &req.cluster,
                cluster_id: &req.cluster_id,
                rank,
                image: req.image_id.as_ref().and_then(|i| i.for_region(&context)).map(str::to_string).unwrap_or_else(|| settings.image()),
                ask: &ask,
                candidates: &candidates,
                controller_ip: ctx_settings.controller_ip.as_deref(),
                ports: &req.ports,
                avoid_nodes: &req.avoid_nodes,
            })
            .map_err(|e| err(ErrorClass::Invalid, e))?;
            let name = pod.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), &pod).await {
                Ok(_) => names.push(name),
                Err(e) => {
                    self.delete_pods(&api, &names).await;
                    return Err(classify(&context, &e));
                }
            }
        }
        let running = match self.wait_running(&context, &api, &names, settings.provision_timeout()).await {
            Ok(r) => r,
            Err(e) => {
                self.delete_pods(&api, &names).await;
                return Err(e);
            }
        };
        if !req.ports.is_empty() {
            let svc = pods::service_manifest(&req.cluster, &req.cluster_id, &req.ports, settings.ports).map_err(|e| err(ErrorClass::Invalid, e))?;
            let sapi: Api<Service> = Api::namespaced(client.clone(), &namespace);
            if let Err(e) = sapi.create(&PostParams::default(), &svc).await {
                self.delete_pods(&api, &names).await;
                return Err(classify(&context, &e));
            }
        }
        let nodes = running
            .iter()
            .map(|pod| {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
                let r = PodRef { context: context.clone(), namespace: namespace.clone(), name: name.clone() };
                // The node is the pod's failure domain: recorded as its zone, a managed job
                // avoids it after a preemption there.
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                ProvisionedNode { instance_id: name, zone: node, target: r.target(&ip), private_ip: Some(ip.clone()), public_ip: None }
            })
            .collect();
        Ok(Provisioned { nodes, skipped: Vec::new() })
    }

    async fn describe(&self, _cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        let Some(pod) = PodRef::from_target(&node.target()) else {
            return Ok(NodeState::Terminated { reason: Some("no pod recorded for this node".into()) });
        };
        let client = self.clients.client(&pod.context).await?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        let p = match api.get_opt(&pod.name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(NodeState::Preempted { reason: format!("pod {} was deleted", pod.name) }),
            Err(e) => return Err(classify(&pod.context, &e)),
        };
        let status = p.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
        if phase == "Failed" {
            let why = [status.reason.clone(), status.message.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return Ok(NodeState::Preempted { reason: if why.is_empty() { format!("pod {} failed", pod.name) } else { why } });
        }
        if phase == "Succeeded" {
            return Ok(NodeState::Terminated { reason: Some(format!("pod {} exited", pod.name)) });
        }
        if let Some(node_name) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            let napi: Api<Node> = Api::all(client);
            match napi.get_opt(&node_name).await {
                Ok(None) => return Ok(NodeState::Preempted { reason: format!("node {node_name} was removed") }),
                Ok(Some(n)) => {
                    let ready = n.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().find(|c| c.type_ == "Ready");
                    if ready.is_some_and(|c| c.status != "True") {
                        return Ok(NodeState::Preempted { reason: format!("node {node_name} is NotReady") });
                    }
                }
                // Reading nodes may be forbidden to a namespaced account: the pod's view stands.
                Err(_) => {}
            }
        }
        Ok(if phase == "Running" { NodeState::Running } else { NodeState::Pending })
    }

    async fn stop(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        Err(err(ErrorClass::Invalid, no_stop_message(&cluster.name)))
    }

    async fn start(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        Err(err(ErrorClass::Invalid, format!("cluster {} runs on Kubernetes, which has no stopped pods to start", cluster.name)))
    }

    async fn terminate(&self, cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        // Pods by the cluster's label in every namespace its nodes name (and the configured
        // one), so that a pod made just before a crash goes too.
        let context = match nodes.iter().find_map(|n| PodRef::from_target(&n.target())) {
            Some(p) => p.context,
            None => Self::context_of(cluster),
        };
        let mut namespaces: Vec<String> = nodes.iter().filter_map(|n| PodRef::from_target(&n.target()).map(|p| p.namespace)).collect();
        if let Ok(ns) = self.namespace_of(&context) {
            namespaces.push(ns);
        }
        namespaces.sort();
        namespaces.dedup();
        let client = self.clients.client(&context).await?;
        let selector = format!("{CLUSTER_ID_LABEL}={}", cluster.id);
        for ns in &namespaces {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let sapi: Api<Service> = Api::namespaced(client.clone(), ns);
            let lp = ListParams::default().labels(&selector);
            let live = api.list(&lp).await.map_err(|e| classify(&context, &e))?;
            let names: Vec<String> = live.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
            self.delete_pods(&api, &names).await;
            for s in sapi.list(&lp).await.map_err(|e| classify(&context, &e))?.items {
                if let Some(n) = s.metadata.name {
                    if let Err(e) = sapi.delete(&n, &DeleteParams::default()).await {
                        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            return Err(classify(&context, &e));
                        }
                    }
                }
            }
            // `down` returning means nothing of the cluster runs: wait (bounded) for the pods
            // to be gone.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = api.list(&lp).await.map_err(|e| classify(&context, &e))?.items.len();
                if left == 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn open_ports(&self, cluster: &ClusterRow, ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        let context = Self::context_of(cluster);
        let ns = self.namespace_of(&context)?;
        let settings = self.clients.settings()?;
        let client = self.clients.client(&context).await?;
        let sapi: Api<Service> = Api::namespaced(client, &ns);
        let svc = pods::service_manifest(&cluster.name, &cluster.id, ports, settings.ports).map_err(|e| err(ErrorClass::Invalid, e))?;
        let name = svc.metadata.name.clone().unwrap_or_default();
        if let Ok(Some(_)) = sapi.get_opt(&name).await {
            sapi.delete(&name, &DeleteParams::default()).await.map_err(|e| classify(&context, &e))?;
        }
        sapi.create(&PostParams::default(), &svc).await.map_err(|e| classify(&context, &e))?;
        Ok(())
    }

    async fn endpoints(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<Option<BTreeMap<u16, String>>, ProvisionError> {
        let context = Self::context_of(cluster);
        let ns = self.namespace_of(&context)?;
        let client = self.clients.client(&context).await?;
        let sapi: Api<Service> = Api::namespaced(client.clone(), &ns);
        let name = pods::service_name(&cluster.name, &cluster.id);
        let Some(svc) = sapi.get_opt(&name).await.map_err(|e| classify(&context, &e))? else {
            return Ok(Some(BTreeMap::new()));
        };
        let node_ip = async {
            let napi: Api<Node> = Api::all(client.clone());
            let nodes = napi.list(&ListParams::default().limit(1)).await.ok()?;
            let n = nodes.items.into_iter().next()?;
            n.status?.addresses?.into_iter().find(|a| a.type_ == "ExternalIP" || a.type_ == "InternalIP").map(|a| a.address)
        };
        Ok(Some(pods::service_endpoints(&svc, node_ip.await)))
    }
}
