//! Cluster commands, like SkyPilot's: launch, exec, status, queue, logs, cancel, stop, start,
//! down, cost-report. The work is in `skycat-controller`; this file parses arguments and tasks
//! and prints tables.
//!
//! Where reports come from: clusters launched with `--server-url` (or `$SKYCAT_SERVER_URL`)
//! send heartbeats to `skycat serve`, which stores them in `$SKYCAT_HOME/state.db`. Without a
//! server, the agents journal their heartbeats locally and the CLI pulls status, jobs and the
//! cost ledger over SSH (`status`, `queue`, `stop`, `down`, `cost-report --refresh`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets::NOTHING, Table};
use skycat_controller::home::Home;
use skycat_controller::lifecycle::{check_cluster_name, stderr_progress, Controller, LaunchRequest, LaunchResources, TaskRun};
use skycat_controller::placement::{LaunchPlan, PlacementError};
use skycat_optimizer::PlanOptions;

use crate::commands::task_args::{load_task, ResourceFlags};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Launch a cluster on an SSH node pool (or reuse it) and run a task on it.
    Launch(LaunchArgs),
    /// Run a task YAML or a command on an existing cluster (no setup).
    Exec(ExecArgs),
    /// Show clusters.
    Status(StatusArgs),
    /// Show a cluster's job queue.
    Queue(NameArg),
    /// Print a job's logs (the latest job by default).
    Logs(LogsArgs),
    /// Cancel a job.
    Cancel(CancelArgs),
    /// Stop a cluster's jobs and agents; its hosts stay reserved.
    Stop(NameArg),
    /// Restart a stopped cluster's agents.
    Start(NameArg),
    /// Tear a cluster down: stop the agents, remove their files, free the hosts.
    Down(DownArgs),
    /// Cost of every cluster, from the agents' metered ledger (never re-priced); `--all-users`,
    /// `--since`: the team's, per user, cluster and cloud.
    CostReport(crate::commands::cost_report::CostReportArgs),
    /// A shell (or one command) on a cluster's head node: Kubernetes pods through exec with a
    /// terminal. Clusters on VMs and SSH pools: `ssh CLUSTER`.
    Ssh(SshArgs),
}

#[derive(Debug, clap::Args)]
pub struct SshArgs {
    pub cluster: String,
    /// A command to run instead of a login shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct LaunchArgs {
    /// Task YAML (SkyPilot format); optional when the flags say enough.
    pub task: Option<PathBuf>,
    /// Cluster name.
    #[arg(short = 'c', long = "cluster")]
    pub cluster: String,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Skip the task's setup.
    #[arg(long)]
    pub no_setup: bool,
    /// Autostop after this many idle minutes.
    #[arg(short = 'i', long = "idle-minutes-to-autostop", value_parser = parse_idle_minutes)]
    pub idle_minutes: Option<f64>,
    /// With -i: tear the cluster down instead of stopping it.
    #[arg(long)]
    pub down: bool,
    /// Print the plan (exactly what launch would try, in order) and exit.
    #[arg(long)]
    pub dryrun: bool,
    /// Exclude a cloud, region or zone: `aws`, `aws/us-east-1`, `aws/us-east-1/us-east-1a`.
    #[arg(long = "block", value_name = "CLOUD[/REGION[/ZONE]]")]
    pub blocked: Vec<String>,
    /// Don't ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Heartbeat receiver as the nodes reach it, e.g. `http://{controller_ip}:8080`
    /// (`{controller_ip}` = the address a node sees the SSH connection come from).
    #[arg(long, env = "SKYCAT_SERVER_URL")]
    pub server_url: Option<String>,
    /// Seconds between heartbeats (default 10, at most 604800: one week).
    #[arg(long, value_parser = parse_heartbeat_secs)]
    pub heartbeat_secs: Option<f64>,
}

/// `--heartbeat-secs`: the agent's `heartbeat_interval_secs`, checked here with the agent's own
/// rule so that a bad value fails before any node is launched, not in the agent afterwards.
pub(crate) fn parse_heartbeat_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("must be a number of seconds, not `{s}`"))?;
    skycat_protocol::check_secs(v, false, skycat_protocol::MAX_INTERVAL_SECS)?;
    Ok(v)
}

/// `-i/--idle-minutes-to-autostop`: the agent's `idle_minutes`, checked with the agent's rule.
pub(crate) fn parse_idle_minutes(s: &str) -> Result<f64, String> {
    let max = skycat_protocol::MAX_IDLE_SECS / 60.0;
    match s.trim().parse::<f64>() {
        Ok(m) if skycat_protocol::check_secs(m * 60.0, true, skycat_protocol::MAX_IDLE_SECS).is_ok() => Ok(m),
        _ => Err(format!("must be a number of minutes >= 0 and at most {max}, not `{s}`")),
    }
}

#[derive(Args)]
pub struct ExecArgs {
    pub cluster: String,
    /// A task YAML file, or a shell command.
    pub task_or_command: String,
    #[arg(long = "env")]
    pub env: Vec<String>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Only these clusters.
    pub clusters: Vec<String>,
    /// Print the head node's IP (of the one cluster named).
    #[arg(long)]
    pub ip: bool,
    /// Print `IP:port` of every opened port (of the one cluster named).
    #[arg(long)]
    pub endpoints: bool,
    /// Print `IP:port` of this port (of the one cluster named).
    #[arg(long)]
    pub endpoint: Option<u16>,
    /// Don't pull over SSH; show what the state DB has.
    #[arg(long)]
    pub no_refresh: bool,
}

#[derive(Args)]
pub struct NameArg {
    pub cluster: String,
}

#[derive(Args)]
pub struct LogsArgs {
    pub cluster: String,
    pub job: Option<u64>,
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args)]
pub struct CancelArgs {
    pub cluster: String,
    pub job: u64,
}

#[derive(Args)]
pub struct DownArgs {
    pub cluster: String,
    /// Give up nodes that cannot be reached instead of failing.
    #[arg(long)]
    pub purge: bool,
}

pub async fn controller() -> Result<Controller> {
    Ok(Controller::open(Home::from_env()).await?.with_progress(stderr_progress()))
}

fn parse_env_args(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| anyhow!("--env {a:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--env {a:?}: empty name");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub async fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Launch(a) => launch(a).await,
        ClusterCommand::Exec(a) => {
            let ctl = controller().await?;
            let task = if a.task_or_command.ends_with(".yaml") || a.task_or_command.ends_with(".yml") {
                let flags = ResourceFlags { env: a.env.clone(), ..Default::default() };
                let (mut t, _) = load_task(Some(Path::new(&a.task_or_command)), &flags)?;
                t.num_nodes = 0;
                t
            } else {
                let mut t = TaskRun::command(&a.task_or_command);
                t.num_nodes = 0;
                t.envs = parse_env_args(&a.env)?;
                t
            };
            let job = ctl.exec(&a.cluster, &task).await?;
            println!("Job {job} submitted to {}. Logs: skycat logs {} {job}", a.cluster, a.cluster);
            Ok(())
        }
        ClusterCommand::Status(a) => status(a).await,
        ClusterCommand::Queue(a) => {
            let ctl = controller().await?;
            let jobs = ctl.queue(&a.cluster).await?;
            let mut t = Table::new();
            t.load_preset(NOTHING);
            t.set_header(["ID", "NAME", "SUBMITTED", "STARTED", "DURATION", "STATUS", "NODES"]);
            for j in jobs {
                let first = &j.per_node[0].1;
                let end = first.ended_at.unwrap_or_else(chrono::Utc::now);
                let dur = first.started_at.map(|s| fmt_secs((end - s).num_milliseconds() as f64 / 1000.0));
                t.add_row([
                    j.id.to_string(),
                    j.name.clone().unwrap_or_else(|| "-".into()),
                    first.submitted_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    first.started_at.map(|s| s.format("%H:%M:%S").to_string()).unwrap_or_else(|| "-".into()),
                    dur.unwrap_or_else(|| "-".into()),
                    state_str(j.state),
                    j.per_node.len().to_string(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        ClusterCommand::Logs(a) => {
            let ctl = controller().await?;
            let out: Arc<dyn Fn(&[u8]) + Send + Sync> = Arc::new(|b: &[u8]| {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(b);
                let _ = o.flush();
            });
            ctl.logs(&a.cluster, a.job, a.follow, out).await?;
            Ok(())
        }
        ClusterCommand::Cancel(a) => {
            controller().await?.cancel(&a.cluster, a.job).await?;
            println!("Job {} of {} cancelled.", a.job, a.cluster);
            Ok(())
        }
        ClusterCommand::Stop(a) => {
            controller().await?.stop(&a.cluster).await?;
            println!("Cluster {} stopped (hosts kept; `skycat start {}`).", a.cluster, a.cluster);
            Ok(())
        }
        ClusterCommand::Start(a) => {
            controller().await?.start(&a.cluster).await?;
            println!("Cluster {} is UP.", a.cluster);
            Ok(())
        }
        ClusterCommand::Ssh(a) => {
            use std::io::IsTerminal;
            let ctl = controller().await?;
            // A terminal on both ends: raw mode here, a TTY there. Pipes stay pipes.
            let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
            let raw = tty && crossterm::terminal::enable_raw_mode().is_ok();
            let r = ctl.shell(&a.cluster, &a.command.join(" "), tty).await;
            if raw {
                let _ = crossterm::terminal::disable_raw_mode();
            }
            match r? {
                Some(0) => Ok(()),
                Some(code) => std::process::exit(code.min(255) as i32),
                None => bail!("the shell on {} ended without an exit status", a.cluster),
            }
        }
        ClusterCommand::Down(a) => {
            controller().await?.down(&a.cluster, a.purge).await?;
            println!("Cluster {} terminated.", a.cluster);
            Ok(())
        }
        ClusterCommand::CostReport(a) => crate::commands::cost_report::run(a).await,
    }
}

/// The plan a launch executes (what `--dryrun` prints), over the catalog and the enabled
/// backends.
///
/// Like `skycat optimize`, it loads only the rows the task can use (see
/// [`skycat_optimizer::offer_filter`]) and asks again over the whole catalog when that fails, so
/// that the error explains against every row.
pub fn plan_for(ctl: &Controller, spec: &skycat_optimizer::TaskSpec, blocked: &[String]) -> Result<LaunchPlan> {
    let opts = PlanOptions {
        blocked: blocked.iter().map(|b| crate::commands::optimize::parse_block(b)).collect::<Result<_>>()?,
        // The same data-locality terms as `skycat optimize`: the task's buckets, looked up.
        inputs: crate::commands::optimize::data_inputs(spec, &[], true),
        ..PlanOptions::default()
    };
    let filter = skycat_optimizer::offer_filter(spec).unwrap_or_default();
    let (_, catalog) = crate::commands::load_catalog_priced(&filter)?;
    let first = ctl.plan_launch(spec, &catalog.into_offers(), &PlanOptions { filtered_rows: !filter.is_all(), ..opts.clone() });
    let result = match first {
        Err(_) if !filter.is_all() => {
            ctl.plan_launch(spec, &crate::commands::load_catalog_priced(&skycat_catalog::OfferFilter::all())?.1.into_offers(), &opts)
        }
        first => first,
    };
    result.map_err(|e| match e {
        PlacementError::Plan(p) => crate::commands::optimize::explain(p),
        other => anyhow!("{other}"),
    })
}

/// The plan as `sky launch` prints it, plus the clouds that would be cheaper if enabled.
pub fn print_plan(lp: &LaunchPlan, failover_rows: usize) {
    eprint!("{}", crate::commands::optimize::render_plan_table_with(&lp.plan, failover_rows));
    for p in &lp.cheaper_elsewhere {
        eprintln!(
            "note: {} would be cheaper ({} {} at ${:.4}/h) but is not enabled: {}",
            p.cloud,
            p.instance_type,
            p.location(),
            p.hourly_total,
            skycat_controller::enabled::how_to_enable(&p.cloud)
        );
    }
}

pub fn confirm(question: &str) -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!("{question} [Y/n] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "" | "y" | "yes"))
}

/// The certificate the agents pin when they report to an `https://` server: the
/// `$SKYCAT_SERVER_CERT_SHA256`, else the one saved at `skycat login`.
fn agent_pin(server_url: Option<&str>) -> Result<Option<String>> {
    let Some(url) = server_url.filter(|u| u.starts_with("https://")) else { return Ok(None) };
    if let Ok(v) = std::env::var("SKYCAT_SERVER_CERT_SHA256") {
        let fp: skycat_tls_pin::Fingerprint = v.parse().context("SKYCAT_SERVER_CERT_SHA256")?;
        return Ok(Some(fp.to_string()));
    }
    let home = Home::from_env();
    let saved = crate::commands::credentials::load(&home.root)?;
    match saved.as_ref().and_then(|c| c.server_cert_sha256.clone()) {
        Some(p) => Ok(Some(p)),
        None => bail!("--server-url {url}: the agents need the server's certificate fingerprint; run `skycat login` or set SKYCAT_SERVER_CERT_SHA256"),
    }
}

/// Builds the launch request for a task: its plan's failover order and its resources.
pub fn launch_request(cluster: &str, task: TaskRun, spec: &skycat_optimizer::TaskSpec, lp: Option<&LaunchPlan>) -> Result<LaunchRequest> {
    let mut req = LaunchRequest::new(cluster, task);
    if let Some(lp) = lp {
        req.placements = lp.plan.failover.clone();
    }
    req.resources = LaunchResources::from_spec(spec).map_err(|e| anyhow!("{e}"))?;
    Ok(req)
}

async fn launch(a: LaunchArgs) -> Result<()> {
    check_cluster_name(&a.cluster)?;
    let (task, spec) = load_task(a.task.as_deref(), &a.resources)?;
    let (idle_minutes, down) = crate::commands::task_args::autostop(&spec, a.idle_minutes, a.down)?;
    if let Some(m) = a.idle_minutes {
        if !(m.is_finite() && m >= 0.0) {
            bail!("-i {m}: idle minutes must be a number >= 0");
        }
    }
    let mut ctl = controller().await?;
    if let Some(pin) = agent_pin(a.server_url.as_deref())? {
        ctl = ctl.with_server_cert_sha256(pin);
    }
    let existing = ctl.store.cluster(&a.cluster).await?;
    if existing.is_none() || a.dryrun {
        ctl.refresh_live_offers().await;
    }
    let lp = if existing.is_none() || a.dryrun { Some(plan_for(&ctl, &spec, &a.blocked)?) } else { None };
    if a.dryrun {
        if let Some(lp) = &lp {
            print_plan(lp, 0);
        }
        return Ok(());
    }
    if let Some(lp) = &lp {
        print_plan(lp, 10);
        if !a.yes && !confirm(&format!("Launching a new cluster '{}'. Proceed?", a.cluster))? {
            bail!("aborted");
        }
    }
    let mut req = launch_request(&a.cluster, task, &spec, lp.as_ref())?;
    req.no_setup = a.no_setup;
    req.idle_minutes = idle_minutes;
    req.down_on_idle = down;
    req.server_url = a.server_url.clone();
    req.heartbeat_interval_secs = a.heartbeat_secs;
    let out = ctl.launch(&req).await?;
    println!("Cluster {} UP on {}.", out.cluster, out.hosts.join(", "));
    if let Some(job) = out.job_id {
        println!("Job {job} submitted. Logs: skycat logs {} {job} --follow", out.cluster);
    }
    if a.server_url.is_none() {
        eprintln!("(no --server-url: agents journal heartbeats; `skycat status` pulls over SSH)");
    }
    Ok(())
}

fn fmt_ports<'a>(ports: impl Iterator<Item = &'a u16>) -> String {
    let v: Vec<String> = ports.map(u16::to_string).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

async fn status(a: StatusArgs) -> Result<()> {
    let ctl = controller().await?;
    let quick = a.ip || a.endpoints || a.endpoint.is_some();
    let views = ctl.status(!a.no_refresh && !quick).await?;
    let views: Vec<_> = views.into_iter().filter(|v| a.clusters.is_empty() || a.clusters.contains(&v.cluster.name)).collect();
    if a.endpoints || a.endpoint.is_some() {
        if a.clusters.len() != 1 {
            bail!("--endpoints/--endpoint need exactly one cluster name");
        }
        let v = views.first().ok_or_else(|| anyhow!("cluster {:?} not found", a.clusters[0]))?;
        let head = v.nodes.first().ok_or_else(|| anyhow!("cluster {} has no nodes", v.cluster.name))?;
        let ranges = v.cluster.port_ranges();
        // Backends that expose ports elsewhere (a Kubernetes Service) say where.
        if let Some(map) = ctl.endpoints(&v.cluster, &v.nodes).await? {
            match a.endpoint {
                Some(p) => match map.get(&p) {
                    Some(at) => println!("{at}"),
                    None => bail!("port {p} is not exposed on cluster {} (exposed: {})", v.cluster.name, fmt_ports(map.keys())),
                },
                None if map.is_empty() => bail!("cluster {} opened no ports (resources.ports / --ports)", v.cluster.name),
                None => {
                    for (p, at) in &map {
                        println!("{p}: {at}");
                    }
                }
            }
            return Ok(());
        }
        match a.endpoint {
            Some(p) => {
                if !ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)) {
                    bail!(
                        "port {p} is not opened on cluster {} (opened: {}); launch with --ports {p}",
                        v.cluster.name,
                        v.cluster.ports.as_deref().filter(|s| !s.is_empty()).unwrap_or("none")
                    );
                }
                println!("{}:{p}", head.ip);
            }
            None => {
                if ranges.is_empty() {
                    bail!("cluster {} opened no ports (resources.ports / --ports)", v.cluster.name);
                }
                for (lo, hi) in ranges {
                    if lo == hi {
                        println!("{lo}: {}:{lo}", head.ip);
                    } else {
                        println!("{lo}-{hi}: {}:{lo}-{hi}", head.ip);
                    }
                }
            }
        }
        return Ok(());
    }
    if a.ip {
        if a.clusters.len() != 1 {
            bail!("--ip needs exactly one cluster name");
        }
        let v = views.first().ok_or_else(|| anyhow!("cluster {:?} not found", a.clusters[0]))?;
        for n in v.nodes.iter().take(1) {
            println!("{}", n.ip);
        }
        return Ok(());
    }
    if views.is_empty() {
        println!("No existing clusters.");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["NAME", "INFRA", "NODES", "STATUS", "AUTOSTOP", "$/HOUR", "COST", "JOBS", "REPORTED BY"]);
    for v in views {
        let c = &v.cluster;
        let cost: f64 = v.nodes.iter().map(|n| n.accrued_usd).sum();
        let autostop = match c.idle_minutes {
            Some(m) => format!("{}m{}", fmt_num(m), if c.down_on_idle { " (down)" } else { "" }),
            None => "-".into(),
        };
        let jobs = ctl.store.jobs(&c.id).await?;
        let running = jobs.iter().filter(|j| j.state == "RUNNING").map(|j| j.job_id).collect::<std::collections::BTreeSet<_>>();
        let errors: Vec<String> = v.agents.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
        t.add_row([
            c.name.clone(),
            c.infra.clone(),
            c.num_nodes.to_string(),
            c.status.clone(),
            autostop,
            format!("{:.2}", c.price_per_hour * c.num_nodes as f64),
            format!("$ {cost:.4}"),
            if running.is_empty() { "-".into() } else { format!("{} running", running.len()) },
            if errors.is_empty() { v.source.to_string() } else { format!("ssh: {}", errors.join("; ")) },
        ]);
    }
    println!("{t}");
    Ok(())
}

fn state_str(s: skycat_protocol::JobState) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

pub(crate) fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
