//! The state store on both of its databases: every test here runs the same checks against an
//! embedded SQLite file and against a throwaway PostgreSQL cluster (testkit::postgres), so a
//! statement one of them rejects, or a type the Any driver cannot carry, fails here.

use chrono::Utc;
use serde_json::json;
use skycat_controller::api_tokens::Role;
use skycat_controller::heartbeat::IngestQueue;
use skycat_controller::store::{self, hash_token, BatchOutcome, ClusterRow, Dialect, HeartbeatIn, Ingested, NodeRow, StateLocation, Store, StoreError};
use skycat_protocol::{CostRecord, Heartbeat};
use skycat_testkit::postgres::Postgres;

fn cluster(name: &str, id: &str) -> ClusterRow {
    let now = Utc::now().to_rfc3339();
    ClusterRow {
        id: id.into(),
        name: name.into(),
        status: store::status::UP.into(),
        infra: "ssh/p".into(),
        pool: "p".into(),
        num_nodes: 2,
        price_per_hour: 2.5,
        spot: true,
        idle_minutes: Some(5.0),
        down_on_idle: true,
        server_url: None,
        agent_version: None,
        task_json: Some("{}".into()),
        autostopped_at: None,
        created_at: now.clone(),
        updated_at: now,
        terminated_at: None,
        instance_type: Some("g5.xlarge".into()),
        ports: Some("8080".into()),
    }
}

fn node(cluster_id: &str, rank: u32) -> NodeRow {
    NodeRow {
        cluster_id: cluster_id.into(),
        rank,
        node_id: format!("n{rank}"),
        pool: "p".into(),
        ip: format!("10.0.0.{}", rank + 1),
        port: 2222,
        user: "root".into(),
        identity_file: "/k".into(),
        state_dir: "/s".into(),
        agent_bin: "/a".into(),
        last_heartbeat_at: None,
        last_seq: 0,
        accrued_usd: 0.0,
        metered_seconds: 0.0,
        idle_seconds: None,
        instance_id: Some("i-1".into()),
        zone: None,
    }
}

fn heartbeat(cluster: &str, node: &str, seq: u64, accrued: f64, job_state: &str) -> Heartbeat {
    let t = "2026-12-01T00:00:00Z";
    serde_json::from_value(json!({"protocol_version": skycat_protocol::PROTOCOL_VERSION, "agent_version": "t", "cluster": cluster,
        "node_id": node, "node_rank": 0, "seq": seq, "created_at": t, "reason": "periodic", "agent_started_at": t,
        "facts": {"hostname": "h", "cpus": 1, "memory_total_bytes": 1, "memory_available_bytes": 1, "gpus_for_jobs": 0.0},
        "jobs": [{"id": 1, "name": "train", "state": job_state, "gpus": 1.0, "task_id": null, "recovery_count": 0, "submitted_at": t, "exit_code": null, "log_path": "/l"}],
        "setup": {"state": "NONE", "log_path": "x"},
        "cost": {"price_per_hour": 1.0, "pinned_at": t, "metered_seconds": seq as f64 * 10.0, "accrued_usd": accrued,
                 "new_records": [{"cluster": cluster, "node_id": node, "launch_id": "l1", "from": t, "to": t, "seconds": 10.0,
                                  "price_per_hour": 1.0, "usd": 0.01, "kind": format!("metered-{seq}")}]},
        "idle_seconds": 3.0}))
    .expect("a valid heartbeat")
}

/// Clusters, nodes, reservations, heartbeats (deduplicated), jobs, the ledger, API tokens, the
/// cost report and storage rows: the whole store API, on whichever database `s` is.
async fn exercise(s: &Store) {
    let token = store::random_hex(32).unwrap();
    s.insert_cluster(&cluster("a", "id1"), &hash_token(&token)).await.unwrap();
    assert!(matches!(s.insert_cluster(&cluster("a", "id2"), "x").await, Err(StoreError::ClusterExists(_))));
    let c = s.cluster_by_token(&token).await.unwrap().expect("found by token");
    assert_eq!((c.id.as_str(), c.num_nodes, c.spot, c.down_on_idle, c.idle_minutes), ("id1", 2, true, true, Some(5.0)));
    assert_eq!(c.port_ranges(), vec![(8080, 8080)]);
    s.set_cluster_placement("id1", "aws/us-east-1", "us-east-1", 3.0, false, Some("p4d")).await.unwrap();
    let c = s.require_cluster("a").await.unwrap();
    assert_eq!((c.infra.as_str(), c.spot, c.price_per_hour), ("aws/us-east-1", false, 3.0));

    s.reserve_host("p", "root@h:22", "id1").await.unwrap();
    let e = s.reserve_host("p", "root@h:22", "id2").await.unwrap_err();
    assert!(e.to_string().contains("already used by cluster a"), "{e}");
    assert_eq!(s.reserved_hosts("p").await.unwrap(), vec!["root@h:22".to_string()]);

    s.insert_node(&node("id1", 0)).await.unwrap();
    s.insert_node(&node("id1", 1)).await.unwrap();
    s.set_node_port("id1", 1, 2200).await.unwrap();
    let nodes = s.nodes("id1").await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!((nodes[1].port, nodes[1].user.as_str(), nodes[1].instance_id.as_deref()), (2200, "root", Some("i-1")));

    // Heartbeats: each (node, seq) once; totals only move forward; jobs from the newest.
    assert_eq!(s.ingest_heartbeat(&c, &heartbeat("a", "n0", 2, 0.5, "RUNNING")).await.unwrap(), Ingested::New);
    assert_eq!(s.ingest_heartbeat(&c, &heartbeat("a", "n0", 2, 0.5, "RUNNING")).await.unwrap(), Ingested::Duplicate);
    assert_eq!(s.ingest_heartbeat(&c, &heartbeat("a", "n0", 1, 0.2, "PENDING")).await.unwrap(), Ingested::New);
    let n0 = &s.nodes("id1").await.unwrap()[0];
    assert_eq!((n0.last_seq, n0.accrued_usd, n0.metered_seconds, n0.idle_seconds), (2, 0.5, 20.0, Some(3.0)));
    assert!(n0.last_heartbeat_at.is_some());
    assert_eq!(s.heartbeat_count("id1").await.unwrap(), 2);
    assert_eq!(s.heartbeat_seqs("id1").await.unwrap(), vec![("n0".to_string(), 1), ("n0".to_string(), 2)]);
    let jobs = s.jobs("id1").await.unwrap();
    assert_eq!((jobs.len(), jobs[0].state.as_str(), jobs[0].name.as_deref()), (1, "RUNNING", Some("train")));
    s.record_node_totals("id1", 0, 0.1, 1.0, 7.0).await.unwrap();
    let n0 = &s.nodes("id1").await.unwrap()[0];
    assert_eq!((n0.accrued_usd, n0.idle_seconds), (0.5, Some(7.0)), "a lower pulled total never lowers the stored one");
    // Re-inserting a node starts it afresh.
    s.insert_node(&node("id1", 0)).await.unwrap();
    assert_eq!(s.nodes("id1").await.unwrap()[0].last_seq, 0);

    // The ledger: the two heartbeats' records, a duplicate counted once.
    let rec = CostRecord {
        cluster: "a".into(),
        node_id: "n1".into(),
        launch_id: Some("id1".into()),
        from: Utc::now(),
        to: Utc::now(),
        seconds: 60.0,
        price_per_hour: 3.0,
        usd: 0.05,
        kind: "metered".into(),
    };
    assert_eq!(s.record_costs(&c, &[rec.clone(), rec.clone()], "test").await.unwrap(), 1);
    assert!(s.mark_autostopped("id1", "2026-12-01T00:00:00Z").await.unwrap());
    assert!(!s.mark_autostopped("id1", "2026-12-01T00:00:00Z").await.unwrap(), "autostop fires once");
    s.set_cluster_status("id1", store::status::TERMINATED).await.unwrap();
    s.release_cluster_hosts("id1").await.unwrap();
    assert!(s.cluster("a").await.unwrap().is_none());
    s.insert_cluster(&cluster("a", "id2"), "x").await.unwrap();
    let report = s.cost_report().await.unwrap();
    assert_eq!(report.len(), 2);
    assert!((report[0].usd - 0.07).abs() < 1e-9 && report[0].records == 3 && report[0].status == "TERMINATED", "{report:?}");
    let team = skycat_controller::costs::team_costs(s, None, None).await.unwrap();
    assert_eq!(team.len(), 1);
    assert!((team[0].usd - 0.07).abs() < 1e-9);
    // Per UTC day: the heartbeats' records of 2026-12-01 and today's, owned by the CLI.
    let days = skycat_controller::costs::daily_costs(s, None, None).await.unwrap();
    assert!(days.iter().all(|d| d.user == "(cli)" && d.cluster == "a"), "{days:?}");
    assert!((days.iter().map(|d| d.usd).sum::<f64>() - 0.07).abs() < 1e-9, "{days:?}");
    let first = days.iter().find(|d| d.day == "2026-12-01").expect("the day of the heartbeats' records");
    assert!(first.usd >= 0.02 - 1e-9, "{days:?}");
    let since = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc);
    let recent = skycat_controller::costs::daily_costs(s, Some(&since), None).await.unwrap();
    assert!((recent.iter().map(|d| d.usd).sum::<f64>() - 0.05).abs() < 1e-9, "only records ending after `since`: {recent:?}");
    assert!(skycat_controller::costs::daily_costs(s, None, Some("alice")).await.unwrap().is_empty());
    let owners = skycat_controller::costs::cluster_owners(s).await.unwrap();
    assert_eq!(owners.into_iter().collect::<Vec<_>>(), vec![("id2".to_string(), "(cli)".to_string())]);

    // API tokens: stored hashed, verified, revoked.
    let t = s.create_api_token("alice", Role::Admin).await.unwrap();
    assert!(s.create_api_token("alice", Role::User).await.is_err(), "a live name is not reissued");
    assert_eq!(s.verify_api_token(&t).await.unwrap(), Some(("alice".to_string(), Role::Admin)));
    assert!(s.has_live_api_token().await.unwrap());
    s.revoke_api_token("alice").await.unwrap();
    assert_eq!(s.verify_api_token(&t).await.unwrap(), None);
    assert_eq!(s.api_tokens().await.unwrap().len(), 1);
}

async fn fresh_postgres(pg: &Postgres, db: &str) -> Store {
    let home = tempfile::tempdir().unwrap();
    let s = Store::connect_postgres(&pg.create_database(db), home.path()).await.unwrap();
    assert_eq!(s.dialect(), Dialect::Postgres);
    s
}

#[tokio::test]
async fn the_store_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state.db")).await.unwrap();
    assert_eq!(s.dialect(), Dialect::Sqlite);
    exercise(&s).await;
}

#[tokio::test]
async fn the_store_api_on_postgres_and_a_newer_schema_is_refused_on_both() {
    let pg = Postgres::start();
    let s = fresh_postgres(&pg, "api").await;
    exercise(&s).await;
    // Opening again (a second replica) applies nothing twice and sees the same rows.
    let home = tempfile::tempdir().unwrap();
    let again = Store::connect_postgres(&pg.url_of("api"), home.path()).await.unwrap();
    assert_eq!(again.cost_report().await.unwrap().len(), 2);
    let known = store::known_schema_version(Dialect::Postgres);
    assert_eq!(again.schema_version().await.unwrap(), Some(known));

    // A newer skycat migrated this database: this one refuses to start, saying so.
    pg.psql(
        "api",
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ({}, 'from the future', true, '\\x00', 1)",
            known + 1
        ),
    );
    let e = Store::connect_postgres(&pg.url_of("api"), home.path()).await.unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("schema version {}", known + 1)) && msg.contains("upgrade skycat"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = Store::open(&path).await.unwrap();
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, 'from the future', 1, x'00', 1)")
        .bind(store::known_schema_version(Dialect::Sqlite) + 1)
        .execute(s.db())
        .await
        .unwrap();
    drop(s);
    let e = Store::open(&path).await.unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
}

#[tokio::test]
async fn a_postgres_password_never_shows_in_errors_and_an_unreachable_database_is_unavailable() {
    let port = skycat_testkit::free_port();
    let url = format!("postgres://skycat:s3cret-pw@127.0.0.1:{port}/db?sslmode=disable&password=other-secret");
    assert_eq!(StateLocation::parse(&url).unwrap(), StateLocation::Postgres(url.clone()));
    let home = tempfile::tempdir().unwrap();
    let e = Store::connect_postgres(&url, home.path()).await.unwrap_err();
    assert!(e.is_unavailable(), "nothing listens: {e}");
    let msg = e.to_string();
    assert!(!msg.contains("s3cret-pw") && !msg.contains("other-secret") && msg.contains("skycat:***@127.0.0.1"), "{msg}");
    assert_eq!(StateLocation::parse("/var/lib/skycat/state.db").unwrap(), StateLocation::Sqlite("/var/lib/skycat/state.db".into()));
    assert_eq!(StateLocation::parse("sqlite:///x/state.db").unwrap(), StateLocation::Sqlite("/x/state.db".into()));
    let e = StateLocation::parse("mysql://u:pw@h/db").unwrap_err().to_string();
    assert!(e.contains("--state") && !e.contains(":pw@"), "{e}");
}

/// `hb` as a batch item, with the token whose hash is `hash` (its body is the heartbeat's
/// JSON; `body` is stored as sent, checked in cluster_e2e).
fn input<'a>(hash: &'a str, hb: &'a Heartbeat) -> HeartbeatIn<'a> {
    HeartbeatIn { token_hash: hash, heartbeat: hb, body: "{}" }
}

/// `hb` of node rank `rank`.
fn ranked(mut hb: Heartbeat, rank: u32) -> Heartbeat {
    hb.node_rank = rank;
    hb
}

/// Batched ingest (what `skycat serve` writes with): tokens resolved in the batch, a key twice in
/// one batch stored once, replays across batches, other clusters' and unknown tokens refused,
/// node totals and jobs from each node's newest heartbeat, the ledger in the same transaction.
async fn exercise_batches(s: &Store) {
    let (tb, tc) = (store::random_hex(32).unwrap(), store::random_hex(32).unwrap());
    s.insert_cluster(&cluster("b", "idb"), &hash_token(&tb)).await.unwrap();
    s.insert_cluster(&cluster("c", "idc"), &hash_token(&tc)).await.unwrap();
    s.insert_node(&node("idb", 0)).await.unwrap();
    s.insert_node(&node("idb", 1)).await.unwrap();
    let (hb, hc, nobody) = (hash_token(&tb), hash_token(&tc), hash_token("not a token"));
    let first = [
        heartbeat("b", "n0", 5, 0.5, "RUNNING"),
        heartbeat("b", "n0", 3, 0.3, "PENDING"),
        heartbeat("b", "n0", 5, 0.5, "RUNNING"),
        ranked(heartbeat("b", "n1", 1, 0.1, "SUCCEEDED"), 1),
        heartbeat("b", "n0", 6, 0.6, "FAILED"),
        heartbeat("b", "n0", 7, 0.7, "FAILED"),
        ranked(heartbeat("b", "n9", 2, 0.2, "RUNNING"), 9),
    ];
    let tokens = [&hb, &hb, &hb, &hb, &hc, &nobody, &hb];
    let bodies: Vec<String> = first.iter().map(|h| serde_json::to_string(h).unwrap()).collect();
    let batch: Vec<HeartbeatIn> = (0..first.len()).map(|i| HeartbeatIn { token_hash: tokens[i], heartbeat: &first[i], body: &bodies[i] }).collect();
    let out = s.ingest_heartbeats(&batch).await.unwrap();
    let got: Vec<String> = out
        .iter()
        .map(|o| match o {
            BatchOutcome::Stored(c, i) => format!("{}:{i:?}", c.name),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(got, ["b:New", "b:New", "b:Duplicate", "b:New", "OtherCluster", "UnknownToken", "b:New"]);
    let stored: String = sqlx::query_scalar("SELECT body FROM heartbeats WHERE cluster_id = 'idb' AND node_id = 'n1'")
        .fetch_one(s.db())
        .await
        .unwrap();
    assert_eq!(stored, bodies[3], "the body is stored as the agent sent it");
    let nodes = s.nodes("idb").await.unwrap();
    assert_eq!((nodes[0].last_seq, nodes[0].accrued_usd, nodes[0].metered_seconds), (5, 0.5, 50.0));
    assert_eq!((nodes[1].last_seq, nodes[1].accrued_usd), (1, 0.1));
    let jobs: Vec<(u32, String)> = s.jobs("idb").await.unwrap().into_iter().map(|j| (j.node_rank, j.state)).collect();
    assert_eq!(jobs, [(0, "RUNNING".to_string()), (1, "SUCCEEDED".into()), (9, "RUNNING".into())], "each node's newest heartbeat's jobs");

    // A later batch: a replay is a duplicate; an older seq is stored but neither lowers the
    // totals nor overwrites the newest one's jobs.
    let second = [heartbeat("b", "n0", 5, 0.5, "RUNNING"), heartbeat("b", "n0", 4, 0.9, "FAILED")];
    let out = s.ingest_heartbeats(&[input(&hb, &second[0]), input(&hb, &second[1])]).await.unwrap();
    assert!(matches!(out[..], [BatchOutcome::Stored(_, Ingested::Duplicate), BatchOutcome::Stored(_, Ingested::New)]), "{out:?}");
    let n0 = &s.nodes("idb").await.unwrap()[0];
    assert_eq!((n0.last_seq, n0.accrued_usd), (5, 0.9), "totals only move up; the seq stays the newest");
    assert_eq!(s.jobs("idb").await.unwrap()[0].state, "RUNNING");
    assert_eq!(s.heartbeat_seqs("idb").await.unwrap().len(), 5);
    // Every new heartbeat's cost record, once, in the same transactions.
    let report = s.cost_report().await.unwrap();
    let b = report.iter().find(|l| l.cluster_id == "idb").unwrap();
    assert_eq!(b.records, 5, "{report:?}");
    assert!(report.iter().find(|l| l.cluster_id == "idc").is_some_and(|l| l.records == 0));
    // An empty batch, and one of unknown tokens only, write nothing.
    assert!(s.ingest_heartbeats(&[]).await.unwrap().is_empty());
    let out = s.ingest_heartbeats(&[input(&nobody, &second[0])]).await.unwrap();
    assert!(matches!(out[..], [BatchOutcome::UnknownToken]));
}

#[tokio::test]
async fn batched_heartbeats_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state.db")).await.unwrap();
    exercise_batches(&s).await;
}

/// On PostgreSQL: the same checks, then batches racing over the same nodes in opposite orders
/// (as the replicas' queues write them): no deadlock, no error, every key stored exactly once.
#[tokio::test]
async fn batched_heartbeats_on_postgres_racing_batches_store_each_key_once() {
    let pg = Postgres::start();
    let s = fresh_postgres(&pg, "batches").await;
    exercise_batches(&s).await;

    let token = store::random_hex(32).unwrap();
    let mut wide = cluster("wide", "idw");
    wide.num_nodes = 20;
    s.insert_cluster(&wide, &hash_token(&token)).await.unwrap();
    for rank in 0..20 {
        s.insert_node(&node("idw", rank)).await.unwrap();
    }
    let hash = hash_token(&token);
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let (s, hash) = (s.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            let mut new = 0;
            for seq in 1..=10u64 {
                // Every task sends every node's seq, rotated and half of them reversed: the
                // same rows, locked in different orders if the store did not order them.
                let mut hbs: Vec<Heartbeat> =
                    (0..20u32).map(|r| ranked(heartbeat("wide", &format!("n{r}"), seq, seq as f64, "RUNNING"), r)).collect();
                hbs.rotate_left(t * 3 % 20);
                if t % 2 == 1 {
                    hbs.reverse();
                }
                let batch: Vec<HeartbeatIn> = hbs.iter().map(|h| input(&hash, h)).collect();
                let out = s.ingest_heartbeats(&batch).await.expect("no batch fails");
                new += out.iter().filter(|o| matches!(o, BatchOutcome::Stored(_, Ingested::New))).count();
            }
            new
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    assert_eq!(stored, 200, "20 nodes x 10 seqs, each acknowledged as new exactly once over 8 racing writers");
    assert_eq!(s.heartbeat_count("idw").await.unwrap(), 200);
    assert!(s.nodes("idw").await.unwrap().iter().all(|n| n.last_seq == 10 && n.accrued_usd == 10.0));

    // A heartbeat PostgreSQL refuses (a NUL in a text column) fails alone: the queue writes the
    // rest of its batch, each by itself, and answers each.
    let queue = IngestQueue::new(s.clone());
    let mut tasks = Vec::new();
    for seq in 11..=30u64 {
        let mut hb = heartbeat("wide", "n0", seq, 1.0, "RUNNING");
        if seq == 20 {
            hb.jobs[0].name = Some("bad\u{0}name".into());
        }
        let body = serde_json::to_string(&hb).unwrap();
        let (queue, hash) = (queue.clone(), hash.clone());
        tasks.push(tokio::spawn(async move { queue.submit(hash, std::sync::Arc::new(hb), body).await }));
    }
    for (seq, t) in (11..=30u64).zip(tasks) {
        let answer = t.await.unwrap();
        if seq == 20 {
            assert!(answer.is_err(), "{answer:?}");
        } else {
            assert!(matches!(answer, Ok(BatchOutcome::Stored(_, Ingested::New))), "seq {seq}: {answer:?}");
        }
    }
    assert_eq!(s.heartbeat_count("idw").await.unwrap(), 219);
}

/// The ingest queue writes concurrent heartbeats in batches, and answers each by its own row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_queue_batches_concurrent_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state.db")).await.unwrap();
    let token = store::random_hex(32).unwrap();
    s.insert_cluster(&cluster("q", "idq"), &hash_token(&token)).await.unwrap();
    let queue = IngestQueue::new(s.clone());
    let mut tasks = Vec::new();
    for i in 0..128u64 {
        let (queue, hash) = (queue.clone(), hash_token(&token));
        // Node i % 4, each seq twice: half of the answers must be duplicates.
        let hb = std::sync::Arc::new(heartbeat("q", &format!("n{}", i % 4), i / 8 + 1, 0.1, "RUNNING"));
        let body = serde_json::to_string(&*hb).unwrap();
        tasks.push(tokio::spawn(async move { queue.submit(hash, hb, body).await }));
    }
    let (mut new, mut duplicate) = (0, 0);
    for t in tasks {
        match t.await.unwrap().expect("stored") {
            BatchOutcome::Stored(_, Ingested::New) => new += 1,
            BatchOutcome::Stored(_, Ingested::Duplicate) => duplicate += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((new, duplicate), (64, 64));
    assert_eq!(s.heartbeat_count("idq").await.unwrap(), 64);
    assert!(queue.batches() < 128, "128 heartbeats queued at once were written in fewer transactions ({})", queue.batches());
    let bad = queue.submit(hash_token("wrong"), std::sync::Arc::new(heartbeat("q", "n0", 99, 0.1, "RUNNING")), "{}".into()).await;
    assert!(matches!(bad, Ok(BatchOutcome::UnknownToken)), "{bad:?}");
}
