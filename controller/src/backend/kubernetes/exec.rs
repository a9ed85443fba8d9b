//! The node transport for pods: every command runs as `sh -c CMD` through the `pods/exec`
//! subresource over WebSocket (`v5.channel.k8s.io`, which can close stdin; `v4` otherwise), so
//! the controller needs nothing in the pod but a shell: no sshd, no open port. The agent binary
//! goes in as the stdin of `cat` (what `kubectl cp` does with `tar`), the workdir as the agent's
//! own `unpack`.
//!
//! A pod's address ([`PodRef`]) travels in the [`SshTarget`] the lifecycle passes around: `host`
//! is the pod IP (what `SKYCAT_NODE_IPS` lists) and `user` is `k8s:<context>/<namespace>/<pod>`.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::Clients;
use crate::ssh::{ExecOutput, SshTarget};
use crate::transport::{NodeSession, NodeTransport, TransportError};

/// The container skycat's pods run their work in.
pub const CONTAINER: &str = "skycat";

const POD_USER_PREFIX: &str = "k8s:";

/// Which pod a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub context: String,
    pub namespace: String,
    pub name: String,
}

impl PodRef {
    /// The transport address of the pod, reachable at `ip`.
    pub fn target(&self, ip: &str) -> SshTarget {
        SshTarget {
            host: ip.to_string(),
            port: 0,
            user: format!("{POD_USER_PREFIX}{}/{}/{}", self.context, self.namespace, self.name),
            identity_file: Default::default(),
        }
    }

    /// Reads the pod back from a target made by [`PodRef::target`]. Context names may hold `/`
    /// (EKS ARNs); namespaces and pod names cannot.
    pub fn from_target(t: &SshTarget) -> Option<PodRef> {
        let rest = t.user.strip_prefix(POD_USER_PREFIX)?;
        let mut parts = rest.rsplitn(3, '/');
        let name = parts.next()?.to_string();
        let namespace = parts.next()?.to_string();
        let context = parts.next()?.to_string();
        (!name.is_empty() && !namespace.is_empty() && !context.is_empty()).then_some(PodRef { context, namespace, name })
    }

    pub fn display(&self) -> String {
        format!("pod {}/{} ({})", self.namespace, self.name, self.context)
    }
}

fn kube_err(node: &str, transient: bool, e: impl std::fmt::Display) -> TransportError {
    TransportError::Kube { node: node.to_string(), message: e.to_string(), transient }
}

/// Opens exec sessions to pods.
pub struct KubeTransport {
    pub(super) clients: Arc<Clients>,
}

#[async_trait]
impl NodeTransport for KubeTransport {
    async fn connect(&self, node: &SshTarget) -> Result<Arc<dyn NodeSession>, TransportError> {
        let pod = PodRef::from_target(node)
            .ok_or_else(|| kube_err(&node.display(), false, "not a Kubernetes pod address (k8s:<context>/<namespace>/<pod>)"))?;
        let shown = pod.display();
        let client = self.clients.client(&pod.context).await.map_err(|e| kube_err(&shown, false, e))?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        // A session is only worth opening on a running pod; a pending one may run later.
        let p = match api.get_opt(&pod.name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(kube_err(&shown, false, "the pod no longer exists")),
            Err(e) => return Err(kube_err(&shown, is_transient(&e), e)),
        };
        let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
        match phase.as_str() {
            "Running" => {}
            "Pending" => return Err(kube_err(&shown, true, "the pod is still Pending")),
            other => return Err(kube_err(&shown, false, format!("the pod is {other}"))),
        }
        Ok(Arc::new(KubeSession { api, pod, ip: node.host.clone(), peer: shown }))
    }

    fn forget(&self, _node: &SshTarget) -> Result<(), TransportError> {
        // Nothing is pinned per pod: the API server's certificate is the kubeconfig's.
        Ok(())
    }
}

/// Whether a failed API call may work if retried (connection trouble, throttling, 5xx).
pub(super) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Commands on one pod.
pub struct KubeSession {
    api: Api<Pod>,
    pod: PodRef,
    ip: String,
    peer: String,
}

/// Output buffers between the WebSocket task and our readers: large enough that a chatty
/// command does not wait on us, small enough for hundreds of sessions.
const BUF: usize = 64 * 1024;

impl KubeSession {
    async fn start(&self, cmd: &str, stdin: bool, tty: bool) -> Result<kube::api::AttachedProcess, TransportError> {
        let ap = AttachParams::default()
            .container(CONTAINER)
            .stdin(stdin)
            .stdout(true)
            .stderr(!tty)
            .tty(tty)
            .max_stdin_buf_size(BUF)
            .max_stdout_buf_size(BUF)
            .max_stderr_buf_size(BUF);
        self.api
            .exec(&self.pod.name, ["sh", "-c", cmd], &ap)
            .await
            .map_err(|e| kube_err(&self.peer, is_transient(&e), format!("exec: {e}")))
    }

    /// The exit code from the status the server sends at the end (channel 3).
    async fn exit_code(&self, p: &mut kube::api::AttachedProcess) -> Result<Option<u32>, TransportError> {
        let status = match p.take_status() {
            Some(f) => f.await,
            None => None,
        };
        let Some(s) = status else {
            return Err(kube_err(&self.peer, true, "the exec stream ended without an exit status"));
        };
        if s.status.as_deref() == Some("Success") {
            return Ok(Some(0));
        }
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.trim().parse::<u32>().ok());
        match code {
            Some(c) => Ok(Some(c)),
            None => Err(kube_err(&self.peer, false, format!("exec failed: {}", s.message.unwrap_or_default()))),
        }
    }

}

#[async_trait]
impl NodeSession for KubeSession {
    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn host(&self) -> &str {
        &self.ip
    }

    async fn exec_input(&self, cmd: &str, stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>) -> Result<ExecOutput, TransportError> {
        let mut p = self.start(cmd, stdin.is_some(), false).await?;
        let writer = p.stdin();
        let mut out = p.stdout().ok_or_else(|| kube_err(&self.peer, false, "no stdout"))?;
        let mut err = p.stderr().ok_or_else(|| kube_err(&self.peer, false, "no stderr"))?;
        let feed = async {
            if let (Some(r), Some(mut w)) = (stdin, writer) {
                let copied = tokio::io::copy(r, &mut w).await;
                // Dropping the writer closes stdin: the command sees EOF (v5's close signal).
                let _ = w.shutdown().await;
                drop(w);
                copied.map(|_| ())
            } else {
                Ok(())
            }
        };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let (fed, read_o, read_e) = tokio::join!(feed, out.read_to_end(&mut o), err.read_to_end(&mut e));
        fed.map_err(|x| kube_err(&self.peer, true, format!("sending stdin: {x}")))?;
        read_o.map_err(|x| kube_err(&self.peer, true, format!("reading stdout: {x}")))?;
        read_e.map_err(|x| kube_err(&self.peer, true, format!("reading stderr: {x}")))?;
        let exit_code = self.exit_code(&mut p).await?;
        Ok(ExecOutput { stdout: o, stderr: e, exit_code })
    }

    async fn exec_stream(
        &self,
        cmd: &str,
        on_stdout: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
        on_stderr: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Option<u32>, TransportError> {
        let mut p = self.start(cmd, false, false).await?;
        let mut out = p.stdout().ok_or_else(|| kube_err(&self.peer, false, "no stdout"))?;
        let mut err = p.stderr().ok_or_else(|| kube_err(&self.peer, false, "no stderr"))?;
        let (mut bo, mut be) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut open_o, mut open_e) = (true, true);
        while open_o || open_e {
            tokio::select! {
                r = out.read(&mut bo), if open_o => match r {
                    Ok(0) | Err(_) => open_o = false,
                    Ok(n) => on_stdout(&bo[..n]),
                },
                r = err.read(&mut be), if open_e => match r {
                    Ok(0) | Err(_) => open_e = false,
                    Ok(n) => on_stderr(&be[..n]),
                },
            }
        }
        self.exit_code(&mut p).await
    }

    async fn close(&self) {}

    async fn interactive(&self, cmd: &str, tty: bool) -> Result<Option<u32>, TransportError> {
        let mut p = self.start(cmd, true, tty).await?;
        let mut remote_in = p.stdin().ok_or_else(|| kube_err(&self.peer, false, "no stdin"))?;
        let mut remote_out = p.stdout().ok_or_else(|| kube_err(&self.peer, false, "no stdout"))?;
        let remote_err = p.stderr();
        let input = tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut remote_in).await;
            let _ = remote_in.shutdown().await;
        });
        let errors = tokio::spawn(async move {
            if let Some(mut e) = remote_err {
                let _ = tokio::io::copy(&mut e, &mut tokio::io::stderr()).await;
            }
        });
        let mut stdout = tokio::io::stdout();
        let _ = tokio::io::copy(&mut remote_out, &mut stdout).await;
        let _ = stdout.flush().await;
        let _ = errors.await;
        input.abort();
        self.exit_code(&mut p).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_round_trip() {
        let p = PodRef { context: "arn:aws:eks:us-west-2:1:cluster/ml".into(), namespace: "team".into(), name: "c-0-ab12".into() };
        let t = p.target("10.0.0.9");
        assert_eq!(t.host, "10.0.0.9");
        assert_eq!(PodRef::from_target(&t), Some(p));
        let ssh = SshTarget { host: "h".into(), port: 22, user: "root".into(), identity_file: Default::default() };
        assert_eq!(PodRef::from_target(&ssh), None);
    }
}
