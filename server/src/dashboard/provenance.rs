//! `/ui/price?cloud=&instance_type=&region=[&zone=]`: where a price comes from — the catalog
//! rows behind it (found with `/catalog/offers`' filter) with their source, fetch time, age,
//! price breakdown, and the cloud's staleness.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use chrono::Utc;

use super::html::{self, esc, param};
use super::session::Session;
use super::status::cloud_staleness;
use crate::extract::QueryPairs;
use crate::routes::catalog::OfferFilter;
use crate::state::AppState;

pub async fn page(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    QueryPairs(pairs): QueryPairs,
) -> Response {
    let snap = state.snapshot();
    let (cloud, itype, region, zone) =
        (param(&pairs, "cloud"), param(&pairs, "instance_type"), param(&pairs, "region"), param(&pairs, "zone"));
    let title = format!("Price of {itype} in {cloud} {region}");
    let mut body = String::new();
    if cloud.is_empty() || itype.is_empty() || region.is_empty() {
        body.push_str(&html::alert("cloud, instance_type and region are all needed (follow a price's link)"));
        return html::page("Price provenance", "", &session, &body);
    }
    let mut fp: Vec<(String, String)> = vec![
        ("cloud".into(), cloud.into()),
        ("instance_type".into(), itype.into()),
        ("region".into(), region.into()),
    ];
    if !zone.is_empty() {
        fp.push(("zone".into(), zone.into()));
    }
    let filter = match OfferFilter::parse(&fp, &snap, usize::MAX) {
        Ok(f) => f,
        Err(e) => {
            body.push_str(&html::alert(&e.body.error));
            return html::page("Price provenance", "", &session, &body);
        }
    };
    let rows: Vec<_> = snap.offers().iter().filter(|o| filter.matches_any_market(o)).collect();
    let staleness = cloud_staleness(&state);
    let (cloud_stale, stale_regions) = staleness.get(cloud).cloned().unwrap_or((true, Vec::new()));
    if let Some(src) = snap.sources.iter().find(|s| s.cloud == cloud) {
        body.push_str(&format!(
            "<p>{cloud}'s catalog: <strong>{source}</strong> ({origin}{path}), prices as of {as_of}. {state}</p>",
            cloud = esc(cloud),
            source = esc(&src.source),
            origin = esc(&src.origin),
            path = src.path.as_deref().map(|p| format!(", <code>{}</code>", esc(p))).unwrap_or_default(),
            as_of = esc(src.as_of.as_deref().unwrap_or("unknown")),
            state = if cloud_stale {
                "<span class=\"stale\">stale</span>: older than the server's staleness limit."
            } else if stale_regions.iter().any(|r| r == region) {
                "<span class=\"stale\">stale</span>: this region's last fetch failed; its rows are from an earlier one."
            } else {
                "Fresh."
            },
        ));
    }
    if rows.is_empty() {
        body.push_str(&html::alert("no catalog row matches: the catalog may have been refreshed since the link was made"));
        return html::page(&title, "", &session, &body);
    }
    body.push_str(
        "<div class=\"scroll\" role=\"region\" aria-label=\"Catalog rows\" tabindex=\"0\"><table id=\"provenance\"><thead><tr>\
         <th scope=\"col\">Zone</th><th scope=\"col\">Accelerators</th><th scope=\"col\">On-demand $/h</th><th scope=\"col\">Spot $/h</th>\
         <th scope=\"col\">Source</th><th scope=\"col\">Fetched at</th><th scope=\"col\">Age</th><th scope=\"col\">Price breakdown</th></tr></thead><tbody>",
    );
    let now = Utc::now();
    for o in rows {
        body.push_str(&format!(
            "<tr><td>{zone}</td><td>{acc}</td><td class=\"num\" data-col=\"price\">{price}</td><td class=\"num\" data-col=\"spot_price\">{spot}</td>\
             <td>{source}</td><td>{fetched}</td><td>{age}</td><td>{breakdown}</td></tr>",
            zone = esc(o.zone.as_deref().unwrap_or("-")),
            acc = match o.accelerator_name.as_deref() {
                Some(a) => format!("{}:{}", esc(a), html::num(o.accelerator_count)),
                None => "-".into(),
            },
            price = o.price.map(html::usd).unwrap_or_else(|| "-".into()),
            spot = o.spot_price.map(html::usd).unwrap_or_else(|| "-".into()),
            source = esc(&o.source),
            fetched = esc(&html::time(&o.fetched_at)),
            age = html::age((now - o.fetched_at).num_seconds().max(0)),
            breakdown = esc(o.price_breakdown.as_deref().unwrap_or("-")),
        ));
    }
    body.push_str("</tbody></table></div>");
    html::page(&title, "", &session, &body)
}
