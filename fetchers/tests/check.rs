//! `skycat check`'s authenticated read-only calls against one loopback axum server that checks
//! the credentials the way the providers do (Bearer tokens, Google's `x-goog-api-key`, Azure's
//! client-credentials exchange): the right credentials verify, wrong ones are "rejected", and a
//! closed port is "not verified" with a one-line reason. Every endpoint is on 127.0.0.1.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use skycat_fetchers::check::{check_cloud, check_clouds, Found, Verification};
use skycat_fetchers::FetchContext;
use skycat_testkit::free_port as closed_port;

const GOOD: &str = "good-key";
const LAMBDA_TYPES: &str = include_str!("fixtures/lambda/instance-types.json");
const LAMBDA_401: &str = include_str!("fixtures/lambda/error-invalid-api-key.json");

fn json(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [("content-type", "application/json")], body.into()).into_response()
}

/// One handler for every provider's verification call.
async fn handle(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bearer_ok = header("authorization") == format!("Bearer {GOOD}");
    let unauthorized = |body: &str| json(StatusCode::UNAUTHORIZED, body);
    match (method.as_str(), uri.path()) {
        ("GET", "/api/v1/instance-types") if bearer_ok => json(StatusCode::OK, LAMBDA_TYPES),
        ("GET", "/api/v1/instance-types") => unauthorized(LAMBDA_401),
        ("POST", "/graphql") => {
            let q: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if q["query"] != "query { myself { id } }" {
                return json(StatusCode::BAD_REQUEST, r#"{"errors":[{"message":"unexpected query"}]}"#);
            }
            if bearer_ok {
                json(StatusCode::OK, r#"{"data":{"myself":{"id":"user-1"}}}"#)
            } else {
                json(StatusCode::OK, r#"{"errors":[{"message":"Unauthorized"}],"data":{"myself":null}}"#)
            }
        }
        ("GET", "/api/v0/users/current") if bearer_ok => json(StatusCode::OK, r#"{"id":4242,"username":"me"}"#),
        ("GET", "/api/v0/users/current") => unauthorized(r#"{"detail":"Invalid API key"}"#),
        ("GET", "/subscriptions/sub-1") => {
            if uri.query() != Some("api-version=2022-12-01") {
                return json(StatusCode::BAD_REQUEST, r#"{"error":{"code":"MissingApiVersionParameter"}}"#);
            }
            if bearer_ok {
                json(StatusCode::OK, r#"{"id":"/subscriptions/sub-1","subscriptionId":"sub-1","state":"Enabled"}"#)
            } else {
                unauthorized(r#"{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}"#)
            }
        }
        ("POST", "/tenant-1/oauth2/v2.0/token") => {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
            let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
            if has("grant_type", "client_credentials") && has("client_id", "app-1") && has("client_secret", "secret-1") {
                json(StatusCode::OK, format!(r#"{{"token_type":"Bearer","access_token":"{GOOD}"}}"#))
            } else {
                unauthorized(r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#)
            }
        }
        ("GET", "/compute/v1/projects/proj-1") if bearer_ok => json(StatusCode::OK, r#"{"kind":"compute#project","name":"proj-1","id":"1"}"#),
        ("GET", "/compute/v1/projects/proj-1") => {
            unauthorized(r#"{"error":{"code":401,"message":"Request had invalid authentication credentials."}}"#)
        }
        ("GET", "/v1/services/6F81-5844-456A/skus") if header("x-goog-api-key") == GOOD => {
            json(StatusCode::OK, r#"{"skus":[],"nextPageToken":"abc"}"#)
        }
        ("GET", "/v1/services/6F81-5844-456A/skus") => json(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
        ),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"no such route"}"#),
    }
}

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(handle);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

fn assert_one_line(v: &Verification) {
    if let Some(e) = v.error() {
        assert!(!e.contains('\n') && !e.is_empty(), "{e:?}");
    }
}

#[tokio::test]
async fn lambda_right_key_verifies_wrong_key_is_rejected_closed_port_fails() {
    let base = start().await;
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", &base), ("LAMBDA_API_KEY", GOOD)]);
    let c = check_cloud(&cx, "lambda").await.expect("known cloud");
    assert_eq!(c.verification, Verification::Verified { call: "GET /api/v1/instance-types".into() });
    assert_eq!(c.credentials, vec![Found::Env { vars: vec!["LAMBDA_API_KEY".into()] }]);
    assert_eq!(c.credentials_text(), "env LAMBDA_API_KEY");

    // SKYCAT_LAMBDA_API_KEY wins over LAMBDA_API_KEY, as in the fetcher.
    let cx = FetchContext::for_tests(&[
        ("SKYCAT_LAMBDA_ENDPOINT", &base),
        ("SKYCAT_LAMBDA_API_KEY", "wrong"),
        ("LAMBDA_API_KEY", GOOD),
    ]);
    let c = check_cloud(&cx, "lambda").await.expect("known cloud");
    match &c.verification {
        Verification::Rejected { error, .. } => assert!(error.starts_with("HTTP 401") && error.contains("invalid-api-key"), "{error}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(c.verification.to_string().starts_with("credentials rejected"), "{}", c.verification);
    assert_one_line(&c.verification);

    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let cx = FetchContext::for_tests(&[("SKYCAT_LAMBDA_ENDPOINT", &dead), ("LAMBDA_API_KEY", GOOD)]);
    let c = check_cloud(&cx, "lambda").await.expect("known cloud");
    assert!(matches!(c.verification, Verification::Failed { .. }), "{:?}", c.verification);
    assert_one_line(&c.verification);
    // The cause is named, not just "error sending request".
    assert!(c.verification.error().is_some_and(|e| e.contains("onnection refused")), "{:?}", c.verification);
}

#[tokio::test]
async fn runpod_and_vast_keys() {
    let base = start().await;
    for (key, verified) in [(GOOD, true), ("nope", false)] {
        let cx = FetchContext::for_tests(&[
            ("SKYCAT_RUNPOD_ENDPOINT", &base),
            ("RUNPOD_API_KEY", key),
            ("SKYCAT_VAST_ENDPOINT", &base),
            ("SKYCAT_VAST_API_KEY", key),
        ]);
        let all = check_clouds(&cx, &["runpod".into(), "vast".into()]).await.expect("known clouds");
        assert_eq!(all.iter().map(|c| c.cloud.as_str()).collect::<Vec<_>>(), ["runpod", "vast"]);
        for c in &all {
            assert_eq!(c.verification.is_verified(), verified, "{c:?}");
            if !verified {
                assert!(matches!(c.verification, Verification::Rejected { .. }), "{c:?}");
                assert_one_line(&c.verification);
            }
        }
        assert_eq!(all[0].verification.call(), Some("POST /graphql"));
        assert_eq!(all[1].verification.call(), Some("GET /api/v0/users/current"));
        assert_eq!(all[1].credentials_text(), "env SKYCAT_VAST_API_KEY");
    }
}

#[tokio::test]
async fn azure_token_and_service_principal() {
    let base = start().await;
    let ok = FetchContext::for_tests(&[
        ("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &base),
        ("AZURE_SUBSCRIPTION_ID", "sub-1"),
        ("AZURE_ACCESS_TOKEN", GOOD),
    ]);
    let c = check_cloud(&ok, "azure").await.expect("azure");
    assert!(c.verification.is_verified(), "{c:?}");
    assert_eq!(c.credentials_text(), "env AZURE_SUBSCRIPTION_ID + AZURE_ACCESS_TOKEN");

    let bad = FetchContext::for_tests(&[
        ("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &base),
        ("AZURE_SUBSCRIPTION_ID", "sub-1"),
        ("AZURE_ACCESS_TOKEN", "expired"),
    ]);
    let c = check_cloud(&bad, "azure").await.expect("azure");
    assert!(matches!(c.verification, Verification::Rejected { .. }), "{c:?}");

    let sp = |secret: &str| {
        FetchContext::for_tests(&[
            ("SKYCAT_AZURE_MANAGEMENT_ENDPOINT", &base),
            ("SKYCAT_AZURE_LOGIN_ENDPOINT", &base),
            ("AZURE_SUBSCRIPTION_ID", "sub-1"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            ("AZURE_CLIENT_SECRET", secret),
        ])
    };
    let c = check_cloud(&sp("secret-1"), "azure").await.expect("azure");
    assert!(c.verification.is_verified(), "{c:?}");
    let c = check_cloud(&sp("wrong"), "azure").await.expect("azure");
    match &c.verification {
        Verification::Rejected { call, error } => {
            assert!(call.contains("oauth2/v2.0/token") && error.contains("AADSTS7000215"), "{call}: {error}");
            assert!(!error.contains("wrong"), "the secret never shows: {error}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // A subscription alone is found but not checked.
    let half = FetchContext::for_tests(&[("AZURE_SUBSCRIPTION_ID", "sub-1")]);
    let c = check_cloud(&half, "azure").await.expect("azure");
    assert!(matches!(&c.verification, Verification::Skipped { reason } if reason.starts_with("incomplete")), "{c:?}");
}

#[tokio::test]
async fn gcp_oauth_verifies_an_api_key_reads_prices_only_a_key_file_is_not_verified() {
    let base = start().await;
    let oauth = FetchContext::for_tests(&[
        ("SKYCAT_GCP_COMPUTE_ENDPOINT", &base),
        ("GOOGLE_OAUTH_ACCESS_TOKEN", GOOD),
        ("GOOGLE_CLOUD_PROJECT", "proj-1"),
    ]);
    let c = check_cloud(&oauth, "gcp").await.expect("gcp");
    assert_eq!(c.verification, Verification::Verified { call: "GET /compute/v1/projects/proj-1".into() });
    assert_eq!(c.prices_only, None);

    let expired = FetchContext::for_tests(&[
        ("SKYCAT_GCP_COMPUTE_ENDPOINT", &base),
        ("GOOGLE_OAUTH_ACCESS_TOKEN", "expired"),
        ("GOOGLE_CLOUD_PROJECT", "proj-1"),
    ]);
    assert!(matches!(check_cloud(&expired, "gcp").await.expect("gcp").verification, Verification::Rejected { .. }));

    for (key, verified) in [(GOOD, true), ("bad-key", false)] {
        let cx = FetchContext::for_tests(&[("SKYCAT_GCP_ENDPOINT", &base), ("GOOGLE_API_KEY", key)]);
        let c = check_cloud(&cx, "gcp").await.expect("gcp");
        assert_eq!(c.verification.is_verified(), verified, "{c:?}");
        assert_eq!(c.prices_only.as_deref(), Some("API key reads prices; launching needs OAuth"));
        if !verified {
            // Google answers a bad key with 400 API key not valid: a rejection, without the key.
            assert!(matches!(c.verification, Verification::Rejected { .. }), "{c:?}");
            assert!(!c.verification.to_string().contains("bad-key"), "{}", c.verification);
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let sa = dir.path().join("sa.json");
    std::fs::write(&sa, "{}").expect("write");
    let cx = FetchContext::for_tests(&[("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().expect("utf-8"))]);
    let c = check_cloud(&cx, "gcp").await.expect("gcp");
    assert_eq!(c.credentials, vec![Found::File { path: sa.clone(), detail: Some("GOOGLE_APPLICATION_CREDENTIALS".into()) }]);
    assert!(matches!(&c.verification, Verification::Skipped { reason } if reason.starts_with("found, not verified")), "{c:?}");
}

#[tokio::test]
async fn unknown_cloud_is_an_error_naming_the_known_ones() {
    let cx = FetchContext::for_tests(&[]);
    let e = check_clouds(&cx, &["aws".into(), "digitalocean".into()]).await.expect_err("unknown");
    let msg = e.to_string();
    assert!(msg.contains("unknown cloud `digitalocean`") && msg.contains("lambda"), "{msg}");
}
