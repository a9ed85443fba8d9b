//! The managed-jobs API: `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/{id}`,
//! `GET /v1/jobs/{id}/logs`, `POST /v1/jobs/{id}/cancel`. The controller validates and runs the
//! jobs; these handlers only map its typed errors onto [`ApiError`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use skycat_controller::managed::{parse_request, status, FieldError, JobError, JobView, Managed};

use crate::error::ApiError;

/// The routes, over `managed`.
pub fn router(managed: Managed) -> Router {
    Router::new()
        .route("/v1/jobs", post(launch).get(list))
        .route("/v1/jobs/{id}", get(one))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .with_state(managed)
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        // A body that is not JSON cannot be read (400); a value that is not acceptable is 422.
        let err = if e.field == "body" { ApiError::bad_request(e.to_string()) } else { ApiError::invalid(e.to_string()) };
        err.field(e.field)
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound(_) => ApiError::not_found(e.to_string()).field("id"),
            JobError::Invalid(f) => f.into(),
            JobError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal(format!("{e:#}"))
}

/// A job id in the path: a positive integer.
fn job_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::bad_request(format!("job id must be a positive integer, got {raw:?}")).field("id"))
}

async fn launch(State(m): State<Managed>, body: Bytes) -> Result<Response, ApiError> {
    let id = m.submit(parse_request(&body)?).await?;
    let view = m.job(id).await.map_err(internal)?.ok_or(JobError::NotFound(id))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list(State(m): State<Managed>) -> Result<Json<Vec<JobView>>, ApiError> {
    Ok(Json(m.jobs().await.map_err(internal)?))
}

async fn one(State(m): State<Managed>, Path(raw): Path<String>) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&raw)?;
    Ok(Json(m.job(id).await.map_err(internal)?.ok_or(JobError::NotFound(id))?))
}

async fn logs(State(m): State<Managed>, Path(raw): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id = job_id(&raw)?;
    let (v, logs) = m.logs(id).await?;
    Ok(Json(json!({
        "id": id,
        "status": v.status,
        "terminal": status::is_terminal(&v.status),
        "attempts": logs.into_iter().map(|(a, log)| json!({"attempt": a, "log": log})).collect::<Vec<_>>(),
    })))
}

async fn cancel(State(m): State<Managed>, Path(raw): Path<String>) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&raw)?;
    Ok(Json(m.cancel(id).await?))
}
