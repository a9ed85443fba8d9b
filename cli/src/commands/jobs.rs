//! `skycat jobs`: managed jobs (launch, queue, logs, cancel), like SkyPilot's `sky jobs`. The
//! controller runs inside `skycat serve`; this command talks to it over HTTP(S) (see
//! `server_client`: `--server-url`, `$SKYCAT_SERVER_URL`, the server saved at `skycat login`,
//! default http://127.0.0.1:8080).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets::NOTHING, Table};
use skycat_controller::managed::{JobView, Strategy};
use skycat_controller::mounts::MountSource;

use crate::commands::server_client::{Client, Target};
use crate::commands::task_args::{load_task, ResourceFlags};

#[derive(Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub cmd: JobsCommand,
    /// The `skycat serve` running the managed-jobs controller (default: the server of
    /// `skycat login`, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "SKYCAT_SERVER_URL")]
    pub server_url: Option<String>,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Launch a managed job: recovered from spot preemptions, until it ends.
    Launch(LaunchArgs),
    /// Show managed jobs: status, recoveries, current placement, total cost.
    Queue(QueueArgs),
    /// Print a managed job's logs (every attempt).
    Logs(LogsArgs),
    /// Cancel a managed job.
    Cancel(IdArg),
}

#[derive(Args)]
pub struct LaunchArgs {
    /// Task YAML (SkyPilot format). `resources.job_recovery` ({strategy, max_restarts_on_errors}
    /// or a strategy name) and `resources.use_spot` are honoured.
    pub task: PathBuf,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Job name.
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Recovery strategy: EAGER_NEXT_REGION (default) or FAILOVER.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Relaunch after this many user failures (non-zero exits).
    #[arg(long)]
    pub max_restarts_on_errors: Option<u32>,
    /// Projected run time in hours, for the server's budget check (default 1): the plan's
    /// $/h × this is added to your metered cost this month.
    #[arg(long)]
    pub hours: Option<f64>,
}

#[derive(Args)]
pub struct QueueArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    pub id: i64,
    /// Keep printing until the job ends.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Args)]
pub struct IdArg {
    pub id: i64,
}

fn recovery_from_yaml(v: &serde_json::Value) -> Result<(Option<String>, Option<u32>)> {
    match v {
        serde_json::Value::Null => Ok((None, None)),
        serde_json::Value::String(s) => Ok((Some(s.clone()), None)),
        serde_json::Value::Object(m) => {
            let strategy = match m.get("strategy") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => bail!("resources.job_recovery.strategy: expected a name, got {other}"),
            };
            let max = match m.get("max_restarts_on_errors") {
                None | Some(serde_json::Value::Null) => None,
                Some(x) => Some(
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| anyhow!("resources.job_recovery.max_restarts_on_errors: expected a non-negative integer, got {x}"))?,
                ),
            };
            Ok((strategy, max))
        }
        other => bail!("resources.job_recovery: expected a strategy name or a mapping, got {other}"),
    }
}

/// What `jobs launch` uploads before submitting: the workdir and the local file mounts.
struct Uploads {
    workdir: Option<PathBuf>,
    /// (destination, local file or folder)
    mounts: Vec<(String, PathBuf)>,
}

/// The job's body, and the local files to upload for it.
fn load_request(a: &LaunchArgs) -> Result<(serde_json::Value, Uploads)> {
    let path: &Path = &a.task;
    let (task, spec) = load_task(Some(path), &a.resources)?;
    let Some(run) = task.run.clone().filter(|r| !r.trim().is_empty()) else {
        bail!("{}: run: a managed job needs a `run` command", path.display())
    };
    // Uploaded from here (the server never reads a path of its own for a client).
    let workdir = match &task.workdir {
        Some(w) => Some(std::fs::canonicalize(w).with_context(|| format!("{}: workdir {}", path.display(), w.display()))?),
        None => None,
    };
    let (mut buckets, mut mounts) = (Vec::new(), Vec::new());
    for m in &task.file_mounts {
        match &m.source {
            MountSource::Local { path: local } => {
                let p = std::fs::canonicalize(local).with_context(|| format!("{}: file_mounts.{}: {}", path.display(), m.dst, local.display()))?;
                mounts.push((m.dst.clone(), p));
            }
            MountSource::Storage { .. } => {
                bail!("{}: file_mounts.{}: {}", path.display(), m.dst, skycat_controller::managed::STORAGE_IN_MANAGED_JOBS)
            }
            _ => buckets.push(m.clone()),
        }
    }
    let res = spec.resources.as_ref();
    let recovery = res.and_then(|r| r.job_recovery.clone().or(r.spot_recovery.clone())).unwrap_or_default();
    let (y_strategy, y_max) = recovery_from_yaml(&recovery).with_context(|| path.display().to_string())?;
    let strategy = a.strategy.clone().or(y_strategy);
    if let Some(s) = &strategy {
        if Strategy::parse(s).is_none() {
            bail!("strategy: unknown recovery strategy {s:?}; use EAGER_NEXT_REGION or FAILOVER");
        }
    }
    let use_spot = res.and_then(|r| r.use_spot).unwrap_or(false);
    let body = serde_json::json!({
        "name": a.name.clone().or(spec.name.clone()),
        "use_spot": use_spot,
        "strategy": strategy,
        "max_restarts_on_errors": a.max_restarts_on_errors.or(y_max).unwrap_or(0),
        "task": {
            "name": task.name,
            "num_nodes": task.num_nodes,
            "setup": task.setup,
            "run": run,
            "envs": task.envs,
            "secret_envs": task.secret_envs,
            "gpus_per_node": task.gpus_per_node,
            "file_mounts": buckets,
            "storage_envs": task.storage_envs,
        },
        "spec": spec,
        "hours": a.hours,
    });
    Ok((body, Uploads { workdir, mounts }))
}

/// Packs `src` (a folder honouring .skyignore/.gitignore, or one file archived as `file_name`)
/// and streams it to `POST /v1/uploads`; the id.
async fn upload(server: &Client, what: &str, src: &Path, file_name: Option<String>) -> Result<String> {
    let (d, label) = (src.to_path_buf(), what.to_string());
    let (file, stats) = tokio::task::spawn_blocking(move || -> Result<_> {
        let f = tempfile::NamedTempFile::new().context("creating a temporary file for the upload archive")?;
        let out = std::io::BufWriter::new(f.as_file());
        let stats = match &file_name {
            Some(name) => skycat_archive::pack_file_gz(&d, name, skycat_archive::DEFAULT_LIMIT_BYTES, out),
            None => skycat_archive::pack_gz(&d, skycat_archive::DEFAULT_LIMIT_BYTES, out),
        }
        .map_err(|e| anyhow!("{label}: {e}"))?;
        Ok((f, stats))
    })
    .await
    .map_err(|e| anyhow!("packing {what}: {e}"))??;
    let reader = tokio::fs::File::open(file.path()).await.context("reading the upload archive")?;
    let len = reader.metadata().await.map(|m| m.len()).unwrap_or(0);
    eprintln!("Uploading {what} {} ({} files, {} packed) ...", src.display(), stats.files, skycat_archive::human_bytes(len));
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader));
    let req = server.post("/v1/uploads").header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(body);
    let v = server.call(req).await?;
    v["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("unexpected answer to the upload: {v}"))
}

pub async fn run(args: JobsArgs) -> Result<()> {
    let home = skycat_controller::home::Home::from_env();
    let server = Target::resolve(&home.root, args.server_url.as_deref())?.client()?;
    match args.cmd {
        JobsCommand::Launch(a) => {
            let (mut body, uploads) = load_request(&a)?;
            if let Some(dir) = uploads.workdir {
                body["workdir_upload"] = serde_json::Value::String(upload(&server, "workdir", &dir, None).await?);
            }
            let mut mount_uploads = serde_json::Map::new();
            for (dst, src) in uploads.mounts {
                let file = !src.is_dir();
                let name = file.then(|| skycat_controller::mounts::file_dst_parts(&dst).1);
                let id = upload(&server, &format!("file_mounts.{dst}"), &src, name).await?;
                mount_uploads.insert(dst, serde_json::json!({"id": id, "file": file}));
            }
            if !mount_uploads.is_empty() {
                body["file_mount_uploads"] = serde_json::Value::Object(mount_uploads);
            }
            let v = server.call(server.post("/v1/jobs").json(&body)).await?;
            let job: JobView = serde_json::from_value(v).context("unexpected answer from the controller")?;
            println!(
                "Managed job {} submitted ({}, strategy {}). Watch it with `skycat jobs queue` and `skycat jobs logs {} -f`.",
                job.id,
                if job.use_spot { "spot" } else { "on-demand" },
                job.strategy,
                job.id
            );
        }
        JobsCommand::Queue(a) => {
            let v = server.call(server.get("/v1/jobs")).await?;
            let jobs: Vec<JobView> = serde_json::from_value(v).context("unexpected answer from the controller")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            if jobs.is_empty() {
                println!("No managed jobs.");
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(NOTHING);
            t.set_header(["ID", "NAME", "STATUS", "RECOVERIES", "PLACEMENT", "ATTEMPTS", "DURATION", "COST", "REASON"]);
            for j in &jobs {
                let dur: f64 = j.attempts.iter().map(|a| a.duration_secs).sum();
                t.add_row([
                    j.id.to_string(),
                    j.name.clone().unwrap_or_else(|| "-".into()),
                    j.status.clone(),
                    j.recovery_count.to_string(),
                    j.placement.clone().unwrap_or_else(|| "-".into()),
                    j.attempts.len().to_string(),
                    fmt_secs(dur),
                    format!("${:.4}", j.total_cost_usd),
                    j.failure_reason.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        JobsCommand::Logs(a) => {
            let mut printed: BTreeMap<u64, usize> = BTreeMap::new();
            loop {
                let v = server.call(server.get(&format!("/v1/jobs/{}/logs", a.id))).await?;
                let mut out = std::io::stdout().lock();
                for att in v["attempts"].as_array().cloned().unwrap_or_default() {
                    let n = att["attempt"].as_u64().unwrap_or(0);
                    let log = att["log"].as_str().unwrap_or("");
                    let done = printed.entry(n).or_insert_with(|| {
                        let _ = writeln!(out, "=== attempt {n} ===");
                        0
                    });
                    if log.len() > *done && log.is_char_boundary(*done) {
                        out.write_all(&log.as_bytes()[*done..])?;
                        *done = log.len();
                    }
                }
                out.flush()?;
                drop(out);
                if !a.follow || v["terminal"].as_bool().unwrap_or(true) {
                    if a.follow {
                        println!("=== job {} {} ===", a.id, v["status"].as_str().unwrap_or("?"));
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        JobsCommand::Cancel(a) => {
            let v = server.call(server.post(&format!("/v1/jobs/{}/cancel", a.id))).await?;
            println!("Managed job {}: {}", a.id, v["status"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
