//! `/`: one row per accelerator, the cheapest on-demand and spot price per device-hour on each
//! cloud (what `GET /catalog/gpus` and `skycat show-gpus` show), with filters and sorting.
//!
//! Filtering reuses `/catalog/offers`' own filter ([`OfferFilter`]) and the summaries are made
//! by the same function as `/catalog/gpus`' ([`gpu_summaries`]); with no filter the page shows
//! the snapshot's summaries as they are.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use super::html::{self, esc, param, query, usd};
use super::session::Session;
use super::status::cloud_staleness;
use crate::extract::QueryPairs;
use crate::routes::catalog::OfferFilter;
use crate::state::{gpu_summaries, AppState, GpuSummary, PricePoint};

/// The sortable columns before the per-cloud ones: (key, label).
const SORTS: &[(&str, &str)] = &[
    ("accelerator", "Accelerator"),
    ("memory", "GPU memory"),
    ("counts", "GPUs per instance"),
    ("offers", "Offers"),
    ("on_demand", "Cheapest on-demand"),
    ("spot", "Cheapest spot"),
];

/// Which prices the table shows.
#[derive(Clone, Copy, PartialEq)]
enum Market {
    Both,
    OnDemand,
    Spot,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    QueryPairs(pairs): QueryPairs,
) -> Response {
    let snap = state.snapshot();
    let cloud = param(&pairs, "cloud").to_ascii_lowercase();
    let region = param(&pairs, "region").to_owned();
    let count = param(&pairs, "count").to_owned();
    let market = match param(&pairs, "market") {
        "spot" => Market::Spot,
        "on_demand" => Market::OnDemand,
        _ => Market::Both,
    };
    let name_filter = param(&pairs, "q").to_ascii_lowercase();
    let min_gpu_memory = param(&pairs, "min_gpu_memory").to_owned();
    let sort = param(&pairs, "sort").to_owned();
    let desc = param(&pairs, "dir") == "desc";

    let mut errors: Vec<String> = Vec::new();
    let mut filter_pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in [("cloud", &cloud), ("region", &region), ("count", &count)] {
        if !v.is_empty() {
            filter_pairs.push((k.to_owned(), v.clone()));
        }
    }
    match market {
        Market::Spot => filter_pairs.push(("spot".into(), "true".into())),
        Market::OnDemand => filter_pairs.push(("spot".into(), "false".into())),
        Market::Both => {}
    }
    let mut rows: Vec<GpuSummary> = if filter_pairs.is_empty() {
        snap.gpus.clone()
    } else {
        match OfferFilter::parse(&filter_pairs, &snap, usize::MAX) {
            Ok(f) => gpu_summaries(snap.offers().iter().filter(|o| match f.market() {
                None => f.matches_any_market(o),
                Some(spot) => f.matches_any_market(o) && o.price_for(spot).is_some(),
            })),
            Err(e) => {
                errors.push(e.body.error);
                Vec::new()
            }
        }
    };
    let min_mem = match min_gpu_memory.as_str() {
        "" => None,
        v => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Some(x),
            _ => {
                errors.push(format!("min_gpu_memory: `{v}` is not a number of GiB >= 0"));
                None
            }
        },
    };
    rows.retain(|g| {
        (name_filter.is_empty() || g.accelerator.to_ascii_lowercase().contains(&name_filter))
            && min_mem.is_none_or(|m| g.memory_gib.is_some_and(|x| x >= m))
    });
    // The clouds with a price in the rows shown, in the snapshot's order.
    let clouds: Vec<String> = snap
        .clouds
        .iter()
        .filter(|c| rows.iter().any(|g| g.clouds.iter().any(|gc| &gc.cloud == *c)))
        .cloned()
        .collect();
    sort_rows(&mut rows, &sort, desc, market);

    let staleness = cloud_staleness(&state);
    let here: Vec<(&str, &str)> = vec![
        ("q", name_filter.as_str()),
        ("cloud", cloud.as_str()),
        ("region", region.as_str()),
        ("market", match market {
            Market::Both => "",
            Market::OnDemand => "on_demand",
            Market::Spot => "spot",
        }),
        ("count", count.as_str()),
        ("min_gpu_memory", min_gpu_memory.as_str()),
    ];
    let mut body = filter_form(&snap.clouds, &here);
    for e in &errors {
        body.push_str(&html::alert(e));
    }
    body.push_str(&format!(
        "<p class=\"summary\" id=\"row-count\">{} accelerators · prices in USD per device-hour; each links to its source</p>",
        rows.len()
    ));
    body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"GPU price table\" tabindex=\"0\"><table class=\"prices\" id=\"gpu-table\"><thead><tr>");
    let mut headers: Vec<(String, String)> = SORTS.iter().map(|(k, l)| (k.to_string(), l.to_string())).collect();
    headers.extend(clouds.iter().map(|c| (format!("cloud:{c}"), c.clone())));
    for (key, label) in &headers {
        let (aria, next_dir, mark) = if *key == sort {
            if desc {
                ("descending", "asc", " ▼")
            } else {
                ("ascending", "desc", " ▲")
            }
        } else {
            ("none", "asc", "")
        };
        let mut link = here.clone();
        link.push(("sort", key));
        link.push(("dir", next_dir));
        body.push_str(&format!(
            "<th scope=\"col\" aria-sort=\"{aria}\"><a href=\"/?{}\">{}{mark}</a></th>",
            esc(&query(&link)),
            esc(label)
        ));
    }
    body.push_str("</tr></thead><tbody>");
    for g in &rows {
        body.push_str(&format!(
            "<tr data-accelerator=\"{a}\"><th scope=\"row\"><a href=\"/ui/cheapest?{q}\">{a}</a></th><td class=\"num\">{mem}</td><td>{counts}</td><td class=\"num\">{offers}</td>",
            a = esc(&g.accelerator),
            q = esc(&query(&[("accelerator", &g.accelerator)])),
            mem = g.memory_gib.map(|m| format!("{} GiB", html::num(m))).unwrap_or_else(|| "-".into()),
            counts = g.counts.iter().map(|c| html::num(*c)).collect::<Vec<_>>().join(", "),
            offers = g.offers,
        ));
        let best = |spot: bool| {
            g.clouds
                .iter()
                .filter_map(|c| {
                    let p = if spot { c.cheapest_spot.as_ref() } else { c.cheapest_on_demand.as_ref() };
                    p.map(|p| (c.cloud.as_str(), p))
                })
                .min_by(|a, b| a.1.price_per_accelerator.total_cmp(&b.1.price_per_accelerator))
        };
        for spot in [false, true] {
            let cell = match best(spot) {
                Some((cloud, p)) if show(market, spot) => price_link(cloud, p, spot, &staleness, true),
                _ => "-".into(),
            };
            body.push_str(&format!("<td data-col=\"{}\">{cell}</td>", if spot { "spot" } else { "on_demand" }));
        }
        for c in &clouds {
            let mut cell = String::new();
            if let Some(gc) = g.clouds.iter().find(|gc| &gc.cloud == c) {
                for (spot, p) in [(false, &gc.cheapest_on_demand), (true, &gc.cheapest_spot)] {
                    if let (Some(p), true) = (p, show(market, spot)) {
                        cell.push_str(&format!("<div>{}</div>", price_link(c, p, spot, &staleness, false)));
                    }
                }
            }
            if cell.is_empty() {
                cell.push('-');
            }
            body.push_str(&format!("<td data-cloud=\"{}\">{cell}</td>", esc(c)));
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>");
    html::page("GPU prices", "/", &session, &body)
}

fn show(market: Market, spot: bool) -> bool {
    match market {
        Market::Both => true,
        Market::OnDemand => !spot,
        Market::Spot => spot,
    }
}

/// One price, linked to its provenance page; `stale` marks a price from a stale cloud or region.
fn price_link(
    cloud: &str,
    p: &PricePoint,
    spot: bool,
    staleness: &BTreeMap<String, (bool, Vec<String>)>,
    with_cloud: bool,
) -> String {
    let mut q: Vec<(&str, &str)> = vec![("cloud", cloud), ("instance_type", &p.instance_type), ("region", &p.region)];
    if let Some(z) = &p.zone {
        q.push(("zone", z));
    }
    let market = if spot { "spot" } else { "on-demand" };
    let stale = staleness.get(cloud).is_some_and(|(s, regions)| *s || regions.iter().any(|r| *r == p.region));
    let stale_mark = if stale { " <span class=\"stale\">stale</span>" } else { "" };
    let where_ = if with_cloud { format!("{cloud} ") } else { String::new() };
    format!(
        "<a class=\"price {market}\" href=\"/ui/price?{q}\" title=\"{market}: {it} ×{n} in {region}, {inst}/h per instance\">{kind}{price}</a> <span class=\"where\">{where_}{it}</span>{stale_mark}",
        q = esc(&query(&q)),
        it = esc(&p.instance_type),
        n = html::num(p.accelerator_count),
        region = esc(&p.region),
        inst = usd(p.instance_price),
        kind = if spot { "spot " } else { "" },
        price = usd(p.price_per_accelerator),
        where_ = esc(&where_),
    )
}

fn filter_form(clouds: &[String], here: &[(&str, &str)]) -> String {
    let get = |k: &str| here.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).unwrap_or("");
    let mut cloud_choices = vec![(String::new(), "all clouds".to_owned())];
    cloud_choices.extend(clouds.iter().map(|c| (c.clone(), c.clone())));
    let markets = [
        (String::new(), "on-demand and spot".to_owned()),
        ("on_demand".to_owned(), "on-demand".to_owned()),
        ("spot".to_owned(), "spot".to_owned()),
    ];
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Filter GPU prices\">\
         <div><label for=\"f-q\">Accelerator</label><input id=\"f-q\" name=\"q\" value=\"{q}\" placeholder=\"A100\"></div>\
         <div><label for=\"f-cloud\">Cloud</label><select id=\"f-cloud\" name=\"cloud\">{clouds}</select></div>\
         <div><label for=\"f-region\">Region</label><input id=\"f-region\" name=\"region\" value=\"{region}\" placeholder=\"us-east-1\"></div>\
         <div><label for=\"f-market\">Market</label><select id=\"f-market\" name=\"market\">{markets}</select></div>\
         <div><label for=\"f-count\">GPUs per instance</label><input id=\"f-count\" name=\"count\" type=\"number\" min=\"0\" step=\"any\" value=\"{count}\"></div>\
         <div><label for=\"f-mem\">Min GPU memory (GiB)</label><input id=\"f-mem\" name=\"min_gpu_memory\" type=\"number\" min=\"0\" step=\"any\" value=\"{mem}\"></div>\
         <div class=\"actions\"><button type=\"submit\" id=\"apply\">Apply</button> <a href=\"/\">Clear</a></div></form>",
        q = esc(get("q")),
        clouds = html::options(&cloud_choices, get("cloud")),
        region = esc(get("region")),
        markets = html::options(&markets, get("market")),
        count = esc(get("count")),
        mem = esc(get("min_gpu_memory")),
    )
}

/// Sorts by a column; rows without a value go last whichever the direction.
fn sort_rows(rows: &mut [GpuSummary], sort: &str, desc: bool, market: Market) {
    let cheapest = |g: &GpuSummary, spot: bool| {
        g.clouds
            .iter()
            .filter_map(|c| if spot { c.cheapest_spot.as_ref() } else { c.cheapest_on_demand.as_ref() })
            .map(|p| p.price_per_accelerator)
            .min_by(f64::total_cmp)
    };
    let key = |g: &GpuSummary| -> Option<f64> {
        match sort {
            "memory" => g.memory_gib,
            "offers" => Some(g.offers as f64),
            "counts" => g.counts.last().copied(),
            "on_demand" => cheapest(g, false),
            "spot" => cheapest(g, true),
            s => s.strip_prefix("cloud:").and_then(|cloud| {
                let gc = g.clouds.iter().find(|c| c.cloud == cloud)?;
                let p = if market == Market::Spot { &gc.cheapest_spot } else { &gc.cheapest_on_demand };
                p.as_ref().map(|p| p.price_per_accelerator)
            }),
        }
    };
    if sort.is_empty() || sort == "accelerator" {
        rows.sort_by(|a, b| a.accelerator.cmp(&b.accelerator));
        if desc {
            rows.reverse();
        }
        return;
    }
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => {
            let o = x.total_cmp(&y);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.accelerator.cmp(&b.accelerator),
    });
}
