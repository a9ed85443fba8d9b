//! The PostgreSQL writer of a heartbeat batch: one statement (data-modifying CTEs) inserts the
//! heartbeats, moves their nodes' totals, writes the jobs of each node's newest heartbeat and the
//! new cost records. One round trip per batch in place of one per table: on PostgreSQL the round
//! trips, not the rows, were the cost of ingest (issue 15; `scripts/bench-replicas.sh`).
//!
//! Lock order, the same in every batch so that batches sharing nodes (of this replica or
//! another) never deadlock: heartbeat keys, then node rows (locked by `locked`, sorted, before
//! `upd` writes them), then job rows, then ledger rows, each sorted by key.
//! Under READ COMMITTED a node row updated by a batch that committed after this statement began
//! is re-read when its lock is granted, so totals only ever move up.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::{json_param, CostRowIn, HeartbeatRow, Item, JobRowIn, Key, NodeTotals};

const WRITE_BATCH: &str = "WITH ins AS (
    INSERT INTO heartbeats (cluster_id, node_id, seq, reason, created_at, received_at, accrued_usd, idle_seconds, body)
    SELECT r.cluster_id, r.node_id, r.seq, r.reason, r.created_at, $2, r.accrued_usd, r.idle_seconds, r.body
    FROM json_to_recordset($1::json) AS r(cluster_id TEXT, node_id TEXT, seq BIGINT, reason TEXT, created_at TEXT,
         accrued_usd DOUBLE PRECISION, idle_seconds DOUBLE PRECISION, body TEXT)
    ORDER BY r.cluster_id, r.node_id, r.seq
    ON CONFLICT DO NOTHING
    RETURNING cluster_id, node_id, seq
), totals AS (
    SELECT t.cluster_id, t.node_id, MAX(t.seq) AS seq, MAX(t.accrued_usd) AS accrued_usd,
           MAX(t.metered_seconds) AS metered_seconds, (ARRAY_AGG(t.idle_seconds ORDER BY t.seq DESC))[1] AS idle_seconds
    FROM json_to_recordset($3::json) AS t(cluster_id TEXT, node_id TEXT, seq BIGINT, accrued_usd DOUBLE PRECISION,
         metered_seconds DOUBLE PRECISION, idle_seconds DOUBLE PRECISION)
    JOIN ins ON ins.cluster_id = t.cluster_id AND ins.node_id = t.node_id AND ins.seq = t.seq
    GROUP BY t.cluster_id, t.node_id
), locked AS (
    SELECT n.cluster_id, n.rank FROM nodes n
    JOIN totals t ON n.cluster_id = t.cluster_id AND n.node_id = t.node_id
    ORDER BY n.cluster_id, n.node_id, n.rank
    FOR UPDATE OF n
), upd AS (
    UPDATE nodes AS n SET last_heartbeat_at = $2, last_seq = GREATEST(n.last_seq, t.seq),
        accrued_usd = GREATEST(n.accrued_usd, t.accrued_usd),
        metered_seconds = GREATEST(n.metered_seconds, t.metered_seconds),
        idle_seconds = CASE WHEN t.seq >= n.last_seq THEN t.idle_seconds ELSE n.idle_seconds END
    FROM totals t, locked l
    WHERE n.cluster_id = t.cluster_id AND n.node_id = t.node_id AND n.cluster_id = l.cluster_id AND n.rank = l.rank
    RETURNING n.cluster_id, n.node_id, n.last_seq
), job AS (
    INSERT INTO jobs (cluster_id, job_id, node_rank, name, state, submitted_at, started_at, ended_at, exit_code, reason, updated_at)
    SELECT j.cluster_id, j.job_id, j.node_rank, j.name, j.state, j.submitted_at, j.started_at, j.ended_at, j.exit_code,
           j.reason, $2
    FROM json_to_recordset($4::json) AS j(cluster_id TEXT, node_id TEXT, seq BIGINT, job_id BIGINT, node_rank BIGINT,
         name TEXT, state TEXT, submitted_at TEXT, started_at TEXT, ended_at TEXT, exit_code BIGINT, reason TEXT)
    JOIN upd ON upd.cluster_id = j.cluster_id AND upd.node_id = j.node_id AND upd.last_seq = j.seq
    JOIN ins ON ins.cluster_id = j.cluster_id AND ins.node_id = j.node_id AND ins.seq = j.seq
    ORDER BY j.cluster_id, j.job_id, j.node_rank
    ON CONFLICT (cluster_id, job_id, node_rank) DO UPDATE SET name = excluded.name, state = excluded.state,
        submitted_at = excluded.submitted_at, started_at = excluded.started_at, ended_at = excluded.ended_at,
        exit_code = excluded.exit_code, reason = excluded.reason, updated_at = excluded.updated_at
), cost AS (
    INSERT INTO cost_ledger (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
    SELECT c.cluster_id, c.cluster_name, c.node_id, c.launch_id, c.from_ts, c.to_ts, c.seconds, c.price_per_hour, c.usd,
           c.kind, 'heartbeat'
    FROM json_to_recordset($5::json) AS c(cluster_id TEXT, hb_node TEXT, seq BIGINT, cluster_name TEXT, node_id TEXT,
         launch_id TEXT, from_ts TEXT, to_ts TEXT, seconds DOUBLE PRECISION, price_per_hour DOUBLE PRECISION,
         usd DOUBLE PRECISION, kind TEXT)
    JOIN ins ON ins.cluster_id = c.cluster_id AND ins.node_id = c.hb_node AND ins.seq = c.seq
    ORDER BY c.cluster_id, c.node_id, c.launch_id, c.from_ts, c.kind
    ON CONFLICT DO NOTHING
)
SELECT 'new' AS what, cluster_id, node_id, seq FROM ins
UNION ALL
SELECT 'node', cluster_id, node_id, last_seq FROM upd";

/// Writes the heartbeats `written` (indices into `items`, one per key; `rows` are theirs) in
/// the caller's transaction. Returns the keys stored anew, and for each node with a row, its
/// `last_seq` after the update (nodes without a row are left to the caller).
pub(super) async fn write(
    conn: &mut AnyConnection,
    items: &[Item<'_>],
    written: &[usize],
    rows: &[HeartbeatRow<'_>],
    received: &str,
) -> Result<(HashSet<Key>, HashMap<(String, String), i64>), sqlx::Error> {
    let mut totals = Vec::with_capacity(written.len());
    let mut jobs = Vec::new();
    let mut costs = Vec::new();
    for &i in written {
        let (c, hb, _) = items[i];
        totals.push(NodeTotals::of(c, hb));
        jobs.extend(hb.jobs.iter().map(|j| JobRowIn::of(c, hb, j)));
        costs.extend(hb.cost.new_records.iter().map(|r| CostRowIn::of(c, hb, r)));
    }
    let out = sqlx::query(WRITE_BATCH)
        .bind(json_param(rows)?)
        .bind(received)
        .bind(json_param(&totals)?)
        .bind(json_param(&jobs)?)
        .bind(json_param(&costs)?)
        .fetch_all(&mut *conn)
        .await?;
    let mut new = HashSet::new();
    let mut newest = HashMap::new();
    for r in &out {
        let what: String = r.try_get("what")?;
        let (cluster, node, seq): (String, String, i64) = (r.try_get("cluster_id")?, r.try_get("node_id")?, r.try_get("seq")?);
        if what == "new" {
            new.insert((cluster, node, seq));
        } else {
            newest.insert((cluster, node), seq);
        }
    }
    Ok((new, newest))
}
