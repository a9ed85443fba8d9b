//! skycat's HTTP service.
//!
//! - `POST /optimize` (JSON task/DAG/fleet, or a SkyPilot task YAML body), `GET /catalog/gpus`,
//!   `GET /catalog/offers?…`, `GET /catalog/status`, `GET /healthz`, `GET /metrics`,
//!   `GET /openapi.json`; the web dashboard at `/` and `/ui/*` ([`dashboard`]).
//! - The catalog in service is an immutable [`state::CatalogSnapshot`] behind an `ArcSwap`; a
//!   cron-scheduled [`refresh::Refresher`] builds the next one and swaps it in.
//! - Other crates add routes with [`AppBuilder::merge`] or the `extra` router of [`serve`]; with
//!   the `control` feature, [`routes::jobs`] (managed jobs) and [`routes::heartbeat`] (agents).
//! - Every control-plane route needs a bearer token ([`auth`]); the read routes too unless
//!   [`ServerConfig::public_read`].
//!
//! Errors are one type, [`error::ApiError`], rendered as JSON `{"error", "field", …}`. User input
//! maps to 400/413/415/422 only.

pub mod answer_cache;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod refresh;
pub mod replica;
pub mod routes;
pub mod state;
pub mod store_health;
pub mod tls;

#[cfg(feature = "fetch")]
pub mod catalog_store;
#[cfg(feature = "fetch")]
pub mod fetch;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use skycat_optimizer::EgressTable;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Re-exported so that callers build the extra routers of [`AppBuilder::merge`] / [`serve`] with
/// the same axum version.
pub use axum;
pub use auth::{Auth, Principal, Role, TokenVerifier};
pub use error::{ApiError, ErrorBody};
pub use refresh::{RefreshAction, RefreshError, Refreshed, Refresher};
pub use state::{AppState, CatalogData, CatalogSnapshot, CloudSource, RefreshOutcome, ServerConfig};

#[cfg(feature = "fetch")]
pub use fetch::{load_catalog, prepare, serve, CatalogStoreOptions, FetchRefresh, Prepared, RefreshMode, ReloadFromHome, ServeError, ServeOptions};

/// Assembles the service: catalog, settings, refresh, extra routes.
pub struct AppBuilder {
    data: CatalogData,
    config: ServerConfig,
    egress: Option<EgressTable>,
    action: Option<Arc<dyn RefreshAction>>,
    schedule: Option<cron::Schedule>,
    extra: Vec<Router>,
    streaming: Vec<Router>,
}

impl AppBuilder {
    /// Start from the catalog to serve first.
    pub fn new(data: CatalogData) -> Self {
        AppBuilder {
            data,
            config: ServerConfig::default(),
            egress: None,
            action: None,
            schedule: None,
            extra: Vec::new(),
            streaming: Vec::new(),
        }
    }

    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Egress prices for DAG plans (default: the optimizer's shipped table).
    pub fn egress(mut self, egress: EgressTable) -> Self {
        self.egress = Some(egress);
        self
    }

    /// How to produce a new catalog on refresh.
    pub fn refresh_action(mut self, action: Arc<dyn RefreshAction>) -> Self {
        self.action = Some(action);
        self
    }

    /// When to refresh (needs a [`refresh_action`](Self::refresh_action)); the cron task starts
    /// with [`App::serve`] or [`App::start_refresh`].
    pub fn schedule(mut self, schedule: cron::Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Add routes (a router with its state already applied). They get the same body limit,
    /// timeout, JSON errors and metrics as the built-in ones. Paths must not overlap, and the
    /// extra router must not set its own fallback (axum panics on both at build time).
    pub fn merge(mut self, router: Router) -> Self {
        self.extra.push(router);
        self
    }

    /// Add routes that take large streamed bodies (uploads): they get JSON errors and metrics but
    /// neither the body limit nor the request timeout of the others, and must bound their bodies
    /// themselves.
    pub fn merge_streaming(mut self, router: Router) -> Self {
        self.streaming.push(router);
        self
    }

    /// Build the index of the first catalog (CPU-bound; run from a blocking context or accept a
    /// short stall at start-up) and the router.
    pub fn build(self) -> App {
        let snapshot = CatalogSnapshot::build(self.data, 1);
        let egress = self.egress.unwrap_or_else(EgressTable::shipped);
        let schedule = if self.action.is_some() { self.schedule } else { None };
        let state = Arc::new(AppState::new(snapshot, egress, self.config, schedule.clone()));
        let refresher = self.action.map(|a| Arc::new(Refresher::new(state.clone(), a)));
        let router = build_router(state.clone(), self.extra, self.streaming);
        App { state, router, refresher, schedule }
    }
}

fn build_router(state: Arc<AppState>, extra: Vec<Router>, streaming: Vec<Router>) -> Router {
    let cfg = state.config.clone();
    let timeout_status = StatusCode::SERVICE_UNAVAILABLE;
    let limits = middleware::Limits {
        body_limit: cfg.body_limit,
        request_timeout: cfg.request_timeout,
        timeout_status,
    };
    let mut read = Router::new()
        .route("/optimize", post(routes::optimize::optimize))
        .route("/catalog/gpus", get(routes::catalog::gpus))
        .route("/catalog/offers", get(routes::catalog::offers))
        .route("/catalog/status", get(routes::catalog::status))
        .route("/metrics", get(routes::system::metrics))
        .route("/openapi.json", get(routes::system::openapi))
        .with_state(state.clone());
    if let (Some(auth), false) = (cfg.auth.clone(), cfg.public_read) {
        read = read.route_layer(axum::middleware::from_fn_with_state(auth, auth::require_token));
    }
    let mut app = Router::new()
        .route("/healthz", get(routes::system::healthz))
        .with_state(state.clone())
        .merge(read)
        .merge(dashboard::router(state.clone()));
    for r in extra {
        app = app.merge(r);
    }
    // Layers apply to the routes present when added: the streaming ones join after the limits.
    let mut app = app
        .fallback(middleware::fallback)
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(RequestBodyLimitLayer::new(cfg.body_limit))
        .layer(TimeoutLayer::with_status_code(timeout_status, cfg.request_timeout));
    for r in streaming {
        app = app.merge(r);
    }
    app.layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(limits, middleware::json_errors))
        .layer(axum::middleware::from_fn_with_state(state, middleware::track))
}

/// A built service: its router, shared state and refresher.
pub struct App {
    pub state: Arc<AppState>,
    pub router: Router,
    pub refresher: Option<Arc<Refresher>>,
    schedule: Option<cron::Schedule>,
}

impl App {
    /// Run one refresh now (if a refresh action is set) and return its outcome.
    pub async fn refresh_now(&self) -> Option<RefreshOutcome> {
        match &self.refresher {
            Some(r) => Some(r.refresh_now().await),
            None => None,
        }
    }

    /// Start the cron refresh task, if a schedule and an action are set.
    pub fn start_refresh(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (r, s) = (self.refresher.clone()?, self.schedule.clone()?);
        Some(r.spawn_cron(s))
    }

    /// Serve on `listener` until `shutdown` resolves (then finish requests in flight), with the
    /// cron refresh running in the background.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cron = self.start_refresh();
        let result = axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await;
        if let Some(task) = cron {
            task.abort();
        }
        result
    }

    /// Like [`serve`](Self::serve), over TLS with `config`.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cron = self.start_refresh();
        let drain = self.state.config.request_timeout + std::time::Duration::from_secs(1);
        let result = tls::serve_tls(listener, self.router, config, shutdown, drain).await;
        if let Some(task) = cron {
            task.abort();
        }
        result
    }
}
