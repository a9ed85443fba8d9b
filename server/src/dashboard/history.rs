//! `/ui/history?what=A100|p4d.24xlarge[&cloud=][&region=]`: a price chart over the
//! `$SKYCAT_HOME/history/<cloud>/<timestamp>.parquet` snapshots each `skycat fetch`
//! writes (read by `skycat price-history`'s own function), with the cheapest on-demand and spot
//! price per snapshot, and the biggest moves between the last two fetches.
//!
//! The chart is SVG drawn here: no script or chart library, a few KB, readable with scripts off.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};

use super::html::{self, esc, param};
use super::session::Session;
use crate::extract::QueryPairs;
use crate::state::AppState;

/// One snapshot row, as the chart needs it.
#[derive(Debug, Clone)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub cloud: String,
    pub instance_type: String,
    pub region: String,
    pub zone: Option<String>,
    pub accelerator_count: f64,
    pub price: Option<f64>,
    pub spot_price: Option<f64>,
}

/// Biggest moves listed.
const MOVES: usize = 10;

#[cfg(feature = "fetch")]
fn load(home: &skycat_catalog::SkycatHome, what: &str, cloud: Option<&str>, region: Option<&str>) -> Result<Vec<Point>, String> {
    skycat_fetchers::history::price_history(home, what, cloud, region)
        .map(|rows| {
            rows.into_iter()
                .map(|p| Point {
                    at: p.at,
                    cloud: p.cloud,
                    instance_type: p.instance_type,
                    region: p.region,
                    zone: p.zone,
                    accelerator_count: p.accelerator_count,
                    price: p.price,
                    spot_price: p.spot_price,
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "fetch"))]
fn load(_: &skycat_catalog::SkycatHome, _: &str, _: Option<&str>, _: Option<&str>) -> Result<Vec<Point>, String> {
    Err("this server is built without the `fetch` feature, which reads the history snapshots".into())
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    QueryPairs(pairs): QueryPairs,
) -> Response {
    let what = match param(&pairs, "what") {
        "" => "A100".to_owned(),
        w => w.to_owned(),
    };
    let cloud = param(&pairs, "cloud").to_ascii_lowercase();
    let region = param(&pairs, "region").to_owned();
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui/history\" aria-label=\"Choose what to chart\">\
         <div><label for=\"h-what\">Accelerator or instance type</label><input id=\"h-what\" name=\"what\" value=\"{w}\" required></div>\
         <div><label for=\"h-cloud\">Cloud</label><input id=\"h-cloud\" name=\"cloud\" value=\"{c}\" placeholder=\"any\"></div>\
         <div><label for=\"h-region\">Region</label><input id=\"h-region\" name=\"region\" value=\"{r}\" placeholder=\"any\"></div>\
         <div class=\"actions\"><button type=\"submit\">Show</button></div></form>",
        w = esc(&what),
        c = esc(&cloud),
        r = esc(&region),
    );
    let Some(home) = state.config.home.clone() else {
        body.push_str(&html::alert("this server has no skycat home, so no price history to read"));
        return html::page("Price history", "/ui/history", &session, &body);
    };
    let (w, c, r) = (what.clone(), cloud.clone(), region.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        load(&home, &w, (!c.is_empty()).then_some(c.as_str()), (!r.is_empty()).then_some(r.as_str()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let points = match loaded {
        Ok(p) => p,
        Err(e) => {
            body.push_str(&html::alert(&format!("cannot read the price history: {e}")));
            return html::page("Price history", "/ui/history", &session, &body);
        }
    };
    if points.is_empty() {
        body.push_str(&html::alert(&format!(
            "no history for {what}: each `skycat fetch` (or a refresh of `skycat serve`) adds a snapshot under $SKYCAT_HOME/history/"
        )));
        return html::page("Price history", "/ui/history", &session, &body);
    }
    // An instance type is charted per instance-hour; an accelerator per device-hour, so that
    // 1- and 8-GPU machines compare.
    let by_type = points.iter().any(|p| p.instance_type.eq_ignore_ascii_case(&what));
    let unit = if by_type { "instance-hour" } else { "device-hour" };
    let norm = |p: &Point, x: Option<f64>| -> Option<f64> {
        let x = x.filter(|v| v.is_finite() && *v > 0.0)?;
        Some(if by_type { x } else { x / p.accelerator_count.max(1e-9) })
    };
    let mut series: BTreeMap<DateTime<Utc>, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for p in &points {
        let e = series.entry(p.at).or_default();
        if let Some(v) = norm(p, p.price) {
            e.0 = Some(e.0.map_or(v, |c: f64| c.min(v)));
        }
        if let Some(v) = norm(p, p.spot_price) {
            e.1 = Some(e.1.map_or(v, |c: f64| c.min(v)));
        }
    }
    body.push_str(&format!(
        "<p class=\"summary\">{n} snapshots from {first} to {last}; the cheapest price per {unit} in each.</p>",
        n = series.len(),
        first = esc(&html::time(series.keys().next().expect("non-empty"))),
        last = esc(&html::time(series.keys().last().expect("non-empty"))),
    ));
    body.push_str(&chart(&what, unit, &series));
    body.push_str(&moves_table(&points));
    html::page("Price history", "/ui/history", &session, &body)
}

/// The SVG line chart of on-demand and spot prices over time.
pub fn chart(what: &str, unit: &str, series: &BTreeMap<DateTime<Utc>, (Option<f64>, Option<f64>)>) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 280.0, 70.0, 20.0, 20.0, 40.0);
    let t0 = series.keys().next().map(|t| t.timestamp()).unwrap_or(0) as f64;
    let t1 = series.keys().last().map(|t| t.timestamp()).unwrap_or(0) as f64;
    let values: Vec<f64> = series.values().flat_map(|(a, b)| [*a, *b]).flatten().collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if hi - lo < 1e-9 { (lo * 0.9, hi * 1.1 + 1e-6) } else { (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05) };
    let lo = lo.max(0.0);
    let x = |t: &DateTime<Utc>| {
        if t1 > t0 {
            left + (t.timestamp() as f64 - t0) / (t1 - t0) * (w - left - right)
        } else {
            left + (w - left - right) / 2.0
        }
    };
    let y = |v: f64| top + (hi - v) / (hi - lo) * (h - top - bottom);
    let mut svg = format!(
        "<figure class=\"chart\"><svg id=\"history-chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">{what}: cheapest on-demand and spot price per {unit} over time</title>",
        what = esc(what),
    );
    // Axes with the price range and the first and last snapshot.
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{yb}\"/><line class=\"axis\" x1=\"{left}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\"/>",
        yb = h - bottom,
        xr = w - right,
    ));
    for v in [lo, (lo + hi) / 2.0, hi] {
        svg.push_str(&format!(
            "<text class=\"tick\" x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text><line class=\"grid\" x1=\"{left}\" x2=\"{xr}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>",
            tx = left - 6.0,
            ty = y(v),
            label = html::usd(v),
            xr = w - right,
        ));
    }
    if let (Some(first), Some(last)) = (series.keys().next(), series.keys().last()) {
        svg.push_str(&format!(
            "<text class=\"tick\" x=\"{left}\" y=\"{ty}\">{a}</text><text class=\"tick\" x=\"{xr}\" y=\"{ty}\" text-anchor=\"end\">{b}</text>",
            ty = h - bottom + 18.0,
            xr = w - right,
            a = esc(&first.format("%Y-%m-%d").to_string()),
            b = esc(&last.format("%Y-%m-%d").to_string()),
        ));
    }
    for (spot, class, label) in [(false, "line-od", "on-demand"), (true, "line-spot", "spot")] {
        let pts: Vec<(f64, f64, &DateTime<Utc>, f64)> = series
            .iter()
            .filter_map(|(t, (od, sp))| {
                let v = if spot { *sp } else { *od }?;
                Some((x(t), y(v), t, v))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(px, py, _, _)| format!("{px:.1},{py:.1}")).collect();
        svg.push_str(&format!("<polyline class=\"{class}\" points=\"{}\"/>", path.join(" ")));
        for (px, py, t, v) in &pts {
            svg.push_str(&format!(
                "<circle class=\"{class}\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\"><title>{label} {} at {}</title></circle>",
                html::usd(*v),
                esc(&html::time(t)),
            ));
        }
    }
    svg.push_str("</svg><figcaption><span class=\"key-od\">on-demand</span> <span class=\"key-spot\">spot</span></figcaption></figure>");
    svg
}

/// The rows whose price moved most between each cloud's last two snapshots.
fn moves_table(points: &[Point]) -> String {
    // Per cloud, the last two snapshot times.
    let mut times: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for p in points {
        let v = times.entry(p.cloud.as_str()).or_default();
        if !v.contains(&p.at) {
            v.push(p.at);
        }
    }
    type Key<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool);
    let mut before: BTreeMap<Key, f64> = BTreeMap::new();
    let mut after: BTreeMap<Key, (f64, DateTime<Utc>)> = BTreeMap::new();
    for p in points {
        let ts = &times[p.cloud.as_str()];
        if ts.len() < 2 {
            continue;
        }
        let (prev, last) = (ts[ts.len() - 2], ts[ts.len() - 1]);
        for (spot, v) in [(false, p.price), (true, p.spot_price)] {
            let Some(v) = v.filter(|v| v.is_finite() && *v > 0.0) else { continue };
            let k = (p.cloud.as_str(), p.instance_type.as_str(), p.region.as_str(), p.zone.as_deref(), spot);
            if p.at == prev {
                before.insert(k, v);
            } else if p.at == last {
                after.insert(k, (v, last));
            }
        }
    }
    let mut moves: Vec<(Key, f64, f64, DateTime<Utc>)> = after
        .iter()
        .filter_map(|(k, (new, at))| before.get(k).map(|old| (*k, *old, *new, *at)))
        .filter(|(_, old, new, _)| (new - old).abs() > 1e-9)
        .collect();
    moves.sort_by(|a, b| ((b.2 - b.1) / b.1).abs().total_cmp(&((a.2 - a.1) / a.1).abs()));
    moves.truncate(MOVES);
    let mut s = String::from("<h2>Biggest moves at the last fetch</h2>");
    if moves.is_empty() {
        s.push_str("<p id=\"no-moves\">No price changed between the last two snapshots (or there is only one).</p>");
        return s;
    }
    s.push_str(
        "<div class=\"scroll\" role=\"region\" aria-label=\"Biggest moves\" tabindex=\"0\"><table id=\"moves\"><thead><tr>\
         <th scope=\"col\">Cloud</th><th scope=\"col\">Instance type</th><th scope=\"col\">Region</th><th scope=\"col\">Market</th>\
         <th scope=\"col\">Before $/h</th><th scope=\"col\">After $/h</th><th scope=\"col\">Change</th><th scope=\"col\">Fetched</th></tr></thead><tbody>",
    );
    for ((cloud, it, region, zone, spot), old, new, at) in moves {
        let pct = (new - old) / old * 100.0;
        s.push_str(&format!(
            "<tr><td>{cloud}</td><td>{it}</td><td>{region}{zone}</td><td>{market}</td><td class=\"num\">{old}</td><td class=\"num\">{new}</td>\
             <td class=\"num {dir}\">{pct:+.1}%</td><td>{at}</td></tr>",
            cloud = esc(cloud),
            it = esc(it),
            region = esc(region),
            zone = zone.map(|z| format!(" ({})", esc(z))).unwrap_or_default(),
            market = if spot { "spot" } else { "on-demand" },
            old = html::usd(old),
            new = html::usd(new),
            dir = if new > old { "up" } else { "down" },
            at = esc(&html::time(&at)),
        ));
    }
    s.push_str("</tbody></table></div>");
    s
}
