//! `skycat check`: per cloud, where credentials were found and whether one authenticated,
//! read-only API call accepts them. The calls go to the same endpoints, with the same endpoint
//! variables and auth header forms, as the fetchers of `crate::providers`:
//!
//! | cloud | credentials looked for | call |
//! |---|---|---|
//! | aws | `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`); else the profile `AWS_PROFILE` (default `default`) in `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`) or `AWS_CONFIG_FILE` (`~/.aws/config`). Never instance metadata. | EC2 `DescribeRegions` through aws-sdk-ec2 (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`), region `AWS_REGION` / `AWS_DEFAULT_REGION` / `us-east-1` |
//! | gcp | `GOOGLE_OAUTH_ACCESS_TOKEN` + `GOOGLE_CLOUD_PROJECT` (or `CLOUDSDK_CORE_PROJECT`); an API key (`SKYCAT_GCP_API_KEY`, `GOOGLE_API_KEY`); a service-account key file (exchanged for a token, then the same call); other ADC files (reported, not verified) | `GET {SKYCAT_GCP_COMPUTE_ENDPOINT}compute/v1/projects/{project}` (Bearer); with a key only: `GET {SKYCAT_GCP_ENDPOINT}v1/services/6F81-5844-456A/skus?pageSize=1` (`x-goog-api-key`) |
//! | azure | `AZURE_SUBSCRIPTION_ID` + `AZURE_ACCESS_TOKEN`, or + a service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, token from `SKYCAT_AZURE_LOGIN_ENDPOINT`) | `GET {SKYCAT_AZURE_MANAGEMENT_ENDPOINT}subscriptions/{id}?api-version=2022-12-01` (Bearer) |
//! | lambda | `SKYCAT_LAMBDA_API_KEY`, `LAMBDA_API_KEY` | `GET {SKYCAT_LAMBDA_ENDPOINT}api/v1/instance-types` (Bearer) |
//! | runpod | `SKYCAT_RUNPOD_API_KEY`, `RUNPOD_API_KEY` | `POST {SKYCAT_RUNPOD_ENDPOINT}graphql` `query { myself { id } }` (Bearer) |
//! | vast | `SKYCAT_VAST_API_KEY`, `VAST_API_KEY` | `GET {SKYCAT_VAST_ENDPOINT}api/v0/users/current` (Bearer), as `vastai show user` |
//! | oci | none needed: the public price list | none |
//! | ibm | `IBM_API_KEY`, else `~/.ibm/credentials.yaml` | IAM token exchange + VPC `GET v1/regions` (`SKYCAT_IBM_IAM_ENDPOINT`, `SKYCAT_IBM_ENDPOINT`) |
//! | scp | `SCP_ACCESS_KEY` + `SCP_SECRET_KEY` + `SCP_PROJECT_ID`, else `~/.scp/scp_credential` | signed `GET project/v3/projects/{id}/zones` (`SKYCAT_SCP_ENDPOINT`) |
//!
//! Nothing is dialed for a cloud without credentials. Each call is bounded by
//! [`CALL_TIMEOUT`] and uses [`check_retry_policy`] (two attempts, short timeouts). Secrets never
//! appear in a result: only variable names and file paths do.
//!
//! Whether a verified cloud may launch is not decided here (that depends on the provisioning
//! backends, in the controller): [`CloudCheck::prices_only`] only says when what was found can
//! never launch (a GCP API key, OCI's public list).

mod aws;
mod ibm_scp;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use url::Url;

use crate::error::FetchError;
use crate::http::RetryPolicy;
use crate::provider::{AwsOnDemandSource, FetchContext};
use crate::providers;

/// The longest one authenticated call may take, retries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where credentials were found. Names and paths only, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Found {
    /// Environment variables, by name.
    Env { vars: Vec<String> },
    /// A credentials file, with what was found in it (e.g. `profile default`).
    File { path: PathBuf, detail: Option<String> },
    /// The cloud's price source needs no credentials.
    NotNeeded { what: String },
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Env { vars } => write!(f, "env {}", vars.join(" + ")),
            Found::File { path, detail: Some(d) } => write!(f, "file {} ({d})", path.display()),
            Found::File { path, detail: None } => write!(f, "file {}", path.display()),
            Found::NotNeeded { what } => write!(f, "none needed ({what})"),
        }
    }
}

/// The outcome of the authenticated read-only call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verification {
    /// The call succeeded with the credentials found.
    Verified { call: String },
    /// The provider refused the credentials (HTTP 401/403, `AuthFailure`…).
    Rejected { call: String, error: String },
    /// The call failed for another reason (unreachable, timeout, 5xx, unexpected answer).
    Failed { call: String, error: String },
    /// No call was made: nothing to verify with, or nothing that needs verifying.
    Skipped { reason: String },
}

impl Verification {
    pub fn is_verified(&self) -> bool {
        matches!(self, Verification::Verified { .. })
    }

    /// The call made, if one was.
    pub fn call(&self) -> Option<&str> {
        match self {
            Verification::Verified { call } | Verification::Rejected { call, .. } | Verification::Failed { call, .. } => {
                Some(call)
            }
            Verification::Skipped { .. } => None,
        }
    }

    /// The one-line error of a rejected or failed call.
    pub fn error(&self) -> Option<&str> {
        match self {
            Verification::Rejected { error, .. } | Verification::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Verified { call } => write!(f, "verified ({call})"),
            Verification::Rejected { call, error } => write!(f, "credentials rejected ({call}): {error}"),
            Verification::Failed { call, error } => write!(f, "not verified ({call}): {error}"),
            Verification::Skipped { reason } => write!(f, "not checked: {reason}"),
        }
    }
}

/// What `skycat check` learned about one cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudCheck {
    pub cloud: String,
    /// Every place credentials were found; empty = none found.
    pub credentials: Vec<Found>,
    pub verification: Verification,
    /// Set when what was found can only ever read prices, whatever backends exist.
    pub prices_only: Option<String>,
}

impl CloudCheck {
    /// `"none found"`, or the places joined with `; `.
    pub fn credentials_text(&self) -> String {
        if self.credentials.is_empty() {
            return "none found".into();
        }
        self.credentials.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; ")
    }

    /// Whether anything but "no credentials needed" was found.
    pub fn has_credentials(&self) -> bool {
        self.credentials.iter().any(|c| !matches!(c, Found::NotNeeded { .. }))
    }
}

/// The clouds `check` knows: every registered provider.
pub fn known_clouds() -> Vec<&'static str> {
    providers::names()
}

/// Two attempts, short backoff and a 10 s read timeout: a check answers in seconds.
pub fn check_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

/// A context over a snapshot of the process environment (variables that are not UTF-8 are
/// left out), with [`check_retry_policy`].
pub fn context_from_env() -> Result<FetchContext, FetchError> {
    let env: BTreeMap<String, String> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    // Isolated: the snapshot above is the whole environment the checks read.
    FetchContext::with_env(check_retry_policy(), &env, AwsOnDemandSource::BulkFiles, true)
}

/// The names in `clouds`, lower-cased and deduplicated in order; an unknown one is a
/// `FetchError::Config` listing the known clouds.
pub fn resolve_clouds(clouds: &[String]) -> Result<Vec<String>, FetchError> {
    let known = known_clouds();
    let mut out: Vec<String> = Vec::new();
    for c in clouds {
        let c = c.trim().to_ascii_lowercase();
        if !known.contains(&c.as_str()) {
            return Err(FetchError::Config(format!("unknown cloud `{c}` (known: {})", known.join(", "))));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Check `cloud` (a name from [`known_clouds`]).
pub async fn check_cloud(cx: &FetchContext, cloud: &str) -> Result<CloudCheck, FetchError> {
    let name = resolve_clouds(&[cloud.to_string()])?.into_iter().next().unwrap_or_default();
    Ok(match name.as_str() {
        "aws" => aws::check(cx).await,
        "gcp" => check_gcp(cx).await,
        "azure" => check_azure(cx).await,
        "lambda" => check_key_cloud(cx, &LAMBDA).await,
        "runpod" => check_key_cloud(cx, &RUNPOD).await,
        "vast" => check_key_cloud(cx, &VAST).await,
        "ibm" => ibm_scp::check_ibm(cx).await,
        "scp" => ibm_scp::check_scp(cx).await,
        "oci" => CloudCheck {
            cloud: name.clone(),
            credentials: vec![Found::NotNeeded { what: "public price list".into() }],
            verification: Verification::Skipped { reason: "nothing to verify".into() },
            prices_only: Some("public price list; no credentials needed".into()),
        },
        other => CloudCheck {
            cloud: other.to_string(),
            credentials: Vec::new(),
            verification: Verification::Skipped { reason: "no credential check for this cloud yet".into() },
            prices_only: None,
        },
    })
}

/// `fut` (one call, named `call`), cut off after [`CALL_TIMEOUT`].
async fn bounded(call: &str, fut: impl std::future::Future<Output = Verification>) -> Verification {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => Verification::Failed {
            call: call.to_string(),
            error: format!("timed out after {} s", CALL_TIMEOUT.as_secs()),
        },
    }
}

/// Check several clouds concurrently (every known cloud when `clouds` is empty), in the given
/// order. Unknown names fail before anything is dialed.
pub async fn check_clouds(cx: &FetchContext, clouds: &[String]) -> Result<Vec<CloudCheck>, FetchError> {
    let names = if clouds.is_empty() {
        known_clouds().into_iter().map(String::from).collect()
    } else {
        resolve_clouds(clouds)?
    };
    let checks = names.iter().map(|n| check_cloud(cx, n));
    futures::future::join_all(checks).await.into_iter().collect()
}

// ---- helpers

/// `s` on one line (whitespace runs collapsed), at most `max` characters (then `…`).
pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

const ERROR_CHARS: usize = 200;

/// The first present variable of `names`, with its value.
fn first_env<'a>(cx: &'a FetchContext, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|n| cx.env(n).map(|v| (*n, v)))
}

/// `base` + path segments (each percent-encoded), keeping a proxy's path prefix.
fn join_segments(base: &Url, segments: &[&str]) -> Result<Url, String> {
    let mut url = base.clone();
    url.path_segments_mut().map_err(|_| format!("{base} cannot be a base URL"))?.pop_if_empty().extend(segments);
    Ok(url)
}

/// What an answer that arrived with a 2xx status means.
enum Answer {
    Ok,
    Rejected(String),
    Unexpected(String),
}

/// One authenticated HTTP call: 401/403 = rejected; any other failure = failed; a 2xx whose
/// JSON `judge` does not accept is rejected or failed as it says.
async fn http_verify(
    cx: &FetchContext,
    method: Method,
    url: Url,
    headers: &[(&str, String)],
    body: Option<serde_json::Value>,
    judge: impl Fn(&serde_json::Value) -> Answer,
) -> Verification {
    let call = format!("{method} {}", url.path());
    bounded(&call.clone(), async move {
        let body = match body.map(|b| serde_json::to_vec(&b)) {
            None => None,
            Some(Ok(bytes)) => Some(("application/json", bytes)),
            Some(Err(e)) => return Verification::Failed { call, error: e.to_string() },
        };
        let resp = match cx.http.send(method, &url, headers, body).await {
            Ok(r) => r,
            Err(e) => return from_fetch_error(call, e),
        };
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Verification::Failed { call, error: one_line(&e.to_string(), ERROR_CHARS) },
        };
        let json: serde_json::Value = match serde_json::from_str(&text) {
            Ok(j) => j,
            Err(e) => {
                let error = one_line(&format!("the answer is not JSON ({e}): {text}"), ERROR_CHARS);
                return Verification::Failed { call, error };
            }
        };
        match judge(&json) {
            Answer::Ok => Verification::Verified { call },
            Answer::Rejected(m) => Verification::Rejected { call, error: one_line(&m, ERROR_CHARS) },
            Answer::Unexpected(m) => Verification::Failed { call, error: one_line(&m, ERROR_CHARS) },
        }
    })
    .await
}

fn from_fetch_error(call: String, e: FetchError) -> Verification {
    match e {
        // Google answers a bad API key with 400 (`API key not valid`, reason API_KEY_INVALID).
        FetchError::Http { status, body, .. }
            if matches!(status, 401 | 403)
                || (status == 400 && (body.contains("API key not valid") || body.contains("API_KEY_INVALID"))) =>
        {
            let error = if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {body}") };
            Verification::Rejected { call, error: one_line(&error, ERROR_CHARS) }
        }
        FetchError::Http { status, body, .. } => {
            let error = if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {body}") };
            Verification::Failed { call, error: one_line(&error, ERROR_CHARS) }
        }
        other => Verification::Failed { call, error: one_line(&other.to_string(), ERROR_CHARS) },
    }
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {token}"))]
}

/// A JSON object with a non-null `field`, else "unexpected answer".
fn has_field(field: &'static str) -> impl Fn(&serde_json::Value) -> Answer {
    move |j| field_is(j, field, |v| !v.is_null(), &format!("`{field}`"))
}

/// `Ok` when the JSON object's `field` passes `ok`, else "unexpected answer: no {what} in …".
fn field_is(j: &serde_json::Value, field: &str, ok: fn(&serde_json::Value) -> bool, what: &str) -> Answer {
    match j.get(field) {
        Some(v) if ok(v) => Answer::Ok,
        _ => Answer::Unexpected(format!("unexpected answer: no {what} in {j}")),
    }
}

fn skipped(cloud: &str, credentials: Vec<Found>, reason: impl Into<String>) -> CloudCheck {
    CloudCheck {
        cloud: cloud.to_string(),
        credentials,
        verification: Verification::Skipped { reason: reason.into() },
        prices_only: None,
    }
}

const NO_CREDENTIALS: &str = "no credentials";

// ---- key clouds: Lambda, RunPod, Vast.ai

/// A cloud whose API key (the first of `key_vars` set) is the whole credential: sent as a Bearer
/// token on `call` to the cloud's endpoint, whose JSON answer `judge` reads.
struct KeyCloud {
    cloud: &'static str,
    key_vars: &'static [&'static str],
    endpoint: &'static str,
    call: KeyCall,
    judge: fn(&serde_json::Value) -> Answer,
}

enum KeyCall {
    /// `GET path`.
    Get(&'static str),
    /// `POST path` with a GraphQL query.
    GraphQl { path: &'static str, query: &'static str },
}

impl KeyCall {
    fn method(&self) -> Method {
        match self {
            KeyCall::Get(_) => Method::GET,
            KeyCall::GraphQl { .. } => Method::POST,
        }
    }

    fn path(&self) -> &'static str {
        match self {
            KeyCall::Get(path) | KeyCall::GraphQl { path, .. } => path,
        }
    }

    fn body(&self) -> Option<serde_json::Value> {
        match self {
            KeyCall::Get(_) => None,
            KeyCall::GraphQl { query, .. } => Some(serde_json::json!({ "query": query })),
        }
    }
}

static LAMBDA: KeyCloud = KeyCloud {
    cloud: "lambda",
    key_vars: &["SKYCAT_LAMBDA_API_KEY", "LAMBDA_API_KEY"],
    endpoint: providers::lambda::DEFAULT_ENDPOINT,
    call: KeyCall::Get("api/v1/instance-types"),
    judge: |j| field_is(j, "data", serde_json::Value::is_object, "`data` object"),
};

static RUNPOD: KeyCloud = KeyCloud {
    cloud: "runpod",
    key_vars: &["SKYCAT_RUNPOD_API_KEY", "RUNPOD_API_KEY"],
    endpoint: providers::runpod::DEFAULT_ENDPOINT,
    call: KeyCall::GraphQl { path: "graphql", query: "query { myself { id } }" },
    judge: runpod_answer,
};

static VAST: KeyCloud = KeyCloud {
    cloud: "vast",
    key_vars: &["SKYCAT_VAST_API_KEY", "VAST_API_KEY"],
    endpoint: providers::vast::DEFAULT_ENDPOINT,
    call: KeyCall::Get("api/v0/users/current"),
    judge: |j| field_is(j, "id", |v| !v.is_null(), "user `id`"),
};

/// GraphQL answers errors with HTTP 200: an auth-looking error or a null `myself` is a
/// rejection, any other error a failure.
fn runpod_answer(j: &serde_json::Value) -> Answer {
    let errors: Vec<String> = j
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|a| a.iter().map(|e| e.get("message").and_then(|m| m.as_str()).unwrap_or("error").to_string()).collect())
        .unwrap_or_default();
    let id = j.pointer("/data/myself/id").filter(|v| !v.is_null());
    if id.is_some() && errors.is_empty() {
        return Answer::Ok;
    }
    let msg = if errors.is_empty() { "`myself` is null".to_string() } else { errors.join("; ") };
    let lower = msg.to_ascii_lowercase();
    if errors.is_empty() || ["unauth", "auth", "api key", "forbidden", "permission"].iter().any(|w| lower.contains(w)) {
        Answer::Rejected(msg)
    } else {
        Answer::Unexpected(msg)
    }
}

async fn check_key_cloud(cx: &FetchContext, kc: &KeyCloud) -> CloudCheck {
    let Some((var, key)) = first_env(cx, kc.key_vars) else {
        return skipped(kc.cloud, Vec::new(), NO_CREDENTIALS);
    };
    let credentials = vec![Found::Env { vars: vec![var.to_string()] }];
    let (method, path) = (kc.call.method(), kc.call.path());
    let url = cx
        .endpoint(kc.cloud, kc.endpoint)
        .map_err(|e| e.to_string())
        .and_then(|b| b.join(path).map_err(|e| format!("{} endpoint {b}: {e}", kc.cloud)));
    let verification = match url {
        Ok(url) => http_verify(cx, method, url, &bearer(key), kc.call.body(), kc.judge).await,
        Err(error) => Verification::Failed { call: format!("{method} {path}"), error },
    };
    CloudCheck { cloud: kc.cloud.into(), credentials, verification, prices_only: None }
}

// ---- GCP

const GCP_KEY_VARS: &[&str] = &["SKYCAT_GCP_API_KEY", "GOOGLE_API_KEY"];
const GCP_PROJECT_VARS: &[&str] = &["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"];
const GCP_KEY_ONLY: &str = "API key reads prices; launching needs OAuth";

/// `$HOME/...` when HOME is set.
fn home_path(cx: &FetchContext, rel: &str) -> Option<PathBuf> {
    cx.env("HOME").map(|h| Path::new(h).join(rel))
}

/// A leading `~/` expanded with the context's HOME.
fn expand_home(cx: &FetchContext, p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), cx.env("HOME")) {
        (Some(rest), Some(h)) => Path::new(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// `GET compute/v1/projects/{project}` with `token`: what a GCP launch needs to work.
async fn verify_gcp_project(cx: &FetchContext, token: &str, project: &str) -> Verification {
    match cx.endpoint("gcp_compute", providers::gcp::DEFAULT_COMPUTE) {
        Ok(base) => match join_segments(&base, &["compute", "v1", "projects", project]) {
            Ok(url) => http_verify(cx, Method::GET, url, &bearer(token), None, has_field("name")).await,
            Err(error) => Verification::Failed { call: "GET compute/v1/projects/{project}".into(), error },
        },
        Err(e) => Verification::Failed { call: "GET compute/v1/projects/{project}".into(), error: e.to_string() },
    }
}

/// A bearer for `key`, exchanged at its `token_uri` as a GCP launch does; a refusal (4xx) is
/// `Rejected`, anything else `Failed`.
async fn service_account_token(
    key: skycat_gcp_auth::ServiceAccountKey,
    path: PathBuf,
) -> Result<skycat_gcp_auth::Secret, Verification> {
    let call = format!("POST {} (service-account token)", key.token_uri());
    let creds = skycat_gcp_auth::Credentials::service_account(key, path);
    let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().map_err(|e| Verification::Failed {
        call: call.clone(),
        error: e.to_string(),
    })?;
    match creds.bearer(&http).await {
        Ok(token) => Ok(token),
        Err(e) if e.status.is_some_and(|s| (400..500).contains(&s)) => Err(Verification::Rejected { call, error: e.to_string() }),
        Err(e) => Err(Verification::Failed { call, error: e.to_string() }),
    }
}

/// The service-account key in `path`, when the file is one (`"type": "service_account"`); a
/// file of another type (gcloud's user credentials) is `None`, a broken key an error.
fn service_account_key(path: &Path) -> Option<Result<(skycat_gcp_auth::ServiceAccountKey, PathBuf), String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let kind = serde_json::from_str::<serde_json::Value>(&text).ok()?.get("type")?.as_str()?.to_string();
    (kind == "service_account").then(|| {
        skycat_gcp_auth::ServiceAccountKey::parse(&text, &path.display().to_string())
            .map(|k| (k, path.to_path_buf()))
            .map_err(|e| e.to_string())
    })
}

async fn check_gcp(cx: &FetchContext) -> CloudCheck {
    let token = cx.env("GOOGLE_OAUTH_ACCESS_TOKEN");
    let project = first_env(cx, GCP_PROJECT_VARS);
    let key = first_env(cx, GCP_KEY_VARS);
    let adc = match cx.env("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(p) => Some((expand_home(cx, p), "GOOGLE_APPLICATION_CREDENTIALS")),
        None => home_path(cx, ".config/gcloud/application_default_credentials.json")
            .filter(|p| p.is_file())
            .map(|p| (p, "gcloud application-default credentials")),
    };

    let mut credentials = Vec::new();
    if token.is_some() {
        let mut vars = vec!["GOOGLE_OAUTH_ACCESS_TOKEN".to_string()];
        vars.extend(project.map(|(v, _)| v.to_string()));
        credentials.push(Found::Env { vars });
    }
    if let Some((var, _)) = key {
        credentials.push(Found::Env { vars: vec![var.to_string()] });
    }
    if let Some((path, what)) = &adc {
        let detail = if path.is_file() { what.to_string() } else { format!("{what}; the file does not exist") };
        credentials.push(Found::File { path: path.clone(), detail: Some(detail) });
    }

    if let (Some(token), Some((_, project))) = (token, project) {
        let verification = verify_gcp_project(cx, token, project).await;
        return CloudCheck { cloud: "gcp".into(), credentials, verification, prices_only: None };
    }
    // A service-account key file: exchanged for a token (as a launch does), then the same call.
    if let Some(account) = token.is_none().then(|| adc.as_ref().and_then(|(path, _)| service_account_key(path))).flatten() {
        let verification = match account {
            Err(error) => Verification::Failed { call: "read the service-account key".into(), error },
            Ok((sa, path)) => {
                match project.map(|(_, p)| p.to_string()).or_else(|| sa.project_id.clone().filter(|p| !p.is_empty())) {
                    None => Verification::Failed {
                        call: "GET compute/v1/projects/{project}".into(),
                        error: "no project: set GOOGLE_CLOUD_PROJECT (the key file names none)".into(),
                    },
                    Some(project) => match service_account_token(sa, path).await {
                        Ok(token) => verify_gcp_project(cx, token.expose(), &project).await,
                        Err(refused) => refused,
                    },
                }
            }
        };
        return CloudCheck { cloud: "gcp".into(), credentials, verification, prices_only: None };
    }
    if let Some((_, key)) = key {
        let path = format!("v1/services/{}/skus", providers::gcp::COMPUTE_SERVICE);
        let verification = match cx.endpoint("gcp", providers::gcp::DEFAULT_ENDPOINT) {
            Ok(base) => match base.join(&path) {
                Ok(mut url) => {
                    url.query_pairs_mut().append_pair("pageSize", "1");
                    // The key goes in a header, so that it never shows in an error's URL.
                    let headers = [("x-goog-api-key", key.to_string())];
                    http_verify(cx, Method::GET, url, &headers, None, has_field("skus")).await
                }
                Err(e) => Verification::Failed { call: format!("GET {path}"), error: e.to_string() },
            },
            Err(e) => Verification::Failed { call: format!("GET {path}"), error: e.to_string() },
        };
        return CloudCheck { cloud: "gcp".into(), credentials, verification, prices_only: Some(GCP_KEY_ONLY.into()) };
    }
    let reason = if token.is_some() {
        "GOOGLE_OAUTH_ACCESS_TOKEN is set but no project (GOOGLE_CLOUD_PROJECT)".to_string()
    } else if adc.is_some() {
        "found, not verified: skycat calls GCP with GOOGLE_OAUTH_ACCESS_TOKEN + GOOGLE_CLOUD_PROJECT \
         (e.g. `export GOOGLE_OAUTH_ACCESS_TOKEN=$(gcloud auth print-access-token)`)"
            .to_string()
    } else {
        NO_CREDENTIALS.to_string()
    };
    skipped("gcp", credentials, reason)
}

// ---- Azure

const AZURE_SP_VARS: &[&str] = &["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];

async fn check_azure(cx: &FetchContext) -> CloudCheck {
    let sub = cx.env("AZURE_SUBSCRIPTION_ID");
    let token = cx.env("AZURE_ACCESS_TOKEN");
    let sp_present: Vec<&str> = AZURE_SP_VARS.iter().copied().filter(|v| cx.env(v).is_some()).collect();
    let mut vars: Vec<String> = Vec::new();
    vars.extend(sub.map(|_| "AZURE_SUBSCRIPTION_ID".to_string()));
    vars.extend(token.map(|_| "AZURE_ACCESS_TOKEN".to_string()));
    if token.is_none() {
        vars.extend(sp_present.iter().map(|v| v.to_string()));
    }
    let credentials = if vars.is_empty() { Vec::new() } else { vec![Found::Env { vars }] };
    let sp_complete = sp_present.len() == AZURE_SP_VARS.len();
    let Some(sub) = sub.filter(|_| token.is_some() || sp_complete) else {
        let reason = if credentials.is_empty() {
            NO_CREDENTIALS.to_string()
        } else {
            "incomplete: needs AZURE_SUBSCRIPTION_ID and AZURE_ACCESS_TOKEN \
             (or AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET)"
                .to_string()
        };
        return skipped("azure", credentials, reason);
    };
    let token = match token {
        Some(t) => t.to_string(),
        None => match tokio::time::timeout(CALL_TIMEOUT, azure_sp_token(cx)).await {
            Ok(Ok(t)) => t,
            Ok(Err(v)) => return CloudCheck { cloud: "azure".into(), credentials, verification: v, prices_only: None },
            Err(_) => {
                let verification = Verification::Failed {
                    call: "POST {tenant}/oauth2/v2.0/token".into(),
                    error: format!("timed out after {} s", CALL_TIMEOUT.as_secs()),
                };
                return CloudCheck { cloud: "azure".into(), credentials, verification, prices_only: None };
            }
        },
    };
    let call = "GET subscriptions/{id}";
    let verification = match cx.endpoint("azure_management", providers::azure::DEFAULT_MANAGEMENT) {
        Ok(base) => match join_segments(&base, &["subscriptions", sub]) {
            Ok(mut url) => {
                url.query_pairs_mut().append_pair("api-version", "2022-12-01");
                http_verify(cx, Method::GET, url, &bearer(&token), None, has_field("subscriptionId")).await
            }
            Err(error) => Verification::Failed { call: call.into(), error },
        },
        Err(e) => Verification::Failed { call: call.into(), error: e.to_string() },
    };
    CloudCheck { cloud: "azure".into(), credentials, verification, prices_only: None }
}

/// The client-credentials token exchange the Azure fetcher does; a refusal is a rejection.
async fn azure_sp_token(cx: &FetchContext) -> Result<String, Verification> {
    let (Some(tenant), Some(client_id), Some(secret)) =
        (cx.env("AZURE_TENANT_ID"), cx.env("AZURE_CLIENT_ID"), cx.env("AZURE_CLIENT_SECRET"))
    else {
        return Err(Verification::Skipped { reason: "incomplete service principal".into() });
    };
    let call = "POST {tenant}/oauth2/v2.0/token".to_string();
    let url = cx
        .endpoint("azure_login", providers::azure::DEFAULT_LOGIN)
        .map_err(|e| e.to_string())
        .and_then(|b| join_segments(&b, &[tenant, "oauth2", "v2.0", "token"]))
        .map_err(|error| Verification::Failed { call: call.clone(), error })?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", secret)
        .append_pair("scope", "https://management.azure.com/.default")
        .finish();
    let body = Some(("application/x-www-form-urlencoded", form.into_bytes()));
    let resp = match cx.http.send(Method::POST, &url, &[], body).await {
        Ok(r) => r,
        Err(FetchError::Http { status: status @ (400 | 401 | 403), body, .. }) => {
            let error = one_line(&format!("HTTP {status}: {body}"), ERROR_CHARS);
            return Err(Verification::Rejected { call, error });
        }
        Err(e) => return Err(from_fetch_error(call, e)),
    };
    let text = resp.text().await.map_err(|e| Verification::Failed { call: call.clone(), error: e.to_string() })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Verification::Failed { call: call.clone(), error: format!("the answer is not JSON: {e}") })?;
    match json.get("access_token").and_then(|t| t.as_str()) {
        Some(t) => Ok(t.to_string()),
        None => Err(Verification::Failed { call, error: "no access_token in the answer".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_and_truncates() {
        assert_eq!(one_line("a\n  b\tc", 50), "a b c");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("", 4), "");
    }

    #[test]
    fn unknown_cloud_lists_known_ones() {
        let e = resolve_clouds(&["aws".into(), "nope".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown cloud `nope`") && e.contains("aws, azure, gcp"), "{e}");
        assert_eq!(resolve_clouds(&["AWS".into(), "aws".into(), "oci".into()]).unwrap(), vec!["aws", "oci"]);
    }

    #[test]
    fn runpod_graphql_answers() {
        assert!(matches!(runpod_answer(&serde_json::json!({"data": {"myself": {"id": "u1"}}})), Answer::Ok));
        assert!(matches!(runpod_answer(&serde_json::json!({"data": {"myself": null}})), Answer::Rejected(_)));
        let unauth = serde_json::json!({"errors": [{"message": "Unauthorized"}], "data": null});
        assert!(matches!(runpod_answer(&unauth), Answer::Rejected(_)));
        let other = serde_json::json!({"errors": [{"message": "Syntax Error"}]});
        assert!(matches!(runpod_answer(&other), Answer::Unexpected(_)));
    }

    #[test]
    fn key_cloud_and_field_answers() {
        use serde_json::json;
        assert!(matches!((LAMBDA.judge)(&json!({"data": {}})), Answer::Ok));
        let m = |a: Answer| match a {
            Answer::Unexpected(m) => m,
            _ => panic!("not unexpected"),
        };
        assert_eq!(m((LAMBDA.judge)(&json!({"data": []}))), r#"unexpected answer: no `data` object in {"data":[]}"#);
        assert!(matches!((VAST.judge)(&json!({"id": 7})), Answer::Ok));
        assert_eq!(m((VAST.judge)(&json!({"id": null}))), r#"unexpected answer: no user `id` in {"id":null}"#);
        assert!(matches!(has_field("name")(&json!({"name": "p"})), Answer::Ok));
        assert_eq!(m(has_field("name")(&json!({"name": null}))), r#"unexpected answer: no `name` in {"name":null}"#);
        assert_eq!((RUNPOD.call.method(), RUNPOD.call.path()), (Method::POST, "graphql"));
        assert_eq!(RUNPOD.call.body(), Some(json!({"query": "query { myself { id } }"})));
        assert_eq!((VAST.call.method(), VAST.call.body()), (Method::GET, None));
    }

    #[test]
    fn segments_are_encoded_and_keep_a_prefix() {
        let base = Url::parse("http://127.0.0.1:9/proxy/").unwrap();
        let u = join_segments(&base, &["subscriptions", "a b/c"]).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9/proxy/subscriptions/a%20b%2Fc");
    }

    #[tokio::test]
    async fn nothing_found_means_nothing_dialed() {
        // Every endpoint points at a port nobody listens on: a call would fail, not skip.
        let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", "http://127.0.0.1:9/")]);
        let all = check_clouds(&cx, &[]).await.unwrap();
        assert_eq!(all.len(), known_clouds().len());
        for c in &all {
            assert!(matches!(c.verification, Verification::Skipped { .. }), "{c:?}");
            assert!(!c.has_credentials(), "{c:?}");
        }
        let oci = all.iter().find(|c| c.cloud == "oci").unwrap();
        assert_eq!(oci.prices_only.as_deref(), Some("public price list; no credentials needed"));
        assert_eq!(all.iter().find(|c| c.cloud == "aws").unwrap().credentials_text(), "none found");
    }
}
