//! Request extractors whose every failure is an [`ApiError`] naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{field_from_serde_message, ApiError};

/// The body formats `POST /optimize` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFormat {
    Json,
    Yaml,
}

/// `application/json` (or any `+json`, or no Content-Type at all) → JSON;
/// `application/yaml`, `application/x-yaml`, `text/yaml`, `text/x-yaml` → YAML.
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let raw = value.to_str().map_err(|_| {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Content-Type is not ASCII")
            .field("content-type")
    })?;
    let mime = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BodyFormat::Json),
        m if m.ends_with("+json") => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Ok(BodyFormat::Yaml),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("unsupported Content-Type `{other}`: send application/json or application/yaml"),
        )
        .field("content-type")),
    }
}

/// The raw body, with the size limit enforced as a JSON 413.
pub struct RawBody {
    pub format: BodyFormat,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = body_format(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = rej.status();
            let kind = ApiError::kind_for_status(status);
            let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request body is larger than the server's limit".to_owned()
            } else {
                rej.body_text()
            };
            ApiError::new(status, kind, msg).field("body")
        })?;
        Ok(RawBody { format, bytes })
    }
}

/// Parse JSON with the path of the offending field: malformed JSON → 400 with line/column,
/// well-formed but ill-typed → 422 with the field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(json_error(&path, &inner));
        }
    };
    // Trailing garbage after the document is a syntax error too.
    if let Err(e) = de.end() {
        return Err(json_error(".", &e));
    }
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let (line, column) = (err.line(), err.column());
    // serde_json appends " at line X column Y"; we report those separately.
    let mut msg = err.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let field = if path.is_empty() || path == "." {
        field_from_serde_message(&msg).unwrap_or_default()
    } else {
        path.to_owned()
    };
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(format!("malformed JSON: {msg}")).field(field).at(line, column)
        }
        Category::Data => {
            let shown = if field.is_empty() { msg.clone() } else { format!("{field}: {msg}") };
            ApiError::invalid(shown).field(field).at(line, column)
        }
    }
}

/// The query string as (name, value) pairs, percent-decoded.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(QueryPairs(
            form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        ))
    }
}

/// Typed readers for query values, each naming its parameter on failure.
pub(crate) fn parse_f64(name: &str, raw: &str) -> Result<f64, ApiError> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name}: `{raw}` is not a number")).field(name))?;
    if !v.is_finite() {
        return Err(ApiError::bad_request(format!("{name}: `{raw}` is not a finite number")).field(name));
    }
    Ok(v)
}

pub(crate) fn parse_bool(name: &str, raw: &str) -> Result<bool, ApiError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{name}: `{raw}` is not a boolean (true/false)")).field(name)),
    }
}

pub(crate) fn parse_usize(name: &str, raw: &str) -> Result<usize, ApiError> {
    raw.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("{name}: `{raw}` is not a non-negative integer")).field(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        cpus: u32,
    }
    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        resources: Inner,
    }

    #[test]
    fn malformed_json_is_400_with_position() {
        let err = parse_json::<Outer>(b"{\n  \"resources\": {\"cpus\": 4,,}\n}").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.body.line, Some(2));
        assert!(err.body.column.is_some());
    }

    #[test]
    fn ill_typed_json_is_422_naming_the_path() {
        let err = parse_json::<Outer>(br#"{"resources": {"cpus": "many"}}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.body.field.as_deref(), Some("resources.cpus"));
        let err = parse_json::<Outer>(br#"{"resources": {"cpus": 1, "gpus": 2}}"#).unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("resources.gpus"));
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = parse_json::<Inner>(br#"{"cpus": 1} x"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Json);
        h.insert(CONTENT_TYPE, "text/yaml; charset=utf-8".parse().unwrap());
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Yaml);
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        let err = body_format(&h).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.body.field.as_deref(), Some("content-type"));
    }
}
