//! Accepting an agent heartbeat: the token check, the ingest, and the autostop it may report.
//! The HTTP route (`POST /v1/agents/heartbeat`) is the server's (`skycat-server`, feature
//! `control`); this is what it calls.
//!
//! The token is the cluster's (generated at launch, stored hashed); a missing or wrong token, or
//! a token of another cluster, is refused ([`HeartbeatError::Unauthorized`],
//! [`HeartbeatError::Forbidden`]). Duplicates (same
//! cluster+node+seq, as an agent replays after an outage) are accepted and change nothing.

mod queue;

use std::sync::Arc;

use serde::Serialize;
use skycat_protocol::{Heartbeat, HeartbeatReason};

pub use queue::{IngestQueue, BATCHES, MAX_BATCH};

use crate::store::{hash_token, BatchOutcome, Ingested, Store};

/// Heartbeats this process stored (new ones, not duplicates): `/metrics`'
/// `skycat_heartbeats_ingested_total`, whose rate is the ingest rate.
pub static INGESTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why a heartbeat was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid token of another cluster.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(String),
    /// The state store failed; the agent retries.
    #[error("state store: {0}")]
    Store(String),
}

/// The reply to an accepted heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatAck {
    /// `stored`, or `duplicate` for a replay.
    pub status: &'static str,
    pub seq: u64,
}

/// Checks `token` against the cluster the heartbeat names, stores the heartbeat (in a batch
/// with the others arriving at this replica, [`IngestQueue`]), and records an autostop it
/// reports (tearing the cluster down when it was launched with `--down`).
pub async fn accept(queue: &IngestQueue, token: Option<&str>, body: &[u8]) -> Result<HeartbeatAck, HeartbeatError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(HeartbeatError::Unauthorized("missing bearer token"))?;
    let parsed = std::str::from_utf8(body)
        .map_err(|_| "heartbeat body is not UTF-8".to_string())
        .and_then(|text| Ok((skycat_protocol::from_json::<Heartbeat>("heartbeat", text).map_err(|e| e.to_string())?, text)));
    let (hb, text) = match parsed {
        Ok((hb, text)) => (Arc::new(hb), text.to_string()),
        // Only a cluster's own agent learns why its body was refused: the token is checked first
        // (here, off the hot path, since the batch checks the tokens of well-formed heartbeats).
        Err(why) => {
            let known = queue.store().cluster_by_token(token).await.map_err(|e| HeartbeatError::Store(e.to_string()))?;
            return Err(match known {
                None => HeartbeatError::Unauthorized("unknown cluster token"),
                Some(_) => HeartbeatError::BadRequest(why),
            });
        }
    };
    let (cluster, ingested) = match queue.submit(hash_token(token), hb.clone(), text).await.map_err(HeartbeatError::Store)? {
        BatchOutcome::UnknownToken => return Err(HeartbeatError::Unauthorized("unknown cluster token")),
        // A valid token of one cluster must not write into another.
        BatchOutcome::OtherCluster => return Err(HeartbeatError::Forbidden("this cluster token belongs to another cluster")),
        BatchOutcome::Stored(cluster, ingested) => (cluster, ingested),
    };
    if ingested == Ingested::New {
        INGESTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        record_autostop(queue.store(), &cluster, &hb).await;
    }
    let status = match ingested {
        Ingested::New => "stored",
        Ingested::Duplicate => "duplicate",
    };
    Ok(HeartbeatAck { status, seq: hb.seq })
}

async fn record_autostop(store: &Store, cluster: &crate::store::ClusterRow, hb: &Heartbeat) {
    let fired = hb.reason == HeartbeatReason::Autostop || hb.autostop.as_ref().is_some_and(|a| a.fired_at.is_some());
    let current = hb.launch_id.as_deref().is_none_or(|l| l == cluster.id);
    if !(fired && current && hb.idle_seconds > 0.0) {
        return;
    }
    let at = hb.autostop.as_ref().and_then(|a| a.fired_at).unwrap_or(hb.created_at).to_rfc3339();
    match store.mark_autostopped(&cluster.id, &at).await {
        Ok(true) => {
            tracing::info!(cluster = %cluster.name, "autostop fired: cluster stopped");
            // Pods cannot stop: an idle Kubernetes cluster is torn down (see
            // Backend::autostop_tears_down), freeing its GPUs.
            if cluster.down_on_idle || cluster.cloud() == crate::backend::kubernetes::INFRA {
                let store = store.clone();
                let name = cluster.name.clone();
                tokio::spawn(async move {
                    let home = crate::home::Home::at(store.home_dir().to_path_buf());
                    match crate::lifecycle::Controller::with_store(home, store).await {
                        Ok(ctl) => {
                            if let Err(e) = ctl.down(&name, false).await {
                                tracing::warn!(cluster = %name, "autostop --down failed: {e:#}");
                            }
                        }
                        Err(e) => tracing::warn!(cluster = %name, "autostop --down failed: {e:#}"),
                    }
                });
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("recording autostop of {}: {e}", cluster.name),
    }
}
