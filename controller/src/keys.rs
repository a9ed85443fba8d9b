//! skycat's own SSH key for cloud nodes: `$SKYCAT_HOME/keys/skycat-key` (ed25519, OpenSSH
//! format, 0600) and its `.pub`, generated on first use from the OS random generator. Clouds
//! receive the public half (an EC2 key pair named after its fingerprint, so two homes never
//! overwrite each other's key pair).

use std::path::PathBuf;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};
use sha2::{Digest, Sha256};

use crate::home::Home;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("the OS random generator failed; refusing to create a key")]
    Random,
    #[error("encoding the SSH key: {0}")]
    Encode(String),
}

/// The private key's path and the public key in OpenSSH format, creating both if missing.
pub fn ensure_ssh_key(home: &Home) -> Result<(PathBuf, String), KeyError> {
    let dir = home.root.join("keys");
    let path = dir.join("skycat-key");
    let pub_path = dir.join("skycat-key.pub");
    let io = |p: &std::path::Path, e: std::io::Error| KeyError::Io { path: p.display().to_string(), msg: e.to_string() };
    if path.is_file() {
        // The public half is derived from the private key, so a lost .pub is not a problem.
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| KeyError::Io {
            path: path.display().to_string(),
            msg: format!("not an OpenSSH private key ({e})"),
        })?;
        let public = key.public_key().to_openssh().map_err(|e| KeyError::Encode(e.to_string()))?;
        return Ok((path, public));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(&dir, e))?;
    }
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).map_err(|_| KeyError::Random)?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("skycat");
    let private = key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))?;
    let public = key.public_key().to_openssh().map_err(|e| KeyError::Encode(e.to_string()))?;
    write_private(&path, private.as_bytes()).map_err(|e| io(&path, e))?;
    crate::home::write_atomic(&pub_path, format!("{public}\n").as_bytes()).map_err(|e| io(&pub_path, e))?;
    Ok((path, public))
}

/// Writes a file created 0600 (never readable by others, not even for a moment), atomically.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The EC2 key pair name for a public key: `skycat-` + 10 hex digits of its SHA-256.
pub fn key_pair_name(public_openssh: &str) -> String {
    let d = Sha256::digest(public_openssh.trim().as_bytes());
    format!("skycat-{}", &crate::store::hex(&d)[..10])
}

/// `SHA256:…` of a public key in OpenSSH format, for display.
pub fn fingerprint(public_openssh: &str) -> Option<String> {
    russh::keys::PublicKey::from_openssh(public_openssh.trim()).ok().map(|k| k.fingerprint(HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let (p, public) = ensure_ssh_key(&home).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (_, again) = ensure_ssh_key(&home).unwrap();
        assert_eq!(public, again);
        assert!(key_pair_name(&public).starts_with("skycat-"));
        assert!(fingerprint(&public).unwrap().starts_with("SHA256:"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(ensure_ssh_key(&home).unwrap_err().to_string().contains("not an OpenSSH private key"));
    }
}
