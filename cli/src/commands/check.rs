//! `skycat check [CLOUD...]`, like `sky check`: per cloud, where credentials were found, whether
//! an authenticated read-only call accepted them, and whether the cloud can launch or only read
//! prices. The result is cached in `$SKYCAT_HOME/enabled_clouds.json` (only the clouds checked
//! are updated).

use anyhow::{bail, Context};
use chrono::Utc;
use comfy_table::{presets::NOTHING, ContentArrangement, Table};
use serde::Serialize;
use skycat_controller::enabled::{self, CloudState, ALWAYS_ENABLED, LAUNCH_BACKENDS};
use skycat_controller::home::Home;
use skycat_fetchers::check::{self as checks, CloudCheck};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Clouds to check (default: all of them): aws, azure, gcp, ibm, kubernetes (k8s), lambda, oci, runpod, scp, vast, ssh.
    pub clouds: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    cloud: String,
    /// Where credentials were found, or "none found".
    credentials: String,
    verified: bool,
    /// The read-only call made, if one was.
    call: Option<String>,
    /// The call's one-line error, if it failed.
    error: Option<String>,
    /// One line: the call's outcome, or why none was made.
    check: String,
    launch: bool,
    status: String,
    /// How to enable launching, for a launch-capable cloud that is not enabled.
    hint: Option<String>,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let (clouds, with_ssh, with_k8s) = select(&args.clouds)?;
    let home = Home::from_env();
    let mut cache = enabled::load(&home);
    if let Some(w) = cache.warning.take() {
        eprintln!("warning: {w}");
    }
    let results = if clouds.is_empty() {
        Vec::new()
    } else {
        let cx = checks::context_from_env().context("preparing the credential checks")?;
        checks::check_clouds(&cx, &clouds).await?
    };
    let now = Utc::now();
    let mut rows: Vec<Row> = Vec::new();
    for r in &results {
        let row = row_for(r);
        cache.clouds.insert(
            r.cloud.clone(),
            CloudState {
                launch: row.launch,
                status: row.status.clone(),
                credentials: row.credentials.clone(),
                verified: row.verified,
                call: row.call.clone(),
                error: row.error.clone().or_else(|| match &r.verification {
                    checks::Verification::Skipped { reason } => Some(reason.clone()),
                    _ => None,
                }),
                checked_at: now,
            },
        );
        rows.push(row);
    }
    if with_k8s {
        let ctl = super::cluster::controller().await?;
        let k = skycat_controller::backend::kubernetes::Kubernetes::new(ctl.backend_context()).check().await;
        let cloud = skycat_controller::backend::kubernetes::INFRA;
        let (launch, status) = enabled::launch_status(cloud, k.verified, k.has_credentials, None);
        let check = match (&k.error, k.verified) {
            (None, _) => "every context answered".to_string(),
            (Some(e), true) => format!("some contexts failed: {e}"),
            (Some(e), false) => e.clone(),
        };
        cache.clouds.insert(
            cloud.to_string(),
            CloudState {
                launch,
                status: status.clone(),
                credentials: k.credentials.clone(),
                verified: k.verified,
                call: k.call.clone(),
                error: k.error.clone(),
                checked_at: now,
            },
        );
        let hint = (!launch).then(|| enabled::how_to_enable(cloud));
        rows.push(Row { cloud: cloud.into(), credentials: k.credentials, verified: k.verified, call: k.call, error: k.error, check, launch, status, hint });
    }
    if with_ssh {
        rows.push(Row {
            cloud: "ssh".into(),
            credentials: "none needed (SSH node pools)".into(),
            verified: false,
            call: None,
            error: None,
            check: "no check needed".into(),
            launch: true,
            status: enabled::ENABLED.into(),
            hint: None,
        });
    }
    if !results.is_empty() || with_k8s {
        enabled::save(&home, &cache)
            .with_context(|| format!("writing {}", enabled::path(&home).display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print!("{}", table(&rows));
    let hints: Vec<String> =
        rows.iter().filter_map(|r| r.hint.as_ref().map(|h| format!("  {}: {h}", r.cloud))).collect();
    if !hints.is_empty() {
        println!("\nTo enable launching:");
        for h in hints {
            println!("{h}");
        }
    }
    if !results.is_empty() || with_k8s {
        println!("\nSaved to {}", enabled::path(&home).display());
    }
    Ok(())
}

/// The fetcher clouds to check, and whether to show `ssh` and check Kubernetes. Empty = every
/// cloud, Kubernetes and ssh.
fn select(names: &[String]) -> anyhow::Result<(Vec<String>, bool, bool)> {
    if names.is_empty() {
        return Ok((checks::known_clouds().into_iter().map(String::from).collect(), true, true));
    }
    let mut clouds = Vec::new();
    let mut with_ssh = false;
    let mut with_k8s = false;
    for n in names {
        let n = n.trim().to_ascii_lowercase();
        if ALWAYS_ENABLED.contains(&n.as_str()) {
            with_ssh = true;
        } else if n == "k8s" || n == "kubernetes" {
            with_k8s = true;
        } else if checks::known_clouds().contains(&n.as_str()) {
            if !clouds.contains(&n) {
                clouds.push(n);
            }
        } else {
            let mut known: Vec<&str> = checks::known_clouds();
            known.push("kubernetes");
            known.extend(ALWAYS_ENABLED);
            bail!("unknown cloud `{n}` (known: {})", known.join(", "));
        }
    }
    Ok((clouds, with_ssh, with_k8s))
}

fn row_for(r: &CloudCheck) -> Row {
    let verified = r.verification.is_verified();
    let (launch, status) = enabled::launch_status(&r.cloud, verified, r.has_credentials(), r.prices_only.as_deref());
    let hint = (!launch && LAUNCH_BACKENDS.contains(&r.cloud.as_str())).then(|| enabled::how_to_enable(&r.cloud));
    Row {
        cloud: r.cloud.clone(),
        credentials: r.credentials_text(),
        verified,
        call: r.verification.call().map(String::from),
        error: r.verification.error().map(String::from),
        check: r.verification.to_string(),
        launch,
        status,
        hint,
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["CLOUD", "CREDENTIALS", "API CHECK", "STATUS"]);
    for r in rows {
        t.add_row(vec![r.cloud.clone(), r.credentials.clone(), r.check.clone(), r.status.clone()]);
    }
    t.to_string() + "\n"
}
