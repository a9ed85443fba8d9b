//! The Lambda Cloud REST API (`/api/v1`) as the backend uses it: JSON in and out, the API key as
//! a bearer, `{"data": …}` on success and `{"error": {"code", "message", "suggestion"?}}` on
//! failure. Wire shapes follow Lambda's published OpenAPI spec (v1.5.3 and v1.8.3); see
//! /work/shared/api-formats/provisioning/lambda-cloud.md and docs/clouds/lambda.md.
//!
//! Responses are read leniently (fields were added across spec versions); requests carry only
//! the fields the spec defines.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use crate::backend::rest::{snippet, without_url};

/// The production endpoint (spec 1.8.3 "Production server"); the fetchers and `skycat check`
/// use the same default and the same variable, `SKYCAT_LAMBDA_ENDPOINT`.
pub const DEFAULT_ENDPOINT: &str = "https://cloud.lambda.ai/";
pub const ENDPOINT_VAR: &str = "SKYCAT_LAMBDA_ENDPOINT";
/// Where the API key is looked for, in order (as `skycat check` does).
pub const KEY_VARS: &[&str] = &["SKYCAT_LAMBDA_API_KEY", "LAMBDA_API_KEY"];
/// Tries per call when Lambda answers 429 (waits 2, 4, 8, 16 s between them).
const RATE_LIMIT_ATTEMPTS: u32 = 5;

/// A failed call: the HTTP status and Lambda's error code when it answered with one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct LambdaError {
    /// `POST instance-operations/launch`.
    pub op: String,
    /// None when no HTTP answer came (connection refused, timeout).
    pub status: Option<u16>,
    /// Lambda's `error.code` (`instance-operations/launch/insufficient-capacity`).
    pub code: Option<String>,
    pub message: String,
}

/// The API key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The first of [`KEY_VARS`] that is set and not blank, with the variable's name.
    pub fn from_env() -> Option<(&'static str, ApiKey)> {
        KEY_VARS.iter().find_map(|v| {
            std::env::var(v).ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).map(|k| (*v, ApiKey(k)))
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// `region` of an instance or of `regions_with_capacity_available`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Region {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// `instance_type` of an instance or of `GET /instance-types`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct InstanceType {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub price_cents_per_hour: Option<i64>,
}

/// One entry of `GET /instance-types`' `data` map.
#[derive(Debug, Clone, Deserialize)]
pub struct InstanceTypeEntry {
    pub instance_type: InstanceType,
    #[serde(default)]
    pub regions_with_capacity_available: Vec<Region>,
}

/// An instance as `GET /instances`, `GET /instances/{id}` and the operations return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Instance {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Absent or null while `booting`.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    pub status: String,
    #[serde(default)]
    pub ssh_key_names: Vec<String>,
    #[serde(default)]
    pub region: Option<Region>,
    #[serde(default)]
    pub instance_type: Option<InstanceType>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SshKey {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `POST /instance-operations/launch`. Only the spec's fields; `quantity` is 1 (spec 1.5.3 has
/// min = max = 1; SkyPilot and dstack still send it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LaunchRequest {
    pub region_name: String,
    pub instance_type_name: String,
    pub ssh_key_names: Vec<String>,
    pub file_system_names: Vec<String>,
    pub quantity: u32,
    pub name: String,
    /// Spec 1.8.3: `{"id": …}` or `{"family": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
}

/// Externally tagged, which is the wire shape: `{"id": "…"}` or `{"family": "…"}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ImageSpec {
    Id(String),
    Family(String),
}


#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    suggestion: Option<String>,
}

#[derive(Deserialize)]
struct LaunchData {
    instance_ids: Vec<String>,
}

#[derive(Deserialize)]
struct TerminateData {
    #[serde(default)]
    terminated_instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct RestartData {
    #[serde(default)]
    restarted_instances: Vec<Instance>,
}

/// A client of one Lambda Cloud account.
#[derive(Clone)]
pub struct LambdaApi {
    http: reqwest::Client,
    /// `https://cloud.lambda.ai/api/v1/` (always ends with `/`).
    base: reqwest::Url,
    key: ApiKey,
}

impl fmt::Debug for LambdaApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaApi").field("base", &self.base.as_str()).field("key", &self.key).finish()
    }
}

impl LambdaApi {
    /// `endpoint` is the host root as `SKYCAT_LAMBDA_ENDPOINT` gives it (`https://cloud.lambda.ai/`);
    /// `api/v1/` is appended.
    pub fn new(endpoint: &str, key: ApiKey) -> Result<LambdaApi, LambdaError> {
        let bad = |m: String| LambdaError { op: ENDPOINT_VAR.into(), status: None, code: None, message: m };
        let mut root = endpoint.trim().to_string();
        if !root.ends_with('/') {
            root.push('/');
        }
        let root = reqwest::Url::parse(&root).map_err(|e| bad(format!("{endpoint:?} is not a URL ({e})")))?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(bad(format!("{endpoint:?} is not an http(s) URL")));
        }
        let base = root.join("api/v1/").map_err(|e| bad(format!("{endpoint:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            // A redirected POST turns into a GET (the deprecated host answers 301): never follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(LambdaApi { http, base, key })
    }

    /// From `SKYCAT_LAMBDA_ENDPOINT` (default [`DEFAULT_ENDPOINT`]) and the key variables.
    pub fn from_env() -> Result<LambdaApi, LambdaError> {
        let Some((_, key)) = ApiKey::from_env() else {
            return Err(LambdaError {
                op: "credentials".into(),
                status: None,
                code: None,
                message: format!("no Lambda Cloud API key: set {} (then run `skycat check lambda`)", KEY_VARS.join(" or ")),
            });
        };
        let endpoint = std::env::var(ENDPOINT_VAR).ok().filter(|e| !e.trim().is_empty());
        LambdaApi::new(endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), key)
    }

    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// One call, retried on HTTP 429: Lambda allows about 1 request/s and one launch per 12 s
    /// (SkyPilot retries 429 with backoff too).
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<T, LambdaError> {
        let mut pause = Duration::from_secs(2);
        for _ in 1..RATE_LIMIT_ATTEMPTS {
            match self.call_once(method.clone(), path, body.clone()).await {
                Err(e) if e.status == Some(StatusCode::TOO_MANY_REQUESTS.as_u16()) => {
                    tracing::debug!("{e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(16));
                }
                other => return other,
            }
        }
        self.call_once(method, path, body).await
    }

    async fn call_once<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<T, LambdaError> {
        let op = format!("{method} {path}");
        let err = |status: Option<u16>, code: Option<String>, message: String| LambdaError { op: op.clone(), status, code, message };
        let url = self.base.join(path).map_err(|e| err(None, None, format!("bad path: {e}")))?;
        let mut req = self.http.request(method.clone(), url).bearer_auth(&self.key.0).header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| err(None, None, format!("no answer from {}: {}", self.base, without_url(&e))))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| err(Some(status.as_u16()), None, format!("reading the answer: {}", without_url(&e))))?;
        if status.is_success() {
            let d: Data<T> = serde_json::from_slice(&bytes)
                .map_err(|e| err(Some(status.as_u16()), None, format!("unexpected answer ({e}): {}", snippet(&bytes))))?;
            return Ok(d.data);
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => {
                let mut message = b.error.message.unwrap_or_else(|| format!("HTTP {status}"));
                if let Some(s) = b.error.suggestion.filter(|s| !s.trim().is_empty()) {
                    message = format!("{message} ({s})");
                }
                err(Some(status.as_u16()), b.error.code, message)
            }
            Err(_) => err(Some(status.as_u16()), None, format!("HTTP {status}: {}", snippet(&bytes))),
        })
    }

    /// `GET /instance-types`: every type with the regions that have capacity now.
    pub async fn instance_types(&self) -> Result<BTreeMap<String, InstanceTypeEntry>, LambdaError> {
        self.call(Method::GET, "instance-types", None).await
    }

    /// `POST /instance-operations/launch`: the ids launched (the spec warns there may be fewer
    /// than asked for).
    pub async fn launch(&self, req: &LaunchRequest) -> Result<Vec<String>, LambdaError> {
        let body = serde_json::to_value(req).map_err(|e| LambdaError {
            op: "POST instance-operations/launch".into(),
            status: None,
            code: None,
            message: e.to_string(),
        })?;
        let d: LaunchData = self.call(Method::POST, "instance-operations/launch", Some(body)).await?;
        Ok(d.instance_ids)
    }

    /// `POST /instance-operations/terminate`.
    pub async fn terminate(&self, ids: &[String]) -> Result<Vec<Instance>, LambdaError> {
        let d: TerminateData =
            self.call(Method::POST, "instance-operations/terminate", Some(serde_json::json!({ "instance_ids": ids }))).await?;
        Ok(d.terminated_instances)
    }

    /// `POST /instance-operations/restart`: a reboot of the same VMs (Lambda has no stop/start).
    pub async fn restart(&self, ids: &[String]) -> Result<Vec<Instance>, LambdaError> {
        let d: RestartData =
            self.call(Method::POST, "instance-operations/restart", Some(serde_json::json!({ "instance_ids": ids }))).await?;
        Ok(d.restarted_instances)
    }

    /// `GET /instances`: every instance of the account (no paging).
    pub async fn instances(&self) -> Result<Vec<Instance>, LambdaError> {
        self.call(Method::GET, "instances", None).await
    }

    /// `GET /instances/{id}`; `None` on 404 (`global/object-does-not-exist`).
    pub async fn instance(&self, id: &str) -> Result<Option<Instance>, LambdaError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(LambdaError {
                op: "GET instances/{id}".into(),
                status: None,
                code: None,
                message: format!("instance id {id:?} is not a Lambda instance id"),
            });
        }
        match self.call(Method::GET, &format!("instances/{id}"), None).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.status == Some(StatusCode::NOT_FOUND.as_u16()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /ssh-keys`.
    pub async fn ssh_keys(&self) -> Result<Vec<SshKey>, LambdaError> {
        self.call(Method::GET, "ssh-keys", None).await
    }

    /// `POST /ssh-keys` with a public key (Lambda stores it; no private key comes back).
    pub async fn add_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey, LambdaError> {
        self.call(Method::POST, "ssh-keys", Some(serde_json::json!({ "name": name, "public_key": public_key }))).await
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_body_has_only_spec_fields() {
        let mut r = LaunchRequest {
            region_name: "us-east-1".into(),
            instance_type_name: "gpu_1x_a10".into(),
            ssh_key_names: vec!["k".into()],
            file_system_names: vec![],
            quantity: 1,
            name: "n".into(),
            image: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["file_system_names", "instance_type_name", "name", "quantity", "region_name", "ssh_key_names"]);
        r.image = Some(ImageSpec::Family("lambda-stack-22-04".into()));
        assert_eq!(serde_json::to_value(&r).unwrap()["image"], serde_json::json!({"family": "lambda-stack-22-04"}));
    }

    #[test]
    fn key_never_shows_and_endpoints_are_checked() {
        let api = LambdaApi::new("http://127.0.0.1:9", ApiKey::new("secret-key-123")).unwrap();
        assert_eq!(api.base(), "http://127.0.0.1:9/api/v1/");
        assert!(!format!("{api:?}").contains("secret-key-123"));
        assert!(LambdaApi::new("ftp://x/", ApiKey::new("k")).unwrap_err().to_string().contains("not an http(s) URL"));
        assert!(LambdaApi::new("::", ApiKey::new("k")).unwrap_err().to_string().contains(ENDPOINT_VAR));
    }

    #[test]
    fn instances_deserialize_leniently() {
        let booting: Instance = serde_json::from_value(serde_json::json!({
            "id": "0920582c7ff041399e34823a0be62549", "status": "booting", "ssh_key_names": ["k"],
            "file_system_names": [], "region": {"name": "us-east-1", "description": "Virginia, USA"},
            "instance_type": {"name": "gpu_1x_a10", "specs": {"gpus": 1}}, "actions": {}, "ip": null, "tags": []
        }))
        .unwrap();
        assert_eq!((booting.status.as_str(), booting.ip), ("booting", None));
    }
}
