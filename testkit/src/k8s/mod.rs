//! An EMULATION of a Kubernetes API server (core/v1 only) on a loopback HTTPS port, for the
//! Kubernetes backend's tests and for the real `kubectl`. It is not Kubernetes' code: wire shapes
//! follow the published API reference and protocols listed in testkit/emulators/kubernetes.md.
//!
//! * TLS with a CA made per emulator ([`tls`]); every request needs `Authorization: Bearer
//!   <token>`, else 401 with a `Status`.
//! * Discovery (`/version`, `/api`, `/api/v1`, `/apis`), nodes, pods and services with lists,
//!   label and field selectors, watches from a `resourceVersion` ([`routes`], [`watch`]), and
//!   `meta.k8s.io/v1` Tables for kubectl ([`table`]).
//! * A scheduler loop ([`scheduler`]) binds Pending pods to Ready nodes by node selector, taints
//!   and tolerations and resource requests against allocatable; a bound pod takes a free
//!   [`Sandbox`] (a network-namespace host from scripts/testhosts.sh) and runs.
//! * `pods/exec` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) runs the command in the
//!   pod's sandbox ([`exec`]).
//! * Faults: node NotReady or removed, kubelet eviction, a forbidden pod list.

mod discovery;
mod exec;
mod listing;
mod objects;
mod openapi;
mod quantity;
mod routes;
mod sandbox;
mod scheduler;
mod services;
mod state;
mod table;
mod tls;
mod validate;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use state::State;

/// A node as a test declares it; the emulator writes the Node object around it.
#[derive(Debug, Clone, Default)]
pub struct KubeNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Quantities by resource name: `"cpu"` → `"8"`, `"memory"` → `"64Gi"`, `"nvidia.com/gpu"` →
    /// `"8"`, `"pods"` → `"110"`. Also reported as capacity.
    pub allocatable: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// A node taint (`spec.taints[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `NoExecute` or `PreferNoSchedule`.
    pub effect: String,
}

/// A network-namespace host that backs one running pod at a time: exec runs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub netns: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub home: PathBuf,
}

/// The hosts scripts/testhosts.sh brings up (`up n` with SKYCAT_TESTHOSTS_DIR=`dir`,
/// SKYCAT_TESTHOSTS_PREFIX=`prefix`, SKYCAT_TESTHOSTS_NET=`net`), as sandboxes: host i is netns
/// `<prefix><i>`, namespace side 10.231.<net+i>.2, host side 10.231.<net+i>.1, home
/// `<dir>/host<i>/home`.
pub fn sandboxes_from_testhosts(dir: &Path, prefix: &str, net: u32, n: u32) -> Vec<Sandbox> {
    (1..=n)
        .map(|i| Sandbox {
            netns: format!("{prefix}{i}"),
            pod_ip: format!("10.231.{}.2", net + i),
            host_ip: format!("10.231.{}.1", net + i),
            home: dir.join(format!("host{i}")).join("home"),
        })
        .collect()
}

/// The emulated API server. Clones share one server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct KubeEmulator {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    server: String,
    ca_pem: String,
    token: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Dropped with the emulator: open connections (watches) end.
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Pods still running hold sandboxes with processes in them: end those, as a cluster
        // going away would.
        let slots = self.state.lock().map(|mut s| s.take_all_sandboxes()).unwrap_or_default();
        for released in slots {
            sandbox::reset(&released);
        }
    }
}

impl KubeEmulator {
    /// Starts the emulator on a free loopback port, on the caller's tokio runtime. `token` is the
    /// bearer token every request must carry.
    pub async fn start(token: &str) -> KubeEmulator {
        let identity = tls::ServerIdentity::generate();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::new(token)));
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let server_task = tokio::spawn(tls::serve(listener, identity.server_config(), routes::router(state.clone()), shutdown_rx));
        let scheduler_task = tokio::spawn(scheduler::run(state.clone()));
        KubeEmulator {
            shared: Arc::new(Shared {
                state,
                server: format!("https://127.0.0.1:{port}"),
                ca_pem: identity.ca_pem.clone(),
                token: token.to_string(),
                tasks: vec![server_task, scheduler_task],
                _shutdown: shutdown,
            }),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        self.shared.server.clone()
    }

    /// PEM of the CA that signed the serving certificate (SANs 127.0.0.1 and localhost).
    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    /// A kubeconfig with one cluster, user (the bearer token) and context named `context`, which is
    /// the current context, with `namespace` as its namespace.
    pub fn kubeconfig_yaml(&self, context: &str, namespace: &str) -> String {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.shared.ca_pem.as_bytes());
        let q = |s: &str| serde_json::to_string(s).expect("string"); // JSON strings are YAML scalars
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {c}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {c}\n  user:\n    token: {token}\ncontexts:\n- name: {c}\n  context:\n    cluster: {c}\n    user: {c}\n    namespace: {ns}\ncurrent-context: {c}\npreferences: {{}}\n",
            c = q(context),
            server = q(&self.shared.server),
            token = q(&self.shared.token),
            ns = q(namespace),
        )
    }

    /// Adds a Ready node (or replaces the one with that name); watchers see ADDED.
    pub fn add_node(&self, node: KubeNode) {
        self.lock().add_node(&node);
    }

    /// Ready or NotReady. NotReady is what the node lifecycle controller writes when the kubelet
    /// stops posting status: Ready condition Unknown, the `node.kubernetes.io/unreachable:NoSchedule`
    /// taint, and its pods' Ready condition False. The scheduler skips it; exec into its pods fails.
    pub fn set_node_ready(&self, name: &str, ready: bool) {
        self.lock().set_node_ready(name, ready);
    }

    /// The node is deleted (spot reclaim, node loss): its pods are deleted (DELETED events), their
    /// processes killed and their sandboxes freed.
    pub fn remove_node(&self, name: &str) {
        let freed = self.lock().remove_node(name);
        sandbox::reset_and_free(&self.shared.state, freed);
    }

    /// The kubelet evicts the pod: phase Failed, reason Evicted, processes killed, sandbox freed;
    /// the object stays until deleted.
    pub fn evict_pod(&self, namespace: &str, name: &str) {
        let freed = self.lock().evict_pod(namespace, name);
        sandbox::reset_and_free(&self.shared.state, freed);
    }

    /// While true, GET pod lists (any scope, watches too) answer 403; single pods still work.
    pub fn forbid_pod_list(&self, forbid: bool) {
        self.lock().forbid_pod_list = forbid;
    }

    /// Adds network-namespace hosts to the pool that backs running pods.
    pub fn add_sandboxes(&self, sandboxes: Vec<Sandbox>) {
        let slots: Vec<sandbox::SandboxSlot> = sandboxes.into_iter().map(sandbox::SandboxSlot::new).collect();
        let mut state = self.lock();
        state.sandboxes.extend(slots);
        state.sandboxes_freed += 1; // new room for waiting pods
    }

    /// Addresses handed out as LoadBalancer ingress IPs, in order (default 10.97.0.1, .2, …).
    /// They are never dialed.
    pub fn set_load_balancer_ips(&self, ips: Vec<String>) {
        self.lock().load_balancer_pool = ips.into();
    }

    /// Inserts `n` Running pods named `bulk-<k>` bound to `node`, each requesting `requests`, with
    /// no sandbox (for accounting and benchmarks; exec into them is 400 "no sandbox").
    pub fn add_pods_bulk(&self, namespace: &str, node: &str, n: usize, requests: BTreeMap<String, String>) {
        self.lock().add_pods_bulk(namespace, node, n, &requests);
    }

    /// A snapshot of every pod object.
    pub fn pods(&self) -> Vec<Value> {
        self.lock().pods.values().map(|p| p.stored.value.clone()).collect()
    }

    /// A snapshot of every service object.
    pub fn services(&self) -> Vec<Value> {
        self.lock().services.values().map(|s| s.value.clone()).collect()
    }

    /// Every request as `METHOD path?query`, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Requests refused as malformed or unknown (`METHOD path?query: why`).
    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
