//! Small OS helpers: atomic files, append-only journals, process checks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Longest timer the agent ever sets, ~31 years: past it `Instant + Duration` can overflow.
/// The config's own limits ([`skycat_protocol::MAX_INTERVAL_SECS`]) are far below.
pub const MAX_TIMER_SECS: f64 = 1e9;

/// Seconds as a `Duration`, without panicking: negative and NaN are zero, anything past
/// [`MAX_TIMER_SECS`] (infinity included) is `MAX_TIMER_SECS`.
pub fn secs(d: f64) -> std::time::Duration {
    if d.is_nan() {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(d.clamp(0.0, MAX_TIMER_SECS))
}

/// clap parser for a `--timeout` in seconds: a number >= 0. `inf` and anything past
/// [`MAX_TIMER_SECS`] wait that long, in effect without end.
pub fn parse_timeout_secs(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 => Ok(v),
        _ => Err(format!("must be a number of seconds >= 0, not `{s}`")),
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same dir + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Appends one line (a `\n` is added) and fsyncs: the line is on disk when this returns.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    f.write_all(&buf)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    f.sync_data().ok();
    Ok(())
}

/// Reads a JSONL file; a torn last line (crash mid-write) is ignored, other bad lines are errors.
pub fn read_jsonl<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 1));
            }
        }
    }
    Ok(out)
}

pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(())
}

/// Is a process with this pid alive (zombies count as dead)?
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the first field after the ")" that closes the command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// The process's command line (NUL-separated arguments joined with spaces).
pub fn pid_cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Sends `sig` to the process group `pgid` (ignores "no such process").
pub fn kill_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall with integer arguments.
        unsafe {
            libc::kill(-(pgid as i32), sig);
        }
    }
}

/// Tries to take an exclusive, non-blocking flock on `file`; false if another process has it.
pub fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid open fd.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Machine boot time from /proc/stat `btime`.
pub fn boot_time() -> Option<chrono::DateTime<chrono::Utc>> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    chrono::DateTime::from_timestamp(secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn secs_never_panics_and_clamps() {
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(1e20), Duration::from_secs(1_000_000_000));
        assert_eq!(secs(f64::INFINITY), Duration::from_secs(1_000_000_000));
        assert_eq!(secs(f64::NEG_INFINITY), Duration::ZERO);
        // The clamp keeps deadlines representable.
        assert!(std::time::Instant::now()
            .checked_add(secs(f64::MAX))
            .is_some());
    }

    #[test]
    fn timeout_parser() {
        assert_eq!(parse_timeout_secs("2.5"), Ok(2.5));
        assert_eq!(parse_timeout_secs("1e20"), Ok(1e20));
        assert_eq!(parse_timeout_secs("inf"), Ok(f64::INFINITY));
        for bad in ["-1", "NaN", "soon", ""] {
            let e = parse_timeout_secs(bad).unwrap_err();
            assert!(e.contains(">= 0"), "{bad}: {e}");
        }
    }
}
