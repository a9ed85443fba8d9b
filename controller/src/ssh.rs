//! SSH with russh: key authentication, host keys pinned in `$SKYCAT_HOME/known_hosts`
//! (trust on first use, a changed key is refused), exec with stdin/stdout/exit code.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::io::AsyncRead;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
}

impl SshTarget {
    /// `user@host:port`.
    pub fn display(&self) -> String {
        // A Kubernetes pod's address (see backend::kubernetes::exec::PodRef): context/ns/pod@ip.
        if let Some(pod) = self.user.strip_prefix("k8s:") {
            return format!("{pod}@{}", self.host);
        }
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
    /// The known_hosts name: `host` for port 22, `[host]:port` otherwise (as OpenSSH writes it).
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl From<&crate::pools::PoolHost> for SshTarget {
    fn from(h: &crate::pools::PoolHost) -> SshTarget {
        SshTarget { host: h.ip.clone(), port: h.port, user: h.user.clone(), identity_file: h.identity_file.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    pub connect_timeout: Duration,
}

impl SshOptions {
    pub fn new(known_hosts: impl Into<PathBuf>) -> SshOptions {
        SshOptions { known_hosts: known_hosts.into(), connect_timeout: Duration::from_secs(8) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach {target}: {source}")]
    Unreachable { target: String, source: std::io::Error },
    #[error("cannot reach {target}: no answer within {secs}s")]
    Timeout { target: String, secs: u64 },
    #[error(
        "host key of {host} changed: {known_hosts} pins {pinned}, the host now offers {offered}; \
         refusing to connect (if the host was really reinstalled, delete its line from {known_hosts})"
    )]
    HostKeyChanged { host: String, known_hosts: String, pinned: String, offered: String },
    #[error("host key of {host} refused: {msg}")]
    HostKeyRefused { host: String, msg: String },
    #[error("cannot read identity file {path}: {msg}")]
    Identity { path: String, msg: String },
    #[error("{target}: public key authentication failed with {identity_file}")]
    Auth { target: String, identity_file: String },
    #[error("{target}: ssh: {msg}")]
    Protocol { target: String, msg: String },
}

/// The client handler: checks the host key against the known_hosts file.
struct HostKeyCheck {
    known_hosts: PathBuf,
    name: String,
    problem: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                self.set_problem(SshError::HostKeyRefused {
                    host: self.name.clone(),
                    msg: "host certificates are not supported; offer a plain host key".to_string(),
                });
                return Ok(false);
            }
        };
        match check_or_pin(&self.known_hosts, &self.name, key) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.set_problem(e);
                Ok(false)
            }
        }
    }
}

impl HostKeyCheck {
    fn set_problem(&self, e: SshError) {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(e);
        }
    }
}

/// SHA256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

static PIN_LOCK: Mutex<()> = Mutex::new(());

/// Holds the pin lock of `known_hosts`: this process's mutex and, since other skycat processes
/// may pin at the same time, a file lock (released when the file is dropped).
fn lock_known_hosts(known_hosts: &Path) -> (std::sync::MutexGuard<'static, ()>, Option<std::fs::File>) {
    let guard = PIN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = known_hosts.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let lock_path = known_hosts.with_extension("lock");
    let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).ok();
    if let Some(f) = &lock_file {
        let _ = f.lock();
    }
    (guard, lock_file)
}

/// Removes the pins of host `name`: a new cloud instance may get the address of a terminated
/// one, with a new host key, and must be trusted on its first use like any new host.
pub fn forget_host(known_hosts: &Path, name: &str) -> Result<(), SshError> {
    let _locks = lock_known_hosts(known_hosts);
    let text = match std::fs::read_to_string(known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SshError::HostKeyRefused { host: name.to_string(), msg: format!("cannot read {}: {e}", known_hosts.display()) }),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let hosts = l.trim().split(char::is_whitespace).next().unwrap_or("");
            l.trim().starts_with('#') || !hosts.split(',').any(|h| h == name)
        })
        .collect();
    if kept.len() == text.lines().count() {
        return Ok(());
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    crate::home::write_atomic(known_hosts, out.as_bytes())
        .map_err(|e| SshError::HostKeyRefused { host: name.to_string(), msg: format!("cannot write {}: {e}", known_hosts.display()) })
}

/// Checks `key` for host `name` against `known_hosts`; pins it when the host is not listed.
pub fn check_or_pin(known_hosts: &Path, name: &str, key: &PublicKey) -> Result<(), SshError> {
    let _locks = lock_known_hosts(known_hosts);
    let text = match std::fs::read_to_string(known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(SshError::HostKeyRefused {
                host: name.to_string(),
                msg: format!("cannot read {}: {e}", known_hosts.display()),
            })
        }
    };
    let mut pinned: Vec<PublicKey> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((hosts, rest)) = line.split_once(char::is_whitespace) else { continue };
        if !hosts.split(',').any(|h| h == name) {
            continue;
        }
        if let Ok(k) = PublicKey::from_openssh(rest.trim()) {
            pinned.push(k);
        }
    }
    if pinned.iter().any(|k| k.key_data() == key.key_data()) {
        return Ok(());
    }
    if let Some(first) = pinned.first() {
        return Err(SshError::HostKeyChanged {
            host: name.to_string(),
            known_hosts: known_hosts.display().to_string(),
            pinned: format!("{} {}", first.algorithm(), fingerprint(first)),
            offered: format!("{} {}", key.algorithm(), fingerprint(key)),
        });
    }
    let mut plain = key.clone();
    plain.set_comment("");
    let line = plain.to_openssh().map_err(|e| SshError::HostKeyRefused {
        host: name.to_string(),
        msg: format!("cannot encode key: {e}"),
    })?;
    let mut new_text = text;
    if !new_text.is_empty() && !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    new_text.push_str(&format!("{name} {}\n", line.trim()));
    crate::home::write_atomic(known_hosts, new_text.as_bytes()).map_err(|e| SshError::HostKeyRefused {
        host: name.to_string(),
        msg: format!("cannot write {}: {e}", known_hosts.display()),
    })?;
    tracing::info!(host = name, fingerprint = %fingerprint(key), "pinned new host key");
    Ok(())
}

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the command ended without an exit status (killed by a signal).
    pub exit_code: Option<u32>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// An authenticated SSH connection.
pub struct SshSession {
    handle: client::Handle<HostKeyCheck>,
    target: SshTarget,
}

impl SshSession {
    pub async fn connect(target: &SshTarget, opts: &SshOptions) -> Result<SshSession, SshError> {
        let shown = target.display();
        let key = russh::keys::load_secret_key(&target.identity_file, None).map_err(|e| SshError::Identity {
            path: target.identity_file.display().to_string(),
            msg: e.to_string(),
        })?;
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            ..Default::default()
        });
        let problem = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            known_hosts: opts.known_hosts.clone(),
            name: target.known_hosts_name(),
            problem: problem.clone(),
        };
        let secs = opts.connect_timeout.as_secs().max(1);
        let tcp = tokio::time::timeout(
            opts.connect_timeout,
            tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| SshError::Timeout { target: shown.clone(), secs })?
        .map_err(|source| SshError::Unreachable { target: shown.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let connected =
            tokio::time::timeout(opts.connect_timeout, client::connect_stream(config, tcp, handler)).await;
        let mut handle = match connected {
            Err(_) => return Err(SshError::Timeout { target: shown, secs }),
            Ok(Err(e)) => {
                if let Some(p) = problem.lock().ok().and_then(|mut p| p.take()) {
                    return Err(p);
                }
                return Err(SshError::Protocol { target: shown, msg: e.to_string() });
            }
            Ok(Ok(h)) => h,
        };
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let auth = handle
            .authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| SshError::Protocol { target: shown.clone(), msg: e.to_string() })?;
        if !auth.success() {
            return Err(SshError::Auth {
                target: shown,
                identity_file: target.identity_file.display().to_string(),
            });
        }
        Ok(SshSession { handle, target: target.clone() })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    fn proto(&self, e: impl std::fmt::Display) -> SshError {
        SshError::Protocol { target: self.target.display(), msg: e.to_string() }
    }

    /// Runs `cmd` (through the user's login shell, as sshd does) with stdin streamed from a
    /// reader when given (agent binary, workdir tar).
    pub async fn exec_reader<R: AsyncRead + Unpin>(&self, cmd: &str, stdin: Option<R>) -> Result<ExecOutput, SshError> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = self
            .exec_stream(cmd, stdin, |chunk| out.extend_from_slice(chunk), |chunk| err.extend_from_slice(chunk))
            .await?;
        Ok(ExecOutput { stdout: out, stderr: err, exit_code: code })
    }

    /// Runs `cmd`, handing stdout/stderr chunks to the callbacks as they arrive.
    pub async fn exec_stream<R: AsyncRead + Unpin>(
        &self,
        cmd: &str,
        stdin: Option<R>,
        mut on_stdout: impl FnMut(&[u8]),
        mut on_stderr: impl FnMut(&[u8]),
    ) -> Result<Option<u32>, SshError> {
        let mut channel = self.handle.channel_open_session().await.map_err(|e| self.proto(e))?;
        channel.exec(true, cmd).await.map_err(|e| self.proto(e))?;
        if let Some(r) = stdin {
            channel.data(r).await.map_err(|e| self.proto(e))?;
        }
        channel.eof().await.map_err(|e| self.proto(e))?;
        let mut code = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => on_stdout(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => on_stderr(&data),
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                _ => {}
            }
        }
        Ok(code)
    }

    pub async fn disconnect(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn pins_then_refuses_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let k1 = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXqY02bdYqg1BcIf2x08zs60rS6XhlBSQ4qE47o5gb0 a",
        );
        let k2 = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl b",
        );
        let (Ok(k1), Ok(k2)) = (k1, k2) else { panic!("test keys must parse") };
        check_or_pin(&kh, "[10.0.0.1]:2222", &k1).unwrap();
        check_or_pin(&kh, "[10.0.0.1]:2222", &k1).unwrap();
        check_or_pin(&kh, "10.0.0.1", &k2).unwrap();
        let e = check_or_pin(&kh, "[10.0.0.1]:2222", &k2).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("[10.0.0.1]:2222") && msg.contains(&fingerprint(&k1)) && msg.contains(&fingerprint(&k2)), "{msg}");
        let text = std::fs::read_to_string(&kh).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        // A new instance at the reused address: forgotten, then trusted on first use; the other
        // host's pin stays.
        forget_host(&kh, "[10.0.0.1]:2222").unwrap();
        check_or_pin(&kh, "[10.0.0.1]:2222", &k2).unwrap();
        check_or_pin(&kh, "10.0.0.1", &k2).unwrap();
        assert!(check_or_pin(&kh, "10.0.0.1", &k1).is_err());
        forget_host(&kh, "10.9.9.9").unwrap();
        assert_eq!(std::fs::read_to_string(&kh).unwrap().lines().count(), 2);
    }
}
