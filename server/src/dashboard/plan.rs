//! `/ui/plan`: paste or upload a SkyPilot task YAML and see the plan `POST /optimize` gives for
//! it — the form is answered by calling that very handler, so the two cannot disagree.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use skycat_optimizer::{OptimizeResponse, Placement, Plan};

use super::html::{self, esc, param};
use super::session::{self, Session};
use crate::error::ApiError;
use crate::extract::{BodyFormat, QueryPairs, RawBody};
use crate::routes::optimize::optimize;
use crate::state::AppState;

const EXAMPLE: &str = "resources:\n  accelerators: A100:8\n";

pub async fn form(Extension(session): Extension<Session>) -> Response {
    render(&session, EXAMPLE, "cost", "", "")
}

pub async fn submit(State(state): State<Arc<AppState>>, Extension(session): Extension<Session>, body: Bytes) -> Response {
    let form = session::form_fields(&body);
    if !session::csrf_ok(&session, &form) {
        return session::forbidden_csrf();
    }
    // Browsers send a textarea's line breaks as CRLF; YAML reads either.
    let task = html::raw_param(&form, "task").replace("\r\n", "\n");
    let minimize = param(&form, "minimize").to_owned();
    let hours = param(&form, "hours").to_owned();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in [("minimize", &minimize), ("hours", &hours)] {
        if !v.is_empty() {
            pairs.push((k.to_owned(), v.clone()));
        }
    }
    let raw = RawBody { format: BodyFormat::Yaml, bytes: Bytes::from(task.clone()) };
    let answer = match optimize(State(state), QueryPairs(pairs), raw).await {
        Ok(resp) => match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
            Ok(b) => match serde_json::from_slice::<OptimizeResponse>(&b) {
                Ok(plan) => render_plan(&plan),
                Err(e) => html::alert(&format!("cannot read the plan: {e}")),
            },
            Err(e) => html::alert(&format!("cannot read the plan: {e}")),
        },
        Err(e) => render_error(&e),
    };
    render(&session, &task, &minimize, &hours, &answer)
}

fn render(session: &Session, task: &str, minimize: &str, hours: &str, answer: &str) -> Response {
    let minimizes = [
        ("cost".to_owned(), "cost".to_owned()),
        ("time".to_owned(), "time".to_owned()),
        ("expected-cost".to_owned(), "expected cost (spot restarts included)".to_owned()),
    ];
    let body = format!(
        "<form class=\"plan\" method=\"post\" action=\"/ui/plan\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"task\">SkyPilot task YAML</label>\
         <textarea id=\"task\" name=\"task\" rows=\"12\" spellcheck=\"false\">{task}</textarea>\
         <div class=\"row\"><div><label for=\"task-file\">…or load a YAML file</label>\
         <input id=\"task-file\" type=\"file\" accept=\".yaml,.yml,text/yaml,application/yaml\" data-fills=\"task\"></div>\
         <div><label for=\"minimize\">Minimize</label><select id=\"minimize\" name=\"minimize\">{minimizes}</select></div>\
         <div><label for=\"hours\">Hours</label><input id=\"hours\" name=\"hours\" type=\"number\" min=\"0\" step=\"any\" value=\"{hours}\" placeholder=\"1\"></div>\
         <div class=\"actions\"><button type=\"submit\" id=\"plan-submit\">Plan</button></div></div></form>\
         <section id=\"answer\" aria-live=\"polite\">{answer}</section>",
        csrf = esc(&session.csrf),
        task = esc(task),
        minimizes = html::options(&minimizes, if minimize.is_empty() { "cost" } else { minimize }),
        hours = esc(hours),
    );
    html::page("Plan a task", "/ui/plan", session, &body)
}

fn render_error(e: &ApiError) -> String {
    let b = &e.body;
    let mut s = format!("<div class=\"plan-error\" id=\"plan-error\"><h2>No plan</h2>{}", html::alert(&b.error));
    if let Some(f) = &b.field {
        let at = match (b.line, b.column) {
            (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
            (Some(l), None) => format!(" (line {l})"),
            _ => String::new(),
        };
        s.push_str(&format!("<p>Field: <code>{}</code>{at}</p>", esc(f)));
    }
    if b.kind == "infeasible" {
        if let Some(detail) = &b.detail {
            if let Some(cut) = detail.get("cut_by").and_then(|v| v.as_str()) {
                s.push_str(&format!("<p>The constraint that removed the last candidates: <code>{}</code>.</p>", esc(cut)));
            }
            let nearest: Vec<Placement> = detail
                .get("nearest")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            if !nearest.is_empty() {
                s.push_str(&placements("Nearest offers", "nearest", &nearest, false));
            }
        }
    }
    s.push_str("</div>");
    s
}

fn render_plan(plan: &OptimizeResponse) -> String {
    match plan {
        OptimizeResponse::Task(p) => render_task_plan(p),
        // DAG and fleet plans have their own shapes; shown as the API returns them.
        other => format!(
            "<h2>Plan</h2><pre id=\"plan-json\">{}</pre>",
            esc(&serde_json::to_string_pretty(other).unwrap_or_default())
        ),
    }
}

fn render_task_plan(p: &Plan) -> String {
    let mut s = String::from("<h2>Chosen placement</h2>");
    s.push_str(&format!(
        "<p id=\"plan-summary\">{name}{nodes} node(s) of {req}: <strong>{hourly}/h</strong>, {total} for the estimated run. {n} feasible placements.</p>",
        name = p.task_name.as_deref().map(|n| format!("<code>{}</code>: ", esc(n))).unwrap_or_default(),
        nodes = p.num_nodes,
        req = esc(&p.requested.join(" or ")),
        hourly = html::usd(p.hourly_total),
        total = html::usd2(p.total_cost),
        n = p.feasible_count,
    ));
    s.push_str(&placements("Chosen", "chosen", std::slice::from_ref(&p.chosen), false));
    for note in &p.notes {
        s.push_str(&format!("<p class=\"note\">{}</p>", esc(note)));
    }
    s.push_str("<h2>Cheapest per cloud</h2>");
    s.push_str(&placements("Cheapest per cloud", "per-cloud", &p.per_cloud_cheapest, false));
    s.push_str("<h2>Failover order</h2>");
    s.push_str(&placements("Failover order", "failover", &p.failover, true));
    s
}

fn placements(caption: &str, id: &str, rows: &[Placement], ranked: bool) -> String {
    let mut s = format!(
        "<div class=\"scroll\" role=\"region\" aria-label=\"{c}\" tabindex=\"0\"><table id=\"{id}\"><caption class=\"sr-only\">{c}</caption><thead><tr>{rank}\
         <th scope=\"col\">Cloud</th><th scope=\"col\">Region</th><th scope=\"col\">Zone</th><th scope=\"col\">Instance type</th>\
         <th scope=\"col\">Accelerators</th><th scope=\"col\">Market</th><th scope=\"col\">$/h per node</th><th scope=\"col\">Total</th></tr></thead><tbody>",
        c = esc(caption),
        rank = if ranked { "<th scope=\"col\">#</th>" } else { "" },
    );
    for (i, p) in rows.iter().enumerate() {
        s.push_str(&format!(
            "<tr>{rank}<td data-field=\"cloud\">{cloud}</td><td data-field=\"region\">{region}</td><td data-field=\"zone\">{zone}</td>\
             <td data-field=\"instance_type\">{it}</td><td data-field=\"accelerators\">{acc}</td><td data-field=\"market\">{market}</td>\
             <td class=\"num\" data-field=\"hourly_price\">{price}</td><td class=\"num\">{total}</td></tr>",
            rank = if ranked { format!("<td>{}</td>", i + 1) } else { String::new() },
            cloud = esc(&p.cloud),
            region = esc(&p.region),
            zone = esc(p.zone.as_deref().unwrap_or("-")),
            it = esc(&p.instance_type),
            acc = match &p.accelerator {
                Some(a) => format!("{}:{}", esc(a), html::num(p.count)),
                None => "-".into(),
            },
            market = if p.use_spot { "spot" } else { "on-demand" },
            price = html::usd(p.hourly_price),
            total = html::usd2(p.total_cost),
        ));
    }
    s.push_str("</tbody></table></div>");
    s
}
