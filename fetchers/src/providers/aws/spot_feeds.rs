//! AWS's two public spot documents, read without credentials (aws-public-spot-feeds.md): the spot
//! price feed behind the "EC2 Spot pricing" page and the Spot Instance Advisor data. Both are
//! what spotinfo and ec2instances.info read; neither is a versioned API.
//!
//! - Spot prices: `SKYCAT_AWS_SPOT_FEED_URL`, default `https://website.spot.ec2.aws.a2z.com/spot.json`
//!   (spotinfo's current source; the legacy JSONP `spot-price.s3.amazonaws.com/spot.js`, wrapped
//!   in `callback(…);`, stopped updating on 2024-05-13). A `callback(…)` wrapper is accepted, so
//!   either URL parses. One regional Linux price per type (`valueColumns[name=linux]
//!   .prices.USD`, a string); `N/A*` and zero entries are skipped and counted; legacy region
//!   names (`us-east`, `eu-ireland`, `apac-sin`, …) are mapped to region codes.
//! - Interruption buckets: `SKYCAT_AWS_SPOT_ADVISOR_URL`, default
//!   `https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json`: per region and type, the
//!   savings vs on-demand (`s`, %) and the interruption-frequency bucket (`r`, an index into
//!   `ranges`). Parsed into [`SpotAdvisorData`]; [`interruption_buckets`] lists a region's Linux
//!   buckets, which the AWS fetcher writes into spot-priced offers (`Offer::spot_interruption`).
//!
//! Either URL may be `off`. When any AWS endpoint is redirected (`SKYCAT_AWS_OFFER_URL` at a
//! mirror, `AWS_ENDPOINT_URL*` at an emulator) and the feed's own variable is unset, the feed is
//! not read either (a note says so): a redirected endpoint means a private or offline setup,
//! where reaching AWS's public site would be a surprise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use crate::error::FetchError;
use crate::provider::FetchContext;

pub const DEFAULT_SPOT_FEED_URL: &str = "https://website.spot.ec2.aws.a2z.com/spot.json";
pub const DEFAULT_SPOT_ADVISOR_URL: &str = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json";

/// Variables that point AWS's APIs elsewhere: set, they keep the public feeds' defaults unread.
const REDIRECTS: [&str; 4] = ["SKYCAT_AWS_OFFER_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_PRICING"];

fn feed_url(cx: &FetchContext, var: &str, default: &str) -> Result<Option<Url>, FetchError> {
    let raw = match cx.env(var) {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => return Ok(None),
        Some(v) => v.trim(),
        None if REDIRECTS.iter().any(|v| cx.env(v).is_some()) => return Ok(None),
        None => default,
    };
    Url::parse(raw).map(Some).map_err(|e| FetchError::Config(format!("{var}={raw}: {e}")))
}

/// The spot price feed URL, or `None` when it is not to be read.
pub fn spot_feed_url(cx: &FetchContext) -> Result<Option<Url>, FetchError> {
    feed_url(cx, "SKYCAT_AWS_SPOT_FEED_URL", DEFAULT_SPOT_FEED_URL)
}

/// The Spot Instance Advisor data URL, or `None` when it is not to be read.
pub fn spot_advisor_url(cx: &FetchContext) -> Result<Option<Url>, FetchError> {
    feed_url(cx, "SKYCAT_AWS_SPOT_ADVISOR_URL", DEFAULT_SPOT_ADVISOR_URL)
}

// ---- spot price feed

#[derive(Deserialize)]
struct FeedDoc {
    config: FeedConfig,
}

#[derive(Deserialize)]
struct FeedConfig {
    #[serde(default)]
    rate: Option<String>,
    regions: Vec<FeedRegion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedRegion {
    region: String,
    instance_types: Vec<FeedGroup>,
}

#[derive(Deserialize)]
struct FeedGroup {
    sizes: Vec<FeedSize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedSize {
    size: String,
    value_columns: Vec<FeedColumn>,
}

#[derive(Deserialize)]
struct FeedColumn {
    name: String,
    prices: BTreeMap<String, String>,
}

/// Regional Linux spot prices from the feed.
#[derive(Debug, Default)]
pub struct SpotFeed {
    prices: HashMap<(String, String), f64>,
    /// Entries without a usable price (`N/A*`, `0`, not a number), per region.
    unpriced: HashMap<String, u64>,
    pub source: String,
}

impl SpotFeed {
    /// The Linux spot price of `instance_type` in `region`, USD per hour.
    pub fn price(&self, region: &str, instance_type: &str) -> Option<f64> {
        self.prices.get(&(region.to_string(), instance_type.to_string())).copied()
    }

    /// How many of `region`'s entries had no usable price.
    pub fn unpriced_in(&self, region: &str) -> u64 {
        self.unpriced.get(region).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

/// Region codes of the names older copies of the feed used (infracost keeps the same table).
fn region_code(name: &str) -> &str {
    match name {
        "us-east" => "us-east-1",
        "us-west" => "us-west-1",
        "eu-ireland" => "eu-west-1",
        "apac-sin" => "ap-southeast-1",
        "apac-syd" => "ap-southeast-2",
        "apac-tokyo" => "ap-northeast-1",
        other => other,
    }
}

/// Drop a JSONP `callback(` … `);` wrapper, if any.
fn strip_jsonp(text: &str) -> &str {
    let t = text.trim();
    match (t.find('('), t.starts_with('{')) {
        (Some(open), false) => t[open + 1..].trim_end().trim_end_matches(';').trim_end().trim_end_matches(')'),
        _ => t,
    }
}

/// Parse the spot price feed (`what` names it in errors).
pub fn parse_spot_feed(text: &str, what: &str) -> Result<SpotFeed, FetchError> {
    let doc: FeedDoc = serde_json::from_str(strip_jsonp(text)).map_err(|e| FetchError::malformed(what, e))?;
    if let Some(rate) = doc.config.rate.as_deref().filter(|r| *r != "perhr") {
        return Err(FetchError::malformed(what, format!("config.rate is {rate:?}, expected \"perhr\"")));
    }
    let mut feed = SpotFeed { source: what.to_string(), ..Default::default() };
    for r in doc.config.regions {
        let region = region_code(&r.region).to_string();
        for size in r.instance_types.into_iter().flat_map(|g| g.sizes) {
            let usd = size.value_columns.iter().find(|c| c.name == "linux").and_then(|c| c.prices.get("USD"));
            match usd.and_then(|p| p.trim().parse::<f64>().ok()).filter(|p| p.is_finite() && *p > 0.0) {
                Some(p) => {
                    feed.prices.insert((region.clone(), size.size), p);
                }
                None => *feed.unpriced.entry(region.clone()).or_default() += 1,
            }
        }
    }
    Ok(feed)
}

/// The feed, downloaded once per run.
pub async fn spot_feed(cx: &FetchContext, url: &Url) -> Result<Arc<SpotFeed>, FetchError> {
    cx.shared("aws:spot-feed", || async {
        let text = cx.http.get_text(url, &[]).await?;
        parse_spot_feed(&text, url.as_str())
    })
    .await
}

// ---- Spot Instance Advisor

/// The Spot Instance Advisor document.
#[derive(Debug, Clone, Deserialize)]
pub struct SpotAdvisorData {
    #[serde(default)]
    pub global_rate: Option<String>,
    /// Per type: vCPUs (`cores`, despite the name) and memory GiB.
    #[serde(default)]
    pub instance_types: BTreeMap<String, AdvisorType>,
    pub ranges: Vec<InterruptionRange>,
    /// region → OS (`Linux`, `Windows`) → type → entry.
    pub spot_advisor: BTreeMap<String, BTreeMap<String, BTreeMap<String, AdvisorEntry>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdvisorType {
    #[serde(default)]
    pub emr: bool,
    pub cores: f64,
    pub ram_gb: f64,
}

/// One interruption-frequency bucket: `<5%`, `5-10%`, … `>20%`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InterruptionRange {
    pub index: usize,
    pub label: String,
    #[serde(default)]
    pub dots: u32,
    /// Upper bound of the bucket, percent.
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdvisorEntry {
    /// Savings vs on-demand, percent.
    pub s: f64,
    /// Index into `ranges`.
    pub r: usize,
}

/// A type's Linux spot interruption bucket in one region.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptionBucket {
    pub instance_type: String,
    pub savings_pct: f64,
    pub range: InterruptionRange,
}

/// Parse the advisor document; a bucket index outside `ranges` is an error naming it.
pub fn parse_spot_advisor(text: &str, what: &str) -> Result<SpotAdvisorData, FetchError> {
    let data: SpotAdvisorData = serde_json::from_str(text).map_err(|e| FetchError::malformed(what, e))?;
    for (region, by_os) in &data.spot_advisor {
        for (os, types) in by_os {
            for (t, e) in types {
                if !data.ranges.iter().any(|r| r.index == e.r) {
                    return Err(FetchError::malformed(
                        what,
                        format!("spot_advisor.{region}.{os}.{t}.r = {} is not an index of ranges", e.r),
                    ));
                }
            }
        }
    }
    Ok(data)
}

/// The advisor data, downloaded once per run; `None` when its URL is off.
pub async fn spot_advisor(cx: &FetchContext) -> Result<Option<Arc<SpotAdvisorData>>, FetchError> {
    let Some(url) = spot_advisor_url(cx)? else {
        return Ok(None);
    };
    let data = cx
        .shared("aws:spot-advisor", || async {
            let text = cx.http.get_text(&url, &[]).await?;
            parse_spot_advisor(&text, url.as_str())
        })
        .await?;
    Ok(Some(data))
}

/// Linux interruption buckets of every type the advisor lists in `region`, by type name.
pub fn interruption_buckets(data: &SpotAdvisorData, region: &str) -> Vec<InterruptionBucket> {
    let Some(linux) = data.spot_advisor.get(region).and_then(|by_os| by_os.get("Linux")) else {
        return Vec::new();
    };
    linux
        .iter()
        .filter_map(|(t, e)| {
            let range = data.ranges.iter().find(|r| r.index == e.r)?.clone();
            Some(InterruptionBucket { instance_type: t.clone(), savings_pct: e.s, range })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonp_wrapper_and_legacy_regions() {
        let text = r#"callback({"vers":0.01,"config":{"rate":"perhr","valueColumns":["linux","mswin"],"currencies":["USD"],"regions":[{"region":"us-east","instanceTypes":[{"type":"generalCurrentGen","sizes":[{"size":"m3.medium","valueColumns":[{"name":"linux","prices":{"USD":"0.0081"}},{"name":"mswin","prices":{"USD":"0.0481"}}]}]}]}]}});"#;
        let feed = parse_spot_feed(text, "spot.js").unwrap();
        assert_eq!(feed.price("us-east-1", "m3.medium"), Some(0.0081));
        assert_eq!(feed.len(), 1);
        let bad = parse_spot_feed(r#"{"config":{"rate":"perday","regions":[]}}"#, "spot.json").unwrap_err();
        assert!(bad.to_string().contains("perday"), "{bad}");
    }
}
