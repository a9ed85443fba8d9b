//! `skycat fetch`: rebuild the user catalogs from the providers' own APIs.

use anyhow::Context;
use skycat_catalog::SkycatHome;
use skycat_fetchers::progress::{details, summary_table, Progress};
use skycat_fetchers::run::configured_aws_ondemand_source;
use skycat_fetchers::{run_fetch, AwsOnDemandSource, FetchOptions};
use skycat_objects::catalog_store::{catalog_files, CatalogStore, PublishOptions};

fn split_list(v: &[String]) -> Vec<String> {
    v.iter().flat_map(|s| s.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Clouds to fetch, comma separated (default: all): aws, azure, gcp, ibm, lambda, oci, runpod, scp, vast.
    #[arg(long, value_delimiter = ',')]
    pub clouds: Vec<String>,
    /// Regions to fetch, comma separated (default: `fetch.regions.<cloud>` in config.yaml, else
    /// each provider's popular set).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Fetch every region each provider lists.
    #[arg(long, conflicts_with = "regions")]
    pub all_regions: bool,
    /// Publish even when the row count dropped by more than 30%.
    #[arg(long)]
    pub force: bool,
    /// Fetch and validate, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Regions fetched at once per provider.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// AWS on-demand prices from the signed Pricing API instead of the public bulk files
    /// (or `fetch.aws.ondemand_source: pricing-api` in config.yaml).
    #[arg(long)]
    pub aws_pricing_api: bool,
    /// Then publish $SKYCAT_HOME/catalogs to this catalog store (s3://bucket/prefix, gs://,
    /// r2://, Azure) as its next version, for `skycat serve --catalog-store` replicas.
    /// Credentials and endpoints come from the environment. See docs/catalog-store.md.
    #[arg(long, conflicts_with = "dry_run")]
    pub publish: Option<String>,
    /// Versions the publish keeps in the store for readers in flight.
    #[arg(long, default_value_t = 5, requires = "publish")]
    pub publish_keep: usize,
}

pub async fn run(args: FetchArgs) -> anyhow::Result<()> {
    let home = SkycatHome::from_env().context("cannot locate the skycat home")?;
    // A bad store URL or missing credentials are seen before the fetch, not after it.
    let store = match &args.publish {
        Some(url) => Some(CatalogStore::open(url, &skycat_objects::Env::from_process()).await?),
        None => None,
    };
    let mut opts = FetchOptions::new(home.clone());
    opts.clouds = split_list(&args.clouds);
    opts.regions = split_list(&args.regions);
    opts.all_regions = args.all_regions;
    opts.force = args.force;
    opts.dry_run = args.dry_run;
    opts.concurrency = args.concurrency.max(1);
    opts.aws_ondemand_source = if args.aws_pricing_api {
        AwsOnDemandSource::PricingApi
    } else {
        configured_aws_ondemand_source(&home)?.unwrap_or_default()
    };
    let progress = Progress::auto();
    let report = run_fetch(&opts, &|ev| progress.handle(ev)).await?;
    println!("{}", summary_table(&report));
    let d = details(&report);
    if !d.is_empty() {
        print!("{d}");
    }
    println!("total {:.1}s", report.seconds);
    if let Some(store) = &store {
        if report.clouds.iter().any(|c| c.published) {
            let opts = PublishOptions { keep: args.publish_keep.max(1), ..Default::default() };
            let files = catalog_files(&home.catalogs_dir())?;
            let p = store.publish(files, &opts).await?;
            println!(
                "published version {} ({} files, id {}) to {}{}",
                p.manifest.version,
                p.manifest.files.len(),
                p.manifest.id,
                store.url(),
                if p.pruned > 0 { format!("; pruned {} old version(s)", p.pruned) } else { String::new() }
            );
            if let Some(e) = p.prune_error {
                eprintln!("warning: pruning old versions failed: {e}");
            }
        } else {
            eprintln!("nothing fetched was published locally: nothing published to {}", store.url());
        }
    }
    let bad: Vec<String> = report
        .clouds
        .iter()
        .filter(|c| c.error.is_some() || (!c.published && !opts.dry_run))
        .map(|c| format!("{}: {}", c.cloud, c.error.clone().or(c.not_published.clone()).unwrap_or_default()))
        .collect();
    if !bad.is_empty() {
        anyhow::bail!("not published: {}", bad.join("; "));
    }
    Ok(())
}
