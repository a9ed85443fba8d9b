//! `skycat show-gpus --infra k8s[/<context>]`: the GPUs of Kubernetes clusters as they are now,
//! per context and accelerator: devices per node, in total and free (allocatable minus what
//! Running and Pending pods request), and nodes. Free is `?` where listing pods is forbidden.

use anyhow::{bail, Result};
use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use skycat_controller::backend::kubernetes::Kubernetes;

use super::show_gpus::{parse_accelerator_arg, ShowGpusArgs};

#[derive(Serialize)]
struct Row {
    context: String,
    accelerator: String,
    per_node: f64,
    total: f64,
    /// `null` when pods could not be listed.
    free: Option<f64>,
    nodes: usize,
    ready_nodes: usize,
}

/// `k8s`, `kubernetes`, `k8s/<ctx>` → the context asked for (None: every one).
fn context_of(infra: &str) -> Result<Option<String>> {
    let (cloud, ctx) = match infra.split_once('/') {
        Some((c, x)) => (c, Some(x.to_string()).filter(|x| !x.is_empty())),
        None => (infra, None),
    };
    if !matches!(cloud.to_ascii_lowercase().as_str(), "k8s" | "kubernetes") {
        bail!("--infra {infra}: show-gpus reads live capacity only from Kubernetes (k8s or k8s/<context>); other clouds' prices come from the catalog (--cloud)");
    }
    Ok(ctx)
}

pub async fn run(args: ShowGpusArgs) -> Result<()> {
    let infra = args.infra.clone().unwrap_or_default();
    let only = context_of(&infra)?;
    let wanted = match &args.accelerator {
        Some(a) => {
            let (name, count) = parse_accelerator_arg(a)?;
            let canonical = skycat_catalog::accelerators::canonicalize(&name, None).map(|i| i.name).unwrap_or(name);
            Some((canonical, count))
        }
        None => None,
    };
    let ctl = super::cluster::controller().await?;
    let k8s = Kubernetes::new(ctl.backend_context());
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for result in k8s.gpu_capacity(only.as_deref()).await? {
        match result {
            Ok(caps) => rows.extend(caps.into_iter().map(|c| Row {
                context: c.context,
                accelerator: c.accelerator,
                per_node: c.per_node,
                total: c.total,
                free: c.free,
                nodes: c.nodes,
                ready_nodes: c.ready_nodes,
            })),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some((name, count)) = &wanted {
        rows.retain(|r| r.accelerator.eq_ignore_ascii_case(name) && count.is_none_or(|c| r.per_node >= c));
    }
    for e in &errors {
        eprintln!("warning: {e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        if !errors.is_empty() {
            bail!("no Kubernetes context could be read");
        }
        println!("No GPUs found in {}.", only.map(|c| format!("context {c}")).unwrap_or_else(|| "any Kubernetes context".into()));
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(["CONTEXT", "GPU", "PER NODE", "TOTAL", "FREE", "NODES"]);
    let n = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") };
    for r in &rows {
        let nodes = if r.ready_nodes == r.nodes { r.nodes.to_string() } else { format!("{} ({} ready)", r.nodes, r.ready_nodes) };
        t.add_row([r.context.clone(), r.accelerator.clone(), n(r.per_node), n(r.total), r.free.map(n).unwrap_or_else(|| "?".into()), nodes]);
    }
    println!("{t}");
    if rows.iter().any(|r| r.free.is_none()) {
        println!("? = free count unknown: this account may not list pods in that context.");
    }
    Ok(())
}
