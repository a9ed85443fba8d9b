//! Azure Resource Manager (ARM) REST as the backend uses it: JSON in and out, a bearer token
//! ([`super::auth`]), `?api-version=` on every call, the error envelope
//! `{"error": {"code", "message", "target"?, "details"?}}`, and long-running operations: a
//! 201/202 answer carries `Azure-AsyncOperation` (polled until `status` is `Succeeded`, `Failed`
//! or `Canceled`; the failure's code is in `error.code`) and/or `Location` (202 while running,
//! then 200/204), each poll waiting what `Retry-After` asks (ARM's async-operations guide).
//! Wire shapes: /work/shared/api-formats/provisioning/azure-arm-compute.md and docs/clouds/azure.md.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::backend::rest::{snippet, without_url};
use super::auth::{Credential, TokenSource, DEFAULT_LOGIN, LOGIN_VARS};

/// The ARM host; the variable is the one `skycat check azure` and the price fetcher's Resource
/// SKUs call use (`SKYCAT_AZURE_ENDPOINT` is the retail price API's).
pub const MANAGEMENT_VAR: &str = "SKYCAT_AZURE_MANAGEMENT_ENDPOINT";
pub const DEFAULT_MANAGEMENT: &str = "https://management.azure.com/";
pub const SUBSCRIPTION_VAR: &str = "AZURE_SUBSCRIPTION_ID";

/// api-version per resource provider: the spec folders of the published examples used.
pub const RESOURCES_API: &str = "2024-03-01";
pub const NETWORK_API: &str = "2024-05-01";
pub const COMPUTE_API: &str = "2024-07-01";

/// A failed call: the HTTP status and ARM's `error.code` when it answered with one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct ArmError {
    /// `PUT virtualMachines/skycat-…` or `POST {tenant}/oauth2/v2.0/token`.
    pub op: String,
    /// None when no HTTP answer came (or the failure came from a long-running operation's body).
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

/// A client of one subscription.
#[derive(Clone)]
pub struct AzureApi {
    http: reqwest::Client,
    /// `https://management.azure.com/` (ends with `/`).
    arm: reqwest::Url,
    subscription: String,
    tokens: TokenSource,
    /// Longest wait between polls of an operation (Retry-After is capped at it).
    max_poll: Duration,
    /// How long an operation may run before skycat gives up on it.
    op_timeout: Duration,
}

impl fmt::Debug for AzureApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureApi")
            .field("arm", &self.arm.as_str())
            .field("subscription", &self.subscription)
            .field("tokens", &self.tokens)
            .finish()
    }
}

fn endpoint(var: &str, raw: &str) -> Result<reqwest::Url, ArmError> {
    let bad = |m: String| ArmError { op: var.to_string(), status: None, code: None, message: m };
    let mut s = raw.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    let u = reqwest::Url::parse(&s).map_err(|e| bad(format!("{raw:?} is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(format!("{raw:?} is not an http(s) URL")));
    }
    Ok(u)
}

impl AzureApi {
    pub fn new(management: &str, login: &str, subscription: &str, cred: Credential) -> Result<AzureApi, ArmError> {
        let arm = endpoint(MANAGEMENT_VAR, management)?;
        let login = endpoint(LOGIN_VARS[0], login)?;
        let sub = subscription.trim();
        if sub.is_empty() || !sub.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(ArmError {
                op: SUBSCRIPTION_VAR.into(),
                status: None,
                code: None,
                message: format!("{sub:?} is not a subscription id (a GUID)"),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ArmError { op: "HTTP client".into(), status: None, code: None, message: e.to_string() })?;
        Ok(AzureApi {
            http,
            arm,
            subscription: sub.to_string(),
            tokens: TokenSource::new(cred, login),
            max_poll: Duration::from_secs(15),
            op_timeout: Duration::from_secs(1800),
        })
    }

    /// From `SKYCAT_AZURE_MANAGEMENT_ENDPOINT`, the login variables, `AZURE_SUBSCRIPTION_ID` and
    /// the credential variables.
    pub fn from_env() -> Result<AzureApi, ArmError> {
        let var = |v: &str| std::env::var(v).ok().filter(|s| !s.trim().is_empty());
        let creds = |message: String| ArmError { op: "credentials".into(), status: None, code: None, message };
        let cred = Credential::from_env().map_err(creds)?;
        let sub = var(SUBSCRIPTION_VAR)
            .ok_or_else(|| creds(format!("no Azure subscription: set {SUBSCRIPTION_VAR} (then run `skycat check azure`)")))?;
        let management = var(MANAGEMENT_VAR).unwrap_or_else(|| DEFAULT_MANAGEMENT.to_string());
        let login = LOGIN_VARS.iter().find_map(|v| var(v)).unwrap_or_else(|| DEFAULT_LOGIN.to_string());
        AzureApi::new(&management, &login, &sub, cred)
    }

    /// Overrides the poll cap and operation timeout.
    pub fn with_timeouts(mut self, max_poll: Duration, op_timeout: Duration) -> AzureApi {
        self.max_poll = max_poll;
        self.op_timeout = op_timeout;
        self
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}`.
    pub fn rg_path(&self, rg: &str) -> String {
        format!("subscriptions/{}/resourceGroups/{rg}", self.subscription)
    }

    /// One call. `path` is relative to the ARM root (no leading `/`), or an absolute poll URL
    /// (rebased onto the configured endpoint: a token is never sent to another host).
    async fn send(&self, method: Method, path: &str, api_version: Option<&str>, body: Option<&Value>) -> Result<(u16, HeaderMap, Vec<u8>), ArmError> {
        let op = format!("{method} {}", short(path));
        let err = |status: Option<u16>, message: String| ArmError { op: op.clone(), status, code: None, message };
        let mut url = match reqwest::Url::parse(path) {
            Ok(abs) => {
                let mut u = self.arm.clone();
                u.set_path(abs.path());
                u.set_query(abs.query());
                u
            }
            Err(_) => self.arm.join(path).map_err(|e| err(None, format!("bad path: {e}")))?,
        };
        if let Some(v) = api_version {
            url.query_pairs_mut().append_pair("api-version", v);
        }
        let token = self.tokens.token(&self.http).await?;
        let mut req = self.http.request(method.clone(), url).bearer_auth(token.expose()).header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| err(None, format!("no answer from {}: {}", self.arm, without_url(&e))))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| err(Some(status), without_url(&e)))?;
        if (200..300).contains(&status) {
            return Ok((status, headers, bytes.to_vec()));
        }
        Err(envelope_error(&op, Some(status), &bytes))
    }

    /// `GET`: the resource, or `None` on 404 (`ResourceNotFound`, `ResourceGroupNotFound`, …).
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Option<Value>, ArmError> {
        match self.send(Method::GET, path, Some(api_version), None).await {
            Ok((_, _, b)) => Ok(Some(json(&format!("GET {}", short(path)), &b)?)),
            Err(e) if e.status == Some(StatusCode::NOT_FOUND.as_u16()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT` a resource and wait for its long-running operation; the resource as it ends up.
    pub async fn put(&self, path: &str, api_version: &str, body: &Value) -> Result<Value, ArmError> {
        let (_, headers, bytes) = self.send(Method::PUT, path, Some(api_version), Some(body)).await?;
        self.wait(&format!("PUT {}", short(path)), &headers).await?;
        match self.get(path, api_version).await? {
            Some(v) => Ok(v),
            // Some resources (resource groups) answer the PUT synchronously with the body.
            None => json(&format!("PUT {}", short(path)), &bytes),
        }
    }

    /// `POST` an action (`deallocate`, `start`) and wait for it.
    pub async fn action(&self, path: &str, api_version: &str) -> Result<(), ArmError> {
        let (_, headers, _) = self.send(Method::POST, path, Some(api_version), None).await?;
        self.wait(&format!("POST {}", short(path)), &headers).await
    }

    /// `DELETE` and wait; a resource already gone is fine.
    pub async fn delete(&self, path: &str, api_version: &str, extra_query: &[(&str, &str)]) -> Result<(), ArmError> {
        let mut p = path.to_string();
        for (k, v) in extra_query {
            p.push(if p.contains('?') { '&' } else { '?' });
            p.push_str(&format!("{k}={v}"));
        }
        match self.send(Method::DELETE, &p, Some(api_version), None).await {
            Ok((_, headers, _)) => self.wait(&format!("DELETE {}", short(path)), &headers).await,
            Err(e) if e.status == Some(StatusCode::NOT_FOUND.as_u16()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Polls the operation the answer points at, if any, until it ends. A failed or canceled
    /// operation is an error with its `error.code`.
    async fn wait(&self, op: &str, headers: &HeaderMap) -> Result<(), ArmError> {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let async_op = header("azure-asyncoperation");
        let location = header("location");
        if async_op.is_none() && location.is_none() {
            // 200 (done), or 201/202 without a monitor: nothing to follow.
            return Ok(());
        }
        let deadline = Instant::now() + self.op_timeout;
        let mut retry_after = retry_after_of(headers);
        loop {
            tokio::time::sleep(retry_after.min(self.max_poll)).await;
            if Instant::now() > deadline {
                return Err(ArmError {
                    op: op.to_string(),
                    status: None,
                    code: None,
                    message: format!("still running after {:?}", self.op_timeout),
                });
            }
            if let Some(url) = &async_op {
                let (_, h, b) = self.send(Method::GET, url, None, None).await?;
                retry_after = retry_after_of(&h);
                let v = json(op, &b)?;
                match v.get("status").and_then(Value::as_str).unwrap_or_default() {
                    "Succeeded" => return Ok(()),
                    s @ ("Failed" | "Canceled") => {
                        let e = v.get("error");
                        let text = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
                        return Err(ArmError {
                            op: op.to_string(),
                            status: None,
                            code: text("code"),
                            message: text("message").unwrap_or_else(|| format!("operation {s}")),
                        });
                    }
                    _ => continue,
                }
            }
            let url = location.as_deref().unwrap_or_default();
            let (s, h, _) = self.send(Method::GET, url, None, None).await?;
            if s != StatusCode::ACCEPTED.as_u16() {
                return Ok(());
            }
            retry_after = retry_after_of(&h);
        }
    }

    /// `GET subscriptions/{sub}`: a read-only call that proves the credentials work.
    pub async fn subscription_info(&self) -> Result<Value, ArmError> {
        let p = format!("subscriptions/{}", self.subscription);
        self.get(&p, "2022-12-01").await?.ok_or_else(|| ArmError {
            op: format!("GET {p}"),
            status: Some(404),
            code: Some("SubscriptionNotFound".into()),
            message: format!("subscription {} not found", self.subscription),
        })
    }
}

/// `Retry-After` in seconds (ARM sends integers), else a short default.
fn retry_after_of(h: &HeaderMap) -> Duration {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_millis(500))
        .max(Duration::from_millis(100))
}

fn json(op: &str, b: &[u8]) -> Result<Value, ArmError> {
    serde_json::from_slice(b).map_err(|e| ArmError {
        op: op.to_string(),
        status: None,
        code: None,
        message: format!("unexpected answer ({e}): {}", snippet(b)),
    })
}

/// An ARM error body as an [`ArmError`].
pub fn envelope_error(op: &str, status: Option<u16>, bytes: &[u8]) -> ArmError {
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(Envelope { error }) => {
            let mut message = error.message.unwrap_or_else(|| "no message".into());
            if let Some(t) = error.target.filter(|t| !t.is_empty()) {
                message = format!("{message} (target {t})");
            }
            ArmError { op: op.to_string(), status, code: error.code, message }
        }
        Err(_) => ArmError {
            op: op.to_string(),
            status,
            code: None,
            message: format!("HTTP {}: {}", status.unwrap_or_default(), snippet(bytes)),
        },
    }
}

/// A path for messages: the part after the resource group's provider, without the query.
fn short(path: &str) -> String {
    let p = path.split('?').next().unwrap_or_default();
    match p.rfind("/providers/") {
        Some(i) => p[i + "/providers/".len()..].to_string(),
        None => p.trim_start_matches('/').to_string(),
    }
}


