//! AWS without credentials: spot prices from the public spot price feed and interruption buckets
//! from the Spot Instance Advisor document, both served by a replay server in their wire format
//! (fixtures/aws/README.md names the sources of the shapes and figures).

mod support;

use skycat_fetchers::providers::aws::spot_feeds::{self, InterruptionRange};
use skycat_fetchers::providers::aws::Aws;
use skycat_catalog::SpotInterruption;
use skycat_fetchers::{FetchContext, FetchError, Provider};
use support::{ReplayServer, Reply};

const IDX: &str = "/offers/v1.0/aws/AmazonEC2/current/region_index.json";
const FEED: &str = "/spot.json";
const ADVISOR: &str = "/spot-advisor-data.json";
fn csv_path(region: &str) -> String {
    format!("/offers/v1.0/aws/AmazonEC2/current/{region}/index.csv")
}

fn builder(feed: Vec<Reply>) -> support::Builder {
    ReplayServer::builder()
        .get(IDX, Reply::json(include_str!("fixtures/aws/region_index.json")))
        .get(&csv_path("us-east-1"), Reply::text("text/csv", include_str!("fixtures/aws/us-east-1.csv")))
        .get(&csv_path("eu-west-1"), Reply::text("text/csv", include_str!("fixtures/aws/eu-west-1.csv")))
        .get(&csv_path("us-west-2"), Reply::text("text/csv", include_str!("fixtures/aws/us-west-2.csv")))
        .route("GET", FEED, feed)
        .get(ADVISOR, Reply::json(advisor_for_fixture_types()))
}

/// The advisor fixture with its us-east-1 g5.2xlarge (15-20%) and p5.48xlarge (<5%) entries
/// renamed to g5.xlarge and p4d.24xlarge, the types the bulk and spot feed fixtures price: a
/// synthetic join to check that buckets reach offers, not AWS's figures for those types.
fn advisor_for_fixture_types() -> String {
    include_str!("fixtures/aws/spot-advisor-data.json").replace("g5.2xlarge", "g5.xlarge").replace("p5.48xlarge", "p4d.24xlarge")
}

fn env(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SKYCAT_AWS_OFFER_URL", base.to_string()),
        ("SKYCAT_AWS_SPOT_FEED_URL", format!("{base}{FEED}")),
        ("SKYCAT_AWS_SPOT_ADVISOR_URL", format!("{base}{ADVISOR}")),
    ]
}

fn context(env: &[(&'static str, String)]) -> FetchContext {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    FetchContext::for_tests(&pairs)
}

#[tokio::test]
async fn keyless_spot_prices_come_from_the_public_feed() {
    // Served as JavaScript, as the real feed is; one 503 first.
    let feed = Reply::text("application/x-javascript", include_str!("fixtures/aws/spot.json"));
    let srv = builder(vec![Reply::status(503), feed]).start().await;
    let cx = context(&env(srv.base()));

    let us = Aws.fetch_region(&cx, "us-east-1").await.expect("us-east-1");
    let got: Vec<(&str, Option<f64>, Option<f64>)> =
        us.iter().map(|o| (o.instance_type.as_ref(), o.price, o.spot_price)).collect();
    assert_eq!(
        got,
        vec![
            ("g5.xlarge", Some(1.006), Some(0.3948)),
            ("g6.xlarge", Some(0.8048), Some(0.3885)),
            ("m5.large", Some(0.096), None),
            ("m7g.large", Some(0.0816), None),
            ("p4d.24xlarge", Some(32.7726), Some(6.8179)),
        ]
    );
    let g5 = &us[0];
    assert!(g5.zone.is_none());
    assert!(g5.source.ends_with(&format!("+ {}{FEED} (regional Linux spot price)", srv.base())), "{}", g5.source);
    assert!(!us[2].source.contains(FEED));

    // The legacy region name `eu-ireland` is eu-west-1; the feed is downloaded once per run.
    let eu = Aws.fetch_region(&cx, "eu-west-1").await.expect("eu-west-1");
    let g5eu = eu.iter().find(|o| &*o.instance_type == "g5.xlarge").unwrap();
    assert_eq!(g5eu.spot_price, Some(0.5122));
    assert_eq!(srv.hits("GET", FEED), 2);
    // A region the feed does not list keeps its on-demand rows, with a note.
    let w2 = Aws.fetch_region(&cx, "us-west-2").await.expect("us-west-2");
    assert!(w2.iter().all(|o| o.spot_price.is_none() && o.price.is_some()));
    assert!(cx.notes_for("aws").iter().any(|n| n.contains("us-west-2: the public spot feed lists none")));
    assert_eq!(cx.skipped_for("aws").get("aws spot feed: entry without a price (N/A, 0)"), Some(&1));
}

#[tokio::test]
async fn spot_offers_carry_the_advisor_interruption_bucket() {
    let feed = Reply::text("application/x-javascript", include_str!("fixtures/aws/spot.json"));
    let srv = builder(vec![feed]).start().await;
    let cx = context(&env(srv.base()));
    let us = Aws.fetch_region(&cx, "us-east-1").await.expect("us-east-1");
    let got: Vec<(&str, Option<SpotInterruption>)> =
        us.iter().map(|o| (o.instance_type.as_ref(), o.spot_interruption)).collect();
    assert_eq!(
        got,
        vec![
            ("g5.xlarge", Some(SpotInterruption::From15To20)),
            // Spot-priced, but the advisor does not list it.
            ("g6.xlarge", None),
            // On-demand only: no bucket even if the advisor listed one.
            ("m5.large", None),
            ("m7g.large", None),
            ("p4d.24xlarge", Some(SpotInterruption::Under5)),
        ]
    );
    // The advisor has no eu-west-1 entries: spot prices without a bucket.
    let eu = Aws.fetch_region(&cx, "eu-west-1").await.expect("eu-west-1");
    assert!(eu.iter().any(|o| o.spot_price.is_some()) && eu.iter().all(|o| o.spot_interruption.is_none()));
    assert_eq!(srv.hits("GET", ADVISOR), 1, "one download per run");

    // The bucket survives Parquet and the query index.
    let bytes = skycat_catalog::parquet::write_offers_bytes(&us).expect("encode");
    let back = skycat_catalog::parquet::read_offers_bytes(&bytes).expect("decode");
    let buckets = |v: &[skycat_catalog::Offer]| v.iter().map(|o| o.spot_interruption).collect::<Vec<_>>();
    assert_eq!(buckets(&back), buckets(&us));
    let stamp = skycat_catalog::index::SourceStamp::of(&bytes);
    let (_, indexed) = skycat_catalog::index::decode(&skycat_catalog::index::encode(&back, stamp)).expect("index");
    assert_eq!(indexed, back);
}

#[tokio::test]
async fn a_failing_advisor_fails_the_region_and_off_leaves_buckets_unknown() {
    let srv = ReplayServer::builder()
        .get(IDX, Reply::json(include_str!("fixtures/aws/region_index.json")))
        .get(&csv_path("us-east-1"), Reply::text("text/csv", include_str!("fixtures/aws/us-east-1.csv")))
        .get(FEED, Reply::json(include_str!("fixtures/aws/spot.json")))
        .route("GET", ADVISOR, vec![Reply::malformed("application/json")])
        .start()
        .await;
    let cx = context(&env(srv.base()));
    let err = Aws.fetch_region(&cx, "us-east-1").await.unwrap_err();
    assert!(err.to_string().contains("spot-advisor-data.json"), "{err}");

    let mut e = env(srv.base());
    e.retain(|(k, _)| *k != "SKYCAT_AWS_SPOT_ADVISOR_URL");
    e.push(("SKYCAT_AWS_SPOT_ADVISOR_URL", "off".into()));
    let cx = context(&e);
    let us = Aws.fetch_region(&cx, "us-east-1").await.expect("advisor off");
    assert!(us.iter().any(|o| o.spot_price.is_some()) && us.iter().all(|o| o.spot_interruption.is_none()));
    assert!(cx.notes_for("aws").iter().any(|n| n.contains("Spot Instance Advisor data is off")));
}

#[tokio::test]
async fn a_malformed_or_failing_feed_fails_the_region_and_off_disables_it() {
    let srv = builder(vec![Reply::malformed("application/x-javascript")]).start().await;
    let cx = context(&env(srv.base()));
    let err = Aws.fetch_region(&cx, "us-east-1").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("spot.json"), "{err}");

    let srv = builder(vec![Reply::status(500)]).start().await;
    let cx = context(&env(srv.base()));
    let err = Aws.fetch_region(&cx, "us-east-1").await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");

    // `off`, and a mirrored offer base without a feed URL: no request, a note, no spot prices.
    for feed_var in [Some("off"), None] {
        let srv = builder(vec![Reply::status(500)]).start().await;
        let mut e = vec![("SKYCAT_AWS_OFFER_URL", srv.base().to_string())];
        if let Some(v) = feed_var {
            e.push(("SKYCAT_AWS_SPOT_FEED_URL", v.to_string()));
        }
        let cx = context(&e);
        let us = Aws.fetch_region(&cx, "us-east-1").await.expect("no feed");
        assert!(us.iter().all(|o| o.spot_price.is_none()));
        assert_eq!(srv.hits("GET", FEED), 0);
        assert!(cx.notes_for("aws").iter().any(|n| n.contains("spot feed is off")));
    }
}

#[tokio::test]
async fn advisor_buckets_are_parsed_per_region() {
    let srv = ReplayServer::builder()
        .route(
            "GET",
            ADVISOR,
            vec![Reply::too_many(1), Reply::json(include_str!("fixtures/aws/spot-advisor-data.json"))],
        )
        .start()
        .await;
    let cx = context(&env(srv.base()));
    let data = spot_feeds::spot_advisor(&cx).await.expect("advisor").expect("configured");
    let again = spot_feeds::spot_advisor(&cx).await.unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&data, &again));
    assert_eq!(srv.hits("GET", ADVISOR), 2, "one 429, then one download per run");

    let buckets = spot_feeds::interruption_buckets(&data, "us-east-1");
    let got: Vec<(&str, f64, &str)> =
        buckets.iter().map(|b| (b.instance_type.as_str(), b.savings_pct, b.range.label.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("g5.2xlarge", 62.0, "15-20%"),
            ("g6.2xlarge", 46.0, "10-15%"),
            ("g6e.2xlarge", 54.0, "5-10%"),
            ("g6e.4xlarge", 62.0, ">20%"),
            ("g6e.8xlarge", 62.0, "15-20%"),
            ("p5.48xlarge", 57.0, "<5%"),
        ]
    );
    assert_eq!(buckets[3].range, InterruptionRange { index: 4, label: ">20%".into(), dots: 4, max: 100.0 });
    assert_eq!((data.instance_types["p5.48xlarge"].cores, data.instance_types["p5.48xlarge"].ram_gb), (192.0, 2048.0));
    assert!(spot_feeds::interruption_buckets(&data, "eu-west-3").is_empty());

    let bad = include_str!("fixtures/aws/spot-advisor-data.json").replace("\"r\": 0", "\"r\": 7");
    let err = spot_feeds::parse_spot_advisor(&bad, "spot-advisor-data.json").unwrap_err();
    assert!(err.to_string().contains("spot_advisor.us-east-1.Linux.p5.48xlarge.r = 7"), "{err}");
}
