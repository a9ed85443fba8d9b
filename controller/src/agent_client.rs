//! The node agent, seen from the controller: installing and starting `skycat-agent` on a node
//! (probe, upload when its hash differs, config, daemon), syncing the workdir, and a typed
//! client for every agent command, whose replies are the protocol's types rather than loose
//! JSON. It drives the agent through the node's transport (SSH today).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use skycat_protocol::{AgentConfig, AgentStatus, CancelReply, CostRecord, JobSpec, JobStatus, SetupSpec, SubmitReply, VersionInfo};

use crate::ssh::shell_quote;
use crate::transport::NodeSession;
use crate::store::NodeRow;

pub(crate) const AGENT_ROOT: &str = ".skycat-agent";

type Progress = Arc<dyn Fn(&str) + Send + Sync>;

fn q(s: &str) -> String {
    shell_quote(s)
}

/// Typed calls of the agent CLI on one node (`skycat-agent CMD --state-dir DIR --json`).
pub struct AgentClient<'a> {
    s: &'a dyn NodeSession,
    bin: String,
    dir: String,
    shown: String,
}

impl<'a> AgentClient<'a> {
    pub fn new(s: &'a dyn NodeSession, n: &NodeRow) -> AgentClient<'a> {
        AgentClient { s, bin: q(&n.agent_bin), dir: q(&n.state_dir), shown: n.host_key() }
    }

    async fn call<T: DeserializeOwned>(&self, args: &str, stdin: Option<&[u8]>) -> Result<T> {
        let out = self.s.run_ok(&format!("{} {args} --state-dir {} --json", self.bin, self.dir), stdin).await?;
        serde_json::from_str(out.trim()).with_context(|| format!("agent on {}: unexpected answer to `{args}`: {:?}", self.shown, out.trim()))
    }

    pub async fn status(&self) -> Result<AgentStatus> {
        self.call("status", None).await
    }

    pub async fn queue(&self) -> Result<Vec<JobStatus>> {
        self.call("queue", None).await
    }

    /// Submits a job; the agent's job id.
    pub async fn submit(&self, spec: &JobSpec) -> Result<u64> {
        let r: SubmitReply = self.call("submit", Some(&serde_json::to_vec(spec)?)).await?;
        Ok(r.job_id)
    }

    pub async fn cancel(&self, job: u64) -> Result<CancelReply> {
        self.call(&format!("cancel {job}"), None).await
    }

    /// Submits the setup (once per launch: the agent ignores a resubmission for the same launch).
    pub async fn setup(&self, spec: &SetupSpec) -> Result<()> {
        let _: serde_json::Value = self.call("setup", Some(&serde_json::to_vec(spec)?)).await?;
        Ok(())
    }

    /// Starts the daemon (idempotent when it runs).
    pub async fn start_daemon(&self) -> Result<()> {
        self.s.run_ok(&format!("{} daemon --state-dir {} --detach", self.bin, self.dir), None).await?;
        Ok(())
    }

    /// Stops the daemon (jobs keep their state on disk).
    pub async fn stop(&self) -> Result<()> {
        self.s.exec(&format!("{} stop --state-dir {}", self.bin, self.dir), None).await?;
        Ok(())
    }

    /// The agent's cost ledger (one record per line; unreadable lines are skipped).
    pub async fn ledger(&self) -> Result<Vec<CostRecord>> {
        let out = self.s.exec(&format!("cat {}/state/ledger.jsonl 2>/dev/null", self.dir), None).await?;
        Ok(out.stdout_str().lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

pub(crate) struct LocalAgent {
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) version: String,
}

/// What a probe of a node says.
pub(crate) struct Probe {
    pub(crate) home: String,
    pub(crate) controller_ip: Option<String>,
    pub(crate) bin_sha: Option<String>,
    pub(crate) status: Option<AgentStatus>,
}

/// One exec: the node's $HOME, the controller address it sees, the installed agent's hash, and
/// the agent's status for this cluster (if installed).
pub(crate) async fn probe(s: &dyn NodeSession, cluster: &str) -> Result<Probe> {
    let script = format!(
        "echo \"HOME=$HOME\"; echo \"CONN=${{SSH_CONNECTION:-$SKYCAT_CONTROLLER_IP}}\"; \
         echo \"SHA=$(cat \"$HOME/{AGENT_ROOT}/bin/skycat-agent.sha256\" 2>/dev/null)\"; \
         if [ -x \"$HOME/{AGENT_ROOT}/bin/skycat-agent\" ] && [ -d \"$HOME/{AGENT_ROOT}/clusters/{c}\" ]; then \
           echo STATUS; \"$HOME/{AGENT_ROOT}/bin/skycat-agent\" status --state-dir \"$HOME/{AGENT_ROOT}/clusters/{c}\" --json 2>/dev/null; fi",
        c = cluster
    );
    let out = s.run_ok(&script, None).await?;
    let mut home = None;
    let mut conn = None;
    let mut sha = None;
    let mut status = None;
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix("HOME=") {
            home = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("CONN=") {
            conn = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = l.strip_prefix("SHA=") {
            sha = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        } else if l == "STATUS" {
            let rest: Vec<&str> = lines.by_ref().collect();
            status = serde_json::from_str::<AgentStatus>(rest.join("\n").trim()).ok();
            break;
        }
    }
    let home = home.filter(|h| h.starts_with('/')).ok_or_else(|| {
        anyhow!("{}: cannot determine $HOME (got {out:?})", s.peer())
    })?;
    Ok(Probe { home, controller_ip: conn, bin_sha: sha, status })
}

/// Installs/updates the agent binary, writes the config (new clusters), starts the daemon and
/// checks it answers. Returns true when a healthy agent of the same version was reused as is.
pub(crate) async fn ensure_agent(
    s: &dyn NodeSession,
    n: &NodeRow,
    agent: &LocalAgent,
    probe: &Probe,
    config: Option<&AgentConfig>,
    progress: &Progress,
) -> Result<bool> {
    let shown = s.peer();
    let same_binary = probe.bin_sha.as_deref() == Some(agent.sha256.as_str());
    let running = probe.status.as_ref().is_some_and(|st| st.daemon_running);
    if same_binary
        && running
        && config.is_none()
        && probe.status.as_ref().is_some_and(|st| st.agent_version == agent.version)
    {
        return Ok(true);
    }
    if !same_binary {
        if running {
            progress(&format!("  {shown}: replacing agent {} ...", probe.status.as_ref().map(|s| s.agent_version.as_str()).unwrap_or("?")));
            s.exec(&format!("{} stop --state-dir {}", q(&n.agent_bin), q(&n.state_dir)), None).await?;
        }
        progress(&format!("  {shown}: uploading agent {} ...", agent.version));
        let mut file = tokio::fs::File::open(&agent.path)
            .await
            .with_context(|| format!("opening {}", agent.path.display()))?;
        let bin = q(&n.agent_bin);
        let cmd = format!(
            "set -e; mkdir -p \"$(dirname {bin})\"; cat > {bin}.tmp.$$; chmod 755 {bin}.tmp.$$; mv -f {bin}.tmp.$$ {bin}; \
             printf %s {sha} > {bin}.sha256",
            sha = agent.sha256
        );
        let out = s.exec_input(&cmd, Some(&mut file)).await?;
        if !out.ok() {
            bail!("{shown}: uploading the agent failed: {}", out.stderr_str().trim());
        }
    }
    if let Some(cfg) = config {
        let body = serde_json::to_vec_pretty(cfg)?;
        let d = q(&n.state_dir);
        s.run_ok(
            &format!("umask 077; mkdir -p {d} && chmod 700 {d} && cat > {d}/config.json.tmp && mv -f {d}/config.json.tmp {d}/config.json"),
            Some(&body),
        )
        .await?;
        if running && same_binary {
            // A new launch on a host whose old agent still runs this cluster's dir: restart it.
            s.exec(&format!("{} stop --state-dir {d}", q(&n.agent_bin)), None).await?;
        }
    }
    let out = s
        .run_ok(
            &format!(
                "{b} version --json && {b} daemon --state-dir {d} --detach",
                b = q(&n.agent_bin),
                d = q(&n.state_dir)
            ),
            None,
        )
        .await
        .with_context(|| format!("{shown}: starting the agent"))?;
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let v: VersionInfo = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow!("{shown}: agent did not answer `version` ({out:?})"))?;
    if v.agent_version != agent.version {
        bail!("{shown}: agent answers version {} after upload of {}", v.agent_version, agent.version);
    }
    Ok(false)
}

/// A workdir as an archive file ready to stream to the nodes: a client's upload kept by the
/// server, or a local folder packed here (honouring `.skyignore`/`.gitignore`, at most
/// [`skycat_archive::DEFAULT_LIMIT_BYTES`]).
pub(crate) enum WorkdirArchive {
    Stored(PathBuf),
    Packed(tempfile::NamedTempFile),
}

impl WorkdirArchive {
    /// Packs the local folder `dir` (the CLI's own disk: `skycat launch` and `exec` run there).
    pub(crate) async fn pack(dir: &Path) -> Result<WorkdirArchive> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<WorkdirArchive> {
            let f = tempfile::NamedTempFile::new().context("creating a temporary file for the workdir archive")?;
            skycat_archive::pack_gz(&dir, skycat_archive::DEFAULT_LIMIT_BYTES, std::io::BufWriter::new(f.as_file()))
                .map_err(|e| anyhow!("workdir: {e}"))?;
            Ok(WorkdirArchive::Packed(f))
        })
        .await
        .map_err(|e| anyhow!("packing the workdir: {e}"))?
    }

    /// Packs the one local file `path` as the entry `name` (a file mount's destination name).
    pub(crate) async fn pack_file(path: &Path, name: &str) -> Result<WorkdirArchive> {
        let (path, name, shown) = (path.to_path_buf(), name.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || -> Result<WorkdirArchive> {
            let f = tempfile::NamedTempFile::new().context("creating a temporary file for the archive")?;
            skycat_archive::pack_file_gz(&path, &name, skycat_archive::DEFAULT_LIMIT_BYTES, std::io::BufWriter::new(f.as_file()))
                .map_err(|e| anyhow!("{e}"))?;
            Ok(WorkdirArchive::Packed(f))
        })
        .await
        .map_err(|e| anyhow!("packing {shown:?}: {e}"))?
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            WorkdirArchive::Stored(p) => p,
            WorkdirArchive::Packed(f) => f.path(),
        }
    }
}

/// Streams the archive to the node's agent, which unpacks it into `<state dir>/workdir`,
/// refusing entries that would land outside it.
pub(crate) async fn sync_workdir(s: &dyn NodeSession, archive: &WorkdirArchive, n: &NodeRow) -> Result<()> {
    let mut file = tokio::fs::File::open(archive.path())
        .await
        .with_context(|| format!("opening the workdir archive {}", archive.path().display()))?;
    let cmd = format!("{} unpack --state-dir {} --dest workdir --json", q(&n.agent_bin), q(&n.state_dir));
    let out = s.exec_input(&cmd, Some(&mut file)).await?;
    if !out.ok() {
        let why = out.stderr_str();
        bail!("{}: unpacking the workdir failed: {}", s.peer(), why.trim().lines().last().unwrap_or(""));
    }
    Ok(())
}
