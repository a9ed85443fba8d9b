//! The CLI's credentials for `skycat serve`, in `$SKYCAT_HOME/credentials` (YAML, mode 0600; a
//! file that others can read is refused, as ssh refuses such a key):
//!
//! ```yaml
//! token: skycat_…                 # the API token
//! server_url: https://10.0.0.5:8080   # the server it belongs to
//! server_cert_sha256: 9f86d0…     # that server's certificate, pinned at `skycat login`
//! ```
//!
//! `$SKYCAT_API_TOKEN` overrides the token. The saved token goes only to the server it was saved
//! for, so a `--server-url` pointing elsewhere never receives it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use skycat_tls_pin::Fingerprint;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cert_sha256: Option<String>,
}

impl Credentials {
    /// Whether these credentials belong to `url` (saved for it, or for no server in particular).
    pub fn are_for(&self, url: &str) -> bool {
        self.server_url.as_deref().is_none_or(|s| same_server(s, url))
    }

    /// The pinned certificate, checked.
    pub fn pin(&self, file: &Path) -> Result<Option<Fingerprint>> {
        self.server_cert_sha256
            .as_deref()
            .map(|p| p.parse::<Fingerprint>().with_context(|| format!("{}: server_cert_sha256", file.display())))
            .transpose()
    }
}

/// Two spellings of one server URL: `https://h:1/` and `https://h:1`.
pub fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

pub fn path(home: &Path) -> PathBuf {
    home.join("credentials")
}

/// The saved credentials, if any.
pub fn load(home: &Path) -> Result<Option<Credentials>> {
    let p = path(home);
    let meta = match std::fs::metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("{}: permissions {mode:04o} are too open (others could read the API token); run `chmod 600 {}`", p.display(), p.display());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let mut c: Credentials = serde_yaml::from_str(&text).with_context(|| format!("{}: expected `token: <API token>`", p.display()))?;
    c.token = c.token.trim().to_string();
    if c.token.is_empty() {
        bail!("{}: token: is empty", p.display());
    }
    c.pin(&p)?;
    Ok(Some(c))
}

/// `$SKYCAT_API_TOKEN`, if set and not blank.
pub fn env_token() -> Option<String> {
    std::env::var("SKYCAT_API_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// Saves `creds` (0600 from creation, atomically).
pub fn save(home: &Path, creds: &Credentials) -> Result<PathBuf> {
    let p = path(home);
    let body = serde_yaml::to_string(creds)?;
    skycat_controller::home::write_atomic_mode(&p, body.as_bytes(), 0o600, None).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_0600_read_back_and_loose_or_bad_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let pin = "ab".repeat(32);
        let c = Credentials {
            token: "skycat_abc".into(),
            server_url: Some("https://10.0.0.5:8080".into()),
            server_cert_sha256: Some(pin.clone()),
        };
        let p = save(dir.path(), &c).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back.token, "skycat_abc");
        assert!(back.are_for("https://10.0.0.5:8080/") && !back.are_for("https://10.0.0.6:8080"));
        assert_eq!(back.pin(&p).unwrap().unwrap().to_string(), pin);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("too open"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "tok: x\n").unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("token"));
        std::fs::write(&p, "token: x\nserver_cert_sha256: abc\n").unwrap();
        assert!(format!("{:#}", load(dir.path()).unwrap_err()).contains("server_cert_sha256"));
        // Saved by an older version: a token for any server.
        std::fs::write(&p, "token: skycat_old\n").unwrap();
        assert!(load(dir.path()).unwrap().unwrap().are_for("http://127.0.0.1:8080"));
    }
}
