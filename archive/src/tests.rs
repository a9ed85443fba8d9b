//! Round trips through pack/unpack, size limits, and hand-built malicious archives: each of
//! those unpacks into `base/target` beside `base/outside` (which holds one `secret` file), and
//! every test checks that `outside` (and `base` itself) are exactly as before.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::*;

const SECRET: &str = "outside secret";

/// Every path under `root` (relative), with "dir", "link -> T" or the file's contents.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// `base/target` (missing: unpack creates it) and `base/outside/secret`.
struct Sandbox {
    base: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let base = tempfile::tempdir().unwrap();
        write(base.path(), "outside/secret", SECRET);
        Sandbox { base }
    }
    fn target(&self) -> PathBuf {
        self.base.path().join("target")
    }
    fn outside(&self) -> PathBuf {
        self.base.path().join("outside")
    }
    fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, ArchiveError> {
        unpack(tar, &self.target(), DEFAULT_LIMIT_BYTES)
    }
    /// Nothing was written outside the target: `base` holds only `target` and `outside`,
    /// `outside` only the untouched secret (one link to it).
    fn assert_outside_untouched(&self) {
        let mut top: Vec<String> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        top.retain(|n| n != "target");
        assert_eq!(top, vec!["outside"]);
        let expected: BTreeMap<String, String> =
            [("secret".to_string(), SECRET.to_string())].into();
        assert_eq!(listing(&self.outside()), expected);
        let m = fs::metadata(self.outside().join("secret")).unwrap();
        assert_eq!(m.nlink(), 1, "a hard link to the outside secret was made");
    }
}

fn refusal(r: Result<UnpackStats, ArchiveError>) -> (String, Refusal) {
    match r {
        Err(ArchiveError::Refused { entry, reason }) => (entry, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A tar built entry by entry with raw names (tar::Builder refuses `..` and absolute names).
struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(tar::Builder::new(Vec::new()))
    }
    fn entry(mut self, name: &str, kind: EntryType, link: Option<&str>, data: &[u8]) -> RawTar {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, text: &str) -> RawTar {
        self.entry(name, EntryType::Regular, None, text.as_bytes())
    }
    fn dir(self, name: &str) -> RawTar {
        self.entry(name, EntryType::Directory, None, b"")
    }
    fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, EntryType::Symlink, Some(target), b"")
    }
    fn hardlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, EntryType::Link, Some(target), b"")
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn pack_to_vec(root: &Path) -> (PackStats, Vec<u8>) {
    let mut out = Vec::new();
    let stats = pack(root, DEFAULT_LIMIT_BYTES, &mut out).unwrap();
    (stats, out)
}

#[test]
fn round_trip_honours_gitignore_at_every_level_and_skips_dot_git() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, ".gitignore", "*.log\nbuild/\n!keep.log\n");
    write(s, "main.py", "print('hi')\n");
    write(s, "run.sh", "#!/bin/sh\n");
    fs::set_permissions(s.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(s, "debug.log", "noise");
    write(s, "keep.log", "kept");
    write(s, "build/out.bin", "artefact");
    write(s, "sub/.gitignore", "secret.txt\n");
    write(s, "sub/secret.txt", "s");
    write(s, "sub/a.txt", "a");
    write(s, "other/secret.txt", "not ignored here");
    write(s, ".git/config", "[core]");
    write(s, ".git/info/exclude", "excluded.txt\n");
    write(s, "excluded.txt", "x");
    write(s, ".hidden", "dotfiles are kept");
    fs::create_dir(s.join("empty")).unwrap();
    std::os::unix::fs::symlink("sub/a.txt", s.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.join("abs-link")).unwrap();

    let (stats, tar) = pack_to_vec(s);
    assert_eq!(stats.symlinks, 2);
    assert!(stats.skipped.is_empty());

    // Unpacking refuses the absolute symlink (it points outside): pack keeps symlinks as they
    // are, unpack judges them.
    let sb = Sandbox::new();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "abs-link");
    assert!(matches!(reason, Refusal::AbsoluteLink { .. }), "{reason:?}");
    sb.assert_outside_untouched();

    fs::remove_file(s.join("abs-link")).unwrap();
    let (stats, tar) = pack_to_vec(s);
    let sb = Sandbox::new();
    let un = sb.unpack(&tar).unwrap();
    let got = listing(&sb.target());
    let expected: BTreeMap<String, String> = [
        (".gitignore", "*.log\nbuild/\n!keep.log\n"),
        (".hidden", "dotfiles are kept"),
        ("empty", "dir"),
        ("keep.log", "kept"),
        ("link", "link -> sub/a.txt"),
        ("main.py", "print('hi')\n"),
        ("other", "dir"),
        ("other/secret.txt", "not ignored here"),
        ("run.sh", "#!/bin/sh\n"),
        ("sub", "dir"),
        ("sub/.gitignore", "secret.txt\n"),
        ("sub/a.txt", "a"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, expected);
    assert_eq!(
        fs::metadata(sb.target().join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let mtime = |p: &Path| fs::metadata(p).unwrap().mtime();
    assert_eq!(
        mtime(&sb.target().join("main.py")),
        mtime(&s.join("main.py"))
    );
    assert_eq!(
        (un.files, un.dirs, un.symlinks, un.bytes),
        (stats.files, stats.dirs, stats.symlinks, stats.bytes)
    );
    assert_eq!(un.files, 8);
    sb.assert_outside_untouched();
}

#[test]
fn skyignore_at_the_root_replaces_gitignore() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, ".skyignore", "data/\n*.ckpt\n");
    write(s, ".gitignore", "*.txt\n");
    write(s, "notes.txt", "kept: .gitignore is not read");
    write(s, "data/big.bin", "left out");
    write(s, "model.ckpt", "left out");
    write(s, "sub/.skyignore", "local.tmp\n");
    write(s, "sub/local.tmp", "left out by the nested .skyignore");
    write(s, "sub/.gitignore", "kept.md\n");
    write(s, "sub/kept.md", "kept");
    write(s, ".git/HEAD", "ref");
    let (_, tar) = pack_to_vec(s);
    let sb = Sandbox::new();
    sb.unpack(&tar).unwrap();
    let got: Vec<String> = listing(&sb.target()).into_keys().collect();
    assert_eq!(
        got,
        vec![
            ".gitignore",
            ".skyignore",
            "notes.txt",
            "sub",
            "sub/.gitignore",
            "sub/.skyignore",
            "sub/kept.md"
        ]
    );
}

#[test]
fn gzip_round_trip() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/b/c.txt", &"compressible ".repeat(1000));
    let mut gz = Vec::new();
    let stats = pack_gz(src.path(), DEFAULT_LIMIT_BYTES, &mut gz).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert!((gz.len() as u64) < stats.bytes / 4);
    let sb = Sandbox::new();
    let un = sb.unpack(&gz).unwrap();
    assert_eq!(un.bytes, 13_000);
    assert_eq!(
        fs::read_to_string(sb.target().join("a/b/c.txt")).unwrap(),
        "compressible ".repeat(1000)
    );
}

#[test]
fn one_file_packs_under_the_name_given() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "local/config.yaml", "lr: 0.1\n");
    let file = src.path().join("local/config.yaml");
    let mut gz = Vec::new();
    let stats = pack_file_gz(&file, "train.yaml", DEFAULT_LIMIT_BYTES, &mut gz).unwrap();
    assert_eq!((stats.files, stats.bytes), (1, 8));
    let sb = Sandbox::new();
    sb.unpack(&gz).unwrap();
    assert_eq!(listing(&sb.target()).into_iter().collect::<Vec<_>>(), vec![("train.yaml".to_string(), "lr: 0.1\n".to_string())]);
    for bad in ["", "a/b", "..", "."] {
        assert!(pack_file_gz(&file, bad, DEFAULT_LIMIT_BYTES, &mut Vec::new()).is_err(), "{bad:?}");
    }
    assert!(matches!(pack_file_gz(&file, "x", 3, &mut Vec::new()), Err(ArchiveError::PackTooLarge { .. })));
    assert!(pack_file_gz(src.path(), "x", DEFAULT_LIMIT_BYTES, &mut Vec::new()).unwrap_err().to_string().contains("not a regular file"));
}

#[test]
fn pack_stops_at_the_limit_and_names_the_file() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.bin", &"x".repeat(600));
    write(src.path(), "b.bin", &"y".repeat(600));
    write(src.path(), "c.bin", &"z".repeat(600));
    let mut out = Vec::new();
    let err = pack(src.path(), 1000, &mut out).unwrap_err();
    match &err {
        ArchiveError::PackTooLarge { path, limit, .. } => {
            assert_eq!(path, &src.path().join("b.bin"));
            assert_eq!(*limit, 1000);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("b.bin") && msg.contains("1000 B"), "{msg}");
    // Stopped early: c.bin was never read, and b.bin's contents were not written.
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("yyy") && !text.contains("c.bin"));
    // Exactly at the limit is fine.
    pack(src.path(), 1800, std::io::sink()).unwrap();
    // Not a folder.
    assert!(matches!(
        pack(&src.path().join("a.bin"), 1800, std::io::sink()),
        Err(ArchiveError::NotAFolder { .. })
    ));
}

#[test]
fn unpack_stops_at_the_limit() {
    let tar = RawTar::new()
        .file("a.bin", &"x".repeat(600))
        .file("b.bin", &"y".repeat(600))
        .finish();
    let sb = Sandbox::new();
    match unpack(&tar[..], &sb.target(), 1000) {
        Err(ArchiveError::UnpackTooLarge { entry, limit: 1000 }) => assert_eq!(entry, "b.bin"),
        other => panic!("{other:?}"),
    }
    assert!(!sb.target().join("b.bin").exists());
    sb.assert_outside_untouched();
    let err = unpack(&tar[..], &sb.target(), 1000).unwrap_err();
    assert!(err.is_bad_archive());
    assert!(err.to_string().contains("\"b.bin\""), "{err}");
}

#[test]
fn parent_dir_entries_are_refused() {
    for name in ["../evil", "sub/../../evil", "./../outside/secret", "a/.."] {
        let sb = Sandbox::new();
        let tar = RawTar::new()
            .file("fine.txt", "ok")
            .file(name, "pwned")
            .finish();
        let (entry, reason) = refusal(sb.unpack(&tar));
        assert_eq!(entry, name);
        assert_eq!(reason, Refusal::ParentDir);
        // What came before stays; nothing else was written.
        let got: Vec<String> = listing(&sb.target()).into_keys().collect();
        assert_eq!(got, vec!["fine.txt"]);
        sb.assert_outside_untouched();
    }
}

#[test]
fn absolute_entries_are_refused() {
    let sb = Sandbox::new();
    let abs = sb.outside().join("abs-evil");
    let tar = RawTar::new().file(abs.to_str().unwrap(), "pwned").finish();
    let (_, reason) = refusal(sb.unpack(&tar));
    assert_eq!(reason, Refusal::AbsolutePath);
    sb.assert_outside_untouched();
    assert!(listing(&sb.target()).is_empty());
}

#[test]
fn outside_symlink_then_a_file_through_it_is_refused() {
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .symlink("link", "../../outside")
        .file("link/x", "pwned")
        .finish();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "link");
    assert!(matches!(reason, Refusal::LinkOutside { .. }), "{reason:?}");
    sb.assert_outside_untouched();
    assert!(listing(&sb.target()).is_empty());

    // One level up is the sibling folder itself: refused too.
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .symlink("link", "../outside")
        .file("link/x", "pwned")
        .finish();
    let (_, reason) = refusal(sb.unpack(&tar));
    assert!(matches!(reason, Refusal::LinkOutside { .. }), "{reason:?}");
    sb.assert_outside_untouched();

    // An absolute one.
    let sb = Sandbox::new();
    let out = sb.outside();
    let tar = RawTar::new()
        .symlink("link", out.to_str().unwrap())
        .file("link/x", "pwned")
        .finish();
    let (_, reason) = refusal(sb.unpack(&tar));
    assert!(matches!(reason, Refusal::AbsoluteLink { .. }), "{reason:?}");
    sb.assert_outside_untouched();
}

#[test]
fn entries_under_a_symlink_are_refused_even_when_it_points_inside() {
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .dir("real")
        .symlink("alias", "real")
        .file("alias/x", "through a link")
        .finish();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "alias/x");
    assert_eq!(
        reason,
        Refusal::ThroughSymlink {
            parent: "alias".into()
        }
    );
    assert!(!sb.target().join("real/x").exists());
    sb.assert_outside_untouched();
}

#[test]
fn a_symlink_already_in_the_target_is_neither_followed_nor_written_through() {
    let sb = Sandbox::new();
    fs::create_dir(sb.target()).unwrap();
    std::os::unix::fs::symlink("../outside", sb.target().join("pre")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", sb.target().join("pre-file")).unwrap();
    // A file under it: refused.
    let (_, reason) = refusal(sb.unpack(&RawTar::new().file("pre/secret", "pwned").finish()));
    assert_eq!(
        reason,
        Refusal::ThroughSymlink {
            parent: "pre".into()
        }
    );
    sb.assert_outside_untouched();
    // A file at its path replaces the link, not what it points to.
    let un = sb
        .unpack(&RawTar::new().file("pre-file", "replaced").finish())
        .unwrap();
    assert_eq!(un.files, 1);
    assert_eq!(
        fs::read_to_string(sb.target().join("pre-file")).unwrap(),
        "replaced"
    );
    assert!(!fs::symlink_metadata(sb.target().join("pre-file"))
        .unwrap()
        .file_type()
        .is_symlink());
    sb.assert_outside_untouched();
    // A link through it is judged on disk: pre/.. is `base`, outside the target.
    let (_, reason) = refusal(sb.unpack(&RawTar::new().symlink("l", "pre/secret").finish()));
    assert!(matches!(reason, Refusal::LinkOutside { .. }), "{reason:?}");
    sb.assert_outside_untouched();
}

#[test]
fn hardlinks_outside_are_refused() {
    let sb = Sandbox::new();
    let abs = sb.outside().join("secret");
    for target in ["../outside/secret", abs.to_str().unwrap()] {
        let tar = RawTar::new().hardlink("h", target).finish();
        let (entry, reason) = refusal(sb.unpack(&tar));
        assert_eq!(entry, "h");
        assert!(
            matches!(reason, Refusal::LinkOutside { .. }),
            "{target}: {reason:?}"
        );
        sb.assert_outside_untouched();
    }
    // Through a symlink, even one that stays inside: refused as well.
    let tar = RawTar::new()
        .symlink("s", "sub")
        .dir("sub")
        .hardlink("h", "s/secret")
        .finish();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "h");
    assert!(
        matches!(reason, Refusal::HardlinkNotFile { .. }),
        "{reason:?}"
    );
    // To a name not unpacked: refused.
    let (_, reason) = refusal(sb.unpack(&RawTar::new().hardlink("h2", "nope").finish()));
    assert!(
        matches!(reason, Refusal::HardlinkNotFile { .. }),
        "{reason:?}"
    );
    sb.assert_outside_untouched();
    assert!(!sb.target().join("h").exists());
}

#[test]
fn links_that_stay_inside_are_unpacked() {
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .file("a.txt", "A")
        .dir("sub")
        .symlink("sub/up", "../a.txt")
        .symlink("sub/here", "./../sub/../a.txt")
        .symlink("dangling", "not-yet/there")
        .symlink("dirlink", "sub")
        .hardlink("sub/hard", "a.txt")
        .finish();
    let un = sb.unpack(&tar).unwrap();
    assert_eq!((un.files, un.dirs, un.symlinks, un.hardlinks), (1, 1, 4, 1));
    let t = sb.target();
    assert_eq!(fs::read_to_string(t.join("sub/up")).unwrap(), "A");
    assert_eq!(fs::read_to_string(t.join("sub/here")).unwrap(), "A");
    assert_eq!(fs::read_to_string(t.join("sub/hard")).unwrap(), "A");
    assert_eq!(fs::metadata(t.join("a.txt")).unwrap().nlink(), 2);
    assert_eq!(
        fs::read_link(t.join("dangling")).unwrap(),
        Path::new("not-yet/there")
    );
    sb.assert_outside_untouched();
}

#[test]
fn a_chain_of_links_that_leads_outside_is_refused_in_either_order() {
    // `s -> .` is fine, `t -> s/..` reads as the target itself but on disk is its parent.
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .symlink("s", ".")
        .symlink("t", "s/..")
        .finish();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "t");
    assert!(matches!(reason, Refusal::LinkOutside { .. }), "{reason:?}");
    assert!(fs::symlink_metadata(sb.target().join("t")).is_err());
    sb.assert_outside_untouched();

    // The other way round, only the final check can see it; the bad link is removed.
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .symlink("t", "s/../outside")
        .symlink("s", ".")
        .finish();
    let (entry, reason) = refusal(sb.unpack(&tar));
    assert_eq!(entry, "t");
    assert!(matches!(reason, Refusal::LinkOutside { .. }), "{reason:?}");
    assert!(fs::symlink_metadata(sb.target().join("t")).is_err());
    assert!(fs::symlink_metadata(sb.target().join("s")).is_ok());
    sb.assert_outside_untouched();

    // A loop is refused rather than followed forever.
    let sb = Sandbox::new();
    let tar = RawTar::new()
        .symlink("l1", "l2")
        .symlink("l2", "l1")
        .finish();
    let (entry, _) = refusal(sb.unpack(&tar));
    assert!(entry == "l1" || entry == "l2");
    sb.assert_outside_untouched();
}

#[test]
fn devices_and_fifos_are_refused() {
    for (kind, word) in [
        (EntryType::Fifo, "FIFO"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
    ] {
        let sb = Sandbox::new();
        let tar = RawTar::new().entry("dev", kind, None, b"").finish();
        let (_, reason) = refusal(sb.unpack(&tar));
        assert_eq!(reason, Refusal::Unsupported { kind: word.into() });
        assert!(listing(&sb.target()).is_empty());
    }
}

#[test]
fn truncated_and_garbage_archives_are_read_errors() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", "a");
    write(src.path(), "b.txt", "b");
    let (_, tar) = pack_to_vec(src.path());
    // Cut after the first entry (header + one data block): no end-of-archive block.
    let sb = Sandbox::new();
    let err = sb.unpack(&tar[..1024]).unwrap_err();
    assert!(matches!(err, ArchiveError::Read { .. }), "{err:?}");
    assert!(err.is_bad_archive());
    // Empty input.
    assert!(matches!(sb.unpack(b""), Err(ArchiveError::Read { .. })));
    // Not a tar.
    assert!(matches!(
        sb.unpack(&[b'x'; 2048]),
        Err(ArchiveError::Read { .. })
    ));
    // Truncated gzip.
    let mut gz = Vec::new();
    pack_gz(src.path(), DEFAULT_LIMIT_BYTES, &mut gz).unwrap();
    assert!(matches!(
        sb.unpack(&gz[..gz.len() - 10]),
        Err(ArchiveError::Read { .. })
    ));
    // Padding after the end-of-archive block is read and dropped; a lot of anything is not.
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0u8; 10240]);
    sb.unpack(&padded).unwrap();
    padded.extend_from_slice(&vec![b'x'; 2 << 20]);
    assert!(matches!(sb.unpack(&padded), Err(ArchiveError::Read { .. })));
    sb.assert_outside_untouched();
}

#[test]
fn unpacking_again_overlays_and_replaces() {
    let sb = Sandbox::new();
    sb.unpack(
        &RawTar::new()
            .file("a", "1")
            .dir("d")
            .file("d/f", "x")
            .symlink("l", "a")
            .finish(),
    )
    .unwrap();
    // A file replaces a link, a link replaces a file, an empty folder is replaced by a file; a
    // non-empty folder is not.
    sb.unpack(
        &RawTar::new()
            .file("l", "now a file")
            .symlink("a", "l")
            .finish(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(sb.target().join("a")).unwrap(),
        "now a file"
    );
    assert!(fs::symlink_metadata(sb.target().join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    let (_, reason) = refusal(sb.unpack(&RawTar::new().file("d", "x").finish()));
    assert_eq!(reason, Refusal::ReplacesFolder { path: "d".into() });
    sb.assert_outside_untouched();
}
