//! `skycat price-history INSTANCE_OR_GPU`: prices over the fetch history.

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use skycat_catalog::SkycatHome;
use skycat_fetchers::history::price_history;

#[derive(clap::Args, Debug)]
pub struct PriceHistoryArgs {
    /// An instance type (`g5.xlarge`) or an accelerator name (`A100`, `H100`, `nvidia-l4`…).
    pub what: String,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only this cloud.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Print the points as a JSON array.
    #[arg(long)]
    pub json: bool,
}

fn price(p: Option<f64>) -> String {
    p.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

pub fn run(args: PriceHistoryArgs) -> anyhow::Result<()> {
    let home = SkycatHome::from_env().context("cannot locate the skycat home")?;
    let points = price_history(&home, &args.what, args.cloud.as_deref(), args.region.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&points)?);
        return Ok(());
    }
    if points.is_empty() {
        anyhow::bail!(
            "no history for `{}`{} under {} (run `skycat fetch` first)",
            args.what,
            args.region.as_deref().map(|r| format!(" in {r}")).unwrap_or_default(),
            home.history_dir().display()
        );
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["fetched", "cloud", "instance type", "accelerator", "location", "on-demand $/h", "spot $/h"]);
    for p in &points {
        let acc = match &p.accelerator_name {
            Some(a) => format!("{a}:{}", p.accelerator_count),
            None => "-".into(),
        };
        let loc = match &p.zone {
            Some(z) => format!("{}/{z}", p.region),
            None => p.region.clone(),
        };
        t.add_row(vec![
            p.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            p.cloud.clone(),
            p.instance_type.clone(),
            acc,
            loc,
            price(p.price),
            price(p.spot_price),
        ]);
    }
    println!("{t}");
    Ok(())
}
