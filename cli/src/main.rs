//! `skycat`: the user's binary. A thin layer of clap commands over the library crates.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skycat", version, about = "Find the cheapest place to run GPU work, then run it there")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List accelerators and their prices, like `sky show-gpus`.
    ShowGpus(commands::show_gpus::ShowGpusArgs),
    /// Inspect or export the price catalog.
    #[command(subcommand)]
    Catalog(commands::catalog::CatalogCommand),
    /// Rebuild the price catalogs from the providers' APIs.
    Fetch(commands::fetch::FetchArgs),
    /// Show an instance type's or accelerator's prices across fetch history.
    PriceHistory(commands::price_history::PriceHistoryArgs),
    /// Cluster lifecycle: launch, exec, status, queue, logs, cancel, stop, start, down, cost-report.
    #[command(flatten)]
    Cluster(commands::cluster::ClusterCommand),
    /// Cheapest placement of a SkyPilot task (or pipeline / DAG / fleet), with the failover order.
    Optimize(commands::optimize::OptimizeArgs),
    /// Serve /optimize, the catalog, metrics and OpenAPI over HTTP, with an optional cron refresh.
    Serve(commands::serve::ServeArgs),
    /// Save an API token for a `skycat serve` and pin its TLS certificate.
    Login(commands::login::LoginArgs),
    /// Managed jobs: launch, queue, logs, cancel (recovered from spot preemptions).
    Jobs(commands::jobs::JobsArgs),
    /// Which clouds' credentials work: launch-enabled or prices only, cached for launches.
    Check(commands::check::CheckArgs),
    /// An interactive GPU node: launch it (or attach), then ssh in with port forwards.
    Gpunode(commands::gpunode::NodeArgs),
    /// An interactive CPU node.
    Cpunode(commands::gpunode::NodeArgs),
    /// An interactive TPU node.
    Tpunode(commands::gpunode::NodeArgs),
    /// Storage objects skycat made (`file_mounts` with `name:`): ls, delete.
    #[command(subcommand)]
    Storage(commands::storage::StorageCommand),
    // (more commands register here: one variant per command module)
}

fn main() -> std::process::ExitCode {
    commands::init_tracing();
    let cli = Cli::parse();
    // Price and plan commands are synchronous: they start no runtime (its worker threads cost
    // a command that answers in milliseconds a noticeable share of its time).
    let result = match cli.command {
        Command::ShowGpus(args) if args.infra.is_none() => commands::show_gpus::run(args),
        Command::Catalog(cmd) => commands::catalog::run(cmd),
        Command::PriceHistory(args) => commands::price_history::run(args),
        Command::Optimize(args) => commands::optimize::run(args),
        command => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(run_async(command)),
            Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming what failed; the chain is joined so the cause stays visible.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The commands that talk to clouds, nodes or a server.
async fn run_async(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ShowGpus(args) => commands::show_gpus_k8s::run(args).await,
        Command::Fetch(args) => commands::fetch::run(args).await,
        Command::Cluster(cmd) => commands::cluster::run(cmd).await,
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Login(args) => commands::login::run(args).await,
        Command::Jobs(args) => commands::jobs::run(args).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Gpunode(a) => commands::gpunode::run(commands::gpunode::NodeKind::Gpu, a).await,
        Command::Cpunode(a) => commands::gpunode::run(commands::gpunode::NodeKind::Cpu, a).await,
        Command::Tpunode(a) => commands::gpunode::run(commands::gpunode::NodeKind::Tpu, a).await,
        Command::Storage(cmd) => commands::storage::run(cmd).await,
        // (and dispatch here: one arm per command module)
        Command::Catalog(cmd) => commands::catalog::run(cmd),
        Command::PriceHistory(args) => commands::price_history::run(args),
        Command::Optimize(args) => commands::optimize::run(args),
    }
}
