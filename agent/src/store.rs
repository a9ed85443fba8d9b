//! The agent's durable state: an append-only journal of entries (written and fsynced BEFORE the
//! daemon acts on them) plus an atomic snapshot. Loading = snapshot + journal entries after it.
//! The cost ledger (ledger.jsonl) is its own append-only journal.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use skycat_protocol::{
    CostRecord, InterruptionNotice, JobEvent, JobId, JobSpec, JobState, JobStatus, SetupSpec,
    SetupState, SetupStatus,
};

use crate::util;

/// Paths inside the state dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn pid(&self) -> PathBuf {
        self.root.join("agent.pid")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn journal(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }
    pub fn ledger(&self) -> PathBuf {
        self.state_dir().join("ledger.jsonl")
    }
    pub fn outbox(&self) -> PathBuf {
        self.state_dir().join("outbox.jsonl")
    }
    pub fn outbox_acked(&self) -> PathBuf {
        self.state_dir().join("outbox.acked")
    }
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn job_log(&self, key: &str) -> PathBuf {
        self.logs_dir().join(format!("{key}.log"))
    }
    pub fn exit_file(&self, key: &str) -> PathBuf {
        self.jobs_dir().join(format!("{key}.exit"))
    }
    pub fn pid_file(&self, key: &str) -> PathBuf {
        self.jobs_dir().join(format!("{key}.pid"))
    }
    pub fn secret_envs(&self, key: &str) -> PathBuf {
        self.secrets_dir().join(format!("{key}.env.json"))
    }
    pub fn secret_values(&self, key: &str) -> PathBuf {
        self.secrets_dir().join(format!("{key}.values"))
    }
    pub fn default_workdir(&self) -> PathBuf {
        self.root.join("workdir")
    }
    pub fn create_all(&self) -> Result<()> {
        util::ensure_dir(&self.root, 0o700)?;
        util::ensure_dir(&self.state_dir(), 0o700)?;
        util::ensure_dir(&self.jobs_dir(), 0o700)?;
        util::ensure_dir(&self.logs_dir(), 0o700)?;
        util::ensure_dir(&self.secrets_dir(), 0o700)?;
        Ok(())
    }
}

/// One job as stored (spec with secrets redacted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub status: JobStatus,
    pub spec: JobSpec,
    /// Set when cancel was requested while it ran.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Set when an interruption notice stopped it.
    #[serde(default)]
    pub interrupt_requested: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupRecord {
    pub status: SetupStatus,
    #[serde(default)]
    pub spec: Option<SetupSpec>,
    #[serde(default)]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    pub launch_id: Option<String>,
    pub price_per_hour: f64,
    pub pinned_at: DateTime<Utc>,
}

/// Everything durable except the ledger and the heartbeat outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Seq of the last journal entry folded into this state.
    pub journal_seq: u64,
    pub next_job_id: JobId,
    pub jobs: BTreeMap<JobId, JobRecord>,
    pub setup: SetupRecord,
    pub pin: Option<Pin>,
    /// Highest heartbeat seq made.
    pub hb_seq: u64,
    /// Start of the current idle period (None while busy).
    pub idle_since: Option<DateTime<Utc>>,
    pub autostop_fired_at: Option<DateTime<Utc>>,
    pub notice: Option<InterruptionNotice>,
    /// Job transitions not yet carried by a heartbeat.
    pub pending_events: Vec<JobEvent>,
}

impl State {
    pub fn new(paths: &Paths) -> Self {
        State {
            journal_seq: 0,
            next_job_id: 1,
            jobs: BTreeMap::new(),
            setup: SetupRecord {
                status: SetupStatus {
                    state: SetupState::None,
                    launch_id: None,
                    started_at: None,
                    ended_at: None,
                    exit_code: None,
                    reason: None,
                    log_path: paths.job_log("setup").display().to_string(),
                },
                spec: None,
                pid: None,
            },
            pin: None,
            hb_seq: 0,
            idle_since: None,
            autostop_fired_at: None,
            notice: None,
            pending_events: Vec::new(),
        }
    }

    pub fn busy(&self) -> bool {
        matches!(
            self.setup.status.state,
            SetupState::Pending | SetupState::Running
        ) || self.jobs.values().any(|j| !j.status.state.is_terminal())
    }

    pub fn gpus_in_use(&self) -> f64 {
        self.jobs
            .values()
            .filter(|j| j.status.state == JobState::Running)
            .fold(0.0, |acc, j| acc + j.status.gpus)
    }
}

/// A journal entry: one durable state change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Pinned {
        pin: Pin,
    },
    NewLaunch {
        launch_id: Option<String>,
    },
    SetupSubmitted {
        spec: SetupSpec,
        launch_id: Option<String>,
        at: DateTime<Utc>,
    },
    SetupStarting {
        at: DateTime<Utc>,
    },
    SetupRunning {
        pid: u32,
    },
    SetupEnded {
        state: SetupState,
        exit_code: Option<i32>,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    JobSubmitted {
        record: Box<JobRecord>,
    },
    JobStarting {
        id: JobId,
        at: DateTime<Utc>,
        #[serde(default)]
        gpu_ids: Vec<u32>,
    },
    JobRunning {
        id: JobId,
        pid: u32,
    },
    JobCancelRequested {
        id: JobId,
    },
    JobInterruptRequested {
        id: JobId,
    },
    JobEnded {
        id: JobId,
        state: JobState,
        exit_code: Option<i32>,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    HeartbeatMade {
        seq: u64,
    },
    IdleSince {
        at: Option<DateTime<Utc>>,
    },
    AutostopFired {
        at: DateTime<Utc>,
    },
    Notice {
        notice: InterruptionNotice,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    seq: u64,
    entry: Entry,
}

fn event(
    state: &mut State,
    job_id: JobId,
    st: JobState,
    at: DateTime<Utc>,
    exit_code: Option<i32>,
    reason: Option<String>,
) {
    state.pending_events.push(JobEvent {
        job_id,
        state: st,
        at,
        exit_code,
        reason,
    });
    // Bound the backlog: the jobs list in every heartbeat carries the current truth anyway.
    if state.pending_events.len() > 1000 {
        let drop = state.pending_events.len() - 1000;
        state.pending_events.drain(..drop);
    }
}

/// Folds one entry into the state. Pure: no IO, used live and on replay.
pub fn apply(state: &mut State, entry: &Entry) {
    match entry {
        Entry::Pinned { pin } => state.pin = Some(pin.clone()),
        Entry::NewLaunch { launch_id } => {
            let log_path = state.setup.status.log_path.clone();
            state.setup = SetupRecord {
                status: SetupStatus {
                    state: SetupState::None,
                    launch_id: launch_id.clone(),
                    started_at: None,
                    ended_at: None,
                    exit_code: None,
                    reason: None,
                    log_path,
                },
                spec: None,
                pid: None,
            };
        }
        Entry::SetupSubmitted {
            spec, launch_id, ..
        } => {
            state.setup.spec = Some(spec.clone());
            state.setup.pid = None;
            let s = &mut state.setup.status;
            s.state = SetupState::Pending;
            s.launch_id = launch_id.clone();
            s.started_at = None;
            s.ended_at = None;
            s.exit_code = None;
            s.reason = None;
        }
        Entry::SetupStarting { at } => {
            state.setup.status.state = SetupState::Running;
            state.setup.status.started_at = Some(*at);
        }
        Entry::SetupRunning { pid } => state.setup.pid = Some(*pid),
        Entry::SetupEnded {
            state: st,
            exit_code,
            reason,
            at,
        } => {
            let s = &mut state.setup.status;
            s.state = *st;
            s.exit_code = *exit_code;
            s.reason = reason.clone();
            s.ended_at = Some(*at);
            state.setup.pid = None;
        }
        Entry::JobSubmitted { record } => {
            let id = record.status.id;
            state.next_job_id = state.next_job_id.max(id + 1);
            let at = record.status.submitted_at;
            state.jobs.insert(id, (**record).clone());
            event(state, id, JobState::Pending, at, None, None);
        }
        Entry::JobStarting { id, at, gpu_ids } => {
            if let Some(j) = state.jobs.get_mut(id) {
                j.status.state = JobState::Running;
                j.status.started_at = Some(*at);
                j.status.gpu_ids = gpu_ids.clone();
                event(state, *id, JobState::Running, *at, None, None);
            }
        }
        Entry::JobRunning { id, pid } => {
            if let Some(j) = state.jobs.get_mut(id) {
                j.status.pid = Some(*pid);
            }
        }
        Entry::JobCancelRequested { id } => {
            if let Some(j) = state.jobs.get_mut(id) {
                j.cancel_requested = true;
            }
        }
        Entry::JobInterruptRequested { id } => {
            if let Some(j) = state.jobs.get_mut(id) {
                j.interrupt_requested = true;
            }
        }
        Entry::JobEnded {
            id,
            state: st,
            exit_code,
            reason,
            at,
        } => {
            if let Some(j) = state.jobs.get_mut(id) {
                j.status.state = *st;
                j.status.exit_code = *exit_code;
                j.status.reason = reason.clone();
                j.status.ended_at = Some(*at);
                j.status.pid = None;
                event(state, *id, *st, *at, *exit_code, reason.clone());
            }
        }
        Entry::HeartbeatMade { seq } => {
            state.hb_seq = state.hb_seq.max(*seq);
            state.pending_events.clear();
        }
        Entry::IdleSince { at } => {
            state.idle_since = *at;
            if at.is_none() {
                state.autostop_fired_at = None;
            }
        }
        Entry::AutostopFired { at } => state.autostop_fired_at = Some(*at),
        Entry::Notice { notice } => state.notice = Some(notice.clone()),
    }
}

/// The durable store. Only the daemon (holding the lock) writes; other commands read.
pub struct Store {
    pub paths: Paths,
    pub state: State,
    dirty: bool,
}

impl Store {
    /// Loads snapshot + journal. Works read-only too (for `status` without a daemon).
    pub fn load(paths: &Paths) -> Result<Store> {
        let mut state = match fs::read_to_string(paths.snapshot()) {
            Ok(text) => serde_json::from_str::<State>(&text)
                .with_context(|| format!("corrupt snapshot {}", paths.snapshot().display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(paths),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", paths.snapshot().display()))
            }
        };
        let lines: Vec<JournalLine> = util::read_jsonl(&paths.journal())?;
        for line in lines {
            if line.seq > state.journal_seq {
                apply(&mut state, &line.entry);
                state.journal_seq = line.seq;
            }
        }
        Ok(Store {
            paths: paths.clone(),
            state,
            dirty: false,
        })
    }

    /// Journals `entry` (fsync), then applies it. Call before acting on it.
    pub fn commit(&mut self, entry: Entry) -> Result<()> {
        let seq = self.state.journal_seq + 1;
        let line = serde_json::to_string(&JournalLine { seq, entry })?;
        util::append_line(&self.paths.journal(), &line)?;
        let JournalLine { entry, .. } = serde_json::from_str(&line)?;
        apply(&mut self.state, &entry);
        self.state.journal_seq = seq;
        self.dirty = true;
        Ok(())
    }

    /// Writes the snapshot if anything changed; trims the journal once it is folded in.
    pub fn checkpoint(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let text = serde_json::to_vec(&self.state)?;
        util::write_atomic(&self.paths.snapshot(), &text, 0o600)?;
        self.dirty = false;
        let journal = self.paths.journal();
        if fs::metadata(&journal)
            .map(|m| m.len() > 64 * 1024)
            .unwrap_or(false)
        {
            // Every entry is in the snapshot just written (entries replay only if seq > snapshot's).
            util::write_atomic(&journal, b"", 0o600)?;
        }
        Ok(())
    }
}

/// Reads the whole cost ledger.
pub fn read_ledger(paths: &Paths) -> Result<Vec<CostRecord>> {
    util::read_jsonl(&paths.ledger())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_replays_after_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.create_all().unwrap();
        let mut store = Store::load(&paths).unwrap();
        store
            .commit(Entry::IdleSince {
                at: Some(Utc::now()),
            })
            .unwrap();
        store.checkpoint().unwrap();
        store.commit(Entry::HeartbeatMade { seq: 7 }).unwrap();
        // No checkpoint: the entry is only in the journal.
        let again = Store::load(&paths).unwrap();
        assert_eq!(again.state.hb_seq, 7);
        assert!(again.state.idle_since.is_some());
        assert_eq!(again.state.journal_seq, 2);
    }
}
