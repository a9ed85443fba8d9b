//! The EC2 fault proxy (tests/common/ec2_faults.rs): in front of moto, through the crate's
//! `Ec2Backend`, RunInstances in a failed zone or region come back as EC2's real errors with
//! their codes, everything else reaches moto; and the proxy forwards requests and answers
//! unchanged.
//!
//! moto must be installed: `scripts/ci-setup-moto.sh` (CI runs it).

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::ec2_faults::{error_status, sigv4_region, start_moto, Ec2FaultProxy, Fault, Market, SeenRun};
use common::moto::use_fake_aws;
use skycat_controller::aws_ec2::{Ec2Backend, Ec2Error, LaunchSpec};

fn code(err: &Ec2Error) -> Option<&str> {
    match err {
        Ec2Error::Api { code, .. } => code.as_deref(),
        Ec2Error::Invalid { .. } => None,
    }
}

fn runs_in<'a>(seen: &'a [SeenRun], zone: &str) -> Vec<&'a SeenRun> {
    seen.iter().filter(|r| r.zone.as_deref() == Some(zone)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_instances_faults_through_the_ec2_backend() {
    let moto = start_moto();
    let proxy = Ec2FaultProxy::start(&moto.url).await;
    assert!(proxy.url.starts_with("http://127.0.0.1:"), "{}", proxy.url);
    // The only test in this binary that sets the process env.
    use_fake_aws(&proxy.url);
    let east1 = Ec2Backend::from_env("us-east-1").await;
    let east2 = Ec2Backend::from_env("us-east-2").await;

    let spec = |cluster: &str, zone: Option<&str>| LaunchSpec {
        cluster: cluster.into(),
        image_id: "ami-12c6146b".into(), // one of the AMIs moto ships
        instance_type: "p3.2xlarge".into(),
        count: 1,
        availability_zone: zone.map(str::to_string),
        ..Default::default()
    };

    proxy.fail_zone("us-east-1a", "InsufficientInstanceCapacity");
    proxy.fail_region("us-east-2", "VcpuLimitExceeded");

    // A failed zone: InsufficientInstanceCapacity (HTTP 500, which the SDK retries first).
    let err = east1.run_instances(&spec("ice", Some("us-east-1a"))).await.expect_err("ICE in us-east-1a");
    assert_eq!(code(&err), Some("InsufficientInstanceCapacity"), "{err}");
    assert!(matches!(&err, Ec2Error::Api { op: "RunInstances", region, .. } if region == "us-east-1"), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("We currently do not have sufficient p3.2xlarge capacity in the Availability Zone you requested (us-east-1a)")
            && msg.contains("choosing us-east-1b, us-east-1c"),
        "{msg}"
    );
    // On spot, EC2's spot wording.
    let err = east1
        .run_instances(&LaunchSpec { spot: true, ..spec("ice-spot", Some("us-east-1a")) })
        .await
        .expect_err("spot ICE in us-east-1a");
    assert_eq!(code(&err), Some("InsufficientInstanceCapacity"), "{err}");
    assert!(err.to_string().contains("There is no Spot capacity available that matches your request."), "{err}");

    // A failed region: VcpuLimitExceeded (HTTP 400, not retried), with or without a zone.
    for zone in [Some("us-east-2b"), None] {
        let err = east2.run_instances(&spec("vcpu", zone)).await.expect_err("vCPU limit in us-east-2");
        assert_eq!(code(&err), Some("VcpuLimitExceeded"), "{err}");
        assert!(err.to_string().contains("us-east-2") && err.to_string().contains("vCPU limit"), "{err}");
    }

    // Another zone of the same region passes through to moto: the instance exists, and
    // DescribeInstances through the proxy sees it.
    let ok = east1.run_instances(&spec("ok", Some("us-east-1b"))).await.expect("RunInstances in us-east-1b");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].zone.as_deref(), Some("us-east-1b"));
    assert_eq!(ok[0].instance_type, "p3.2xlarge");
    let described = east1.describe_ids(&[ok[0].id.clone()]).await.expect("DescribeInstances through the proxy");
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].id, ok[0].id);
    assert_eq!(east1.describe_cluster("ok").await.expect("describe by tag").len(), 1);
    // Nothing was created for the failed calls.
    assert!(east1.describe_cluster("ice").await.expect("describe").is_empty());
    assert!(east1.describe_cluster("ice-spot").await.expect("describe").is_empty());
    assert!(east2.describe_cluster("vcpu").await.expect("describe us-east-2").is_empty());
    // Spot outside the failed zone passes too.
    let spot = east1
        .run_instances(&LaunchSpec { spot: true, ..spec("ok-spot", Some("us-east-1c")) })
        .await
        .expect("spot in us-east-1c");
    assert!(spot[0].spot, "{spot:?}");
    let actions = proxy.actions_seen();
    assert!(actions.iter().any(|a| a == "DescribeInstances"), "{actions:?}");

    // The most specific fault wins: a zone fault inside a failed region.
    proxy.fail_zone("us-east-2a", "Unsupported");
    let err = east2.run_instances(&spec("unsup", Some("us-east-2a"))).await.expect_err("Unsupported in us-east-2a");
    assert_eq!(code(&err), Some("Unsupported"), "{err}");
    assert!(err.to_string().contains("is not supported in your requested Availability Zone (us-east-2a)"), "{err}");
    // An instance-type fault.
    proxy.inject(Fault {
        region: Some("us-east-1".into()),
        instance_type: Some("p4d.24xlarge".into()),
        code: "InstanceLimitExceeded".into(),
        ..Fault::default()
    });
    let err = east1
        .run_instances(&LaunchSpec { instance_type: "p4d.24xlarge".into(), count: 2, ..spec("lim", Some("us-east-1c")) })
        .await
        .expect_err("InstanceLimitExceeded");
    assert_eq!(code(&err), Some("InstanceLimitExceeded"), "{err}");
    assert!(err.to_string().contains("You have requested more instances (2)"), "{err}");

    // Throttling once: the SDK classifies RequestLimitExceeded as throttling, backs off, retries,
    // and the retry reaches moto.
    proxy.inject(Fault {
        zone: Some("us-east-1c".into()),
        code: "RequestLimitExceeded".into(),
        times: Some(1),
        ..Fault::default()
    });
    let after_throttle = east1.run_instances(&spec("throttled", Some("us-east-1c"))).await.expect("retried past one throttle");
    assert_eq!(after_throttle.len(), 1);

    // clear(): the failed zone and region work again.
    proxy.clear();
    east1.run_instances(&spec("healed", Some("us-east-1a"))).await.expect("us-east-1a after clear");
    let healed2 = east2.run_instances(&spec("healed2", Some("us-east-2b"))).await.expect("us-east-2 after clear");
    assert_eq!(east2.describe_ids(&[healed2[0].id.clone()]).await.expect("describe us-east-2").len(), 1);

    // What the proxy recorded.
    let seen = proxy.run_instances_seen();
    for r in &seen {
        eprintln!("{r:?}");
    }
    let ice = runs_in(&seen, "us-east-1a");
    // Every attempt in us-east-1a before clear() failed with ICE (the SDK retried the 500s), then
    // the one after clear() passed.
    let (last, failed) = ice.split_last().expect("runs in us-east-1a");
    assert!(failed.len() >= 2, "one on demand and one spot call, each with its retries: {failed:?}");
    assert!(failed.iter().all(|r| r.injected.as_deref() == Some("InsufficientInstanceCapacity") && r.status == 500));
    assert!(failed.iter().all(|r| r.region.as_deref() == Some("us-east-1") && r.instance_type.as_deref() == Some("p3.2xlarge")));
    assert!(failed.iter().any(|r| r.market == Market::Spot) && failed.iter().any(|r| r.market == Market::OnDemand));
    assert_eq!((last.injected.as_deref(), last.status), (None, 200), "{last:?}");
    eprintln!("RunInstances attempts per ICE call: {}", failed.iter().filter(|r| r.market == Market::OnDemand).count());

    let vcpu: Vec<&SeenRun> = seen.iter().filter(|r| r.injected.as_deref() == Some("VcpuLimitExceeded")).collect();
    assert_eq!(vcpu.len(), 2, "400s are not retried: {vcpu:?}");
    assert!(vcpu.iter().all(|r| r.region.as_deref() == Some("us-east-2") && r.status == 400));
    assert_eq!(vcpu[0].zone.as_deref(), Some("us-east-2b"));
    assert_eq!(vcpu[1].zone, None);

    let passed_b = runs_in(&seen, "us-east-1b");
    assert_eq!(passed_b.len(), 1);
    assert_eq!(
        *passed_b[0],
        SeenRun {
            region: Some("us-east-1".into()),
            zone: Some("us-east-1b".into()),
            instance_type: Some("p3.2xlarge".into()),
            market: Market::OnDemand,
            count: Some(1),
            injected: None,
            status: 200,
        }
    );
    let in_c = runs_in(&seen, "us-east-1c");
    let codes: Vec<(Option<&str>, u16, &Market)> = in_c.iter().map(|r| (r.injected.as_deref(), r.status, &r.market)).collect();
    assert_eq!(
        codes,
        vec![
            (None, 200, &Market::Spot),
            (Some("InstanceLimitExceeded"), 400, &Market::OnDemand),
            (Some("RequestLimitExceeded"), 503, &Market::OnDemand),
            (None, 200, &Market::OnDemand),
        ]
    );
    assert_eq!(in_c[1].count, Some(2));
    assert!(seen.iter().any(|r| r.injected.as_deref() == Some("Unsupported") && r.zone.as_deref() == Some("us-east-2a")));
    let last2 = seen.last().expect("runs");
    assert_eq!((last2.region.as_deref(), last2.zone.as_deref(), last2.injected.as_deref()), (Some("us-east-2"), Some("us-east-2b"), None));
}

/// The raw error document and status, as EC2 writes them.
#[tokio::test]
async fn error_document_is_ec2s() {
    let upstream = Echo::start().await;
    let proxy = Ec2FaultProxy::start(&upstream.url).await;
    proxy.fail_zone("eu-west-1a", "InsufficientInstanceCapacity");
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/", proxy.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("Action=RunInstances&Version=2016-11-15&InstanceType=p3.2xlarge&Placement.AvailabilityZone=eu-west-1a&MinCount=1&MaxCount=1")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.headers()["content-type"], "text/xml;charset=UTF-8");
    let request_id = resp.headers()["x-amzn-requestid"].to_str().expect("ascii").to_string();
    let body = resp.text().await.expect("body");
    let want = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>\
         <Message>We currently do not have sufficient p3.2xlarge capacity in the Availability Zone you requested (eu-west-1a). \
         Our system will be working on provisioning additional capacity. You can currently get p3.2xlarge capacity by not \
         specifying an Availability Zone in your request or choosing eu-west-1b, eu-west-1c.</Message></Error></Errors>\
         <RequestID>{request_id}</RequestID></Response>"
    );
    assert_eq!(body, want);
    let id: Vec<usize> = request_id.split('-').map(str::len).collect();
    assert_eq!(id, vec![8, 4, 4, 4, 12], "{request_id}");
    assert!(upstream.seen().is_empty(), "an injected error never reaches the upstream");
    assert_eq!(error_status("VcpuLimitExceeded"), StatusCode::BAD_REQUEST);
    assert_eq!(error_status("RequestLimitExceeded"), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        sigv4_region("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-2/ec2/aws4_request, SignedHeaders=host, Signature=0"),
        Some("us-east-2".to_string())
    );
    assert_eq!(sigv4_region("Bearer x"), None);
}

/// Everything else goes to the upstream and comes back as it was: method, path and query,
/// headers, body; status, headers, body.
#[tokio::test]
async fn forwards_requests_and_answers_unchanged() {
    let upstream = Echo::start().await;
    let proxy = Ec2FaultProxy::start(&upstream.url).await;
    proxy.fail_region("us-west-2", "VcpuLimitExceeded"); // not a RunInstances below: no effect
    let body = "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Askycat-cluster&Filter.1.Value.1=a+b";
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-west-2/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/some/path?x=1&y=%2F", proxy.url))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .header("authorization", auth)
        .header("x-amz-date", "20260101T000000Z")
        .header("user-agent", "aws-sdk-rust/test")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(resp.headers()["x-upstream"], "echo");
    assert_eq!(resp.headers()["content-type"], "text/xml;charset=UTF-8");
    assert_eq!(resp.text().await.expect("body"), format!("echo:{body}"));

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let (method, uri, headers, got) = &seen[0];
    assert_eq!(method, "POST");
    assert_eq!(uri, "/some/path?x=1&y=%2F");
    assert_eq!(got.as_ref(), body.as_bytes());
    assert_eq!(headers["authorization"], auth);
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded; charset=utf-8");
    assert_eq!(headers["x-amz-date"], "20260101T000000Z");
    assert_eq!(headers["user-agent"], "aws-sdk-rust/test");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    // The Host the client signed is kept.
    assert_eq!(headers["host"], proxy.url.trim_start_matches("http://"));
    assert_eq!(proxy.actions_seen(), vec!["DescribeInstances".to_string()]);
    assert!(proxy.run_instances_seen().is_empty());

    // Stopped on drop.
    let url = proxy.url.clone();
    drop(proxy);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "proxy still listening after drop");
}

type Seen = (String, String, HeaderMap, Bytes);

/// An upstream on a loopback port that records each request and answers 418 with `echo:BODY`.
struct Echo {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Echo {
    async fn start() -> Echo {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
                let uri = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                record.lock().expect("lock").push((parts.method.to_string(), uri, parts.headers, body.clone()));
                (
                    StatusCode::IM_A_TEAPOT,
                    [("x-upstream", "echo"), ("content-type", "text/xml;charset=UTF-8")],
                    format!("echo:{}", String::from_utf8_lossy(&body)),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Echo { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}
