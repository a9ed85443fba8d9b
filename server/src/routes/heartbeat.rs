//! `POST /v1/agents/heartbeat` with `Authorization: Bearer <cluster token>`: the agents' reports.
//! The controller checks the token and stores the heartbeat; this maps its refusal to a status.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use skycat_controller::heartbeat::{accept, HeartbeatAck, HeartbeatError, IngestQueue};
use skycat_controller::Store;
use skycat_protocol::HEARTBEAT_PATH;

use crate::auth::bearer;
use crate::error::{ApiError, ErrorBody};

/// The route, backed by `store`: heartbeats arriving together are written together (one
/// transaction per batch, see [`IngestQueue`]).
pub fn router(store: Store) -> Router {
    Router::new().route(HEARTBEAT_PATH, post(heartbeat)).with_state(IngestQueue::new(store))
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::Unauthorized(_) => ApiError::unauthorized(e.to_string()),
            HeartbeatError::Forbidden(_) => ApiError::forbidden(e.to_string()),
            HeartbeatError::BadRequest(_) => ApiError::bad_request(e.to_string()),
            // The agent keeps the heartbeat and retries.
            HeartbeatError::Store(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        }
    }
}

/// An agent's heartbeat: node status, jobs, metered cost, autostop.
#[utoipa::path(post, path = "/v1/agents/heartbeat", tag = "agents", security(("cluster_token" = [])),
    request_body(description = "skycat_protocol::Heartbeat", content_type = "application/json"),
    responses(
        (status = 200, description = "`{status: stored | duplicate, seq}`", content_type = "application/json"),
        (status = 400, description = "Not a heartbeat", body = ErrorBody),
        (status = 401, description = "No or an unknown cluster token", body = ErrorBody),
        (status = 403, description = "Another cluster's token", body = ErrorBody),
        (status = 503, description = "The state store is unavailable; the agent retries", body = ErrorBody),
    ))]
pub(crate) async fn heartbeat(State(queue): State<IngestQueue>, headers: HeaderMap, body: Bytes) -> Result<Json<HeartbeatAck>, ApiError> {
    Ok(Json(accept(&queue, bearer(&headers), &body).await?))
}
