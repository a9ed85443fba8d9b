//! Where a bucket sits and how much data a source holds, for the optimizer's data-locality terms
//! (`skycat optimize` / `skycat launch` charge moving a task's bucket inputs to each placement):
//!
//! | store | region | size |
//! |---|---|---|
//! | S3 | the `x-amz-bucket-region` header of `HEAD /BUCKET` (unsigned; AWS sends it even on 301/403) | the listing under the prefix |
//! | GCS | the bucket's `location` (JSON API), when `locationType` is `region` | the listing |
//! | R2 | none (`auto`: R2 has no regions, and no egress fees) | the listing |
//! | Azure Blob | none (the account's region is an ARM call away) | the listing |
//!
//! A source whose prefix names one object (`s3://b/data.tar`) has that object's size.

use futures_util::StreamExt;
use http::Method;
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::stores::{self, client_options};
use crate::{one_line, Env, Error, Scheme, Source};

/// What [`describe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket's region, lower-cased as the clouds name their compute regions
    /// (`us-east-1`, `us-central1`); `None` when unknown or not a single region.
    pub region: Option<String>,
    /// The location as the store reports it when it is not one region (GCS `US`, `NAM4`).
    pub location: Option<String>,
    /// Bytes under the source's prefix.
    pub bytes: u64,
    /// Objects under the source's prefix.
    pub objects: u64,
}

impl BucketInfo {
    /// `bytes` in GB (10^9, as clouds bill transfer).
    pub fn size_gb(&self) -> f64 {
        self.bytes as f64 / 1e9
    }
}

/// The region of `src`'s bucket and the total size of the objects under its prefix.
pub async fn describe(src: &Source, env: &Env) -> Result<BucketInfo, Error> {
    let (region, location) = match src.scheme {
        Scheme::S3 => (s3_region(src, env).await?, None),
        Scheme::Gcs => gcs_location(src, env).await?,
        Scheme::R2 | Scheme::Azure => (None, None),
    };
    // The region is known now: the S3 client need not ask it again.
    let env = match (&region, src.scheme) {
        (Some(r), Scheme::S3) if env.first(&["AWS_REGION", "AWS_DEFAULT_REGION"]).is_none() => env.clone().with("AWS_REGION", r),
        _ => env.clone(),
    };
    let store = stores::build(src, &env).await?;
    let (bytes, objects) = total(src, store.as_ref()).await?;
    Ok(BucketInfo { region, location, bytes, objects })
}

/// Sums the listing under the prefix; an empty listing of a non-empty prefix is tried as one
/// object.
async fn total(src: &Source, store: &dyn ObjectStore) -> Result<(u64, u64), Error> {
    let prefix = (!src.prefix.is_empty()).then(|| Path::from(src.prefix.as_str()));
    let mut list = store.list(prefix.as_ref());
    let (mut bytes, mut objects) = (0u64, 0u64);
    while let Some(m) = list.next().await {
        let m = m.map_err(|e| Error::store(src, format!("cannot list: {}", one_line(&e.to_string()))))?;
        bytes += m.size;
        objects += 1;
    }
    if objects == 0 {
        if let Some(p) = &prefix {
            match store.head(p).await {
                Ok(m) => return Ok((m.size, 1)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store(src, format!("cannot read: {}", one_line(&e.to_string())))),
            }
        }
    }
    Ok((bytes, objects))
}

/// The `x-amz-bucket-region` of an S3 bucket: against the endpoint override (path-style) when
/// one is set, else AWS's global endpoint (object_store's lookup).
async fn s3_region(src: &Source, env: &Env) -> Result<Option<String>, Error> {
    let Some(endpoint) = stores::s3_endpoint(env).map(|e| e.trim_end_matches('/').to_string()) else {
        let r = object_store::aws::resolve_bucket_region(&src.bucket, &client_options(None))
            .await
            .map_err(|e| Error::store(&bucket_only(src), format!("cannot find the bucket's region: {}", one_line(&e.to_string()))))?;
        return Ok(Some(r.to_ascii_lowercase()));
    };
    let client = ReqwestConnector::default()
        .connect(&client_options(Some(&endpoint)))
        .map_err(|e| Error::Config(format!("{}: {}", src.url_of(""), one_line(&e.to_string()))))?;
    let req = http::Request::builder()
        .method(Method::HEAD)
        .uri(format!("{endpoint}/{}", src.bucket))
        .body(HttpRequestBody::empty())
        .map_err(|e| Error::Config(format!("{}: bad request URL: {e}", src.url_of(""))))?;
    let resp = client
        .execute(req)
        .await
        .map_err(|e| Error::store(&bucket_only(src), format!("request failed: {}", one_line(&e.to_string()))))?;
    if resp.status() == http::StatusCode::NOT_FOUND {
        return Err(Error::store(&bucket_only(src), "no such bucket"));
    }
    Ok(resp
        .headers()
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(|r| r.trim().to_ascii_lowercase())
        .filter(|r| !r.is_empty()))
}

fn bucket_only(src: &Source) -> Source {
    Source { prefix: String::new(), ..src.clone() }
}

/// A GCS bucket's `location` (`US-CENTRAL1`) as a region (`us-central1`) when it is one region;
/// a multi- or dual-region location is returned as the location only.
#[cfg(feature = "gcs")]
async fn gcs_location(src: &Source, env: &Env) -> Result<(Option<String>, Option<String>), Error> {
    let endpoint = stores::gcs_endpoint(env);
    let has_key = env.first(&["GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"]).is_some();
    let client = ReqwestConnector::default()
        .connect(&client_options(endpoint.as_deref()))
        .map_err(|e| Error::Config(format!("{}: {}", src.url_of(""), one_line(&e.to_string()))))?;
    let base = endpoint.clone().unwrap_or_else(|| "https://storage.googleapis.com".into());
    let mut req = http::Request::builder()
        .method(Method::GET)
        .uri(format!("{base}/storage/v1/b/{}?fields=location,locationType", src.bucket))
        .body(HttpRequestBody::empty())
        .map_err(|e| Error::Config(format!("{}: bad request URL: {e}", src.url_of(""))))?;
    // An emulator without a key takes unsigned requests; asking for a token would dial the
    // metadata server.
    if endpoint.is_none() || has_key {
        let store = stores::gcs_store(&bucket_only(src), env)?;
        let cred = store.credentials().get_credential().await.map_err(|e| {
            Error::store(&bucket_only(src), format!("no usable credentials: {}", one_line(&e.to_string())))
        })?;
        let v = http::HeaderValue::from_str(&format!("Bearer {}", cred.bearer))
            .map_err(|_| Error::Config("GCS token is not a header value".into()))?;
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    let resp = client
        .execute(req)
        .await
        .map_err(|e| Error::store(&bucket_only(src), format!("request failed: {}", one_line(&e.to_string()))))?;
    let status = resp.status();
    let body = resp.into_body().bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    if !status.is_success() {
        return Err(Error::store(&bucket_only(src), format!("bucket metadata: HTTP {status}: {}", one_line(&body))));
    }
    let doc: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Error::store(&bucket_only(src), format!("bucket metadata is not JSON: {e}")))?;
    let location = doc.get("location").and_then(|v| v.as_str()).map(|s| s.trim().to_ascii_lowercase());
    let kind = doc.get("locationType").and_then(|v| v.as_str()).unwrap_or("");
    // Regions have a digit (`us-central1`, `europe-west4`); `us`, `eu`, `nam4`… are multi- or
    // dual-regions when the type is not given.
    let single = kind.eq_ignore_ascii_case("region")
        || (kind.is_empty() && location.as_deref().is_some_and(|l| l.contains('-') && l.ends_with(|c: char| c.is_ascii_digit())));
    Ok(if single { (location, None) } else { (None, location) })
}

#[cfg(not(feature = "gcs"))]
async fn gcs_location(_src: &Source, _env: &Env) -> Result<(Option<String>, Option<String>), Error> {
    Ok((None, None))
}
