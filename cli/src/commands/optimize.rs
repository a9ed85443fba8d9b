//! `skycat optimize TASK.yaml`: the cheapest placement of a SkyPilot task (or a pipeline / DAG /
//! fleet request), printed the way `sky launch` prints its optimizer table.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use comfy_table::{presets::NOTHING, Table};
use skycat_optimizer::{
    cloud_of_url, optimize, BlockedResource, DagPlan, DataInput, EgressTable, FleetPlan, Location, Minimize, OfferIndex,
    OptimizeRequest, OptimizeResponse, Placement, Plan, PlanError, PlanOptions, TaskSpec,
};

use skycat_catalog::OfferFilter;

use super::{custom_price, load_catalog_priced};

#[derive(Debug, clap::Args)]
pub struct OptimizeArgs {
    /// A SkyPilot task YAML (or a multi-document pipeline, or a `kind: dag|fleet` request).
    pub task: PathBuf,
    /// What to minimize: `cost`, `time`, or `expected-cost` (cost plus the restart overhead spot
    /// interruptions are expected to add; docs/expected-cost.md).
    #[arg(long, default_value = "cost", value_parser = parse_minimize)]
    pub minimize: Minimize,
    /// Under `--minimize expected-cost`: hours of the whole cluster one spot interruption costs
    /// (relaunch plus work lost since the last checkpoint).
    #[arg(long, value_name = "HOURS", default_value_t = skycat_optimizer::interruption::DEFAULT_RESTART_OVERHEAD_HOURS)]
    pub restart_overhead: f64,
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
    /// Data the task reads, given instead of looked up: `s3://bucket/data@us-east-1=500` (URL,
    /// optional region, GB) or `aws/us-east-1=500`. Repeatable; replaces the lookup of that URL.
    /// Each placement is charged moving the data there.
    #[arg(long = "input", value_name = "URL[@REGION]=GB")]
    pub inputs: Vec<String>,
    /// Do not contact the task's buckets for their region and size: `file_mounts` buckets are
    /// then not priced, `inputs:` entries count with an unknown region.
    #[arg(long)]
    pub no_lookup: bool,
    /// Price cap, USD per hour per node (sets `resources.max_hourly_cost`; effective prices).
    #[arg(long, value_parser = crate::commands::task_args::parse_max_hourly_cost)]
    pub max_hourly_cost: Option<f64>,
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
    load_index_filtered(&OfferFilter::all())
}

/// [`load_index`] over the rows `filter` keeps (catalog and pools alike).
pub fn load_index_filtered(filter: &OfferFilter) -> Result<OfferIndex> {
    let (_, catalog) = load_catalog_priced(filter)?;
    let mut offers = catalog.into_offers();
    offers.extend(skycat_controller::pools_as_offers().into_iter().filter(|o| filter.keeps(o)));
    Ok(OfferIndex::from_offers(offers))
}

/// Answers `req` over only the catalog rows a single task can use (see
/// [`skycat_optimizer::offer_filter`]): most of the catalog is never turned into offers. A
/// request that fails there is asked again over every row, so that its explanation is the
/// whole catalog's.
pub fn optimize_loading(
    req: &OptimizeRequest,
    egress: &EgressTable,
    opts: &PlanOptions,
) -> Result<std::result::Result<OptimizeResponse, PlanError>> {
    let filter = match req {
        OptimizeRequest::Task(t) => skycat_optimizer::offer_filter(t).unwrap_or_default(),
        _ => OfferFilter::all(),
    };
    if filter.is_all() {
        return Ok(optimize(req, &load_index()?, egress, opts));
    }
    let first = optimize(req, &load_index_filtered(&filter)?, egress, &PlanOptions { filtered_rows: true, ..opts.clone() });
    if first.is_ok() {
        return Ok(first);
    }
    Ok(optimize(req, &load_index()?, egress, opts))
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

/// A size in GB: whole above 100, else with enough decimals to show a few MB.
fn gb(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// The list price per node of a placement whose price the user's rules set.
fn list_of(p: &Placement) -> Option<f64> {
    custom_price(&p.cloud, &p.instance_type, &p.region, p.zone.as_deref(), p.use_spot).and_then(|c| c.list_for(p.use_spot))
}

/// `$/HOUR` of a placement: custom prices say so, with the list price (for the whole cluster).
fn hour_cell(p: &Placement) -> String {
    match list_of(p) {
        Some(l) => format!("{} custom (list {})", money(p.hourly_total), money(l * p.num_nodes as f64)),
        None => money(p.hourly_total),
    }
}

/// Every custom-priced placement of a response: what `--json` adds as `custom_prices`.
fn custom_prices(resp: &OptimizeResponse) -> Vec<serde_json::Value> {
    let placements: Vec<&Placement> = match resp {
        OptimizeResponse::Task(p) => std::iter::once(&p.chosen).chain(&p.per_cloud_cheapest).chain(&p.failover).collect(),
        OptimizeResponse::Dag(p) => p.tasks.iter().map(|t| &t.placement).collect(),
        OptimizeResponse::Fleet(p) => p.allocations.iter().map(|a| &a.placement).collect(),
    };
    let mut out: Vec<serde_json::Value> = Vec::new();
    for p in placements {
        let Some(c) = custom_price(&p.cloud, &p.instance_type, &p.region, p.zone.as_deref(), p.use_spot) else { continue };
        let v = serde_json::json!({
            "cloud": p.cloud, "instance_type": p.instance_type, "region": p.region, "zone": p.zone,
            "use_spot": p.use_spot, "hourly_price": p.hourly_price, "list_hourly_price": c.list_for(p.use_spot),
            "rule": c.rule,
        });
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn same(a: &Placement, b: &Placement) -> bool {
    a.cloud == b.cloud && a.region == b.region && a.zone == b.zone && a.instance_type == b.instance_type && a.use_spot == b.use_spot
}

/// SkyPilot's columns; with data inputs, also each placement's egress and total (compute for the
/// estimated hours + egress), which is what the order follows.
fn placement_table(rows: &[Placement], chosen: &Placement, egress: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    let mut header = vec!["CLOUD", "INSTANCE", "vCPUs", "Mem(GB)", "ACCELERATORS", "REGION/ZONE", "$/HOUR"];
    // Spot interruption bands, when the catalog has any for these rows; expected cost, under
    // `--minimize expected-cost`.
    let bands = rows.iter().any(|p| p.spot_interruption.is_some());
    let expected = rows.iter().any(|p| p.expected_cost.is_some());
    if bands {
        header.push("INTERRUPTION");
    }
    if egress {
        header.extend(["EGRESS($)", "TOTAL($)"]);
    }
    if expected {
        header.push("EXPECTED($)");
    }
    header.push("CHOSEN");
    t.set_header(header);
    for p in rows {
        let instance = if p.use_spot { format!("{}[Spot]", p.instance_type) } else { p.instance_type.clone() };
        let mut row = vec![
            p.cloud.clone(),
            instance,
            num(p.vcpus),
            num(p.memory_gib),
            p.accelerator_label(),
            p.location(),
            hour_cell(p),
        ];
        if bands {
            row.push(p.spot_interruption.map_or_else(|| "-".into(), |b| b.label().to_string()));
        }
        if egress {
            row.extend([money(p.egress_cost), money(p.total_cost)]);
        }
        if expected {
            row.push(p.expected_cost.map_or_else(|| "-".into(), money));
        }
        row.push(if same(p, chosen) { "✔".into() } else { String::new() });
        t.add_row(row);
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
        Minimize::ExpectedCost => "minimizing expected cost (spot restart overhead included)",
    };
    let _ = writeln!(out, "== Optimizer ==");
    let _ = writeln!(out, "Target: {target}");
    let egress = !plan.inputs.is_empty();
    if egress {
        let _ = writeln!(
            out,
            "Estimated cost: ${:.2} / hour; ${:.2} for {} h (compute ${:.2} + egress ${:.2})",
            plan.hourly_total,
            plan.total_cost,
            plan.chosen.hours,
            plan.total_cost - plan.egress_cost,
            plan.egress_cost
        );
        let mut t = Table::new();
        t.load_preset(NOTHING);
        t.set_header(["INPUT", "LOCATION", "GB", "$/GB TO CHOSEN", "EGRESS($)"]);
        for i in &plan.inputs {
            t.add_row([
                i.name.clone().unwrap_or_else(|| "-".into()),
                i.location.label(),
                gb(i.size_gb),
                format!("{:.4}", i.usd_per_gb),
                money(i.cost),
            ]);
        }
        let _ = writeln!(out, "Data inputs:\n{t}");
    } else {
        let _ = writeln!(
            out,
            "Estimated cost: ${:.2} / hour; ${:.2} for {} h",
            plan.hourly_total, plan.total_cost, plan.chosen.hours
        );
    }
    for n in &plan.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Considered resources ({nodes}), cheapest per cloud:");
    let _ = writeln!(out, "{}", placement_table(&plan.per_cloud_cheapest, &plan.chosen, egress));
    let shown = if failover_rows == 0 { plan.failover.len() } else { failover_rows.min(plan.failover.len()) };
    let _ = writeln!(out);
    let _ = writeln!(out, "Failover order ({} of {} feasible placements):", shown, plan.feasible_count);
    let _ = writeln!(out, "{}", placement_table(&plan.failover[..shown], &plan.chosen, egress));
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
            hour_cell(pl),
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
            hour_cell(pl),
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
    let mut req = OptimizeRequest::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", args.task.display()))?;
    if let Some(cap) = args.max_hourly_cost {
        match &mut req {
            OptimizeRequest::Task(t) => crate::commands::task_args::set_max_hourly_cost(t, cap),
            _ => bail!("--max-hourly-cost applies to a single task; a DAG or fleet states its own limits"),
        }
    }
    let egress = match &args.egress {
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            EgressTable::from_json(&s).with_context(|| format!("{}: not an egress table", p.display()))?
        }
        None => EgressTable::shipped(),
    };
    let given: Vec<DataInput> =
        args.inputs.iter().map(|s| DataInput::parse(s).map_err(|e| anyhow!("--input {e}"))).collect::<Result<_>>()?;
    let inputs = match &req {
        OptimizeRequest::Task(t) => data_inputs(t, &given, !args.no_lookup),
        _ => {
            if !given.is_empty() {
                bail!("--input applies to a single task; a DAG names its inputs in its `inputs:`");
            }
            Vec::new()
        }
    };
    let opts = PlanOptions {
        minimize: args.minimize,
        hours: args.hours,
        blocked: args.blocked.iter().map(|b| parse_block(b)).collect::<Result<_>>()?,
        max_failover: if args.failover == 0 { 0 } else { 100.max(args.failover) },
        inputs,
        restart_overhead_hours: args.restart_overhead,
        ..PlanOptions::default()
    };
    let resp = optimize_loading(&req, &egress, &opts)?.map_err(|e| anyhow!("{}: {}", args.task.display(), explain(e)))?;
    if args.json {
        let mut v = serde_json::to_value(&resp)?;
        let custom = custom_prices(&resp);
        if let (Some(obj), false) = (v.as_object_mut(), custom.is_empty()) {
            obj.insert("custom_prices".into(), serde_json::Value::Array(custom));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match &resp {
        OptimizeResponse::Task(p) => print!("{}", render_plan_table_with(p, args.failover)),
        OptimizeResponse::Dag(p) => print!("{}", render_dag(p)),
        OptimizeResponse::Fleet(p) => print!("{}", render_fleet(p)),
    }
    Ok(())
}

/// How long one bucket's lookup (region and listing) may take before it is left out.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The bucket URLs a task's `file_mounts` read (`/dst: s3://…`, or `{source: s3://…}`), in order.
fn mounted_buckets(task: &TaskSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in task.file_mounts.iter().flat_map(|m| m.values()) {
        let url = match v {
            serde_json::Value::String(s) => Some(s.as_str()),
            serde_json::Value::Object(o) => o.get("source").and_then(|s| s.as_str()),
            _ => None,
        };
        if let Some(u) = url.map(str::trim).filter(|u| cloud_of_url(u).is_some()) {
            if !out.iter().any(|o| o == u) {
                out.push(u.to_string());
            }
        }
    }
    out
}

/// The data inputs a single-task plan charges: `given` (`--input`), then the task's `inputs:`
/// and `file_mounts` buckets, each located (and, for a mount, sized) by a lookup
/// ([`skycat_objects::describe`], credentials from the environment). A lookup that fails is one
/// warning line on stderr naming the bucket and why: a mount is then not priced, an `inputs:`
/// entry counts with its region unknown (another region of its cloud).
pub fn data_inputs(task: &TaskSpec, given: &[DataInput], lookup: bool) -> Vec<DataInput> {
    let mut out = given.to_vec();
    let known = |out: &[DataInput], url: &str| out.iter().any(|d| d.name.as_deref() == Some(url));
    // (URL, size from `inputs:`).
    let mut todo: Vec<(String, Option<f64>)> = Vec::new();
    for (url, gb) in task.inputs.iter().flatten() {
        if cloud_of_url(url).is_some() && !known(&out, url) {
            todo.push((url.clone(), Some(*gb)));
        }
    }
    for url in mounted_buckets(task) {
        if !known(&out, &url) && !todo.iter().any(|(u, _)| *u == url) {
            todo.push((url, None));
        }
    }
    if todo.is_empty() {
        return out;
    }
    if !lookup {
        for (url, size) in &todo {
            if size.is_none() {
                eprintln!("warning: {url}: not priced (--no-lookup); give --input {url}@REGION=GB");
            }
        }
        return out;
    }
    let env = std::sync::Arc::new(skycat_objects::Env::from_process());
    let urls: Vec<String> = todo.iter().map(|(u, _)| u.clone()).collect();
    let n = todo.len();
    let found = run_async(async move {
        let mut set = tokio::task::JoinSet::new();
        for (i, url) in urls.iter().enumerate() {
            let (url, env) = (url.clone(), env.clone());
            set.spawn(async move { (i, look_up(&url, &env).await) });
        }
        let mut found: Vec<Result<skycat_objects::describe::BucketInfo, String>> =
            urls.iter().map(|_| Err("the lookup did not finish".to_string())).collect();
        while let Some(Ok((i, r))) = set.join_next().await {
            found[i] = r;
        }
        found
    })
    // No runtime or a panicked lookup: every bucket goes unpriced, with the reason.
    .unwrap_or_else(|why| vec![Err(why); n]);
    for ((url, size), info) in todo.into_iter().zip(found) {
        let cloud = cloud_of_url(&url).unwrap_or_default().to_string();
        match (info, size) {
            (Ok(info), size) => out.push(DataInput {
                size_gb: size.unwrap_or_else(|| info.size_gb()),
                location: Location { cloud, region: info.region },
                name: Some(url),
            }),
            (Err(why), Some(_)) => {
                eprintln!("warning: {url}: region not found ({why}); priced as another region of {cloud}")
            }
            (Err(why), None) => eprintln!("warning: {url}: not priced, size and region not found ({why})"),
        }
    }
    out
}

/// One bucket's region and size, or why not (one line, no credential).
async fn look_up(url: &str, env: &skycat_objects::Env) -> std::result::Result<skycat_objects::describe::BucketInfo, String> {
    let src = skycat_objects::Source::parse(url).map_err(|e| e.to_string())?;
    match tokio::time::timeout(LOOKUP_TIMEOUT, skycat_objects::describe::describe(&src, env)).await {
        Ok(r) => r.map_err(|e| env.redactor().apply(&e.to_string())),
        Err(_) => Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
    }
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own: callable from sync
/// code whether or not a runtime is running on this thread. A runtime that cannot start or a
/// panic in `f` is an error, not a crash.
fn run_async<F: std::future::Future + Send>(f: F) -> std::result::Result<F::Output, String>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(f))
        })
        .join()
    })
    .map_err(|_| "the bucket lookup failed unexpectedly".to_string())?
    .map_err(|e| format!("cannot start the bucket lookups: {e}"))
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
