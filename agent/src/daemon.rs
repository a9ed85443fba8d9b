//! The daemon: one loop over (socket requests, child exits, timer, metadata notices).
//! Every state change goes through `Store::commit` (journal + fsync) before it is acted on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as stdmpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use skycat_protocol::{
    is_secret_env, AgentConfig, AgentStatus, AutostopStatus, CostRecord, CostSummary, GpuFact,
    Heartbeat, HeartbeatReason, InterruptionNotice, JobId, JobSpec, JobState, JobStatus,
    MetadataKind, SetupSpec, SetupState, REDACTED,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, Entry, JobRecord, Paths, Pin, Store};
use crate::util::secs;
use crate::{facts, http, util};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{} {}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"), format!($($arg)*))
    };
}

/// Requests on the Unix socket (one JSON line each way).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Status,
    Submit { job: JobSpec },
    Setup { spec: SetupSpec },
    Cancel { id: JobId },
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Setup,
    Job(JobId),
}

impl Key {
    fn name(self) -> String {
        match self {
            Key::Setup => "setup".into(),
            Key::Job(id) => id.to_string(),
        }
    }
}

enum Msg {
    Request(Request, oneshot::Sender<Value>),
    Exited(Key, Option<i32>),
    Notice(InterruptionNotice),
}

/// Bash wrapper around a job's `run`: records its pid, runs `bash -c RUN` with output appended
/// to the log (through the redacting filter when there are secrets), then writes the exit code.
/// Args: $0 marker, $1 run, $2 log, $3 exit file, $4 pid file, $5 agent binary, $6 secret values.
const WRAPPER: &str = r#"trap 'true' TERM INT HUP
printf '%s\n' "$$" > "$4"
if [ -n "$6" ]; then
  bash -c "$1" < /dev/null 2>&1 | "$5" log-filter --values "$6" >> "$2"
  rc=${PIPESTATUS[0]}
else
  bash -c "$1" < /dev/null >> "$2" 2>&1
  rc=$?
fi
printf '%s\n' "$rc" > "$3.tmp" && mv -f "$3.tmp" "$3"
exit "$rc"
"#;

pub fn marker(paths: &Paths, key: &str) -> String {
    format!("skycat-job:{}:{}", paths.root.display(), key)
}

pub struct Daemon {
    cfg: AgentConfig,
    paths: Paths,
    store: Store,
    started_at: DateTime<Utc>,
    tx: mpsc::UnboundedSender<Msg>,
    /// Processes from before a restart: not our children, polled.
    adopted: BTreeSet<Key>,
    kill_deadlines: Vec<(Instant, Key, u32)>,
    next_hb: Instant,
    hb_tx: Option<stdmpsc::Sender<(u64, String)>>,
    acked: Arc<AtomicU64>,
    gpus: Arc<Mutex<Vec<GpuFact>>>,
    last_metered_at: DateTime<Utc>,
    metered_seconds: f64,
    accrued_usd: f64,
    new_cost_records: Vec<CostRecord>,
    agent_bin: PathBuf,
    stopping: bool,
    _lock: File,
}

fn elapsed_secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

pub fn load_config(paths: &Paths) -> Result<AgentConfig> {
    let text = fs::read_to_string(paths.config())
        .with_context(|| format!("cannot read {}", paths.config().display()))?;
    let mut cfg: AgentConfig = skycat_protocol::from_json("agent config", &text)
        .map_err(|e| anyhow!("{}: {e}", paths.config().display()))?;
    // Validated above; stored as 64 lowercase hex digits from here on.
    if let Some(pin) = cfg.server_cert_sha256.take() {
        cfg.server_cert_sha256 = Some(
            skycat_protocol::normalize_cert_sha256(&pin)
                .map_err(|m| anyhow!("{}: server_cert_sha256 {m}", paths.config().display()))?,
        );
    }
    Ok(cfg)
}

/// Format a GPU count the way SkyPilot does for SKYPILOT_NUM_GPUS_PER_NODE (rounded up).
fn gpu_count_env(g: f64) -> String {
    format!("{}", g.ceil() as u64)
}

impl Daemon {
    pub async fn run(root: &Path) -> Result<()> {
        let paths = Paths::new(root);
        paths.create_all()?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(paths.lock())
            .with_context(|| format!("cannot open {}", paths.lock().display()))?;
        // A daemon killed a moment ago may still hold the lock while its threads exit: wait a
        // little before calling it a second daemon.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !util::try_lock(&lock) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !util::try_lock(&lock) {
            let pid = fs::read_to_string(paths.pid()).unwrap_or_default();
            bail!(
                "another skycat-agent daemon (pid {}) is running on {}",
                pid.trim(),
                root.display()
            );
        }
        let cfg = load_config(&paths)?;
        util::write_atomic(
            &paths.pid(),
            format!("{}\n", std::process::id()).as_bytes(),
            0o644,
        )?;
        let store = Store::load(&paths)?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let now = Utc::now();
        let agent_bin = std::env::current_exe().context("cannot find own executable")?;
        let mut d = Daemon {
            next_hb: Instant::now(),
            cfg,
            paths: paths.clone(),
            store,
            started_at: now,
            tx: tx.clone(),
            adopted: BTreeSet::new(),
            kill_deadlines: Vec::new(),
            hb_tx: None,
            acked: Arc::new(AtomicU64::new(0)),
            gpus: Arc::new(Mutex::new(Vec::new())),
            last_metered_at: now,
            metered_seconds: 0.0,
            accrued_usd: 0.0,
            new_cost_records: Vec::new(),
            agent_bin,
            stopping: false,
            _lock: lock,
        };
        log!(
            "skycat-agent {AGENT_VERSION} (protocol {}) starting: cluster {} node {} pid {}",
            skycat_protocol::PROTOCOL_VERSION,
            d.cfg.cluster_name,
            d.cfg.node_id(),
            std::process::id()
        );
        d.pin_launch()?;
        d.load_ledger()?;
        d.recover()?;
        d.store.checkpoint()?;
        d.start_threads()?;

        let _ = fs::remove_file(paths.socket());
        let listener = UnixListener::bind(paths.socket())
            .with_context(|| format!("cannot listen on {}", paths.socket().display()))?;
        fs::set_permissions(paths.socket(), fs::Permissions::from_mode(0o600))?;

        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

        d.heartbeat(HeartbeatReason::Startup)?;
        d.housekeeping()?;
        loop {
            let wait = d.tick();
            tokio::select! {
                Some(msg) = rx.recv() => d.handle(msg)?,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let tx = tx.clone();
                        tokio::spawn(serve_connection(stream, tx));
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = sigterm.recv() => { log!("SIGTERM: stopping"); d.stopping = true; }
                _ = sigint.recv() => { log!("SIGINT: stopping"); d.stopping = true; }
            }
            d.housekeeping()?;
            if d.stopping {
                break;
            }
        }
        // Let the connection that asked for `stop` get its answer.
        tokio::time::sleep(Duration::from_millis(30)).await;
        d.shutdown()
    }

    /// How long the loop may sleep.
    fn tick(&self) -> Duration {
        let now = Instant::now();
        let mut wait = self
            .next_hb
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        if !self.adopted.is_empty() || !self.kill_deadlines.is_empty() {
            wait = wait.min(Duration::from_millis(200));
        }
        if let Some(limit) = self.cfg.idle_limit_secs() {
            wait = wait.min(secs((limit / 4.0).max(0.05)));
        }
        wait
    }

    // ------------------------------------------------------------------ start-up

    fn pin_launch(&mut self) -> Result<()> {
        let launch = self.cfg.launch_id.clone();
        let same = self
            .store
            .state
            .pin
            .as_ref()
            .map(|p| p.launch_id == launch)
            .unwrap_or(false);
        if !same {
            let had_pin = self.store.state.pin.is_some();
            self.store.commit(Entry::Pinned {
                pin: Pin {
                    launch_id: launch.clone(),
                    price_per_hour: self.cfg.price_per_hour,
                    pinned_at: Utc::now(),
                },
            })?;
            if had_pin {
                self.store.commit(Entry::NewLaunch { launch_id: launch })?;
            }
        }
        Ok(())
    }

    fn pin(&self) -> Pin {
        self.store.state.pin.clone().unwrap_or(Pin {
            launch_id: self.cfg.launch_id.clone(),
            price_per_hour: self.cfg.price_per_hour,
            pinned_at: self.started_at,
        })
    }

    /// Totals from the ledger (this launch), then bills the time the agent was down if the node
    /// did not reboot meanwhile (it was billed by the provider all the same).
    fn load_ledger(&mut self) -> Result<()> {
        let pin = self.pin();
        let records = store::read_ledger(&self.paths)?;
        let mut last = pin.pinned_at;
        for r in records.iter().filter(|r| r.launch_id == pin.launch_id) {
            self.metered_seconds += r.seconds;
            self.accrued_usd += r.usd;
            last = last.max(r.to);
        }
        let now = Utc::now();
        let from = match util::boot_time() {
            Some(boot) if boot > last => boot,
            _ => last,
        };
        self.last_metered_at = from.min(now);
        if elapsed_secs(from, now) > 0.0 {
            self.meter(now, "gap")?;
        }
        self.last_metered_at = now;
        Ok(())
    }

    /// Re-adopts or truthfully ends whatever was running when the previous daemon died.
    fn recover(&mut self) -> Result<()> {
        let mut keys = Vec::new();
        if self.store.state.setup.status.state == SetupState::Running {
            keys.push((Key::Setup, self.store.state.setup.pid));
        }
        for (id, j) in &self.store.state.jobs {
            if j.status.state == JobState::Running {
                keys.push((Key::Job(*id), j.status.pid));
            }
        }
        for (key, pid) in keys {
            let name = key.name();
            if let Some(code) = self.read_exit_file(&name) {
                log!("recover: {name} ended while the agent was down, exit {code}");
                self.finish(key, Some(code), None)?;
                continue;
            }
            let pid = pid
                .or_else(|| {
                    fs::read_to_string(self.paths.pid_file(&name))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                })
                .filter(|p| self.ours(*p, &name))
                .or_else(|| find_by_marker(&marker(&self.paths, &name)));
            match pid {
                Some(pid) => {
                    log!("recover: {name} still running as pid {pid}: adopted");
                    match key {
                        Key::Setup => self.store.commit(Entry::SetupRunning { pid })?,
                        Key::Job(id) => self.store.commit(Entry::JobRunning { id, pid })?,
                    }
                    self.adopted.insert(key);
                }
                None => {
                    log!("recover: {name} lost (no process, no exit status)");
                    self.finish(key, None, Some("agent restarted, job process lost".into()))?;
                }
            }
        }
        Ok(())
    }

    fn ours(&self, pid: u32, name: &str) -> bool {
        util::pid_alive(pid)
            && util::pid_cmdline(pid)
                .map(|c| c.contains(&marker(&self.paths, name)))
                .unwrap_or(false)
    }

    fn read_exit_file(&self, name: &str) -> Option<i32> {
        fs::read_to_string(self.paths.exit_file(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn start_threads(&mut self) -> Result<()> {
        // GPU facts: probe once; refresh every minute only if nvidia-smi works.
        let gpus = self.gpus.clone();
        std::thread::spawn(move || loop {
            let found = facts::probe_gpus();
            let any = !found.is_empty();
            if let Ok(mut g) = gpus.lock() {
                *g = found;
            }
            if !any {
                return;
            }
            std::thread::sleep(Duration::from_secs(60));
        });

        // Heartbeat sender: delivers the outbox in seq order.
        let acked_now: u64 = fs::read_to_string(self.paths.outbox_acked())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        self.acked.store(acked_now, Ordering::SeqCst);
        #[derive(Deserialize)]
        struct SeqOnly {
            seq: u64,
        }
        let mut pending = VecDeque::new();
        let mut max_seq = acked_now;
        if let Ok(text) = fs::read_to_string(self.paths.outbox()) {
            for line in text.lines() {
                if let Ok(s) = serde_json::from_str::<SeqOnly>(line) {
                    max_seq = max_seq.max(s.seq);
                    if s.seq > acked_now {
                        pending.push_back((s.seq, line.to_string()));
                    }
                }
            }
        }
        if max_seq > self.store.state.hb_seq {
            self.store.commit(Entry::HeartbeatMade { seq: max_seq })?;
        }
        if let Some(url) = self.cfg.server_url.clone() {
            let (htx, hrx) = stdmpsc::channel();
            self.hb_tx = Some(htx);
            let url = format!(
                "{}{}",
                url.trim_end_matches('/'),
                skycat_protocol::HEARTBEAT_PATH
            );
            let token = self.cfg.token.clone().unwrap_or_default();
            let pin = self.cfg.server_cert_sha256.clone();
            let acked = self.acked.clone();
            let acked_path = self.paths.outbox_acked();
            let retry = secs(self.cfg.heartbeat_interval_secs.min(5.0));
            if !pending.is_empty() {
                log!(
                    "{} heartbeats from before the restart await delivery",
                    pending.len()
                );
            }
            std::thread::spawn(move || {
                sender(url, token, pin, hrx, acked, acked_path, pending, retry)
            });
        }

        // Interruption notices.
        if let Some(url) = self.cfg.metadata_url.clone() {
            let kind = self.cfg.metadata_kind();
            let every = secs(self.cfg.metadata_poll_secs);
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                let mut warned = false;
                loop {
                    match check_metadata(&url, kind) {
                        Ok(Some(notice)) => {
                            let _ = tx.send(Msg::Notice(notice));
                            return;
                        }
                        Ok(None) => warned = false,
                        Err(e) => {
                            if !warned {
                                log!("metadata poll failed: {e:#}");
                                warned = true;
                            }
                        }
                    }
                    std::thread::sleep(every);
                }
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ events

    fn handle(&mut self, msg: Msg) -> Result<()> {
        match msg {
            Msg::Request(req, reply) => {
                let stop = matches!(req, Request::Stop);
                let answer = match self.request(req) {
                    Ok(data) => json!({"ok": true, "data": data}),
                    Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
                };
                let _ = reply.send(answer);
                if stop {
                    self.stopping = true;
                }
            }
            Msg::Exited(key, status_code) => {
                let code = self.read_exit_file(&key.name()).or(status_code);
                self.finish(key, code, None)?;
            }
            Msg::Notice(notice) => self.on_notice(notice)?,
        }
        Ok(())
    }

    fn request(&mut self, req: Request) -> Result<Value> {
        match req {
            Request::Ping => Ok(json!({"pid": std::process::id(), "agent_version": AGENT_VERSION})),
            Request::Status => Ok(serde_json::to_value(self.status())?),
            Request::Submit { job } => self.submit(job),
            Request::Setup { spec } => self.submit_setup(spec),
            Request::Cancel { id } => self.cancel(id),
            Request::Stop => Ok(json!({"stopped": true})),
        }
    }

    /// Stores secret envs (names that look secret, and `named` ones) in a 0600 file and returns
    /// the envs with secrets redacted.
    fn split_secrets(
        &self,
        name: &str,
        envs: &BTreeMap<String, String>,
        named: &[String],
    ) -> Result<BTreeMap<String, String>> {
        let secrets: BTreeMap<&String, &String> = envs
            .iter()
            .filter(|(k, _)| is_secret_env(k) || named.contains(k))
            .collect();
        let path = self.paths.secret_envs(name);
        if secrets.is_empty() {
            let _ = fs::remove_file(&path);
        } else {
            util::write_atomic(&path, &serde_json::to_vec(&secrets)?, 0o600)?;
        }
        Ok(skycat_protocol::redact_secrets(envs, named))
    }

    fn submit(&mut self, mut spec: JobSpec) -> Result<Value> {
        skycat_protocol::check_version("job spec", spec.protocol_version)?;
        if !(spec.gpus.is_finite() && spec.gpus >= 0.0) {
            bail!("job spec: field `gpus` must be a number >= 0");
        }
        if let Some(sid) = &spec.submission_id {
            if let Some(j) = self
                .store
                .state
                .jobs
                .values()
                .find(|j| j.spec.submission_id.as_ref() == Some(sid))
            {
                return Ok(json!({"job_id": j.status.id, "duplicate": true}));
            }
        }
        if spec.gpus > self.cfg.gpus_per_node + 1e-9 {
            bail!(
                "job needs {} GPUs but this node offers {} (gpus_per_node)",
                spec.gpus,
                self.cfg.gpus_per_node
            );
        }
        let id = self.store.state.next_job_id;
        spec.envs = self.split_secrets(&id.to_string(), &spec.envs, &spec.secret_envs)?;
        let task_id = spec.task_id.clone().or_else(|| self.cfg.task_id.clone());
        let record = JobRecord {
            status: JobStatus {
                id,
                name: spec.name.clone(),
                state: JobState::Pending,
                gpus: spec.gpus,
                task_id,
                recovery_count: spec.recovery_count,
                submitted_at: Utc::now(),
                started_at: None,
                ended_at: None,
                exit_code: None,
                reason: None,
                pid: None,
                gpu_ids: Vec::new(),
                log_path: self.paths.job_log(&id.to_string()).display().to_string(),
            },
            spec,
            cancel_requested: false,
            interrupt_requested: false,
        };
        self.store.commit(Entry::JobSubmitted {
            record: Box::new(record),
        })?;
        log!("job {id} submitted");
        self.schedule()?;
        Ok(json!({"job_id": id}))
    }

    fn submit_setup(&mut self, mut spec: SetupSpec) -> Result<Value> {
        skycat_protocol::check_version("setup spec", spec.protocol_version)?;
        let st = &self.store.state.setup.status;
        let launch = self.cfg.launch_id.clone();
        if st.launch_id == launch
            && matches!(
                st.state,
                SetupState::Pending | SetupState::Running | SetupState::Succeeded
            )
        {
            return Ok(json!({"launch_id": launch, "state": st.state, "already_done": true}));
        }
        spec.envs = self.split_secrets("setup", &spec.envs, &spec.secret_envs)?;
        self.store.commit(Entry::SetupSubmitted {
            spec,
            launch_id: launch.clone(),
            at: Utc::now(),
        })?;
        log!("setup submitted for launch {:?}", launch);
        self.schedule()?;
        let state = self.store.state.setup.status.state;
        Ok(json!({"launch_id": launch, "state": state, "already_done": false}))
    }

    fn cancel(&mut self, id: JobId) -> Result<Value> {
        let job = self
            .store
            .state
            .jobs
            .get(&id)
            .ok_or_else(|| anyhow!("no job {id}"))?
            .clone();
        match job.status.state {
            JobState::Pending => {
                self.store.commit(Entry::JobEnded {
                    id,
                    state: JobState::Cancelled,
                    exit_code: None,
                    reason: Some("cancelled before it started".into()),
                    at: Utc::now(),
                })?;
                log!("job {id} cancelled (pending)");
            }
            JobState::Running if !job.cancel_requested => {
                self.store.commit(Entry::JobCancelRequested { id })?;
                if let Some(pid) = job.status.pid {
                    util::kill_group(pid, libc::SIGTERM);
                    let grace = self.cfg.termination_grace_secs.min(10.0);
                    self.kill_deadlines
                        .push((Instant::now() + secs(grace), Key::Job(id), pid));
                }
                log!("job {id} cancel: SIGTERM sent to its process group");
            }
            _ => {}
        }
        self.schedule()?;
        Ok(serde_json::to_value(&self.store.state.jobs[&id].status)?)
    }

    fn on_notice(&mut self, notice: InterruptionNotice) -> Result<()> {
        if self.store.state.notice.is_some() {
            return Ok(());
        }
        log!("interruption notice: {} {:?}", notice.action, notice.time);
        self.store.commit(Entry::Notice { notice })?;
        self.heartbeat(HeartbeatReason::Interruption)?;
        let grace = secs(self.cfg.termination_grace_secs);
        let running: Vec<(JobId, Option<u32>)> = self
            .store
            .state
            .jobs
            .values()
            .filter(|j| j.status.state == JobState::Running)
            .map(|j| (j.status.id, j.status.pid))
            .collect();
        for (id, pid) in running {
            self.store.commit(Entry::JobInterruptRequested { id })?;
            if let Some(pid) = pid {
                util::kill_group(pid, libc::SIGTERM);
                self.kill_deadlines
                    .push((Instant::now() + grace, Key::Job(id), pid));
            }
        }
        if self.store.state.setup.status.state == SetupState::Running {
            if let Some(pid) = self.store.state.setup.pid {
                util::kill_group(pid, libc::SIGTERM);
                self.kill_deadlines
                    .push((Instant::now() + grace, Key::Setup, pid));
            }
        }
        self.store.checkpoint()
    }

    /// Records the end of a job or of setup.
    fn finish(&mut self, key: Key, code: Option<i32>, lost_reason: Option<String>) -> Result<()> {
        self.adopted.remove(&key);
        self.kill_deadlines.retain(|(_, k, _)| *k != key);
        let now = Utc::now();
        let signal_reason = |code: Option<i32>| match code {
            Some(c) if c > 128 && c < 160 => Some(format!("killed by signal {}", c - 128)),
            Some(_) => None,
            None => Some("process ended without an exit status".to_string()),
        };
        match key {
            Key::Setup => {
                if self.store.state.setup.status.state != SetupState::Running {
                    return Ok(());
                }
                let ok = code == Some(0);
                let reason = if self.store.state.notice.is_some() && !ok {
                    Some("interrupted by an interruption notice".into())
                } else {
                    lost_reason.or_else(|| if ok { None } else { signal_reason(code) })
                };
                self.store.commit(Entry::SetupEnded {
                    state: if ok {
                        SetupState::Succeeded
                    } else {
                        SetupState::Failed
                    },
                    exit_code: code,
                    reason,
                    at: now,
                })?;
                log!("setup ended: exit {:?}", code);
            }
            Key::Job(id) => {
                let Some(job) = self.store.state.jobs.get(&id) else {
                    return Ok(());
                };
                if job.status.state != JobState::Running {
                    return Ok(());
                }
                let (state, reason) = if job.cancel_requested {
                    (JobState::Cancelled, Some("cancelled".to_string()))
                } else if job.interrupt_requested {
                    let n = self.store.state.notice.as_ref();
                    (
                        JobState::Interrupted,
                        Some(format!(
                            "stopped by an interruption notice ({})",
                            n.map(|n| n.action.as_str()).unwrap_or("unknown")
                        )),
                    )
                } else if let Some(r) = lost_reason {
                    (JobState::Failed, Some(r))
                } else if code == Some(0) {
                    (JobState::Succeeded, None)
                } else {
                    (JobState::Failed, signal_reason(code))
                };
                self.store.commit(Entry::JobEnded {
                    id,
                    state,
                    exit_code: code,
                    reason,
                    at: now,
                })?;
                log!("job {id} ended: {:?} exit {:?}", state, code);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ scheduling

    fn schedule(&mut self) -> Result<()> {
        if self.stopping || self.store.state.notice.is_some() {
            return Ok(());
        }
        match self.store.state.setup.status.state {
            SetupState::Pending => return self.start(Key::Setup),
            SetupState::Running => return Ok(()),
            SetupState::Failed => {
                let pending: Vec<JobId> = self
                    .store
                    .state
                    .jobs
                    .values()
                    .filter(|j| j.status.state == JobState::Pending)
                    .map(|j| j.status.id)
                    .collect();
                for id in pending {
                    self.store.commit(Entry::JobEnded {
                        id,
                        state: JobState::FailedSetup,
                        exit_code: None,
                        reason: Some("setup failed".into()),
                        at: Utc::now(),
                    })?;
                }
                return Ok(());
            }
            SetupState::None | SetupState::Succeeded => {}
        }
        let mut free = self.cfg.gpus_per_node - self.store.state.gpus_in_use();
        let pending: Vec<(JobId, f64)> = self
            .store
            .state
            .jobs
            .values()
            .filter(|j| j.status.state == JobState::Pending)
            .map(|j| (j.status.id, j.status.gpus))
            .collect();
        for (id, gpus) in pending {
            if gpus > free + 1e-9 {
                break; // FIFO: later jobs never overtake this one
            }
            free -= gpus;
            self.start(Key::Job(id))?;
        }
        Ok(())
    }

    /// Names of the envs stored in `name`'s secrets file.
    fn secret_names(&self, name: &str) -> std::collections::BTreeSet<String> {
        fs::read_to_string(self.paths.secret_envs(name))
            .ok()
            .and_then(|t| serde_json::from_str::<BTreeMap<String, String>>(&t).ok())
            .map(|m| m.into_keys().collect())
            .unwrap_or_default()
    }

    fn base_env(
        &self,
        extra: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<Vec<(String, String)>> {
        let mut env: BTreeMap<String, String> = self.cfg.envs.clone();
        for (k, v) in extra {
            env.insert(k.clone(), v.clone());
        }
        // Secret values live only in the 0600 file; the stored spec has them redacted.
        if let Ok(text) = fs::read_to_string(self.paths.secret_envs(name)) {
            let secrets: BTreeMap<String, String> = serde_json::from_str(&text)
                .with_context(|| format!("corrupt {}", self.paths.secret_envs(name).display()))?;
            env.extend(secrets);
        }
        let ips = self.cfg.node_ips.join("\n");
        let vars = vec![
            ("NODE_RANK", self.cfg.node_rank.to_string()),
            ("NUM_NODES", self.cfg.num_nodes.to_string()),
            ("NODE_IPS", ips),
            ("CLUSTER_NAME", self.cfg.cluster_name.clone()),
        ];
        let mut out: Vec<(String, String)> = env.into_iter().collect();
        for (k, v) in vars {
            out.push((format!("SKYCAT_{k}"), v.clone()));
            out.push((format!("SKYPILOT_{k}"), v));
        }
        Ok(out)
    }

    /// Lowest free GPU indices for a job asking for whole GPUs on a node with whole GPUs;
    /// empty otherwise (fractional requests share devices: no CUDA_VISIBLE_DEVICES is set).
    fn pick_gpus(&self, want: f64) -> Vec<u32> {
        let total = self.cfg.gpus_per_node;
        if want < 1.0 || want.fract() != 0.0 || total.fract() != 0.0 {
            return Vec::new();
        }
        let used: BTreeSet<u32> = self
            .store
            .state
            .jobs
            .values()
            .filter(|j| j.status.state == JobState::Running)
            .flat_map(|j| j.status.gpu_ids.iter().copied())
            .collect();
        let free: Vec<u32> = (0..total as u32).filter(|i| !used.contains(i)).collect();
        if free.len() < want as usize {
            // Accounting says it fits but indices do not (mixed fractional jobs): share.
            return Vec::new();
        }
        free[..want as usize].to_vec()
    }

    fn start(&mut self, key: Key) -> Result<()> {
        let name = key.name();
        let now = Utc::now();
        let mut gpu_ids = Vec::new();
        let (run, mut env, workdir, gpus) = match key {
            Key::Setup => {
                let spec = self
                    .store
                    .state
                    .setup
                    .spec
                    .clone()
                    .ok_or_else(|| anyhow!("no setup spec"))?;
                let env = self.base_env(&spec.envs, &name)?;
                (spec.setup, env, spec.workdir, self.cfg.gpus_per_node)
            }
            Key::Job(id) => {
                let job = self.store.state.jobs[&id].clone();
                let mut env = self.base_env(&job.spec.envs, &name)?;
                let task_id = job.status.task_id.clone().unwrap_or_else(|| {
                    format!(
                        "skycat-{}-{}",
                        self.cfg
                            .launch_id
                            .as_deref()
                            .unwrap_or(&self.cfg.cluster_name),
                        id
                    )
                });
                for (k, v) in [
                    ("TASK_ID", task_id),
                    ("JOB_RECOVERY_COUNT", job.status.recovery_count.to_string()),
                    ("JOB_ID", id.to_string()),
                ] {
                    env.push((format!("SKYCAT_{k}"), v.clone()));
                    env.push((format!("SKYPILOT_{k}"), v));
                }
                gpu_ids = self.pick_gpus(job.status.gpus);
                if !gpu_ids.is_empty() && !env.iter().any(|(k, _)| k == "CUDA_VISIBLE_DEVICES") {
                    let list: Vec<String> = gpu_ids.iter().map(u32::to_string).collect();
                    env.push(("CUDA_VISIBLE_DEVICES".into(), list.join(",")));
                }
                (job.spec.run, env, job.spec.workdir, job.status.gpus)
            }
        };
        let g = gpu_count_env(gpus);
        env.push(("SKYCAT_NUM_GPUS_PER_NODE".into(), g.clone()));
        env.push(("SKYPILOT_NUM_GPUS_PER_NODE".into(), g));

        // Secret values for the log filter: every secret the process can see (by name, or
        // stored as a secret because the submitter named it one).
        let named = self.secret_names(&name);
        let values: Vec<&String> = env
            .iter()
            .filter(|(k, v)| (is_secret_env(k) || named.contains(k)) && v.len() >= 3 && v.as_str() != REDACTED)
            .map(|(_, v)| v)
            .collect();
        let values_path = self.paths.secret_values(&name);
        let has_values = !values.is_empty();
        if !has_values {
            let _ = fs::remove_file(&values_path);
        } else {
            util::write_atomic(&values_path, &serde_json::to_vec(&values)?, 0o600)?;
        }
        // A relative (or `~/`) workdir is relative to $HOME, as SkyPilot's `~/sky_workdir`.
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cwd = workdir
            .map(|w| {
                let rel = w.strip_prefix("~/").unwrap_or(&w).to_string();
                match &home {
                    Some(h) if !Path::new(&rel).is_absolute() => h.join(rel),
                    _ => PathBuf::from(rel),
                }
            })
            .or_else(|| Some(self.paths.default_workdir()).filter(|p| p.is_dir()))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_dir())
            })
            .unwrap_or_else(|| self.paths.root.clone());
        let _ = fs::remove_file(self.paths.exit_file(&name));
        let _ = fs::remove_file(self.paths.pid_file(&name));

        // Journal first, then act.
        match key {
            Key::Setup => self.store.commit(Entry::SetupStarting { at: now })?,
            Key::Job(id) => self.store.commit(Entry::JobStarting {
                id,
                at: now,
                gpu_ids,
            })?,
        }
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg(marker(&self.paths, &name))
            .arg(&run)
            .arg(self.paths.job_log(&name))
            .arg(self.paths.exit_file(&name))
            .arg(self.paths.pid_file(&name))
            .arg(&self.agent_bin)
            .arg(if has_values {
                values_path
            } else {
                PathBuf::new()
            })
            .envs(env)
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe; the child gets its own session and process group.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                match key {
                    Key::Setup => self.store.commit(Entry::SetupRunning { pid })?,
                    Key::Job(id) => self.store.commit(Entry::JobRunning { id, pid })?,
                }
                log!("{name} started as pid {pid} in {}", cwd.display());
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let code = child.wait().await.ok().and_then(|st| {
                        use std::os::unix::process::ExitStatusExt;
                        st.code().or_else(|| st.signal().map(|s| 128 + s))
                    });
                    let _ = tx.send(Msg::Exited(key, code));
                });
            }
            Err(e) => {
                log!("{name} could not start: {e}");
                self.finish(key, None, Some(format!("could not start bash: {e}")))?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ periodic work

    fn housekeeping(&mut self) -> Result<()> {
        // Adopted processes (from before a restart).
        for key in self.adopted.clone() {
            let name = key.name();
            if let Some(code) = self.read_exit_file(&name) {
                self.finish(key, Some(code), None)?;
                continue;
            }
            let pid = match key {
                Key::Setup => self.store.state.setup.pid,
                Key::Job(id) => self.store.state.jobs.get(&id).and_then(|j| j.status.pid),
            };
            if !pid.map(|p| self.ours(p, &name)).unwrap_or(false) {
                // The exit file is written just before the wrapper exits: look once more.
                let code = self.read_exit_file(&name);
                self.finish(key, code, None)?;
            }
        }
        // SIGKILL after the grace period.
        let now = Instant::now();
        let due: Vec<(Key, u32)> = self
            .kill_deadlines
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .map(|(_, k, p)| (*k, *p))
            .collect();
        self.kill_deadlines.retain(|(t, _, _)| *t > now);
        for (key, pid) in due {
            log!(
                "{}: grace period over, SIGKILL to process group {pid}",
                key.name()
            );
            util::kill_group(pid, libc::SIGKILL);
        }
        self.schedule()?;

        // Idle tracking and autostop.
        let busy = self.store.state.busy();
        let nowu = Utc::now();
        match (busy, self.store.state.idle_since) {
            (true, Some(_)) => self.store.commit(Entry::IdleSince { at: None })?,
            (false, None) => self.store.commit(Entry::IdleSince { at: Some(nowu) })?,
            _ => {}
        }
        if let (Some(limit), Some(since), None) = (
            self.cfg.idle_limit_secs(),
            self.store.state.idle_since,
            self.store.state.autostop_fired_at,
        ) {
            if elapsed_secs(since, nowu) >= limit {
                self.autostop()?;
            }
        }

        if Instant::now() >= self.next_hb {
            self.heartbeat(HeartbeatReason::Periodic)?;
        }
        self.store.checkpoint()
    }

    fn autostop(&mut self) -> Result<()> {
        let at = Utc::now();
        self.store.commit(Entry::AutostopFired { at })?;
        let action = self.cfg.stop_action.command().map(str::to_string);
        log!(
            "autostop: idle for {:?} s; action: {}",
            self.cfg.idle_limit_secs(),
            action.as_deref().unwrap_or("report-only")
        );
        let seq = self.heartbeat(HeartbeatReason::Autostop)?;
        self.store.checkpoint()?;
        if let Some(cmd) = action {
            let acked = self.acked.clone();
            let wait_for_ack = self.hb_tx.is_some();
            let log_path = self.paths.agent_log();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while wait_for_ack
                    && acked.load(Ordering::SeqCst) < seq
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let out = OpenOptions::new().append(true).create(true).open(&log_path);
                let mut c = tokio::process::Command::new("bash");
                c.arg("-c").arg(&cmd).stdin(std::process::Stdio::null());
                if let Ok(f) = out {
                    if let Ok(f2) = f.try_clone() {
                        c.stdout(f).stderr(f2);
                    }
                }
                match c.status().await {
                    Ok(st) => log!("autostop action exited: {st}"),
                    Err(e) => log!("autostop action could not run: {e}"),
                }
            });
        }
        Ok(())
    }

    /// Appends a ledger record for [last_metered_at, now].
    fn meter(&mut self, now: DateTime<Utc>, kind: &str) -> Result<()> {
        let seconds = elapsed_secs(self.last_metered_at, now);
        if seconds <= 0.0 {
            return Ok(());
        }
        let pin = self.pin();
        let record = CostRecord {
            cluster: self.cfg.cluster_name.clone(),
            node_id: self.cfg.node_id(),
            launch_id: pin.launch_id.clone(),
            from: self.last_metered_at,
            to: now,
            seconds,
            price_per_hour: pin.price_per_hour,
            usd: pin.price_per_hour * seconds / 3600.0,
            kind: kind.to_string(),
        };
        util::append_line(&self.paths.ledger(), &serde_json::to_string(&record)?)?;
        self.metered_seconds += record.seconds;
        self.accrued_usd += record.usd;
        self.last_metered_at = now;
        self.new_cost_records.push(record);
        Ok(())
    }

    fn cost_summary(&self, with_records: bool) -> CostSummary {
        let pin = self.pin();
        CostSummary {
            price_per_hour: pin.price_per_hour,
            pinned_at: pin.pinned_at,
            metered_seconds: self.metered_seconds,
            accrued_usd: self.accrued_usd,
            new_records: if with_records {
                self.new_cost_records.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn idle_seconds(&self) -> f64 {
        match self.store.state.idle_since {
            Some(since) if !self.store.state.busy() => elapsed_secs(since, Utc::now()).max(0.0),
            _ => 0.0,
        }
    }

    fn autostop_status(&self) -> Option<AutostopStatus> {
        self.cfg.idle_limit_secs().map(|limit| AutostopStatus {
            idle_limit_secs: limit,
            fired_at: self.store.state.autostop_fired_at,
            action: self.cfg.stop_action.command().map(str::to_string),
        })
    }

    fn job_list(&self, last: usize) -> Vec<JobStatus> {
        let n = self.store.state.jobs.len();
        self.store
            .state
            .jobs
            .values()
            .skip(n.saturating_sub(last))
            .map(|j| j.status.clone())
            .collect()
    }

    /// Jobs a heartbeat carries: every unfinished job, and finished ones that ended in the last
    /// 10 minutes (the server upserts by id; `events` carries every transition), newest 200.
    /// Keeps heartbeats small (and a long outage's outbox too) on nodes with a long history.
    fn heartbeat_jobs(&self, now: DateTime<Utc>) -> Vec<JobStatus> {
        let recent = now - chrono::Duration::minutes(10);
        let mut jobs: Vec<JobStatus> = self
            .store
            .state
            .jobs
            .values()
            .filter(|j| {
                !j.status.state.is_terminal()
                    || j.status.ended_at.map(|t| t >= recent).unwrap_or(true)
            })
            .map(|j| j.status.clone())
            .collect();
        let n = jobs.len();
        jobs.drain(..n.saturating_sub(200));
        jobs
    }

    /// Makes a heartbeat, journals it in the outbox, hands it to the sender. Returns its seq.
    fn heartbeat(&mut self, reason: HeartbeatReason) -> Result<u64> {
        let now = Utc::now();
        self.next_hb = Instant::now() + secs(self.cfg.heartbeat_interval_secs);
        self.meter(now, "metered")?;
        let seq = self.store.state.hb_seq + 1;
        if let Some(htx) = &self.hb_tx {
            let gpus = self.gpus.lock().map(|g| g.clone()).unwrap_or_default();
            let hb = Heartbeat {
                protocol_version: skycat_protocol::PROTOCOL_VERSION,
                agent_version: AGENT_VERSION.to_string(),
                cluster: self.cfg.cluster_name.clone(),
                node_id: self.cfg.node_id(),
                node_rank: self.cfg.node_rank,
                launch_id: self.cfg.launch_id.clone(),
                seq,
                created_at: now,
                reason,
                agent_started_at: self.started_at,
                facts: facts::collect(gpus, self.cfg.gpus_per_node),
                jobs: self.heartbeat_jobs(now),
                events: self.store.state.pending_events.clone(),
                setup: self.store.state.setup.status.clone(),
                cost: self.cost_summary(true),
                idle_seconds: self.idle_seconds(),
                autostop: self.autostop_status(),
                interruption: self.store.state.notice.clone(),
            };
            let line = serde_json::to_string(&hb)?;
            // Compact the outbox once everything in it was delivered.
            let acked = self.acked.load(Ordering::SeqCst);
            if acked >= self.store.state.hb_seq
                && fs::metadata(self.paths.outbox())
                    .map(|m| m.len() > 256 * 1024)
                    .unwrap_or(false)
            {
                util::write_atomic(&self.paths.outbox(), b"", 0o600)?;
            }
            util::append_line(&self.paths.outbox(), &line)?;
            self.store.commit(Entry::HeartbeatMade { seq })?;
            let _ = htx.send((seq, line));
        } else {
            self.store.commit(Entry::HeartbeatMade { seq })?;
        }
        self.new_cost_records.clear();
        Ok(seq)
    }

    fn status(&self) -> AgentStatus {
        AgentStatus {
            protocol_version: skycat_protocol::PROTOCOL_VERSION,
            agent_version: AGENT_VERSION.to_string(),
            daemon_running: true,
            daemon_pid: Some(std::process::id()),
            cluster: self.cfg.cluster_name.clone(),
            node_id: self.cfg.node_id(),
            launch_id: self.cfg.launch_id.clone(),
            setup: self.store.state.setup.status.clone(),
            jobs: self.job_list(usize::MAX),
            gpus_total: self.cfg.gpus_per_node,
            gpus_in_use: self.store.state.gpus_in_use(),
            idle_seconds: self.idle_seconds(),
            cost: self.cost_summary(false),
            heartbeat_seq: self.store.state.hb_seq,
            heartbeat_acked_seq: self.acked.load(Ordering::SeqCst),
            autostop: self.autostop_status(),
            interruption: self.store.state.notice.clone(),
        }
    }

    fn shutdown(mut self) -> Result<()> {
        let seq = self.heartbeat(HeartbeatReason::Shutdown)?;
        self.store.checkpoint()?;
        if self.hb_tx.is_some() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.acked.load(Ordering::SeqCst) < seq && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(self.paths.socket());
        let _ = fs::remove_file(self.paths.pid());
        log!("stopped (running jobs keep running and are re-adopted at the next start)");
        Ok(())
    }
}

/// Status as seen from the disk when no daemon runs.
pub fn offline_status(paths: &Paths) -> Result<AgentStatus> {
    let cfg = load_config(paths)?;
    let store = Store::load(paths)?;
    let st = &store.state;
    let pin = st.pin.clone().unwrap_or(Pin {
        launch_id: cfg.launch_id.clone(),
        price_per_hour: cfg.price_per_hour,
        pinned_at: Utc::now(),
    });
    let records = store::read_ledger(paths)?;
    let mine: Vec<&CostRecord> = records
        .iter()
        .filter(|r| r.launch_id == pin.launch_id)
        .collect();
    let acked = fs::read_to_string(paths.outbox_acked())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Ok(AgentStatus {
        protocol_version: skycat_protocol::PROTOCOL_VERSION,
        agent_version: AGENT_VERSION.to_string(),
        daemon_running: false,
        daemon_pid: None,
        cluster: cfg.cluster_name.clone(),
        node_id: cfg.node_id(),
        launch_id: cfg.launch_id.clone(),
        setup: st.setup.status.clone(),
        jobs: st.jobs.values().map(|j| j.status.clone()).collect(),
        gpus_total: cfg.gpus_per_node,
        gpus_in_use: st.gpus_in_use(),
        idle_seconds: 0.0,
        cost: CostSummary {
            price_per_hour: pin.price_per_hour,
            pinned_at: pin.pinned_at,
            metered_seconds: mine.iter().map(|r| r.seconds).sum(),
            accrued_usd: mine.iter().map(|r| r.usd).sum(),
            new_records: Vec::new(),
        },
        heartbeat_seq: st.hb_seq,
        heartbeat_acked_seq: acked,
        autostop: None,
        interruption: st.notice.clone(),
    })
}

fn find_by_marker(marker: &str) -> Option<u32> {
    let needle = format!("{marker}\0");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) {
            // The marker is the wrapper's $0: the third argument of `bash -c WRAPPER MARKER ...`.
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            if args.len() > 2
                && args[2] == &needle.as_bytes()[..needle.len() - 1]
                && util::pid_alive(pid)
            {
                return Some(pid);
            }
        }
    }
    None
}

async fn serve_connection(stream: tokio::net::UnixStream, tx: mpsc::UnboundedSender<Msg>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    if lines.read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let (rtx, rrx) = oneshot::channel();
            if tx.send(Msg::Request(req, rtx)).is_err() {
                return;
            }
            rrx.await
                .unwrap_or_else(|_| json!({"ok": false, "error": "daemon is stopping"}))
        }
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let mut out = answer.to_string();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Heartbeat delivery thread: strictly in seq order, retries until the server answers 2xx.
#[allow(clippy::too_many_arguments)]
fn sender(
    url: String,
    token: String,
    pin: Option<String>,
    rx: stdmpsc::Receiver<(u64, String)>,
    acked: Arc<AtomicU64>,
    acked_path: PathBuf,
    mut pending: VecDeque<(u64, String)>,
    retry: Duration,
) {
    let auth = format!("Bearer {token}");
    let mut failing = false;
    let mut open = true;
    while open || !pending.is_empty() {
        let first = if pending.is_empty() {
            rx.recv().map_err(|_| ())
        } else {
            rx.recv_timeout(retry).map_err(|_| ())
        };
        match first {
            Ok(x) => pending.push_back(x),
            Err(()) => {
                if pending.is_empty() {
                    return;
                }
            }
        }
        loop {
            match rx.try_recv() {
                Ok(x) => pending.push_back(x),
                Err(stdmpsc::TryRecvError::Empty) => break,
                Err(stdmpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut delivered = 0u64;
        while let Some((seq, body)) = pending.front() {
            let res = http::request_pinned(
                "POST",
                &url,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                Some(body.as_bytes()),
                Duration::from_secs(5),
                pin.as_deref(),
            );
            match res {
                Ok(r) if (200..300).contains(&r.status) => {
                    acked.store(*seq, Ordering::SeqCst);
                    delivered += 1;
                    pending.pop_front();
                }
                Ok(r) => {
                    if !failing {
                        log!(
                            "heartbeat {seq}: server answered HTTP {}{}; will retry",
                            r.status,
                            if r.status == 401 {
                                " (wrong cluster token?)"
                            } else {
                                ""
                            }
                        );
                    }
                    failing = true;
                    break;
                }
                Err(e) => {
                    if !failing {
                        log!("heartbeat {seq}: {e:#}; journaled, will retry");
                    }
                    failing = true;
                    break;
                }
            }
        }
        if delivered > 0 {
            let _ = util::write_atomic(
                &acked_path,
                format!("{}\n", acked.load(Ordering::SeqCst)).as_bytes(),
                0o600,
            );
            if failing && pending.is_empty() {
                log!("server reachable again; backlog delivered");
                failing = false;
            }
        }
        if !open && failing {
            return;
        }
    }
}

/// One poll of the instance metadata.
pub fn check_metadata(url: &str, kind: MetadataKind) -> Result<Option<InterruptionNotice>> {
    let timeout = Duration::from_secs(2);
    match kind {
        MetadataKind::Gcp => {
            let r = http::request("GET", url, &[("Metadata-Flavor", "Google")], None, timeout)?;
            if r.status != 200 {
                bail!("metadata answered HTTP {}", r.status);
            }
            let body = String::from_utf8_lossy(&r.body);
            Ok(
                (body.trim().eq_ignore_ascii_case("TRUE")).then(|| InterruptionNotice {
                    kind,
                    action: "preempted".into(),
                    time: None,
                    detected_at: Utc::now(),
                }),
            )
        }
        MetadataKind::Aws => {
            let mut r = http::request("GET", url, &[], None, timeout)?;
            if r.status == 401 {
                // IMDSv2: get a session token, then ask again with it.
                let base = url.split("/latest/").next().unwrap_or(url);
                let t = http::request(
                    "PUT",
                    &format!("{base}/latest/api/token"),
                    &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
                    Some(b""),
                    timeout,
                )?;
                let token = String::from_utf8_lossy(&t.body).trim().to_string();
                r = http::request(
                    "GET",
                    url,
                    &[("X-aws-ec2-metadata-token", &token)],
                    None,
                    timeout,
                )?;
            }
            match r.status {
                404 => Ok(None),
                200 => {
                    #[derive(Deserialize)]
                    struct Action {
                        action: Option<String>,
                        time: Option<String>,
                    }
                    let a: Option<Action> = serde_json::from_slice(&r.body).ok();
                    Ok(Some(InterruptionNotice {
                        kind,
                        action: a
                            .as_ref()
                            .and_then(|a| a.action.clone())
                            .unwrap_or_else(|| "unknown".into()),
                        time: a.and_then(|a| a.time),
                        detected_at: Utc::now(),
                    }))
                }
                s => bail!("metadata answered HTTP {s}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves `n` connections; `answer` maps the raw request to (status, body).
    fn serve(
        n: usize,
        answer: fn(&str) -> (u16, &'static str),
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let k = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..k]).to_string();
                let (status, body) = answer(&req);
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                seen.push(req);
            }
            seen
        });
        (base, t)
    }

    #[test]
    fn aws_imdsv2_token_flow_and_no_notice() {
        let (base, t) = serve(3, |req| {
            if req.starts_with("PUT /latest/api/token") {
                (200, "tok-123")
            } else if req.contains("X-aws-ec2-metadata-token: tok-123") {
                (200, r#"{"action":"stop","time":"2026-01-01T00:00:00Z"}"#)
            } else {
                (401, "")
            }
        });
        let n = check_metadata(
            &format!("{base}/latest/meta-data/spot/instance-action"),
            MetadataKind::Aws,
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.action, "stop");
        assert_eq!(n.time.as_deref(), Some("2026-01-01T00:00:00Z"));
        let reqs = t.join().unwrap();
        assert!(reqs[1].contains("X-aws-ec2-metadata-token-ttl-seconds: 300"));

        let (base, t) = serve(1, |_| (404, "not found"));
        assert!(check_metadata(
            &format!("{base}/latest/meta-data/spot/instance-action"),
            MetadataKind::Aws
        )
        .unwrap()
        .is_none());
        t.join().unwrap();
    }

    #[test]
    fn gcp_preempted_flag() {
        let (base, t) = serve(2, |req| {
            if !req.contains("Metadata-Flavor: Google") {
                (403, "")
            } else if req.contains("first") {
                (200, "FALSE")
            } else {
                (200, "TRUE\n")
            }
        });
        let url = format!("{base}/computeMetadata/v1/instance/preempted");
        assert!(check_metadata(&format!("{url}?first"), MetadataKind::Gcp)
            .unwrap()
            .is_none());
        let n = check_metadata(&url, MetadataKind::Gcp).unwrap().unwrap();
        assert_eq!(n.action, "preempted");
        t.join().unwrap();
        // Unreachable metadata is an error (logged by the poller), not a notice.
        assert!(check_metadata("http://127.0.0.1:1/x", MetadataKind::Gcp).is_err());
    }
}
