//! Prometheus metrics: request counts and latency per route, catalog rows and age per cloud,
//! refresh outcomes. Served as text by `GET /metrics`.
//!
//! The `prometheus` crate without default features (no protobuf) is the lightest of the two
//! usual choices: a registry, atomics and a text encoder.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds: /optimize answers in microseconds, MILPs take up to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    catalog_rows: GaugeVec,
    catalog_fetched: GaugeVec,
    catalog_age: GaugeVec,
    /// (cloud, fetched_at unix seconds) of the catalog in service, for the age gauge.
    fetched_at: std::sync::Mutex<Vec<(String, i64)>>,
    catalog_loaded: IntGauge,
    refreshes: IntCounterVec,
    refresh_last_success: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        // Construction can only fail on a duplicate or malformed name, which are constants here.
        let registry = Registry::new_custom(Some("skycat".into()), None).expect("metric prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("metric");
        let catalog_rows =
            GaugeVec::new(Opts::new("catalog_rows", "Offers in the catalog in service, per cloud"), &["cloud"])
                .expect("metric");
        let catalog_fetched = GaugeVec::new(
            Opts::new("catalog_fetched_timestamp_seconds", "Unix time the prices in service were fetched, per cloud"),
            &["cloud"],
        )
        .expect("metric");
        let catalog_age = GaugeVec::new(
            Opts::new("catalog_age_seconds", "Seconds since the prices in service were fetched, per cloud"),
            &["cloud"],
        )
        .expect("metric");
        let catalog_loaded = IntGauge::new(
            "catalog_loaded_timestamp_seconds",
            "Unix time the catalog in service was loaded (swapped in)",
        )
        .expect("metric");
        let refreshes = IntCounterVec::new(
            Opts::new("catalog_refreshes_total", "Catalog refreshes by result (ok, error)"),
            &["result"],
        )
        .expect("metric");
        let refresh_last_success = IntGauge::new(
            "catalog_refresh_last_success_timestamp_seconds",
            "Unix time of the last successful refresh (0 if none yet)",
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(catalog_rows.clone()),
            Box::new(catalog_fetched.clone()),
            Box::new(catalog_age.clone()),
            Box::new(catalog_loaded.clone()),
            Box::new(refreshes.clone()),
            Box::new(refresh_last_success.clone()),
        ] {
            registry.register(c).expect("metric registration");
        }
        // Show both results from the start, so a dashboard's rate() works before the first one.
        refreshes.with_label_values(&["ok"]);
        refreshes.with_label_values(&["error"]);
        Metrics {
            registry,
            requests,
            latency,
            catalog_rows,
            catalog_fetched,
            catalog_age,
            fetched_at: std::sync::Mutex::new(Vec::new()),
            catalog_loaded,
            refreshes,
            refresh_last_success,
        }
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut buf = itoa_buf();
        let status = fmt_status(status, &mut buf);
        self.requests.with_label_values(&[route, method, status]).inc();
        self.latency.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
    }

    /// Publish the per-cloud figures of a newly swapped-in catalog.
    pub fn set_catalog<'a>(
        &self,
        loaded_at: DateTime<Utc>,
        clouds: impl Iterator<Item = (&'a str, usize, Option<DateTime<Utc>>)>,
    ) {
        self.catalog_rows.reset();
        self.catalog_fetched.reset();
        let mut fetched = Vec::new();
        for (cloud, rows, at) in clouds {
            self.catalog_rows.with_label_values(&[cloud]).set(rows as f64);
            if let Some(t) = at {
                self.catalog_fetched.with_label_values(&[cloud]).set(t.timestamp() as f64);
                fetched.push((cloud.to_owned(), t.timestamp()));
            }
        }
        match self.fetched_at.lock() {
            Ok(mut g) => *g = fetched,
            Err(p) => *p.into_inner() = fetched,
        }
        self.catalog_loaded.set(loaded_at.timestamp());
    }

    pub fn refresh_done(&self, ok: bool, at: DateTime<Utc>) {
        self.refreshes.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
        if ok {
            self.refresh_last_success.set(at.timestamp());
        }
    }

    /// Register more metrics (the catalog store's poller adds its own); they appear in
    /// [`render`](Self::render).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let now = Utc::now().timestamp();
        self.catalog_age.reset();
        if let Ok(g) = self.fetched_at.lock() {
            for (cloud, t) in g.iter() {
                self.catalog_age.with_label_values(&[cloud]).set((now - t).max(0) as f64);
            }
        }
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn itoa_buf() -> [u8; 3] {
    [b'0'; 3]
}

/// HTTP statuses are three digits; format without allocating.
fn fmt_status(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_catalog_gauges() {
        let m = Metrics::new();
        m.observe_request("/optimize", "POST", 200, Duration::from_micros(300));
        m.observe_request("/optimize", "POST", 422, Duration::from_micros(100));
        m.set_catalog(Utc::now(), [("aws", 10usize, Some(Utc::now()))].into_iter());
        m.refresh_done(false, Utc::now());
        let text = m.render();
        assert!(text.contains(r#"skycat_http_requests_total{method="POST",route="/optimize",status="422"} 1"#), "{text}");
        assert!(text.contains("skycat_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"skycat_catalog_rows{cloud="aws"} 10"#), "{text}");
        assert!(text.contains(r#"skycat_catalog_age_seconds{cloud="aws"}"#), "{text}");
        assert!(text.contains(r#"skycat_catalog_refreshes_total{result="error"} 1"#), "{text}");
    }
}
