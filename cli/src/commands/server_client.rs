//! The CLI's HTTP client for `skycat serve`: which server (flag, `$SKYCAT_SERVER_URL`, the saved
//! credentials' server, else http://127.0.0.1:8080), which token, and HTTPS pinned to the
//! server's certificate (`$SKYCAT_SERVER_CERT_SHA256`, else the fingerprint saved at login).
//!
//! Nothing secret goes out unprotected: an `https://` server without a pin is refused (there is
//! no unverified TLS), and a token is never sent over plain `http://` off loopback.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use skycat_tls_pin::{Fingerprint, PinVerifier};

use crate::commands::credentials::{self, Credentials};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// A server to call and how to trust it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub pin: Option<Fingerprint>,
    pub token: Option<String>,
}

/// `http` or `https`, and the host, of an absolute URL.
pub fn scheme_and_host(url: &str) -> Result<(&'static str, String)> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = url.strip_prefix("http://") {
        ("http", r)
    } else {
        bail!("--server-url: expected an http:// or https:// URL, got {url:?}");
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string(),
    };
    if host.is_empty() {
        bail!("--server-url: no host in {url:?}");
    }
    Ok((scheme, host))
}

pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `$SKYCAT_SERVER_CERT_SHA256`, checked.
fn env_pin() -> Result<Option<Fingerprint>> {
    match std::env::var("SKYCAT_SERVER_CERT_SHA256") {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.parse().context("SKYCAT_SERVER_CERT_SHA256")?)),
        _ => Ok(None),
    }
}

impl Target {
    /// The server named by `flag_url` (the `--server-url` flag or `$SKYCAT_SERVER_URL`), else the
    /// one the credentials were saved for, else the local default.
    pub fn resolve(home: &Path, flag_url: Option<&str>) -> Result<Target> {
        let creds = credentials::load(home)?;
        let url = flag_url
            .map(str::to_string)
            .or_else(|| creds.as_ref().and_then(|c| c.server_url.clone()))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let mine: Option<&Credentials> = creds.as_ref().filter(|c| c.are_for(&url));
        let pin = match env_pin()? {
            Some(p) => Some(p),
            None => match mine {
                Some(c) => c.pin(&credentials::path(home))?,
                None => None,
            },
        };
        let token = credentials::env_token().or_else(|| mine.map(|c| c.token.clone()));
        Target { url, pin, token }.checked()
    }

    /// Refuses unverified TLS and a token in clear off loopback.
    pub fn checked(self) -> Result<Target> {
        let (scheme, host) = scheme_and_host(&self.url)?;
        if scheme == "https" && self.pin.is_none() {
            bail!(
                "{}: no pinned certificate for this server; run `skycat login --server-url {}` (or set SKYCAT_SERVER_CERT_SHA256 to the fingerprint `skycat serve` prints at start)",
                self.url,
                self.url
            );
        }
        if scheme == "http" && self.token.is_some() && !is_loopback(&host) {
            bail!("{}: refusing to send the API token in clear; use the server's https:// URL (`skycat serve` off loopback speaks HTTPS)", self.url);
        }
        Ok(self)
    }

    /// The HTTP client: the token as a sensitive default header, TLS trusting only the pin.
    pub fn client(&self) -> Result<Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow!("the API token has characters that cannot go in a header"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let b = reqwest::Client::builder().timeout(Duration::from_secs(60)).default_headers(headers);
        let (b, verifier) = match self.pin {
            Some(pin) => {
                let v = PinVerifier::pinned(pin);
                (b.use_preconfigured_tls(v.client_config().context("TLS setup")?), Some(v))
            }
            None => (b, None),
        };
        Ok(Client { http: b.build().context("building the HTTP client")?, base: self.url.clone(), verifier })
    }
}

/// A client of one server.
pub struct Client {
    pub http: reqwest::Client,
    base: String,
    verifier: Option<Arc<PinVerifier>>,
}

impl Client {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base.trim_end_matches('/')))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base.trim_end_matches('/')))
    }

    /// Sends the request; a non-2xx answer becomes its `error` (the server names the field).
    pub async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let base = &self.base;
        let resp = req.send().await.map_err(|e| {
            if let Some(m) = self.verifier.as_ref().and_then(|v| v.mismatch()) {
                return anyhow!("{base}: {m}; if the server's certificate was replaced on purpose, run `skycat login --server-url {base}` again");
            }
            anyhow!("cannot reach skycat serve at {base} ({e}); start it with `skycat serve` or pass --server-url")
        })?;
        let code = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !code.is_success() {
            let msg = body["error"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {code}"));
            if code == reqwest::StatusCode::UNAUTHORIZED {
                bail!("{base}: {msg}");
            }
            bail!("{msg}");
        }
        Ok(body)
    }
}

/// Connects to an `https://` server without trusting it and returns the fingerprint of the
/// certificate it presents. Nothing is sent: the handshake is refused at the certificate.
pub async fn probe_fingerprint(url: &str) -> Result<Fingerprint> {
    let probe = PinVerifier::probe();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .use_preconfigured_tls(probe.client_config().context("TLS setup")?)
        .build()
        .context("building the HTTP client")?;
    let err = match http.get(format!("{}/healthz", url.trim_end_matches('/'))).send().await {
        Ok(_) => bail!("{url}: the TLS probe was not refused"),
        Err(e) => e,
    };
    probe.presented().ok_or_else(|| anyhow!("cannot reach {url}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_and_host() {
        assert_eq!(scheme_and_host("https://10.0.0.5:8080/x").unwrap(), ("https", "10.0.0.5".to_string()));
        assert_eq!(scheme_and_host("http://[::1]:8080").unwrap(), ("http", "::1".to_string()));
        assert_eq!(scheme_and_host("http://localhost").unwrap(), ("http", "localhost".to_string()));
        assert!(scheme_and_host("ftp://h").is_err() && scheme_and_host("http://").is_err());
        assert!(is_loopback("127.0.0.2") && is_loopback("::1") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("10.0.0.1") && !is_loopback("example.com"));
    }

    #[test]
    fn no_unpinned_tls_and_no_token_in_clear_off_loopback() {
        let t = |url: &str, pin: Option<Fingerprint>, token: Option<&str>| {
            Target { url: url.into(), pin, token: token.map(str::to_string) }.checked().map(|_| ())
        };
        let e = t("https://10.0.0.5:8080", None, None).unwrap_err().to_string();
        assert!(e.contains("skycat login --server-url https://10.0.0.5:8080"), "{e}");
        let e = t("http://10.0.0.5:8080", None, Some("skycat_secret")).unwrap_err().to_string();
        assert!(e.contains("in clear") && !e.contains("skycat_secret"), "{e}");
        assert!(t("http://127.0.0.1:8080", None, Some("tok")).is_ok());
        assert!(t("http://10.0.0.5:8080", None, None).is_ok());
        assert!(t("https://10.0.0.5:8080", Some(Fingerprint([1; 32])), Some("tok")).is_ok());
    }
}
