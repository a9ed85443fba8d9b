//! `skycat optimize TASK.yaml`: the cheapest placement of a SkyPilot task (or a pipeline / DAG /
//! fleet request), printed the way `sky launch` prints its optimizer table.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use comfy_table::{presets::NOTHING, Table};
use skycat_optimizer::{
    optimize, BlockedResource, DagPlan, EgressTable, FleetPlan, Minimize, OfferIndex, OptimizeRequest, OptimizeResponse,
    Placement, Plan, PlanError, PlanOptions,
};

use super::load_catalog;

#[derive(Debug, clap::Args)]
pub struct OptimizeArgs {
    /// A SkyPilot task YAML (or a multi-document pipeline, or a `kind: dag|fleet` request).
    pub task: PathBuf,
    /// What to minimize.
    #[arg(long, default_value = "cost", value_parser = parse_minimize)]
    pub minimize: Minimize,
    /// Estimated run time in hours, for the total cost.
    #[arg(long, default_value_t = 1.0)]
    pub hours: f64,
    /// Exclude a cloud, region or zone: `aws`, `aws/us-east-1`, `gcp/us-central1/us-central1-a`.
    #[arg(long = "block", value_name = "CLOUD[/REGION[/ZONE]]")]
    pub blocked: Vec<String>,
    /// How many failover entries to print (0 = all; JSON carries up to 100, or all with 0).
    #[arg(long, default_value_t = 10)]
    pub failover: usize,
    /// Egress price table (JSON, the format of catalog-data/egress.json); default: the shipped one.
    #[arg(long)]
    pub egress: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_minimize(s: &str) -> std::result::Result<Minimize, String> {
    s.parse()
}

pub fn parse_block(raw: &str) -> Result<BlockedResource> {
    let parts: Vec<&str> = raw.split('/').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        bail!("--block {raw:?}: expected CLOUD[/REGION[/ZONE]]");
    }
    Ok(BlockedResource {
        cloud: parts[0].to_ascii_lowercase(),
        region: parts.get(1).map(|s| s.to_string()),
        zone: parts.get(2).map(|s| s.to_string()),
    })
}

/// The offer index the CLI plans over: the catalog (embedded default overridden by the user's
/// catalogs) plus the SSH node pools, so `skycat optimize` and `skycat launch --dryrun` agree.
pub fn load_index() -> Result<OfferIndex> {
    let (_, catalog) = load_catalog()?;
    let mut offers = catalog.into_offers();
    offers.extend(skycat_controller::pools_as_offers());
    Ok(OfferIndex::build(&offers))
}

/// Plans one task over `index` (what `skycat launch --dryrun` calls too).
#[allow(dead_code)] // public for `skycat launch --dryrun`
pub fn plan(task: &skycat_optimizer::TaskSpec, index: &OfferIndex, opts: &PlanOptions) -> Result<Plan> {
    skycat_optimizer::plan(task, index, opts).map_err(explain)
}

/// One readable line for a plan error.
pub fn explain(e: PlanError) -> anyhow::Error {
    match e {
        PlanError::Infeasible { reason, cut_by, .. } => anyhow!("infeasible ({cut_by}): {reason}"),
        other => anyhow!("{other}"),
    }
}

fn money(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

fn same(a: &Placement, b: &Placement) -> bool {
    a.cloud == b.cloud && a.region == b.region && a.zone == b.zone && a.instance_type == b.instance_type && a.use_spot == b.use_spot
}

fn placement_table(rows: &[Placement], chosen: &Placement) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["CLOUD", "INSTANCE", "vCPUs", "Mem(GB)", "ACCELERATORS", "REGION/ZONE", "$/HOUR", "CHOSEN"]);
    for p in rows {
        let instance = if p.use_spot { format!("{}[Spot]", p.instance_type) } else { p.instance_type.clone() };
        t.add_row([
            p.cloud.clone(),
            instance,
            num(p.vcpus),
            num(p.memory_gib),
            p.accelerator_label(),
            p.location(),
            money(p.hourly_total),
            if same(p, chosen) { "✔".into() } else { String::new() },
        ]);
    }
    t
}

/// SkyPilot-style table of a plan: the cheapest option per cloud, then the failover order
/// (`failover_rows` entries; 0 = all the plan carries).
pub fn render_plan_table_with(plan: &Plan, failover_rows: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let nodes = if plan.num_nodes == 1 { "1 node".to_string() } else { format!("{} nodes", plan.num_nodes) };
    let target = match plan.minimize {
        Minimize::Cost => "minimizing cost",
        Minimize::Time => "minimizing time",
    };
    let _ = writeln!(out, "== Optimizer ==");
    let _ = writeln!(out, "Target: {target}");
    let _ = writeln!(
        out,
        "Estimated cost: ${:.2} / hour; ${:.2} for {} h",
        plan.hourly_total, plan.total_cost, plan.chosen.hours
    );
    for n in &plan.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Considered resources ({nodes}), cheapest per cloud:");
    let _ = writeln!(out, "{}", placement_table(&plan.per_cloud_cheapest, &plan.chosen));
    let shown = if failover_rows == 0 { plan.failover.len() } else { failover_rows.min(plan.failover.len()) };
    let _ = writeln!(out);
    let _ = writeln!(out, "Failover order ({} of {} feasible placements):", shown, plan.feasible_count);
    let _ = writeln!(out, "{}", placement_table(&plan.failover[..shown], &plan.chosen));
    out
}

/// [`render_plan_table_with`] showing the first 10 failover entries.
#[allow(dead_code)] // public for `skycat launch --dryrun`
pub fn render_plan_table(plan: &Plan) -> String {
    render_plan_table_with(plan, 10)
}

fn render_dag(p: &DagPlan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["TASK", "CLOUD", "INSTANCE", "ACCELERATORS", "REGION/ZONE", "$/HOUR", "HOURS", "START", "COST ($)"]);
    for task in &p.tasks {
        let pl = &task.placement;
        t.add_row([
            task.name.clone(),
            pl.cloud.clone(),
            if pl.use_spot { format!("{}[Spot]", pl.instance_type) } else { pl.instance_type.clone() },
            pl.accelerator_label(),
            pl.location(),
            money(pl.hourly_total),
            format!("{:.2}", task.hours),
            format!("{:.2}", task.start_hours),
            money(task.compute_cost),
        ]);
    }
    let _ = writeln!(out, "{t}");
    if p.transfers.iter().any(|x| x.gb > 0.0) {
        let mut e = Table::new();
        e.load_preset(NOTHING);
        e.set_header(["FROM", "TO", "GB", "$/GB", "COST ($)", "HOURS"]);
        for x in p.transfers.iter().filter(|x| x.gb > 0.0) {
            e.add_row([x.from.clone(), x.to.clone(), format!("{:.0}", x.gb), format!("{:.4}", x.usd_per_gb), money(x.cost), format!("{:.2}", x.hours)]);
        }
        let _ = writeln!(out, "\nData transfers:\n{e}");
    }
    let _ = writeln!(
        out,
        "\nTotal: ${:.2} (compute ${:.2} + egress ${:.2}); makespan {:.2} h; solved by {} in {:.1} ms ({} variables).",
        p.total_cost, p.compute_cost, p.egress_cost, p.makespan_hours, p.solver, p.solve_ms, p.variables
    );
    for w in &p.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn render_fleet(p: &FleetPlan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["CLOUD", "INSTANCE", "ACCELERATORS", "REGION/ZONE", "COUNT", "UNITS", "$/HOUR"]);
    for a in &p.allocations {
        let pl = &a.placement;
        t.add_row([
            pl.cloud.clone(),
            if pl.use_spot { format!("{}[Spot]", pl.instance_type) } else { pl.instance_type.clone() },
            pl.accelerator_label(),
            pl.location(),
            a.instances.to_string(),
            format!("{:.0}", a.units),
            money(pl.hourly_total),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "\n{:.0} {} (target {:.0}, {:.0} on demand) for ${:.2}/h; ${:.2} for {} h; {} pools, solved by {} in {:.1} ms.",
        p.total_units, p.unit, p.target, p.on_demand_units, p.hourly_cost, p.total_cost, p.hours, p.pools_considered, p.solver, p.solve_ms
    );
    out
}

pub fn run(args: OptimizeArgs) -> Result<()> {
    if !(args.hours.is_finite() && args.hours > 0.0) {
        bail!("--hours must be a positive number of hours");
    }
    let text = std::fs::read_to_string(&args.task).with_context(|| format!("cannot read {}", args.task.display()))?;
    let req = OptimizeRequest::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", args.task.display()))?;
    let egress = match &args.egress {
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            EgressTable::from_json(&s).with_context(|| format!("{}: not an egress table", p.display()))?
        }
        None => EgressTable::shipped(),
    };
    let opts = PlanOptions {
        minimize: args.minimize,
        hours: args.hours,
        blocked: args.blocked.iter().map(|b| parse_block(b)).collect::<Result<_>>()?,
        max_failover: if args.failover == 0 { 0 } else { 100.max(args.failover) },
        ..PlanOptions::default()
    };
    let index = load_index()?;
    let resp = optimize(&req, &index, &egress, &opts).map_err(|e| anyhow!("{}: {}", args.task.display(), explain(e)))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    match &resp {
        OptimizeResponse::Task(p) => print!("{}", render_plan_table_with(p, args.failover)),
        OptimizeResponse::Dag(p) => print!("{}", render_dag(p)),
        OptimizeResponse::Fleet(p) => print!("{}", render_fleet(p)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_arguments() {
        let b = parse_block("gcp/us-central1/us-central1-a").unwrap();
        assert_eq!(b.cloud, "gcp");
        assert_eq!(b.zone.as_deref(), Some("us-central1-a"));
        assert!(parse_block("aws//x").is_err());
        assert!(parse_block("a/b/c/d").is_err());
    }
}
