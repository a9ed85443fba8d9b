//! Heartbeats written in batches: one transaction, however many heartbeats the batch holds.
//! On PostgreSQL the whole batch is one statement ([`postgres`]); on SQLite (one local writer,
//! no round trips to save) one statement per table.
//!
//! Rows travel as one JSON array parameter per statement (`json_to_recordset` on PostgreSQL,
//! `json_each` on SQLite), so each statement has one shape whatever the batch size: prepared once
//! per connection, never a statement cache churned by VALUES lists of every length.

mod postgres;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::*;

/// What became of one heartbeat of a batch.
#[derive(Debug, Clone)]
pub enum BatchOutcome {
    /// No live cluster has this token.
    UnknownToken,
    /// The token is a live cluster's, but the heartbeat names another cluster.
    OtherCluster,
    /// Stored (or a duplicate of a stored one), for this cluster.
    Stored(ClusterRow, Ingested),
}

/// One heartbeat of a batch, as it reached the server.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatIn<'a> {
    /// The hash of the cluster token it came with.
    pub token_hash: &'a str,
    pub heartbeat: &'a Heartbeat,
    /// Its JSON as the agent sent it: stored as the row's body (not serialized again).
    pub body: &'a str,
}

/// (cluster id, node id, seq): what a heartbeat is deduplicated on.
type Key = (String, String, i64);

/// A heartbeat whose token was resolved: its cluster, itself, its body.
type Item<'a> = (&'a ClusterRow, &'a Heartbeat, &'a str);

#[derive(Serialize)]
struct HeartbeatRow<'a> {
    cluster_id: &'a str,
    node_id: &'a str,
    seq: i64,
    reason: String,
    created_at: String,
    accrued_usd: f64,
    idle_seconds: f64,
    body: &'a str,
}

/// A node's totals from a heartbeat (or the highest of a batch's new heartbeats of it).
#[derive(Serialize)]
struct NodeTotals<'a> {
    cluster_id: &'a str,
    node_id: &'a str,
    seq: i64,
    accrued_usd: f64,
    metered_seconds: f64,
    idle_seconds: f64,
}

impl<'a> NodeTotals<'a> {
    fn of(c: &'a ClusterRow, hb: &'a Heartbeat) -> Self {
        NodeTotals {
            cluster_id: &c.id,
            node_id: &hb.node_id,
            seq: hb.seq as i64,
            accrued_usd: hb.cost.accrued_usd,
            metered_seconds: hb.cost.metered_seconds,
            idle_seconds: hb.idle_seconds,
        }
    }
}

/// A job row, with the heartbeat (node, seq) that reported it.
#[derive(Serialize)]
struct JobRowIn<'a> {
    cluster_id: &'a str,
    node_id: &'a str,
    seq: i64,
    job_id: i64,
    node_rank: i64,
    name: Option<&'a str>,
    state: String,
    submitted_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    exit_code: Option<i64>,
    reason: Option<&'a str>,
}

impl<'a> JobRowIn<'a> {
    fn of(c: &'a ClusterRow, hb: &'a Heartbeat, j: &'a JobStatus) -> Self {
        JobRowIn {
            cluster_id: &c.id,
            node_id: &hb.node_id,
            seq: hb.seq as i64,
            job_id: j.id as i64,
            node_rank: hb.node_rank as i64,
            name: j.name.as_deref(),
            state: enum_text(&j.state),
            submitted_at: ts(&j.submitted_at),
            started_at: j.started_at.as_ref().map(ts),
            ended_at: j.ended_at.as_ref().map(ts),
            exit_code: j.exit_code.map(i64::from),
            reason: j.reason.as_deref(),
        }
    }
}

/// A cost ledger row, with the heartbeat (`hb_node`, seq) that carried it.
#[derive(Serialize)]
struct CostRowIn<'a> {
    cluster_id: &'a str,
    hb_node: &'a str,
    seq: i64,
    cluster_name: &'a str,
    node_id: &'a str,
    launch_id: &'a str,
    from_ts: String,
    to_ts: String,
    seconds: f64,
    price_per_hour: f64,
    usd: f64,
    kind: &'a str,
}

impl<'a> CostRowIn<'a> {
    fn of(c: &'a ClusterRow, hb: &'a Heartbeat, r: &'a CostRecord) -> Self {
        CostRowIn {
            cluster_id: &c.id,
            hb_node: &hb.node_id,
            seq: hb.seq as i64,
            cluster_name: &c.name,
            node_id: &r.node_id,
            launch_id: r.launch_id.as_deref().unwrap_or_default(),
            from_ts: ts(&r.from),
            to_ts: ts(&r.to),
            seconds: r.seconds,
            price_per_hour: r.price_per_hour,
            usd: r.usd,
            kind: &r.kind,
        }
    }
}

const CLUSTERS_BY_TOKEN_PG: &str = "SELECT * FROM clusters WHERE status != 'TERMINATED'
     AND token_hash IN (SELECT json_array_elements_text($1::json))";
const CLUSTERS_BY_TOKEN_SQLITE: &str = "SELECT * FROM clusters WHERE status != 'TERMINATED'
     AND token_hash IN (SELECT value FROM json_each($1))";

// `WHERE true`: SQLite's documented way to keep `ON CONFLICT` from parsing as a join constraint.
const INSERT_HEARTBEATS_SQLITE: &str = "INSERT INTO heartbeats
       (cluster_id, node_id, seq, reason, created_at, received_at, accrued_usd, idle_seconds, body)
     SELECT json_extract(value, '$.cluster_id'), json_extract(value, '$.node_id'), json_extract(value, '$.seq'),
            json_extract(value, '$.reason'), json_extract(value, '$.created_at'), $2,
            json_extract(value, '$.accrued_usd'), json_extract(value, '$.idle_seconds'), json_extract(value, '$.body')
     FROM json_each($1) WHERE true
     ON CONFLICT DO NOTHING RETURNING cluster_id, node_id, seq";


const UPDATE_NODES_SQLITE: &str = "UPDATE nodes SET last_heartbeat_at = $2, last_seq = MAX(nodes.last_seq, v.v_seq),
       accrued_usd = MAX(nodes.accrued_usd, v.v_usd), metered_seconds = MAX(nodes.metered_seconds, v.v_metered),
       idle_seconds = CASE WHEN v.v_seq >= nodes.last_seq THEN v.v_idle ELSE nodes.idle_seconds END
     FROM (SELECT json_extract(value, '$.cluster_id') AS v_cluster, json_extract(value, '$.node_id') AS v_node,
                  json_extract(value, '$.seq') AS v_seq, json_extract(value, '$.accrued_usd') AS v_usd,
                  json_extract(value, '$.metered_seconds') AS v_metered, json_extract(value, '$.idle_seconds') AS v_idle
           FROM json_each($1)) AS v
     WHERE nodes.cluster_id = v.v_cluster AND nodes.node_id = v.v_node
     RETURNING cluster_id, node_id, last_seq";

const UPSERT_JOBS_SQLITE: &str = "INSERT INTO jobs
       (cluster_id, job_id, node_rank, name, state, submitted_at, started_at, ended_at, exit_code, reason, updated_at)
     SELECT json_extract(value, '$.cluster_id'), json_extract(value, '$.job_id'), json_extract(value, '$.node_rank'),
            json_extract(value, '$.name'), json_extract(value, '$.state'), json_extract(value, '$.submitted_at'),
            json_extract(value, '$.started_at'), json_extract(value, '$.ended_at'), json_extract(value, '$.exit_code'),
            json_extract(value, '$.reason'), $2
     FROM json_each($1) WHERE true
     ON CONFLICT (cluster_id, job_id, node_rank) DO UPDATE SET name = excluded.name, state = excluded.state,
       submitted_at = excluded.submitted_at, started_at = excluded.started_at, ended_at = excluded.ended_at,
       exit_code = excluded.exit_code, reason = excluded.reason, updated_at = excluded.updated_at";

const INSERT_COSTS_SQLITE: &str = "INSERT INTO cost_ledger
       (cluster_id, cluster_name, node_id, launch_id, from_ts, to_ts, seconds, price_per_hour, usd, kind, source)
     SELECT json_extract(value, '$.cluster_id'), json_extract(value, '$.cluster_name'), json_extract(value, '$.node_id'),
            json_extract(value, '$.launch_id'), json_extract(value, '$.from_ts'), json_extract(value, '$.to_ts'),
            json_extract(value, '$.seconds'), json_extract(value, '$.price_per_hour'), json_extract(value, '$.usd'),
            json_extract(value, '$.kind'), $2
     FROM json_each($1) WHERE true
     ON CONFLICT DO NOTHING";

/// `items` as the one JSON parameter of a batch statement.
fn json_param<T: Serialize>(items: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(items).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl Store {
    fn pick(&self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Postgres => postgres,
            Dialect::Sqlite => sqlite,
        }
    }

    /// Stores a batch of heartbeats, each given with the hash of the cluster token it came with:
    /// the tokens are resolved (one query), then, in one transaction, every heartbeat whose token is a live
    /// cluster's and which names that cluster is stored as [`Store::ingest_heartbeat`] stores one.
    /// The outcomes are in the batch's order. An error means nothing of the batch was written.
    pub async fn ingest_heartbeats(&self, batch: &[HeartbeatIn<'_>]) -> Result<Vec<BatchOutcome>, StoreError> {
        // Resolved before the transaction, whose first statement then writes: a SQLite
        // transaction that read first could not become the writer once another had committed.
        let clusters = {
            let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
            self.clusters_by_token_hash(&mut conn, batch.iter().map(|h| h.token_hash)).await.map_err(|e| self.err(e))?
        };
        let mut outcomes = vec![BatchOutcome::UnknownToken; batch.len()];
        let mut accepted = Vec::with_capacity(batch.len());
        for (i, h) in batch.iter().enumerate() {
            match clusters.get(h.token_hash) {
                None => {}
                // A valid token of one cluster must not write into another.
                Some(c) if c.name != h.heartbeat.cluster => outcomes[i] = BatchOutcome::OtherCluster,
                Some(c) => accepted.push((i, c, h)),
            }
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        let items: Vec<Item> = accepted.iter().map(|(_, c, h)| (*c, h.heartbeat, h.body)).collect();
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let ingested = self.write_heartbeats(&mut tx, &items).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        for ((i, c, _), ingested) in accepted.iter().zip(ingested) {
            outcomes[*i] = BatchOutcome::Stored((*c).clone(), ingested);
        }
        Ok(outcomes)
    }

    /// Stores a heartbeat of `cluster` (deduplicated on node+seq), its jobs when it is the node's
    /// newest, and its new cost records, in one transaction. A duplicate changes nothing.
    pub async fn ingest_heartbeat(&self, cluster: &ClusterRow, hb: &Heartbeat) -> Result<Ingested, StoreError> {
        let body = serde_json::to_string(hb).map_err(|e| self.err(sqlx::Error::Encode(Box::new(e))))?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mut done = self.write_heartbeats(&mut tx, &[(cluster, hb, &body)]).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(done.pop().unwrap_or(Ingested::Duplicate))
    }

    /// The live clusters whose token hashes are among `hashes`, by hash.
    async fn clusters_by_token_hash<'h>(
        &self,
        conn: &mut AnyConnection,
        hashes: impl Iterator<Item = &'h str>,
    ) -> Result<HashMap<String, ClusterRow>, sqlx::Error> {
        let wanted: Vec<&str> = hashes.collect::<HashSet<_>>().into_iter().collect();
        let rows = sqlx::query(self.pick(CLUSTERS_BY_TOKEN_PG, CLUSTERS_BY_TOKEN_SQLITE))
            .bind(json_param(&wanted)?)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>("token_hash")?, Self::cluster_from_row(r)?))).collect()
    }

    /// Writes `items` inside the caller's transaction; what became of each, in order. A key
    /// twice in `items` is stored once: the later one is a duplicate.
    async fn write_heartbeats(&self, conn: &mut AnyConnection, items: &[Item<'_>]) -> Result<Vec<Ingested>, sqlx::Error> {
        let key = |(c, hb, _): &Item| -> Key { (c.id.clone(), hb.node_id.clone(), hb.seq as i64) };
        // The first of each key is written; a later one is a duplicate of it.
        let mut first_of: HashMap<Key, usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            first_of.entry(key(item)).or_insert(i);
        }
        let mut written: Vec<usize> = first_of.values().copied().collect();
        written.sort_unstable();
        if written.is_empty() {
            return Ok(Vec::new());
        }
        let received = now();

        let rows = written
            .iter()
            .map(|&i| {
                let (c, hb, body) = items[i];
                HeartbeatRow {
                    cluster_id: &c.id,
                    node_id: &hb.node_id,
                    seq: hb.seq as i64,
                    reason: enum_text(&hb.reason),
                    created_at: ts(&hb.created_at),
                    accrued_usd: hb.cost.accrued_usd,
                    idle_seconds: hb.idle_seconds,
                    body,
                }
            })
            .collect::<Vec<_>>();
        let new = match self.dialect {
            Dialect::Postgres => {
                let (new, newest) = postgres::write(conn, items, &written, &rows, &received).await?;
                let fresh: Vec<usize> = written.into_iter().filter(|&i| new.contains(&key(&items[i]))).collect();
                jobs_of_nodes_without_rows(conn, items, &fresh, &newest).await?;
                new
            }
            Dialect::Sqlite => {
                let inserted = sqlx::query(INSERT_HEARTBEATS_SQLITE).bind(json_param(&rows)?).bind(&received).fetch_all(&mut *conn).await?;
                let mut new: HashSet<Key> = HashSet::with_capacity(inserted.len());
                for r in &inserted {
                    new.insert((r.try_get("cluster_id")?, r.try_get("node_id")?, r.try_get("seq")?));
                }
                let fresh: Vec<usize> = written.into_iter().filter(|&i| new.contains(&key(&items[i]))).collect();
                if !fresh.is_empty() {
                    write_node_state_sqlite(conn, items, &fresh, &received).await?;
                }
                new
            }
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| if first_of.get(&key(item)) == Some(&i) && new.contains(&key(item)) { Ingested::New } else { Ingested::Duplicate })
            .collect())
    }

}

/// SQLite (one writer, no round trips to save): for the newly stored heartbeats `fresh`
/// (indices into `items`), node totals, the jobs of each node's newest heartbeat and the new cost
/// records, a statement each.
async fn write_node_state_sqlite(
    conn: &mut AnyConnection,
    items: &[Item<'_>],
    fresh: &[usize],
    received: &str,
) -> Result<(), sqlx::Error> {
    // Per node: the highest seq (and its idle time) and the highest totals among `fresh`.
    let mut nodes: BTreeMap<(&str, &str), NodeTotals> = BTreeMap::new();
    for &i in fresh {
        let (c, hb, _) = items[i];
        let t = nodes.entry((c.id.as_str(), hb.node_id.as_str())).or_insert_with(|| NodeTotals { seq: i64::MIN, ..NodeTotals::of(c, hb) });
        if hb.seq as i64 > t.seq {
            t.seq = hb.seq as i64;
            t.idle_seconds = hb.idle_seconds;
        }
        t.accrued_usd = t.accrued_usd.max(hb.cost.accrued_usd);
        t.metered_seconds = t.metered_seconds.max(hb.cost.metered_seconds);
    }
    let totals: Vec<&NodeTotals> = nodes.values().collect();
    let updated = sqlx::query(UPDATE_NODES_SQLITE).bind(json_param(&totals)?).bind(received).fetch_all(&mut *conn).await?;
    let mut newest: HashMap<(String, String), i64> = HashMap::with_capacity(updated.len());
    for r in &updated {
        newest.insert((r.try_get("cluster_id")?, r.try_get("node_id")?), r.try_get("last_seq")?);
    }
    // A node without a row (not registered by a launch) is judged by the heartbeats stored.
    for (c, n) in nodes.keys() {
        if !newest.contains_key(&(c.to_string(), n.to_string())) {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM heartbeats WHERE cluster_id = $1 AND node_id = $2")
                .bind(*c)
                .bind(*n)
                .fetch_one(&mut *conn)
                .await?;
            newest.insert((c.to_string(), n.to_string()), max.unwrap_or(0));
        }
    }

    // Jobs: only a node's newest heartbeat's view counts (the node row lock, held to commit,
    // orders one node's heartbeats across batches and replicas).
    let mut jobs: BTreeMap<(&str, i64, i64), JobRowIn> = BTreeMap::new();
    let mut costs: BTreeMap<(&str, &str, &str, String, &str), CostRowIn> = BTreeMap::new();
    for &i in fresh {
        let (c, hb, _) = items[i];
        if newest.get(&(c.id.clone(), hb.node_id.clone())) == Some(&(hb.seq as i64)) {
            for j in &hb.jobs {
                jobs.insert((&c.id, j.id as i64, hb.node_rank as i64), JobRowIn::of(c, hb, j));
            }
        }
        for r in &hb.cost.new_records {
            let row = CostRowIn::of(c, hb, r);
            costs.entry((&c.id, &r.node_id, row.launch_id, row.from_ts.clone(), &r.kind)).or_insert(row);
        }
    }
    if !jobs.is_empty() {
        let rows: Vec<&JobRowIn> = jobs.values().collect();
        sqlx::query(UPSERT_JOBS_SQLITE).bind(json_param(&rows)?).bind(received).execute(&mut *conn).await?;
    }
    if !costs.is_empty() {
        let rows: Vec<&CostRowIn> = costs.values().collect();
        sqlx::query(INSERT_COSTS_SQLITE).bind(json_param(&rows)?).bind("heartbeat").execute(&mut *conn).await?;
    }
    Ok(())
}

/// PostgreSQL: the jobs of the newly stored heartbeats `fresh` of nodes without a row (not
/// registered by a launch; the batch statement wrote those of the others), judged newest by the
/// heartbeats stored.
async fn jobs_of_nodes_without_rows(
    conn: &mut AnyConnection,
    items: &[Item<'_>],
    fresh: &[usize],
    newest: &HashMap<(String, String), i64>,
) -> Result<(), sqlx::Error> {
    let mut checked: HashMap<(String, String), i64> = HashMap::new();
    for &i in fresh {
        let (c, hb, _) = items[i];
        let node = (c.id.clone(), hb.node_id.clone());
        if newest.contains_key(&node) {
            continue;
        }
        let max = match checked.get(&node) {
            Some(m) => *m,
            None => {
                let m: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM heartbeats WHERE cluster_id = $1 AND node_id = $2")
                    .bind(&c.id)
                    .bind(&hb.node_id)
                    .fetch_one(&mut *conn)
                    .await?;
                *checked.entry(node).or_insert(m.unwrap_or(0))
            }
        };
        if max == hb.seq as i64 {
            Store::upsert_jobs_in(conn, &c.id, hb.node_rank, &hb.jobs).await?;
        }
    }
    Ok(())
}
