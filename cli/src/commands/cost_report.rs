//! `skycat cost-report`: costs from the agents' metered ledger, at the price pinned at launch
//! (never re-priced). Per cluster by default; `--all-users` / `--since` give the team's costs per
//! user, cluster and cloud (from `$SKYCAT_HOME/state.db`, which is `skycat serve`'s own on its
//! machine: every user's managed jobs are there).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use clap::Args;
use comfy_table::{presets::NOTHING, Table};
use skycat_catalog::PriceRules;
use skycat_controller::costs::{self, TeamCostLine};
use skycat_controller::store::ClusterRow;

#[derive(Args)]
pub struct CostReportArgs {
    /// Pull every live cluster's ledger from its agents over SSH first.
    #[arg(long)]
    pub refresh: bool,
    /// Every user's costs (managed jobs by their API token's name; CLI launches as `(cli)`),
    /// per user, cluster and cloud.
    #[arg(long)]
    pub all_users: bool,
    /// Only costs metered since: `2026-11-01`, an RFC 3339 time, or `30d` / `12h` back.
    #[arg(long)]
    pub since: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Ask this `skycat serve` (its `GET /v1/costs`) for the per-user report instead of the
    /// local state.db: your own costs, or everyone's with `--all-users` and an admin token.
    #[arg(long)]
    pub server_url: Option<String>,
}

/// `custom` when the user's price rules set the price of a cluster's row (judged by today's
/// `prices:`; the pinned price is what was metered either way).
fn custom_mark(rules: &PriceRules, c: &ClusterRow) -> Option<String> {
    let mut parts = c.infra.split('/');
    let (cloud, region) = (parts.next()?, parts.next()?);
    rules.rule_for(cloud, c.instance_type.as_deref()?, region, c.spot)
}

pub async fn run(a: CostReportArgs) -> Result<()> {
    if let Some(url) = &a.server_url {
        return from_server(&a, url).await;
    }
    let ctl = super::cluster::controller().await?;
    if a.refresh {
        ctl.refresh_costs().await?;
    }
    let rules = PriceRules::load(&ctl.home.root.join("config.yaml"))?;
    if a.all_users || a.since.is_some() {
        let now = chrono::Utc::now();
        let since = a.since.as_deref().map(|s| costs::parse_since(s, now)).transpose().map_err(|e| anyhow!("--since {e}"))?;
        let lines = costs::team_costs(&ctl.store, since.as_ref(), None).await?;
        return print_team(&lines, since.as_ref(), a.json);
    }
    let lines = ctl.store.cost_report().await?;
    // Terminated clusters too: the report covers every cluster the ledger has.
    let mut clusters: BTreeMap<String, ClusterRow> = BTreeMap::new();
    for l in &lines {
        if let Some(c) = ctl.store.cluster_by_id(&l.cluster_id).await? {
            clusters.insert(l.cluster_id.clone(), c);
        }
    }
    if a.json {
        let rows: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                let custom = clusters.get(&l.cluster_id).and_then(|c| custom_mark(&rules, c));
                serde_json::json!({
                    "name": l.name, "launched": l.created_at, "status": l.status, "nodes": l.num_nodes,
                    "price_per_hour": l.price_per_hour, "custom_price": custom,
                    "metered_seconds": l.metered_seconds, "usd": l.usd,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["NAME", "LAUNCHED", "STATUS", "NODES", "$/HOUR/NODE (PINNED)", "METERED", "COST"]);
    let mut total = 0.0;
    let mut any_custom = false;
    for l in &lines {
        total += l.usd;
        let custom = clusters.get(&l.cluster_id).and_then(|c| custom_mark(&rules, c));
        any_custom |= custom.is_some();
        t.add_row([
            l.name.clone(),
            l.created_at.get(..19).unwrap_or(&l.created_at).replace('T', " "),
            l.status.clone(),
            l.num_nodes.to_string(),
            format!("{:.2}{}", l.price_per_hour, if custom.is_some() { " custom" } else { "" }),
            super::cluster::fmt_secs(l.metered_seconds),
            format!("$ {:.4}", l.usd),
        ]);
    }
    println!("{t}");
    println!("Total: $ {total:.4} (agent-metered at the price pinned at launch)");
    if any_custom {
        println!("custom: your price (config.yaml `prices:`), not the list price");
    }
    Ok(())
}

async fn from_server(a: &CostReportArgs, url: &str) -> Result<()> {
    let home = skycat_controller::home::Home::from_env();
    let server = super::server_client::Target::resolve(&home.root, Some(url))?.client()?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", s.clone()));
    }
    if a.all_users {
        q.push(("all_users", "true".into()));
    }
    let v = server.call(server.get("/v1/costs").query(&q)).await?;
    let lines: Vec<TeamCostLine> = serde_json::from_value(v["lines"].clone()).map_err(|e| anyhow!("unexpected answer from {url}: {e}"))?;
    let since = v["since"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&chrono::Utc));
    print_team(&lines, since.as_ref(), a.json)
}

fn print_team(lines: &[TeamCostLine], since: Option<&chrono::DateTime<chrono::Utc>>, json: bool) -> Result<()> {
    let mut by_user: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_cloud: BTreeMap<&str, f64> = BTreeMap::new();
    for l in lines {
        *by_user.entry(l.user.as_str()).or_default() += l.usd;
        *by_cloud.entry(l.cloud.as_str()).or_default() += l.usd;
    }
    let total = lines.iter().fold(0.0, |t, l| t + l.usd);
    if json {
        let v = serde_json::json!({
            "since": since.map(costs::ledger_ts),
            "lines": lines,
            "per_user": by_user,
            "per_cloud": by_cloud,
            "total_usd": total,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["USER", "CLUSTER", "CLOUD", "INFRA", "INSTANCE", "$/HOUR/NODE (PINNED)", "METERED", "COST"]);
    for l in lines {
        t.add_row([
            l.user.clone(),
            l.cluster.clone(),
            l.cloud.clone(),
            l.infra.clone(),
            l.instance_type.clone().unwrap_or_else(|| "-".into()),
            format!("{:.2}", l.price_per_hour),
            super::cluster::fmt_secs(l.metered_seconds),
            format!("$ {:.4}", l.usd),
        ]);
    }
    println!("{t}");
    let sum = |m: &BTreeMap<&str, f64>| m.iter().map(|(k, v)| format!("{k} $ {v:.4}")).collect::<Vec<_>>().join(", ");
    println!("Per user: {}", if by_user.is_empty() { "-".into() } else { sum(&by_user) });
    println!("Per cloud: {}", if by_cloud.is_empty() { "-".into() } else { sum(&by_cloud) });
    let from = since.map(|s| format!(" since {}", s.format("%Y-%m-%d %H:%M UTC"))).unwrap_or_default();
    println!("Total{from}: $ {total:.4} (agent-metered at the price pinned at launch)");
    Ok(())
}
