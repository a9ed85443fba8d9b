//! Wall time of a full `fetch --all-regions` for AWS against a loopback replay server that
//! serves a generated bulk offer file per region (scripts/gen-aws-offer-csv.py output, with the
//! region code substituted). Used by scripts/bench-aws-csv.sh.
//!
//! usage: replay_fetch_all TEMPLATE.csv [MB_PER_REGION] [CONCURRENCY]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use skycat_catalog::SkycatHome;
use skycat_fetchers::{run_fetch, FetchOptions};
use support::{ReplayServer, Reply};

const REGIONS: &[&str] = &[
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
    "ap-southeast-5", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1",
    "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1",
    "me-central-1", "me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2",
    "us-gov-east-1", "us-gov-west-1", "us-west-1", "us-west-2",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let template = std::fs::read_to_string(args.get(1).expect("template CSV (us-east-1)")).expect("read template");
    let mb: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8.0);
    let conc: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(4);
    // Cut the template at a line boundary near the wanted size.
    let want = (mb * 1e6) as usize;
    let cut = if template.len() > want { template[..want].rfind('\n').map(|i| i + 1).unwrap_or(want) } else { template.len() };
    let template = &template[..cut];
    let mut idx = String::from("{\n  \"formatVersion\" : \"v1.0\",\n  \"regions\" : {\n");
    let mut b = ReplayServer::builder();
    let mut total = 0usize;
    for (i, r) in REGIONS.iter().enumerate() {
        let body = template.replace("\"us-east-1\"", &format!("\"{r}\""));
        total += body.len();
        b = b.get(&format!("/offers/v1.0/aws/AmazonEC2/current/{r}/index.csv"), Reply::text("text/csv", body));
        idx.push_str(&format!(
            "    \"{r}\" : {{ \"regionCode\" : \"{r}\", \"currentVersionUrl\" : \"/offers/v1.0/aws/AmazonEC2/20250912225308/{r}/index.json\" }}{}\n",
            if i + 1 < REGIONS.len() { "," } else { "" }
        ));
    }
    idx.push_str("  }\n}\n");
    let srv = b.get("/offers/v1.0/aws/AmazonEC2/current/region_index.json", Reply::json(idx)).start().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = FetchOptions::new(SkycatHome::new(dir.path()));
    o.clouds = vec!["aws".into()];
    o.all_regions = true;
    o.concurrency = conc;
    o.isolate_env = true;
    o.env_overrides.insert("SKYCAT_AWS_OFFER_URL".into(), srv.base().to_string());
    let t = Instant::now();
    let report = run_fetch(&o, &|_| {}).await.expect("fetch");
    let s = t.elapsed().as_secs_f64();
    let c = &report.clouds[0];
    println!(
        "aws --all-regions: {} regions ok, {} failed, {} rows published; {:.1} MB of offer files in {:.2} s ({:.0} MB/s end to end, concurrency {conc})",
        c.regions_ok.len(),
        c.regions_failed.len(),
        c.rows,
        total as f64 / 1e6,
        s,
        total as f64 / 1e6 / s
    );
}
