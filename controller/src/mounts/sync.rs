//! Putting a task's file mounts on its nodes, after the agent and the workdir and before setup:
//! local sources as archives the agent unpacks (`skycat-agent unpack --to DST`), buckets read by
//! the agent itself (`skycat-agent objects copy|mount SOURCE DST --env-stdin`), with the
//! credentials as `KEY=VALUE` lines on its stdin: never in argv, never on the node's disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::storage::Placement;
use super::{file_dst_parts, FileMount, MountMode, MountSource};
use crate::home::Home;
use crate::store::Store;
use crate::agent_client::WorkdirArchive;
use crate::ssh::shell_quote;
use crate::store::NodeRow;
use crate::transport::NodeSession;

/// A mount ready to go to any number of nodes (local sources packed once).
enum Ready {
    Archive { dst_dir: String, archive: Arc<WorkdirArchive> },
    Bucket { url: String, dst: String, mode: MountMode },
}

/// The task's mounts, prepared once per launch.
pub(crate) struct PreparedMounts {
    ready: Vec<Ready>,
    env: BTreeMap<String, String>,
}

impl PreparedMounts {
    /// Packs local sources (on this machine: the CLI's) and keeps uploaded archives as they are.
    /// Storage objects (`name:`) are made and filled here, where the cluster runs decides
    /// their store and region.
    pub(crate) async fn prepare(
        mounts: &[FileMount],
        env: &BTreeMap<String, String>,
        (db, home, at): (&Store, &Home, &Placement<'_>),
    ) -> Result<Option<PreparedMounts>> {
        if mounts.is_empty() {
            return Ok(None);
        }
        let mut ready = Vec::new();
        for m in mounts {
            let what = || format!("file_mounts.{}", m.dst);
            ready.push(match &m.source {
                MountSource::Local { path } => {
                    let meta = std::fs::metadata(path).with_context(|| format!("{}: {}", what(), path.display()))?;
                    if meta.is_dir() {
                        Ready::Archive { dst_dir: m.dst.clone(), archive: Arc::new(WorkdirArchive::pack(path).await.with_context(what)?) }
                    } else {
                        let (dir, name) = file_dst_parts(&m.dst);
                        Ready::Archive { dst_dir: dir, archive: Arc::new(WorkdirArchive::pack_file(path, &name).await.with_context(what)?) }
                    }
                }
                MountSource::Uploaded { archive, file } => {
                    let dst_dir = if *file { file_dst_parts(&m.dst).0 } else { m.dst.clone() };
                    Ready::Archive { dst_dir, archive: Arc::new(WorkdirArchive::Stored(archive.clone())) }
                }
                MountSource::Bucket { url, mode } => Ready::Bucket { url: url.clone(), dst: m.dst.clone(), mode: *mode },
                MountSource::Storage { storage, mode } => {
                    let url = super::storage::ensure(db, home, storage, at, env).await.with_context(what)?;
                    Ready::Bucket { url, dst: m.dst.clone(), mode: *mode }
                }
            });
        }
        Ok(Some(PreparedMounts { ready, env: env.clone() }))
    }

    /// Puts every mount on the node behind `s`, in the order of the task's `file_mounts`.
    /// `{controller_ip}` in a credential value (an object store endpoint on the controller's
    /// machine) becomes the address the node sees the controller at, as in the server URL.
    pub(crate) async fn sync(&self, s: &dyn NodeSession, n: &NodeRow, controller_ip: Option<&str>) -> Result<()> {
        let agent = shell_quote(&n.agent_bin);
        for r in &self.ready {
            match r {
                Ready::Archive { dst_dir, archive } => {
                    let mut file = tokio::fs::File::open(archive.path())
                        .await
                        .with_context(|| format!("opening the archive {}", archive.path().display()))?;
                    let cmd = format!("{agent} unpack --state-dir {} --to {} --json", shell_quote(&n.state_dir), shell_quote(dst_dir));
                    let out = s.exec_input(&cmd, Some(&mut file)).await?;
                    if !out.ok() {
                        bail!("{}: file mount {dst_dir}: {}", s.peer(), last_line(&out.stderr_str()));
                    }
                }
                Ready::Bucket { url, dst, mode } => {
                    let verb = match mode {
                        MountMode::Copy => "copy",
                        MountMode::Mount => "mount",
                        MountMode::MountCached => "mount --cached",
                    };
                    // The cluster's state dir keeps the mount's record, so that down unmounts it.
                    let cmd = format!(
                        "{agent} objects {verb} {} {} --env-stdin --state-dir {}",
                        shell_quote(url),
                        home_path_arg(dst),
                        shell_quote(&n.state_dir)
                    );
                    let env = self.env.iter().map(|(k, v)| (k.clone(), v.replace("{controller_ip}", controller_ip.unwrap_or("127.0.0.1")))).collect();
                    let stdin = env_lines(&env)?;
                    let out = s.exec(&cmd, Some(stdin.as_bytes())).await?;
                    if !out.ok() {
                        bail!("{}: file mount {dst} from {url}: {}", s.peer(), last_line(&out.stderr_str()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A node path as a shell word: `~/x` becomes `"$HOME"/'x'` (the node's home), anything else
/// is quoted as is.
fn home_path_arg(p: &str) -> String {
    match p.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", shell_quote(rest)),
        None => shell_quote(p),
    }
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("failed")
}

/// `KEY=VALUE` lines. A multi-line value can only be a JSON document (a service-account key):
/// it is sent compacted onto one line.
fn env_lines(env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    for (k, v) in env {
        let v = if v.contains('\n') {
            let doc: serde_json::Value = serde_json::from_str(v).map_err(|_| anyhow!("{k}: a multi-line value that is not JSON cannot be passed to the node"))?;
            doc.to_string()
        } else {
            v.clone()
        };
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn home_paths_expand_on_the_node() {
        assert_eq!(super::home_path_arg("~/data set"), "\"$HOME\"/'data set'");
        assert_eq!(super::home_path_arg("/data"), super::shell_quote("/data"));
    }

    #[test]
    fn credentials_go_one_per_line_with_json_compacted() {
        let env = [("A".to_string(), "x=y".to_string()), ("K".to_string(), "{\n  \"type\": \"sa\"\n}".to_string())].into();
        assert_eq!(super::env_lines(&env).unwrap(), "A=x=y\nK={\"type\":\"sa\"}\n");
        let bad = [("B".to_string(), "two\nlines".to_string())].into();
        assert!(super::env_lines(&bad).unwrap_err().to_string().starts_with("B:"));
    }
}
