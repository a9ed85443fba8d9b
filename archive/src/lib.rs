//! Workdir upload archives (issue 10 item 3): the client packs its workdir and local file mounts
//! into a tar stream, the server relays it, and the node agent unpacks it.
//!
//! * [`pack`] (feature `pack`, on by default) writes a tar of a folder, honouring `.skyignore`
//!   or `.gitignore` as SkyPilot does, never following symlinks, and stops with
//!   [`ArchiveError::PackTooLarge`] as soon as the files pass the size limit.
//! * [`unpack`] reads a tar (plain or gzip) and writes it under a target folder, refusing
//!   ([`ArchiveError::Refused`]) any entry that could write or point outside it.
//!
//! The node agent depends on this crate with `default-features = false` (unpack only).

#[cfg(feature = "pack")]
mod pack;
#[cfg(all(test, feature = "pack"))]
mod tests;
mod unpack;

use std::io;
use std::path::PathBuf;

#[cfg(feature = "pack")]
pub use pack::{pack, pack_file_gz, pack_gz, PackStats, GITIGNORE, SKYIGNORE};
pub use unpack::{unpack, UnpackStats};

/// The default size limit of an upload: 1 GiB of file contents.
pub const DEFAULT_LIMIT_BYTES: u64 = 1 << 30;

/// Why packing or unpacking failed. Each message is one line and names the path or entry.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The folder to pack is missing or is not a folder.
    #[error("{} is not a folder", root.display())]
    NotAFolder { root: PathBuf },
    /// Reading or writing a file on this machine failed.
    #[error("{op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// Listing the folder to pack failed (unreadable folder, bad ignore file).
    #[error("listing {}: {message}", root.display())]
    Walk { root: PathBuf, message: String },
    /// The files to pack add up to more than the limit; `path` is the file that passed it.
    #[error(
        "{} holds more than {} to upload (the limit was passed at {}); leave files out with \
         .skyignore or .gitignore, or raise the limit",
        root.display(),
        human_bytes(*limit),
        path.display()
    )]
    PackTooLarge {
        root: PathBuf,
        path: PathBuf,
        limit: u64,
    },
    /// Writing the archive stream failed.
    #[error("writing the archive: {err}")]
    Write { err: io::Error },
    /// Reading the archive stream failed, or it is not a valid tar (or gzip'd tar).
    #[error("reading the archive: {err}")]
    Read { err: io::Error },
    /// The archive's files add up to more than the limit; `entry` is the one that passed it.
    #[error(
        "archive refused: it unpacks to more than {} (the limit was passed at entry {entry:?})",
        human_bytes(*limit)
    )]
    UnpackTooLarge { entry: String, limit: u64 },
    /// The archive holds an entry that is not allowed; nothing of it was written.
    #[error("archive refused: entry {entry:?} {reason}")]
    Refused { entry: String, reason: Refusal },
}

impl ArchiveError {
    /// True when the archive itself is at fault (refused entry, over the limit, not a tar), as
    /// opposed to this machine's disk: an HTTP route answers 400 for these, 500 otherwise.
    pub fn is_bad_archive(&self) -> bool {
        matches!(
            self,
            ArchiveError::Refused { .. }
                | ArchiveError::UnpackTooLarge { .. }
                | ArchiveError::Read { .. }
        )
    }
}

/// Why [`unpack`] refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("has an absolute path")]
    AbsolutePath,
    #[error("has a `..` component")]
    ParentDir,
    #[error("has an empty path or link target")]
    Empty,
    #[error("is a symlink to the absolute path {target:?}")]
    AbsoluteLink { target: String },
    #[error("is a link to {target:?}, which resolves outside the destination")]
    LinkOutside { target: String },
    #[error("is a hard link to {target:?}, which is not a regular file already unpacked")]
    HardlinkNotFile { target: String },
    #[error("lies under {parent:?}, which is a symlink")]
    ThroughSymlink { parent: String },
    #[error("lies under {parent:?}, which is not a folder")]
    ParentNotFolder { parent: String },
    #[error("would replace the non-empty folder {path:?}")]
    ReplacesFolder { path: String },
    #[error("is a {kind}, which an upload may not hold")]
    Unsupported { kind: String },
}

/// `1 GiB`, `512 MiB`, `1.5 KiB`, `100 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod human_bytes_tests {
    use super::*;

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(DEFAULT_LIMIT_BYTES), "1 GiB");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
    }
}
