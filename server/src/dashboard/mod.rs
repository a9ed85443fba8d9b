//! The web dashboard `skycat serve` answers at `/`: server-rendered HTML pages over the same
//! data functions as the JSON API.
//!
//! - `/` GPU prices ([`gpus`]), `/ui/price` one price's provenance ([`provenance`]),
//!   `/ui/cheapest` where an accelerator is cheapest ([`cheapest`]), `/ui/history` price history
//!   ([`history`]), `/ui/plan` a task's plan ([`plan`]), `/ui/status` the catalog ([`status`]);
//!   `/ui/jobs` clusters, managed jobs and their costs, `/ui/jobs/{id}` one job and its logs
//!   ([`jobs`]); `/ui/login`, `/ui/logout` ([`session`]); `/ui/assets/*` the stylesheet,
//!   script and icon.
//! - Responses are gzip- or Brotli-compressed for browsers that accept it.
//! - Offline: every asset is embedded in the binary (`include_str!`), nothing comes from a CDN.
//! - Pages are plain HTML with forms and links: filters, sorting and the plan work without
//!   scripts; the one script loads an uploaded file into the plan's text box and keeps the
//!   clusters-and-jobs pages following live. Charts are
//!   SVG drawn on the server (no JS chart library to ship or audit, a few KB per chart, and they
//!   render with scripts off).
//! - Auth: an API token, given once on the login page and kept in an HttpOnly, SameSite=Strict
//!   cookie; every page needs it (even where the JSON read routes are public), so that an
//!   unauthenticated browser sees the login page and no data. POSTs also need a same-origin
//!   `Origin` and a CSRF token derived from the session ([`session`]).
//! - A strict Content-Security-Policy (scripts and styles from this origin only) keeps an
//!   injected string from running even if escaping were missed somewhere.

mod cheapest;
mod gpus;
mod history;
mod html;
pub mod jobs;
mod plan;
mod provenance;
pub mod session;
mod status;

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The embedded assets: (name, content type, bytes).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("dashboard.css", "text/css; charset=utf-8", include_str!("../../assets/dashboard/dashboard.css")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../assets/dashboard/dashboard.js")),
    ("favicon.svg", "image/svg+xml", include_str!("../../assets/dashboard/favicon.svg")),
];

/// The dashboard's routes, with `state` applied.
pub fn router(state: Arc<AppState>) -> Router {
    let pages = Router::new()
        .route("/", get(gpus::page))
        .route("/ui/price", get(provenance::page))
        .route("/ui/cheapest", get(cheapest::page))
        .route("/ui/history", get(history::page))
        .route("/ui/plan", get(plan::form).post(plan::submit))
        .route("/ui/status", get(status::page))
        .route("/ui/jobs", get(jobs::page))
        .route("/ui/jobs/{id}", get(jobs::job_page))
        .route("/ui/logout", post(session::logout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), session::require_session));
    Router::new()
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/assets/{name}", get(asset))
        .merge(pages)
        .with_state(state)
        .layer(compression())
}

/// gzip or Brotli for the pages and assets (HTML, CSS, JS, SVG) when the browser accepts it;
/// tower-http's default predicate leaves tiny bodies and raster images as they are.
fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new().gzip(true).br(true)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            *body,
        )
            .into_response(),
        None => html::error_page(StatusCode::NOT_FOUND, "Not found", &format!("no dashboard asset named `{name}`")),
    }
}
