//! `/ui/status`: per cloud the source, rows, regions, last fetch and staleness; the refresh
//! schedule, the next refresh and the last refresh's result. The figures are
//! `GET /catalog/status`' own ([`routes::catalog::status`](crate::routes::catalog::status)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::Utc;

use super::html::{self, esc};
use super::session::Session;
use crate::routes::catalog::{self, StatusResponse};
use crate::state::AppState;

/// `GET /catalog/status`' answer, as the pages use it.
pub async fn catalog_status(state: &Arc<AppState>) -> StatusResponse {
    let Json(s) = catalog::status(State(state.clone())).await;
    s
}

/// Per cloud: (stale as a whole, regions serving rows from an earlier fetch), by the same rule
/// as `GET /catalog/status`.
pub fn cloud_staleness(state: &AppState) -> BTreeMap<String, (bool, Vec<String>)> {
    let snap = state.snapshot();
    let now = Utc::now();
    let stale_after = state.config.stale_after.as_secs();
    snap.sources
        .iter()
        .map(|s| {
            let age = s.fetched_at.map(|t| (now - t).num_seconds().max(0));
            let stale = age.is_none_or(|a| a as u64 > stale_after);
            (s.cloud.clone(), (stale, s.stale_regions.clone()))
        })
        .collect()
}

pub async fn page(State(state): State<Arc<AppState>>, Extension(session): Extension<Session>) -> Response {
    let st = catalog_status(&state).await;
    let snap = state.snapshot();
    let mut regions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for o in snap.offers() {
        regions.entry(o.cloud.as_ref()).or_default().insert(o.region.as_ref());
    }
    let mut body = String::new();
    body.push_str("<dl class=\"facts\">");
    let fact = |k: &str, v: String| format!("<div><dt>{}</dt><dd>{v}</dd></div>", esc(k));
    body.push_str(&fact("Catalog version", st.catalog_version.to_string()));
    body.push_str(&fact("Loaded", esc(&html::time(&st.loaded_at))));
    body.push_str(&fact("Rows", st.rows.to_string()));
    body.push_str(&fact("Stale after", html::age(st.stale_after_seconds as i64)));
    body.push_str(&fact(
        "Refresh schedule",
        st.refresh_schedule.as_deref().map(|s| format!("<code>{}</code>", esc(s))).unwrap_or_else(|| "none (no --refresh)".into()),
    ));
    body.push_str(&fact(
        "Next refresh",
        st.next_refresh.as_ref().map(html::time).map(|t| esc(&t)).unwrap_or_else(|| "-".into()),
    ));
    let last = match &st.last_refresh {
        None => "none yet".to_owned(),
        Some(r) if r.ok => format!("ok at {}", esc(&html::time(&r.finished_at))),
        Some(r) => format!(
            "<span class=\"bad\">failed</span> at {}: {}",
            esc(&html::time(&r.finished_at)),
            esc(r.error.as_deref().unwrap_or("unknown error"))
        ),
    };
    body.push_str(&fact("Last refresh", last));
    body.push_str("</dl>");
    body.push_str(
        "<div class=\"scroll\" role=\"region\" aria-label=\"Catalog sources\" tabindex=\"0\"><table id=\"status-table\"><caption>Per cloud</caption><thead><tr>\
         <th scope=\"col\">Cloud</th><th scope=\"col\">Source</th><th scope=\"col\">Origin</th><th scope=\"col\">Rows</th>\
         <th scope=\"col\">Regions</th><th scope=\"col\">Prices as of</th><th scope=\"col\">Last fetch</th><th scope=\"col\">Age</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Last error</th></tr></thead><tbody>",
    );
    let warnings: Vec<&String> = st.last_refresh.iter().flat_map(|r| r.warnings.iter()).collect();
    for c in &st.clouds {
        let state_cell = if c.stale {
            let regions = if c.stale_regions.is_empty() {
                String::new()
            } else {
                format!(" (regions from an earlier fetch: {})", esc(&c.stale_regions.join(", ")))
            };
            format!("<span class=\"stale\">stale</span>{regions}")
        } else {
            "fresh".to_owned()
        };
        let mut errors: Vec<String> = warnings
            .iter()
            .filter(|w| w.starts_with(&format!("{}:", c.cloud)) || w.starts_with(&format!("{} ", c.cloud)))
            .map(|w| esc(w))
            .collect();
        if !c.regions_failed.is_empty() {
            errors.push(format!("failed regions: {}", esc(&c.regions_failed.join(", "))));
        }
        body.push_str(&format!(
            "<tr data-cloud=\"{cloud}\"><th scope=\"row\">{cloud}</th><td>{source}</td><td>{origin}{path}</td><td class=\"num\">{rows}</td>\
             <td class=\"num\">{regions}</td><td>{as_of}</td><td>{fetched}</td><td>{age}</td><td>{state_cell}</td><td>{errors}</td></tr>",
            cloud = esc(&c.cloud),
            source = esc(&c.source),
            origin = esc(&c.origin),
            path = c.path.as_deref().map(|p| format!("<br><code>{}</code>", esc(p))).unwrap_or_default(),
            rows = c.rows,
            regions = regions.get(c.cloud.as_str()).map_or(0, BTreeSet::len),
            as_of = esc(c.as_of.as_deref().unwrap_or("-")),
            fetched = c.fetched_at.as_ref().map(|t| esc(&html::time(t))).unwrap_or_else(|| "-".into()),
            age = c.age_seconds.map(html::age).unwrap_or_else(|| "-".into()),
            errors = if errors.is_empty() { "-".to_owned() } else { errors.join("<br>") },
        ));
    }
    body.push_str("</tbody></table></div>");
    html::page("Catalog status", "/ui/status", &session, &body)
}
