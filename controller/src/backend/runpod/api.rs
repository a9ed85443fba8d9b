//! RunPod's GraphQL API as the backend uses it: `POST {SKYCAT_RUNPOD_ENDPOINT}graphql` (default
//! `https://api.runpod.io/graphql`, the same variable the price fetcher and `skycat check` read),
//! the API key as `Authorization: Bearer` (runpod-python since 2025, runpodctl, dstack).
//!
//! Operations are sent in the typed form runpodctl uses (`mutation m($input: XInput!) { … }` with
//! `variables`), so no user text is ever spliced into a query string. Wire shapes follow
//! runpod-python (`runpod/api/mutations/pods.py`, `queries/pods.py`), runpodctl (`api/pod.go`)
//! and SkyPilot (`sky/provision/runpod/`); see docs/clouds/runpod.md.
//!
//! GraphQL reports errors as HTTP 200 with `errors[]`; a refused key is HTTP 401.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{ErrorClass, ProvisionError};

pub const DEFAULT_ENDPOINT: &str = "https://api.runpod.io/";
/// Where the key is looked up, in order (as `skycat check` does).
pub const KEY_VARS: &[&str] = &["SKYCAT_RUNPOD_API_KEY", "RUNPOD_API_KEY"];

pub const DEPLOY_ON_DEMAND: &str = "mutation deployOnDemand($input: PodFindAndDeployOnDemandInput!) { podFindAndDeployOnDemand(input: $input) { id desiredStatus imageName machineId } }";
pub const DEPLOY_SPOT: &str = "mutation deploySpot($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id desiredStatus imageName machineId } }";
pub const POD: &str = "query pod($input: PodFilter) { pod(input: $input) { id name desiredStatus costPerHr gpuCount runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } } } }";
pub const PODS: &str = "query pods { myself { id pods { id name desiredStatus } } }";
pub const POD_STOP: &str = "mutation stopPod($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }";
pub const POD_RESUME: &str = "mutation resumePod($input: PodResumeInput!) { podResume(input: $input) { id desiredStatus } }";
/// `podTerminate` returns a scalar: no selection set.
pub const POD_TERMINATE: &str = "mutation terminatePod($input: PodTerminateInput!) { podTerminate(input: $input) }";

/// `PodFindAndDeployOnDemandInput` / `PodRentInterruptableInput` (the latter adds `bidPerGpu`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployInput {
    /// `SECURE` or `COMMUNITY` (the enum `CloudTypeEnum`).
    pub cloud_type: String,
    pub gpu_count: u32,
    pub gpu_type_id: String,
    pub name: String,
    pub image_name: String,
    pub container_disk_in_gb: u32,
    pub volume_in_gb: u32,
    /// Sent always: SkyPilot lists it among the spot mutation's required fields.
    pub volume_mount_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_vcpu_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_memory_in_gb: Option<u32>,
    /// `22/tcp,8888/tcp`.
    pub ports: String,
    pub env: Vec<EnvVar>,
    /// Secure Cloud: the data center; Community Cloud: the country (dstack's split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_center_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    pub support_public_ip: bool,
    pub start_ssh: bool,
    /// Spot only: USD per GPU-hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_per_gpu: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub desired_status: Option<String>,
    #[serde(default)]
    pub runtime: Option<Runtime>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    #[serde(default)]
    pub ports: Option<Vec<PortMapping>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub is_ip_public: Option<bool>,
    pub private_port: u16,
    #[serde(default)]
    pub public_port: Option<u16>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl Pod {
    /// Where sshd answers: the public IP and the public port mapped to private port 22, once
    /// the container is up (`runtime` and its `ports` are null until then).
    pub fn ssh_endpoint(&self) -> Option<(String, u16)> {
        let ports = self.runtime.as_ref()?.ports.as_ref()?;
        ports.iter().find_map(|p| {
            let tcp = p.kind.as_deref().is_none_or(|k| k == "tcp");
            match (p.private_port, p.is_ip_public, &p.ip, p.public_port) {
                (22, Some(true), Some(ip), Some(port)) if tcp && !ip.is_empty() => Some((ip.clone(), port)),
                _ => None,
            }
        })
    }

    /// A private address, if RunPod reports one.
    pub fn private_ip(&self) -> Option<String> {
        let ports = self.runtime.as_ref()?.ports.as_ref()?;
        ports.iter().find(|p| p.is_ip_public == Some(false)).and_then(|p| p.ip.clone())
    }
}

#[derive(Debug, Deserialize)]
struct GqlResponse {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<GqlError>>,
}

#[derive(Debug, Deserialize)]
struct GqlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<serde_json::Value>,
}

/// Maps a GraphQL error message to a class, by the messages peers have seen (the notes in
/// docs/clouds/runpod.md): stock errors are capacity, "Something went wrong" is transient.
pub fn classify_message(message: &str, code: Option<&str>) -> ProvisionError {
    let m = message.to_ascii_lowercase();
    let class = if m.contains("no longer any instances available")
        || m.contains("does not have the resources to deploy")
        || m.contains("no compatible cuda host")
        || m.contains("not enough free gpus")
        || code == Some("SUPPLY_CONSTRAINT")
    {
        ErrorClass::Capacity
    } else if m.contains("something went wrong") || code == Some("INTERNAL_SERVER_ERROR") {
        ErrorClass::Transient
    } else if m.contains("unauthorized") || m.contains("api key") || m.contains("forbidden") {
        ErrorClass::Auth
    } else {
        ErrorClass::Invalid
    };
    ProvisionError { class, code: code.map(str::to_string), message: format!("RunPod: {message}") }
}

/// A GraphQL client bound to one endpoint and key. The key is only ever put in the header.
#[derive(Clone)]
pub struct RunPodApi {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl std::fmt::Debug for RunPodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPodApi").field("url", &self.url).field("key", &"<redacted>").finish()
    }
}

impl RunPodApi {
    /// From the environment: `SKYCAT_RUNPOD_ENDPOINT` and the first key of [`KEY_VARS`].
    pub fn from_env() -> Result<RunPodApi, ProvisionError> {
        let key = KEY_VARS.iter().find_map(|v| std::env::var(v).ok().filter(|k| !k.trim().is_empty())).ok_or_else(|| {
            ProvisionError::new(ErrorClass::Auth, "no RunPod API key: set RUNPOD_API_KEY (or SKYCAT_RUNPOD_API_KEY)")
        })?;
        let base = std::env::var("SKYCAT_RUNPOD_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string());
        RunPodApi::new(&base, key.trim())
    }

    pub fn new(base: &str, key: &str) -> Result<RunPodApi, ProvisionError> {
        let mut base = base.trim().to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProvisionError::new(
                ErrorClass::Invalid,
                format!("SKYCAT_RUNPOD_ENDPOINT={base:?} is not an http(s) URL"),
            ));
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("skycat/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProvisionError::new(ErrorClass::Invalid, format!("RunPod HTTP client: {e}")))?;
        Ok(RunPodApi { http, url: format!("{base}graphql"), key: key.to_string() })
    }

    /// Sends one operation; returns `data.<field>`. GraphQL errors become classified errors.
    pub async fn call(&self, query: &str, variables: serde_json::Value, field: &str) -> Result<serde_json::Value, ProvisionError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| ProvisionError::new(ErrorClass::Transient, format!("RunPod {field}: {}", without_url(&e))))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProvisionError::new(ErrorClass::Auth, format!("RunPod {field}: HTTP {status}: the API key was refused")));
        }
        if !status.is_success() {
            let class = if status.is_server_error() || status.as_u16() == 429 { ErrorClass::Transient } else { ErrorClass::Invalid };
            return Err(ProvisionError::new(class, format!("RunPod {field}: HTTP {status}: {}", first_line(&text))));
        }
        let parsed: GqlResponse = serde_json::from_str(&text)
            .map_err(|e| ProvisionError::new(ErrorClass::Transient, format!("RunPod {field}: unreadable answer ({e}): {}", first_line(&text))))?;
        if let Some(e) = parsed.errors.as_ref().and_then(|v| v.first()) {
            let code = e.extensions.as_ref().and_then(|x| x.get("code")).and_then(|c| c.as_str());
            return Err(classify_message(&e.message, code));
        }
        let data = parsed.data.unwrap_or(serde_json::Value::Null);
        Ok(data.get(field).cloned().unwrap_or(serde_json::Value::Null))
    }

    pub async fn deploy(&self, input: &DeployInput) -> Result<String, ProvisionError> {
        let (query, field) = if input.bid_per_gpu.is_some() {
            (DEPLOY_SPOT, "podRentInterruptable")
        } else {
            (DEPLOY_ON_DEMAND, "podFindAndDeployOnDemand")
        };
        let v = self.call(query, serde_json::json!({ "input": input }), field).await?;
        v.get("id").and_then(|i| i.as_str()).map(str::to_string).ok_or_else(|| {
            ProvisionError::new(ErrorClass::Transient, format!("RunPod {field}: the answer has no pod id"))
        })
    }

    /// The pod, or `None` when RunPod no longer knows it.
    pub async fn pod(&self, id: &str) -> Result<Option<Pod>, ProvisionError> {
        let v = self.call(POD, serde_json::json!({ "input": { "podId": id } }), "pod").await?;
        if v.is_null() {
            return Ok(None);
        }
        serde_json::from_value(v).map(Some).map_err(|e| ProvisionError::new(ErrorClass::Transient, format!("RunPod pod {id}: {e}")))
    }

    /// Every pod of the account (`myself.pods`: no paging).
    pub async fn pods(&self) -> Result<Vec<Pod>, ProvisionError> {
        let v = self.call(PODS, serde_json::json!({}), "myself").await?;
        let pods = v.get("pods").cloned().unwrap_or(serde_json::Value::Array(Vec::new()));
        if pods.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(pods).map_err(|e| ProvisionError::new(ErrorClass::Transient, format!("RunPod myself.pods: {e}")))
    }

    pub async fn stop(&self, id: &str) -> Result<(), ProvisionError> {
        self.call(POD_STOP, serde_json::json!({ "input": { "podId": id } }), "podStop").await.map(|_| ())
    }

    pub async fn resume(&self, id: &str, gpu_count: u32) -> Result<(), ProvisionError> {
        self.call(POD_RESUME, serde_json::json!({ "input": { "podId": id, "gpuCount": gpu_count } }), "podResume").await.map(|_| ())
    }

    /// Terminates a pod; one RunPod no longer has counts as terminated (dstack does the same).
    pub async fn terminate(&self, id: &str) -> Result<(), ProvisionError> {
        match self.call(POD_TERMINATE, serde_json::json!({ "input": { "podId": id } }), "podTerminate").await {
            Ok(_) => Ok(()),
            Err(e) if e.message.to_ascii_lowercase().contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// reqwest's errors name the URL; ours carries no secret, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "graphql");
    }
    if e.is_connect() {
        s.push_str(" (connection failed)");
    } else if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    l.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        let c = |m: &str| classify_message(m, None).class;
        assert_eq!(c("There are no longer any instances available with the requested specifications. Please refresh and try again."), ErrorClass::Capacity);
        assert_eq!(c("There are no longer any instances available with enough disk space."), ErrorClass::Capacity);
        assert_eq!(c("There are not enough free GPUs on the host machine to start this pod."), ErrorClass::Capacity);
        assert_eq!(c("Something went wrong. Please try again later or contact support."), ErrorClass::Transient);
        assert_eq!(c("pod not found"), ErrorClass::Invalid);
        assert_eq!(classify_message("x", Some("SUPPLY_CONSTRAINT")).class, ErrorClass::Capacity);
    }

    #[test]
    fn ssh_endpoint_is_the_public_mapping_of_22() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "id": "5xpma5eg46tqjq", "desiredStatus": "RUNNING",
            "runtime": {"ports": [
                {"ip": "100.65.14.155", "isIpPublic": false, "privatePort": 22, "publicPort": 22, "type": "tcp"},
                {"ip": "213.173.104.74", "isIpPublic": true, "privatePort": 22, "publicPort": 35558, "type": "tcp"}]}
        }))
        .unwrap();
        assert_eq!(pod.ssh_endpoint(), Some(("213.173.104.74".to_string(), 35558)));
        assert_eq!(pod.private_ip().as_deref(), Some("100.65.14.155"));
        let booting: Pod = serde_json::from_value(serde_json::json!({"id": "x", "desiredStatus": "RUNNING", "runtime": null})).unwrap();
        assert_eq!(booting.ssh_endpoint(), None);
        let no_ports: Pod = serde_json::from_value(serde_json::json!({"id": "x", "runtime": {"ports": null}})).unwrap();
        assert_eq!(no_ports.ssh_endpoint(), None);
    }

    #[test]
    fn endpoint_must_be_http() {
        assert!(RunPodApi::new("ftp://x", "k").is_err());
        let a = RunPodApi::new("http://127.0.0.1:9", "secret-key").unwrap();
        assert_eq!(a.url, "http://127.0.0.1:9/graphql");
        assert!(!format!("{a:?}").contains("secret-key"));
    }
}
