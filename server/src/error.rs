//! The one error type of the HTTP API and its mapping to statuses.
//!
//! Every error response is JSON: `{"error": "...", "field": "..."}` plus, where known, the
//! `line`/`column` of a malformed body and a machine-readable `kind`. User input maps to 4xx only;
//! 500 is reserved for bugs and I/O on the server side.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One line saying what is wrong.
    pub error: String,
    /// The request field at fault (a query parameter, a JSON path such as `resources.cpus`, or
    /// the `content-type` header), when the error is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 1-based line of a malformed JSON/YAML body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column of a malformed JSON/YAML body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// A short machine-readable class: `bad_request`, `invalid`, `infeasible`, `too_large`,
    /// `unsupported_media_type`, `not_found`, `method_not_allowed`, `timeout`, `unauthorized`,
    /// `forbidden`, `unavailable`, `internal`.
    pub kind: String,
    /// Extra structured detail, e.g. the optimizer's explanation of an infeasible request
    /// (which constraint removed the candidates, and the nearest offers).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// An error that renders as an HTTP status plus an [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.body.error, self.status)?;
        if let Some(field) = &self.body.field {
            write!(f, " [field {field}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                field: None,
                line: None,
                column: None,
                kind: kind.to_owned(),
                detail: None,
            },
        }
    }

    /// 400: the request cannot be read (malformed JSON/YAML, a query value of the wrong type).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: the request is well-formed but a value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 401: no credentials, or unknown ones. Answered with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: valid credentials that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() {
            self.body.field = Some(field);
        }
        self
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        if line > 0 {
            self.body.line = Some(line);
            self.body.column = Some(column);
        }
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.body.detail = Some(detail);
        self
    }

    pub fn kind(&self) -> &str {
        &self.body.kind
    }

    /// The `kind` used for a bare status produced outside our handlers (axum's 405, tower-http's
    /// 413/408): see [`crate::middleware::json_errors`].
    pub fn kind_for_status(status: StatusCode) -> &'static str {
        match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "timeout",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.body.error, "request failed");
        }
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The field a serde error message names, for errors that lost their path (serde buffers
/// internally tagged enums, so `serde_path_to_error` cannot see inside them).
pub(crate) fn field_from_serde_message(message: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `", "unknown variant `"] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            if let Some(end) = rest.find('`') {
                return Some(rest[..end].to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_recovered_from_serde_messages() {
        assert_eq!(
            field_from_serde_message("unknown field `acelerators`, expected one of `a`, `b`").as_deref(),
            Some("acelerators")
        );
        assert_eq!(field_from_serde_message("missing field `tasks`").as_deref(), Some("tasks"));
        assert_eq!(field_from_serde_message("invalid type: string"), None);
    }

    #[test]
    fn body_omits_absent_parts() {
        let err = ApiError::invalid("count must be positive").field("count");
        let json = serde_json::to_value(&err.body).unwrap();
        assert_eq!(json["field"], "count");
        assert_eq!(json["kind"], "invalid");
        assert!(json.get("line").is_none());
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
