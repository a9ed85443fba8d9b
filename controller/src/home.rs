//! Where the controller keeps its files: `$SKYCAT_HOME` (default `~/.skycat`).

use std::path::{Path, PathBuf};

/// The controller's view of `$SKYCAT_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `$SKYCAT_HOME`, else `$HOME/.skycat`, else `./.skycat`.
    pub fn from_env() -> Home {
        if let Some(p) = std::env::var_os("SKYCAT_HOME").filter(|p| !p.is_empty()) {
            return Home { root: PathBuf::from(p) };
        }
        let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        Home { root: base.join(".skycat") }
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    pub fn pools_file(&self) -> PathBuf {
        self.root.join("ssh_node_pools.yaml")
    }

    /// Creates the home, owner-only (0700), if it does not exist.
    pub fn ensure(&self) -> std::io::Result<()> {
        create_private_dir(&self.root)
    }
}

/// Creates `dir` (and missing parents) with mode 0700 on Unix; an existing folder is left as is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME") {
            return Path::new(&h).join(rest);
        }
    }
    PathBuf::from(p)
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Like [`write_atomic`], for files other programs check: the file has permission bits `mode`
/// from the moment it exists (not the umask's), belongs to `owner` (uid, gid) when given and
/// different, and its bytes are on disk before the rename. The temp file's name is unique per
/// call, so threads writing the same path don't share it. `mode` and `owner` apply on Unix only.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let written = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            opts.mode(mode);
            let f = opts.open(&tmp)?;
            // The umask may have cleared bits of `mode`.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                use std::os::unix::fs::MetadataExt;
                let m = f.metadata()?;
                if m.uid() != uid || m.gid() != gid {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
                }
            }
            write_all_synced(f, bytes)?;
        }
        #[cfg(not(unix))]
        {
            let _ = (mode, owner);
            write_all_synced(opts.open(&tmp)?, bytes)?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_all_synced(mut f: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    f.write_all(bytes)?;
    f.sync_all()
}
