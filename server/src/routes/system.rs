//! `GET /healthz`, `GET /metrics`, `GET /openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers: it always has a catalog in service.
    pub status: String,
    pub catalog_version: u64,
    pub rows: usize,
    pub started_at: DateTime<Utc>,
    pub version: String,
    /// The catalog store this replica reads (`--catalog-store`), if any: the version served,
    /// the newest seen, the lag, and whether the store answered the last poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_store: Option<crate::store_health::CatalogStoreHealth>,
    /// With a shared state database: `leader` (runs managed jobs and the cron refresh) or
    /// `follower`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// With a shared state database: `reachable` or `unreachable` (writes answer 503 then;
    /// `/optimize` keeps answering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Liveness and readiness: the server is up and has a catalog in service.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    let (role, database) = match &state.config.replica {
        Some(r) => {
            let reachable = r.0.database_reachable().await;
            (Some(r.0.role().to_string()), Some(if reachable { "reachable" } else { "unreachable" }.to_string()))
        }
        None => (None, None),
    };
    let snap = state.snapshot_guard();
    Json(Health {
        status: "ok".into(),
        catalog_version: snap.version,
        rows: snap.offers().len(),
        started_at: state.started_at,
        version: env!("CARGO_PKG_VERSION").into(),
        catalog_store: state.catalog_store_health(),
        role,
        database,
    })
}

/// Prometheus text exposition: request counts and latency per route, catalog rows and age per
/// cloud, refresh successes and failures.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render() + &state.config.replica.as_ref().map(|r| r.0.render_metrics()).unwrap_or_default(),
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API, generated from the request and response types.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}
