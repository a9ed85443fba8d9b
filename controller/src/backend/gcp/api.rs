//! A small client of the Compute Engine API v1 (`compute/v1/projects/{project}/…`): the calls
//! the GCP backend makes, with the wire shapes of the v1 discovery document (field names and
//! enums as recorded in shared/api-formats/provisioning/gcp-compute.md).
//!
//! Every mutation answers an Operation; [`ComputeApi::wait`] polls it (`zoneOperations.wait` for
//! zonal ones, `globalOperations.get` for firewall rules) until `DONE`, and an operation that
//! ended with `error.errors[]` becomes a [`GcpError`] carrying the first error's `code`. A call
//! refused outright carries Google's envelope `{"error": {"code", "message", "errors": [{"reason"}]}}`
//! and becomes a [`GcpError`] with that `reason`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::rest::{snippet, without_url};
use super::auth::Credentials;

pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com/";
/// The Compute endpoint's variable: the same one the price fetcher and `skycat check` use.
pub const ENDPOINT_VAR: &str = "SKYCAT_GCP_COMPUTE_ENDPOINT";

/// A failed call or operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct GcpError {
    /// `POST zones/us-central1-a/instances`.
    pub op: String,
    /// The HTTP status (for a failed operation: its `httpErrorStatusCode`); None when no answer came.
    pub status: Option<u16>,
    /// The error's `reason` (sync envelope) or `code` (operation error): `notFound`,
    /// `ZONE_RESOURCE_POOL_EXHAUSTED`, `invalid_grant` (token endpoint).
    pub code: Option<String>,
    pub message: String,
}

impl From<super::auth::AuthError> for GcpError {
    fn from(e: super::auth::AuthError) -> GcpError {
        GcpError { op: e.op, status: e.status, code: e.code, message: e.message }
    }
}

impl GcpError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

// ---- request bodies (instances.insert, firewalls.insert/patch) ----

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInsert {
    pub name: String,
    /// `zones/{zone}/machineTypes/{type}`.
    pub machine_type: String,
    pub disks: Vec<AttachedDisk>,
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guest_accelerators: Vec<AcceleratorConfig>,
    pub scheduling: Scheduling,
    pub metadata: Metadata,
    pub labels: BTreeMap<String, String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AttachedDisk {
    pub boot: bool,
    pub auto_delete: bool,
    pub initialize_params: InitializeParams,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub source_image: String,
    /// int64: a JSON string, as the discovery document types it.
    pub disk_size_gb: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    pub network: String,
    pub access_configs: Vec<AccessConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set by GCP on a running VM; never sent.
    #[serde(default, skip_serializing, rename = "natIP")]
    pub nat_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorConfig {
    /// `zones/{zone}/acceleratorTypes/{name}`.
    pub accelerator_type: String,
    pub accelerator_count: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// `MIGRATE` or `TERMINATE` (required for GPUs and Spot).
    pub on_host_maintenance: String,
    pub automatic_restart: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_termination_action: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metadata {
    pub items: Vec<MetadataItem>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetadataItem {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tags {
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    pub name: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub allowed: Vec<FirewallAllowed>,
    #[serde(default)]
    pub source_ranges: Vec<String>,
    #[serde(default)]
    pub target_tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirewallAllowed {
    #[serde(rename = "IPProtocol")]
    pub ip_protocol: String,
    #[serde(default)]
    pub ports: Vec<String>,
}

// ---- answers ----

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default)]
    pub target_link: Option<String>,
    /// Zonal operations' zone URL; absent on global ones.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub http_error_status_code: Option<u16>,
    #[serde(default)]
    pub error: Option<OperationErrors>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OperationErrors {
    #[serde(default)]
    pub errors: Vec<OperationError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OperationError {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

impl Operation {
    /// The error of a finished operation, if it failed.
    pub fn failure(&self, op: &str) -> Option<GcpError> {
        let first = self.error.as_ref()?.errors.first()?;
        Some(GcpError {
            op: op.to_string(),
            status: self.http_error_status_code,
            code: Some(first.code.clone()),
            message: first.message.clone().unwrap_or_else(|| first.code.clone()),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub network_interfaces: Vec<InstanceNic>,
    #[serde(default)]
    pub scheduling: Option<InstanceScheduling>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceNic {
    #[serde(default, rename = "networkIP")]
    pub network_ip: Option<String>,
    #[serde(default)]
    pub access_configs: Vec<AccessConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceScheduling {
    #[serde(default)]
    pub provisioning_model: Option<String>,
    #[serde(default)]
    pub preemptible: Option<bool>,
}

impl Instance {
    /// `networkInterfaces[0].accessConfigs[0].natIP`.
    pub fn nat_ip(&self) -> Option<String> {
        self.network_interfaces.first()?.access_configs.first()?.nat_ip.clone().filter(|s| !s.is_empty())
    }

    pub fn network_ip(&self) -> Option<String> {
        self.network_interfaces.first()?.network_ip.clone().filter(|s| !s.is_empty())
    }

    pub fn is_spot(&self) -> bool {
        self.scheduling
            .as_ref()
            .is_some_and(|s| s.provisioning_model.as_deref() == Some("SPOT") || s.preemptible == Some(true))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: Option<String>,
}

/// A client of one project.
#[derive(Clone)]
pub struct ComputeApi {
    http: reqwest::Client,
    /// `https://compute.googleapis.com/compute/v1/projects/{project}/`.
    base: reqwest::Url,
    project: String,
    creds: Credentials,
    /// How long one operation may take before the wait gives up.
    op_timeout: Duration,
}

impl fmt::Debug for ComputeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeApi").field("base", &self.base.as_str()).field("creds", &self.creds).finish()
    }
}

/// A project id as GCP allows it: 6–30 of lower-case letters, digits and hyphens.
fn valid_project(p: &str) -> bool {
    (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl ComputeApi {
    /// `endpoint` is the host root (`https://compute.googleapis.com/`); `compute/v1/projects/{project}/`
    /// is appended.
    pub fn new(endpoint: &str, project: &str, creds: Credentials) -> Result<ComputeApi, GcpError> {
        let bad = |m: String| GcpError { op: ENDPOINT_VAR.into(), status: None, code: None, message: m };
        if !valid_project(project) {
            return Err(GcpError {
                op: "project".into(),
                status: None,
                code: None,
                message: format!("{project:?} is not a GCP project id (6-30 lower-case letters, digits, hyphens)"),
            });
        }
        let mut root = endpoint.trim().to_string();
        if !root.ends_with('/') {
            root.push('/');
        }
        let root = reqwest::Url::parse(&root).map_err(|e| bad(format!("{endpoint:?} is not a URL ({e})")))?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(bad(format!("{endpoint:?} is not an http(s) URL")));
        }
        let base = root.join(&format!("compute/v1/projects/{project}/")).map_err(|e| bad(format!("{endpoint:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(150))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(ComputeApi { http, base, project: project.to_string(), creds, op_timeout: Duration::from_secs(900) })
    }

    pub fn with_op_timeout(mut self, t: Duration) -> ComputeApi {
        self.op_timeout = t;
        self
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<T, GcpError> {
        let op = format!("{method} {path}");
        let err = |status: Option<u16>, code: Option<String>, message: String| GcpError { op: op.clone(), status, code, message };
        let mut url = self.base.join(path).map_err(|e| err(None, None, format!("bad path: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let token = self.creds.bearer(&self.http).await?;
        let mut req = self.http.request(method, url).bearer_auth(token.expose()).header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| err(None, None, format!("no answer from {}: {}", self.base, without_url(&e))))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| err(Some(status), None, format!("reading the answer: {}", without_url(&e))))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| err(Some(status), None, format!("unexpected answer ({e}): {}", snippet(&bytes))));
        }
        Err(match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(env) => {
                let code = env.error.errors.iter().find_map(|e| e.reason.clone()).or(env.error.status);
                err(Some(status), code, env.error.message.unwrap_or_else(|| format!("HTTP {status}")))
            }
            Err(_) => err(Some(status), None, format!("HTTP {status}: {}", snippet(&bytes))),
        })
    }

    fn to_json<T: Serialize>(v: &T, op: &str) -> Result<serde_json::Value, GcpError> {
        serde_json::to_value(v).map_err(|e| GcpError { op: op.into(), status: None, code: None, message: e.to_string() })
    }

    /// `instances.insert`.
    pub async fn insert_instance(&self, zone: &str, body: &InstanceInsert) -> Result<Operation, GcpError> {
        let path = format!("zones/{zone}/instances");
        let b = Self::to_json(body, &path)?;
        self.call(Method::POST, &path, &[], Some(b)).await
    }

    /// `instances.get`; `None` on 404.
    pub async fn get_instance(&self, zone: &str, name: &str) -> Result<Option<Instance>, GcpError> {
        match self.call(Method::GET, &format!("zones/{zone}/instances/{name}"), &[], None).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `instances.list` with a filter, every page.
    pub async fn list_instances(&self, zone: &str, filter: &str) -> Result<Vec<Instance>, GcpError> {
        self.list_all(&format!("zones/{zone}/instances"), filter).await
    }

    /// `zoneOperations.list` with a filter, every page.
    pub async fn list_zone_operations(&self, zone: &str, filter: &str) -> Result<Vec<Operation>, GcpError> {
        self.list_all(&format!("zones/{zone}/operations"), filter).await
    }

    async fn list_all<T: DeserializeOwned>(&self, path: &str, filter: &str) -> Result<Vec<T>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut q = vec![("filter", filter)];
            if let Some(t) = &token {
                q.push(("pageToken", t.as_str()));
            }
            let page: List<T> = self.call(Method::GET, path, &q, None).await?;
            out.extend(page.items);
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
        Err(GcpError { op: format!("GET {path}"), status: None, code: None, message: "more than 1000 pages".into() })
    }

    /// `instances.stop` / `instances.start`.
    pub async fn instance_action(&self, zone: &str, name: &str, action: &str) -> Result<Operation, GcpError> {
        self.call(Method::POST, &format!("zones/{zone}/instances/{name}/{action}"), &[], None).await
    }

    /// `instances.delete`.
    pub async fn delete_instance(&self, zone: &str, name: &str) -> Result<Operation, GcpError> {
        self.call(Method::DELETE, &format!("zones/{zone}/instances/{name}"), &[], None).await
    }

    /// `firewalls.insert`.
    pub async fn insert_firewall(&self, fw: &Firewall) -> Result<Operation, GcpError> {
        let b = Self::to_json(fw, "global/firewalls")?;
        self.call(Method::POST, "global/firewalls", &[], Some(b)).await
    }

    /// `firewalls.get`; `None` on 404.
    pub async fn get_firewall(&self, name: &str) -> Result<Option<Firewall>, GcpError> {
        match self.call(Method::GET, &format!("global/firewalls/{name}"), &[], None).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `firewalls.patch` of the allowed ports.
    pub async fn patch_firewall_allowed(&self, name: &str, allowed: &[FirewallAllowed]) -> Result<Operation, GcpError> {
        let path = format!("global/firewalls/{name}");
        let b = serde_json::json!({ "allowed": Self::to_json(&allowed, &path)? });
        self.call(Method::PATCH, &path, &[], Some(b)).await
    }

    /// `firewalls.delete`.
    pub async fn delete_firewall(&self, name: &str) -> Result<Operation, GcpError> {
        self.call(Method::DELETE, &format!("global/firewalls/{name}"), &[], None).await
    }

    /// Polls an operation until `DONE` (`zoneOperations.wait` for a zonal one, which blocks up
    /// to two minutes server-side; `globalOperations.get` with a pause for a global one), then
    /// turns an `error` into a [`GcpError`] named after `what`.
    pub async fn wait(&self, op: Operation, what: &str) -> Result<Operation, GcpError> {
        let deadline = Instant::now() + self.op_timeout;
        let zone = op.zone.as_deref().map(|z| z.rsplit('/').next().unwrap_or(z).to_string());
        let mut cur = op;
        let mut pause = Duration::from_millis(100);
        while cur.status != "DONE" {
            if Instant::now() > deadline {
                return Err(GcpError {
                    op: what.to_string(),
                    status: None,
                    code: None,
                    message: format!("operation {} not DONE after {:?} (status {})", cur.name, self.op_timeout, cur.status),
                });
            }
            cur = match &zone {
                Some(z) => self.call(Method::POST, &format!("zones/{z}/operations/{}/wait", cur.name), &[], None).await?,
                None => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    self.call(Method::GET, &format!("global/operations/{}", cur.name), &[], None).await?
                }
            };
        }
        match cur.failure(what) {
            Some(e) => Err(e),
            None => Ok(cur),
        }
    }
}


