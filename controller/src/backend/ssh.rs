//! SSH node pools as a backend: `$SKYCAT_HOME/ssh_node_pools.yaml` (see [`crate::pools`]). A
//! placement's region is the pool; provisioning reserves free hosts of it in the state store and
//! checks that each answers SSH, skipping (and reporting) those that don't. The hosts are the
//! user's own: stop and start keep the reservation, terminate releases it, and ports are whatever
//! the hosts' own firewalls allow.

use async_trait::async_trait;

use super::{Backend, BackendContext, ErrorClass, NodeState, ProvisionError, ProvisionRequest, Provisioned, ProvisionedNode};
use crate::pools::Pools;
use crate::ssh::SshTarget;
use crate::store::{ClusterRow, NodeRow, StoreError};

pub struct SshPools {
    cx: BackendContext,
}

impl SshPools {
    pub fn new(cx: BackendContext) -> SshPools {
        SshPools { cx }
    }

    fn pools(&self) -> Result<Pools, ProvisionError> {
        Pools::load(&self.cx.home.pools_file()).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))
    }
}

fn store_err(e: StoreError) -> ProvisionError {
    ProvisionError::new(ErrorClass::Transient, e.to_string())
}

fn node_of(target: SshTarget) -> ProvisionedNode {
    ProvisionedNode {
        instance_id: target.display(),
        zone: None,
        private_ip: Some(target.host.clone()),
        public_ip: None,
        target,
    }
}

#[async_trait]
impl Backend for SshPools {
    fn infra(&self) -> &'static str {
        "ssh"
    }

    fn context(&self) -> &BackendContext {
        &self.cx
    }

    fn offers(&self, _catalog: &[skycat_catalog::Offer]) -> Vec<skycat_catalog::Offer> {
        self.pools().map(|p| p.as_offers()).unwrap_or_default()
    }

    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
        let pools = self.pools()?;
        let pool = pools.get(&req.placement.region).map_err(|e| ProvisionError::new(ErrorClass::Invalid, e.to_string()))?;
        let need = req.num_nodes.max(1) as usize;
        let store = &self.cx.store;
        let mut picked: Vec<ProvisionedNode> = Vec::new();
        let mut skipped: Vec<(String, String)> = Vec::new();
        for host in &pool.hosts {
            if picked.len() == need {
                break;
            }
            let key = host.display();
            if req.avoid_nodes.contains(&key) {
                continue;
            }
            match store.reserve_host(&pool.name, &key, &req.cluster_id).await {
                Ok(()) => {}
                Err(StoreError::HostTaken { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
            let target = SshTarget::from(host);
            match self.transport().connect(&target).await {
                Ok(s) => {
                    s.close().await;
                    picked.push(node_of(target));
                }
                Err(e) => {
                    skipped.push((key.clone(), e.to_string()));
                    store.release_host(&pool.name, &key, &req.cluster_id).await.map_err(store_err)?;
                }
            }
        }
        if picked.len() < need {
            store.release_cluster_hosts(&req.cluster_id).await.map_err(store_err)?;
            let why = if skipped.is_empty() {
                String::new()
            } else {
                format!("; unusable: {}", skipped.iter().map(|(h, e)| format!("{h} ({e})")).collect::<Vec<_>>().join("; "))
            };
            return Err(ProvisionError::new(
                ErrorClass::Capacity,
                format!("pool {} has only {} usable free host(s), the task needs {need}{why}", pool.name, picked.len()),
            ));
        }
        Ok(Provisioned { nodes: picked, skipped })
    }

    async fn describe(&self, _cluster: &ClusterRow, node: &NodeRow) -> Result<NodeState, ProvisionError> {
        match self.transport().connect(&node.target()).await {
            Ok(s) => {
                s.close().await;
                Ok(NodeState::Running)
            }
            Err(e) => Ok(NodeState::Terminated { reason: Some(format!("the host does not answer SSH ({e})")) }),
        }
    }

    async fn stop(&self, _cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        // The hosts are the user's: they stay up and reserved; the lifecycle stops the agents.
        Ok(())
    }

    async fn start(&self, _cluster: &ClusterRow, nodes: &[NodeRow]) -> Result<Vec<ProvisionedNode>, ProvisionError> {
        Ok(nodes.iter().map(|n| node_of(n.target())).collect())
    }

    async fn terminate(&self, cluster: &ClusterRow, _nodes: &[NodeRow]) -> Result<(), ProvisionError> {
        self.cx.store.release_cluster_hosts(&cluster.id).await.map_err(store_err)
    }

    async fn open_ports(&self, _cluster: &ClusterRow, _ports: &[(u16, u16)]) -> Result<(), ProvisionError> {
        Ok(())
    }
}
