//! The CLI's API token for `skycat serve`: `$SKYCAT_API_TOKEN`, else `$SKYCAT_HOME/credentials`
//! (YAML `token: …`, mode 0600; a file that others can read is refused, as ssh refuses such a
//! key).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub token: String,
}

pub fn path(home: &Path) -> PathBuf {
    home.join("credentials")
}

/// The token to send, if any.
pub fn api_token(home: &Path) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("SKYCAT_API_TOKEN") {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(Some(t));
        }
    }
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
    let c: Credentials = serde_yaml::from_str(&text).with_context(|| format!("{}: expected `token: <API token>`", p.display()))?;
    let t = c.token.trim().to_string();
    if t.is_empty() {
        bail!("{}: token: is empty", p.display());
    }
    Ok(Some(t))
}

/// Saves `token` as the CLI's credentials (0600 from creation, atomically).
pub fn save(home: &Path, token: &str) -> Result<PathBuf> {
    let p = path(home);
    let body = serde_yaml::to_string(&Credentials { token: token.to_string() })?;
    skycat_controller::home::write_atomic_mode(&p, body.as_bytes(), 0o600, None).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_0600_read_back_and_loose_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(api_token(dir.path()).unwrap().is_none() || std::env::var("SKYCAT_API_TOKEN").is_ok());
        let p = save(dir.path(), "skycat_abc").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        if std::env::var("SKYCAT_API_TOKEN").is_err() {
            assert_eq!(api_token(dir.path()).unwrap().as_deref(), Some("skycat_abc"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(api_token(dir.path()).unwrap_err().to_string().contains("too open"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(&p, "tok: x\n").unwrap();
            assert!(api_token(dir.path()).unwrap_err().to_string().contains("token"));
        }
    }
}
