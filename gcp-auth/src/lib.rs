//! Google OAuth credentials for the Compute API: a ready access token
//! (`GOOGLE_OAUTH_ACCESS_TOKEN`, e.g. from `gcloud auth print-access-token`), or a
//! service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`) whose RS256-signed JWT assertion
//! is exchanged at the key's `token_uri` (RFC 7523 `jwt-bearer` grant, as google-auth's
//! `service_account.Credentials` does). Signing is ring's RSA PKCS#1 v1.5 SHA-256: no OpenSSL.
//!
//! Secrets (the token, the private key) are never logged: their `Debug` is redacted and errors
//! name files and fields, never values.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;

/// A credential or token-endpoint failure; the GCP backend turns it into its own error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AuthError {
    /// `credentials`, or the token call (`POST {token_uri} (service account …, file)`).
    pub op: String,
    /// The token endpoint's HTTP status; None when no answer came.
    pub status: Option<u16>,
    /// The OAuth `error` (`invalid_grant`, `invalid_client`).
    pub code: Option<String>,
    pub message: String,
}

/// The scope skycat asks for (SkyPilot and dstack ask for the same).
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The `aud` google-auth sends whatever `token_uri` the file names.
pub const TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
pub const TOKEN_VAR: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
pub const KEY_FILE_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Project variables, in order (as `skycat check` reads them).
pub const PROJECT_VARS: &[&str] = &["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"];
/// Assertion lifetime: Google accepts at most one hour.
const ASSERTION_SECS: u64 = 3600;
/// A token is refreshed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A secret string whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The fields of a service-account key file skycat uses (the file has more).
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub private_key_id: Option<String>,
    private_key: String,
    pub client_email: String,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

fn cred_err(message: String) -> AuthError {
    AuthError { op: "credentials".into(), status: None, code: None, message }
}

impl ServiceAccountKey {
    /// Parses a key file's JSON; `what` names the file in errors.
    pub fn parse(text: &str, what: &str) -> Result<ServiceAccountKey, AuthError> {
        let k: ServiceAccountKey =
            serde_json::from_str(text).map_err(|e| cred_err(format!("{what}: not a service-account key file ({e})")))?;
        if k.kind != "service_account" {
            return Err(cred_err(format!(
                "{what}: type is {:?}, skycat needs a \"service_account\" key (user credentials: set {TOKEN_VAR})",
                k.kind
            )));
        }
        if k.client_email.trim().is_empty() {
            return Err(cred_err(format!("{what}: client_email is empty")));
        }
        k.signing_key(what)?;
        Ok(k)
    }

    pub fn load(path: &Path) -> Result<ServiceAccountKey, AuthError> {
        let what = format!("{KEY_FILE_VAR}={}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| cred_err(format!("{what}: {e}")))?;
        ServiceAccountKey::parse(&text, &what)
    }

    /// The key's `token_uri`, or Google's.
    pub fn token_uri(&self) -> &str {
        self.token_uri.as_deref().filter(|u| !u.trim().is_empty()).unwrap_or(TOKEN_AUDIENCE)
    }

    fn signing_key(&self, what: &str) -> Result<ring::signature::RsaKeyPair, AuthError> {
        let der = pem_body(&self.private_key, "PRIVATE KEY")
            .ok_or_else(|| cred_err(format!("{what}: private_key is not a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")))?;
        ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| cred_err(format!("{what}: private_key is not an RSA key ring can sign with ({e})")))
    }

    /// The signed assertion `header.claims.signature` for `now` (seconds since the epoch).
    pub fn assertion(&self, now: u64) -> Result<String, AuthError> {
        let key = self.signing_key("service-account key")?;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = self.private_key_id.as_deref().filter(|k| !k.is_empty()) {
            header["kid"] = kid.into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": TOKEN_AUDIENCE,
            "iat": now,
            "exp": now + ASSERTION_SECS,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
            .map_err(|_| cred_err("signing the JWT assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// reqwest's error text without the URL (a token endpoint's URL is the key file's, not a secret,
/// but errors name the call once, in `op`).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s
}

/// The base64 body of the first PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

/// Where a bearer token comes from.
#[derive(Clone, Debug)]
pub enum Credentials {
    Token(Secret),
    ServiceAccount { key: Arc<ServiceAccountKey>, path: PathBuf, cached: Arc<Mutex<Option<(Secret, SystemTime)>>> },
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Credentials {
    pub fn service_account(key: ServiceAccountKey, path: PathBuf) -> Credentials {
        Credentials::ServiceAccount { key: Arc::new(key), path, cached: Arc::default() }
    }

    /// `GOOGLE_OAUTH_ACCESS_TOKEN` first (what `skycat check` verifies), else the key file of
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn from_env() -> Result<Credentials, AuthError> {
        if let Some(t) = std::env::var(TOKEN_VAR).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
            return Ok(Credentials::Token(Secret(t)));
        }
        if let Some(p) = std::env::var_os(KEY_FILE_VAR).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(p);
            return Ok(Credentials::service_account(ServiceAccountKey::load(&path)?, path));
        }
        Err(cred_err(format!(
            "no GCP credentials: set {TOKEN_VAR} (`gcloud auth print-access-token`) or {KEY_FILE_VAR} (a service-account key file), \
             then run `skycat check gcp`"
        )))
    }

    /// The project the key file names, if any.
    pub fn key_project(&self) -> Option<String> {
        match self {
            Credentials::ServiceAccount { key, .. } => key.project_id.clone().filter(|p| !p.is_empty()),
            Credentials::Token(_) => None,
        }
    }

    /// A bearer token: the given one, or a cached/fresh one from the token endpoint.
    pub async fn bearer(&self, http: &reqwest::Client) -> Result<Secret, AuthError> {
        let (key, path, cached) = match self {
            Credentials::Token(t) => return Ok(t.clone()),
            Credentials::ServiceAccount { key, path, cached } => (key, path, cached),
        };
        if let Some((t, until)) = cached.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if SystemTime::now() + REFRESH_MARGIN < *until {
                return Ok(t.clone());
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let assertion = key.assertion(now)?;
        let op = format!("POST {} (service account {}, {})", key.token_uri(), key.client_email, path.display());
        let fail = |status: Option<u16>, code: Option<String>, message: String| AuthError { op: op.clone(), status, code, message };
        let body = format!(
            "grant_type={}&assertion={}",
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            assertion // base64url and dots: nothing to escape
        );
        let resp = http
            .post(key.token_uri())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(None, None, format!("no answer ({})", without_url(&e))))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| fail(Some(status), None, without_url(&e)))?;
        if (200..300).contains(&status) {
            let a: TokenAnswer =
                serde_json::from_slice(&bytes).map_err(|e| fail(Some(status), None, format!("unexpected token answer ({e})")))?;
            let until = SystemTime::now() + Duration::from_secs(a.expires_in.unwrap_or(3600));
            let t = Secret(a.access_token);
            *cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((t.clone(), until));
            return Ok(t);
        }
        Err(match serde_json::from_slice::<TokenError>(&bytes) {
            Ok(e) => fail(Some(status), Some(e.error.clone()), e.error_description.unwrap_or(e.error)),
            Err(_) => fail(Some(status), None, format!("HTTP {status}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_and_never_shown() {
        let e = ServiceAccountKey::parse("{}", "k.json").unwrap_err().to_string();
        assert!(e.contains("k.json") && e.contains("not a service-account key file"), "{e}");
        let e = ServiceAccountKey::parse(
            r#"{"type":"authorized_user","private_key":"x","client_email":"a@b"}"#,
            "k.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("authorized_user") && e.contains(TOKEN_VAR), "{e}");
        let e = ServiceAccountKey::parse(
            r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","client_email":"a@b"}"#,
            "k.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("private_key") && !e.contains("AAAA"), "{e}");
        assert_eq!(format!("{:?}", Secret::new("ya29.secret")), "<redacted>");
    }
}
