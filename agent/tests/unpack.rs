//! `skycat-agent unpack`: the real binary reading a tar on stdin (issue 10 item 3). The state dir
//! is `base/state`, beside `base/outside`; a refused archive must leave both `base` and
//! `outside` as they were, and write nothing in the state dir outside the destination.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::BIN;
use serde_json::Value;
use tar::{EntryType, Header};

struct Base {
    dir: tempfile::TempDir,
}

impl Base {
    fn new() -> Base {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("state")).unwrap();
        fs::write(dir.path().join("state/config.json"), "{}").unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), "outside secret").unwrap();
        Base { dir }
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn unpack(&self, args: &[&str], tar: &[u8]) -> Output {
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(self.state())
            .arg("unpack")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A refusal may close stdin before all is written: that is not a test failure.
        let _ = child.stdin.take().unwrap().write_all(tar);
        child.wait_with_output().unwrap()
    }
    /// Nothing outside `state/<dest>` changed: `base` holds `state` and `outside`, `outside`
    /// its one untouched file, the state dir only config.json besides `dest`.
    fn assert_nothing_outside(&self, dest: &str) {
        assert_eq!(names(self.dir.path()), set(&["outside", "state"]));
        assert_eq!(names(&self.dir.path().join("outside")), set(&["secret"]));
        assert_eq!(
            fs::read_to_string(self.dir.path().join("outside/secret")).unwrap(),
            "outside secret"
        );
        let mut expected = set(&["config.json"]);
        if self.state().join(dest).exists() {
            expected.insert(dest.split('/').next().unwrap().to_string());
        }
        assert_eq!(names(&self.state()), expected);
        assert_eq!(
            fs::read_to_string(self.state().join("config.json")).unwrap(),
            "{}"
        );
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A tar with raw entry names (tar::Builder itself refuses `..` and absolute names).
fn raw_tar(entries: &[(&str, EntryType, Option<&str>, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn assert_refused(out: &Output, needle: &str) {
    assert!(!out.status.success(), "accepted: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr: {err}");
}

#[test]
fn a_good_archive_is_unpacked_into_the_workdir() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join(".gitignore"), "*.ckpt\n").unwrap();
    fs::write(src.path().join("train.py"), "print('train')\n").unwrap();
    fs::write(src.path().join("model.ckpt"), "big").unwrap();
    fs::create_dir(src.path().join("conf")).unwrap();
    fs::write(src.path().join("conf/a.yaml"), "a: 1\n").unwrap();
    std::os::unix::fs::symlink("conf/a.yaml", src.path().join("current.yaml")).unwrap();
    let mut tar = Vec::new();
    skycat_archive::pack(src.path(), 1 << 20, &mut tar).unwrap();

    let base = Base::new();
    let out = base.unpack(&["--json"], &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = "*.ckpt\n".len() + "print('train')\n".len() + "a: 1\n".len();
    assert_eq!(v, serde_json::json!({"files": 3, "bytes": bytes}));
    let wd = base.state().join("workdir");
    assert_eq!(
        names(&wd),
        set(&[".gitignore", "conf", "current.yaml", "train.py"])
    );
    assert_eq!(
        fs::read_to_string(wd.join("current.yaml")).unwrap(),
        "a: 1\n"
    );
    base.assert_nothing_outside("workdir");

    // Gzip'd, into another relative folder, without --json.
    let mut gz = Vec::new();
    skycat_archive::pack_gz(src.path(), 1 << 20, &mut gz).unwrap();
    let out = base.unpack(&["--dest", "mounts/conf"], &gz);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("unpacked 3 files"), "{text}");
    assert!(base.state().join("mounts/conf/conf/a.yaml").is_file());
}

#[test]
fn a_tar_with_dotdot_entries_or_an_outside_symlink_is_refused_and_nothing_lands_outside() {
    let base = Base::new();
    for (tar, needle) in [
        (
            raw_tar(&[
                ("ok.txt", EntryType::Regular, None, "fine"),
                ("../evil", EntryType::Regular, None, "pwned"),
            ]),
            r#"entry "../evil" has a `..` component"#,
        ),
        (
            raw_tar(&[("../../outside/evil", EntryType::Regular, None, "pwned")]),
            "has a `..` component",
        ),
        (
            raw_tar(&[
                ("link", EntryType::Symlink, Some("../../outside"), ""),
                ("link/x", EntryType::Regular, None, "pwned"),
            ]),
            r#"entry "link" is a link to "../../outside", which resolves outside"#,
        ),
        (
            raw_tar(&[("link", EntryType::Symlink, Some("../config.json"), "")]),
            "resolves outside",
        ),
        (
            raw_tar(&[("h", EntryType::Link, Some("../../outside/secret"), "")]),
            r#"entry "h" is a link"#,
        ),
    ] {
        let out = base.unpack(&["--json"], &tar);
        assert_refused(&out, "archive refused: entry");
        assert_refused(&out, needle);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
        base.assert_nothing_outside("workdir");
        let wd = base.state().join("workdir");
        for bad in ["evil", "link", "h", "x"] {
            assert!(
                fs::symlink_metadata(wd.join(bad)).is_err(),
                "{bad} was written"
            );
        }
    }
    // Only the first, allowed entry of the first archive was written.
    assert_eq!(names(&base.state().join("workdir")), set(&["ok.txt"]));
}

#[test]
fn bad_dest_and_the_size_limit_are_refused() {
    let base = Base::new();
    let tar = raw_tar(&[("a.bin", EntryType::Regular, None, &"x".repeat(2000))]);
    for dest in [
        "/tmp/x",
        "../outside",
        "a/../..",
        ".",
        "secrets",
        "state/journal",
    ] {
        let out = base.unpack(&["--dest", dest], &tar);
        assert_refused(&out, "--dest");
        base.assert_nothing_outside("workdir");
        assert!(!base.state().join("workdir").exists());
    }
    let out = base.unpack(&["--limit", "1000"], &tar);
    assert_refused(&out, "unpacks to more than 1000 B");
    assert!(!base.state().join("workdir/a.bin").exists());
    base.assert_nothing_outside("workdir");
    let out = base.unpack(&["--limit", "2000"], &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
