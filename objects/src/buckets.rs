//! The bucket-level calls `object_store` does not make: does a bucket exist, create it, delete it
//! (emptied first). Each is one REST request to the store's own API, signed with object_store's
//! authorizers from the same credentials the object calls use:
//!
//! | store | exists | create | delete |
//! |---|---|---|---|
//! | S3, R2 | `HEAD /BUCKET` | `PUT /BUCKET` (+ `LocationConstraint` outside us-east-1) | `DELETE /BUCKET` |
//! | GCS (JSON API) | `GET /storage/v1/b/BUCKET` | `POST /storage/v1/b?project=P` | `DELETE /storage/v1/b/BUCKET` |
//! | Azure Blob | `HEAD /CONTAINER?restype=container` | `PUT …?restype=container` | `DELETE …?restype=container` |
//!
//! S3 and R2 requests are path-style against the endpoint override (moto, R2's account endpoint)
//! and `https://s3.REGION.amazonaws.com` otherwise.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use http::{Method, StatusCode};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::ObjectStore;

use crate::stores::{self, client_options};
use crate::{one_line, Env, Error, Scheme, Source};

/// What [`create`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The bucket was made by this call.
    New,
    /// It was there already and these credentials own it.
    Existed,
}

/// How a request is signed.
enum Signer {
    None,
    Aws { cred: Arc<object_store::aws::AwsCredential>, region: String },
    #[cfg(feature = "gcs")]
    Bearer(String),
    #[cfg(feature = "azure")]
    Azure { cred: Arc<object_store::azure::AzureCredential>, account: String },
}

/// One bucket's control-plane endpoint.
struct BucketApi {
    src: Source,
    client: HttpClient,
    signer: Signer,
    /// S3/R2: `ENDPOINT/BUCKET`; GCS: the JSON API base; Azure: `ACCOUNT_URL/CONTAINER`.
    base: String,
    /// The region a new S3 bucket is made in.
    region: Option<String>,
    /// GCS: the project new buckets belong to.
    project: Option<String>,
}

fn http_client(src: &Source, endpoint: Option<&str>) -> Result<HttpClient, Error> {
    ReqwestConnector::default()
        .connect(&client_options(endpoint))
        .map_err(|e| Error::Config(format!("{}: {}", src.url_of(""), one_line(&e.to_string()))))
}

fn credential_error(src: &Source, e: object_store::Error) -> Error {
    Error::Store { url: src.url_of(""), msg: format!("no usable credentials: {}", one_line(&e.to_string())) }
}

impl BucketApi {
    /// `region`: where a new S3 bucket goes (default AWS_REGION, else us-east-1). Other stores
    /// ignore it except GCS, whose bucket `location` it sets.
    async fn new(src: &Source, env: &Env, region: Option<&str>) -> Result<BucketApi, Error> {
        let bucket_only = Source { prefix: String::new(), ..src.clone() };
        match src.scheme {
            Scheme::S3 => {
                let endpoint = stores::s3_endpoint(env).map(|e| e.trim_end_matches('/').to_string());
                let mut region = region.map(str::to_string).or_else(|| env.first(&["AWS_REGION", "AWS_DEFAULT_REGION"]).map(str::to_string));
                if region.is_none() && endpoint.is_none() {
                    // An existing bucket answers only at its own region's endpoint: ask where it
                    // is (a bucket that does not exist yet has no region to find).
                    region = object_store::aws::resolve_bucket_region(&src.bucket, &client_options(None)).await.ok();
                }
                let region = region.unwrap_or_else(|| "us-east-1".to_string());
                let base = match &endpoint {
                    Some(e) => format!("{e}/{}", src.bucket),
                    None => format!("https://s3.{region}.amazonaws.com/{}", src.bucket),
                };
                let signer = if env.flag("AWS_SKIP_SIGNATURE") {
                    Signer::None
                } else {
                    let store = stores::s3(&bucket_only, &env.clone().with("AWS_REGION", &region)).await?;
                    let cred = store.credentials().get_credential().await.map_err(|e| credential_error(src, e))?;
                    Signer::Aws { cred, region: region.clone() }
                };
                let client = http_client(src, endpoint.as_deref())?;
                Ok(BucketApi { src: src.clone(), client, signer, base, region: Some(region), project: None })
            }
            Scheme::R2 => {
                let endpoint = stores::r2_endpoint(src, env)?.trim_end_matches('/').to_string();
                let store = stores::r2(&bucket_only, env)?.build().map_err(|e| Error::Config(format!("{}: {}", src.url_of(""), one_line(&e.to_string()))))?;
                let cred = store.credentials().get_credential().await.map_err(|e| credential_error(src, e))?;
                Ok(BucketApi {
                    src: src.clone(),
                    client: http_client(src, Some(&endpoint))?,
                    signer: Signer::Aws { cred, region: "auto".into() },
                    base: format!("{endpoint}/{}", src.bucket),
                    region: None,
                    project: None,
                })
            }
            #[cfg(feature = "gcs")]
            Scheme::Gcs => {
                let endpoint = stores::gcs_endpoint(env);
                let has_key = env.first(&["GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"]).is_some();
                // An emulator without a key takes unsigned requests; asking for a token would
                // dial the metadata server.
                let signer = if endpoint.is_some() && !has_key {
                    Signer::None
                } else {
                    let store = stores::gcs_store(&bucket_only, env)?;
                    let cred = store.credentials().get_credential().await.map_err(|e| credential_error(src, e))?;
                    Signer::Bearer(cred.bearer.clone())
                };
                let base = endpoint.clone().unwrap_or_else(|| "https://storage.googleapis.com".into());
                Ok(BucketApi {
                    src: src.clone(),
                    client: http_client(src, endpoint.as_deref())?,
                    signer,
                    base: format!("{base}/storage/v1/b"),
                    region: region.map(str::to_string),
                    project: gcs_project(env, endpoint.is_some()),
                })
            }
            #[cfg(feature = "azure")]
            Scheme::Azure => {
                let s = stores::azure_settings(src, env);
                let store = stores::azure_store(&bucket_only, env)?;
                let cred = store.credentials().get_credential().await.map_err(|e| credential_error(src, e))?;
                let account_url = s.endpoint.clone().unwrap_or_else(|| format!("https://{}.blob.core.windows.net", s.account));
                Ok(BucketApi {
                    src: src.clone(),
                    client: http_client(src, s.endpoint.as_deref())?,
                    signer: Signer::Azure { cred, account: s.account },
                    base: format!("{account_url}/{}", src.bucket),
                    region: None,
                    project: None,
                })
            }
            #[allow(unreachable_patterns)]
            _ => Err(Error::Config(format!("{}: this build has no support for this store", src.url_of("")))),
        }
    }

    async fn send(&self, method: Method, url: &str, body: Option<(String, &str)>) -> Result<(StatusCode, String), Error> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some((_, content_type)) = &body {
            builder = builder.header(http::header::CONTENT_TYPE, *content_type);
        }
        let payload = match body {
            Some((text, _)) => HttpRequestBody::from(text),
            None => HttpRequestBody::empty(),
        };
        let mut req: HttpRequest = builder
            .body(payload)
            .map_err(|e| Error::Config(format!("{}: bad request URL: {e}", self.src.url_of(""))))?;
        match &self.signer {
            Signer::None => {}
            Signer::Aws { cred, region } => object_store::aws::AwsAuthorizer::new(cred, "s3", region).authorize(&mut req, None),
            #[cfg(feature = "gcs")]
            Signer::Bearer(token) => {
                let v = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Config("GCS token is not a header value".into()))?;
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
            #[cfg(feature = "azure")]
            Signer::Azure { cred, account } => object_store::azure::AzureAuthorizer::new(cred, account).authorize(&mut req),
        }
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| Error::store(&self.src, format!("request failed: {}", one_line(&e.to_string()))))?;
        let status = resp.status();
        let text = resp.into_body().bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        Ok((status, text))
    }

    /// The bucket (container) as a resource: what exists and delete address.
    fn bucket_url(&self) -> String {
        match self.src.scheme {
            Scheme::S3 | Scheme::R2 => self.base.clone(),
            Scheme::Gcs => format!("{}/{}", self.base, self.src.bucket),
            Scheme::Azure => format!("{}?restype=container", self.base),
        }
    }

    async fn exists(&self) -> Result<bool, Error> {
        // GCS's JSON API has no HEAD for a bucket: its metadata is read instead.
        let method = if self.src.scheme == Scheme::Gcs { Method::GET } else { Method::HEAD };
        let (status, body) = self.send(method, &self.bucket_url(), None).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::FORBIDDEN => Err(self.refused(status, &body, "exists, but these credentials may not use it (or may not look)")),
            _ => Err(self.refused(status, &body, "cannot tell whether it exists")),
        }
    }

    async fn create(&self) -> Result<Created, Error> {
        let (status, body) = match self.src.scheme {
            // R2's region is `auto`, which its CreateBucket also takes as the LocationConstraint
            // (developers.cloudflare.com/r2/api/s3/api); S3 wants none for us-east-1.
            Scheme::S3 | Scheme::R2 => {
                let region = self.region.as_deref().unwrap_or(if self.src.scheme == Scheme::R2 { "auto" } else { "us-east-1" });
                let config = (region != "us-east-1").then(|| {
                    (
                        format!(
                            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                        ),
                        "application/xml",
                    )
                });
                self.send(Method::PUT, &self.base, config).await?
            }
            Scheme::Gcs => {
                let project = self.project.as_deref().ok_or_else(|| {
                    Error::Config(format!(
                        "{}: creating a GCS bucket needs a project: set GOOGLE_CLOUD_PROJECT (or use a service-account key, whose project_id is used)",
                        self.src.url_of("")
                    ))
                })?;
                let mut doc = serde_json::json!({"name": self.src.bucket});
                if let Some(r) = &self.region {
                    doc["location"] = serde_json::Value::String(r.to_ascii_uppercase());
                }
                let url = format!("{}?project={}", self.base, form_escape(project));
                self.send(Method::POST, &url, Some((doc.to_string(), "application/json"))).await?
            }
            Scheme::Azure => self.send(Method::PUT, &self.bucket_url(), None).await?,
        };
        if status.is_success() {
            return Ok(Created::New);
        }
        if status == StatusCode::CONFLICT {
            // S3 says who owns the name; GCS and Azure (names per account) are asked again.
            if body.contains("BucketAlreadyOwnedByYou") {
                return Ok(Created::Existed);
            }
            if body.contains("BucketAlreadyExists") && matches!(self.src.scheme, Scheme::S3 | Scheme::R2) {
                return Err(Error::store(&self.src, "the name is taken by another account; choose another bucket name"));
            }
            if self.exists().await? {
                return Ok(Created::Existed);
            }
        }
        Err(self.refused(status, &body, "cannot create the bucket"))
    }

    async fn delete_bucket(&self) -> Result<bool, Error> {
        let (status, body) = self.send(Method::DELETE, &self.bucket_url(), None).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(status, &body, "cannot delete the bucket")),
        }
    }

    fn refused(&self, status: StatusCode, body: &str, what: &str) -> Error {
        let detail = error_code(body).map(|c| format!(" ({c})")).unwrap_or_default();
        Error::store(&Source { prefix: String::new(), ..self.src.clone() }, format!("{what}: HTTP {}{detail}", status.as_u16()))
    }
}

/// The `<Code>` of an S3/Azure XML error or the `message` of a GCS JSON error.
fn error_code(body: &str) -> Option<String> {
    if let Some(start) = body.find("<Code>") {
        let rest = &body[start + 6..];
        return rest.find("</Code>").map(|end| rest[..end].to_string());
    }
    let doc: serde_json::Value = serde_json::from_str(body).ok()?;
    doc.pointer("/error/message").and_then(|m| m.as_str()).map(one_line)
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The project a new GCS bucket belongs to: the usual variables, else the service-account key's
/// `project_id`; an emulator accepts any.
#[cfg(feature = "gcs")]
fn gcs_project(env: &Env, emulator: bool) -> Option<String> {
    if let Some(p) = env.first(&["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"]) {
        return Some(p.to_string());
    }
    let key = env.get("GOOGLE_SERVICE_ACCOUNT_KEY").map(str::to_string).or_else(|| {
        let v = env.get("GOOGLE_APPLICATION_CREDENTIALS")?;
        if v.trim_start().starts_with('{') {
            Some(v.to_string())
        } else {
            std::fs::read_to_string(v).ok()
        }
    });
    key.and_then(|k| serde_json::from_str::<serde_json::Value>(&k).ok())
        .and_then(|d| d.get("project_id").and_then(|p| p.as_str()).map(str::to_string))
        .or_else(|| emulator.then(|| "skycat".to_string()))
}

/// Whether `src`'s bucket exists (and these credentials may see it).
pub async fn exists(src: &Source, env: &Env) -> Result<bool, Error> {
    BucketApi::new(src, env, None).await?.exists().await
}

/// Creates `src`'s bucket (S3: in `region`, default AWS_REGION, else us-east-1; GCS: at
/// location `region` if given). A bucket these credentials already own is [`Created::Existed`];
/// a name another account holds is an error.
pub async fn create(src: &Source, env: &Env, region: Option<&str>) -> Result<Created, Error> {
    BucketApi::new(src, env, region).await?.create().await
}

/// Deletes every object of `src`'s bucket, then the bucket. Returns how many objects went, or
/// `None` when there was no such bucket.
pub async fn delete(src: &Source, env: &Env) -> Result<Option<u64>, Error> {
    let api = BucketApi::new(src, env, None).await?;
    if !api.exists().await? {
        return Ok(None);
    }
    let bucket_only = Source { prefix: String::new(), ..src.clone() };
    let store: Arc<dyn ObjectStore> = match src.scheme {
        // The endpoint or region given: no region lookup for a bucket about to go.
        Scheme::S3 => Arc::new(stores::s3(&bucket_only, &env.clone().with("AWS_REGION", api.region.as_deref().unwrap_or("us-east-1"))).await?),
        _ => stores::build(&bucket_only, env).await?,
    };
    let listing = store.list(None).map_ok(|m| m.location).boxed();
    let deleted = store
        .delete_stream(listing)
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .map_err(|e| Error::store(&bucket_only, format!("emptying the bucket: {}", one_line(&e.to_string()))))?;
    api.delete_bucket().await?;
    Ok(Some(deleted))
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_codes_from_xml_and_json() {
        assert_eq!(super::error_code("<Error><Code>BucketAlreadyExists</Code></Error>").as_deref(), Some("BucketAlreadyExists"));
        assert_eq!(super::error_code(r#"{"error":{"code":409,"message":"You already own it."}}"#).as_deref(), Some("You already own it."));
        assert_eq!(super::error_code("nope"), None);
        assert_eq!(super::form_escape("my proj/1"), "my%20proj%2F1");
    }
}
