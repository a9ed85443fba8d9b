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

/// Unpacks stdin into `<root>/<dest>`; returns (files, bytes).
pub fn unpack_stdin(
    root: &Path,
    dest: &str,
    limit: u64,
) -> Result<(PathBuf, skycat_archive::UnpackStats)> {
    let target = dest_dir(root, dest)?;
    let stats = skycat_archive::unpack(std::io::stdin().lock(), &target, limit)?;
    Ok((target, stats))
}

#[cfg(test)]
mod tests {
    use super::dest_dir;
    use std::path::Path;

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
