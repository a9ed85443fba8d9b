//! HTTPS for `skycat serve` with rustls (ring; no system libraries): the operator's certificate
//! and key, or a self-signed pair made on first start (rcgen) and kept under
//! `$SKYCAT_HOME/tls/` (key 0600). Clients that cannot check a CA (the agents, the CLI) pin the
//! certificate's SHA-256 [`fingerprint`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("making a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), msg: msg.to_string() }
}

/// The self-signed pair in `dir` (`cert.pem`, `key.pem`), made for `names` (DNS names or IP
/// addresses) if it does not exist yet.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    if files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    let mut names: Vec<String> = names.to_vec();
    for n in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(dir, &files.key, ck.key_pair.serialize_pem().as_bytes())?;
    write_private(dir, &files.cert, ck.cert.pem().as_bytes())?;
    Ok(files)
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| file_err(dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&tmp).map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

fn certs(files: &TlsFiles) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_err(&files.cert, "no certificate in the file"));
    }
    Ok(certs)
}

/// Lowercase hex SHA-256 of the DER of the chain's first (end-entity) certificate: what clients
/// pin.
pub fn fingerprint(files: &TlsFiles) -> Result<String, TlsError> {
    let c = certs(files)?;
    Ok(Sha256::digest(c[0].as_ref()).iter().map(|b| format!("{b:02x}")).collect())
}

/// The rustls server configuration of `files` (ring provider, HTTP/1.1).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(files)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves. Then every connection is
/// told to close once its request in flight is answered (idle keep-alive connections close at
/// once), and they get up to `drain` to do so.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors and the like: keep serving the others.
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let svc = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        conns.spawn(async move {
            // A client that does not finish the handshake in time is dropped.
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake: {e}");
                    return;
                }
                Err(_) => return,
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!("connection: {e}");
            }
        });
        // Reap finished connections.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(drain, async {
        graceful.shutdown().await;
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
