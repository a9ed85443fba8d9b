//! Unpacking an uploaded tar under a target folder without ever writing or pointing outside it.
//!
//! Every entry is checked before anything is written for it:
//! * its path must be relative with no `..` component;
//! * no folder on the way to it may be a symlink on disk (each parent is `lstat`ed; missing ones
//!   are created one level at a time), and what sits at the path is unlinked before a file is
//!   created with `O_EXCL`, so no write ever goes through a symlink or into an existing inode;
//! * a symlink's target must be relative and stay inside the target, both read as a path from the
//!   link's folder and resolved on disk through the symlinks already there; once the archive is
//!   done every symlink it made is resolved again (a later link may have changed the way), and one
//!   that now leads outside is removed and the archive refused;
//! * a hard link must name a regular file inside the target, reached through no symlink;
//! * devices, FIFOs and sparse files are refused;
//! * the files' declared sizes may not add up to more than the limit.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::{Archive, Entry, EntryType};

use crate::{ArchiveError, Refusal};

/// Symlinks followed while resolving one link target before it counts as a loop.
const MAX_LINK_HOPS: u32 = 40;
/// Bytes allowed after the end-of-archive block (padding), read and dropped.
const MAX_TRAILING: u64 = 1 << 20;

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written.
    pub files: u64,
    /// Folder entries (folders created on the way to a file are not counted).
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Total size of the regular files written.
    pub bytes: u64,
}

/// Reads a tar (plain, or gzip-compressed: recognised by its magic bytes) from `input` and
/// writes it under `target` (created if missing; what is already there is kept unless an entry
/// replaces it). Refuses the archive at the first entry that is not allowed (see the module doc)
/// or that brings the total of file sizes over `limit_bytes`: entries before it stay written,
/// and nothing is ever written outside `target`.
pub fn unpack(
    input: impl Read,
    target: &Path,
    limit_bytes: u64,
) -> Result<UnpackStats, ArchiveError> {
    fs::create_dir_all(target).map_err(|err| ArchiveError::Io {
        op: "creating",
        path: target.to_path_buf(),
        err,
    })?;
    let root = fs::canonicalize(target).map_err(|err| ArchiveError::Io {
        op: "resolving",
        path: target.to_path_buf(),
        err,
    })?;
    let mut input = input;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(ArchiveError::Read { err }),
        }
    }
    let input = io::Cursor::new(magic).take(got as u64).chain(input);
    let unpacker = Unpacker {
        root,
        limit: limit_bytes,
        stats: UnpackStats::default(),
        links: Vec::new(),
    };
    if magic[..got] == [0x1f, 0x8b] {
        unpacker.run(Archive::new(EofWatch::new(flate2::read::GzDecoder::new(
            input,
        ))))
    } else {
        unpacker.run(Archive::new(EofWatch::new(input)))
    }
}

/// Notes whether the (decompressed) stream ran dry: the tar reader stops at the end-of-archive
/// block without reading to EOF, so an archive that reached EOF first was cut short (an upload
/// that broke off between two entries must not pass for a complete one).
struct EofWatch<R> {
    inner: R,
    eof: bool,
}

impl<R> EofWatch<R> {
    fn new(inner: R) -> Self {
        EofWatch { inner, eof: false }
    }
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

struct Unpacker {
    /// The canonical target folder.
    root: PathBuf,
    limit: u64,
    stats: UnpackStats,
    /// Symlinks made so far: (path relative to root, target, entry name).
    links: Vec<(PathBuf, PathBuf, String)>,
}

fn refused(entry: &str, reason: Refusal) -> ArchiveError {
    ArchiveError::Refused {
        entry: entry.to_string(),
        reason,
    }
}

fn read_err(err: io::Error) -> ArchiveError {
    ArchiveError::Read { err }
}

/// The components of an archive-relative path (entry name or hard-link target); `.` and empty
/// components dropped. Refuses absolute paths and `..`.
fn relative(path: &Path) -> Result<PathBuf, Refusal> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::AbsolutePath),
        }
    }
    Ok(out)
}

/// Whether a symlink at `link` (relative to the root) with contents `target` stays inside the
/// root when read as a path from the link's folder, without looking at the disk.
fn lexically_inside(link: &Path, target: &Path) -> Result<(), Refusal> {
    let shown = || target.to_string_lossy().into_owned();
    let mut depth = link.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Refusal::LinkOutside { target: shown() })?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Refusal::AbsoluteLink { target: shown() })
            }
        }
    }
    Ok(())
}

/// Whether `target`, the contents of a symlink in the folder `dir` (relative to `root`), leads to
/// a path inside `root`, following the symlinks now on disk. Missing components are taken as
/// plain names. A chain of more than [`MAX_LINK_HOPS`] links, or an absolute link met on the way,
/// counts as outside.
fn resolves_inside(root: &Path, dir: &Path, target: &Path) -> io::Result<bool> {
    enum Step {
        Up,
        Name(OsString),
        Absolute,
    }
    fn steps(p: &Path) -> Vec<Step> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(Step::Name(n.to_os_string())),
                Component::CurDir => None,
                Component::ParentDir => Some(Step::Up),
                Component::RootDir | Component::Prefix(_) => Some(Step::Absolute),
            })
            .collect()
    }
    let mut cur: Vec<OsString> = dir.iter().map(|c| c.to_os_string()).collect();
    let mut todo: VecDeque<Step> = steps(target).into();
    let mut hops = 0;
    while let Some(step) = todo.pop_front() {
        match step {
            Step::Absolute => return Ok(false),
            Step::Up => {
                if cur.pop().is_none() {
                    return Ok(false);
                }
            }
            Step::Name(name) => {
                let mut p = root.to_path_buf();
                p.extend(&cur);
                p.push(&name);
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.file_type().is_symlink() => {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Ok(false);
                        }
                        for s in steps(&fs::read_link(&p)?).into_iter().rev() {
                            todo.push_front(s);
                        }
                    }
                    Ok(_) => cur.push(name),
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.kind() == io::ErrorKind::NotADirectory =>
                    {
                        cur.push(name)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(true)
}

impl Unpacker {
    fn run<R: Read>(
        mut self,
        mut archive: Archive<EofWatch<R>>,
    ) -> Result<UnpackStats, ArchiveError> {
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            self.entry(&mut entry)?;
        }
        self.recheck_links()?;
        let mut rest = archive.into_inner();
        if rest.eof {
            return Err(read_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it ends without the end-of-archive block (cut short?)",
            )));
        }
        // Read what follows the end-of-archive block (tar pads to 10 KiB records): this lets the
        // gzip decoder check its trailer (a cut gzip stream is an error) and the sender finish
        // writing instead of meeting a closed pipe.
        let trailing =
            io::copy(&mut (&mut rest).take(MAX_TRAILING + 1), &mut io::sink()).map_err(read_err)?;
        if trailing > MAX_TRAILING {
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than 1 MiB follows the end-of-archive block",
            )));
        }
        Ok(self.stats)
    }

    fn io_err(&self, op: &'static str, rel: &Path, err: io::Error) -> ArchiveError {
        ArchiveError::Io {
            op,
            path: self.root.join(rel),
            err,
        }
    }

    fn entry<R: Read>(&mut self, e: &mut Entry<R>) -> Result<(), ArchiveError> {
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        // pax headers: the tar crate applies per-entry ones; global ones (e.g. `git archive`'s
        // commit id) carry nothing we use.
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let rel = relative(&e.path().map_err(read_err)?).map_err(|r| refused(&name, r))?;
        if rel.as_os_str().is_empty() {
            // `./` itself: the target exists already.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(refused(&name, Refusal::Empty)),
            };
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => self.file(e, &name, &rel),
            EntryType::Directory => self.dir(e, &name, &rel),
            EntryType::Symlink => self.symlink(e, &name, &rel),
            EntryType::Link => self.hardlink(e, &name, &rel),
            other => {
                let kind = match other {
                    EntryType::Char => "character device".to_string(),
                    EntryType::Block => "block device".to_string(),
                    EntryType::Fifo => "FIFO".to_string(),
                    EntryType::GNUSparse => "sparse file".to_string(),
                    t => format!("tar entry of type {:?}", t.as_byte() as char),
                };
                Err(refused(&name, Refusal::Unsupported { kind }))
            }
        }
    }

    /// Makes sure every folder on the way to `rel` is a real folder (not a symlink), creating
    /// missing ones one level at a time.
    fn parents(&self, name: &str, rel: &Path) -> Result<(), ArchiveError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut so_far = PathBuf::new();
        for c in parent.iter() {
            so_far.push(c);
            let full = self.root.join(&so_far);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refused(
                        name,
                        Refusal::ThroughSymlink {
                            parent: so_far.to_string_lossy().into_owned(),
                        },
                    ))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refused(
                        name,
                        Refusal::ParentNotFolder {
                            parent: so_far.to_string_lossy().into_owned(),
                        },
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // mkdir does not follow a symlink at its last component.
                    fs::create_dir(&full).map_err(|err| self.io_err("creating", &so_far, err))?
                }
                Err(err) => return Err(self.io_err("reading", &so_far, err)),
            }
        }
        Ok(())
    }

    /// Removes what sits at `rel` (a file or symlink: the link itself; an empty folder) unless it
    /// is a folder and `keep_dir`. Returns whether a folder was kept.
    fn clear(&self, name: &str, rel: &Path, keep_dir: bool) -> Result<bool, ArchiveError> {
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(self.io_err("reading", rel, err)),
            Ok(m) if m.is_dir() => {
                if keep_dir {
                    return Ok(true);
                }
                fs::remove_dir(&full).map_err(|_| {
                    refused(
                        name,
                        Refusal::ReplacesFolder {
                            path: rel.to_string_lossy().into_owned(),
                        },
                    )
                })?;
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(&full).map_err(|err| self.io_err("replacing", rel, err))?;
                Ok(false)
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        e: &mut Entry<R>,
        name: &str,
        rel: &Path,
    ) -> Result<(), ArchiveError> {
        let size = e.size();
        match self.stats.bytes.checked_add(size) {
            Some(total) if total <= self.limit => {}
            _ => {
                return Err(ArchiveError::UnpackTooLarge {
                    entry: name.to_string(),
                    limit: self.limit,
                })
            }
        }
        let mode = e.header().mode().map_err(read_err)? & 0o777;
        let mtime = e.header().mtime().ok();
        self.parents(name, rel)?;
        self.clear(name, rel, false)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.root.join(rel))
            .map_err(|err| self.io_err("creating", rel, err))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let n = match e.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(read_err(err)),
            };
            f.write_all(&buf[..n])
                .map_err(|err| self.io_err("writing", rel, err))?;
            written += n as u64;
        }
        if let Some(secs) = mtime {
            // Best effort, as tar does: a failure here loses nothing of the contents.
            let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|err| self.io_err("setting the mode of", rel, err))?;
        self.stats.files += 1;
        self.stats.bytes += written;
        Ok(())
    }

    fn dir<R: Read>(
        &mut self,
        e: &mut Entry<R>,
        name: &str,
        rel: &Path,
    ) -> Result<(), ArchiveError> {
        // Always keep the owner's rwx so the folder's contents can be written.
        let mode = (e.header().mode().map_err(read_err)? & 0o777) | 0o700;
        self.parents(name, rel)?;
        let full = self.root.join(rel);
        if !self.clear(name, rel, true)? {
            fs::create_dir(&full).map_err(|err| self.io_err("creating", rel, err))?;
        }
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .map_err(|err| self.io_err("setting the mode of", rel, err))?;
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        e: &mut Entry<R>,
        name: &str,
        rel: &Path,
    ) -> Result<(), ArchiveError> {
        let target = e
            .link_name()
            .map_err(read_err)?
            .map(|t| t.into_owned())
            .filter(|t| !t.as_os_str().is_empty())
            .ok_or_else(|| refused(name, Refusal::Empty))?;
        lexically_inside(rel, &target).map_err(|r| refused(name, r))?;
        self.parents(name, rel)?;
        let dir = rel.parent().unwrap_or(Path::new(""));
        if !resolves_inside(&self.root, dir, &target)
            .map_err(|err| self.io_err("resolving links under", dir, err))?
        {
            return Err(refused(
                name,
                Refusal::LinkOutside {
                    target: target.to_string_lossy().into_owned(),
                },
            ));
        }
        self.clear(name, rel, false)?;
        std::os::unix::fs::symlink(&target, self.root.join(rel))
            .map_err(|err| self.io_err("creating the symlink", rel, err))?;
        self.links
            .push((rel.to_path_buf(), target, name.to_string()));
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        e: &mut Entry<R>,
        name: &str,
        rel: &Path,
    ) -> Result<(), ArchiveError> {
        let raw = e
            .link_name()
            .map_err(read_err)?
            .map(|t| t.into_owned())
            .ok_or_else(|| refused(name, Refusal::Empty))?;
        let shown = raw.to_string_lossy().into_owned();
        let src = relative(&raw).map_err(|r| match r {
            Refusal::ParentDir | Refusal::AbsolutePath => Refusal::LinkOutside {
                target: shown.clone(),
            },
            other => other,
        });
        let src = src.map_err(|r| refused(name, r))?;
        if src.as_os_str().is_empty() {
            return Err(refused(name, Refusal::Empty));
        }
        if src == rel {
            return Ok(());
        }
        // The source must be reached through real folders only, and be a regular file.
        let not_file = || {
            refused(
                name,
                Refusal::HardlinkNotFile {
                    target: shown.clone(),
                },
            )
        };
        let mut so_far = PathBuf::new();
        for c in src.iter() {
            so_far.push(c);
            match fs::symlink_metadata(self.root.join(&so_far)) {
                Ok(m) if so_far == src && m.is_file() => {}
                Ok(m) if so_far != src && m.is_dir() => {}
                _ => return Err(not_file()),
            }
        }
        self.parents(name, rel)?;
        self.clear(name, rel, false)?;
        // link(2) does not follow a symlink at the source's last component; checked above anyway.
        fs::hard_link(self.root.join(&src), self.root.join(rel))
            .map_err(|err| self.io_err("creating the hard link", rel, err))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Resolves every symlink made again now that all are in place: a link made later can change
    /// where an earlier one leads (`a -> b/..` then `b -> .`). One that leads outside is removed
    /// and the archive refused.
    fn recheck_links(&mut self) -> Result<(), ArchiveError> {
        let mut first_bad = None;
        for (rel, target, name) in &self.links {
            let full = self.root.join(rel);
            let still_ours = fs::read_link(&full).map(|t| &t == target).unwrap_or(false);
            if !still_ours {
                continue;
            }
            let dir = rel.parent().unwrap_or(Path::new(""));
            let inside = resolves_inside(&self.root, dir, target).unwrap_or(false);
            if !inside {
                fs::remove_file(&full).map_err(|err| self.io_err("removing", rel, err))?;
                first_bad.get_or_insert_with(|| {
                    refused(
                        name,
                        Refusal::LinkOutside {
                            target: target.to_string_lossy().into_owned(),
                        },
                    )
                });
            }
        }
        match first_bad {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
