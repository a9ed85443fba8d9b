//! Samsung SCP provider against a loopback fake of the v1 OpenAPI gateway (fixtures/scp, shapes
//! from /work/shared/api-formats/samsung-scp.md). The fake recomputes every request's HMAC
//! signature from what it received (method, its own URL, the X-Cmp-* headers) and answers a bad
//! one with the gateway's 412 `PLATFORM-GW-00003` body; it also refuses stale timestamps and a
//! missing client type or project id. The provider lists server types and then fails each zone
//! with the reason no price exists (the API has none), which the run reports without publishing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use skycat_catalog::home::SkycatHome;
use skycat_fetchers::provider::FetchContext;
use skycat_fetchers::providers::scp::{base64, hmac_sha256, list_server_types, Scp, ServerType};
use skycat_fetchers::run::{run_fetch, FetchOptions};
use skycat_fetchers::{FetchError, Provider, RetryPolicy};

const ACCESS_KEY: &str = "2sd2gg=2agbdSD26svcD";
const SECRET: &str = "test-secret-key";
const PROJECT: &str = "PROJECT-abcdefghij0123456789";
const WEST: &str = "KOREA-WEST-1-SCP-B001";
const EAST: &str = "KOREA-EAST-1-SCP-B001";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/scp/{name}", env!("CARGO_MANIFEST_DIR"))).expect(name)
}

#[derive(Default)]
struct Fake {
    hits: HashMap<String, usize>,
    violations: Vec<String>,
    signed_ok: usize,
}

type Shared = Arc<Mutex<Fake>>;

fn json(status: u16, body: String) -> Response {
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

async fn handle(st: Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let path = uri.path().to_string();
    // What the client signed: scheme + host + path (+ query), recomputed from this request.
    let url = format!("http://{}{}", h("host"), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let message = format!(
        "{method}{url}{}{}{}{}",
        h("x-cmp-timestamp"),
        h("x-cmp-accesskey"),
        h("x-cmp-projectid"),
        h("x-cmp-clienttype")
    );
    let expected = base64(&hmac_sha256(SECRET.as_bytes(), message.as_bytes()));
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ts_ok = h("x-cmp-timestamp").parse::<i64>().is_ok_and(|t| (now_ms - t).abs() < 15 * 60 * 1000);
    if h("x-cmp-clienttype") != "OpenApi" || h("x-cmp-projectid") != PROJECT || h("x-cmp-accesskey") != ACCESS_KEY {
        st.lock().unwrap().violations.push(format!("headers of {path}: {headers:?}"));
        return json(401, fixture("error-timestamp.json").replace("PLATFORM-GW-00006", "PLATFORM-COMMON-00004"));
    }
    if !ts_ok {
        return json(401, fixture("error-timestamp.json"));
    }
    if h("x-cmp-signature") != expected {
        return json(412, fixture("error-signature.json"));
    }
    let hit = {
        let mut s = st.lock().unwrap();
        s.signed_ok += 1;
        let n = s.hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let body = match path.as_str() {
        // The zone list is rate-limited once.
        p if p == format!("/project/v3/projects/{PROJECT}/zones") && hit == 1 => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "").into_response()
        }
        p if p == format!("/project/v3/projects/{PROJECT}/zones") => fixture("zones.json"),
        "/product/v2/zones/ZONE-6Yv1AV9t2kqR8sXx0dV7rB/product-groups" => fixture("product-groups-west.json"),
        "/product/v2/zones/ZONE-Jr4mC0s8TqW2vY6zK1nH5d/product-groups" => fixture("product-groups-east.json"),
        "/product/v2/product-groups/PRODUCTGROUP-xw2Zk7bL0qT3/products" => fixture("products-virtual-server.json"),
        // The GPU group's products fail once with the gateway's 500.
        "/product/v2/product-groups/PRODUCTGROUP-g9Hq4Rk2Tn8W/products" if hit == 1 => {
            return json(500, fixture("error-internal.json"))
        }
        "/product/v2/product-groups/PRODUCTGROUP-g9Hq4Rk2Tn8W/products" => fixture("products-gpu-server.json"),
        _ => {
            st.lock().unwrap().violations.push(format!("unexpected call {path}"));
            return json(404, fixture("error-internal.json").replace("PLATFORM-COMMON-00018", "PLATFORM-COMMON-00010"));
        }
    };
    json(200, body)
}

async fn start() -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let st: Shared = Arc::new(Mutex::new(Fake::default()));
    let s2 = st.clone();
    let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap| handle(s2.clone(), m, u, h));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (st, base)
}

fn cx(base: &str, secret: &str) -> FetchContext {
    FetchContext::for_tests(&[
        ("SKYCAT_SCP_ENDPOINT", base),
        ("SCP_ACCESS_KEY", ACCESS_KEY),
        ("SCP_SECRET_KEY", secret),
        ("SCP_PROJECT_ID", PROJECT),
    ])
}

/// (name, vCPUs, GiB, accelerator and count) of one server type.
type Summary = (String, f64, f64, Option<(String, f64)>);

fn summary(types: &[ServerType]) -> Vec<Summary> {
    types
        .iter()
        .map(|t| (t.name.clone(), t.vcpus, t.memory_gib, t.accelerator.as_ref().map(|(a, n)| (a.name.clone(), *n))))
        .collect()
}

#[tokio::test]
async fn signed_calls_list_server_types_per_zone_and_each_zone_fails_for_want_of_a_price() {
    let (st, base) = start().await;
    let cx = cx(&base, SECRET);
    assert_eq!(Scp.regions(&cx).await.unwrap(), vec![WEST, "KOREA-WEST-MAZ-SCP-B001", EAST]);

    let west = list_server_types(&cx, WEST).await.expect("west");
    let s = |n: &str, v: f64, m: f64, g: Option<(&str, f64)>| (n.to_string(), v, m, g.map(|(a, c)| (a.to_string(), c)));
    assert_eq!(
        summary(&west),
        vec![
            s("g1v128a8", 128.0, 1920.0, Some(("A100-80GB", 8.0))),
            s("g1v32v4", 32.0, 256.0, Some(("V100-32GB", 4.0))),
            s("g1v8v1", 8.0, 64.0, Some(("V100-32GB", 1.0))),
            s("h1v96m1152", 96.0, 1152.0, None),
            s("s1v16m64", 16.0, 64.0, None),
            s("s1v2m4", 2.0, 4.0, None),
        ]
    );
    assert_eq!(cx.skipped_for("scp").get("server type not AVAILABLE"), Some(&1));
    let east = list_server_types(&cx, EAST).await.expect("east");
    assert_eq!(east.len(), 3, "no GPU group in the east zone");

    for zone in [WEST, EAST] {
        let err = Scp.fetch_region(&cx, zone).await.unwrap_err();
        assert!(matches!(err, FetchError::Api { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("scp: zone {zone}:")) && msg.contains("publishes no hourly price"), "{msg}");
    }
    let err = list_server_types(&cx, "KOREA-NOWHERE-1").await.unwrap_err();
    assert!(err.to_string().contains("KOREA-NOWHERE-1 is not among the project's zones"), "{err}");

    let s = st.lock().unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.hits[&format!("/project/v3/projects/{PROJECT}/zones")], 2, "one 429, then once per run");
    assert_eq!(s.hits["/product/v2/product-groups/PRODUCTGROUP-g9Hq4Rk2Tn8W/products"], 3, "a 500 retried, then the second zone listing");
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_the_gateways_body() {
    let (st, base) = start().await;
    let cx = cx(&base, "not-the-secret");
    let err = Scp.regions(&cx).await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("scp: credentials:") && msg.contains("(412)") && msg.contains("PLATFORM-GW-00003"), "{msg}");
    assert_eq!(st.lock().unwrap().signed_ok, 0);

    let err = Scp.regions(&FetchContext::for_tests(&[("SKYCAT_SCP_ENDPOINT", &base)])).await.unwrap_err();
    assert!(err.to_string().contains("SCP_ACCESS_KEY"), "{err}");
}

#[tokio::test]
async fn credentials_come_from_skypilots_file() {
    let (_st, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".scp")).unwrap();
    // The access key itself contains `=`: lines split on the first " = ".
    std::fs::write(
        home.path().join(".scp/scp_credential"),
        format!("access_key = {ACCESS_KEY}\nsecret_key = {SECRET}\nproject_id = {PROJECT}\n"),
    )
    .unwrap();
    let cx = FetchContext::for_tests(&[("SKYCAT_SCP_ENDPOINT", &base), ("HOME", home.path().to_str().unwrap())]);
    assert_eq!(Scp.regions(&cx).await.unwrap().len(), 3);

    std::fs::write(home.path().join(".scp/scp_credential"), format!("access_key = {ACCESS_KEY}\n")).unwrap();
    let cx = FetchContext::for_tests(&[("SKYCAT_SCP_ENDPOINT", &base), ("HOME", home.path().to_str().unwrap())]);
    let err = Scp.regions(&cx).await.unwrap_err();
    assert!(err.to_string().contains("scp_credential: no `secret_key = …` line"), "{err}");
}

#[tokio::test]
async fn a_fetch_run_reaches_scp_and_publishes_nothing() {
    let (_st, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = FetchOptions::new(SkycatHome::new(dir.path()));
    opts.clouds = vec!["scp".into()];
    opts.regions = vec![WEST.into(), EAST.into()];
    for (k, v) in [("SKYCAT_SCP_ENDPOINT", base.as_str()), ("SCP_ACCESS_KEY", ACCESS_KEY), ("SCP_SECRET_KEY", SECRET), ("SCP_PROJECT_ID", PROJECT)] {
        opts.env_overrides.insert(k.into(), v.into());
    }
    opts.retry = RetryPolicy::fast_for_tests();
    let report = run_fetch(&opts, &|_| {}).await.unwrap();
    let c = &report.clouds[0];
    assert!(!c.published, "{c:?}");
    assert_eq!(c.regions_failed.len(), 2, "{c:?}");
    assert!(c.regions_failed.iter().all(|(_, e)| e.contains("publishes no hourly price")), "{c:?}");
}

#[tokio::test]
async fn skycat_check_scp_verifies_the_signed_zone_call() {
    use skycat_fetchers::check::{check_cloud, Verification};
    let (_st, base) = start().await;
    let c = check_cloud(&cx(&base, SECRET), "scp").await.unwrap();
    assert!(c.verification.is_verified(), "{c:?}");
    let c = check_cloud(&cx(&base, "not-the-secret"), "scp").await.unwrap();
    assert!(matches!(&c.verification, Verification::Rejected { error, .. } if error.contains("PLATFORM-GW-00003")), "{c:?}");
    let c = check_cloud(&FetchContext::for_tests(&[("SKYCAT_SCP_ENDPOINT", &base)]), "scp").await.unwrap();
    assert!(matches!(c.verification, Verification::Skipped { .. }) && !c.has_credentials(), "{c:?}");
}
