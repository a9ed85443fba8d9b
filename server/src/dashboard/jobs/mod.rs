//! `/ui/jobs`: clusters (status, nodes, IPs, endpoints, cost so far, $/h), managed jobs with
//! their attempts (placement, duration, cost, why each ended) and cost charts per day, cluster
//! and user; `/ui/jobs/{id}`: one job, its attempts, blocked zones and the log of every attempt.
//!
//! - The data are the API's: jobs from [`Managed::jobs_of`] / [`Managed::job`], logs from
//!   [`Managed::logs`] (what `GET /v1/jobs/{id}/logs` answers: saved logs of ended attempts, the
//!   running one read from its nodes), costs from the agents' ledger
//!   ([`skycat_controller::costs`], what `GET /v1/costs` reads).
//! - Who sees what: the API's rules. A user sees its own jobs (another's job is 404, as in
//!   `GET /v1/jobs/{id}`), the clusters those jobs ran on and their costs; an admin everything.
//!   A cluster belongs to the owner of the managed job whose attempt ran it
//!   ([`costs::cluster_owners`](skycat_controller::costs::cluster_owners)); clusters launched from
//!   the CLI are the admins'.
//! - Following live: the pages mark their changing part `data-live`; `dashboard.js` fetches the
//!   same page again every two seconds (same cookie, same handler, same checks: no extra route)
//!   and swaps that part in, until the page marks it final (an ended job). Without scripts the
//!   pages are correct as of their load.
//!
//! [`Managed::jobs_of`]: skycat_controller::managed::Managed::jobs_of
//! [`Managed::job`]: skycat_controller::managed::Managed::job
//! [`Managed::logs`]: skycat_controller::managed::Managed::logs

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;

use super::html;
use super::session::Session;
use crate::state::AppState;

#[cfg(feature = "control")]
mod charts;
#[cfg(feature = "control")]
mod data;
#[cfg(feature = "control")]
mod render;

pub const TITLE: &str = "Clusters and jobs";

/// How often the pages fetch themselves again while something can change, milliseconds.
pub const POLL_MS: u64 = 2000;

/// The managed-jobs controller the page reads (its state store holds the clusters and the ledger).
#[cfg(feature = "control")]
#[derive(Clone)]
pub struct Control {
    pub managed: skycat_controller::managed::Managed,
}

#[cfg(feature = "control")]
impl Control {
    pub fn new(managed: skycat_controller::managed::Managed) -> Control {
        Control { managed }
    }
}

#[cfg(feature = "control")]
impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

/// The page in the status it should have (html::page answers 200).
fn with_status(status: StatusCode, mut resp: Response) -> Response {
    *resp.status_mut() = status;
    resp
}

fn no_controller(session: &Session) -> Response {
    #[cfg(feature = "control")]
    let why = "this server runs no managed-jobs controller, so there are no clusters or jobs to show (`skycat serve` runs one)";
    #[cfg(not(feature = "control"))]
    let why = "this server is built without the `control` feature: it runs no clusters or managed jobs (`skycat serve` does)";
    html::page(TITLE, "/ui/jobs", session, &html::alert(why))
}

/// `GET /ui/jobs`.
pub async fn page(State(state): State<Arc<AppState>>, Extension(session): Extension<Session>) -> Response {
    #[cfg(feature = "control")]
    if let Some(control) = state.config.control.clone() {
        return match data::overview(&control.managed, session.principal.as_ref()).await {
            Ok(o) => html::page(TITLE, "/ui/jobs", &session, &render::overview(&o)),
            Err(e) => unavailable(&session, TITLE, &e),
        };
    }
    let _ = &state;
    no_controller(&session)
}

/// `GET /ui/jobs/{id}`.
pub async fn job_page(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let Some(id) = raw.parse::<i64>().ok().filter(|i| *i > 0) else {
        return with_status(
            StatusCode::BAD_REQUEST,
            html::page("Managed job", "/ui/jobs", &session, &html::alert(&format!("id: a job id is a positive integer, got {raw:?}"))),
        );
    };
    #[cfg(feature = "control")]
    if let Some(control) = state.config.control.clone() {
        return match data::job(&control.managed, session.principal.as_ref(), id).await {
            Ok(Some(j)) => html::page(&format!("Managed job {id}"), "/ui/jobs", &session, &render::job(&j)),
            // Another user's job is absent, as `GET /v1/jobs/{id}` answers.
            Ok(None) => with_status(
                StatusCode::NOT_FOUND,
                html::page("Managed job", "/ui/jobs", &session, &html::alert(&format!("managed job {id} not found"))),
            ),
            Err(e) => unavailable(&session, "Managed job", &e),
        };
    }
    let _ = (&state, id);
    no_controller(&session)
}

#[cfg(feature = "control")]
fn unavailable(session: &Session, title: &str, e: &data::ReadError) -> Response {
    let status = if e.unavailable { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
    with_status(status, html::page(title, "/ui/jobs", session, &html::alert(&format!("cannot read the controller's state: {}", e.message))))
}
