//! `skycat-agent`: the node agent. See agent/CONTRACT.md for the interface the controller uses.

mod daemon;
mod facts;
mod http;
mod objects;
mod store;
mod unpack;
mod util;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use skycat_protocol::{AgentStatus, JobSpec, JobStatus, SetupSpec, SetupState, VersionInfo};

use daemon::Request;
use store::Paths;

#[derive(Parser)]
#[command(name = "skycat-agent", version, about = "skycat node agent")]
struct Cli {
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The agent's state dir (config.json, journal, logs).
    #[arg(
        long,
        global = true,
        env = "SKYCAT_AGENT_DIR",
        default_value = "~/.skycat-agent"
    )]
    state_dir: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Agent and protocol version.
    Version,
    /// Run the daemon (foreground, or --detach to start it in its own session and return).
    Daemon {
        #[arg(long)]
        detach: bool,
    },
    /// Queue the task's setup (JSON SetupSpec on stdin); runs once per launch before jobs.
    Setup {
        /// Wait until setup ends (exit 1 if it failed).
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 3600.0, value_parser = util::parse_timeout_secs)]
        timeout: f64,
    },
    /// Queue a job (JSON JobSpec on stdin); prints its id.
    Submit,
    /// Daemon, setup, jobs, cost.
    Status,
    /// All jobs.
    Queue,
    /// Cancel a job (kills its process tree).
    Cancel { job: u64 },
    /// Print a job's log (`setup` for the setup log).
    Logs {
        job: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Wait until a job ends; prints its final status.
    Wait {
        job: u64,
        #[arg(long, default_value_t = 3600.0, value_parser = util::parse_timeout_secs)]
        timeout: f64,
    },
    /// Stop the daemon cleanly (running jobs keep running).
    Stop,
    /// Unpack a tar (or gzip'd tar) from stdin into `<state dir>/<dest>`; refuses entries that
    /// would land or point outside it. No daemon needed.
    Unpack {
        /// Folder under the state dir (relative, no `..`).
        #[arg(long, default_value = "workdir", conflicts_with = "to")]
        dest: String,
        /// A file mount's folder instead: an absolute path, or `~`/`~/…` in this user's home
        /// (no `..`; never the state dir).
        #[arg(long)]
        to: Option<String>,
        /// Refuse the archive once its files add up to more than this many bytes.
        #[arg(long, default_value_t = skycat_archive::DEFAULT_LIMIT_BYTES)]
        limit: u64,
    },
    /// Object storage for bucket file_mounts: copy (mode: COPY), mount/unmount (mode: MOUNT).
    Objects {
        #[command(subcommand)]
        cmd: objects::ObjectsCmd,
    },
    /// (internal) Copy stdin to stdout, replacing secret values; used by the job wrapper.
    #[command(hide = true)]
    LogFilter {
        #[arg(long)]
        values: PathBuf,
    },
}

fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(p)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            if json_out {
                println!("{}", json!({"error": msg}));
            }
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn print(json_out: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read stdin")?;
    Ok(s)
}

/// Sends one request to the daemon; errors if it does not answer.
fn call(paths: &Paths, req: &Request) -> Result<Value> {
    let sock = paths.socket();
    let mut stream = UnixStream::connect(&sock)
        .map_err(|e| anyhow!("no skycat-agent daemon answers on {} ({e}); start it with `skycat-agent daemon --detach --state-dir {}`", sock.display(), paths.root.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("daemon closed the connection")?;
    let v: Value = serde_json::from_str(&answer).context("bad answer from daemon")?;
    if v["ok"].as_bool() == Some(true) {
        Ok(v["data"].clone())
    } else {
        bail!("{}", v["error"].as_str().unwrap_or("daemon error"))
    }
}

fn status(paths: &Paths) -> Result<AgentStatus> {
    match call(paths, &Request::Status) {
        Ok(v) => Ok(serde_json::from_value(v)?),
        Err(_) => daemon::offline_status(paths),
    }
}

fn job_status(paths: &Paths, id: u64) -> Result<JobStatus> {
    status(paths)?
        .jobs
        .into_iter()
        .find(|j| j.id == id)
        .ok_or_else(|| anyhow!("no job {id}"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = expand_home(&cli.state_dir);
    let paths = Paths::new(&root);
    let j = cli.json;
    match cli.cmd {
        Cmd::Version => {
            let v = VersionInfo {
                agent_version: daemon::AGENT_VERSION.into(),
                protocol_version: skycat_protocol::PROTOCOL_VERSION,
            };
            print(j, &serde_json::to_value(&v)?, || {
                format!(
                    "skycat-agent {} (protocol {})",
                    v.agent_version, v.protocol_version
                )
            });
        }
        Cmd::Daemon { detach: false } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(daemon::Daemon::run(&root))?;
        }
        Cmd::Daemon { detach: true } => {
            let v = detach(&paths)?;
            print(j, &v, || {
                format!(
                    "daemon pid {} ({})",
                    v["pid"],
                    if v["already_running"] == true {
                        "already running"
                    } else {
                        "started"
                    }
                )
            });
        }
        Cmd::Setup { wait, timeout } => {
            let text = read_stdin()?;
            let spec: SetupSpec = skycat_protocol::from_json("setup spec", &text)?;
            let v = call(&paths, &Request::Setup { spec })?;
            if wait {
                let deadline = Instant::now() + util::secs(timeout);
                loop {
                    let st = status(&paths)?.setup;
                    match st.state {
                        SetupState::Succeeded | SetupState::None => {
                            print(j, &serde_json::to_value(&st)?, || "setup succeeded".into());
                            break;
                        }
                        SetupState::Failed => {
                            print(j, &serde_json::to_value(&st)?, || {
                                format!("setup failed: exit {:?}", st.exit_code)
                            });
                            return Ok(ExitCode::from(1));
                        }
                        _ if Instant::now() > deadline => {
                            bail!("setup still {:?} after {timeout} s", st.state)
                        }
                        _ => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            } else {
                print(j, &v, || {
                    format!("setup {}", v["state"].as_str().unwrap_or("?"))
                });
            }
        }
        Cmd::Submit => {
            let text = read_stdin()?;
            let spec: JobSpec = skycat_protocol::from_json("job spec", &text)?;
            let v = call(&paths, &Request::Submit { job: spec })?;
            print(j, &v, || format!("{}", v["job_id"]));
        }
        Cmd::Status => {
            let st = status(&paths)?;
            print(j, &serde_json::to_value(&st)?, || {
                format!(
                    "cluster {} node {}: daemon {}; setup {:?}; jobs {} ({} running); GPUs {}/{}; idle {:.0} s; cost ${:.4} at ${}/h",
                    st.cluster,
                    st.node_id,
                    if st.daemon_running { "running" } else { "not running" },
                    st.setup.state,
                    st.jobs.len(),
                    st.jobs.iter().filter(|x| x.state == skycat_protocol::JobState::Running).count(),
                    st.gpus_in_use,
                    st.gpus_total,
                    st.idle_seconds,
                    st.cost.accrued_usd,
                    st.cost.price_per_hour
                )
            });
        }
        Cmd::Queue => {
            let jobs = status(&paths)?.jobs;
            print(j, &serde_json::to_value(&jobs)?, || {
                let mut out = String::from("ID  NAME  STATE  GPUS  EXIT  REASON");
                for x in &jobs {
                    out.push_str(&format!(
                        "\n{}  {}  {:?}  {}  {}  {}",
                        x.id,
                        x.name.as_deref().unwrap_or("-"),
                        x.state,
                        x.gpus,
                        x.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        x.reason.as_deref().unwrap_or("")
                    ));
                }
                out
            });
        }
        Cmd::Cancel { job } => {
            call(&paths, &Request::Cancel { id: job })?;
            // Wait until the process tree is gone (SIGKILL follows SIGTERM after ≤10 s).
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut st = job_status(&paths, job)?;
            while st.state == skycat_protocol::JobState::Running && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                st = job_status(&paths, job)?;
            }
            let v = json!({"job_id": job, "state": st.state});
            print(j, &v, || format!("job {job}: {:?}", st.state));
        }
        Cmd::Logs { job, follow } => logs(&paths, &job, follow)?,
        Cmd::Wait { job, timeout } => {
            let deadline = Instant::now() + util::secs(timeout);
            loop {
                let st = job_status(&paths, job)?;
                if st.state.is_terminal() {
                    print(j, &serde_json::to_value(&st)?, || {
                        format!("job {job}: {:?} exit {:?}", st.state, st.exit_code)
                    });
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("error: job {job} still {:?} after {timeout} s", st.state);
                    return Ok(ExitCode::from(2));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cmd::Stop => {
            let pid = call(&paths, &Request::Ping)
                .ok()
                .and_then(|v| v["pid"].as_u64());
            call(&paths, &Request::Stop)?;
            // Wait for the process to exit so a restart right after finds the lock free.
            if let Some(pid) = pid {
                let deadline = Instant::now() + Duration::from_secs(10);
                while util::pid_alive(pid as u32) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            print(j, &json!({"stopped": true}), || "stopped".into());
        }
        Cmd::LogFilter { values } => log_filter(&values)?,
        Cmd::Objects { cmd } => objects::run(cmd, &root, j)?,
        Cmd::Unpack { dest, to, limit } => {
            let target = match to {
                Some(to) => unpack::mount_dir(&root, &to, std::env::var_os("HOME").map(PathBuf::from))?,
                None => unpack::dest_dir(&root, &dest)?,
            };
            let st = skycat_archive::unpack(std::io::stdin().lock(), &target, limit)?;
            let v = json!({"files": st.files, "bytes": st.bytes});
            print(j, &v, || {
                format!(
                    "unpacked {} files ({}) into {}",
                    st.files,
                    skycat_archive::human_bytes(st.bytes),
                    target.display()
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn detach(paths: &Paths) -> Result<Value> {
    if let Ok(v) = call(paths, &Request::Ping) {
        return Ok(json!({"pid": v["pid"], "already_running": true}));
    }
    paths.create_all()?;
    // Check the config before detaching so errors reach the caller.
    daemon::load_config(paths)?;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(paths.agent_log())
        .with_context(|| format!("cannot open {}", paths.agent_log().display()))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--state-dir")
        .arg(&paths.root)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(v) = call(paths, &Request::Ping) {
            return Ok(json!({"pid": v["pid"], "already_running": false}));
        }
        if let Some(st) = child.try_wait()? {
            let log = std::fs::read_to_string(paths.agent_log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            bail!(
                "daemon exited ({st}) during start-up: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "daemon did not answer within 10 s; see {}",
                paths.agent_log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn logs(paths: &Paths, job: &str, follow: bool) -> Result<()> {
    let id: Option<u64> = if job == "setup" {
        None
    } else {
        Some(
            job.parse()
                .map_err(|_| anyhow!("JOB must be a job id or `setup`, not {job:?}"))?,
        )
    };
    let path = paths.job_log(job);
    if let Some(id) = id {
        job_status(paths, id)?; // errors for an unknown job
    }
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    let mut copy = |pos: &mut u64| -> Result<()> {
        if let Ok(mut f) = std::fs::File::open(&path) {
            f.seek(SeekFrom::Start(*pos))?;
            let n = std::io::copy(&mut f, &mut out)?;
            *pos += n;
            out.flush()?;
        }
        Ok(())
    };
    copy(&mut pos)?;
    if !follow {
        return Ok(());
    }
    loop {
        let done = match id {
            Some(id) => job_status(paths, id)?.state.is_terminal(),
            None => !matches!(
                status(paths)?.setup.state,
                SetupState::Pending | SetupState::Running
            ),
        };
        copy(&mut pos)?;
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Line by line: stdin → stdout with every secret value replaced. Ignores SIGTERM/SIGINT/SIGHUP
/// so that the job's last words (e.g. "checkpoint saved") still reach the log.
fn log_filter(values: &Path) -> Result<()> {
    // SAFETY: setting signal dispositions to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let text = std::fs::read_to_string(values).unwrap_or_default();
    let mut secrets: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
    secrets.retain(|s| s.len() >= 3);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut line = buf.clone();
        for s in &secrets {
            line = replace_bytes(&line, s.as_bytes(), skycat_protocol::REDACTED.as_bytes());
        }
        out.write_all(&line)?;
        out.flush()?;
    }
}

/// Replaces every occurrence of `needle` in `hay` (bytes: logs need not be UTF-8).
fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || hay.len() < needle.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_bytes_handles_repeats_and_binary() {
        assert_eq!(
            super::replace_bytes(b"aXYbXYXY\xff", b"XY", b"-"),
            b"a-b--\xff".to_vec()
        );
        assert_eq!(super::replace_bytes(b"abc", b"", b"-"), b"abc".to_vec());
    }
}
