//! One `skycat serve` replica among several on a shared PostgreSQL state store: what `/healthz`
//! and `/metrics` report about it, and the cron refresh that only the leader fetches for. A
//! follower's tick either reloads `$SKYCAT_HOME` (shared catalogs folder, no catalog store) or,
//! with a catalog store, does nothing: the store poller already swaps in each version the leader
//! publishes, and a tick of its own could only step the catalog back or publish a rival
//! version. The lease itself is the controller's (`skycat_controller::leader`); this module only
//! sees it through [`ReplicaStatus`].

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use crate::refresh::{BoxFuture, RefreshAction, RefreshError, Refreshed};

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
/// `follower` (reload what the leader published, or [`DeferToCatalogStore`]), so that providers
/// are fetched once per tick. The role is read when the tick starts.
pub struct LeaderOnlyRefresh {
    pub replica: Replica,
    pub leader: Arc<dyn RefreshAction>,
    pub follower: Arc<dyn RefreshAction>,
}

impl RefreshAction for LeaderOnlyRefresh {
    fn refresh(&self) -> BoxFuture<Result<Refreshed, RefreshError>> {
        if self.replica.0.role() == "leader" {
            self.leader.refresh()
        } else {
            self.follower.refresh()
        }
    }
}

/// A tick with a catalog store on a replica that does not fetch (a follower, or `--reload-only`):
/// nothing to fetch, nothing to swap. Its catalog is the store's newest version, which the store
/// poller swaps in.
pub struct DeferToCatalogStore {
    /// The store's URL, for the reason line.
    pub store: String,
}

impl RefreshAction for DeferToCatalogStore {
    fn refresh(&self) -> BoxFuture<Result<Refreshed, RefreshError>> {
        let reason = format!("the catalog comes from the catalog store {} (its poller swaps in each published version)", self.store);
        Box::pin(async move { Ok(Refreshed::Deferred(reason)) })
    }
}
