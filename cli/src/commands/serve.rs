//! `skycat serve`: the HTTP service (`POST /optimize`, catalog endpoints, metrics, OpenAPI,
//! managed jobs, agent heartbeats) with an optional cron-driven catalog refresh, and
//! `skycat serve token create|list|revoke` for its API tokens.

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
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
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
    /// Whether /optimize, /catalog/*, /metrics and /openapi.json answer without an API token:
    /// `auto` = only when listening on a loopback address. /v1/* always needs one.
    #[arg(long, value_enum, default_value_t = PublicRead::Auto)]
    pub public_read: PublicRead,
    /// Largest workdir upload (`POST /v1/uploads`), bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub upload_limit: u64,
    /// HTTPS certificate chain (PEM). Without it, HTTPS uses a self-signed certificate made on
    /// first start and kept in $SKYCAT_HOME/tls/; clients pin its SHA-256 fingerprint.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// HTTPS on a loopback address too (off loopback it is always on).
    #[arg(long)]
    pub tls: bool,
    /// Serve the catalog published to this object-storage prefix (s3://bucket/prefix, gs://,
    /// r2://, Azure), polled every --catalog-store-poll seconds; with a fetch --refresh, this
    /// replica also publishes there (with a PostgreSQL --state, only while it leads; a follower's
    /// tick does nothing). Credentials and endpoints come from the environment
    /// (AWS_*, AWS_ENDPOINT_URL_S3…). See docs/catalog-store.md.
    #[arg(long, env = "SKYCAT_CATALOG_STORE")]
    pub catalog_store: Option<String>,
    /// Seconds between two polls of the catalog store's manifest (an unchanged one costs a 304).
    #[arg(long, default_value_t = 30.0, requires = "catalog_store")]
    pub catalog_store_poll: f64,
    /// Versions a publish keeps in the catalog store for readers in flight.
    #[arg(long, default_value_t = 5, requires = "catalog_store")]
    pub catalog_store_keep: usize,
    /// Where the state lives: a SQLite file (default $SKYCAT_HOME/state.db), or
    /// postgres://USER@HOST/DB, one database shared by several replicas (docs/replicas.md).
    /// `skycat serve token …` reads SKYCAT_STATE.
    #[arg(long, env = "SKYCAT_STATE")]
    pub state: Option<String>,
    /// With a PostgreSQL --state: a follower takes over the leader's duties (managed jobs, cron
    /// refresh) at most this many seconds after the leader died or was cut off from the
    /// database; a cut-off leader stops them first (docs/replicas.md, "Leader lease timing").
    #[arg(long, default_value_t = 15.0)]
    pub lease_takeover: f64,
}

/// What /healthz and /metrics say about this replica.
struct ReplicaInfo {
    leadership: skycat_controller::leader::Leadership,
    store: skycat_controller::Store,
}

impl skycat_server::replica::ReplicaStatus for ReplicaInfo {
    fn role(&self) -> &'static str {
        self.leadership.role()
    }
    fn database_reachable(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move { tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await.is_ok_and(|r| r.is_ok()) })
    }
    fn render_metrics(&self) -> String {
        let n = skycat_controller::heartbeat::INGESTED.load(std::sync::atomic::Ordering::Relaxed);
        let b = skycat_controller::heartbeat::BATCHES.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "{}# HELP skycat_heartbeats_ingested_total Agent heartbeats this replica stored (rate() is the ingest rate).\n\
             # TYPE skycat_heartbeats_ingested_total counter\nskycat_heartbeats_ingested_total {n}\n\
             # HELP skycat_heartbeat_batches_total Transactions that wrote this replica's heartbeats (ingested / batches is the mean batch size).\n\
             # TYPE skycat_heartbeat_batches_total counter\nskycat_heartbeat_batches_total {b}\n",
            self.leadership.render_metrics()
        )
    }
}

/// Opens the store `--state`/SKYCAT_STATE names, else the home's SQLite file.
async fn open_state(state: Option<&str>, home: &skycat_controller::home::Home) -> anyhow::Result<skycat_controller::Store> {
    let location = match state.filter(|s| !s.trim().is_empty()) {
        Some(s) => skycat_controller::store::StateLocation::parse(s)?,
        None => skycat_controller::store::StateLocation::Sqlite(home.state_db()),
    };
    Ok(skycat_controller::Store::open_location(&location, &home.root).await?)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicRead {
    Auto,
    Yes,
    No,
}

#[derive(clap::Subcommand, Debug)]
pub enum ServeCommand {
    /// API tokens: create (shown once, stored hashed), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Who holds it: jobs submitted with it are theirs.
        #[arg(long)]
        name: String,
        /// `user` sees and cancels its own jobs; `admin` all.
        #[arg(long, default_value = "user")]
        role: String,
        /// Also save it as this machine's CLI credentials ($SKYCAT_HOME/credentials, 0600).
        #[arg(long)]
        save: bool,
    },
    /// List tokens (names, roles, dates; never the values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working within a second (a running server caches verified tokens for 1 s).
    Revoke { name: String },
}

async fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    use skycat_controller::api_tokens::Role;
    let home = skycat_controller::home::Home::from_env();
    home.ensure().with_context(|| format!("creating {}", home.root.display()))?;
    let store = open_state(std::env::var("SKYCAT_STATE").ok().as_deref(), &home).await?;
    match cmd {
        TokenCommand::Create { name, role, save } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("--role: {role:?} is not admin or user"))?;
            let token = store.create_api_token(&name, role).await?;
            println!("{token}");
            if save {
                // Keeps the server (and its pin) the credentials were saved for, if any.
                let mut creds = crate::commands::credentials::load(&home.root)?.unwrap_or_default();
                creds.token = token;
                let p = crate::commands::credentials::save(&home.root, &creds)?;
                eprintln!("Saved as this machine's CLI credentials: {}", p.display());
            } else {
                eprintln!("API token {name:?} ({}) created. It is shown only now: give it to its holder (SKYCAT_API_TOKEN, or $SKYCAT_HOME/credentials with `token: …`, mode 0600).", role.as_str());
            }
        }
        TokenCommand::List { json } => {
            let list = store.api_tokens().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::NOTHING);
                t.set_header(["NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"]);
                for k in list {
                    t.add_row([k.name, k.role.as_str().to_string(), k.created_at, k.last_used_at.unwrap_or_else(|| "-".into()), k.revoked_at.unwrap_or_else(|| "-".into())]);
                }
                println!("{t}");
            }
        }
        TokenCommand::Revoke { name } => {
            store.revoke_api_token(&name).await?;
            eprintln!("API token {name:?} revoked.");
        }
    }
    Ok(())
}

/// The certificate to serve HTTPS with: the operator's, else a self-signed one (made once) when
/// HTTPS is on; None for plain HTTP, which only a loopback address may use.
fn tls_files(args: &ServeArgs) -> anyhow::Result<Option<skycat_server::tls::TlsFiles>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(skycat_server::tls::TlsFiles { cert: cert.clone(), key: key.clone() }));
    }
    if args.addr.ip().is_loopback() && !args.tls {
        return Ok(None);
    }
    let home = skycat_controller::home::Home::from_env();
    let mut names = vec![args.addr.ip().to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim().to_string();
        if !h.is_empty() {
            names.push(h);
        }
    }
    names.retain(|n| n != "0.0.0.0" && n != "::");
    Ok(Some(skycat_server::tls::self_signed(&home.root.join("tls"), &names)?))
}

/// With no live token, the first start creates an admin token for this machine's CLI.
async fn bootstrap_admin_token(store: &skycat_controller::Store) -> anyhow::Result<Option<(String, String)>> {
    if store.has_live_api_token().await? {
        return Ok(None);
    }
    let mut name = "admin".to_string();
    let mut n = 1;
    loop {
        match store.create_api_token(&name, skycat_controller::api_tokens::Role::Admin).await {
            Ok(t) => return Ok(Some((name, t))),
            Err(skycat_controller::api_tokens::TokenError::Exists(_)) if n < 100 => {
                n += 1;
                name = format!("admin-{n}");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// This server as the local CLI reaches it: loopback when listening on every address.
fn local_url(addr: SocketAddr, tls: bool) -> Option<String> {
    if addr.port() == 0 {
        return None;
    }
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("{}://{}", if tls { "https" } else { "http" }, SocketAddr::new(ip, addr.port())))
}

/// Keeps this machine's CLI working with this server: a new admin token is saved as its
/// credentials (when it has none), and credentials saved for this server (same port on loopback,
/// or no server) follow its URL and certificate, so that a restart with `--tls` or a new
/// certificate does not lock the local CLI out.
fn save_local_credentials(home: &std::path::Path, url: Option<String>, pin: Option<&str>, created: Option<(String, String)>) -> anyhow::Result<()> {
    use crate::commands::credentials::{self, Credentials};
    let saved = credentials::load(home)?;
    use crate::commands::server_client::{is_loopback, scheme_and_host};
    // Saved for no server, or for a loopback address on this port.
    let ours = |c: &Credentials| match (&c.server_url, &url) {
        (None, _) => true,
        (Some(s), Some(u)) => s.trim_end_matches('/').rsplit(':').next() == u.rsplit(':').next() && scheme_and_host(s).is_ok_and(|(_, h)| is_loopback(&h)),
        (Some(_), None) => false,
    };
    match (saved, created) {
        (None, Some((name, token))) => {
            let p = credentials::save(home, &Credentials { token, server_url: url, server_cert_sha256: pin.map(str::to_string) })?;
            eprintln!("No API token existed: created admin token {name:?}, saved to {} (0600). More: `skycat serve token create --name NAME`.", p.display());
        }
        (saved, created) => {
            if let Some((name, token)) = created {
                eprintln!("No API token existed: created admin token {name:?} (shown once): {token}");
            }
            if let Some(mut c) = saved.filter(|c| ours(c)) {
                let new_pin = pin.map(str::to_string);
                if url.is_some() && (c.server_url != url || c.server_cert_sha256 != new_pin) {
                    c.server_url = url;
                    c.server_cert_sha256 = new_pin;
                    let p = credentials::save(home, &c)?;
                    eprintln!("{}: now for {}{}", p.display(), c.server_url.as_deref().unwrap_or(""), c.server_cert_sha256.as_deref().map(|f| format!(" (certificate SHA-256 {f})")).unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(ServeCommand::Token(cmd)) = args.command {
        return token_command(cmd).await;
    }
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
    let request_timeout = Duration::try_from_secs_f64(args.request_timeout)
        .map_err(|_| anyhow::anyhow!("--request-timeout: {} seconds is out of range", args.request_timeout))?;
    let stale_after = Duration::try_from_secs_f64(args.stale_after_hours * 3600.0)
        .map_err(|_| anyhow::anyhow!("--stale-after-hours: {} is out of range", args.stale_after_hours))?;
    let catalog_store = match &args.catalog_store {
        Some(url) => {
            if !(args.catalog_store_poll.is_finite() && args.catalog_store_poll >= 0.1) {
                anyhow::bail!("--catalog-store-poll must be at least 0.1 seconds, got {}", args.catalog_store_poll);
            }
            skycat_objects::Source::parse(url).map_err(|e| anyhow::anyhow!("--catalog-store: {e}"))?;
            Some(skycat_server::CatalogStoreOptions {
                url: url.clone(),
                poll_interval: Duration::try_from_secs_f64(args.catalog_store_poll)
                    .map_err(|_| anyhow::anyhow!("--catalog-store-poll: {} seconds is out of range", args.catalog_store_poll))?,
                keep: args.catalog_store_keep.max(1),
            })
        }
        None => None,
    };
    let tls = tls_files(&args)?;
    let ctl_home = skycat_controller::home::Home::from_env();
    ctl_home.ensure().with_context(|| format!("creating {}", ctl_home.root.display()))?;
    let store = open_state(args.state.as_deref(), &ctl_home).await?;
    tracing::info!(state = %store.location(), "state store open");
    if !(args.lease_takeover.is_finite() && args.lease_takeover >= 0.3) {
        anyhow::bail!("--lease-takeover must be at least 0.3 seconds, got {}", args.lease_takeover);
    }
    // Several replicas share a PostgreSQL database: one leader runs managed jobs and the cron fetch.
    let leadership = match args.state.as_deref().map(skycat_controller::store::StateLocation::parse).transpose()? {
        Some(skycat_controller::store::StateLocation::Postgres(url)) => {
            let takeover = Duration::from_secs_f64(args.lease_takeover);
            Some(skycat_controller::leader::Leadership::compete(&url, skycat_controller::leader::LeaseOptions { takeover })?)
        }
        _ => None,
    };
    let replica = leadership.as_ref().map(|l| {
        skycat_server::replica::Replica(std::sync::Arc::new(ReplicaInfo { leadership: l.clone(), store: store.clone() }))
    });
    let created = bootstrap_admin_token(&store).await?;
    let pin = tls.as_ref().map(skycat_server::tls::fingerprint).transpose()?;
    save_local_credentials(&ctl_home.root, local_url(args.addr, tls.is_some()), pin.as_deref(), created)?;
    // Verified tokens are cached for a second: a revocation takes effect within that second.
    let auth = skycat_server::Auth::cached(store.clone());
    let public_read = match args.public_read {
        PublicRead::Yes => true,
        PublicRead::No => false,
        PublicRead::Auto => args.addr.ip().is_loopback(),
    };
    let opts = ServeOptions {
        addr: args.addr,
        home,
        refresh: args.refresh,
        refresh_mode,
        streaming: Vec::new(),
        tls: tls.clone(),
        catalog_store,
        config: ServerConfig {
            body_limit: args.body_limit,
            request_timeout,
            stale_after,
            auth: Some(auth.clone()),
            public_read,
            replica,
            ..ServerConfig::default()
        },
    };
    let mut managed_opts = skycat_controller::managed::ManagedOptions::from_env(args.addr.port())?;
    let mut ctl = skycat_controller::Controller::with_store(ctl_home, store.clone()).await?;
    if let Some(files) = &tls {
        // The agents of managed jobs report over HTTPS and pin this certificate.
        if let Some(u) = managed_opts.server_url.as_mut() {
            if let Some(rest) = u.strip_prefix("http://") {
                *u = format!("https://{rest}");
            }
        }
        ctl = ctl.with_server_cert_sha256(skycat_server::tls::fingerprint(files)?);
    }
    // Managed jobs plan over the catalog as loaded at start (embedded default + user catalogs),
    // at the user's prices (config.yaml `prices:`): an attempt pins the effective price.
    let offers = std::sync::Arc::new(crate::commands::load_catalog_priced(&skycat_catalog::OfferFilter::all())?.1.into_offers());
    let catalog: skycat_controller::managed::CatalogSource = std::sync::Arc::new(move || offers.as_ref().clone());
    let managed = match &leadership {
        Some(l) => skycat_controller::managed::Managed::new_replica(ctl, managed_opts, catalog, l.clone()).await?,
        None => skycat_controller::managed::Managed::new(ctl, managed_opts, catalog).await?,
    };
    // A typo in `budgets:` is seen now, not at the first launch.
    managed.budgets()?;
    // The control plane: agents' heartbeats (cluster tokens) and managed jobs (API tokens).
    let mut opts = opts;
    // The dashboard's clusters-and-jobs page reads the same controller, with the API's rules.
    opts.config.control = Some(skycat_server::dashboard::jobs::Control::new(managed.clone()));
    opts.streaming.push(skycat_server::routes::uploads::router(managed.clone(), auth.clone(), args.upload_limit));
    let extra = skycat_server::axum::Router::new()
        .merge(skycat_server::routes::heartbeat::router(store))
        .merge(skycat_server::routes::jobs::router(managed, auth));
    skycat_server::serve(opts, extra).await?;
    Ok(())
}
