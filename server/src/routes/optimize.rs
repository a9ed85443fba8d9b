//! `POST /optimize`: a task, DAG or fleet (JSON, or YAML) → a plan.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use skycat_optimizer::{
    optimize as run_optimize, BlockedResource, Minimize, OptimizeRequest, OptimizeResponse, PlanError,
    PlanOptions, TaskError,
};
use utoipa::IntoParams;

use crate::answer_cache::AnswerKey;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_f64, parse_usize, parse_json, BodyFormat, QueryPairs, RawBody};
use crate::state::AppState;

/// Plan options, given as query parameters (the body is the task/DAG/fleet itself).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptimizeParams {
    /// `cost` (default), `time` or `expected-cost` (cost plus the restart overhead spot
    /// interruptions are expected to add; single tasks only).
    #[param(value_type = Option<Minimize>)]
    pub minimize: Option<String>,
    /// Estimated run time in hours, for the total cost (default 1).
    #[param(exclusive_minimum = 0)]
    pub hours: Option<f64>,
    /// Under `minimize=expected-cost`: hours of the whole cluster one spot interruption costs
    /// (default 0.25).
    #[param(minimum = 0)]
    pub restart_overhead: Option<f64>,
    /// Length cap of the failover list (default 10; 0 = no cap). The CLI's `skycat optimize`
    /// shows 100; an HTTP client rarely needs more than the first few, and the list is most of
    /// the answer's size.
    pub max_failover: Option<usize>,
    /// A resource not to use: `cloud`, `cloud/region` or `cloud/region/zone`. Repeatable, or
    /// comma-separated.
    #[param(pattern = r"^[A-Za-z0-9_-]+(/[^/,]+){0,2}(,[A-Za-z0-9_-]+(/[^/,]+){0,2})*$")]
    pub blocked: Option<String>,
    /// Data the task reads, and where it sits: `URL[@REGION]=GB` (`s3://bucket/data@us-east-1=500`,
    /// the cloud from the scheme) or `CLOUD[/REGION]=GB`. Repeatable. A task plan charges moving
    /// it to each placement (egress prices of catalog-data/egress.json) and ranks by compute +
    /// egress; it replaces the task's own `inputs:` entry of the same URL.
    pub input: Option<String>,
}

const PARAMS: &[&str] = &["minimize", "hours", "restart_overhead", "max_failover", "blocked", "input"];

/// The failover list's length in an HTTP answer unless `max_failover` says otherwise.
pub const DEFAULT_MAX_FAILOVER: usize = 10;

pub(crate) fn plan_options(pairs: &[(String, String)]) -> Result<PlanOptions, ApiError> {
    let mut opts = PlanOptions { max_failover: DEFAULT_MAX_FAILOVER, ..PlanOptions::default() };
    for (k, v) in pairs {
        match k.as_str() {
            "minimize" => {
                opts.minimize = v
                    .parse::<Minimize>()
                    .map_err(|e| ApiError::invalid(format!("minimize: {e}")).field("minimize"))?;
            }
            "hours" => opts.hours = parse_f64("hours", v)?,
            "restart_overhead" => opts.restart_overhead_hours = parse_f64("restart_overhead", v)?,
            "max_failover" => opts.max_failover = parse_usize("max_failover", v)?,
            "blocked" => {
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let mut parts = item.splitn(3, '/');
                    let cloud = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                    if cloud.is_empty() {
                        return Err(ApiError::invalid(format!("blocked: `{item}` names no cloud")).field("blocked"));
                    }
                    let region = parts.next().map(str::to_owned).filter(|s| !s.is_empty());
                    let zone = parts.next().map(str::to_owned).filter(|s| !s.is_empty());
                    opts.blocked.push(BlockedResource { cloud, region, zone });
                }
            }
            "input" => {
                let d = skycat_optimizer::DataInput::parse(v)
                    .map_err(|e| ApiError::invalid(format!("input: {e}")).field("input"))?;
                opts.inputs.push(d);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected one of: {}",
                    PARAMS.join(", ")
                ))
                .field(other))
            }
        }
    }
    Ok(opts)
}

/// Map the optimizer's error to HTTP. Every variant is about the request, so none is a 500:
/// - `Invalid` → 422 naming the field;
/// - `Infeasible` → 422 with `kind: "infeasible"`, the reason in `error`, the constraint that
///   removed the last candidates in `field`, and `detail: {reason, cut_by, nearest}`;
/// - `Solver` (the MILP solver gave up on a valid model, e.g. its time limit) → 422 with
///   `kind: "solver"`.
pub(crate) fn plan_error(err: PlanError) -> ApiError {
    match err {
        PlanError::Invalid { field, message } => {
            ApiError::invalid(format!("{field}: {message}")).field(field)
        }
        PlanError::Infeasible { reason, cut_by, nearest } => {
            let detail = serde_json::json!({ "reason": reason, "cut_by": cut_by, "nearest": nearest });
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "infeasible", reason).field(cut_by).detail(detail)
        }
        PlanError::Solver { message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "solver", format!("the solver could not answer: {message}"))
        }
    }
}

fn task_error(err: TaskError, status: StatusCode) -> ApiError {
    let kind = if status == StatusCode::BAD_REQUEST { "bad_request" } else { "invalid" };
    let message = format!("{}: {}", err.field, err.message);
    let mut e = ApiError::new(status, kind, message).field(err.field);
    if let Some(line) = err.line {
        e = e.at(line, err.column.unwrap_or(1));
    }
    e
}

/// Decode the body: JSON (`{"kind": "task" | "dag" | "fleet", …}`) or YAML (a SkyPilot task YAML
/// unchanged, a `---`-separated pipeline, or a document with `kind:`).
pub(crate) fn decode(body: &RawBody) -> Result<OptimizeRequest, ApiError> {
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty: send a task, DAG or fleet").field("body"));
    }
    match body.format {
        BodyFormat::Json => parse_json::<OptimizeRequest>(&body.bytes).map_err(|e| refine_json_error(&body.bytes, e)),
        BodyFormat::Yaml => {
            let text = std::str::from_utf8(&body.bytes)
                .map_err(|e| ApiError::bad_request(format!("the YAML body is not UTF-8: {e}")).field("body"))?;
            OptimizeRequest::from_yaml(text).map_err(|e| {
                // A YAML syntax error has a position but no field path; everything else is a
                // readable document with a wrong field.
                let syntax = e.field == "task" && e.line.is_some();
                task_error(e, if syntax { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY })
            })
        }
    }
}

/// serde buffers internally tagged enums, so a field error inside `{"kind": "task", …}` loses its
/// path. On that (error-only) path, re-read the document as a value and deserialize the variant
/// directly with path tracking, to name e.g. `resources.cpus` rather than just `cpus`.
fn refine_json_error(bytes: &[u8], err: ApiError) -> ApiError {
    use skycat_optimizer::{DagSpec, FleetSpec, TaskSpec};
    if err.status != StatusCode::UNPROCESSABLE_ENTITY {
        return err;
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return err;
    };
    let kind = match map.remove("kind") {
        Some(serde_json::Value::String(k)) => k,
        _ => return err,
    };
    let value = serde_json::Value::Object(map);
    fn path_of<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Option<(String, String)> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(_) => None,
            Err(e) => {
                let path = e.path().to_string();
                Some((path, e.into_inner().to_string()))
            }
        }
    }
    let found = match kind.as_str() {
        "task" => path_of::<TaskSpec>(value),
        "dag" => path_of::<DagSpec>(value),
        "fleet" => path_of::<FleetSpec>(value),
        _ => None,
    };
    match found {
        Some((path, message)) if !path.is_empty() && path != "." => {
            // The buffered parse's line/column point at the end of the object, not at the
            // field: leave them out rather than mislead.
            ApiError::invalid(format!("{path}: {message}")).field(path)
        }
        _ => err,
    }
}

/// Plan a task, a DAG or a fleet over the catalog in service.
///
/// The body is JSON tagged by `kind` (`task`, `dag`, `fleet`), or YAML with Content-Type
/// `application/yaml` / `text/yaml`: a SkyPilot task YAML as SkyPilot writes it. An infeasible
/// request is a 422 whose `detail` explains which constraint removed the candidates and lists
/// the nearest offers.
#[utoipa::path(post, path = "/optimize", tag = "optimize", params(OptimizeParams),
    request_body(
        description = "A task, DAG or fleet. JSON tagged by `kind`, or YAML (a SkyPilot task YAML unchanged).",
        content(
            (OptimizeRequest = "application/json"),
            (OptimizeRequest = "application/yaml"),
            (OptimizeRequest = "text/yaml"),
        )
    ),
    responses(
        (status = 200, description = "The plan", body = OptimizeResponse),
        (status = 400, description = "Malformed body or query parameter", body = ErrorBody),
        (status = 413, description = "Body above the size limit", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 422, description = "Invalid field, infeasible request, or solver failure", body = ErrorBody),
    ))]
pub async fn optimize(
    State(state): State<Arc<AppState>>,
    QueryPairs(pairs): QueryPairs,
    body: RawBody,
) -> Result<Response, ApiError> {
    // An identical request against the same catalog version gets the same bytes.
    let key = AnswerKey::of(body.format, &pairs, &body.bytes);
    let version = state.snapshot_guard().version;
    if let Some(answer) = key.as_ref().and_then(|k| state.answers.get(version, k)) {
        return Ok(json_response(answer));
    }
    let opts = plan_options(&pairs)?;
    let req = decode(&body)?;
    let (version, result) = match req {
        // A single task is a probe of the index: microseconds, answer inline.
        OptimizeRequest::Task(_) => {
            let snap = state.snapshot_guard();
            (snap.version, run_optimize(&req, &snap.index, &state.egress, &opts))
        }
        // DAGs and fleets are MILPs: solve on a blocking thread, holding this request's snapshot.
        _ => {
            let snap = state.snapshot();
            let st = state.clone();
            let version = snap.version;
            let result = tokio::task::spawn_blocking(move || run_optimize(&req, &snap.index, &st.egress, &opts))
                .await
                .map_err(|e| ApiError::internal(format!("the planner failed: {e}")))?;
            (version, result)
        }
    };
    let plan = result.map_err(plan_error)?;
    let answer = Bytes::from(
        serde_json::to_vec(&plan).map_err(|e| ApiError::internal(format!("cannot encode the plan: {e}")))?,
    );
    if let Some(key) = key {
        state.answers.put(version, key, answer.clone());
    }
    Ok(json_response(answer))
}

fn json_response(answer: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], answer).into_response()
}
