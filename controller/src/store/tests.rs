//! The store on SQLite: the in-module checks (the same API on PostgreSQL is in
//! tests/store_drivers.rs).

use super::*;
use sqlx::sqlite::SqlitePoolOptions;
use std::str::FromStr;

fn cluster(name: &str, id: &str) -> ClusterRow {
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: status::UP.into(),
        infra: "ssh/p".into(),
        pool: "p".into(),
        num_nodes: 1,
        price_per_hour: 2.0,
        spot: false,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: now(),
        updated_at: now(),
        terminated_at: None,
        instance_type: None,
        ports: Some("8888,10020-10040".into()),
    }
}

#[tokio::test]
async fn a_database_from_before_migrations_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        // What skycat 0.1 created: the tables, no `_sqlx_migrations`, no backend columns.
        let opts = SqliteConnectOptions::from_str("sqlite://").unwrap().filename(&path).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(include_str!("../../migrations/sqlite/0001_initial.sql"))).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO clusters (id, name, status, infra, pool, num_nodes, price_per_hour, spot, token_hash, created_at, updated_at)
             VALUES ('old1', 'old', 'UP', 'ssh/p', 'p', 1, 1.5, 0, 'h', 'now', 'now')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let s = Store::open(&path).await.unwrap();
    let c = s.cluster("old").await.unwrap().expect("the old cluster survives");
    assert_eq!((c.price_per_hour, c.instance_type.as_deref(), c.cloud()), (1.5, None, "ssh"));
    s.set_cluster_ports("old1", "8080").await.unwrap();
    assert_eq!(s.cluster("old").await.unwrap().unwrap().port_ranges(), vec![(8080, 8080)]);
    // Opening again applies nothing twice.
    drop(s);
    Store::open(&path).await.unwrap();
}

#[tokio::test]
async fn home_is_0700_and_the_database_files_0600_from_creation() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("skyhome");
    let s = Store::open(&home.join("state.db")).await.unwrap();
    s.create_api_token("t", crate::api_tokens::Role::User).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let p = home.join(f);
        assert!(p.exists(), "{f} (WAL mode)");
        assert_eq!(mode(&p), 0o600, "{f}");
    }
}

#[tokio::test]
async fn clusters_tokens_reservations_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state.db")).await.unwrap();
    let token = random_hex(32).unwrap();
    assert_eq!(token.len(), 64);
    s.insert_cluster(&cluster("a", "id1"), &hash_token(&token)).await.unwrap();
    assert!(matches!(s.insert_cluster(&cluster("a", "id2"), "x").await, Err(StoreError::ClusterExists(_))));
    assert_eq!(s.cluster_by_token(&token).await.unwrap().unwrap().id, "id1");
    assert!(s.cluster_by_token("wrong").await.unwrap().is_none());
    s.reserve_host("p", "root@h:22", "id1").await.unwrap();
    let e = s.reserve_host("p", "root@h:22", "id2").await.unwrap_err();
    assert!(e.to_string().contains("already used by cluster a"), "{e}");
    let t0 = Utc::now();
    let rec = CostRecord {
        cluster: "a".into(),
        node_id: "a-0".into(),
        launch_id: Some("id1".into()),
        from: t0,
        to: t0 + chrono::Duration::seconds(60),
        seconds: 60.0,
        price_per_hour: 2.0,
        usd: 2.0 / 60.0,
        kind: "metered".into(),
    };
    let c = s.require_cluster("a").await.unwrap();
    assert_eq!(s.record_costs(&c, &[rec.clone(), rec.clone()], "test").await.unwrap(), 1);
    assert_eq!(s.record_costs(&c, &[rec], "test").await.unwrap(), 0);
    s.set_cluster_status("id1", status::TERMINATED).await.unwrap();
    s.release_cluster_hosts("id1").await.unwrap();
    assert!(s.cluster("a").await.unwrap().is_none());
    // A new cluster may reuse the name and the host; the old one stays in the cost report.
    s.insert_cluster(&cluster("a", "id2"), "x").await.unwrap();
    s.reserve_host("p", "root@h:22", "id2").await.unwrap();
    let report = s.cost_report().await.unwrap();
    assert_eq!(report.len(), 2);
    assert!((report[0].usd - 2.0 / 60.0).abs() < 1e-12 && report[0].status == "TERMINATED");
    assert_eq!(report[1].usd, 0.0);
}
