//! IBM Cloud VPC provider against a loopback fake of IAM, the regional VPC API and the Global
//! Catalog (fixtures/ibm, shapes from /work/shared/api-formats/ibm-vpc.md). The fake checks
//! the token exchange's form body, then the Bearer, `version` and `generation=2` on every VPC
//! call, and that the catalog (keyless) never sees the token. VPC routes sit under
//! `/<region>/`, so the `{region}` endpoint pattern is exercised; the catalog sits under
//! `/catalog/`, so its absolute `next` links must be rewritten onto the prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use skycat_catalog::home::SkycatHome;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::ibm::{Ibm, VPC_API_VERSION};
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};

const GOOD_KEY: &str = "good-api-key_0123";
/// A key IAM accepts whose token the VPC API then refuses (an expired token).
const EXPIRED_KEY: &str = "key-with-expired-token";
const TOKEN: &str = "eyJraWQiOiIyMDI1MDkwMS0wMDowMDowMCIsImFsZyI6IlJTMjU2In0.e30.sig";
const GEN2: &str = "a736a57f-0584-474f-8411-55dc7d9dc811";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/ibm/{name}", env!("CARGO_MANIFEST_DIR"))).expect(name)
}

#[derive(Default)]
struct Fake {
    /// Requests per path (with the query), for scripted failures and call counts.
    hits: HashMap<String, usize>,
    /// Problems the fake saw; the tests assert there are none.
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn json(status: u16, body: String) -> Response {
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

async fn handle(st: Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let q = query_map(&uri);
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let hit = {
        let mut s = st.lock().unwrap();
        let key = format!("{method} {path}?{}", uri.query().unwrap_or(""));
        let n = s.hits.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let violation = |msg: String| st.lock().unwrap().violations.push(msg);

    // IAM: the form body must be the API-key grant, exactly.
    if path == "/identity/token" {
        if method != Method::POST || header("content-type") != "application/x-www-form-urlencoded" {
            violation(format!("token call: {method} content-type {:?}", header("content-type")));
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        if form.get("grant_type").map(String::as_str) != Some("urn:ibm:params:oauth:grant-type:apikey") || form.len() != 2 {
            violation(format!("token form {form:?}"));
        }
        return match form.get("apikey").map(String::as_str) {
            Some(GOOD_KEY) => json(200, fixture("iam-token.json")),
            Some(EXPIRED_KEY) => json(200, fixture("iam-token.json").replace(TOKEN, "expired-token")),
            _ => json(400, fixture("iam-error-bad-key.json")),
        };
    }

    // Global Catalog: keyless; absolute links point at the real host (the client rewrites them).
    if let Some(rest) = path.strip_prefix("/catalog/api/v1") {
        if !header("authorization").is_empty() {
            violation(format!("catalog call {path} carried a token"));
        }
        let body = match rest {
            "" => {
                if q.get("q").map(String::as_str) != Some("is.instance") || q.get("include").map(String::as_str) != Some("*") {
                    violation(format!("catalog search query {q:?}"));
                }
                match q.get("_offset").map(String::as_str) {
                    Some("0") => fixture("catalog-search-page1.json"),
                    // The second page fails once with a 503 before answering.
                    Some("100") if hit == 1 => return json(503, "{\"message\": \"Service Unavailable\"}".into()),
                    Some("100") => fixture("catalog-search-page2.json"),
                    other => return json(400, format!("{{\"message\": \"bad _offset {other:?}\"}}")),
                }
            }
            r if r == format!("/{GEN2}/pricing/deployment") => match q.get("offset").map(String::as_str) {
                Some("0") => fixture("pricing-gen2-page1.json"),
                Some("1") => fixture("pricing-gen2-page2.json"),
                other => return json(400, format!("{{\"message\": \"bad offset {other:?}\"}}")),
            },
            "/b52c751f-ced8-4314-b80c-303876642a55/pricing/deployment" => fixture("pricing-gen3.json"),
            "/b2cfd5f2-7227-4f96-a540-1d12e3b60bdf/pricing/deployment" => fixture("pricing-gen4.json"),
            "/99548819-fcbc-486c-8eeb-0355a56b035e/pricing/deployment" => fixture("pricing-h100.json"),
            "/0c3e2b8a-5d4f-4a9e-8f61-2d7b9c1e4a30/pricing/deployment" => fixture("pricing-l4.json"),
            _ => return json(404, format!("{{\"message\": \"no catalog entry {path}\"}}")),
        };
        return json(200, body);
    }

    // VPC: /<region>/v1/…, Bearer + version + generation on every call.
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (region, rest) = (parts.next().unwrap_or(""), format!("/{}", parts.next().unwrap_or("")));
    let version_ok = q.get("version").is_some_and(|v| v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_str() <= "2026-12-31");
    if !version_ok || q.get("generation").map(String::as_str) != Some("2") {
        violation(format!("VPC call {path} without version/generation: {q:?}"));
        return json(400, "{\"errors\": [{\"code\": \"missing_version\", \"message\": \"version is required\"}]}".into());
    }
    if header("authorization") != format!("Bearer {TOKEN}") {
        return json(401, fixture("vpc-error-unauthorized.json"));
    }
    let body = match (region, rest.as_str()) {
        ("us-south", "/v1/regions") => fixture("vpc-regions.json"),
        (r, z) if z == format!("/v1/regions/{r}/zones") => match r {
            "us-south" => fixture("vpc-zones-us-south.json"),
            "eu-de" => fixture("vpc-zones-eu-de.json"),
            _ => return json(404, "{\"errors\": [{\"code\": \"not_found\", \"message\": \"Region not found.\"}]}".into()),
        },
        // us-south's profile list is rate-limited once.
        ("us-south", "/v1/instance/profiles") if hit == 1 => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "{\"errors\": [{\"code\": \"rate_limited\"}]}")
                .into_response()
        }
        ("us-south", "/v1/instance/profiles") => fixture("vpc-profiles-us-south.json"),
        ("eu-de", "/v1/instance/profiles") => fixture("vpc-profiles-eu-de.json"),
        _ => return json(404, format!("{{\"errors\": [{{\"code\": \"not_found\", \"message\": \"{path}\"}}]}}")),
    };
    json(200, body)
}

async fn start() -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let st: Shared = Arc::new(Mutex::new(Fake::default()));
    let s2 = st.clone();
    let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| handle(s2.clone(), m, u, h, b));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (st, base)
}

fn env(base: &str) -> Vec<(String, String)> {
    vec![
        ("SKYCAT_IBM_IAM_ENDPOINT".into(), base.to_string()),
        ("SKYCAT_IBM_ENDPOINT".into(), format!("{base}/{{region}}/")),
        ("SKYCAT_IBM_CATALOG_ENDPOINT".into(), format!("{base}/catalog")),
    ]
}

fn cx_with(base: &str, extra: &[(&str, &str)]) -> FetchContext {
    let mut e = env(base);
    e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    FetchContext::for_tests(&pairs)
}

/// (type, zone, price, accelerator and count) of one offer.
type Row = (String, String, f64, Option<(String, f64)>);

fn rows(offers: &[skycat_catalog::Offer]) -> Vec<Row> {
    offers
        .iter()
        .map(|o| {
            (
                o.instance_type.to_string(),
                o.zone.as_deref().unwrap_or_default().to_string(),
                o.price.unwrap(),
                o.accelerator_name.as_deref().map(|a| (a.to_string(), o.accelerator_count)),
            )
        })
        .collect()
}

fn r(t: &str, z: &str, p: f64, a: Option<(&str, f64)>) -> Row {
    (t.into(), z.into(), p, a.map(|(n, c)| (n.into(), c)))
}

#[tokio::test]
async fn profiles_per_zone_with_catalog_prices_across_regions_and_pages() {
    let (st, base) = start().await;
    let cx = cx_with(&base, &[("IBM_API_KEY", GOOD_KEY)]);

    assert_eq!(Ibm.regions(&cx).await.unwrap(), vec!["au-syd", "eu-de", "us-south"]);

    let us = Ibm.fetch_region(&cx, "us-south").await.expect("us-south");
    let composite = 0.111 * 8.0 + 0.09 * 32.0;
    let mut want = Vec::new();
    for z in ["us-south-1", "us-south-2", "us-south-3"] {
        want.push(r("bx2-8x32", z, composite, None));
    }
    for z in ["us-south-1", "us-south-2", "us-south-3"] {
        want.push(r("bx3d-128x640", z, 7.253, None));
    }
    for z in ["us-south-1", "us-south-2", "us-south-3"] {
        want.push(r("bx4-4x16", z, 0.2039796, None));
    }
    assert_eq!(rows(&us), want);
    let bx2 = &us[0];
    assert_eq!((bx2.vcpus, bx2.memory_gib, bx2.arch.as_deref()), (Some(8.0), Some(32.0), Some("x86_64")));
    assert_eq!(&*bx2.source, format!("{base}/catalog/api/v1/{GEN2}/pricing/deployment"));
    assert!(bx2.price_breakdown.as_deref().unwrap().starts_with("composite: 0.111 x 8 vCPU + 0.09 x 32 GiB"));
    assert_eq!(us[3].price_breakdown, None, "flat prices need no breakdown");

    let eu = Ibm.fetch_region(&cx, "eu-de").await.expect("eu-de");
    let composite = 0.128 * 8.0 + 0.104 * 32.0;
    assert_eq!(
        rows(&eu),
        vec![
            r("bx2-8x32", "eu-de-1", composite, None),
            r("bx2-8x32", "eu-de-2", composite, None),
            r("gx3d-160x1792x8h100", "eu-de-1", 99.60, Some(("H100", 8.0))),
            r("gx3d-160x1792x8h100", "eu-de-2", 99.60, Some(("H100", 8.0))),
        ],
        "eu-de-3 is unavailable"
    );
    let h100 = &eu[2];
    assert_eq!((h100.vcpus, h100.memory_gib, h100.accelerator_memory_gib), (Some(160.0), Some(1792.0), Some(80.0)));
    assert_eq!(h100.accelerator_vendor.as_deref(), Some("nvidia"));

    let skipped = cx.skipped_for("ibm");
    let want_skips: Vec<(&str, u64)> = vec![
        ("GPU model not understood", 0),
        ("composite price with instance storage but no storage meter or rate", 1),
        ("composite price without a GPU rate", 1),
        ("plan has no USD price in the region", 3),
        ("profile architecture other than amd64/arm64 (s390x)", 1),
        ("profile not in the Global Catalog", 1),
        ("profile vCPU or memory not fixed", 1),
    ];
    for (reason, n) in want_skips {
        assert_eq!(skipped.get(reason).copied().unwrap_or(0), n, "{reason}: {skipped:?}");
    }

    let s = st.lock().unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let count = |prefix: &str| s.hits.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| n).sum::<usize>();
    assert_eq!(count("POST /identity/token"), 1, "one token per run");
    assert_eq!(count("GET /us-south/v1/instance/profiles"), 2, "the 429 was retried");
    assert_eq!(count("GET /catalog/api/v1?"), 3, "two search pages, the second after a 503");
    assert_eq!(count(&format!("GET /catalog/api/v1/{GEN2}/pricing/deployment")), 2, "two pricing pages, once per run");
    assert!(s.hits.keys().any(|k| k.contains(&format!("version={VPC_API_VERSION}"))));
}

#[tokio::test]
async fn bad_key_expired_token_and_missing_key_are_auth_errors_naming_ibm() {
    let (_st, base) = start().await;
    let cx = cx_with(&base, &[("IBM_API_KEY", "not-a-key")]);
    let err = Ibm.fetch_region(&cx, "us-south").await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("ibm: credentials:") && msg.contains("BXNIM0415E"), "{msg}");

    let cx = cx_with(&base, &[("IBM_API_KEY", EXPIRED_KEY)]);
    let err = Ibm.regions(&cx).await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the IAM token") && err.to_string().contains("not_authorized"), "{err}");

    let cx = cx_with(&base, &[]);
    let err = Ibm.fetch_region(&cx, "us-south").await.unwrap_err();
    assert!(err.to_string().contains("IBM_API_KEY"), "{err}");
}

#[tokio::test]
async fn the_key_comes_from_skypilots_credentials_file() {
    let (st, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ibm")).unwrap();
    std::fs::write(
        home.path().join(".ibm/credentials.yaml"),
        format!("iam_api_key: {GOOD_KEY}\nresource_group_id: 0123456789abcdef\n"),
    )
    .unwrap();
    let cx = cx_with(&base, &[("HOME", home.path().to_str().unwrap())]);
    assert_eq!(Ibm.regions(&cx).await.unwrap().len(), 3);
    assert!(st.lock().unwrap().violations.is_empty());

    std::fs::write(home.path().join(".ibm/credentials.yaml"), "resource_group_id: x\n").unwrap();
    let cx = cx_with(&base, &[("HOME", home.path().to_str().unwrap())]);
    let err = Ibm.regions(&cx).await.unwrap_err();
    assert!(err.to_string().contains("credentials.yaml: no iam_api_key"), "{err}");
}

#[tokio::test]
async fn a_fetch_run_publishes_ibm_through_the_registry() {
    let (_st, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path());
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = vec!["ibm".into()];
    opts.regions = vec!["us-south".into(), "eu-de".into()];
    for (k, v) in env(&base) {
        opts.env_overrides.insert(k, v);
    }
    opts.env_overrides.insert("IBM_API_KEY".into(), GOOD_KEY.into());
    opts.retry = RetryPolicy::fast_for_tests();
    let report = run_fetch(&opts, &|_| {}).await.unwrap();
    let c = &report.clouds[0];
    assert!(c.published && c.regions_failed.is_empty(), "{c:?}");
    let rows = skycat_catalog::parquet::read_offers(&home.catalogs_dir().join("ibm.parquet")).unwrap();
    assert_eq!(rows.len(), 13);
    assert!(rows.iter().all(|o| &*o.cloud == "ibm" && o.zone.is_some() && o.price.is_some_and(|p| p > 0.0)));
}

#[tokio::test]
async fn skycat_check_ibm_verifies_with_the_fetchers_first_call() {
    use skycat_fetchers::check::{check_cloud, Found, Verification};
    let (_st, base) = start().await;
    let c = check_cloud(&cx_with(&base, &[("IBM_API_KEY", GOOD_KEY)]), "ibm").await.unwrap();
    assert!(c.verification.is_verified(), "{c:?}");
    assert_eq!(c.credentials, vec![Found::Env { vars: vec!["IBM_API_KEY".into()] }]);
    let c = check_cloud(&cx_with(&base, &[("IBM_API_KEY", "not-a-key")]), "ibm").await.unwrap();
    assert!(matches!(&c.verification, Verification::Rejected { error, .. } if error.contains("BXNIM0415E")), "{c:?}");
    let c = check_cloud(&cx_with(&base, &[]), "ibm").await.unwrap();
    assert!(matches!(c.verification, Verification::Skipped { .. }) && !c.has_credentials(), "{c:?}");
}
