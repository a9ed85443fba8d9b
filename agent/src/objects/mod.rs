//! `skycat-agent objects`: the node side of SkyPilot's bucket `file_mounts`.
//!
//! * `copy SOURCE DEST` (`mode: COPY`): downloads the objects with the `object_store` crate,
//!   concurrently, streamed to temp files that are renamed into place;
//! * `mount SOURCE DEST [--cached]` (`mode: MOUNT` / `MOUNT_CACHED`): `rclone mount` over FUSE;
//! * `unmount DEST`.
//!
//! SOURCE is `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `r2://bucket[/prefix]` or
//! `https://<account>.blob.core.windows.net/<container>[/prefix]`. Credentials come only from the
//! environment (the process's, plus `KEY=VALUE` lines on stdin with `--env-stdin`): never from
//! argv, never logged, and their values are redacted from every error message. The variables
//! are listed in `stores.rs` (one table per scheme).

mod copy;
mod mount;

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;
use skycat_objects::{stores, Env, Error, Source};

#[derive(Subcommand)]
pub enum ObjectsCmd {
    /// Download SOURCE to DEST (SkyPilot `mode: COPY`).
    ///
    /// A SOURCE that names one object is written to the file DEST (or into DEST if it is a
    /// folder); otherwise every object under the prefix lands under DEST with its relative path.
    /// Files that already match (same size and modification time) are skipped. Credentials and
    /// endpoints come from the environment only (AWS_*, R2_*, GOOGLE_*/STORAGE_EMULATOR_HOST,
    /// AZURE_STORAGE_*), never from arguments.
    Copy {
        /// s3://BUCKET[/PREFIX], gs://…, r2://…, https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]
        source: String,
        /// A folder (a file path when SOURCE names one object).
        dest: PathBuf,
        /// Read KEY=VALUE lines (credentials, endpoints) from stdin into this process's config.
        #[arg(long)]
        env_stdin: bool,
        /// Concurrent downloads.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
    },
    /// Mount SOURCE on DEST with rclone over FUSE (SkyPilot `mode: MOUNT`).
    ///
    /// `--cached` is `MOUNT_CACHED`: rclone's full VFS cache. Needs rclone, fusermount3 and
    /// /dev/fuse on the node. The rclone config (mode 0600) is kept in the state dir until
    /// unmount.
    Mount {
        source: String,
        dest: PathBuf,
        #[arg(long)]
        cached: bool,
        /// Read KEY=VALUE lines (credentials, endpoints) from stdin into this process's config.
        #[arg(long)]
        env_stdin: bool,
    },
    /// Unmount a folder mounted by `objects mount` (nothing to do if it is not mounted).
    Unmount {
        #[arg(required_unless_present = "all")]
        dest: Option<PathBuf>,
        /// Every folder `objects mount` mounted with this state dir.
        #[arg(long, conflicts_with = "dest")]
        all: bool,
    },
}

/// Runs one `objects` subcommand and prints its one-line summary (or one JSON document).
pub fn run(cmd: ObjectsCmd, state_root: &Path, json_out: bool) -> anyhow::Result<()> {
    let print = |v: serde_json::Value, line: String| {
        if json_out {
            println!("{v}");
        } else {
            println!("{line}");
        }
    };
    match cmd {
        ObjectsCmd::Copy { source, dest, env_stdin, jobs } => {
            let env = load_env(env_stdin)?;
            let redact = env.redactor();
            let result = (|| -> Result<copy::Stats, Error> {
                let src = Source::parse(&source)?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(4)
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Config(format!("cannot start the runtime: {e}")))?;
                rt.block_on(async {
                    let store = stores::build(&src, &env).await?;
                    copy::copy(store, &src, &dest, jobs as usize).await
                })
            })();
            let st = result.map_err(|e| anyhow::anyhow!(redact.apply(&e.to_string())))?;
            let secs = st.seconds.max(1e-9);
            print(
                json!({"source": source, "dest": dest, "files": st.files, "bytes": st.bytes,
                       "skipped": st.skipped, "seconds": st.seconds}),
                format!(
                    "copied {} file{} ({}) from {source} to {} in {:.2} s ({:.1} MB/s){}",
                    st.files,
                    if st.files == 1 { "" } else { "s" },
                    skycat_archive::human_bytes(st.bytes),
                    dest.display(),
                    st.seconds,
                    st.bytes as f64 / 1e6 / secs,
                    if st.skipped > 0 { format!("; {} already up to date", st.skipped) } else { String::new() }
                ),
            );
        }
        ObjectsCmd::Mount { source, dest, cached, env_stdin } => {
            let env = load_env(env_stdin)?;
            let redact = env.redactor();
            let m = Source::parse(&source)
                .and_then(|src| mount::mount(&src, &env, &dest, cached, state_root))
                .map_err(|e| anyhow::anyhow!(redact.apply(&e.to_string())))?;
            print(
                json!({"source": source, "dest": m.dest, "cache_mode": m.cache_mode, "log": m.log}),
                format!(
                    "mounted {source} on {} (rclone, vfs cache mode {})",
                    m.dest.display(),
                    m.cache_mode
                ),
            );
        }
        ObjectsCmd::Unmount { dest: None, .. } => {
            let done = mount::unmount_all(state_root)?;
            let shown: Vec<String> = done.iter().map(|d| d.display().to_string()).collect();
            print(json!({"unmounted": shown}), format!("unmounted {} folder(s){}", done.len(), if shown.is_empty() { String::new() } else { format!(": {}", shown.join(", ")) }));
        }
        ObjectsCmd::Unmount { dest: Some(dest), .. } => {
            let was = mount::unmount(&dest, state_root)?;
            print(
                json!({"dest": dest, "unmounted": was}),
                if was {
                    format!("unmounted {}", dest.display())
                } else {
                    format!("{} is not mounted", dest.display())
                },
            );
        }
    }
    Ok(())
}

fn load_env(from_stdin: bool) -> Result<Env, Error> {
    let mut env = Env::from_process();
    if from_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Error::EnvStdin(format!("cannot read stdin: {e}")))?;
        env.read_lines(&text)?;
    }
    Ok(env)
}
