//! Parse an AWS bulk offer CSV with skycat's parser and report rows and MB/s.
//! usage: skycat-bench-aws-csv FILE.csv [REGION] [--no-prefilter] [--repeat N]

#[allow(dead_code)]
#[path = "../../src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../../src/providers/aws/bulk.rs"]
mod bulk;

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: skycat-bench-aws-csv FILE.csv [REGION] [--no-prefilter] [--repeat N]");
        std::process::exit(2);
    };
    let region = args.get(2).filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "us-east-1".into());
    let prefilter = !args.iter().any(|a| a == "--no-prefilter");
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64;
    let mut best = f64::INFINITY;
    let mut times = Vec::new();
    let mut rows = 0;
    let mut total = 0;
    for _ in 0..repeat {
        let t = Instant::now();
        let f = match bulk::parse_offer_csv_opts(std::path::Path::new(path), &region, path, prefilter) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        let s = t.elapsed().as_secs_f64();
        times.push(s);
        best = best.min(s);
        rows = f.rows.len();
        total = f.total_rows;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!(
        "file {path}: {:.1} MB, {total} data rows, {rows} kept; prefilter={prefilter}; {repeat} runs: best {:.3} s, median {:.3} s; {:.0} MB/s (median)",
        bytes / 1e6,
        best,
        median,
        bytes / 1e6 / median
    );
}
