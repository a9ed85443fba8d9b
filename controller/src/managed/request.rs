//! A managed-job request (the body of `POST /v1/jobs`), validated field by field. The HTTP
//! routes are the server's (`skycat-server`, feature `control`).

use std::collections::BTreeMap;

use serde::Deserialize;
use skycat_optimizer::TaskSpec;

use super::{JobRequest, Strategy};
use crate::lifecycle::TaskRun;

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
    workdir: Option<std::path::PathBuf>,
    gpus_per_node: f64,
    secret_envs: Vec<String>,
}

/// Validates a `POST /v1/jobs` body; errors name the field.
pub fn parse_request(body: &[u8]) -> std::result::Result<JobRequest, FieldError> {
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
    Ok(JobRequest {
        name: obj.get("name").and_then(|n| n.as_str()).map(str::to_string),
        task: TaskRun {
            name: t.name,
            num_nodes: t.num_nodes.unwrap_or(1).max(1),
            setup: t.setup,
            run: t.run,
            envs: t.envs,
            workdir: t.workdir,
            gpus_per_node: t.gpus_per_node,
            secret_envs: t.secret_envs,
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
    })
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
        let e = parse_request(br#"{"task": {"run": "x", "num_nodes": 0}}"#).unwrap_err();
        assert_eq!(e.field, "task.num_nodes");
        let ok = parse_request(br#"{"task": {"run": "echo hi"}, "strategy": "failover", "use_spot": true}"#).unwrap();
        assert_eq!(ok.task.num_nodes, 1);
        assert_eq!(Strategy::parse(ok.strategy.as_deref().unwrap()), Some(Strategy::Failover));
        assert_eq!(Strategy::parse("EAGER_NEXT_REGION"), Some(Strategy::EagerNextRegion));
        assert!(status::is_terminal(status::FAILED_NO_RESOURCE) && !status::is_terminal(status::RECOVERING));
    }
}
