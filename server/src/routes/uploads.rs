//! `POST /v1/uploads`: a client's workdir as a tar (or gzipped tar) body, streamed to the
//! caller's own uploads folder. The answer's `id` goes into `POST /v1/jobs` as
//! `workdir_upload`; the nodes' agents unpack it and refuse entries that would land outside the
//! workdir. Mounted with [`crate::AppBuilder::merge_streaming`]: it has its own size limit.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::json;
use skycat_controller::managed::Managed;
use tokio::io::AsyncWriteExt;

use crate::auth::{require_token, Auth, Principal};
use crate::error::{ApiError, ErrorBody};

#[derive(Clone)]
struct UploadState {
    managed: Managed,
    limit: u64,
}

/// The route, over `managed`'s home, behind `auth`, accepting at most `limit` bytes a body.
pub fn router(managed: Managed, auth: Auth, limit: u64) -> Router {
    Router::new()
        .route("/v1/uploads", post(upload))
        .route_layer(axum::middleware::from_fn_with_state(auth, require_token))
        .layer(DefaultBodyLimit::disable())
        .with_state(UploadState { managed, limit })
}

/// The `/v1/uploads` part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload))]
pub struct UploadsDoc;

/// Stores a workdir archive (tar, or tar.gz) for the caller's next managed jobs.
#[utoipa::path(post, path = "/v1/uploads", tag = "jobs",
    request_body(description = "A tar or gzipped tar of the workdir (`skycat jobs launch` packs it, honouring .skyignore/.gitignore)", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "`{id, bytes}`: pass `id` as `workdir_upload` in POST /v1/jobs", content_type = "application/json"),
        (status = 401, description = "No or an unknown API token", body = ErrorBody),
        (status = 413, description = "Larger than the server's upload limit", body = ErrorBody),
    ))]
async fn upload(State(st): State<UploadState>, Extension(who): Extension<Principal>, body: Body) -> Result<Response, ApiError> {
    let (id, path) = st.managed.uploads(&who.name).create().map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let part = path.with_extension("part");
    match receive(body, &part, st.limit).await {
        Ok(bytes) => {
            tokio::fs::rename(&part, &path).await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
            Ok((StatusCode::CREATED, Json(json!({"id": id, "bytes": bytes}))).into_response())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(e)
        }
    }
}

/// Streams `body` into `path` (created 0600), failing past `limit` bytes.
async fn receive(body: Body, path: &std::path::Path, limit: u64) -> Result<u64, ApiError> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    let mut file = opts.open(path).await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    let mut body = body;
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        n += data.len() as u64;
        if n > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the upload is larger than this server's limit of {limit} bytes (--upload-limit); leave files out with .skyignore"),
            ));
        }
        file.write_all(&data).await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    }
    file.sync_all().await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
    Ok(n)
}
