//! A replica on PostgreSQL while the database goes down and comes back (testkit::postgres):
//! heartbeats answer 503 (never a silent 200), `/optimize` keeps answering from memory, and the
//! heartbeats an agent replays once the database is back are all stored exactly once.

use serde_json::{json, Value};
use skycat_controller::store::{hash_token, ClusterRow, Store};
use skycat_server::{AppBuilder, CatalogData, ServerConfig};
use skycat_testkit::postgres::Postgres;

fn embedded_catalog() -> Vec<skycat_catalog::Offer> {
    let empty = tempfile::tempdir().unwrap();
    skycat_catalog::Catalog::load(&skycat_catalog::SkycatHome::new(empty.path())).expect("embedded catalog").catalog.into_offers()
}

fn heartbeat(seq: u64) -> Value {
    let t = "2026-12-01T00:00:00Z";
    json!({"protocol_version": skycat_protocol::PROTOCOL_VERSION, "agent_version": "t", "cluster": "c",
        "node_id": "n0", "node_rank": 0, "seq": seq, "created_at": t, "reason": "periodic", "agent_started_at": t,
        "facts": {"hostname": "h", "cpus": 1, "memory_total_bytes": 1, "memory_available_bytes": 1, "gpus_for_jobs": 0.0},
        "jobs": [], "setup": {"state": "NONE", "log_path": "x"},
        "cost": {"price_per_hour": 1.0, "pinned_at": t, "metered_seconds": 0.0, "accrued_usd": 0.0}, "idle_seconds": 0.0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_heartbeats_503_optimize_200_and_nothing_lost_after_restart() {
    let pg = Postgres::start();
    let url = pg.create_database("down");
    let home = tempfile::tempdir().unwrap();
    let store = Store::connect_postgres(&url, home.path()).await.unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let row = ClusterRow {
        id: "cid".into(), name: "c".into(), status: "UP".into(), infra: "ssh/p".into(), pool: "p".into(), num_nodes: 1,
        price_per_hour: 1.0, spot: false, idle_minutes: None, down_on_idle: false, server_url: None, agent_version: None,
        task_json: None, autostopped_at: None, created_at: now.clone(), updated_at: now, terminated_at: None,
        instance_type: None, ports: None,
    };
    store.insert_cluster(&row, &hash_token("agent-token")).await.unwrap();
    let app = AppBuilder::new(CatalogData::from_offers(embedded_catalog()))
        .config(ServerConfig::default())
        .merge(skycat_server::routes::heartbeat::router(store.clone()))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let beat = |seq: u64| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.post(format!("{base}/v1/agents/heartbeat")).bearer_auth("agent-token").json(&heartbeat(seq)).send().await.unwrap().status().as_u16()
        }
    };
    let optimize = || async {
        http.post(format!("{base}/optimize")).json(&json!({"kind": "task", "resources": {"cpus": "2+"}})).send().await.unwrap().status().as_u16()
    };
    for seq in 1..=3 {
        assert_eq!(beat(seq).await, 200);
    }

    pg.stop();
    for seq in 4..=6 {
        assert_eq!(beat(seq).await, 503, "a write while the database is down is refused, not lost silently");
    }
    assert_eq!(optimize().await, 200, "/optimize answers from memory");
    pg.restart();
    // The agent replays what was refused (and, being unsure, what was not).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut replayed = false;
    while !replayed && std::time::Instant::now() < deadline {
        replayed = beat(4).await == 200;
        if !replayed {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert!(replayed, "heartbeats are accepted again once the database is back");
    for seq in 1..=6 {
        assert_eq!(beat(seq).await, 200);
    }
    let seqs: Vec<u64> = store.heartbeat_seqs("cid").await.unwrap().into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6], "every heartbeat stored exactly once");
    let _ = tx.send(());
    let _ = server.await;
}
