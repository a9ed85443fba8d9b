//! Cross-cutting layers: request metrics, and JSON bodies for errors produced outside our
//! handlers (axum's 404/405, tower-http's 413 and timeout); the dashboard's HTML error pages are
//! left as they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Count and time every request by its route template (`/catalog/offers`, not the raw URI, so the
/// label set stays small); unmatched paths share the label `unmatched`.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let resp = next.run(req).await;
    state.metrics.observe_request(
        route.as_deref().unwrap_or("unmatched"),
        method.as_str(),
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// What the error rewriter needs to word its messages.
#[derive(Clone)]
pub struct Limits {
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub timeout_status: StatusCode,
}

/// Turn any error response that is not JSON yet into our `{"error", "field", "kind"}` body.
pub async fn json_errors(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    // The dashboard's pages answer errors as HTML pages a browser shows.
    let is_html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_json || is_html {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let kind = ApiError::kind_for_status(status);
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            kind,
            format!("request body is larger than the limit of {} bytes", limits.body_limit),
        )
        .field("body"),
        s if s == limits.timeout_status && text.is_empty() => ApiError::new(
            status,
            "timeout",
            format!("the request took longer than the server's limit of {:?}", limits.request_timeout),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts.headers.get(ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            let hint = if allow.is_empty() { String::new() } else { format!("; allowed: {allow}") };
            ApiError::new(status, kind, format!("method {method} is not allowed on {path}{hint}"))
        }
        StatusCode::NOT_FOUND if text.is_empty() => ApiError::new(status, kind, format!("no route for {method} {path}")),
        _ if text.is_empty() => {
            ApiError::new(status, kind, status.canonical_reason().unwrap_or("error").to_owned())
        }
        _ => ApiError::new(status, kind, text),
    };
    let mut out = err.into_response();
    for name in [ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The 404 for unknown paths.
pub async fn fallback(req: Request<Body>) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// A panic in a handler is a bug: answer 500 with a JSON body instead of dropping the
/// connection, and log it.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "unknown panic".to_owned()
    };
    ApiError::internal(format!("internal error: {detail}")).into_response()
}
