//! Secrets at rest: what a managed job needs to be recovered after a restart of `skycat serve`
//! (its request, secret envs included) is sealed with ChaCha20-Poly1305 (ring's AEAD) before it
//! reaches `state.db`.
//!
//! The key is `SKYCAT_SECRET_KEY` (64 hex characters) or `$SKYCAT_HOME/keys/secret.key`, created
//! 0600 from the OS random generator on first use (no fallback if that fails). A sealed value is
//! `nonce (12 bytes) || ciphertext || tag`, bound to its purpose by the associated data, so a value
//! copied into another row does not open.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::home::Home;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("SKYCAT_SECRET_KEY: expected 64 hex characters (32 bytes)")]
    BadEnvKey,
    #[error("{path}: {msg}")]
    KeyFile { path: String, msg: String },
    #[error("the operating system's random generator failed; refusing to make a key or nonce without it")]
    Random,
    #[error("a sealed secret does not open with this key (was SKYCAT_SECRET_KEY or keys/secret.key changed?)")]
    Open,
}

/// The sealing key.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl SecretBox {
    pub fn from_key(bytes: &[u8; 32]) -> Result<SecretBox, SecretError> {
        // CHACHA20_POLY1305 takes exactly the 32 bytes the type guarantees; ring still returns a
        // Result.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SecretError::BadEnvKey)?;
        Ok(SecretBox { key: LessSafeKey::new(unbound) })
    }

    /// The key of this home: `SKYCAT_SECRET_KEY`, else `keys/secret.key` (created if missing).
    pub fn load(home: &Home) -> Result<SecretBox, SecretError> {
        if let Ok(v) = std::env::var("SKYCAT_SECRET_KEY") {
            let bytes = from_hex(&v).filter(|b| b.len() == 32).ok_or(SecretError::BadEnvKey)?;
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            return SecretBox::from_key(&k);
        }
        Self::load_file(&home.root.join("keys").join("secret.key"))
    }

    fn load_file(path: &Path) -> Result<SecretBox, SecretError> {
        let err = |msg: String| SecretError::KeyFile { path: path.display().to_string(), msg };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
                    if mode & 0o077 != 0 {
                        return Err(err(format!("permissions {mode:04o} are too open; run `chmod 600 {}`", path.display())));
                    }
                }
                let bytes = from_hex(&text).filter(|b| b.len() == 32).ok_or_else(|| err("expected 64 hex characters".into()))?;
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                SecretBox::from_key(&k)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                SystemRandom::new().fill(&mut k).map_err(|_| SecretError::Random)?;
                if let Some(dir) = path.parent() {
                    crate::home::create_private_dir(dir).map_err(|e| err(e.to_string()))?;
                }
                let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
                crate::home::write_atomic_mode(path, format!("{hex}\n").as_bytes(), 0o600, None).map_err(|e| err(e.to_string()))?;
                SecretBox::from_key(&k)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Seals `plain` for `purpose` (the associated data: the same purpose is needed to open).
    pub fn seal(&self, plain: &[u8], purpose: &str) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made for the same `purpose`.
    pub fn open(&self, sealed: &[u8], purpose: &str) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| SecretError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf).map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_tampering_other_purposes_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let a = SecretBox::load_file(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let sealed = a.seal(b"HF_TOKEN=hf_abc", "job 1").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"hf_abc"));
        assert_eq!(a.open(&sealed, "job 1").unwrap(), b"HF_TOKEN=hf_abc");
        assert!(a.open(&sealed, "job 2").is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(a.open(&bad, "job 1").is_err());
        assert!(a.open(&sealed[..5], "job 1").is_err());
        // The same file gives the same key; another key does not open.
        assert_eq!(SecretBox::load_file(&path).unwrap().open(&sealed, "job 1").unwrap(), b"HF_TOKEN=hf_abc");
        assert!(SecretBox::from_key(&[7; 32]).unwrap().open(&sealed, "job 1").is_err());
        // Two seals of the same text differ (fresh nonces).
        assert_ne!(a.seal(b"x", "p").unwrap(), a.seal(b"x", "p").unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SecretBox::load_file(&path).unwrap_err().to_string().contains("too open"));
    }
}
