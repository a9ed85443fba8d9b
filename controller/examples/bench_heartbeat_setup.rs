//! The setup of scripts/bench-replicas.sh's heartbeat ingest run (a benchmark, not a test):
//! `N` clusters of one node each in the PostgreSQL state database, each with its own cluster
//! token, and one real heartbeat made from the protocol crate's types.
//!
//! Usage: bench_heartbeat_setup POSTGRES_URL CLUSTERS OUT_DIR
//! Writes OUT_DIR/clusters.txt (one `NAME TOKEN` per line) and OUT_DIR/heartbeat.json (a
//! heartbeat whose cluster is `__CLUSTER__` and whose seq is 987654321, for wrk's script to
//! substitute).

use anyhow::{bail, Context};
use chrono::Utc;
use skycat_controller::store::{self, hash_token, ClusterRow, NodeRow, StateLocation};
use skycat_controller::Store;
use skycat_protocol::Heartbeat;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(n), Some(out)) = (args.first(), args.get(1), args.get(2)) else {
        bail!("usage: bench_heartbeat_setup POSTGRES_URL CLUSTERS OUT_DIR")
    };
    let home = tempfile::tempdir()?;
    let store = Store::open_location(&StateLocation::parse(url)?, home.path()).await?;
    let n: usize = n.parse().with_context(|| format!("CLUSTERS: not a number: {n}"))?;
    let out = std::path::Path::new(out);
    let now = Utc::now().to_rfc3339();
    let mut lines = String::new();
    for i in 0..n {
        let name = format!("bench-{i}");
        let id = format!("bench-id-{i}");
        let token = store::random_hex(32)?;
        let cluster = ClusterRow {
            id: id.clone(),
            name: name.clone(),
            status: store::status::UP.into(),
            infra: "ssh/bench".into(),
            pool: "bench".into(),
            num_nodes: 1,
            price_per_hour: 2.5,
            spot: false,
            idle_minutes: None,
            down_on_idle: false,
            server_url: None,
            agent_version: None,
            task_json: Some("{}".into()),
            autostopped_at: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            terminated_at: None,
            instance_type: None,
            ports: None,
        };
        store.insert_cluster(&cluster, &hash_token(&token)).await?;
        store
            .insert_node(&NodeRow {
                cluster_id: id,
                rank: 0,
                node_id: "n0".into(),
                pool: "bench".into(),
                ip: "127.0.0.1".into(),
                port: 22,
                user: "root".into(),
                identity_file: "/dev/null".into(),
                state_dir: "/tmp".into(),
                agent_bin: "/bin/false".into(),
                last_heartbeat_at: None,
                last_seq: 0,
                accrued_usd: 0.0,
                metered_seconds: 0.0,
                idle_seconds: None,
                instance_id: None,
                zone: None,
            })
            .await?;
        lines.push_str(&format!("{name} {token}\n"));
    }
    std::fs::write(out.join("clusters.txt"), lines)?;
    // A periodic heartbeat of a node running one job, as an agent sends it.
    let t = Utc::now().to_rfc3339();
    let hb: Heartbeat = serde_json::from_value(serde_json::json!({
        "protocol_version": skycat_protocol::PROTOCOL_VERSION, "agent_version": env!("CARGO_PKG_VERSION"),
        "cluster": "__CLUSTER__", "node_id": "n0", "node_rank": 0, "seq": 987654321u64, "created_at": t,
        "reason": "periodic", "agent_started_at": t,
        "facts": {"hostname": "bench", "cpus": 8, "memory_total_bytes": 68719476736u64, "memory_available_bytes": 34359738368u64, "gpus_for_jobs": 1.0},
        "jobs": [{"id": 1, "name": "train", "state": "RUNNING", "gpus": 1.0, "task_id": null, "recovery_count": 0, "submitted_at": t, "exit_code": null, "log_path": "/tmp/job-1.log"}],
        "setup": {"state": "NONE", "log_path": "/tmp/setup.log"},
        "cost": {"price_per_hour": 2.5, "pinned_at": t, "metered_seconds": 30.0, "accrued_usd": 0.02, "new_records": []},
        "idle_seconds": 0.0
    }))
    .context("the bench heartbeat does not match the protocol")?;
    std::fs::write(out.join("heartbeat.json"), serde_json::to_string(&hb)?)?;
    eprintln!("{n} clusters with tokens in {}", out.join("clusters.txt").display());
    Ok(())
}
