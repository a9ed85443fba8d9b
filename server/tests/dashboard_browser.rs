//! The dashboard in a real headless chromium (scripts/ci-setup-chromium.sh installs it), against
//! a real server with the real embedded catalog on a loopback port. Every page is checked for
//! console errors and critical axe-core violations at desktop and phone width, and screenshotted
//! to `$CARGO_TARGET_DIR/dashboard-screenshots/`.

#![cfg(feature = "fetch")]

mod browser;
mod common;

use std::path::Path;

use browser::{Browser, TOKEN};
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use fantoccini::key::Key;
use fantoccini::Locator;
use skycat_catalog::Offer;

/// `$4.0966`: the dashboard's price format.
fn usd(x: f64) -> String {
    format!("${x:.4}")
}

/// The catalog's on-demand price of p4d.24xlarge in aws us-east-1 (8 × A100).
fn p4d_us_east_1(offers: &[Offer]) -> f64 {
    offers
        .iter()
        .filter(|o| &*o.cloud == "aws" && &*o.instance_type == "p4d.24xlarge" && &*o.region == "us-east-1")
        .filter_map(|o| o.price)
        .fold(f64::INFINITY, f64::min)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_browser_gets_the_login_page_and_no_data() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let b = Browser::start(&server.base).await;

    for page in ["/", "/ui/status", "/ui/plan", "/ui/cheapest?accelerator=A100", "/ui/history"] {
        b.goto(page).await;
        assert!(b.here().await.starts_with("/ui/login"), "{page} did not lead to the login page");
        assert_eq!(b.count("table").await, 0, "{page}: the login page shows data");
    }
    b.check_page("login").await;

    // A wrong token is refused on the page, with no cookie set.
    b.client.find(Locator::Id("token")).await.unwrap().send_keys("not-a-token").await.unwrap();
    b.client.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    b.wait_for("p.error").await;
    assert!(b.text("p.error").await.contains("unknown or revoked API token"));
    assert!(b.here().await.starts_with("/ui/login"));
    // The 401 of a refused login is the page's own answer, not an error worth a console line.
    let _ = b.console_errors().await;

    // The right token: back to the page first asked for, with the cookie out of scripts' reach.
    b.goto("/ui/status").await;
    b.client.find(Locator::Id("token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    b.client.find(Locator::Id("token")).await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
    b.wait_for("#status-table").await;
    assert_eq!(b.here().await, "/ui/status");
    let cookie = b.client.execute("return document.cookie;", vec![]).await.unwrap();
    assert_eq!(cookie, serde_json::json!(""), "the session cookie must be HttpOnly");
    let c = b.client.get_named_cookie("skycat_session").await.expect("session cookie");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(format!("{:?}", c.same_site()), "Some(Strict)");

    // Signing out forgets it.
    b.client.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    b.wait_for("#token").await;
    b.goto("/").await;
    assert!(b.here().await.starts_with("/ui/login"));
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_prices_page_shows_catalog_prices_and_its_filters_and_sorting_change_rows() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let snap = server.state.snapshot();
    let b = Browser::start(&server.base).await;
    b.login().await;
    b.goto("/").await;
    b.wait_for("#gpu-table").await;
    let all_rows = b.count("#gpu-table tbody tr").await;
    assert_eq!(all_rows, snap.gpus.len(), "one row per accelerator of the catalog");
    b.check_page("gpu-prices").await;

    // Filter with the form, by keyboard: AWS, us-east-1, on-demand.
    let cloud = b.client.find(Locator::Id("f-cloud")).await.unwrap();
    cloud.select_by_value("aws").await.unwrap();
    b.client.find(Locator::Id("f-market")).await.unwrap().select_by_value("on_demand").await.unwrap();
    let region = b.client.find(Locator::Id("f-region")).await.unwrap();
    region.send_keys("us-east-1").await.unwrap();
    region.send_keys(&Key::Enter.to_string()).await.unwrap();
    b.wait_for("tr[data-accelerator=\"A100\"] td[data-cloud=\"aws\"]").await;
    assert!(b.here().await.contains("region=us-east-1"));
    let filtered = b.count("#gpu-table tbody tr").await;
    assert!(filtered < all_rows && filtered > 0, "the filter kept {filtered} of {all_rows} rows");
    // The A100 price in aws us-east-1 is p4d.24xlarge's, per device-hour, linked to its source.
    let p4d = p4d_us_east_1(snap.offers());
    assert!(p4d.is_finite(), "the embedded catalog has p4d.24xlarge in us-east-1");
    let cell = b.text("tr[data-accelerator=\"A100\"] td[data-cloud=\"aws\"]").await;
    assert!(cell.contains(&usd(p4d / 8.0)) && cell.contains("p4d.24xlarge"), "A100 aws cell: {cell}");
    assert!(!cell.contains("spot"), "on-demand only, got: {cell}");
    b.check_page("gpu-prices-aws-us-east-1").await;

    // Its link opens the provenance: source, fetch time, age.
    b.client
        .find(Locator::Css("tr[data-accelerator=\"A100\"] td[data-cloud=\"aws\"] a.price"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#provenance").await;
    let prov = b.text("#provenance").await;
    assert!(prov.contains(&usd(p4d)), "provenance shows the instance price: {prov}");
    let src = snap.offers().iter().find(|o| &*o.instance_type == "p4d.24xlarge").unwrap().source.to_string();
    assert!(prov.contains(&src), "provenance names the source `{src}`: {prov}");
    b.check_page("price-provenance").await;

    // Minimum GPU memory drops the 40 GB A100 and keeps only rows at or above it.
    b.goto("/?min_gpu_memory=80").await;
    b.wait_for("#gpu-table").await;
    assert_eq!(b.count("tr[data-accelerator=\"A100\"]").await, 0);
    let big = b.count("#gpu-table tbody tr").await;
    let expected = snap.gpus.iter().filter(|g| g.memory_gib.is_some_and(|m| m >= 80.0)).count();
    assert_eq!(big, expected);

    // Sorting by the cheapest on-demand price, ascending then descending.
    b.goto("/").await;
    b.client.find(Locator::LinkText("Cheapest on-demand")).await.unwrap().click().await.unwrap();
    b.wait_for("th[aria-sort=\"ascending\"]").await;
    let prices = column_prices(&b).await;
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "ascending: {prices:?}");
    b.client.find(Locator::Css("th[aria-sort=\"ascending\"] a")).await.unwrap().click().await.unwrap();
    b.wait_for("th[aria-sort=\"descending\"]").await;
    let prices = column_prices(&b).await;
    assert!(prices.windows(2).all(|w| w[0] >= w[1]), "descending: {prices:?}");
    assert!(prices.len() > 5);
    b.close().await;
    server.stop().await;
}

/// The cheapest on-demand prices down the table, rows with one.
async fn column_prices(b: &Browser) -> Vec<f64> {
    let cells = b.client.find_all(Locator::Css("#gpu-table tbody td[data-col=\"on_demand\"] a.price")).await.unwrap();
    let mut out = Vec::new();
    for c in cells {
        let t = c.text().await.unwrap();
        out.push(t.trim_start_matches('$').parse::<f64>().unwrap_or_else(|_| panic!("price `{t}`")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_form_gives_the_placement_post_optimize_gives() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let yaml = "name: train\nresources:\n  accelerators: A100:8\n  use_spot: false\nnum_nodes: 2\n";
    let resp = server
        .client
        .post(server.url("/optimize"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let api: serde_json::Value = resp.json().await.unwrap();
    let chosen = &api["chosen"];

    let b = Browser::start(&server.base).await;
    b.login().await;
    b.goto("/ui/plan").await;
    b.check_page("plan-form").await;
    let task = b.client.find(Locator::Id("task")).await.unwrap();
    task.clear().await.unwrap();
    task.send_keys(yaml).await.unwrap();
    b.client.find(Locator::Id("plan-submit")).await.unwrap().click().await.unwrap();
    b.wait_for("#chosen").await;
    for field in ["cloud", "region", "instance_type"] {
        let shown = b.text(&format!("#chosen td[data-field=\"{field}\"]")).await;
        assert_eq!(shown, chosen[field].as_str().unwrap(), "chosen {field}");
    }
    let zone = b.text("#chosen td[data-field=\"zone\"]").await;
    assert_eq!(zone, chosen["zone"].as_str().unwrap_or("-"));
    assert_eq!(b.text("#chosen td[data-field=\"hourly_price\"]").await, usd(chosen["hourly_price"].as_f64().unwrap()));
    assert!(b.text("#plan-summary").await.contains(&usd(api["hourly_total"].as_f64().unwrap())));
    // The failover order is the API's, in order.
    let failover = api["failover"].as_array().unwrap();
    let rows = b.client.find_all(Locator::Css("#failover tbody tr")).await.unwrap();
    assert_eq!(rows.len(), failover.len());
    for (row, f) in rows.iter().zip(failover) {
        let it = row.find(Locator::Css("td[data-field=\"instance_type\"]")).await.unwrap().text().await.unwrap();
        let region = row.find(Locator::Css("td[data-field=\"region\"]")).await.unwrap().text().await.unwrap();
        assert_eq!((it.as_str(), region.as_str()), (f["instance_type"].as_str().unwrap(), f["region"].as_str().unwrap()));
    }
    assert!(b.count("#per-cloud tbody tr").await >= 1);
    // The YAML stays in the form for the next try.
    let kept = b.client.find(Locator::Id("task")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(kept.replace("\r\n", "\n"), yaml);
    b.check_page("plan-answer").await;

    // An infeasible task is explained: the constraint that cut the last candidates.
    let task = b.client.find(Locator::Id("task")).await.unwrap();
    task.clear().await.unwrap();
    task.send_keys("resources:\n  accelerators: A100:8\n  cloud: aws\n  region: no-such-region-1\n").await.unwrap();
    b.client.find(Locator::Id("plan-submit")).await.unwrap().click().await.unwrap();
    b.wait_for("#plan-error").await;
    let err = b.text("#plan-error").await;
    assert!(err.contains("No plan") && err.to_lowercase().contains("region"), "{err}");
    let _ = b.console_errors().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_status_page_lists_every_cloud_with_its_source_and_rows() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let snap = server.state.snapshot();
    let b = Browser::start(&server.base).await;
    b.login().await;
    b.goto("/ui/status").await;
    b.wait_for("#status-table").await;
    assert_eq!(b.count("#status-table tbody tr").await, snap.sources.len());
    for s in &snap.sources {
        let row = b.text(&format!("#status-table tr[data-cloud=\"{}\"]", s.cloud)).await;
        assert!(row.contains(&s.rows.to_string()) && row.contains(&s.origin), "{}: {row}", s.cloud);
    }
    let aws_regions = snap
        .offers()
        .iter()
        .filter(|o| &*o.cloud == "aws")
        .map(|o| o.region.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let aws = b.text("#status-table tr[data-cloud=\"aws\"]").await;
    assert!(aws.contains(&format!(" {aws_regions} ")), "aws regions {aws_regions}: {aws}");
    b.check_page("catalog-status").await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_page_groups_regions_and_shows_offers_on_focus() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let p4d = p4d_us_east_1(server.state.snapshot().offers());
    let b = Browser::start(&server.base).await;
    b.login().await;
    b.goto("/ui/cheapest?accelerator=A100").await;
    let cell = "li.region[data-cloud=\"aws\"][data-region=\"us-east-1\"]";
    b.wait_for(cell).await;
    let region = b.client.find(Locator::Css(cell)).await.unwrap();
    let offers = region.find(Locator::Css("ul.offers")).await.unwrap();
    assert!(!offers.is_displayed().await.unwrap(), "offers are hidden until hovered or focused");
    // Keyboard: Tab from the form's button reaches the regions; focus shows the offers.
    b.client.execute("arguments[0].focus();", vec![serde_json::to_value(&region).unwrap()]).await.unwrap();
    assert!(offers.is_displayed().await.unwrap(), "focusing a region shows its offers");
    let list = offers.text().await.unwrap();
    assert!(list.contains("p4d.24xlarge") && list.contains(&usd(p4d)), "us-east-1 offers: {list}");
    let continents = b.client.find_all(Locator::Css("section.continent h2")).await.unwrap();
    let mut names = Vec::new();
    for c in continents {
        names.push(c.text().await.unwrap());
    }
    assert!(names.contains(&"North America".to_owned()) && names.contains(&"Europe".to_owned()), "{names:?}");
    b.check_page("cheapest-a100").await;
    b.close().await;
    server.stop().await;
}

/// Two history snapshots of AWS's A100 rows, the second with p4d.24xlarge 10% cheaper.
fn write_history(home: &Path, offers: &[Offer]) -> (f64, f64) {
    let dir = skycat_catalog::SkycatHome::new(home).history_dir().join("aws");
    let rows: Vec<Offer> = offers
        .iter()
        .filter(|o| &*o.cloud == "aws" && o.accelerator_name.as_deref() == Some("A100"))
        .cloned()
        .collect();
    assert!(!rows.is_empty());
    let t1 = Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).single().unwrap();
    let t2 = t1 + ChronoDuration::days(7);
    skycat_catalog::parquet::write_offers_atomic(&dir.join(format!("{}.parquet", t1.format("%Y%m%dT%H%M%SZ"))), &rows)
        .unwrap();
    let later: Vec<Offer> = rows
        .iter()
        .cloned()
        .map(|mut o| {
            if &*o.instance_type == "p4d.24xlarge" {
                o.price = o.price.map(|p| p * 0.9);
            }
            o
        })
        .collect();
    skycat_catalog::parquet::write_offers_atomic(&dir.join(format!("{}.parquet", t2.format("%Y%m%dT%H%M%SZ"))), &later)
        .unwrap();
    let p = p4d_us_east_1(&rows);
    (p, p * 0.9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_page_charts_the_snapshots_and_lists_the_biggest_moves() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let (before, after) = write_history(home.path(), server.state.snapshot().offers());
    let b = Browser::start(&server.base).await;
    b.login().await;
    b.goto("/ui/history?what=A100&cloud=aws&region=us-east-1").await;
    b.wait_for("#history-chart").await;
    assert_eq!(b.count("#history-chart polyline").await, 2, "an on-demand and a spot line");
    assert_eq!(b.count("#history-chart circle.line-od").await, 2, "one point per snapshot");
    let first = b.text("#moves tbody tr").await;
    assert!(first.contains("p4d.24xlarge") && first.contains("-10.0%"), "biggest move: {first}");
    assert!(first.contains(&usd(before)) && first.contains(&usd(after)), "{first}");
    b.check_page("history-a100").await;

    // An instance type is charted per instance-hour.
    b.goto("/ui/history?what=p4d.24xlarge&region=us-east-1").await;
    b.wait_for("#history-chart").await;
    let tips = b.client.find_all(Locator::Css("#history-chart circle.line-od title")).await.unwrap();
    let mut texts = Vec::new();
    for t in tips {
        texts.push(t.prop("textContent").await.unwrap().unwrap_or_default());
    }
    assert!(texts.iter().any(|t| t.contains(&usd(before))) && texts.iter().any(|t| t.contains(&usd(after))), "{texts:?}");
    b.close().await;
    server.stop().await;
}
