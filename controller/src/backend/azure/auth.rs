//! Azure credentials for ARM: a bearer token given as `AZURE_ACCESS_TOKEN`, or a service
//! principal's client-credentials exchange at the Microsoft identity platform
//! (`POST {login}/{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials`,
//! `scope=https://management.azure.com/.default`), as `skycat check azure` and the Azure price
//! fetcher do. The secret and the tokens are kept in memory only and never shown by `Debug`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::api::ArmError;

/// The login host (`https://login.microsoftonline.com/`); `SKYCAT_AZURE_LOGIN_ENDPOINT` first
/// (the fetcher's and `skycat check`'s variable), then the Azure SDKs' `AZURE_AUTHORITY_HOST`.
pub const LOGIN_VARS: &[&str] = &["SKYCAT_AZURE_LOGIN_ENDPOINT", "AZURE_AUTHORITY_HOST"];
pub const DEFAULT_LOGIN: &str = "https://login.microsoftonline.com/";
/// The scope of an ARM token (v2.0 endpoint: resource + `/.default`).
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A secret string whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where ARM tokens come from.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `AZURE_ACCESS_TOKEN`: used as is (it expires in about an hour; `az account
    /// get-access-token` makes one).
    Token(Secret),
    /// A service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret { tenant: String, client_id: String, secret: Secret },
}

impl Credential {
    /// From the environment: the token if set, else a complete service principal.
    pub fn from_env() -> Result<Credential, String> {
        let var = |v: &str| std::env::var(v).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(t) = var("AZURE_ACCESS_TOKEN") {
            return Ok(Credential::Token(Secret(t)));
        }
        match (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), var("AZURE_CLIENT_SECRET")) {
            (Some(tenant), Some(client_id), Some(secret)) => {
                Ok(Credential::ClientSecret { tenant, client_id, secret: Secret(secret) })
            }
            _ => Err("no Azure credentials: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET \
                      (or AZURE_ACCESS_TOKEN), and AZURE_SUBSCRIPTION_ID, then run `skycat check azure`"
                .to_string()),
        }
    }
}

/// The token endpoint's answer (numbers, as the v2.0 endpoint sends them).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The identity platform's error body: `{"error": "invalid_client", "error_description": "AADSTS…"}`.
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Tokens for one credential, cached until shortly before they expire.
#[derive(Clone)]
pub struct TokenSource {
    cred: Credential,
    login: reqwest::Url,
    cached: Arc<Mutex<Option<(Secret, Instant)>>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("cred", &self.cred).field("login", &self.login.as_str()).finish()
    }
}

impl TokenSource {
    pub fn new(cred: Credential, login: reqwest::Url) -> TokenSource {
        TokenSource { cred, login, cached: Arc::default() }
    }

    /// A bearer token for ARM.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Secret, ArmError> {
        let (tenant, client_id, secret) = match &self.cred {
            Credential::Token(t) => return Ok(t.clone()),
            Credential::ClientSecret { tenant, client_id, secret } => (tenant, client_id, secret),
        };
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() + RENEW_BEFORE < *until {
                return Ok(t.clone());
            }
        }
        let op = "POST {tenant}/oauth2/v2.0/token".to_string();
        let err = |status: Option<u16>, code: Option<String>, message: String| ArmError { op: op.clone(), status, code, message };
        if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(err(None, Some("invalid_tenant".into()), format!("AZURE_TENANT_ID {tenant:?} is not a tenant id or domain")));
        }
        let url = self
            .login
            .join(&format!("{tenant}/oauth2/v2.0/token"))
            .map_err(|e| err(None, None, format!("login endpoint: {e}")))?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", ARM_SCOPE),
        ];
        let resp = http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| err(None, None, format!("no answer from {}: {}", self.login, crate::backend::rest::without_url(&e))))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| err(Some(status), None, crate::backend::rest::without_url(&e)))?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<TokenError>(&bytes) {
                // The first line of the description carries the AADSTS code; the rest is trace ids.
                Ok(e) => err(
                    Some(status),
                    Some(e.error),
                    e.error_description.unwrap_or_default().lines().next().unwrap_or_default().to_string(),
                ),
                Err(_) => err(Some(status), None, format!("HTTP {status}: {}", crate::backend::rest::snippet(&bytes))),
            });
        }
        let t: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| err(Some(status), None, format!("unexpected token answer ({e})")))?;
        // `expires_in` is a number from v2.0, a string from managed identity: accept both.
        let secs = match &t.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3599);
        let token = Secret(t.access_token);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(secs)));
        Ok(token)
    }
}
