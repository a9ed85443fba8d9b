//! `skycat gpunode | cpunode | tpunode`: an interactive node, like SkyPilot's. Launches the node
//! (planned like any launch) unless it is up, then opens an interactive SSH session to it with
//! the given port forwards, through the cluster's entry in `$SKYCAT_HOME/ssh/config`. Running it
//! again attaches to the same node.

use anyhow::{bail, Context, Result};
use clap::Args;
use skycat_controller::lifecycle::check_cluster_name;

use crate::commands::cluster::{controller, launch_request, plan_for, print_plan};
use crate::commands::task_args::{load_task, ResourceFlags};

/// Which kind of interactive node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Gpu,
    Cpu,
    Tpu,
}

impl NodeKind {
    fn name(self) -> &'static str {
        match self {
            NodeKind::Gpu => "gpunode",
            NodeKind::Cpu => "cpunode",
            NodeKind::Tpu => "tpunode",
        }
    }
    /// What the node gets when `--gpus` is not given.
    fn default_accelerators(self) -> Option<&'static str> {
        match self {
            NodeKind::Gpu => Some("T4:1"),
            NodeKind::Cpu => None,
            NodeKind::Tpu => Some("tpu-v2-8"),
        }
    }
}

#[derive(Args)]
pub struct NodeArgs {
    /// Cluster name (default `skycat-gpunode` / `skycat-cpunode` / `skycat-tpunode`).
    #[arg(short = 'c', long = "cluster")]
    pub cluster: Option<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Forward a local port to the same port on the node; repeatable: `-p 8888 -p 6006`.
    #[arg(short = 'p', long = "port-forward")]
    pub port_forward: Vec<u16>,
    /// Autostop after this many idle minutes.
    #[arg(short = 'i', long = "idle-minutes-to-autostop", value_parser = crate::commands::cluster::parse_idle_minutes)]
    pub idle_minutes: Option<f64>,
    /// With -i: tear the node down instead of stopping it.
    #[arg(long)]
    pub down: bool,
    /// Don't ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Launch (or find) the node and print the ssh command instead of running it.
    #[arg(long)]
    pub print_only: bool,
}

pub async fn run(kind: NodeKind, mut a: NodeArgs) -> Result<()> {
    let name = a.cluster.clone().unwrap_or_else(|| format!("skycat-{}", kind.name()));
    check_cluster_name(&name)?;
    if a.down && a.idle_minutes.is_none() {
        bail!("--down needs -i IDLE_MINUTES (autostop with teardown)");
    }
    if a.resources.gpus.is_none() {
        a.resources.gpus = kind.default_accelerators().map(str::to_string);
    }
    if kind == NodeKind::Cpu && a.resources.gpus.is_some() {
        bail!("cpunode takes no --gpus; use gpunode");
    }
    let ctl = controller().await?;
    match ctl.store.cluster(&name).await? {
        Some(c) if c.status == skycat_controller::store::status::UP => {
            eprintln!("Attaching to {} ({}).", name, c.infra);
        }
        Some(c) => {
            eprintln!("Node {name} is {}; starting it.", c.status);
            ctl.start(&name).await?;
        }
        None => {
            let (task, spec) = load_task(None, &a.resources)?;
            ctl.refresh_live_offers().await;
            let lp = plan_for(&ctl, &spec, &[])?;
            print_plan(&lp, 5);
            if !a.yes && !crate::commands::cluster::confirm(&format!("Launching a new {} '{name}'. Proceed?", kind.name()))? {
                bail!("aborted");
            }
            let mut req = launch_request(&name, task, &spec, Some(&lp))?;
            req.idle_minutes = a.idle_minutes;
            req.down_on_idle = a.down;
            let out = ctl.launch(&req).await?;
            eprintln!("Node {} UP on {}.", out.cluster, out.hosts.join(", "));
        }
    }
    let config = skycat_controller::ssh_config::config_path(&ctl.home);
    let mut args: Vec<String> = vec!["-F".into(), config.display().to_string()];
    for p in &a.port_forward {
        args.push("-L".into());
        args.push(format!("{p}:localhost:{p}"));
    }
    args.push(name.clone());
    if a.print_only {
        println!("ssh {}", args.join(" "));
        return Ok(());
    }
    let status = std::process::Command::new("ssh").args(&args).status().context("running ssh (is openssh-client installed?)")?;
    if !status.success() {
        // 255 is ssh's own failure; other codes are the remote shell's last exit status.
        if status.code() == Some(255) {
            bail!("ssh to {name} failed (see above)");
        }
    }
    Ok(())
}
