//! Showing a run: an indicatif bar per provider on a TTY, plain log lines otherwise; the
//! summary table and the diff.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::run::{FetchEvent, FetchReport};

/// Per cloud: its bar and the rows counted so far.
type Bars = Mutex<HashMap<String, (ProgressBar, usize)>>;

pub struct Progress {
    bars: Option<(MultiProgress, Bars)>,
}

impl Progress {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Progress { bars: Some((MultiProgress::new(), Mutex::new(HashMap::new()))) }
        } else {
            Progress { bars: None }
        }
    }

    pub fn plain() -> Self {
        Progress { bars: None }
    }

    pub fn handle(&self, ev: FetchEvent) {
        match &self.bars {
            None => eprintln!("{}", log_line(&ev)),
            Some((mp, bars)) => {
                let mut bars = bars.lock().expect("progress lock");
                match ev {
                    FetchEvent::ProviderStarted { cloud, regions } => {
                        let pb = mp.add(ProgressBar::new(regions as u64));
                        pb.set_style(
                            ProgressStyle::with_template("{prefix:>7} [{bar:30}] {pos}/{len} regions {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        );
                        pb.set_prefix(cloud.clone());
                        pb.set_message("0 rows");
                        bars.insert(cloud, (pb, 0));
                    }
                    FetchEvent::RegionDone { cloud, rows, .. } => {
                        if let Some((pb, total)) = bars.get_mut(&cloud) {
                            *total += rows;
                            pb.inc(1);
                            pb.set_message(format!("{total} rows"));
                        }
                    }
                    FetchEvent::RegionFailed { cloud, region, error } => {
                        if let Some((pb, _)) = bars.get_mut(&cloud) {
                            pb.inc(1);
                            pb.println(format!("{cloud} {region}: FAILED: {error}"));
                        }
                    }
                    FetchEvent::Note { cloud, message } => {
                        let _ = mp.println(format!("{cloud}: note: {message}"));
                    }
                    FetchEvent::ProviderFinished { cloud, report } => {
                        if let Some((pb, _)) = bars.get(&cloud) {
                            pb.finish_with_message(format!(
                                "{} rows, {} failed, {:.1}s",
                                report.rows,
                                report.regions_failed.len(),
                                report.seconds
                            ));
                        } else if let Some(e) = &report.error {
                            let _ = mp.println(format!("{cloud}: FAILED: {e}"));
                        }
                    }
                }
            }
        }
    }
}

/// One log line per event (non-TTY output).
pub fn log_line(ev: &FetchEvent) -> String {
    match ev {
        FetchEvent::ProviderStarted { cloud, regions } => format!("{cloud}: fetching {regions} regions"),
        FetchEvent::RegionDone { cloud, region, rows } => format!("{cloud} {region}: {rows} rows"),
        FetchEvent::RegionFailed { cloud, region, error } => format!("{cloud} {region}: FAILED: {error}"),
        FetchEvent::Note { cloud, message } => format!("{cloud}: note: {message}"),
        FetchEvent::ProviderFinished { cloud, report } => match &report.error {
            Some(e) => format!("{cloud}: FAILED: {e}"),
            None => format!(
                "{cloud}: done: {} rows, {} regions ok, {} failed, {:.1}s",
                report.rows,
                report.regions_ok.len(),
                report.regions_failed.len(),
                report.seconds
            ),
        },
    }
}

/// The summary table: cloud, regions ok/failed, rows, seconds, stale, published.
pub fn summary_table(report: &FetchReport) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["cloud", "regions ok", "regions failed", "rows", "seconds", "stale", "published"]);
    for c in &report.clouds {
        t.add_row(vec![
            Cell::new(&c.cloud),
            Cell::new(c.regions_ok.len()),
            Cell::new(c.regions_failed.len()),
            Cell::new(c.rows),
            Cell::new(format!("{:.1}", c.seconds)),
            Cell::new(if c.stale_regions.is_empty() { "-".to_string() } else { c.stale_regions.join(",") }),
            Cell::new(match (&c.published, &c.not_published) {
                (true, _) => "yes".to_string(),
                (false, Some(why)) => format!("no: {why}"),
                (false, None) => "no".to_string(),
            }),
        ]);
    }
    t.to_string()
}

/// Per cloud: failures, drops, flags and the diff, as text lines.
pub fn details(report: &FetchReport) -> String {
    let mut out = String::new();
    for c in &report.clouds {
        for (r, e) in &c.regions_failed {
            out.push_str(&format!("{} {r}: failed: {e}\n", c.cloud));
        }
        for (r, n) in &c.dropped {
            out.push_str(&format!("{}: dropped {n} ({r})\n", c.cloud));
        }
        for f in &c.flagged {
            out.push_str(&format!("{}: flagged {f}\n", c.cloud));
        }
        if let Some(d) = &c.diff {
            if !d.types_added.is_empty() {
                out.push_str(&format!("{}: types added: {}\n", c.cloud, d.types_added.join(", ")));
            }
            if !d.types_removed.is_empty() {
                out.push_str(&format!("{}: types removed: {}\n", c.cloud, d.types_removed.join(", ")));
            }
            if d.prices_changed > 0 {
                out.push_str(&format!("{}: {} prices changed; biggest moves:\n", c.cloud, d.prices_changed));
                for m in &d.biggest_moves {
                    out.push_str(&format!(
                        "  {} {} {}: {:.4} -> {:.4} ({:+.1}%)\n",
                        m.instance_type,
                        m.location,
                        if m.spot { "spot" } else { "on-demand" },
                        m.old,
                        m.new,
                        m.change * 100.0
                    ));
                }
            }
        }
    }
    out
}
