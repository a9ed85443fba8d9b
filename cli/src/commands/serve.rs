//! `skycat serve`: the HTTP service (`POST /optimize`, catalog endpoints, metrics, OpenAPI) with
//! an optional cron-driven catalog refresh.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use skycat_catalog::SkycatHome;
use skycat_fetchers::run::configured_aws_ondemand_source;
use skycat_fetchers::FetchOptions;
use skycat_server::{RefreshMode, ServeOptions, ServerConfig};

fn split_list(v: &[String]) -> Vec<String> {
    v.iter().flat_map(|s| s.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SKYCAT_SERVE_ADDR")]
    pub addr: SocketAddr,
    /// Refresh the catalog on this cron schedule (UTC; sec min hour day month weekday), e.g.
    /// "0 0 */6 * * *" for every six hours. A failed refresh keeps the catalog in service.
    #[arg(long)]
    pub refresh: Option<String>,
    /// Clouds a refresh fetches, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub refresh_clouds: Vec<String>,
    /// Regions a refresh fetches, comma separated (default: config.yaml, else popular ones).
    #[arg(long, value_delimiter = ',')]
    pub refresh_regions: Vec<String>,
    /// A refresh fetches every region each provider lists.
    #[arg(long, conflicts_with = "refresh_regions")]
    pub refresh_all_regions: bool,
    /// A refresh publishes even when a cloud's row count dropped by more than 30%.
    #[arg(long)]
    pub refresh_force: bool,
    /// A refresh only reloads $SKYCAT_HOME/catalogs (another job runs `skycat fetch`).
    #[arg(long, conflicts_with_all = ["refresh_clouds", "refresh_regions", "refresh_all_regions", "refresh_force"])]
    pub reload_only: bool,
    /// Largest request body, bytes (413 above).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Per-request time limit, seconds (503 after it).
    #[arg(long, default_value_t = 30.0)]
    pub request_timeout: f64,
    /// Report a cloud's prices as stale in /catalog/status after this many hours.
    #[arg(long, default_value_t = 24.0)]
    pub stale_after_hours: f64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        anyhow::bail!("--request-timeout must be a positive number of seconds, got {}", args.request_timeout);
    }
    if !(args.stale_after_hours.is_finite() && args.stale_after_hours > 0.0) {
        anyhow::bail!("--stale-after-hours must be a positive number, got {}", args.stale_after_hours);
    }
    if args.body_limit == 0 {
        anyhow::bail!("--body-limit must be at least 1 byte");
    }
    if let Some(expr) = &args.refresh {
        skycat_server::refresh::parse_schedule(expr).map_err(anyhow::Error::msg)?;
    }
    let home = SkycatHome::from_env().context("cannot locate the skycat home")?;
    let refresh_mode = if args.reload_only {
        RefreshMode::ReloadOnly
    } else {
        let mut f = FetchOptions::new(home.clone());
        f.clouds = split_list(&args.refresh_clouds);
        f.regions = split_list(&args.refresh_regions);
        f.all_regions = args.refresh_all_regions;
        f.force = args.refresh_force;
        f.aws_ondemand_source = configured_aws_ondemand_source(&home)?.unwrap_or_default();
        RefreshMode::Fetch(f)
    };
    let opts = ServeOptions {
        addr: args.addr,
        home,
        refresh: args.refresh,
        refresh_mode,
        config: ServerConfig {
            body_limit: args.body_limit,
            request_timeout: Duration::from_secs_f64(args.request_timeout),
            stale_after: Duration::from_secs_f64(args.stale_after_hours * 3600.0),
            ..ServerConfig::default()
        },
    };
    // Extra routes (agent heartbeats, clusters) mount here.
    let ctl_home = skycat_controller::home::Home::from_env();
    let store = skycat_controller::Store::open(&ctl_home.state_db()).await?;
    let managed_opts = skycat_controller::managed::ManagedOptions::from_env(args.addr.port())?;
    // Managed jobs plan over the catalog as loaded at start (embedded default + user catalogs).
    let offers = std::sync::Arc::new(crate::commands::load_catalog()?.1.into_offers());
    let catalog: skycat_controller::managed::CatalogSource = std::sync::Arc::new(move || offers.as_ref().clone());
    let managed = skycat_controller::managed::Managed::new(
        skycat_controller::Controller::with_store(ctl_home, store.clone()).await?,
        managed_opts,
        catalog,
    )
    .await?;
    let extra = skycat_server::axum::Router::new()
        .merge(skycat_server::routes::heartbeat::router(store))
        .merge(skycat_server::routes::jobs::router(managed));
    skycat_server::serve(opts, extra).await?;
    Ok(())
}
