//! Budgets and team costs through `skycat serve`'s routes, as it assembles them: a launch over
//! the owner's monthly budget is refused with 403 before anything is stored or provisioned;
//! `GET /v1/costs` gives each user their own costs and only an admin everyone's.
//!
//! No network namespaces: the one SSH pool's host is a TEST-NET address nothing answers on, and
//! nothing must try it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skycat_controller::api_tokens::Role;
use skycat_controller::home::Home;
use skycat_controller::managed::{Managed, ManagedOptions};
use skycat_controller::Controller;
use skycat_server::{AppBuilder, Auth, CatalogData, ServerConfig};

async fn call(http: &reqwest::Client, url: String, token: &str, body: Option<Value>) -> (u16, Value) {
    let req = match body {
        Some(b) => http.post(url).header("content-type", "application/json").body(b.to_string()),
        None => http.get(url),
    };
    let resp = req.bearer_auth(token).send().await.expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// `usd` metered this month on a cluster of one of `owner`'s (ended) managed jobs.
async fn metered(db: &sqlx::AnyPool, owner: &str, cluster_id: &str, usd: f64) {
    let job: i64 = sqlx::query_scalar(
        "INSERT INTO managed_jobs (name, task_json, use_spot, strategy, max_restarts_on_errors, status, task_id, submitted_at, owner)
         VALUES ('old', '{}', 0, 'EAGER_NEXT_REGION', 0, 'SUCCEEDED', 'skycat-managed-old', '2026-01-01T00:00:00Z', $1) RETURNING id",
    )
    .bind(owner)
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO managed_attempts (job_id, attempt, cluster_name, cluster_id, pool, hosts, spot, price_per_hour, recovery_count,
                                       agent_job_id, started_at, outcome)
         VALUES ($1, 1, $2, $3, 'ssh/box', '', 0, 2.5, 0, 1, '2026-01-01T00:00:00Z', 'SUCCEEDED')",
    )
    .bind(job)
    .bind(format!("{owner}-old"))
    .bind(cluster_id)
    .execute(db)
    .await
    .unwrap();
    // The cluster row, as a launch leaves it (terminated).
    sqlx::query(
        "INSERT INTO clusters (id, name, status, infra, pool, num_nodes, price_per_hour, spot, down_on_idle, created_at, updated_at, token_hash)
         VALUES ($1, $2, 'TERMINATED', 'ssh/box', 'box', 1, 2.5, 0, 0, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'x')",
    )
    .bind(cluster_id)
    .bind(format!("{owner}-old"))
    .execute(db)
    .await
    .unwrap();
    let ts = skycat_controller::costs::ledger_ts(&chrono::Utc::now());
    sqlx::query(
        "INSERT INTO cost_ledger (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
         VALUES ($1, $2, 'n0', 'l1', $3, $4, 3600, 2.5, $5, 'compute', 'test')",
    )
    .bind(cluster_id)
    .bind(format!("{owner}-old"))
    .bind(&ts)
    .bind(&ts)
    .bind(usd)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_launches_are_refused_before_anything_exists_and_costs_are_per_user() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("ssh_node_pools.yaml"),
        "box:\n  hosts: [192.0.2.10]\n  user: root\n  identity_file: /nonexistent\n  price_per_hour: 2.5\n",
    )
    .unwrap();
    std::fs::write(home.path().join("config.yaml"), "budgets:\n  monthly_usd: 1000\n  users: {alice: 10}\n").unwrap();
    let ctl = Controller::open(Home::at(home.path())).await.expect("controller");
    let store = ctl.store.clone();
    let alice = store.create_api_token("alice", Role::User).await.unwrap();
    let bob = store.create_api_token("bob", Role::User).await.unwrap();
    let root = store.create_api_token("root", Role::Admin).await.unwrap();
    metered(store.db(), "alice", "c-alice", 6.0).await;
    metered(store.db(), "bob", "c-bob", 40.0).await;

    let opts = ManagedOptions { launch_retry_for: Duration::from_millis(300), ssh_connect_timeout: Duration::from_secs(1), ..ManagedOptions::default() };
    let managed = Managed::new(ctl, opts, Arc::new(Vec::new)).await.expect("managed");
    let auth = Auth { verifier: Arc::new(store.clone()) };
    let config = ServerConfig { auth: Some(auth.clone()), public_read: false, ..ServerConfig::default() };
    let app = AppBuilder::new(CatalogData::from_offers(Vec::new()))
        .config(config)
        .merge(skycat_server::routes::jobs::router(managed.clone(), auth))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let clusters = || async { store.clusters().await.unwrap().len() };
    let before = clusters().await;

    // $6 metered + $2.50/h × 2 h > $10: 403, one line with the figures, nothing created.
    let job = json!({"name": "train", "task": {"run": "echo hi"}, "hours": 2});
    let (code, err) = call(&http, format!("{base}/v1/jobs"), &alice, Some(job.clone())).await;
    assert_eq!(code, 403, "{err}");
    assert_eq!(err["field"], "budget", "{err}");
    let text = err["error"].as_str().unwrap_or_default();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("alice's monthly budget of $10.00") && text.contains("$6.00 metered"), "{text}");
    let (_, jobs) = call(&http, format!("{base}/v1/jobs"), &alice, None).await;
    let names: Vec<&str> = jobs.as_array().unwrap().iter().filter_map(|j| j["name"].as_str()).collect();
    assert_eq!(names, ["old"], "a refused job is not stored: {jobs}");
    assert_eq!(clusters().await, before, "no cluster for a refused job");
    let reserved: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM host_reservations").fetch_one(store.db()).await.unwrap();
    assert_eq!(reserved, 0);
    // A bad `hours` is the request's fault.
    let (code, err) = call(&http, format!("{base}/v1/jobs"), &alice, Some(json!({"task": {"run": "x"}, "hours": -1}))).await;
    assert_eq!((code, err["field"].as_str()), (422, Some("hours")), "{err}");

    // Costs: each user sees their own; everyone's needs an admin.
    let (code, mine) = call(&http, format!("{base}/v1/costs"), &alice, None).await;
    assert_eq!(code, 200, "{mine}");
    let lines = mine["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{mine}");
    assert_eq!((lines[0]["user"].as_str(), lines[0]["cloud"].as_str(), lines[0]["usd"].as_f64()), (Some("alice"), Some("ssh"), Some(6.0)));
    let (code, err) = call(&http, format!("{base}/v1/costs?all_users=true"), &bob, None).await;
    assert_eq!((code, err["field"].as_str()), (403, Some("all_users")), "{err}");
    let (code, all) = call(&http, format!("{base}/v1/costs?all_users=true&since=30d"), &root, None).await;
    assert_eq!(code, 200, "{all}");
    let users: Vec<&str> = all["lines"].as_array().unwrap().iter().filter_map(|l| l["user"].as_str()).collect();
    assert_eq!(users, ["alice", "bob"], "{all}");
    // Nothing metered after tomorrow; a bad `since` names itself.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let (_, none) = call(&http, format!("{base}/v1/costs?all_users=true&since={tomorrow}"), &root, None).await;
    assert_eq!(none["lines"].as_array().map(Vec::len), Some(0), "{none}");
    let (code, err) = call(&http, format!("{base}/v1/costs?since=yesterday"), &root, None).await;
    assert_eq!((code, err["field"].as_str()), (400, Some("since")), "{err}");

    managed.shutdown();
    let _ = tx.send(());
    let _ = server.await;
}
