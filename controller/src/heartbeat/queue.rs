//! The ingest queue: the heartbeats that reach one replica together are written together, in
//! one transaction ([`Store::ingest_heartbeats`]), and each is answered by what became of its
//! own row.
//!
//! Group commit, with no timer: a batch is whatever queued while the batch before it was being
//! written, so a lone heartbeat is written at once and batches grow only with load. One batch of
//! a replica is written at a time, on either database: a second writer per replica split the
//! queue into batches half the size, and as a transaction's cost is mostly fixed, that cut the
//! three-replica ingest rate nearly in half (scripts/bench-replicas.sh, 2026-12-03, 3 × 16
//! connections: 3,767 heartbeats/s with 2 writers, 6,583 with 1). Batches of different replicas
//! take their locks in one order, so they never deadlock each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use skycat_protocol::Heartbeat;
use tokio::sync::{mpsc, oneshot};

use crate::store::{BatchOutcome, HeartbeatIn, Store};

/// The most heartbeats one transaction writes.
pub const MAX_BATCH: usize = 256;
/// Heartbeats waiting beyond this make the requests that bring more wait (back-pressure, not
/// memory growth).
const QUEUE_DEPTH: usize = 8 * MAX_BATCH;

/// Batches this process wrote: `/metrics`' `skycat_heartbeat_batches_total` (ingested ÷ batches
/// is the mean batch size).
pub static BATCHES: AtomicU64 = AtomicU64::new(0);

type Reply = Result<BatchOutcome, String>;

struct Pending {
    token_hash: String,
    heartbeat: Arc<Heartbeat>,
    body: String,
    reply: oneshot::Sender<Reply>,
}

/// One replica's queue (cheap to clone). Its writer task starts with the first heartbeat, in
/// the runtime that brings it, and ends when the last clone is dropped.
#[derive(Clone)]
pub struct IngestQueue {
    store: Store,
    sender: Arc<OnceLock<mpsc::Sender<Pending>>>,
    batches: Arc<AtomicU64>,
}

impl IngestQueue {
    pub fn new(store: Store) -> Self {
        IngestQueue { store, sender: Arc::new(OnceLock::new()), batches: Arc::new(AtomicU64::new(0)) }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Batches this queue has written.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Queues `heartbeat` (which came with the token whose hash is `token_hash`, as the JSON
    /// `body`) and waits until the batch holding it is committed. `Err` is the store's failure:
    /// nothing of it was written.
    pub async fn submit(&self, token_hash: String, heartbeat: Arc<Heartbeat>, body: String) -> Reply {
        let sender = self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            tokio::spawn(write_batches(self.store.clone(), rx, self.batches.clone()));
            tx
        });
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending { token_hash, heartbeat, body, reply })
            .await
            .map_err(|_| "the heartbeat writer has stopped".to_string())?;
        answer.await.map_err(|_| "the heartbeat writer stopped before answering".to_string())?
    }
}

/// The writer: takes what has queued (up to [`MAX_BATCH`]), writes it, and again.
async fn write_batches(store: Store, mut queue: mpsc::Receiver<Pending>, batches: Arc<AtomicU64>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        write(&store, batch).await;
        batches.fetch_add(1, Ordering::Relaxed);
        BATCHES.fetch_add(1, Ordering::Relaxed);
    }
}

async fn write(store: &Store, batch: Vec<Pending>) {
    let replies = outcomes(store, &batch).await;
    for (p, reply) in batch.into_iter().zip(replies) {
        // A requester that has gone (its client hung up) needs no answer.
        let _ = p.reply.send(reply);
    }
}

/// What to answer each heartbeat of `batch`, in order.
async fn outcomes(store: &Store, batch: &[Pending]) -> Vec<Reply> {
    let items: Vec<HeartbeatIn> =
        batch.iter().map(|p| HeartbeatIn { token_hash: &p.token_hash, heartbeat: &p.heartbeat, body: &p.body }).collect();
    match store.ingest_heartbeats(&items).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        // One heartbeat the database refuses must not fail the others: each alone. (When the
        // database is unreachable each would fail the same way, so all are told at once.)
        Err(e) if items.len() > 1 && !e.is_unavailable() => {
            tracing::warn!("a batch of {} heartbeats was refused ({e}); writing each alone", items.len());
            let mut replies = Vec::with_capacity(items.len());
            for item in &items {
                let one = store.ingest_heartbeats(std::slice::from_ref(item)).await;
                replies.push(match one {
                    Ok(mut o) => o.pop().ok_or_else(|| "the store answered no outcome".to_string()),
                    Err(e) => Err(e.to_string()),
                });
            }
            replies
        }
        Err(e) => vec![Err(e.to_string()); items.len()],
    }
}
