//! HTTP client with retries: exponential backoff with full jitter on timeouts, connection
//! errors, 429 (honouring `Retry-After`) and 5xx. Other 4xx fail at once.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::error::FetchError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Backoff before retry n is a random value in [0, min(max_delay, base_delay * 2^n)].
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Cap on a server's `Retry-After`.
    pub max_retry_after: Duration,
    /// Longest silence while reading a response (not a cap on the whole transfer: a region's
    /// offer file is hundreds of MB).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Millisecond backoff and a short timeout, for tests against replay servers.
    pub fn fast_for_tests() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_millis(1500),
            timeout: Duration::from_secs(20),
        }
    }

    /// The jittered delay before attempt `attempt + 1` (attempt counts from 0).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.max_delay);
        cap.mul_f64(rand::random::<f64>())
    }
}

/// Extra request headers, e.g. `&[("Authorization", format!("Bearer {key}"))]`.
pub type Headers<'a> = &'a [(&'a str, String)];

#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    pub policy: RetryPolicy,
}

fn is_retryable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT || s.is_server_error()
}

fn retry_after(resp: &reqwest::Response, cap: Duration) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, chrono::Utc::now(), cap)
}

/// A `Retry-After` value as a wait of at most `cap`: delay-seconds (an integer, or a float as
/// some servers send) or an HTTP-date (IMF-fixdate, RFC 850 or asctime). The value is capped
/// before it becomes a `Duration`, so `1e20` waits `cap` instead of overflowing; a date in the
/// past waits nothing. Negative, NaN, infinite and unparsable values give `None` (the caller's
/// own backoff applies).
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>, cap: Duration) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(cap));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        // Capped in f64 first: `Duration::from_secs_f64` panics past u64::MAX seconds.
        let capped = secs.min(cap.as_secs_f64());
        return Some(Duration::try_from_secs_f64(capped).map_or(cap, |d| d.min(cap)));
    }
    let when = parse_http_date(v)?;
    // In the past: retry now. Further ahead than `cap` (or than chrono can represent): `cap`.
    let ahead = when - now;
    Some(ahead.to_std().map_or(Duration::ZERO, |d| d.min(cap)))
}

/// An HTTP-date (RFC 9110 §5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the
/// obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
fn parse_http_date(v: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDateTime, TimeZone, Utc};
    if let Ok(d) = chrono::DateTime::parse_from_rfc2822(v) {
        return Some(d.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S GMT")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y"))
        .ok()?;
    Utc.from_local_datetime(&naive).single()
}

impl HttpClient {
    pub fn new(policy: RetryPolicy) -> Result<Self, FetchError> {
        let inner = reqwest::Client::builder()
            .user_agent(concat!("skycat/", env!("CARGO_PKG_VERSION")))
            .read_timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| FetchError::Config(format!("http client: {e}")))?;
        Ok(HttpClient { inner, policy })
    }

    /// The underlying reqwest client, for calls the helpers below do not cover.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Send a request with retries; returns the first 2xx response. `body` is re-sent on each
    /// attempt. Non-retryable statuses and exhausted retries give `FetchError::Http`.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: Headers<'_>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut attempt = 0u32;
        loop {
            let mut req = self.inner.request(method.clone(), url.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some((content_type, bytes)) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, *content_type).body(bytes.clone());
            }
            let last = attempt + 1 >= self.policy.max_attempts;
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    if is_retryable_status(status) && !last {
                        let wait = match retry_after(&resp, self.policy.max_retry_after) {
                            Some(d) => d,
                            None => self.policy.backoff(attempt),
                        };
                        tracing::debug!(%url, %status, ?wait, attempt, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    let text = resp.text().await.unwrap_or_default();
                    let body: String = text.chars().take(300).collect();
                    return Err(FetchError::Http { url: url.to_string(), status: status.as_u16(), body });
                }
                Err(e) => {
                    if !last && (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()) {
                        let wait = self.policy.backoff(attempt);
                        tracing::debug!(%url, error = %e, ?wait, attempt, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(FetchError::Transport { url: url.to_string(), message: with_causes(e) });
                }
            }
        }
    }

    /// GET and return the body as text (the whole body is read inside the retry loop's
    /// response; a body cut mid-way is reported as a transport error).
    pub async fn get_text(&self, url: &Url, headers: Headers<'_>) -> Result<String, FetchError> {
        let resp = self.send(Method::GET, url, headers, None).await?;
        resp.text().await.map_err(|e| FetchError::Transport { url: url.to_string(), message: e.to_string() })
    }

    /// GET and decode JSON. A body that is not the expected JSON is `FetchError::Malformed`
    /// naming the URL (not retried: the server answered, the answer is wrong).
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Url, headers: Headers<'_>) -> Result<T, FetchError> {
        let text = self.get_text(url, headers).await?;
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(url.to_string(), e))
    }

    /// POST a JSON body and decode the JSON answer.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        headers: Headers<'_>,
        body: &serde_json::Value,
    ) -> Result<T, FetchError> {
        let bytes = serde_json::to_vec(body).map_err(|e| FetchError::Config(e.to_string()))?;
        let resp = self.send(Method::POST, url, headers, Some(("application/json", bytes))).await?;
        let text =
            resp.text().await.map_err(|e| FetchError::Transport { url: url.to_string(), message: e.to_string() })?;
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(url.to_string(), e))
    }

    /// Stream a GET body to `path` (never held in memory). Returns the number of bytes.
    /// A transfer that breaks mid-body is retried from the start.
    pub async fn download_to_file(&self, url: &Url, path: &Path) -> Result<u64, FetchError> {
        let mut attempt = 0u32;
        loop {
            let resp = self.send(Method::GET, url, &[], None).await?;
            match stream_to(resp, path).await {
                Ok(n) => return Ok(n),
                Err(StreamErr::Io(e)) => return Err(FetchError::io(path, e)),
                Err(StreamErr::Net(e)) => {
                    if attempt + 1 >= self.policy.max_attempts {
                        return Err(FetchError::Transport { url: url.to_string(), message: e });
                    }
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// A reqwest error with its causes (`error sending request: client error (Connect): tcp connect
/// error: Connection refused`), without the URL, which `FetchError::Transport` already names.
fn with_causes(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

enum StreamErr {
    Io(std::io::Error),
    Net(String),
}

async fn stream_to(resp: reqwest::Response, path: &Path) -> Result<u64, StreamErr> {
    let mut file = tokio::fs::File::create(path).await.map_err(StreamErr::Io)?;
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| StreamErr::Net(e.to_string()))?;
        n += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(StreamErr::Io)?;
    }
    file.flush().await.map_err(StreamErr::Io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    const CAP: Duration = Duration::from_secs(60);

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 24, 12, 0, 0).single().expect("valid time")
    }

    fn parse(v: &str) -> Option<Duration> {
        parse_retry_after(v, now(), CAP)
    }

    #[test]
    fn delay_seconds_are_capped_before_becoming_a_duration() {
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("3600"), Some(CAP));
        assert_eq!(parse("18446744073709551615"), Some(CAP), "u64::MAX seconds");
        assert_eq!(parse("99999999999999999999999"), Some(CAP), "past u64: parsed as a float");
        assert_eq!(parse("1e20"), Some(CAP));
        assert_eq!(parse("1.7e308"), Some(CAP));
        assert_eq!(parse("1e400"), None, "overflows f64 to inf");
    }

    #[test]
    fn negative_nan_infinite_and_garbage_are_ignored() {
        for v in ["-1", "-0.5", "NaN", "nan", "inf", "-inf", "infinity", "garbage", "", "   ", "1 2", "0x10"] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }

    #[test]
    fn http_dates_wait_until_then_capped() {
        // 30 s ahead, in each of the three HTTP-date forms.
        assert_eq!(parse("Mon, 24 Nov 2025 12:00:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(parse("Monday, 24-Nov-25 12:00:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(parse("Mon Nov 24 12:00:30 2025"), Some(Duration::from_secs(30)));
        // Far future: the cap. Past: retry at once.
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT"), Some(CAP));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Mon, 24 Nov 2025 11:59:59 GMT"), Some(Duration::ZERO));
        // Not a date.
        assert_eq!(parse("Mon, 99 Nov 2025 12:00:30 GMT"), None);
    }

    #[test]
    fn the_cap_itself_can_be_anything() {
        assert_eq!(parse_retry_after("1e20", now(), Duration::MAX), Some(Duration::MAX));
        assert_eq!(parse_retry_after("5", now(), Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now(), Duration::MAX).map(|d| d > CAP),
            Some(true)
        );
    }
}
