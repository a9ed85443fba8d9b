//! A managed-job request (the body of `POST /v1/jobs`), validated field by field. The HTTP
//! routes are the server's (`skycat-server`, feature `control`).

use std::collections::BTreeMap;

use serde::Deserialize;
use skycat_optimizer::TaskSpec;

use super::{JobRequest, Strategy};
use crate::lifecycle::TaskRun;
use crate::mounts::{FileMount, MountSource};

/// Why a managed job cannot have a storage object (`name:`) yet: the bucket would be made with
/// the server's credentials, and who deletes a `persistent: false` one is unsettled.
pub const STORAGE_IN_MANAGED_JOBS: &str = "a storage object (`name:`) cannot be made for a managed job yet; make the bucket first (skycat launch with it, or your cloud's CLI) and mount it with `source: s3://NAME` (or gs://, r2://, https://ACCOUNT.blob.core.windows.net/NAME)";

/// A request value that is not acceptable, naming the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

pub(crate) fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TaskIn {
    name: Option<String>,
    num_nodes: Option<u32>,
    setup: Option<String>,
    run: Option<String>,
    envs: BTreeMap<String, String>,
    gpus_per_node: f64,
    secret_envs: Vec<String>,
    file_mounts: Vec<FileMount>,
    storage_envs: BTreeMap<String, String>,
}

/// `file_mount_uploads.<dst>`: a local file or folder the client uploaded for a file mount.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MountUpload {
    /// The id `POST /v1/uploads` gave the archive.
    pub id: String,
    /// The archive holds one file, named as the destination's last component.
    #[serde(default)]
    pub file: bool,
}

/// A validated `POST /v1/jobs` body.
#[derive(Debug)]
pub struct ParsedRequest {
    pub request: JobRequest,
    /// `workdir_upload`: the id `POST /v1/uploads` gave the caller's workdir archive.
    pub workdir_upload: Option<String>,
    /// `file_mount_uploads`: destination -> the caller's upload of a local source.
    pub mount_uploads: BTreeMap<String, MountUpload>,
    /// `hours`: projected run time, for the budget check (default
    /// [`super::DEFAULT_PROJECTED_HOURS`]).
    pub hours: Option<f64>,
}

/// Whether `id` has the shape of an upload id (the server resolves it under the caller's own
/// uploads, so no other value can name a path).
pub fn is_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Validates a `POST /v1/jobs` body; errors name the field. A `task.workdir` (a path on the
/// server) is refused: the server never reads its own disk for a client.
pub fn parse_request(body: &[u8]) -> std::result::Result<ParsedRequest, FieldError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| field_err("body", format!("not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| field_err("body", "must be a JSON object"))?;
    let task = obj.get("task").ok_or_else(|| field_err("task", "missing"))?;
    if !task.is_object() {
        return Err(field_err("task", "must be an object (the parsed task)"));
    }
    match task.get("run") {
        Some(serde_json::Value::String(r)) if !r.trim().is_empty() => {}
        _ => return Err(field_err("task.run", "a managed job needs a non-empty `run` command")),
    }
    if let Some(n) = task.get("num_nodes") {
        if n.as_u64().is_none_or(|n| n == 0 || n > 1024) {
            return Err(field_err("task.num_nodes", "must be an integer between 1 and 1024"));
        }
    }
    if task.get("workdir").is_some_and(|w| !w.is_null()) {
        return Err(field_err(
            "task.workdir",
            "the server does not read folders from its own disk: upload the workdir (POST /v1/uploads; `skycat jobs launch` does) and pass its id as `workdir_upload`",
        ));
    }
    let workdir_upload = match obj.get("workdir_upload").filter(|s| !s.is_null()) {
        None => None,
        Some(serde_json::Value::String(id)) if is_upload_id(id) => Some(id.clone()),
        Some(other) => return Err(field_err("workdir_upload", format!("{other} is not an upload id (32 hex characters from POST /v1/uploads)"))),
    };
    let mount_uploads: BTreeMap<String, MountUpload> = match obj.get("file_mount_uploads").filter(|s| !s.is_null()) {
        None => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| field_err("file_mount_uploads", format!("expected {{DST: {{\"id\": UPLOAD_ID, \"file\": BOOL}}}}: {e}")))?,
    };
    for (dst, up) in &mount_uploads {
        if !is_upload_id(&up.id) {
            return Err(field_err(&format!("file_mount_uploads.{dst}.id"), format!("{:?} is not an upload id (32 hex characters from POST /v1/uploads)", up.id)));
        }
    }
    if let Some(s) = obj.get("strategy").filter(|s| !s.is_null()) {
        let ok = s.as_str().and_then(Strategy::parse).is_some();
        if !ok {
            return Err(field_err("strategy", format!("unknown recovery strategy {s}; use EAGER_NEXT_REGION or FAILOVER")));
        }
    }
    if let Some(m) = obj.get("max_restarts_on_errors").filter(|s| !s.is_null()) {
        if m.as_u64().is_none_or(|m| m > u32::MAX as u64) {
            return Err(field_err("max_restarts_on_errors", "must be a non-negative integer"));
        }
    }
    let hours = match obj.get("hours").filter(|s| !s.is_null()) {
        None => None,
        Some(h) => match h.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Some(x),
            _ => return Err(field_err("hours", format!("must be a positive number of hours, got {h}"))),
        },
    };
    if let Some(b) = obj.get("use_spot").filter(|s| !s.is_null()) {
        if !b.is_boolean() {
            return Err(field_err("use_spot", "must be true or false"));
        }
    }
    if let Some(n) = obj.get("name").filter(|s| !s.is_null()) {
        let ok = n.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 63 && !s.chars().any(char::is_control));
        if !ok {
            return Err(field_err("name", "must be a string of 1 to 63 printable characters"));
        }
    }
    let t: TaskIn = serde_json::from_value(task.clone()).map_err(|e| field_err("task", e.to_string()))?;
    for m in &t.file_mounts {
        let field = format!("task.file_mounts.{}", m.dst);
        match &m.source {
            MountSource::Bucket { .. } => {}
            MountSource::Local { .. } => {
                return Err(field_err(&field, "the server does not read paths from its own disk: upload the file or folder (POST /v1/uploads; `skycat jobs launch` does) and name it in `file_mount_uploads`"))
            }
            MountSource::Uploaded { .. } => return Err(field_err(&field, "uploaded sources are named in `file_mount_uploads`")),
            MountSource::Storage { .. } => return Err(field_err(&field, STORAGE_IN_MANAGED_JOBS)),
        }
        if mount_uploads.contains_key(&m.dst) {
            return Err(field_err(&field, "also in `file_mount_uploads`: one source per destination"));
        }
    }
    let request = JobRequest {
        name: obj.get("name").and_then(|n| n.as_str()).map(str::to_string),
        task: TaskRun {
            name: t.name,
            num_nodes: t.num_nodes.unwrap_or(1).max(1),
            setup: t.setup,
            run: t.run,
            envs: t.envs,
            workdir: None,
            workdir_archive: None,
            gpus_per_node: t.gpus_per_node,
            secret_envs: t.secret_envs,
            file_mounts: t.file_mounts,
            storage_envs: t.storage_envs,
        },
        use_spot: obj.get("use_spot").and_then(|b| b.as_bool()).unwrap_or(false),
        strategy: obj.get("strategy").and_then(|s| s.as_str()).map(str::to_string),
        max_restarts_on_errors: obj.get("max_restarts_on_errors").and_then(|m| m.as_u64()).unwrap_or(0) as u32,
        spec: match obj.get("spec").filter(|s| !s.is_null()) {
            Some(v) => {
                let spec: TaskSpec = serde_json::from_value(v.clone()).map_err(|e| field_err("spec", e.to_string()))?;
                spec.validate().map_err(|e| field_err(&format!("spec.{}", e.field), e.message))?;
                Some(spec)
            }
            None => None,
        },
    };
    Ok(ParsedRequest { request, workdir_upload, mount_uploads, hours })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::status;

    #[test]
    fn request_validation_names_the_field() {
        let e = parse_request(b"{").unwrap_err();
        assert_eq!(e.field, "body");
        let e = parse_request(br#"{"use_spot": true}"#).unwrap_err();
        assert_eq!(e.field, "task");
        let e = parse_request(br#"{"task": {"run": "  "}}"#).unwrap_err();
        assert_eq!(e.field, "task.run");
        let e = parse_request(br#"{"task": {"run": "x"}, "strategy": "NEAREST"}"#).unwrap_err();
        assert_eq!(e.field, "strategy");
        let e = parse_request(br#"{"task": {"run": "x"}, "max_restarts_on_errors": -1}"#).unwrap_err();
        assert_eq!(e.field, "max_restarts_on_errors");
        let e = parse_request(br#"{"task": {"run": "x"}, "hours": 0}"#).unwrap_err();
        assert_eq!(e.field, "hours");
        assert_eq!(parse_request(br#"{"task": {"run": "x"}, "hours": 2.5}"#).unwrap().hours, Some(2.5));
        let e = parse_request(br#"{"task": {"run": "x", "num_nodes": 0}}"#).unwrap_err();
        assert_eq!(e.field, "task.num_nodes");
        // The server never reads a folder of its own for a client; uploads are named by id only.
        let e = parse_request(br#"{"task": {"run": "x", "workdir": "/etc"}}"#).unwrap_err();
        assert_eq!(e.field, "task.workdir");
        for bad in [r#""../../etc""#, r#""/etc/passwd""#, r#""ABCDEF0123456789ABCDEF0123456789""#, "7"] {
            let body = format!(r#"{{"task": {{"run": "x"}}, "workdir_upload": {bad}}}"#);
            assert_eq!(parse_request(body.as_bytes()).unwrap_err().field, "workdir_upload", "{bad}");
        }
        let up = parse_request(br#"{"task": {"run": "x"}, "workdir_upload": "0123456789abcdef0123456789abcdef"}"#).unwrap();
        assert_eq!(up.workdir_upload.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert!(up.request.task.workdir.is_none() && up.request.task.workdir_archive.is_none());
        let ok = parse_request(br#"{"task": {"run": "echo hi"}, "strategy": "failover", "use_spot": true}"#).unwrap().request;
        assert_eq!(ok.task.num_nodes, 1);
        assert_eq!(Strategy::parse(ok.strategy.as_deref().unwrap()), Some(Strategy::Failover));
        assert_eq!(Strategy::parse("EAGER_NEXT_REGION"), Some(Strategy::EagerNextRegion));
        assert!(status::is_terminal(status::FAILED_NO_RESOURCE) && !status::is_terminal(status::RECOVERING));
    }
}
