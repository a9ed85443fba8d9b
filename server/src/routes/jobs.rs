//! The managed-jobs API: `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/{id}`,
//! `GET /v1/jobs/{id}/logs`, `POST /v1/jobs/{id}/cancel`. Every route needs an API token; a user
//! sees and cancels only the jobs its token submitted (another's job is 404, as if absent), an
//! admin all. The controller validates and runs the jobs; these handlers map its typed errors
//! onto [`ApiError`].

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use skycat_controller::managed::{parse_request, status, FieldError, JobError, JobView, Managed};
use skycat_controller::mounts::{FileMount, MountSource};

use crate::auth::{require_token, Auth, Principal, Role, TokenVerifier};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_bool, QueryPairs};

/// The routes, over `managed`, behind `auth`.
pub fn router(managed: Managed, auth: Auth) -> Router {
    Router::new()
        .route("/v1/jobs", post(launch).get(list))
        .route("/v1/jobs/{id}", get(one))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/costs", get(costs))
        .route_layer(axum::middleware::from_fn_with_state(auth, require_token))
        .with_state(managed)
}

/// The controller's state DB checks API tokens.
#[async_trait::async_trait]
impl TokenVerifier for skycat_controller::Store {
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String> {
        let holder = self.verify_api_token(token).await.map_err(|e| e.to_string())?;
        Ok(holder.map(|(name, role)| Principal {
            name,
            role: match role {
                skycat_controller::api_tokens::Role::Admin => Role::Admin,
                skycat_controller::api_tokens::Role::User => Role::User,
            },
        }))
    }
}

/// Job `id` if the caller may see it; another user's job is reported absent.
async fn visible(m: &Managed, who: &Principal, id: i64) -> Result<JobView, ApiError> {
    match m.job(id).await.map_err(internal)? {
        Some(v) if who.may_see(&v.owner) => Ok(v),
        _ => Err(JobError::NotFound(id).into()),
    }
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
        if e.is_unavailable() {
            return ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{e:#}"));
        }
        match e {
            JobError::NotFound(_) => ApiError::not_found(e.to_string()).field("id"),
            JobError::Invalid(f) => f.into(),
            // Refused before anything is stored or provisioned.
            JobError::OverBudget(m) => ApiError::forbidden(m).field("budget"),
            JobError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// The `/v1/*` part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(launch, list, one, logs, cancel, costs, crate::routes::heartbeat::heartbeat))]
pub struct JobsDoc;

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

/// Submits a managed job, owned by the caller's token. The body: `{"task": {"run": …, "setup",
/// "envs", "secret_envs", "num_nodes", "file_mounts": [bucket mounts], "storage_envs"}, "spec":
/// <the task YAML as parsed>, "use_spot", "strategy": "EAGER_NEXT_REGION" | "FAILOVER",
/// "max_restarts_on_errors", "name", "workdir_upload": ID, "file_mount_uploads": {DST: {"id": ID,
/// "file": BOOL}}, "hours": projected run time for the budget check (default 1)}`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(description = "The managed job", content_type = "application/json"),
    responses(
        (status = 201, description = "The job as submitted (as GET /v1/jobs/{id})", content_type = "application/json"),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 403, description = "Over the caller's monthly budget (`field`: `budget`); nothing was launched", body = ErrorBody),
        (status = 422, description = "A field is not acceptable (named in `field`)", body = ErrorBody),
    ))]
async fn launch(State(m): State<Managed>, Extension(who): Extension<Principal>, body: Bytes) -> Result<Response, ApiError> {
    let parsed = parse_request(&body)?;
    let mut req = parsed.request;
    if let Some(up) = parsed.workdir_upload {
        // Only the caller's own uploads can be named.
        let path = m.uploads(&who.name).find(&up).ok_or_else(|| {
            ApiError::invalid(format!("no upload {up} of yours (POST /v1/uploads first)")).field("workdir_upload")
        })?;
        req.task.workdir_archive = Some(path);
    }
    for (dst, up) in parsed.mount_uploads {
        let archive = m.uploads(&who.name).find(&up.id).ok_or_else(|| {
            ApiError::invalid(format!("no upload {} of yours (POST /v1/uploads first)", up.id)).field(format!("file_mount_uploads.{dst}.id"))
        })?;
        let mount = FileMount { dst, source: MountSource::Uploaded { archive, file: up.file } };
        req.task.file_mounts.push(mount);
    }
    let id = m.submit_within_budget(req, &who.name, parsed.hours).await?;
    let view = m.job(id).await.map_err(internal)?.ok_or(JobError::NotFound(id))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The caller's managed jobs (an admin: all), newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses(
        (status = 200, description = "The jobs", content_type = "application/json"),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
    ))]
async fn list(State(m): State<Managed>, Extension(who): Extension<Principal>) -> Result<Json<Vec<JobView>>, ApiError> {
    let owner = (who.role != Role::Admin).then_some(who.name.as_str());
    Ok(Json(m.jobs_of(owner).await.map_err(internal)?))
}

/// One managed job with its attempts and metered cost.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", content_type = "application/json"),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 404, description = "No such job, or another user's", body = ErrorBody),
    ))]
async fn one(State(m): State<Managed>, Extension(who): Extension<Principal>, Path(raw): Path<String>) -> Result<Json<JobView>, ApiError> {
    Ok(Json(visible(&m, &who, job_id(&raw)?).await?))
}

/// The log of every attempt of a managed job.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "`{id, status, terminal, attempts: [{attempt, log}]}`", content_type = "application/json"),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 404, description = "No such job, or another user's", body = ErrorBody),
    ))]
async fn logs(
    State(m): State<Managed>,
    Extension(who): Extension<Principal>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = job_id(&raw)?;
    visible(&m, &who, id).await?;
    let (v, logs) = m.logs(id).await?;
    Ok(Json(json!({
        "id": id,
        "status": v.status,
        "terminal": status::is_terminal(&v.status),
        "attempts": logs.into_iter().map(|(a, log)| json!({"attempt": a, "log": log})).collect::<Vec<_>>(),
    })))
}

/// Cancels a managed job (its cluster is torn down).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, CANCELLING or already ended", content_type = "application/json"),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 404, description = "No such job, or another user's", body = ErrorBody),
    ))]
async fn cancel(State(m): State<Managed>, Extension(who): Extension<Principal>, Path(raw): Path<String>) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&raw)?;
    visible(&m, &who, id).await?;
    Ok(Json(m.cancel(id).await?))
}

/// Metered costs from the agents' ledger, per user and cluster (at the price pinned at launch):
/// the caller's own, or with `all_users=true` (admins only) everyone's. `since`: a date
/// (`2026-11-01`), an RFC 3339 time, or `30d` / `12h` back from now.
#[utoipa::path(get, path = "/v1/costs", tag = "jobs",
    params(("since" = Option<String>, Query, description = "Only costs metered since"),
           ("all_users" = Option<bool>, Query, description = "Every user's (admin token only)")),
    responses(
        (status = 200, description = "`{since, lines: [{user, cluster, cloud, infra, instance_type, price_per_hour, metered_seconds, usd}]}`", content_type = "application/json"),
        (status = 400, description = "A parameter is not acceptable (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 403, description = "`all_users` without an admin token", body = ErrorBody),
    ))]
async fn costs(
    State(m): State<Managed>,
    Extension(who): Extension<Principal>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (mut since, mut all) = (None, false);
    for (k, v) in &pairs {
        match k.as_str() {
            "since" => {
                let t = skycat_controller::costs::parse_since(v, chrono::Utc::now())
                    .map_err(|e| ApiError::bad_request(format!("since: {e}")).field("since"))?;
                since = Some(t);
            }
            "all_users" => all = parse_bool("all_users", v)?,
            other => return Err(ApiError::bad_request(format!("unknown parameter `{other}` (since, all_users)")).field(other)),
        }
    }
    if all && who.role != Role::Admin {
        return Err(ApiError::forbidden("all_users needs an admin token: other users' costs are theirs").field("all_users"));
    }
    let user = (!all).then_some(who.name.as_str());
    let lines = skycat_controller::costs::team_costs(m.store(), since.as_ref(), user).await.map_err(|e| internal(e.into()))?;
    Ok(Json(json!({"since": since.as_ref().map(skycat_controller::costs::ledger_ts), "lines": lines})))
}
