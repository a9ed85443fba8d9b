//! Workdir archives that clients upload to `skycat serve` (`POST /v1/uploads`) for their managed
//! jobs: kept under `$SKYCAT_HOME/uploads/<token name>/<id>.tar`, so that a job can only name
//! (by id) an upload of its own submitter. The server streams the body here; the nodes' agents
//! unpack it, refusing entries that would land outside the workdir.

use std::path::PathBuf;

use super::Managed;
use crate::lifecycle::TaskRun;
use crate::mounts::MountSource;
use crate::store::random_hex;

/// Deletes the uploaded archives an ended job's task names (its workdir and file mounts):
/// uploads live as long as the job that may unpack them again on a recovery, no longer.
pub(crate) fn remove_archives(task: &TaskRun) {
    let mounts = task.file_mounts.iter().filter_map(|m| match &m.source {
        MountSource::Uploaded { archive, .. } => Some(archive),
        _ => None,
    });
    for p in task.workdir_archive.iter().chain(mounts) {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), "removing an ended job's upload: {e}");
            }
        }
    }
}

/// Where one owner's uploads live.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

impl Managed {
    /// The uploads of `owner` (an API token's name; empty for in-process callers).
    pub fn uploads(&self, owner: &str) -> Uploads {
        let who = if owner.is_empty() { "_" } else { owner };
        // Token names are [A-Za-z0-9._-]; anything else cannot reach here, but never let a name
        // leave the uploads folder.
        let who: String = who.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        let who = if who.starts_with('.') { format!("_{who}") } else { who };
        Uploads { dir: self.inner.ctl.home.root.join("uploads").join(who) }
    }
}

impl Uploads {
    /// A new upload: its id and the path to write it to (the folder exists, owner-only).
    pub fn create(&self) -> anyhow::Result<(String, PathBuf)> {
        crate::home::create_private_dir(&self.dir)?;
        let id = random_hex(16)?;
        Ok((id.clone(), self.dir.join(format!("{id}.tar"))))
    }

    /// The stored upload `id`, if it exists (`id` must have the shape of one).
    pub fn find(&self, id: &str) -> Option<PathBuf> {
        if !super::is_upload_id(id) {
            return None;
        }
        let p = self.dir.join(format!("{id}.tar"));
        p.is_file().then_some(p)
    }
}
