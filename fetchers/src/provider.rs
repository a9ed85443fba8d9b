//! The `Provider` trait and the per-run `FetchContext` every provider receives.
//!
//! A provider only turns an API into raw offers. Filtering of invalid rows, duplicate collapse,
//! stale-region handling and publishing happen once, in [`crate::run`].

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use skycat_catalog::Offer;
use tokio::sync::OnceCell;
use url::Url;

use crate::error::FetchError;
use crate::http::{HttpClient, RetryPolicy};

/// One cloud's price source.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Lower-case cloud id, as stored in `Offer::cloud` and used in `--clouds`: `aws`, `azure`…
    fn name(&self) -> &'static str;

    /// Regions fetched when the user's config names none (documented popular set).
    fn default_regions(&self) -> &'static [&'static str];

    /// Every region the provider lists (used by `--all-regions`).
    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError>;

    /// Raw offers of one region. Called concurrently for several regions (bounded by the
    /// engine). Providers with one global API call should fetch it through
    /// [`FetchContext::shared`] so the call happens once per run, then keep this region's rows.
    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError>;
}

/// How AWS on-demand prices are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AwsOnDemandSource {
    /// Public bulk offer files (`region_index.json` + `<region>/index.csv`), no credentials.
    #[default]
    BulkFiles,
    /// The signed Price List Query API (`aws-sdk-pricing` GetProducts).
    PricingApi,
}

type SharedCell = Arc<OnceCell<Result<Arc<dyn Any + Send + Sync>, FetchError>>>;

/// Per-run state shared by all providers and regions: HTTP client, environment snapshot,
/// endpoint lookup, a once-per-run cache, and the skipped-row / note counters.
pub struct FetchContext {
    pub http: HttpClient,
    /// The one timestamp stamped on every offer of this run.
    pub fetched_at: DateTime<Utc>,
    pub aws_ondemand_source: AwsOnDemandSource,
    env: BTreeMap<String, String>,
    /// The environment is only what the caller gave (tests): credential chains must not look
    /// beyond it (no profile files, no instance metadata).
    isolated: bool,
    shared: Mutex<HashMap<String, SharedCell>>,
    skipped: Mutex<BTreeMap<(String, String), u64>>,
    notes: Mutex<Vec<(String, String)>>,
    sources: Mutex<BTreeMap<String, (String, String)>>,
}

impl FetchContext {
    /// A context reading the process environment, overlaid with `env_overrides`.
    pub fn new(
        retry: RetryPolicy,
        env_overrides: &BTreeMap<String, String>,
        aws_ondemand_source: AwsOnDemandSource,
    ) -> Result<Self, FetchError> {
        Self::with_env(retry, env_overrides, aws_ondemand_source, false)
    }

    /// Like [`Self::new`]; with `isolated`, the environment is `env_overrides` alone.
    pub fn with_env(
        retry: RetryPolicy,
        env_overrides: &BTreeMap<String, String>,
        aws_ondemand_source: AwsOnDemandSource,
        isolated: bool,
    ) -> Result<Self, FetchError> {
        let mut env: BTreeMap<String, String> =
            if isolated { BTreeMap::new() } else { std::env::vars().collect() };
        for (k, v) in env_overrides {
            env.insert(k.clone(), v.clone());
        }
        Ok(FetchContext {
            http: HttpClient::new(retry)?,
            fetched_at: Utc::now(),
            aws_ondemand_source,
            env,
            isolated,
            shared: Mutex::new(HashMap::new()),
            skipped: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(Vec::new()),
            sources: Mutex::new(BTreeMap::new()),
        })
    }

    /// A context with ONLY the given variables (no process environment) and fast retries:
    /// what provider tests use, so that parallel tests never race on `std::env`.
    pub fn for_tests(env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FetchContext {
            http: HttpClient::new(RetryPolicy::fast_for_tests()).expect("reqwest client builds"),
            fetched_at: Utc::now(),
            aws_ondemand_source: AwsOnDemandSource::BulkFiles,
            env,
            isolated: true,
            shared: Mutex::new(HashMap::new()),
            skipped: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(Vec::new()),
            sources: Mutex::new(BTreeMap::new()),
        }
    }

    /// An environment variable of this run; empty values count as unset.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(|s| s.as_str()).filter(|s| !s.trim().is_empty())
    }

    /// Whether the environment is only what the caller passed (see [`Self::for_tests`]).
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// The whole environment snapshot (the AWS SDK config is built from it).
    pub fn env_map(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The base URL of `provider`'s API: `SKYCAT_<PROVIDER>_ENDPOINT` (upper-cased name) when
    /// set, else `default`. A trailing `/` is added so that `Url::join("relative/path")` keeps
    /// the base path; join with paths WITHOUT a leading `/` to keep a proxy's path prefix.
    pub fn endpoint(&self, provider: &str, default: &str) -> Result<Url, FetchError> {
        let key = format!("SKYCAT_{}_ENDPOINT", provider.to_ascii_uppercase());
        let raw = self.env(&key).unwrap_or(default);
        let mut s = raw.trim().to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        Url::parse(&s).map_err(|e| FetchError::Config(format!("{key}={raw}: {e}")))
    }

    /// Resolve a paging link (`NextPageLink`, `nextLink`, …) against the configured endpoint.
    ///
    /// Relative links are joined to `endpoint`. Absolute links keep their path and query but
    /// take the scheme, host and port of `endpoint`, so paging keeps working behind a changed
    /// endpoint (replay server, proxy). If `endpoint` has a path prefix (a proxy at
    /// `http://proxy/azure/`) and the link's path does not already start with it, the prefix
    /// is prepended.
    pub fn resolve_link(&self, endpoint: &Url, link: &str) -> Result<Url, FetchError> {
        let bad = |e: &dyn std::fmt::Display| FetchError::malformed("paging link", format!("{link}: {e}"));
        match Url::parse(link) {
            Ok(abs) => {
                let mut out = endpoint.clone();
                let prefix = endpoint.path().trim_end_matches('/');
                let path = abs.path();
                if prefix.is_empty() || path.starts_with(&format!("{prefix}/")) {
                    out.set_path(path);
                } else {
                    out.set_path(&format!("{prefix}{path}"));
                }
                out.set_query(abs.query());
                Ok(out)
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => endpoint.join(link).map_err(|e| bad(&e)),
            Err(e) => Err(bad(&e)),
        }
    }

    /// Run `make` once per run for `key` and share its result with every caller (regions of a
    /// global API). A failure is shared too: every region that needs it fails the same way.
    pub async fn shared<T, F, Fut>(&self, key: &str, make: F) -> Result<Arc<T>, FetchError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let cell = {
            let mut map = self.shared.lock().expect("shared cache lock");
            map.entry(key.to_string()).or_insert_with(|| Arc::new(OnceCell::new())).clone()
        };
        let res = cell
            .get_or_init(|| async move { make().await.map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>) })
            .await;
        match res {
            Ok(any) => any
                .clone()
                .downcast::<T>()
                .map_err(|_| FetchError::Config(format!("shared key {key} used with two types"))),
            Err(e) => Err(e.clone()),
        }
    }

    /// Count `n` source rows of `cloud` that were deliberately left out (Windows, reserved,
    /// preview SKU without price…), under a short reason. Shown in the run report.
    pub fn skip(&self, cloud: &str, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.skipped.lock().expect("skipped lock");
        *m.entry((cloud.to_string(), reason.to_string())).or_insert(0) += n;
    }

    /// A one-line note for the user (e.g. "no AWS credentials: spot prices skipped").
    /// Duplicate notes are kept once.
    pub fn note(&self, cloud: &str, message: impl Into<String>) {
        let message = message.into();
        let mut n = self.notes.lock().expect("notes lock");
        if !n.iter().any(|(c, m)| c == cloud && *m == message) {
            n.push((cloud.to_string(), message));
        }
    }

    /// Record the manifest's `source` (API/URL, with version) and `as_of` (the date the prices
    /// are valid for, or the source's version id) for `cloud`. Optional: without it the
    /// manifest gets the offers' common source and the run's timestamp. Last call wins.
    pub fn set_source(&self, cloud: &str, source: impl Into<String>, as_of: impl Into<String>) {
        let mut m = self.sources.lock().expect("sources lock");
        m.insert(cloud.to_string(), (source.into(), as_of.into()));
    }

    /// What [`Self::set_source`] recorded for `cloud`.
    pub fn source_for(&self, cloud: &str) -> Option<(String, String)> {
        self.sources.lock().expect("sources lock").get(cloud).cloned()
    }

    /// Skipped-row counts of `cloud`, by reason.
    pub fn skipped_for(&self, cloud: &str) -> BTreeMap<String, u64> {
        let m = self.skipped.lock().expect("skipped lock");
        m.iter().filter(|((c, _), _)| c == cloud).map(|((_, r), n)| (r.clone(), *n)).collect()
    }

    /// Notes of `cloud`, in order.
    pub fn notes_for(&self, cloud: &str) -> Vec<String> {
        let n = self.notes.lock().expect("notes lock");
        n.iter().filter(|(c, _)| c == cloud).map(|(_, m)| m.clone()).collect()
    }

    /// A blank offer of this run: no accelerator, no specs, no prices. Fill in what the API
    /// gives. `source` is the URL or API the figures come from.
    pub fn offer(&self, cloud: &str, instance_type: &str, region: &str, source: &str) -> Offer {
        Offer::blank(cloud, instance_type, region, source, self.fetched_at)
    }
}
