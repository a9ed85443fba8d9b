//! One `skycat serve` replica among several on a shared PostgreSQL state store: what `/healthz`
//! and `/metrics` report about it, and the cron refresh that only the leader fetches for
//! (followers reload what is published). The lease itself is the controller's
//! (`skycat_controller::leader`); this module only sees it through [`ReplicaStatus`].

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use crate::refresh::{BoxFuture, RefreshAction, RefreshError};
use crate::state::CatalogData;

pub trait ReplicaStatus: Send + Sync + 'static {
    /// `leader` or `follower`.
    fn role(&self) -> &'static str;
    /// Whether the state database answers now.
    fn database_reachable(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
    /// Prometheus text lines (leader changes, lease age, heartbeat ingest).
    fn render_metrics(&self) -> String;
}

/// A shared handle on the replica's status.
#[derive(Clone)]
pub struct Replica(pub Arc<dyn ReplicaStatus>);

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({})", self.0.role())
    }
}

/// The scheduled refresh of a replica: the leader runs `leader` (fetch and publish), a follower
/// `follower` (reload what the leader published), so that providers are fetched once per tick.
pub struct LeaderOnlyRefresh {
    pub replica: Replica,
    pub leader: Arc<dyn RefreshAction>,
    pub follower: Arc<dyn RefreshAction>,
}

impl RefreshAction for LeaderOnlyRefresh {
    fn refresh(&self) -> BoxFuture<Result<CatalogData, RefreshError>> {
        if self.replica.0.role() == "leader" {
            self.leader.refresh()
        } else {
            self.follower.refresh()
        }
    }
}
