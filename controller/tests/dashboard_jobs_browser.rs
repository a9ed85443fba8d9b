//! The dashboard's clusters-and-jobs pages in a real headless chromium (server/tests/browser/
//! chrome.rs, scripts/ci-setup-chromium.sh) while a real managed job runs on network-namespace
//! sshd hosts with the real agent (scripts/ci-setup-sshd.sh; root): the jobs page, left open,
//! follows the job from RUNNING through a preemption to its recovery on another host without
//! being reloaded; the job's page follows its log live; each page loads with no console error,
//! no critical axe-core violation, fits 1280×800 and a phone width, and is screenshotted
//! (`$CARGO_TARGET_DIR/dashboard-screenshots/jobs-*.png`).
//!
//! Serialized with the other namespace suites on their file lock; namespaces removed on drop.

use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use skycat_controller::api_tokens::Role;
use skycat_controller::home::Home;
use skycat_controller::lifecycle::Controller;
use skycat_controller::managed::{JobRequest, Managed};
use skycat_server::dashboard::jobs::Control;
use skycat_server::{AppBuilder, Auth, CatalogData, ServerConfig};

mod common;
use common::{agent_bin, TestHosts};

#[path = "../../server/tests/browser/chrome.rs"]
mod chrome;
use chrome::Browser;

const NET: u32 = 210;

/// Whether the page the browser has open is still the one marked by [`mark_page`] (not reloaded).
async fn still_marked(b: &Browser) -> bool {
    b.client.execute("return window.__skycatMark === 1;", vec![]).await.expect("read the mark").as_bool() == Some(true)
}

async fn mark_page(b: &Browser) {
    b.client.execute("window.__skycatMark = 1;", vec![]).await.expect("mark the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_follows_a_managed_job_through_a_preemption_and_its_recovery() {
    let hosts = TestHosts::up(2, NET, "dj");
    let home = tempfile::tempdir().unwrap();
    // `cheap` (host 1) is chosen first; `dear` (host 2) takes the recovery.
    std::fs::write(home.path().join("ssh_node_pools.yaml"), common::pools_yaml(&hosts, &[("cheap", true, 1.8, &[1]), ("dear", true, 3.6, &[2])]))
        .unwrap();
    let (tls, pin) = common::agent_cert(home.path());
    let ctl = Controller::open(Home::at(home.path())).await.expect("controller").with_agent_bin(agent_bin()).with_server_cert_sha256(pin);
    let store = ctl.store.clone();
    let token = store.create_api_token("tester", Role::User).await.unwrap();
    let agents = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let agents_port = agents.local_addr().unwrap().port();
    let opts = common::fast_managed_options(format!("https://{{controller_ip}}:{agents_port}"));
    let managed = Managed::new(ctl, opts, Arc::new(Vec::new)).await.expect("managed");
    let agents_task = common::spawn_tls(agents, skycat_server::routes::heartbeat::router(store.clone()), &tls, std::future::pending());

    // The dashboard as `skycat serve` mounts it, on loopback, with the state DB's tokens.
    let auth = Auth { verifier: Arc::new(store.clone()) };
    let config = ServerConfig { auth: Some(auth.clone()), public_read: false, control: Some(Control::new(managed.clone())), ..ServerConfig::default() };
    let app = AppBuilder::new(CatalogData::from_offers(Vec::new()))
        .config(config)
        .merge(skycat_server::routes::jobs::router(managed.clone(), auth))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(app.serve(listener, std::future::pending()));

    // A spot job whose first attempt prints a tick a second until it is preempted; the recovery
    // prints a few and finishes.
    let run = "echo \"attempt rc=$SKYCAT_JOB_RECOVERY_COUNT\"; n=300; [ \"$SKYCAT_JOB_RECOVERY_COUNT\" = 0 ] || n=8; \
               i=1; while [ $i -le $n ]; do echo \"tick $i\"; i=$((i+1)); sleep 1; done; echo finished";
    let req = JobRequest {
        name: Some("train".into()),
        task: skycat_controller::TaskRun { name: Some("train".into()), num_nodes: 1, run: Some(run.into()), ..Default::default() },
        use_spot: true,
        strategy: None,
        max_restarts_on_errors: 0,
        spec: None,
    };
    let id = managed.submit_as(req, "tester").await.expect("submit");

    let b = Browser::start(&base).await;
    b.login_with(&token).await;
    b.goto("/ui/jobs").await;
    b.wait_for(&format!("tr[data-job=\"{id}\"]")).await;
    mark_page(&b).await;
    // The open page turns RUNNING by itself, with its cluster, node IP and first attempt.
    let row = format!("tr[data-job=\"{id}\"]");
    b.wait_for_within(&format!("{row}[data-status=\"RUNNING\"] li[data-attempt=\"0\"][data-outcome=\"RUNNING\"]"), Duration::from_secs(60)).await;
    b.wait_for_within("#clusters tr[data-status=\"UP\"]", Duration::from_secs(20)).await;
    assert!(still_marked(&b).await, "the page was reloaded instead of updated in place");
    let clusters = b.text("#clusters").await;
    assert!(clusters.contains(&hosts.ip(1)) && clusters.contains("ssh/cheap"), "{clusters}");
    assert!(b.text(&row).await.contains("ssh/cheap"), "{}", b.text(&row).await);
    b.check_page("jobs-running").await;

    // The job's page follows the running attempt's log.
    b.goto(&format!("/ui/jobs/{id}")).await;
    b.wait_for_within("#log-0", Duration::from_secs(20)).await;
    mark_page(&b).await;
    let first = b.text("#log-0").await;
    let ticks = |log: &str| log.lines().filter(|l| l.starts_with("tick ")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = b.text("#log-0").await;
        if ticks(&now) >= ticks(&first) + 2 {
            assert!(now.contains("attempt rc=0"), "{now}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the log did not follow: {first:?} then {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(still_marked(&b).await, "the job page was reloaded instead of following");
    b.check_page("jobs-log").await;

    // Back on the jobs page: preempt host 1 (it vanishes from the network). The open page shows
    // attempt 0 PREEMPTED with the reason, and the recovery on host 2, by itself.
    b.goto("/ui/jobs").await;
    b.wait_for(&format!("{row}[data-status=\"RUNNING\"]")).await;
    mark_page(&b).await;
    hosts.cut(1);
    b.wait_for_within(&format!("{row} li[data-attempt=\"0\"][data-outcome=\"PREEMPTED\"]"), Duration::from_secs(60)).await;
    b.wait_for_within(&format!("{row}[data-status=\"RUNNING\"] li[data-attempt=\"1\"][data-outcome=\"RUNNING\"]"), Duration::from_secs(60)).await;
    assert!(still_marked(&b).await, "the page was reloaded instead of updated in place");
    let text = b.text(&row).await;
    assert!(text.contains("does not answer SSH") && text.contains("ssh/dear") && text.contains(&hosts.ip(2)), "{text}");
    let recoveries = b.text(&format!("{row} td.num")).await;
    assert_eq!(recoveries.trim(), "1", "the recovery count column");
    b.check_page("jobs-recovered").await;

    // It finishes; its page then stops following and shows both attempts' logs.
    let v = managed.wait(id, Duration::from_secs(60)).await.expect("the job ends");
    assert_eq!(v.status, "SUCCEEDED", "{v:#?}");
    b.goto(&format!("/ui/jobs/{id}")).await;
    b.wait_for("#job-live[data-live-final]").await;
    assert!(b.text("#log-1").await.contains("finished"), "{}", b.text("#log-1").await);
    assert_eq!(b.count("#attempts tbody tr").await, 2);
    let outcomes: Vec<String> = {
        let mut v = Vec::new();
        for e in b.client.find_all(Locator::Css("#attempts tbody tr")).await.unwrap() {
            v.push(e.attr("data-outcome").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert_eq!(outcomes, vec!["PREEMPTED", "SUCCEEDED"]);
    b.check_page("jobs-finished").await;

    b.close().await;
    managed.shutdown();
    server.abort();
    agents_task.abort();
}
