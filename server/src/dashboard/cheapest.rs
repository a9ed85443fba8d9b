//! `/ui/cheapest?accelerator=A100[&market=spot]`: every region offering an accelerator, grouped
//! by continent, coloured by its cheapest price per device-hour; hovering or focusing a region
//! shows its offers. The offers are `/catalog/offers`' ([`OfferFilter`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use skycat_catalog::Offer;

use super::html::{self, esc, param, query};
use super::session::Session;
use crate::extract::QueryPairs;
use crate::routes::catalog::OfferFilter;
use crate::state::AppState;

/// Colour steps of the grid, cheapest (0) to dearest.
const STEPS: usize = 6;
/// Offers listed per region when it is hovered or focused.
const OFFERS_SHOWN: usize = 8;

/// The continent of a region, from its name: providers name regions after places (`us-east-1`,
/// `europe-west4`, `japaneast`, `ap-tokyo-1`), and the same words recur across them.
pub fn continent(region: &str) -> &'static str {
    let r = region.to_ascii_lowercase();
    // Some providers name a region by its country's ISO code alone (`US`, `FI`, `IN`).
    let by_code = match r.as_str() {
        "us" | "ca" | "mx" => Some("North America"),
        "br" | "cl" | "ar" | "co" => Some("South America"),
        "gb" | "uk" | "fi" | "de" | "fr" | "nl" | "se" | "no" | "is" | "ie" | "es" | "it" | "pl" | "ch" | "be" | "at"
        | "dk" | "cz" | "pt" | "ro" | "bg" | "gr" | "ee" | "lt" | "lv" | "hu" | "ua" => Some("Europe"),
        "in" | "jp" | "kr" | "sg" | "tw" | "hk" | "id" | "my" | "th" | "vn" | "ph" | "cn" => Some("Asia"),
        "au" | "nz" => Some("Oceania"),
        "il" | "ae" | "sa" | "qa" | "tr" => Some("Middle East"),
        "za" | "ng" | "ke" | "eg" => Some("Africa"),
        _ => None,
    };
    if let Some(c) = by_code {
        return c;
    }
    let has = |words: &[&str]| words.iter().any(|w| r.contains(w));
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| r.starts_with(p));
    if has(&["australia", "sydney", "melbourne", "newzealand", "auckland"]) {
        "Oceania"
    } else if has(&["africa", "johannesburg", "capetown"]) || starts(&["af-"]) {
        "Africa"
    } else if has(&["uae", "qatar", "israel", "dubai", "abudhabi", "saudi", "doha", "jeddah", "riyadh", "telaviv", "jerusalem", "bahrain"])
        || starts(&["me-", "il-"])
    {
        "Middle East"
    } else if has(&["brazil", "southamerica", "chile", "saopaulo", "santiago", "vinhedo", "bogota", "valparaiso"])
        || starts(&["sa-"])
    {
        "South America"
    } else if has(&[
        "asia", "japan", "korea", "india", "tokyo", "osaka", "seoul", "singapore", "mumbai", "hyderabad", "chuncheon",
        "hongkong", "taiwan", "jakarta", "indonesia", "malaysia", "thailand", "china",
    ]) || starts(&["ap-", "in-", "jp-", "kr-", "sg-"])
    {
        "Asia"
    } else if has(&[
        "europe", "uk", "france", "germany", "norway", "sweden", "switzerland", "poland", "italy", "spain", "london",
        "frankfurt", "amsterdam", "paris", "zurich", "stockholm", "milan", "madrid", "marseille", "netherlands",
        "finland", "belgium", "ireland", "austria", "denmark", "greece",
    ]) || starts(&["eu-", "eu", "nl-", "de-", "fr-", "se-", "gb-"])
    {
        "Europe"
    } else if has(&["us", "canada", "northamerica", "mexico", "toronto", "montreal", "virginia", "texas", "oregon", "ohio", "iowa", "chicago", "phoenix", "ashburn", "sanjose", "quebec"])
        || starts(&["ca-", "mx-", "na-"])
    {
        "North America"
    } else {
        "Other"
    }
}

fn per_device(o: &Offer, spot: bool) -> Option<f64> {
    o.price_for(spot).filter(|p| p.is_finite() && *p > 0.0).map(|p| p / o.accelerator_count.max(1e-9))
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    QueryPairs(pairs): QueryPairs,
) -> Response {
    let snap = state.snapshot();
    let default = if snap.accelerator_names.iter().any(|n| n == "A100") {
        "A100".to_owned()
    } else {
        snap.accelerator_names.first().cloned().unwrap_or_default()
    };
    let accel = match param(&pairs, "accelerator") {
        "" => default,
        a => a.to_owned(),
    };
    let spot = param(&pairs, "market") == "spot";
    let choices: Vec<(String, String)> = snap.accelerator_names.iter().map(|n| (n.clone(), n.clone())).collect();
    let markets = [(String::new(), "on-demand".to_owned()), ("spot".to_owned(), "spot".to_owned())];
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui/cheapest\" aria-label=\"Choose an accelerator\">\
         <div><label for=\"c-acc\">Accelerator</label><select id=\"c-acc\" name=\"accelerator\">{acc}</select></div>\
         <div><label for=\"c-market\">Market</label><select id=\"c-market\" name=\"market\">{mk}</select></div>\
         <div class=\"actions\"><button type=\"submit\">Show</button></div></form>",
        acc = html::options(&choices, &accel),
        mk = html::options(&markets, if spot { "spot" } else { "" }),
    );
    let fp = vec![("accelerator".to_owned(), accel.clone()), ("spot".to_owned(), spot.to_string())];
    let filter = match OfferFilter::parse(&fp, &snap, usize::MAX) {
        Ok(f) => f,
        Err(e) => {
            body.push_str(&html::alert(&e.body.error));
            return html::page("Where is it cheapest", "/ui/cheapest", &session, &body);
        }
    };
    // Per (cloud, region): its offers, cheapest per device-hour first.
    let mut regions: BTreeMap<(&str, &str), Vec<&Offer>> = BTreeMap::new();
    for o in snap.offers().iter().filter(|o| filter.matches_any_market(o) && per_device(o, spot).is_some()) {
        regions.entry((o.cloud.as_ref(), o.region.as_ref())).or_default().push(o);
    }
    let key = |o: &&Offer| per_device(o, spot).unwrap_or(f64::INFINITY);
    for offers in regions.values_mut() {
        offers.sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.instance_type.cmp(&b.instance_type)));
    }
    if regions.is_empty() {
        body.push_str(&html::alert(&format!(
            "no region offers {accel} {}",
            if spot { "on spot" } else { "on demand" }
        )));
        return html::page("Where is it cheapest", "/ui/cheapest", &session, &body);
    }
    let best: Vec<f64> = regions.values().map(|v| key(&v[0])).collect();
    let (lo, hi) = best.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
    let step = |p: f64| -> usize {
        if hi <= lo {
            0
        } else {
            (((p - lo) / (hi - lo)) * (STEPS as f64 - 1.0)).round() as usize
        }
    };
    body.push_str(&format!(
        "<p class=\"summary\">{n} regions offer <strong>{a}</strong> {m}: from {lo} to {hi} per device-hour. \
         <span class=\"legend\" aria-hidden=\"true\">{legend}</span></p>",
        n = regions.len(),
        a = esc(&accel),
        m = if spot { "on spot" } else { "on demand" },
        lo = html::usd(lo),
        hi = html::usd(hi),
        legend = (0..STEPS).map(|i| format!("<span class=\"heat-{i}\">&nbsp;</span>")).collect::<String>(),
    ));
    let mut by_continent: BTreeMap<&str, Vec<(&(&str, &str), &Vec<&Offer>)>> = BTreeMap::new();
    for (k, v) in &regions {
        by_continent.entry(continent(k.1)).or_default().push((k, v));
    }
    for (cont, mut list) in by_continent {
        list.sort_by(|a, b| key(&a.1[0]).total_cmp(&key(&b.1[0])));
        body.push_str(&format!("<section class=\"continent\"><h2>{}</h2><ul class=\"regions\">", esc(cont)));
        for ((cloud, region), offers) in list {
            let cheapest = offers[0];
            let mut detail = String::new();
            for o in offers.iter().take(OFFERS_SHOWN) {
                let mut q: Vec<(&str, &str)> = vec![("cloud", cloud), ("instance_type", &o.instance_type), ("region", region)];
                if let Some(z) = o.zone.as_deref() {
                    q.push(("zone", z));
                }
                detail.push_str(&format!(
                    "<li><a href=\"/ui/price?{q}\">{it}</a>{zone} ×{n}: {inst}/h ({dev}/device-h)</li>",
                    q = esc(&query(&q)),
                    it = esc(&o.instance_type),
                    zone = o.zone.as_deref().map(|z| format!(" in {}", esc(z))).unwrap_or_default(),
                    n = html::num(o.accelerator_count),
                    inst = html::usd(o.price_for(spot).unwrap_or(0.0)),
                    dev = html::usd(key(o)),
                ));
            }
            if offers.len() > OFFERS_SHOWN {
                detail.push_str(&format!("<li>… and {} more</li>", offers.len() - OFFERS_SHOWN));
            }
            body.push_str(&format!(
                "<li class=\"region heat-{h}\" tabindex=\"0\" data-cloud=\"{c}\" data-region=\"{r}\" aria-label=\"{c} {r}: from {p} per device-hour\">\
                 <span class=\"name\">{c} {r}</span><span class=\"best\">{p}</span>\
                 <ul class=\"offers\">{detail}</ul></li>",
                h = step(key(&cheapest)),
                c = esc(cloud),
                r = esc(region),
                p = html::usd(key(&cheapest)),
            ));
        }
        body.push_str("</ul></section>");
    }
    html::page("Where is it cheapest", "/ui/cheapest", &session, &body)
}

#[cfg(test)]
mod tests {
    use super::continent;

    #[test]
    fn regions_of_every_naming_style_find_their_continent() {
        for (r, c) in [
            ("us-east-1", "North America"),
            ("eastus", "North America"),
            ("northamerica-northeast1", "North America"),
            ("ca-central-1", "North America"),
            ("us-ashburn-1", "North America"),
            ("europe-west4", "Europe"),
            ("eu-central-1", "Europe"),
            ("westeurope", "Europe"),
            ("uksouth", "Europe"),
            ("ap-northeast-1", "Asia"),
            ("asia-southeast1", "Asia"),
            ("japaneast", "Asia"),
            ("centralindia", "Asia"),
            ("australiaeast", "Oceania"),
            ("australia-southeast1", "Oceania"),
            ("southafricanorth", "Africa"),
            ("af-south-1", "Africa"),
            ("me-central-1", "Middle East"),
            ("uaenorth", "Middle East"),
            ("sa-east-1", "South America"),
            ("brazilsouth", "South America"),
            ("southamerica-east1", "South America"),
            ("FI", "Europe"),
            ("IN", "Asia"),
            ("US", "North America"),
        ] {
            assert_eq!(continent(r), c, "{r}");
        }
    }
}
