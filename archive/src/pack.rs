//! Packing a folder into a tar stream, as SkyPilot syncs a workdir: when `.skyignore` exists at
//! the root, the `.skyignore` files (at the root and in sub-folders) say what to leave out and
//! `.gitignore` is not read; otherwise `.gitignore` files at every level and `.git/info/exclude`
//! do. `.git` is always left out. Symlinks are archived as symlinks, never followed; sockets,
//! FIFOs and devices are skipped.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;
use tar::{EntryType, Header, HeaderMode};

use crate::ArchiveError;

/// The ignore file that, at the root, replaces `.gitignore` handling.
pub const SKYIGNORE: &str = ".skyignore";
/// Read (at every level) when the root has no `.skyignore`.
pub const GITIGNORE: &str = ".gitignore";

/// What [`pack`] put in the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Regular files archived.
    pub files: u64,
    /// Folders archived (the root itself is not an entry).
    pub dirs: u64,
    /// Symlinks archived (as links).
    pub symlinks: u64,
    /// Total size of the regular files' contents.
    pub bytes: u64,
    /// Sockets, FIFOs and devices that were left out, relative to the root.
    pub skipped: Vec<PathBuf>,
}

/// Writes a tar of `root`'s contents to `out` (entry paths relative to `root`, folders before
/// their contents, sorted by name). Fails with [`ArchiveError::PackTooLarge`] before writing the
/// file whose size brings the total of file contents over `limit_bytes`; `out` then holds a
/// truncated archive that the caller must discard.
pub fn pack(root: &Path, limit_bytes: u64, out: impl Write) -> Result<PackStats, ArchiveError> {
    let meta = fs::metadata(root).map_err(|_| ArchiveError::NotAFolder {
        root: root.to_path_buf(),
    })?;
    if !meta.is_dir() {
        return Err(ArchiveError::NotAFolder {
            root: root.to_path_buf(),
        });
    }
    // Walk the real folder (the root may itself be a symlink to one); name `root` in errors.
    let walk_root = fs::canonicalize(root).map_err(|err| ArchiveError::Io {
        op: "resolving",
        path: root.to_path_buf(),
        err,
    })?;
    let shown = |p: &Path| -> PathBuf {
        match p.strip_prefix(&walk_root) {
            Ok(rel) => root.join(rel),
            Err(_) => p.to_path_buf(),
        }
    };

    let mut walk = WalkBuilder::new(&walk_root);
    walk.standard_filters(false)
        .follow_links(false)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git");
    if walk_root.join(SKYIGNORE).is_file() {
        walk.add_custom_ignore_filename(SKYIGNORE);
    } else {
        walk.git_ignore(true).git_exclude(true);
    }

    let mut builder = tar::Builder::new(out);
    let mut stats = PackStats::default();
    for item in walk.build() {
        let entry = item.map_err(|e| ArchiveError::Walk {
            root: root.to_path_buf(),
            message: e.to_string(),
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(&walk_root) else {
            continue;
        };
        let meta = fs::symlink_metadata(path).map_err(|err| ArchiveError::Io {
            op: "reading",
            path: shown(path),
            err,
        })?;
        let ft = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, HeaderMode::Deterministic);
        header.set_mtime(meta.mtime().max(0) as u64);
        let archived = |err: io::Error| ArchiveError::Io {
            op: "archiving",
            path: shown(path),
            err,
        };
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, rel, io::empty())
                .map_err(archived)?;
            stats.dirs += 1;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|err| ArchiveError::Io {
                op: "reading the symlink",
                path: shown(path),
                err,
            })?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, rel, &target)
                .map_err(archived)?;
            stats.symlinks += 1;
        } else if ft.is_file() {
            let size = meta.len();
            match stats.bytes.checked_add(size) {
                Some(total) if total <= limit_bytes => stats.bytes = total,
                _ => {
                    return Err(ArchiveError::PackTooLarge {
                        root: root.to_path_buf(),
                        path: shown(path),
                        limit: limit_bytes,
                    })
                }
            }
            let file = fs::File::open(path).map_err(|err| ArchiveError::Io {
                op: "opening",
                path: shown(path),
                err,
            })?;
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            builder
                .append_data(
                    &mut header,
                    rel,
                    ExactSize {
                        inner: file,
                        left: size,
                    },
                )
                .map_err(archived)?;
            stats.files += 1;
        } else {
            stats.skipped.push(rel.to_path_buf());
        }
    }
    let mut out = builder
        .into_inner()
        .map_err(|err| ArchiveError::Write { err })?;
    out.flush().map_err(|err| ArchiveError::Write { err })?;
    Ok(stats)
}

/// [`pack`] through gzip (fast level); [`crate::unpack`] recognises either.
pub fn pack_gz(root: &Path, limit_bytes: u64, out: impl Write) -> Result<PackStats, ArchiveError> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let stats = pack(root, limit_bytes, &mut gz)?;
    gz.finish()
        .and_then(|mut w| w.flush())
        .map_err(|err| ArchiveError::Write { err })?;
    Ok(stats)
}

/// Writes a tar of the one regular file `path`, as the entry `name` (a plain file name: a file
/// mount's destination name), gzip'd. Symlinks are followed here: the mount is of what the path
/// names. Fails with [`ArchiveError::PackTooLarge`] when the file is over `limit_bytes`.
pub fn pack_file_gz(path: &Path, name: &str, limit_bytes: u64, out: impl Write) -> Result<PackStats, ArchiveError> {
    let io_err = |op: &'static str| move |err: io::Error| ArchiveError::Io { op, path: path.to_path_buf(), err };
    let meta = fs::metadata(path).map_err(io_err("reading"))?;
    if !meta.is_file() {
        return Err(ArchiveError::Io { op: "reading", path: path.to_path_buf(), err: io::Error::other("not a regular file") });
    }
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ArchiveError::Io { op: "naming", path: path.to_path_buf(), err: io::Error::other(format!("{name:?} is not a file name")) });
    }
    let size = meta.len();
    if size > limit_bytes {
        return Err(ArchiveError::PackTooLarge { root: path.to_path_buf(), path: path.to_path_buf(), limit: limit_bytes });
    }
    let file = fs::File::open(path).map_err(io_err("opening"))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    {
        let mut builder = tar::Builder::new(&mut gz);
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, HeaderMode::Deterministic);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_entry_type(EntryType::Regular);
        header.set_size(size);
        builder.append_data(&mut header, name, ExactSize { inner: file, left: size }).map_err(io_err("archiving"))?;
        builder.finish().map_err(|err| ArchiveError::Write { err })?;
    }
    gz.finish().and_then(|mut w| w.flush()).map_err(|err| ArchiveError::Write { err })?;
    Ok(PackStats { files: 1, bytes: size, ..PackStats::default() })
}

/// Yields exactly `left` bytes of `inner`: a file that grew while being packed is cut at the
/// size in its header, one that shrank is padded with zeros, so the archive stays well-formed.
struct ExactSize<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            buf[..max].fill(0);
            n = max;
        }
        self.left -= n as u64;
        Ok(n)
    }
}
