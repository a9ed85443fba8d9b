//! The dashboard's clusters-and-jobs pages (`/ui/jobs`, `/ui/jobs/{id}`) over HTTP, on the
//! server `skycat serve` assembles with its controller: users see what the API shows them.
//! * a user sees its own jobs, the clusters they ran on and their costs; another user's job page
//!   is 404 (as `GET /v1/jobs/{id}`); an admin sees everyone's, with an owner column;
//! * a cluster shows its nodes' IPs, endpoints, $/h and the ledger's cost; an ended attempt its
//!   placement, cost, why it ended and its saved log (what `GET /v1/jobs/{id}/logs` answers);
//! * without a session cookie the pages send the browser to the login page.
//!
//! No network namespaces: the jobs run on a controller with no pools (they end
//! FAILED_NO_RESOURCE); the cluster, its nodes, its ledger and an ended attempt are stored
//! through the store's own functions (and the attempt row as the controller writes it).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use skycat_controller::api_tokens::Role;
use skycat_controller::home::Home;
use skycat_controller::managed::{JobRequest, Managed, ManagedOptions};
use skycat_controller::store::{self, ClusterRow, NodeRow};
use skycat_controller::Controller;
use skycat_protocol::CostRecord;
use skycat_server::dashboard::jobs::Control;
use skycat_server::{AppBuilder, Auth, CatalogData, ServerConfig};

fn cluster(name: &str, id: &str, ports: Option<&str>) -> ClusterRow {
    let now = Utc::now().to_rfc3339();
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: store::status::UP.into(),
        infra: "ssh/cheap".into(),
        pool: "cheap".into(),
        num_nodes: 2,
        price_per_hour: 1.5,
        spot: true,
        idle_minutes: Some(10.0),
        down_on_idle: true,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: now.clone(),
        updated_at: now,
        terminated_at: None,
        instance_type: None,
        ports: ports.map(str::to_string),
    }
}

fn node(cluster_id: &str, rank: u32, ip: &str) -> NodeRow {
    NodeRow {
        cluster_id: cluster_id.into(),
        rank,
        node_id: format!("{cluster_id}-n{rank}"),
        pool: "cheap".into(),
        ip: ip.into(),
        port: 22,
        user: "root".into(),
        identity_file: "/k".into(),
        state_dir: "/s".into(),
        agent_bin: "/a".into(),
        last_heartbeat_at: None,
        last_seq: 0,
        accrued_usd: 0.0,
        metered_seconds: 0.0,
        idle_seconds: None,
        instance_id: None,
        zone: None,
    }
}

fn cost(cluster: &str, node_id: &str, usd: f64) -> CostRecord {
    CostRecord {
        cluster: cluster.into(),
        node_id: node_id.into(),
        launch_id: Some("l1".into()),
        from: Utc::now() - chrono::Duration::seconds(60),
        to: Utc::now(),
        seconds: 60.0,
        price_per_hour: 1.5,
        usd,
        kind: "metered".into(),
    }
}

fn job(name: &str) -> JobRequest {
    JobRequest {
        name: Some(name.into()),
        task: skycat_controller::TaskRun { num_nodes: 1, run: Some("echo hi".into()), ..Default::default() },
        use_spot: false,
        strategy: None,
        max_restarts_on_errors: 0,
        spec: None,
    }
}

struct Site {
    base: String,
    http: reqwest::Client,
}

impl Site {
    /// (status, Location, body) of GET `path` with `token`'s session cookie.
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("cookie", format!("skycat_session={t}"));
        }
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (code, loc, resp.text().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_their_own_clusters_jobs_and_costs_admins_everyones() {
    let home = tempfile::tempdir().unwrap();
    let ctl = Controller::open(Home::at(home.path())).await.expect("controller");
    let store = ctl.store.clone();
    let alice = store.create_api_token("alice", Role::User).await.unwrap();
    let bob = store.create_api_token("bob", Role::User).await.unwrap();
    let root = store.create_api_token("root", Role::Admin).await.unwrap();
    let opts = ManagedOptions { launch_retry_for: Duration::from_millis(300), poll: Duration::from_millis(100), ..ManagedOptions::default() };
    let managed = Managed::new(ctl, opts, Arc::new(Vec::new)).await.expect("managed");
    let a = managed.submit_as(job("alice-train"), "alice").await.expect("alice's job");
    let b = managed.submit_as(job("bob-train"), "bob").await.expect("bob's job");
    for id in [a, b] {
        let v = managed.wait(id, Duration::from_secs(20)).await.expect("the job ends (no pools)");
        assert_eq!(v.status, "FAILED_NO_RESOURCE", "{v:#?}");
    }

    // Alice's job ran an attempt on cluster `alice-c` (two nodes, port 8080 open), which metered
    // $0.25; a cluster launched from the CLI metered $0.5.
    let ca = cluster("alice-c", "cid-a", Some("8080,9000-9001"));
    store.insert_cluster(&ca, "h1").await.unwrap();
    store.insert_node(&node("cid-a", 0, "10.9.0.1")).await.unwrap();
    store.insert_node(&node("cid-a", 1, "10.9.0.2")).await.unwrap();
    store.record_costs(&ca, &[cost("alice-c", "cid-a-n0", 0.25)], "test").await.unwrap();
    let cc = cluster("cli-c", "cid-c", None);
    store.insert_cluster(&cc, "h2").await.unwrap();
    store.insert_node(&node("cid-c", 0, "10.9.1.1")).await.unwrap();
    store.record_costs(&cc, &[cost("cli-c", "cid-c-n0", 0.5)], "test").await.unwrap();
    let started = (Utc::now() - chrono::Duration::seconds(200)).to_rfc3339();
    let ended = Utc::now().to_rfc3339();
    sqlx::query(
        "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
           agent_job_id, started_at, ended_at, outcome, reason, log) VALUES ($1,0,'alice-c','cid-a','ssh/cheap','10.9.0.1,10.9.0.2',1,1.5,0,1,$2,$3,'PREEMPTED',$4,$5)",
    )
    .bind(a)
    .bind(&started)
    .bind(&ended)
    .bind("node 10.9.0.1 does not answer SSH <gone>")
    .bind("step 1\nstep 2 <ok>\n")
    .execute(store.db())
    .await
    .unwrap();

    let auth = Auth { verifier: Arc::new(store.clone()) };
    let config = ServerConfig { auth: Some(auth.clone()), public_read: false, control: Some(Control::new(managed.clone())), ..ServerConfig::default() };
    let app = AppBuilder::new(CatalogData::from_offers(Vec::new()))
        .config(config)
        .merge(skycat_server::routes::jobs::router(managed.clone(), auth))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let site = Site {
        base: format!("http://{}", listener.local_addr().unwrap()),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    };
    let server = tokio::spawn(app.serve(listener, std::future::pending()));

    // No session: the login page, no data.
    let (code, loc, body) = site.get("/ui/jobs", None).await;
    assert_eq!((code, loc.as_str()), (303, "/ui/login?next=%2Fui%2Fjobs"), "{body}");
    assert!(!body.contains("alice"), "{body}");
    let (code, loc, _) = site.get(&format!("/ui/jobs/{a}"), Some("skycat_not_a_token")).await;
    assert_eq!(code, 303, "an unknown token is no session");
    assert!(loc.starts_with("/ui/login"), "{loc}");

    // Alice: her job and cluster, nobody else's; no owner column.
    let (code, _, page) = site.get("/ui/jobs", Some(&alice)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(&format!("data-job=\"{a}\"")) && !page.contains(&format!("data-job=\"{b}\"")), "{page}");
    assert!(page.contains("data-cluster=\"alice-c\"") && !page.contains("cli-c"), "{page}");
    assert!(!page.contains("<th scope=\"col\">Owner</th>"), "a user's page has no owner column");
    // The cluster: both nodes' IPs, the head node's endpoints, 2 nodes × $1.5/h, the ledger's cost.
    for want in ["<code>10.9.0.1</code>", "<code>10.9.0.2</code>", "10.9.0.1:8080", "10.9.0.1:9000-9001", "$3.0000", "$0.2500", "10 min, then down"] {
        assert!(page.contains(want), "the clusters table lacks {want:?}: {page}");
    }
    // The attempt: placement, duration, cost, why it ended (escaped).
    assert!(page.contains("data-attempt=\"0\" data-outcome=\"PREEMPTED\""), "{page}");
    assert!(page.contains("ssh/cheap <span class=\"where\">(10.9.0.1, 10.9.0.2)</span>"), "{page}");
    assert!(page.contains("3 min 20 s") || page.contains("3 min 21 s"), "{page}");
    assert!(page.contains("does not answer SSH &lt;gone&gt;"), "{page}");
    // Costs: per day, per cluster (alice-c only), per user (alice only).
    assert!(page.contains("id=\"cost-per-day\"") && page.contains("id=\"cost-per-cluster\"") && page.contains("id=\"cost-per-user\""), "{page}");
    let per_user = page.split("id=\"cost-per-user-table\"").nth(1).expect("the per-user figures");
    assert!(per_user.contains("<td>alice</td><td class=\"num\">$0.2500</td>") && !per_user.contains("(cli)"), "{per_user}");

    // Her job's page: its attempt and the saved log, escaped; the page is final (no polling).
    let (code, _, jp) = site.get(&format!("/ui/jobs/{a}"), Some(&alice)).await;
    assert_eq!(code, 200, "{jp}");
    assert!(jp.contains("data-live-final") && jp.contains("data-status=\"FAILED_NO_RESOURCE\""), "{jp}");
    assert!(jp.contains("<pre class=\"log\" id=\"log-0\"") && jp.contains("step 1\nstep 2 &lt;ok&gt;"), "{jp}");
    assert!(jp.contains("<code>alice-c</code>") && jp.contains("$1.5000"), "{jp}");
    // Bob's job is absent for her, as in the API; a bad id is named.
    let (code, _, other) = site.get(&format!("/ui/jobs/{b}"), Some(&alice)).await;
    assert_eq!(code, 404, "{other}");
    assert!(other.contains(&format!("managed job {b} not found")) && !other.contains("bob-train"), "{other}");
    let (code, _, bad) = site.get("/ui/jobs/x1", Some(&alice)).await;
    assert_eq!(code, 400);
    assert!(bad.contains("id: a job id is a positive integer"), "{bad}");

    // Bob: his job, no cluster, nothing metered.
    let (_, _, page) = site.get("/ui/jobs", Some(&bob)).await;
    assert!(page.contains(&format!("data-job=\"{b}\"")) && !page.contains(&format!("data-job=\"{a}\"")), "{page}");
    assert!(page.contains("id=\"no-clusters\"") && page.contains("id=\"no-costs\""), "{page}");

    // The admin: everyone's, with owners; the CLI's cluster too.
    let (_, _, page) = site.get("/ui/jobs", Some(&root)).await;
    assert!(page.contains(&format!("data-job=\"{a}\"")) && page.contains(&format!("data-job=\"{b}\"")), "{page}");
    assert!(page.contains("data-cluster=\"alice-c\"") && page.contains("data-cluster=\"cli-c\""), "{page}");
    assert!(page.contains("<th scope=\"col\">Owner</th>") && page.contains("<td>(cli)</td>"), "{page}");
    let per_user = page.split("id=\"cost-per-user-table\"").nth(1).expect("the per-user figures");
    assert!(per_user.contains("<td>(cli)</td><td class=\"num\">$0.5000</td>") && per_user.contains("<td>alice</td>"), "{per_user}");
    let (code, _, _) = site.get(&format!("/ui/jobs/{b}"), Some(&root)).await;
    assert_eq!(code, 200);

    server.abort();
}
