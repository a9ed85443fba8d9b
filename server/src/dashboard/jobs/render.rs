//! The HTML of the clusters-and-jobs pages.

use chrono::{DateTime, Utc};
use skycat_controller::managed::{status, AttemptView, JobView};

use super::charts;
use super::data::{ClusterLine, CostSummary, JobDetail, Overview, COST_DAYS};
use super::POLL_MS;
use crate::dashboard::html::{self, esc};

/// Most of a log shown per attempt (its end: the newest lines).
const LOG_TAIL_BYTES: usize = 256 * 1024;

/// `$0.0123` under a dollar, `$12.34` above.
pub fn money(x: f64) -> String {
    if x.abs() < 1.0 {
        format!("${x:.4}")
    } else {
        html::usd2(x)
    }
}

/// `42 s`, `3 min 20 s`, `2 h 05 min`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {:02} s", s / 60, s % 60),
        s => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

fn when(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => esc(&html::time(&t.with_timezone(&Utc))),
        Err(_) => esc(ts),
    }
}

/// A status with a class per kind, so that colour is never the only cue (the word is there).
fn badge(s: &str) -> String {
    let kind = match s {
        status::RUNNING | "UP" => "ok",
        status::SUCCEEDED => "done",
        status::PENDING | status::STARTING | status::RECOVERING | status::CANCELLING | "INIT" | "PREEMPTED" => "warn",
        s if s.starts_with("FAILED") => "bad",
        _ => "idle",
    };
    format!("<span class=\"st st-{kind}\">{}</span>", esc(s))
}

/// `ssh/POOL` for rows that hold a bare pool name (written before cloud backends).
fn infra_of(pool: &str) -> String {
    if pool.contains('/') {
        pool.to_owned()
    } else {
        format!("ssh/{pool}")
    }
}

fn attempt_placement(a: &AttemptView) -> String {
    format!(
        "{} <span class=\"where\">({})</span>",
        esc(&infra_of(&a.pool)),
        esc(&a.hosts.join(", "))
    )
}

/// Why an attempt ended, in words.
fn ended_why(a: &AttemptView) -> String {
    match (&a.ended_at, a.reason.as_deref()) {
        (None, _) => "still running".to_owned(),
        (Some(_), Some(r)) if !r.is_empty() => esc(r),
        (Some(_), _) => match a.outcome.as_str() {
            "SUCCEEDED" => "the task exited 0".to_owned(),
            "CANCELLED" => "cancelled".to_owned(),
            o => esc(o),
        },
    }
}

pub fn overview(o: &Overview) -> String {
    let mut s = format!(
        "<div id=\"jobs-live\" data-live=\"{POLL_MS}\">\
         <p class=\"summary\">{who}; as of <time datetime=\"{iso}\">{at}</time>, updated every {secs} s while this page is open.</p>",
        who = if o.everyone { "Every user's clusters and jobs" } else { "Your clusters and jobs" },
        iso = esc(&o.now.to_rfc3339()),
        at = esc(&o.now.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        secs = POLL_MS / 1000,
    );
    s.push_str(&clusters_table(&o.clusters, o.everyone));
    s.push_str(&jobs_table(&o.jobs, o.everyone));
    s.push_str(&costs_section(&o.costs, o.everyone));
    s.push_str("</div>");
    s
}

fn clusters_table(clusters: &[ClusterLine], everyone: bool) -> String {
    let mut s = format!("<h2 id=\"clusters-title\">Clusters <span class=\"count\">({})</span></h2>", clusters.len());
    if clusters.is_empty() {
        s.push_str("<p id=\"no-clusters\">No cluster is up.</p>");
        return s;
    }
    let owner_head = if everyone { "<th scope=\"col\">Owner</th>" } else { "" };
    s.push_str(&format!(
        "<div class=\"scroll\" id=\"clusters-scroll\" role=\"region\" aria-labelledby=\"clusters-title\" tabindex=\"0\"><table id=\"clusters\"><thead><tr>\
         <th scope=\"col\">Cluster</th><th scope=\"col\">Status</th>{owner_head}<th scope=\"col\">Infra</th>\
         <th scope=\"col\">Nodes and IPs</th><th scope=\"col\">Endpoints</th><th scope=\"col\">$/h</th>\
         <th scope=\"col\">Cost so far</th><th scope=\"col\">Autostop</th><th scope=\"col\">Launched</th></tr></thead><tbody>"
    ));
    for c in clusters {
        let nodes: String = c
            .nodes
            .iter()
            .map(|n| {
                let seen = n.last_heartbeat_at.as_deref().map(|t| format!(" title=\"last heartbeat {}\"", when(t))).unwrap_or_default();
                format!("<li{seen}>{}: <code>{}</code></li>", n.rank, esc(&n.ip))
            })
            .collect();
        let endpoints = if c.endpoints.is_empty() {
            "-".to_owned()
        } else {
            c.endpoints.iter().map(|e| format!("<code>{}</code>", esc(e))).collect::<Vec<_>>().join("<br>")
        };
        let owner = if everyone { format!("<td>{}</td>", esc(&c.owner)) } else { String::new() };
        let what = match &c.instance_type {
            Some(t) => format!("{}<br><span class=\"where\">{}{}</span>", esc(&c.infra), esc(t), if c.spot { ", spot" } else { "" }),
            None => format!("{}{}", esc(&c.infra), if c.spot { " <span class=\"where\">spot</span>" } else { "" }),
        };
        s.push_str(&format!(
            "<tr data-cluster=\"{name}\" data-status=\"{st}\"><th scope=\"row\">{name}</th><td>{badge}</td>{owner}<td>{what}</td>\
             <td><ol class=\"plain\" aria-label=\"{n} node(s)\">{nodes}</ol></td><td>{endpoints}</td>\
             <td class=\"num\" title=\"{per_node} per node-hour × {n}\">{per_hour}</td><td class=\"num\">{cost}</td>\
             <td>{autostop}</td><td>{created}</td></tr>",
            name = esc(&c.name),
            st = esc(&c.status),
            badge = badge(&c.status),
            n = c.num_nodes,
            per_node = html::usd(c.price_per_node_hour),
            per_hour = html::usd(c.per_hour),
            cost = money(c.cost_usd),
            autostop = esc(c.autostop.as_deref().unwrap_or("-")),
            created = when(&c.created_at),
        ));
    }
    s.push_str("</tbody></table></div>");
    s
}

fn attempts_list(j: &JobView) -> String {
    if j.attempts.is_empty() {
        return "<span class=\"where\">none yet</span>".to_owned();
    }
    let mut s = String::from("<ol class=\"attempts\" start=\"0\">");
    for a in &j.attempts {
        s.push_str(&format!(
            "<li data-attempt=\"{no}\" data-outcome=\"{out}\">{placement}{spot}, {dur}, {cost}: {badge} <span class=\"why\">{why}</span></li>",
            no = a.attempt,
            out = esc(&a.outcome),
            placement = attempt_placement(a),
            spot = if a.spot { " spot" } else { "" },
            dur = duration(a.duration_secs),
            cost = money(a.cost_usd),
            badge = badge(&a.outcome),
            why = if a.ended_at.is_some() { ended_why(a) } else { String::new() },
        ));
    }
    s.push_str("</ol>");
    s
}

fn jobs_table(jobs: &[JobView], everyone: bool) -> String {
    let mut s = format!("<h2 id=\"jobs-title\">Managed jobs <span class=\"count\">({})</span></h2>", jobs.len());
    if jobs.is_empty() {
        s.push_str("<p id=\"no-jobs\">No managed job yet: submit one with <code>skycat jobs launch</code>.</p>");
        return s;
    }
    let owner_head = if everyone { "<th scope=\"col\">Owner</th>" } else { "" };
    s.push_str(&format!(
        "<div class=\"scroll\" id=\"jobs-scroll\" role=\"region\" aria-labelledby=\"jobs-title\" tabindex=\"0\"><table id=\"jobs\"><thead><tr>\
         <th scope=\"col\">Job</th>{owner_head}<th scope=\"col\">Status</th><th scope=\"col\">Placement</th>\
         <th scope=\"col\">Recoveries</th><th scope=\"col\">Cost</th><th scope=\"col\">Submitted</th>\
         <th scope=\"col\">Attempts: placement, duration, cost, how it ended</th></tr></thead><tbody>"
    ));
    for j in jobs {
        let name = j.name.as_deref().map(|n| format!(" {}", esc(n))).unwrap_or_default();
        let owner = if everyone { format!("<td>{}</td>", esc(if j.owner.is_empty() { "(server)" } else { &j.owner })) } else { String::new() };
        s.push_str(&format!(
            "<tr data-job=\"{id}\" data-status=\"{st}\"><th scope=\"row\"><a href=\"/ui/jobs/{id}\">#{id}{name}</a></th>{owner}\
             <td>{badge}{reason}</td><td>{placement}</td><td class=\"num\">{rec}</td><td class=\"num\">{cost}</td><td>{sub}</td>\
             <td class=\"wrap\">{attempts}</td></tr>",
            id = j.id,
            st = esc(&j.status),
            badge = badge(&j.status),
            reason = j.failure_reason.as_deref().map(|r| format!("<br><span class=\"why\">{}</span>", esc(r))).unwrap_or_default(),
            placement = esc(j.placement.as_deref().unwrap_or("-")),
            rec = j.recovery_count,
            cost = money(j.total_cost_usd),
            sub = when(&j.submitted_at),
            attempts = attempts_list(j),
        ));
    }
    s.push_str("</tbody></table></div>");
    s
}

fn costs_section(c: &CostSummary, everyone: bool) -> String {
    let mut s = format!(
        "<h2 id=\"costs-title\">Metered cost, last {COST_DAYS} days</h2><p class=\"summary\">{}, metered by the agents at the price pinned at launch.</p>",
        if everyone { "Every user's clusters" } else { "The clusters of your jobs" }
    );
    if c.days.is_empty() {
        s.push_str("<p id=\"no-costs\">Nothing metered in this period.</p>");
        return s;
    }
    s.push_str("<div class=\"charts\">");
    s.push_str(&charts::per_day(&c.days));
    s.push_str(&charts::bars("cost-per-cluster", "Per cluster", "cluster", &c.clusters));
    s.push_str(&charts::bars("cost-per-user", "Per user", "user", &c.users));
    s.push_str("</div>");
    s
}

/// The tail of a log that fits [`LOG_TAIL_BYTES`], on a character boundary.
fn tail(log: &str) -> (&str, bool) {
    if log.len() <= LOG_TAIL_BYTES {
        return (log, false);
    }
    let mut start = log.len() - LOG_TAIL_BYTES;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    (&log[start..], true)
}

pub fn job(d: &JobDetail) -> String {
    let v = &d.view;
    let terminal = status::is_terminal(&v.status);
    let final_attr = if terminal { " data-live-final" } else { "" };
    let mut s = format!(
        "<p><a href=\"/ui/jobs\">All clusters and jobs</a></p><div id=\"job-live\" data-live=\"{POLL_MS}\"{final_attr}>"
    );
    let fact = |k: &str, v: String| format!("<div><dt>{}</dt><dd>{v}</dd></div>", esc(k));
    s.push_str("<dl class=\"facts\">");
    s.push_str(&fact("Status", format!("<span id=\"job-status\" data-status=\"{}\">{}</span>", esc(&v.status), badge(&v.status))));
    s.push_str(&fact("Name", esc(v.name.as_deref().unwrap_or("-"))));
    s.push_str(&fact("Owner", esc(if v.owner.is_empty() { "(server)" } else { &v.owner })));
    s.push_str(&fact("Strategy", esc(&v.strategy)));
    s.push_str(&fact("Market", (if v.use_spot { "spot" } else { "on-demand" }).to_owned()));
    s.push_str(&fact("Recoveries", v.recovery_count.to_string()));
    s.push_str(&fact("Restarts on errors", format!("{} of {}", v.restarts_on_errors, v.max_restarts_on_errors)));
    s.push_str(&fact("Task id", format!("<code>{}</code>", esc(&v.task_id))));
    s.push_str(&fact("Submitted", when(&v.submitted_at)));
    s.push_str(&fact("Ended", v.ended_at.as_deref().map(when).unwrap_or_else(|| "-".into())));
    s.push_str(&fact("Cost", money(v.total_cost_usd)));
    if let Some(r) = &v.failure_reason {
        s.push_str(&fact("Why it failed", esc(r)));
    }
    s.push_str("</dl>");
    s.push_str("<h2 id=\"attempts-title\">Attempts</h2>");
    if v.attempts.is_empty() {
        s.push_str("<p id=\"no-attempts\">No attempt launched yet.</p>");
    } else {
        s.push_str(
            "<div class=\"scroll\" id=\"attempts-scroll\" role=\"region\" aria-labelledby=\"attempts-title\" tabindex=\"0\"><table id=\"attempts\"><thead><tr>\
             <th scope=\"col\">Attempt</th><th scope=\"col\">Placement</th><th scope=\"col\">Cluster</th><th scope=\"col\">Market</th>\
             <th scope=\"col\">$/h</th><th scope=\"col\">Started</th><th scope=\"col\">Duration</th><th scope=\"col\">Cost</th>\
             <th scope=\"col\">Outcome</th><th scope=\"col\">Why it ended</th></tr></thead><tbody>",
        );
        for a in &v.attempts {
            s.push_str(&format!(
                "<tr data-attempt=\"{no}\" data-outcome=\"{out}\"><th scope=\"row\">{no}</th><td>{placement}</td><td><code>{cluster}</code></td>\
                 <td>{market}</td><td class=\"num\">{price}</td><td>{started}</td><td class=\"num\">{dur}</td><td class=\"num\">{cost}</td>\
                 <td>{badge}</td><td class=\"wrap\">{why}</td></tr>",
                no = a.attempt,
                out = esc(&a.outcome),
                placement = attempt_placement(a),
                cluster = esc(&a.cluster),
                market = if a.spot { "spot" } else { "on-demand" },
                price = html::usd(a.price_per_hour),
                started = when(&a.started_at),
                dur = duration(a.duration_secs),
                cost = money(a.cost_usd),
                badge = badge(&a.outcome),
                why = ended_why(a),
            ));
        }
        s.push_str("</tbody></table></div>");
    }
    if !d.blocks.is_empty() {
        s.push_str("<h2>Avoided for the rest of the job</h2><ul id=\"blocks\">");
        for (pool, host, scope) in &d.blocks {
            let what = if scope == "zone" { format!("host {} of {}", esc(host), esc(&infra_of(pool))) } else { format!("region {}", esc(&infra_of(pool))) };
            s.push_str(&format!("<li>{what}</li>"));
        }
        s.push_str("</ul>");
    }
    s.push_str(&format!(
        "<h2>Logs</h2><p class=\"summary\">{}</p>",
        if terminal { "As saved when each attempt ended." } else { "Following live: the running attempt's log is read from its nodes every few seconds." }
    ));
    if d.logs.is_empty() {
        s.push_str("<p id=\"no-logs\">No log yet.</p>");
    }
    for (attempt, log) in &d.logs {
        let (text, cut) = tail(log);
        let note = if cut { format!("<p class=\"note\">The last {} KiB of {} KiB.</p>", LOG_TAIL_BYTES / 1024, log.len() / 1024) } else { String::new() };
        s.push_str(&format!(
            "<h3 id=\"log-{attempt}-title\">Attempt {attempt}</h3>{note}\
             <pre class=\"log\" id=\"log-{attempt}\" tabindex=\"0\" aria-labelledby=\"log-{attempt}-title\">{}</pre>",
            if text.is_empty() { "(empty)".to_owned() } else { esc(text) },
        ));
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_money() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
        assert_eq!(money(0.01234), "$0.0123");
        assert_eq!(money(12.345), "$12.35");
    }

    #[test]
    fn log_tail_keeps_the_end_on_a_char_boundary() {
        let log = format!("{}é{}", "a".repeat(10), "b".repeat(LOG_TAIL_BYTES));
        let (t, cut) = tail(&log);
        assert!(cut && t.ends_with('b') && t.len() <= LOG_TAIL_BYTES);
        assert_eq!(tail("short"), ("short", false));
    }

    #[test]
    fn statuses_read_as_words_and_classes() {
        assert_eq!(badge("RUNNING"), "<span class=\"st st-ok\">RUNNING</span>");
        assert_eq!(badge("FAILED_SETUP"), "<span class=\"st st-bad\">FAILED_SETUP</span>");
        assert!(badge("<x>").contains("&lt;x&gt;"));
    }
}
