//! One `object_store` client per source, configured from [`Env`] only.
//!
//! | scheme | credentials | endpoint |
//! |---|---|---|
//! | `s3://` | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (else the instance role); `AWS_REGION`/`AWS_DEFAULT_REGION` (else the bucket's region is asked) | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` |
//! | `r2://` | `R2_ACCESS_KEY_ID`/`R2_SECRET_ACCESS_KEY`, else the `AWS_` pair | `R2_ENDPOINT_URL`, else `https://$R2_ACCOUNT_ID.r2.cloudflarestorage.com`, else `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` |
//! | `gs://` | `GOOGLE_SERVICE_ACCOUNT_KEY` (JSON), `GOOGLE_APPLICATION_CREDENTIALS` (a file, or the JSON itself); with an emulator and no key, unsigned; else the instance's service account | `SKYCAT_GCS_ENDPOINT`, `STORAGE_EMULATOR_HOST` |
//! | Azure | `AZURE_STORAGE_ACCOUNT_KEY` (or `AZURE_STORAGE_KEY`), `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_CONNECTION_STRING`, other `AZURE_*` keys object_store knows (service principal); with the emulator, its well-known key | `SKYCAT_AZURE_BLOB_ENDPOINT` (the account URL), a connection string's `BlobEndpoint`, `AZURE_STORAGE_USE_EMULATOR` (+ `AZURITE_BLOB_STORAGE_URL`) |

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::{Env, Error, Scheme, Source};

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Client options shared by every store: no whole-request timeout (a large object streams for
/// as long as it needs; the copy applies its own idle timeout), a bounded connect timeout, and
/// plain HTTP only towards an explicit `http://` endpoint.
pub fn client_options(endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

/// Retries for transient errors (5xx, 429, resets): a few, within a minute.
pub fn retry_config() -> RetryConfig {
    RetryConfig { max_retries: 5, retry_timeout: Duration::from_secs(60), ..Default::default() }
}

/// Client settings of a store: the defaults suit bulk copies ([`client_options`],
/// [`retry_config`]); the catalog store wants a bounded request time and few retries, so that a
/// poll of an unreachable store fails in seconds instead of retrying for a minute.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Whole-request time limit; `None`: none (a large object streams for as long as it needs).
    pub request_timeout: Option<Duration>,
    pub retry: RetryConfig,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { request_timeout: None, retry: retry_config() }
    }
}

impl Tuning {
    fn options(&self, endpoint: Option<&str>) -> ClientOptions {
        let o = client_options(endpoint);
        match self.request_timeout {
            Some(t) => o.with_timeout(t),
            None => o,
        }
    }
}

/// A builder's refusal (bad configuration), naming the source.
fn build_error(src: &Source, e: object_store::Error) -> Error {
    Error::Config(format!("{}: {}", src.url(), crate::one_line(&e.to_string())))
}

/// The error for a scheme whose cargo feature this build left out.
#[cfg(not(all(feature = "gcs", feature = "azure")))]
fn not_built(src: &Source, what: &str, feature: &str) -> Error {
    Error::Config(format!("{}: this build has no {what} support (cargo feature `{feature}`)", src.url()))
}

pub async fn build(src: &Source, env: &Env) -> Result<Arc<dyn ObjectStore>, Error> {
    build_tuned(src, env, &Tuning::default()).await
}

/// [`build`] with other client settings.
pub async fn build_tuned(src: &Source, env: &Env, tuning: &Tuning) -> Result<Arc<dyn ObjectStore>, Error> {
    match src.scheme {
        Scheme::S3 => s3_tuned(src, env, tuning).await.map(|b| Arc::new(b) as _),
        Scheme::R2 => {
            let endpoint = r2_endpoint(src, env)?;
            let b = r2(src, env)?.with_client_options(tuning.options(Some(&endpoint))).with_retry(tuning.retry.clone());
            Ok(Arc::new(b.build().map_err(|e| build_error(src, e))?))
        }
        Scheme::Gcs => gcs(src, env, tuning),
        Scheme::Azure => azure(src, env, tuning),
    }
}

/// The S3 endpoint override, if any (`AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`).
pub fn s3_endpoint(env: &Env) -> Option<&str> {
    env.first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
}

/// An S3 client for `src`'s bucket; without AWS_REGION and an endpoint, the bucket's region is
/// asked first.
pub async fn s3(src: &Source, env: &Env) -> Result<object_store::aws::AmazonS3, Error> {
    s3_tuned(src, env, &Tuning::default()).await
}

async fn s3_tuned(src: &Source, env: &Env, tuning: &Tuning) -> Result<object_store::aws::AmazonS3, Error> {
    let mut b = AmazonS3Builder::new();
    // Every AWS_* variable object_store knows (keys, token, region, endpoints, skip signature…).
    for (k, v) in env.with_prefix("AWS_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    let endpoint = s3_endpoint(env);
    let mut region = env.first(&["AWS_REGION", "AWS_DEFAULT_REGION"]).map(str::to_string);
    if region.is_none() && endpoint.is_none() {
        // A bucket outside us-east-1 answers 301 to a request signed for another region: ask.
        let found = object_store::aws::resolve_bucket_region(&src.bucket, &client_options(None))
            .await
            .map_err(|e| Error::Store {
                url: src.url_of(""),
                msg: format!(
                    "cannot find the bucket's region (set AWS_REGION): {}",
                    crate::one_line(&e.to_string())
                ),
            })?;
        region = Some(found);
    }
    if let Some(r) = region {
        b = b.with_region(r);
    }
    b.with_bucket_name(&src.bucket)
        .with_client_options(tuning.options(endpoint))
        .with_retry(tuning.retry.clone())
        .build()
        .map_err(|e| build_error(src, e))
}

/// R2's S3 endpoint: `R2_ENDPOINT_URL`, else the account's, else an S3 endpoint override.
pub fn r2_endpoint(src: &Source, env: &Env) -> Result<String, Error> {
    Ok(match (env.get("R2_ENDPOINT_URL"), env.get("R2_ACCOUNT_ID")) {
        (Some(e), _) => e.to_string(),
        (None, Some(account)) => {
            if !account.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::Config("R2_ACCOUNT_ID must be letters and digits".into()));
            }
            format!("https://{account}.r2.cloudflarestorage.com")
        }
        (None, None) => env
            .first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} needs R2_ACCOUNT_ID (or R2_ENDPOINT_URL) in the environment",
                    src.url()
                ))
            })?,
    })
}

/// Cloudflare R2: the S3 API at the account's endpoint, region `auto`.
pub fn r2(src: &Source, env: &Env) -> Result<AmazonS3Builder, Error> {
    let endpoint = r2_endpoint(src, env)?;
    let pair = match (env.get("R2_ACCESS_KEY_ID"), env.get("R2_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => env.get("AWS_ACCESS_KEY_ID").zip(env.get("AWS_SECRET_ACCESS_KEY")),
    };
    let (id, secret) = pair.ok_or_else(|| {
        Error::Config(format!(
            "{} needs R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) in the environment",
            src.url()
        ))
    })?;
    Ok(AmazonS3Builder::new()
        .with_bucket_name(&src.bucket)
        .with_endpoint(&endpoint)
        .with_region("auto")
        .with_access_key_id(id)
        .with_secret_access_key(secret)
        .with_client_options(client_options(Some(&endpoint)))
        .with_retry(retry_config()))
}

/// The GCS endpoint override, with `http://` added to a bare `host:port`
/// (`STORAGE_EMULATOR_HOST`'s usual form).
pub fn gcs_endpoint(env: &Env) -> Option<String> {
    let e = env.first(&["SKYCAT_GCS_ENDPOINT", "STORAGE_EMULATOR_HOST"])?;
    let e = e.trim_end_matches('/');
    Some(if e.contains("://") { e.to_string() } else { format!("http://{e}") })
}

#[cfg(feature = "gcs")]
fn gcs(src: &Source, env: &Env, tuning: &Tuning) -> Result<Arc<dyn ObjectStore>, Error> {
    gcs_store_tuned(src, env, tuning).map(|s| Arc::new(s) as _)
}

/// A GCS client for `src`'s bucket.
#[cfg(feature = "gcs")]
pub fn gcs_store(src: &Source, env: &Env) -> Result<object_store::gcp::GoogleCloudStorage, Error> {
    gcs_store_tuned(src, env, &Tuning::default())
}

#[cfg(feature = "gcs")]
fn gcs_store_tuned(src: &Source, env: &Env, tuning: &Tuning) -> Result<object_store::gcp::GoogleCloudStorage, Error> {
    use object_store::gcp::GoogleCloudStorageBuilder;
    let endpoint = gcs_endpoint(env);
    let mut b = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&src.bucket)
        .with_client_options(tuning.options(endpoint.as_deref()))
        .with_retry(tuning.retry.clone());
    let key_json = env.get("GOOGLE_SERVICE_ACCOUNT_KEY").or_else(|| {
        env.get("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| v.trim_start().starts_with('{'))
    });
    if let Some(json) = key_json {
        b = b.with_service_account_key(json);
    } else if let Some(path) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
        b = b.with_application_credentials(path);
    } else if endpoint.is_some() {
        // An emulator without a key: unsigned requests, and a fixed empty token for the
        // requests object_store signs regardless (its uploads ignore skip_signature), so that
        // nothing asks the metadata server.
        b = b.with_skip_signature(true).with_credentials(Arc::new(object_store::StaticCredentialProvider::new(
            object_store::gcp::GcpCredential { bearer: String::new() },
        )));
    }
    if let Some(e) = &endpoint {
        b = b.with_base_url(e);
    }
    b.build().map_err(|e| build_error(src, e))
}

#[cfg(not(feature = "gcs"))]
fn gcs(src: &Source, _env: &Env, _tuning: &Tuning) -> Result<Arc<dyn ObjectStore>, Error> {
    Err(not_built(src, "GCS", "gcs"))
}

/// The parts of an Azure connection string (`Key=Value;…`) the agent uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnectionString {
    pub account: Option<String>,
    pub key: Option<String>,
    pub blob_endpoint: Option<String>,
    pub sas: Option<String>,
    pub dev_storage: bool,
}

pub fn parse_connection_string(s: &str) -> ConnectionString {
    let mut c = ConnectionString::default();
    for part in s.split(';') {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim() {
            "AccountName" => c.account = Some(v),
            "AccountKey" => c.key = Some(v),
            "BlobEndpoint" => c.blob_endpoint = Some(v.trim_end_matches('/').to_string()),
            "SharedAccessSignature" => c.sas = Some(v),
            "UseDevelopmentStorage" => c.dev_storage = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    c
}

/// Azure settings resolved from the environment: the account URL and the credential.
#[derive(Debug, PartialEq, Eq)]
pub struct AzureSettings {
    pub account: String,
    /// `None`: `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    pub key: Option<String>,
    pub sas: Option<String>,
    pub emulator: bool,
}

pub fn azure_settings(src: &Source, env: &Env) -> AzureSettings {
    let account = src.account.clone().unwrap_or_default();
    let conn = env.get("AZURE_STORAGE_CONNECTION_STRING").map(parse_connection_string).unwrap_or_default();
    let emulator = env.flag("AZURE_STORAGE_USE_EMULATOR") || conn.dev_storage;
    let endpoint = env
        .get("SKYCAT_AZURE_BLOB_ENDPOINT")
        .map(|e| e.trim_end_matches('/').to_string())
        .or(conn.blob_endpoint)
        .or_else(|| {
            emulator.then(|| {
                let base = env.get("AZURITE_BLOB_STORAGE_URL").unwrap_or("http://127.0.0.1:10000");
                format!("{}/{account}", base.trim_end_matches('/'))
            })
        });
    let mut key = env
        .first(&["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCESS_KEY"])
        .map(str::to_string)
        .or(conn.key);
    let sas = env.get("AZURE_STORAGE_SAS_TOKEN").map(str::to_string).or(conn.sas);
    if emulator && key.is_none() && sas.is_none() && account == AZURITE_ACCOUNT {
        key = Some(AZURITE_KEY.to_string());
    }
    AzureSettings { account, endpoint, key, sas, emulator }
}

#[cfg(feature = "azure")]
fn azure(src: &Source, env: &Env, tuning: &Tuning) -> Result<Arc<dyn ObjectStore>, Error> {
    azure_store_tuned(src, env, tuning).map(|s| Arc::new(s) as _)
}

/// An Azure Blob client for `src`'s container.
#[cfg(feature = "azure")]
pub fn azure_store(src: &Source, env: &Env) -> Result<object_store::azure::MicrosoftAzure, Error> {
    azure_store_tuned(src, env, &Tuning::default())
}

#[cfg(feature = "azure")]
fn azure_store_tuned(src: &Source, env: &Env, tuning: &Tuning) -> Result<object_store::azure::MicrosoftAzure, Error> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let s = azure_settings(src, env);
    let mut b = MicrosoftAzureBuilder::new();
    // Service principal, workload identity, bearer token… (object_store's AZURE_* keys). The
    // emulator switch is handled here (object_store's reads its URL from the process env).
    for (k, v) in env.with_prefix("AZURE_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AzureConfigKey>() {
            if !matches!(key, AzureConfigKey::UseEmulator | AzureConfigKey::AccountName | AzureConfigKey::Endpoint) {
                b = b.with_config(key, v);
            }
        }
    }
    b = b.with_account(&s.account).with_container_name(&src.bucket);
    if let Some(k) = &s.key {
        b = b.with_access_key(k);
    }
    if let Some(sas) = &s.sas {
        b = b.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'));
    }
    if let Some(e) = &s.endpoint {
        b = b.with_endpoint(e.clone());
    }
    b.with_client_options(tuning.options(s.endpoint.as_deref()))
        .with_retry(tuning.retry.clone())
        .build()
        .map_err(|e| build_error(src, e))
}

#[cfg(not(feature = "azure"))]
fn azure(src: &Source, _env: &Env, _tuning: &Tuning) -> Result<Arc<dyn ObjectStore>, Error> {
    Err(not_built(src, "Azure Blob", "azure"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_connection_string_and_emulator() {
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        );
        assert_eq!(c.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(c.key.as_deref(), Some("abc=="));
        assert_eq!(c.blob_endpoint.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));
        let src = Source::parse("https://devstoreaccount1.blob.core.windows.net/cnt1/p").unwrap();
        let env = Env::from_pairs(&[("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:4444/")]);
        let s = azure_settings(&src, &env);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:4444/devstoreaccount1"));
        assert_eq!(s.key.as_deref(), Some(AZURITE_KEY));
        let s = azure_settings(&src, &Env::default());
        assert_eq!((s.endpoint, s.key, s.emulator), (None, None, false));
    }

    #[test]
    fn gcs_endpoint_gets_a_scheme() {
        assert_eq!(gcs_endpoint(&Env::from_pairs(&[("STORAGE_EMULATOR_HOST", "localhost:9023")])).as_deref(), Some("http://localhost:9023"));
        assert_eq!(
            gcs_endpoint(&Env::from_pairs(&[("SKYCAT_GCS_ENDPOINT", "https://x/"), ("STORAGE_EMULATOR_HOST", "y")])).as_deref(),
            Some("https://x")
        );
    }

    #[test]
    fn r2_needs_an_account_and_keys() {
        let src = Source::parse("r2://bkt/p").unwrap();
        let e = r2(&src, &Env::default()).unwrap_err().to_string();
        assert!(e.contains("R2_ACCOUNT_ID"), "{e}");
        let e = r2(&src, &Env::from_pairs(&[("R2_ACCOUNT_ID", "abc123")])).unwrap_err().to_string();
        assert!(e.contains("R2_ACCESS_KEY_ID"), "{e}");
        assert!(r2(&src, &Env::from_pairs(&[("R2_ACCOUNT_ID", "abc123"), ("R2_ACCESS_KEY_ID", "a"), ("R2_SECRET_ACCESS_KEY", "b")])).is_ok());
        assert!(r2(&src, &Env::from_pairs(&[("R2_ACCOUNT_ID", "a.evil.com/x"), ("R2_ACCESS_KEY_ID", "a"), ("R2_SECRET_ACCESS_KEY", "b")])).is_err());
    }
}
