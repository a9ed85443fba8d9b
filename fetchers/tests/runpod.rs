//! RunPod provider against a GraphQL replay server (fixtures/runpod/). Every query is a POST to
//! `/graphql`, so the replay dispatches on the request body (the query and its
//! `lowestPriceInput` variables) — which the path-based helper in tests/support cannot do — with
//! the same scripted failures: a 503 once (CA-MTL-1), a 429 once (community CA), a truncated
//! answer (EU-RO-1) and a GraphQL error answered with HTTP 200 (EUR-IS-1).


use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use skycat_catalog::home::SkycatHome;
use skycat_catalog::manifest::Manifest;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::runpod::RunPod;
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};

type Script = Vec<(u16, &'static str)>;

type Scripts = Arc<Mutex<HashMap<String, (Script, usize)>>>;
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct GraphqlReplay {
    base: String,
    scripts: Scripts,
    seen: Seen,
    _task: tokio::task::JoinHandle<()>,
}

/// The dispatch key of a request: `datacenters`, `secure:<dc>`, `community:<country>`,
/// `cpuflavors` or `cpu:<dc>` (CPU pod specifics).
fn key_of(body: &serde_json::Value) -> String {
    let q = body["query"].as_str().unwrap_or("");
    if q.contains("dataCenters") {
        return "datacenters".into();
    }
    if q.contains("specifics") {
        return format!("cpu:{}", body["variables"]["dataCenterId"].as_str().unwrap_or("?"));
    }
    if q.contains("cpuFlavors") {
        return "cpuflavors".into();
    }
    let input = &body["variables"]["lowestPriceInput"];
    match (input["secureCloud"].as_bool(), input["dataCenterId"].as_str(), input["countryCode"].as_str()) {
        (Some(true), Some(dc), _) => format!("secure:{dc}"),
        (Some(false), _, Some(cc)) => format!("community:{cc}"),
        _ => "unknown".into(),
    }
}

impl GraphqlReplay {
    async fn start(routes: Vec<(&str, Script)>) -> Self {
        let scripts: HashMap<String, (Script, usize)> =
            routes.into_iter().map(|(k, s)| (k.to_string(), (s, 0))).collect();
        let scripts = Arc::new(Mutex::new(scripts));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (sc, sn) = (scripts.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/graphql",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (sc, sn) = (sc.clone(), sn.clone());
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let key = key_of(&v);
                    let auth = headers.get("authorization").and_then(|h| h.to_str().ok()).map(str::to_string);
                    sn.lock().unwrap().push((key.clone(), auth));
                    let mut m = sc.lock().unwrap();
                    let Some((script, served)) = m.get_mut(&key) else {
                        return (StatusCode::NOT_FOUND, format!("no replay for {key}")).into_response();
                    };
                    let (status, text) = script[(*served).min(script.len() - 1)];
                    *served += 1;
                    let mut resp = (StatusCode::from_u16(status).unwrap(), text.to_string()).into_response();
                    let ct = if status == 200 { "application/json" } else { "text/plain" };
                    resp.headers_mut().insert("content-type", ct.parse().unwrap());
                    if status == 429 {
                        resp.headers_mut().insert("retry-after", "1".parse().unwrap());
                    }
                    resp
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GraphqlReplay { base, scripts, seen, _task: task }
    }

    fn hits(&self, key: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|(k, _)| k == key).count()
    }
}

impl Drop for GraphqlReplay {
    fn drop(&mut self) {
        self._task.abort();
        let _ = &self.scripts;
    }
}

const DCS: &str = include_str!("fixtures/runpod/datacenters.json");
const US_CA_2: &str = include_str!("fixtures/runpod/gputypes-secure-US-CA-2.json");
const US_TX_3: &str = include_str!("fixtures/runpod/gputypes-secure-US-TX-3.json");
const CA_MTL_1: &str = include_str!("fixtures/runpod/gputypes-secure-CA-MTL-1.json");
const COMMUNITY_US: &str = include_str!("fixtures/runpod/gputypes-community-US.json");
const COMMUNITY_CA: &str = include_str!("fixtures/runpod/gputypes-community-CA.json");
const EU_RO_1_BAD: &str = include_str!("fixtures/runpod/gputypes-secure-EU-RO-1-truncated.json");
const GQL_ERROR: &str = include_str!("fixtures/runpod/graphql-error.json");
const CPU_FLAVORS: &str = include_str!("fixtures/runpod/cpu-flavors.json");
const CPU_US_CA_2: &str = include_str!("fixtures/runpod/cpu-specifics-US-CA-2.json");
const CPU_NONE: &str = include_str!("fixtures/runpod/cpu-specifics-out-of-stock.json");

async fn replay(ro: Script) -> GraphqlReplay {
    GraphqlReplay::start(vec![
        ("datacenters", vec![(200, DCS)]),
        ("secure:US-CA-2", vec![(200, US_CA_2)]),
        ("secure:US-TX-3", vec![(200, US_TX_3)]),
        ("community:US", vec![(200, COMMUNITY_US)]),
        ("secure:CA-MTL-1", vec![(503, "upstream unavailable"), (200, CA_MTL_1)]),
        ("community:CA", vec![(429, "rate limited"), (200, COMMUNITY_CA)]),
        ("secure:EU-RO-1", ro),
        ("community:RO", vec![(200, COMMUNITY_CA)]),
        ("secure:EUR-IS-1", vec![(200, GQL_ERROR)]),
        ("community:IS", vec![(200, COMMUNITY_CA)]),
        ("cpuflavors", vec![(200, CPU_FLAVORS)]),
        ("cpu:US-CA-2", vec![(200, CPU_US_CA_2)]),
        ("cpu:US-TX-3", vec![(429, "rate limited"), (200, CPU_NONE)]),
        ("cpu:CA-MTL-1", vec![(200, CPU_NONE)]),
        ("cpu:EU-RO-1", vec![(200, CPU_NONE)]),
    ])
    .await
}

#[tokio::test]
async fn secure_and_community_offers_per_country() {
    let srv = replay(vec![(200, EU_RO_1_BAD)]).await;
    let cx = FetchContext::for_tests(&[("SKYCAT_RUNPOD_ENDPOINT", &srv.base), ("SKYCAT_RUNPOD_API_KEY", "rp_key")]);
    assert_eq!(RunPod.regions(&cx).await.unwrap(), vec!["CA", "IS", "RO", "US"]);

    let us = RunPod.fetch_region(&cx, "US").await.expect("US");
    type Row = (String, Option<String>, Option<String>, f64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);
    let got: Vec<Row> = us
        .iter()
        .filter(|o| o.accelerator_name.is_some())
        .map(|o| {
            (
                o.instance_type.to_string(),
                o.zone.as_deref().map(str::to_string),
                o.accelerator_name.as_deref().map(str::to_string),
                o.accelerator_count,
                o.price,
                o.spot_price,
                o.vcpus,
                o.memory_gib,
            )
        })
        .collect();
    let mut want: Vec<Row> = Vec::new();
    let mut add = |gpu: &str, zone: Option<&str>, market: &str, price: f64, spot: Option<f64>, vcpu: f64, mem: f64| {
        for n in [1.0, 2.0, 4.0, 8.0] {
            want.push((
                format!("{}x_{gpu}_{market}", n as u64),
                zone.map(str::to_string),
                Some(gpu.to_string()),
                n,
                Some(price * n),
                spot.map(|s| s * n),
                Some(vcpu * n),
                Some(mem * n),
            ));
        }
    };
    // Prices as in SkyPilot's RunPod catalog (reference-prices/runpod.csv) for Secure Cloud.
    add("H100-SXM", Some("US-CA-2"), "SECURE", 2.99, Some(2.69), 16.0, 125.0);
    add("L4", Some("US-CA-2"), "SECURE", 0.44, None, 4.0, 24.0);
    add("RTX4090", Some("US-CA-2"), "SECURE", 0.69, Some(0.34), 6.0, 41.0);
    add("MI300X", Some("US-CA-2"), "SECURE", 2.49, None, 24.0, 283.0);
    add("H200-SXM", Some("US-TX-3"), "SECURE", 3.99, Some(3.59), 20.0, 188.0);
    add("H100-SXM", None, "COMMUNITY", 1.99, Some(1.05), 16.0, 125.0);
    add("RTX4090", None, "COMMUNITY", 0.34, Some(0.2), 6.0, 41.0);
    assert_eq!(got, want);
    assert!(us.iter().all(|o| &*o.region == "US" && &*o.cloud == "runpod"));
    let mi = us.iter().find(|o| &*o.instance_type == "1x_MI300X_SECURE").unwrap();
    assert_eq!((mi.accelerator_vendor.as_deref(), mi.accelerator_memory_gib), (Some("amd"), Some(192.0)));

    // CPU pods: US-CA-2 has every cpu3 size and cpu5 up to 16 vCPUs; US-TX-3 (after a 429) none.
    type CpuRow<'a> = (&'a str, Option<&'a str>, Option<f64>, Option<f64>, Option<f64>, Option<f64>);
    let cpu: Vec<CpuRow> = us
        .iter()
        .filter(|o| o.accelerator_name.is_none())
        .map(|o| (o.instance_type.as_ref(), o.zone.as_deref(), o.vcpus, o.memory_gib, o.price, o.spot_price))
        .collect();
    assert_eq!(cpu.len(), 3 * 5 + 3 * 4, "{cpu:?}");
    assert!(cpu.iter().all(|c| c.1 == Some("US-CA-2") && c.5.is_none()));
    // SkyPilot's RunPod catalog: cpu3c-2-4 0.06, cpu3m-32-256 1.76, cpu5g-16-64 0.736.
    assert!(cpu.contains(&("cpu3c-2-4", Some("US-CA-2"), Some(2.0), Some(4.0), Some(0.06), None)));
    assert!(cpu.contains(&("cpu3m-32-256", Some("US-CA-2"), Some(32.0), Some(256.0), Some(1.76), None)));
    assert!(cpu.contains(&("cpu5g-16-64", Some("US-CA-2"), Some(16.0), Some(64.0), Some(0.736), None)));
    assert!(!cpu.iter().any(|c| c.0 == "cpu5c-32-64"));
    assert!(us.iter().filter(|o| o.accelerator_name.is_none()).all(|o| o.accelerator_count == 0.0 && o.price_breakdown.is_none()));
    assert_eq!(srv.hits("cpuflavors"), 1);
    assert_eq!(srv.hits("cpu:US-TX-3"), 2);

    let ca = RunPod.fetch_region(&cx, "CA").await.expect("CA after a 503 and a 429");
    let names: Vec<(&str, Option<f64>)> = ca.iter().map(|o| (o.instance_type.as_ref(), o.price)).collect();
    assert_eq!(
        names,
        vec![
            ("1x_A100-80GB_SECURE", Some(1.64)),
            ("2x_A100-80GB_SECURE", Some(1.64 * 2.0)),
            ("4x_A100-80GB_SECURE", Some(1.64 * 4.0)),
            ("8x_A100-80GB_SECURE", Some(1.64 * 8.0)),
        ]
    );
    assert_eq!(srv.hits("secure:CA-MTL-1"), 2);
    assert_eq!(srv.hits("community:CA"), 2);

    let ro = RunPod.fetch_region(&cx, "RO").await.unwrap_err();
    assert!(matches!(ro, FetchError::Malformed { .. }), "{ro:?}");
    assert!(ro.to_string().contains("EU-RO-1"), "{ro}");
    let is = RunPod.fetch_region(&cx, "IS").await.unwrap_err();
    assert!(matches!(is, FetchError::Api { .. }), "{is:?}");
    assert!(is.to_string().contains("Something went wrong"), "{is}");
    // The unlisted datacenter is never queried; every request carried the key.
    assert_eq!(srv.hits("secure:EU-FR-1"), 0);
    assert!(srv.seen.lock().unwrap().iter().all(|(_, a)| a.as_deref() == Some("Bearer rp_key")));
}

#[tokio::test]
async fn run_marks_the_malformed_country_stale() {
    let srv = replay(vec![(200, CA_MTL_1.replace("\"CA\"", "\"RO\"").leak()), (200, EU_RO_1_BAD)]).await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["runpod".into()];
    opts.regions = vec!["US".into(), "RO".into()];
    opts.env_overrides.insert("SKYCAT_RUNPOD_ENDPOINT".into(), srv.base.clone());
    opts.retry = RetryPolicy::fast_for_tests();
    opts.force = true;
    let first = run_fetch(&opts, &|_| {}).await.unwrap();
    assert_eq!(first.clouds[0].regions_ok, vec!["RO", "US"], "{:?}", first.clouds[0]);
    let second = run_fetch(&opts, &|_| {}).await.unwrap();
    let r = &second.clouds[0];
    assert_eq!(r.regions_ok, vec!["US"]);
    assert_eq!(r.stale_regions, vec!["RO"]);
    let m = Manifest::load(&home.catalogs_dir().join("manifest.json")).unwrap();
    assert_eq!(m.clouds["runpod"].stale_regions, vec!["RO"]);
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("runpod.parquet")).unwrap();
    let ro: Vec<&str> = rows.iter().filter(|o| &*o.region == "RO").map(|o| o.instance_type.as_ref()).collect();
    assert_eq!(ro, vec!["1x_A100-80GB_SECURE", "2x_A100-80GB_SECURE", "4x_A100-80GB_SECURE", "8x_A100-80GB_SECURE"]);
    assert!(r.notes.iter().any(|n| n.contains("no RunPod API key")), "{:?}", r.notes);
}
