//! The task spec: SkyPilot's task YAML, parsed unchanged.
//!
//! Every field of SkyPilot's published task schema is accepted (so published examples parse);
//! unknown or ill-typed fields are rejected with an error naming the field and the line. The
//! fields the optimizer uses (`resources`, `num_nodes`, `name`) are typed precisely; fields that
//! only matter to the runner (`setup`, `run`, `envs`, `file_mounts`, …) are kept as given.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

mod envs;
mod fields;
mod values;

pub use envs::substitute_envs;
pub use fields::{Autostop, FieldReport, FieldRow, FieldStatus, DEFAULT_AUTOSTOP_MINUTES, FIELDS};
pub use values::{fmt_count, AcceleratorChoice, AcceleratorsSpec, DiskSize, EnvValue, Ports, SizeReq};

/// A SkyPilot task (one YAML document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A local path, or `{url, ref}` for a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_nodes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Environment variables; a null value must be supplied at launch time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    pub envs: Option<BTreeMap<String, EnvValue>>,
    /// Secrets: a map like `envs`, or a list of managed secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Remote path -> local path, bucket URL, or storage object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mounts: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mounts_mapping: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Value>,
    /// Per-task overrides of SkyPilot's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_callback: Option<String>,
    /// SkyPilot's experimental data location: `{s3://bucket/path: size_gb}`, charged as egress to
    /// each candidate region (single-task and DAG plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_access: Option<bool>,
    #[serde(default, rename = "_metadata", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Per-node resource requirements (`resources:`), also used for each `any_of` / `ordered` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `cloud[/region[/zone]]`, `*` as a wildcard: `aws/us-east-1`, `*/us-west-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<String>,
    /// Also read as `gpus:` (SkyPilot's alias); giving both is an error.
    #[serde(default, alias = "gpus", skip_serializing_if = "Option::is_none")]
    pub accelerators: Option<AcceleratorsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_args: Option<Value>,
    /// `4`, `4+`, or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<SizeReq>,
    /// GiB: `32`, `32+`, `64GB+`, or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeReq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_spot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_recovery: Option<Value>,
    /// Older SkyPilot name of `job_recovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_recovery: Option<Value>,
    /// GB, an integer or a string with a unit (`256`, `1TB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<DiskSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<DiskSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_disk: Option<String>,
    /// Upper bound on the per-node hourly price; offers above it are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hourly_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, rename = "_no_missing_accel_warnings", skip_serializing_if = "Option::is_none")]
    pub no_missing_accel_warnings: Option<bool>,
    /// Alternatives: the cheapest feasible one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub any_of: Option<Vec<ResourcesSpec>>,
    /// Alternatives in order of preference: the first feasible one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub ordered: Option<Vec<ResourcesSpec>>,
}


// ---------------------------------------------------------------------------------------------
// Errors with field + line

/// A task that cannot be parsed or is inconsistent. `field` is a dotted path
/// (`resources.accelerators`), `line`/`column` are 1-based positions in the YAML, when known.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[error("{field}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct TaskError {
    pub field: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl TaskError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> TaskError {
        TaskError { field: field.into(), message: message.into(), line: None, column: None }
    }

    pub(crate) fn from_yaml(e: &serde_yaml::Error) -> TaskError {
        let (line, column) = match e.location() {
            Some(l) => (Some(l.line()), Some(l.column())),
            None => (None, None),
        };
        let mut text = e.to_string();
        // serde_yaml appends " at line L column C"; we carry the position separately.
        if let Some(pos) = text.rfind(" at line ") {
            text.truncate(pos);
        }
        // serde_yaml prefixes the path of the failing value: `resources.cpus: invalid …`.
        let (mut field, mut message) = match text.split_once(": ") {
            Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => (p.to_string(), m.to_string()),
            _ => (String::new(), text.clone()),
        };
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((name, _)) = rest.split_once('`') {
                field = if field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
                message = format!("unknown field `{name}`: not in SkyPilot's task schema (or internal to SkyPilot); remove it");
            }
        }
        if field.is_empty() {
            field = "task".into();
        }
        TaskError { field, message, line, column }
    }
}

/// The 1-based line of the first `key:` at the start of a line (after indentation), if any.
pub(crate) fn line_of(yaml: &str, key: &str) -> Option<usize> {
    yaml.lines().position(|l| {
        let t = l.trim_start().trim_start_matches("- ");
        t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
    })
    .map(|i| i + 1)
}

/// Parses one SkyPilot task YAML document.
pub fn parse_task_yaml(yaml: &str) -> Result<TaskSpec, TaskError> {
    let task: TaskSpec = if yaml.trim().is_empty() {
        TaskSpec::default()
    } else {
        match serde_yaml::from_str::<Option<TaskSpec>>(yaml) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => return Err(TaskError::from_yaml(&e)),
        }
    };
    task.validate().map_err(|mut e| {
        let leaf = e.field.rsplit('.').next().unwrap_or(&e.field).to_string();
        e.line = line_of(yaml, &leaf);
        e
    })?;
    Ok(task)
}

impl TaskSpec {
    /// Checks what the types alone cannot: counts, consistency of location fields.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.num_nodes == Some(0) {
            return Err(TaskError::new("num_nodes", "must be at least 1"));
        }
        if let Some(envs) = &self.envs {
            for k in envs.keys() {
                let ok = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(TaskError::new(format!("envs.{k}"), "not a valid environment variable name"));
                }
            }
        }
        if let Some(r) = &self.resources {
            r.validate("resources")?;
            for (key, alts) in [("any_of", &r.any_of), ("ordered", &r.ordered)] {
                if let Some(alts) = alts {
                    if alts.is_empty() {
                        return Err(TaskError::new(format!("resources.{key}"), "is an empty list"));
                    }
                    for (i, a) in alts.iter().enumerate() {
                        let p = format!("resources.{key}[{i}]");
                        if a.any_of.is_some() || a.ordered.is_some() {
                            return Err(TaskError::new(p, "any_of/ordered cannot be nested"));
                        }
                        a.validate(&p)?;
                    }
                }
            }
            if r.any_of.is_some() && r.ordered.is_some() {
                return Err(TaskError::new("resources.ordered", "cannot be combined with any_of"));
            }
        }
        Ok(())
    }
}

impl ResourcesSpec {
    fn validate(&self, path: &str) -> Result<(), TaskError> {
        if let Some(infra) = &self.infra {
            if self.cloud.is_some() || self.region.is_some() || self.zone.is_some() {
                return Err(TaskError::new(
                    format!("{path}.infra"),
                    "cannot be combined with cloud/region/zone (infra: cloud/region/zone replaces them)",
                ));
            }
            parse_infra(infra).map_err(|m| TaskError::new(format!("{path}.infra"), m))?;
        }
        if let Some(c) = self.max_hourly_cost {
            if !(c.is_finite() && c > 0.0) {
                return Err(TaskError::new(format!("{path}.max_hourly_cost"), "must be a positive number"));
            }
        }
        if let Some(n) = &self.cloud {
            if n.trim().is_empty() {
                return Err(TaskError::new(format!("{path}.cloud"), "is empty"));
            }
        }
        Ok(())
    }
}

/// A parsed `infra:` value; `None` parts are wildcards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Infra {
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
}

/// `aws`, `aws/us-east-1`, `aws/us-east-1/us-east-1a`, `*/us-west-2`, `k8s/ctx`.
pub fn parse_infra(s: &str) -> Result<Infra, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty".into());
    }
    let lower = t.to_ascii_lowercase();
    if lower == "k8s" || lower == "kubernetes" || lower.starts_with("k8s/") || lower.starts_with("kubernetes/") {
        let ctx = t.split_once('/').map(|(_, c)| c.to_string());
        return Ok(Infra { cloud: Some("kubernetes".into()), region: ctx, zone: None });
    }
    let parts: Vec<&str> = t.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("`{t}` is not cloud[/region[/zone]]"));
    }
    let part = |i: usize| parts.get(i).filter(|p| **p != "*").map(|p| p.trim().to_string());
    Ok(Infra {
        cloud: part(0).map(|c| c.to_ascii_lowercase()),
        region: part(1),
        zone: part(2),
    })
}
