//! The heartbeat endpoint: `POST /v1/agents/heartbeat` with `Authorization: Bearer <token>`.
//! The token is the cluster's (generated at launch, stored hashed); a missing or wrong token, or
//! a token of another cluster, gets 401. Duplicates (same cluster+node+seq, as an agent replays
//! after an outage) get 200 and change nothing. Mount with `Router::merge` in `skycat serve`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use skycat_protocol::{Heartbeat, HeartbeatReason, HEARTBEAT_PATH};

use crate::store::{Ingested, Store};

/// The router serving [`HEARTBEAT_PATH`], backed by `store`.
pub fn router(store: Store) -> Router {
    Router::new().route(HEARTBEAT_PATH, post(heartbeat)).with_state(store)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
    (!t.is_empty()).then_some(t)
}

async fn heartbeat(State(store): State<Store>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = bearer(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let cluster = match store.cluster_by_token(token).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::UNAUTHORIZED, "unknown cluster token"),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return error(StatusCode::BAD_REQUEST, "heartbeat body is not UTF-8"),
    };
    let hb: Heartbeat = match skycat_protocol::from_json("heartbeat", text) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if hb.cluster != cluster.name {
        // A valid token of one cluster must not write into another.
        return error(StatusCode::UNAUTHORIZED, "token does not belong to this cluster");
    }
    let ingested = match store.ingest_heartbeat(&cluster, &hb).await {
        Ok(i) => i,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if ingested == Ingested::New {
        let fired = hb.reason == HeartbeatReason::Autostop
            || hb.autostop.as_ref().is_some_and(|a| a.fired_at.is_some());
        let current = hb.launch_id.as_deref().is_none_or(|l| l == cluster.id);
        if fired && current && hb.idle_seconds > 0.0 {
            let at = hb
                .autostop
                .as_ref()
                .and_then(|a| a.fired_at)
                .unwrap_or(hb.created_at)
                .to_rfc3339();
            match store.mark_autostopped(&cluster.id, &at).await {
                Ok(true) => {
                    tracing::info!(cluster = %cluster.name, "autostop fired: cluster stopped");
                    if cluster.down_on_idle {
                        let store = store.clone();
                        let name = cluster.name.clone();
                        tokio::spawn(async move {
                            let home = crate::home::Home::at(
                                store.path().parent().map(|p| p.to_path_buf()).unwrap_or_default(),
                            );
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
    }
    let status = match ingested {
        Ingested::New => "stored",
        Ingested::Duplicate => "duplicate",
    };
    (StatusCode::OK, Json(json!({ "status": status, "seq": hb.seq }))).into_response()
}
