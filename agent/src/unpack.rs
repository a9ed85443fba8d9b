//! `skycat-agent unpack`: the workdir (or a file mount) arrives as a tar on stdin and is written
//! under the state dir by `skycat_archive::unpack`, which refuses entries that would land or point
//! outside the destination (see archive/src/unpack.rs).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// First components of `--dest` that would overwrite the agent's own files.
const RESERVED: [&str; 10] = [
    "config.json",
    "agent.pid",
    "agent.lock",
    "agent.sock",
    "agent.log",
    "state",
    "jobs",
    "logs",
    "secrets",
    "bin",
];

/// `<state dir>/<dest>`, for a `dest` that is relative, has no `..`, is not the state dir itself
/// and does not start with one of the agent's own files or folders.
pub fn dest_dir(root: &Path, dest: &str) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::ParentDir => bail!("--dest {dest:?} has a `..` component"),
            Component::RootDir | Component::Prefix(_) => {
                bail!("--dest {dest:?} must be relative to the state dir")
            }
        }
    }
    let Some(first) = rel.iter().next() else {
        bail!("--dest {dest:?} names the state dir itself");
    };
    if RESERVED.iter().any(|r| first == *r) {
        bail!("--dest {dest:?} would write into the agent's own {first:?}");
    }
    Ok(root.join(rel))
}

/// A file mount's folder: `to` absolute, or `~`/`~/…` under `home`; no `..` (the path written
/// is the path named), not `/`, and not inside the agent's state dir `root`.
pub fn mount_dir(root: &Path, to: &str, home: Option<PathBuf>) -> Result<PathBuf> {
    let path = match to.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let Some(home) = home else {
                bail!("--to {to:?}: HOME is not set on this node")
            };
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(to),
    };
    if !path.is_absolute() {
        bail!("--to {to:?} must be an absolute path or start with ~/");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        bail!("--to {to:?} has a `..` component");
    }
    if path.parent().is_none() {
        bail!("--to {to:?} is the root folder");
    }
    if path.starts_with(root) {
        bail!("--to {to:?} would write over the agent's state dir {}", root.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::{dest_dir, mount_dir};
    use std::path::{Path, PathBuf};

    #[test]
    fn mount_folders_are_absolute_or_home_and_spare_the_state_dir() {
        let root = Path::new("/home/u/.skycat-agent");
        let home = || Some(PathBuf::from("/home/u"));
        assert_eq!(mount_dir(root, "/data/in", home()).unwrap(), Path::new("/data/in"));
        assert_eq!(mount_dir(root, "~/ckpt", home()).unwrap(), Path::new("/home/u/ckpt"));
        assert_eq!(mount_dir(root, "~", home()).unwrap(), Path::new("/home/u"));
        for bad in ["data", "/", "/data/../etc", "~user/x", "~/.skycat-agent/bin"] {
            assert!(mount_dir(root, bad, home()).is_err(), "{bad:?} accepted");
        }
        assert!(mount_dir(root, "~/x", None).unwrap_err().to_string().contains("HOME"));
    }

    #[test]
    fn dest_must_stay_in_the_state_dir_and_off_the_agents_files() {
        let root = Path::new("/s");
        assert_eq!(dest_dir(root, "workdir").unwrap(), Path::new("/s/workdir"));
        assert_eq!(
            dest_dir(root, "./mounts/data/").unwrap(),
            Path::new("/s/mounts/data")
        );
        for bad in [
            "/etc",
            "../x",
            "a/../../x",
            ".",
            "",
            "state",
            "secrets/x",
            "config.json",
        ] {
            assert!(dest_dir(root, bad).is_err(), "{bad:?} accepted");
        }
    }
}
