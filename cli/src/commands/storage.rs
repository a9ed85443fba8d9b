//! `skycat storage ls|delete`, like `sky storage`: the buckets skycat made for storage objects
//! (`file_mounts` entries with `name:`).

use std::io::IsTerminal;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets::NOTHING, Table};

use super::cluster::controller;

#[derive(Subcommand)]
pub enum StorageCommand {
    /// List the storage objects skycat made.
    Ls(LsArgs),
    /// Delete storage objects: every object in the bucket, then the bucket, then the record.
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct LsArgs {
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Storage object names (see `skycat storage ls`).
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Every storage object skycat made.
    #[arg(short = 'a', long, conflicts_with = "names")]
    pub all: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

pub async fn run(cmd: StorageCommand) -> Result<()> {
    let ctl = controller().await?;
    match cmd {
        StorageCommand::Ls(a) => {
            let rows = ctl.store.storage_rows().await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("No existing storage.");
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(NOTHING);
            t.set_header(["NAME", "STORE", "URL", "SOURCE", "CLUSTER", "PERSISTENT", "CREATED", "STATUS"]);
            for r in rows {
                t.add_row([
                    r.name,
                    r.store,
                    r.url,
                    if r.sources.is_empty() { "-".into() } else { r.sources.join(", ") },
                    r.cluster.unwrap_or_else(|| "-".into()),
                    if r.persistent { "yes".into() } else { "no (deleted on down)".into() },
                    r.created_at,
                    r.status,
                ]);
            }
            println!("{t}");
            Ok(())
        }
        StorageCommand::Delete(a) => {
            let names: Vec<String> = if a.all { ctl.store.storage_rows().await?.into_iter().map(|r| r.name).collect() } else { a.names };
            // Unknown names fail before anything is deleted.
            for n in &names {
                if ctl.store.storage_row(n).await?.is_none() {
                    bail!("storage {n}: no such storage object (see skycat storage ls)");
                }
            }
            if names.is_empty() {
                println!("No existing storage.");
                return Ok(());
            }
            if !a.yes {
                if !std::io::stdin().is_terminal() {
                    bail!("deleting {} would remove every object in it; pass --yes to confirm without a terminal", names.join(", "));
                }
                eprint!("Delete storage {} and every object in it? [y/N]: ", names.join(", "));
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    bail!("aborted; nothing deleted");
                }
            }
            for n in &names {
                let home = &ctl.home;
                match skycat_controller::mounts::storage::delete(&ctl.store, home, n, |k| std::env::var(k).ok()).await? {
                    Some(count) => println!("Deleted storage {n} ({count} object(s))."),
                    None => println!("Storage {n}: the bucket was already gone; record removed."),
                }
            }
            Ok(())
        }
    }
}
