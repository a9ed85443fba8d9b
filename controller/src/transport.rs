//! How the controller reaches a node to bootstrap and drive its agent: a [`NodeTransport`] opens
//! a [`NodeSession`] that runs commands with stdin and collects their output. Each backend names
//! its transport ([`crate::backend::Backend::transport`]); SSH (russh, [`SshTransport`]) serves
//! VMs and pool hosts today, and a transport over the Kubernetes exec API is another
//! implementation of the same two traits. Lifecycle, managed jobs and the agent client only see
//! the traits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::ssh::{ExecOutput, SshError, SshOptions, SshSession, SshTarget};

/// Why a node could not be reached or a command could not run on it.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A command ran and failed (`run_ok`).
    #[error("{node}: `{command}` exited {status}: {why}")]
    Command { node: String, command: String, status: String, why: String },
    /// The Kubernetes API refused or dropped an exec (or the pod is not running).
    #[error("{node}: {message}")]
    Kube { node: String, message: String, transient: bool },
}

impl TransportError {
    /// Whether a node that is still booting may answer later (refused, dropped, timed out, key
    /// not installed yet). A changed host key or an unreadable key file will not get better.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Ssh(SshError::Unreachable { .. } | SshError::Timeout { .. } | SshError::Protocol { .. } | SshError::Auth { .. })
                | TransportError::Kube { transient: true, .. }
        )
    }
}

/// An open command channel to one node.
#[async_trait]
pub trait NodeSession: Send + Sync {
    /// The node as messages name it (`user@host:port`).
    fn peer(&self) -> String;

    /// The address the controller reached the node at.
    fn host(&self) -> &str;

    /// Runs `cmd` through the node's login shell, streaming `stdin` to it when given.
    async fn exec_input(&self, cmd: &str, stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>) -> Result<ExecOutput, TransportError>;

    /// Runs `cmd`, handing stdout/stderr chunks to the callbacks as they arrive; its exit code.
    async fn exec_stream(
        &self,
        cmd: &str,
        on_stdout: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
        on_stderr: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Option<u32>, TransportError>;

    /// Closes the channel; later calls fail.
    async fn close(&self);

    /// Runs `cmd` wired to this process's stdin and stdout (with a terminal when `tty`), for
    /// `skycat ssh`; its exit code. SSH nodes are reached with `ssh CLUSTER` (the SSH config
    /// skycat writes) instead.
    async fn interactive(&self, _cmd: &str, _tty: bool) -> Result<Option<u32>, TransportError> {
        Err(TransportError::Command {
            node: self.peer(),
            command: "shell".into(),
            status: "not run".into(),
            why: "this node is reached over SSH: use `ssh <cluster>` (skycat writes the SSH config entry)".into(),
        })
    }

    /// Runs `cmd` with `stdin` bytes.
    async fn exec(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError> {
        match stdin {
            Some(mut bytes) => self.exec_input(cmd, Some(&mut bytes)).await,
            None => self.exec_input(cmd, None).await,
        }
    }

    /// Runs `cmd` and fails with its stderr (or stdout) unless it exits 0.
    async fn run_ok(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<String, TransportError> {
        let out = self.exec(cmd, stdin).await?;
        if out.ok() {
            return Ok(out.stdout_str());
        }
        let mut why = out.stderr_str().trim().to_string();
        if why.is_empty() {
            why = out.stdout_str().trim().to_string();
        }
        Err(TransportError::Command {
            node: self.peer(),
            command: cmd.chars().take(80).collect(),
            status: out.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "by signal".into()),
            why: why.lines().last().unwrap_or("").to_string(),
        })
    }
}

/// Opens sessions to a backend's nodes.
#[async_trait]
pub trait NodeTransport: Send + Sync {
    /// Connects once.
    async fn connect(&self, node: &SshTarget) -> Result<Arc<dyn NodeSession>, TransportError>;

    /// Forgets what was learnt about the node at this address (SSH: its pinned host key), for a
    /// brand-new node that the provider may have put at a reused address.
    fn forget(&self, node: &SshTarget) -> Result<(), TransportError>;

    /// Connects, retrying a node that is still booting until `wait` has passed.
    async fn connect_when_ready(&self, node: &SshTarget, wait: Duration) -> Result<Arc<dyn NodeSession>, TransportError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(200);
        loop {
            match self.connect(node).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tracing::debug!("{}: {e}; retrying", node.display());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// SSH (russh) with the controller's key handling and pinned host keys.
pub struct SshTransport {
    pub opts: SshOptions,
}

#[async_trait]
impl NodeTransport for SshTransport {
    async fn connect(&self, node: &SshTarget) -> Result<Arc<dyn NodeSession>, TransportError> {
        Ok(Arc::new(SshSession::connect(node, &self.opts).await?))
    }

    fn forget(&self, node: &SshTarget) -> Result<(), TransportError> {
        Ok(crate::ssh::forget_host(&self.opts.known_hosts, &node.known_hosts_name())?)
    }
}

#[async_trait]
impl NodeSession for SshSession {
    fn peer(&self) -> String {
        self.target().display()
    }

    fn host(&self) -> &str {
        &self.target().host
    }

    async fn exec_input(&self, cmd: &str, stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>) -> Result<ExecOutput, TransportError> {
        Ok(self.exec_reader(cmd, stdin).await?)
    }

    async fn exec_stream(
        &self,
        cmd: &str,
        on_stdout: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
        on_stderr: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Option<u32>, TransportError> {
        Ok(SshSession::exec_stream::<&[u8]>(self, cmd, None, on_stdout, on_stderr).await?)
    }

    async fn close(&self) {
        self.disconnect().await;
    }
}
