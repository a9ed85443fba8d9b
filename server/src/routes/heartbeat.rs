//! `POST /v1/agents/heartbeat` with `Authorization: Bearer <cluster token>`: the agents' reports.
//! The controller checks the token and stores the heartbeat; this maps its refusal to a status.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use skycat_controller::heartbeat::{accept, HeartbeatAck, HeartbeatError};
use skycat_controller::Store;
use skycat_protocol::HEARTBEAT_PATH;

use crate::error::ApiError;

/// The route, backed by `store`.
pub fn router(store: Store) -> Router {
    Router::new().route(HEARTBEAT_PATH, post(heartbeat)).with_state(store)
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::Unauthorized(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            HeartbeatError::BadRequest(_) => ApiError::bad_request(e.to_string()),
            // The agent keeps the heartbeat and retries.
            HeartbeatError::Store(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        }
    }
}

/// The bearer token of the request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
    (!t.is_empty()).then_some(t)
}

async fn heartbeat(State(store): State<Store>, headers: HeaderMap, body: Bytes) -> Result<Json<HeartbeatAck>, ApiError> {
    Ok(Json(accept(&store, bearer(&headers), &body).await?))
}
