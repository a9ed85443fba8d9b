//! HTTPS: a self-signed certificate made once and kept, its fingerprint, a request over TLS through
//! a byte-recording TCP relay (the bearer token never crosses it in clear), and a certificate
//! file that is not one refused with an error naming it.

mod common;

use std::sync::{Arc, Mutex};

use common::catalog_a;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use skycat_server::{tls, AppBuilder, CatalogData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts the certificate whose SHA-256 is `pin`, nothing else; handshake signatures are checked.
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: String = Sha256::digest(end_entity.as_ref()).iter().map(|b| format!("{b:02x}")).collect();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("certificate {got} is not the pinned {}", self.pin)))
        }
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTP/1.1 GET over TLS to `port`, pinning `pin`; the response text.
async fn get(port: u16, pin: &str, path: &str, token: &str) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pin: pin.to_string(), provider }))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A TCP relay to `to` that records every byte the client sends.
async fn relay(to: u16, seen: Arc<Mutex<Vec<u8>>>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { return };
                let (mut cr, mut cw) = c.split();
                let (mut sr, mut sw) = s.split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = cr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            let _ = sw.shutdown().await;
                            break;
                        }
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut sr, &mut cw);
                let _ = tokio::join!(up, down);
            });
        }
    });
    port
}

#[tokio::test]
async fn https_with_a_kept_self_signed_certificate_and_no_token_in_clear() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("tls");
    let files = tls::self_signed(&dir, &["10.0.0.5".to_string()]).unwrap();
    let fp = tls::fingerprint(&files).unwrap();
    assert_eq!(fp.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
    // Made once: a restart serves the same certificate, so pins stay valid.
    assert_eq!(tls::fingerprint(&tls::self_signed(&dir, &[]).unwrap()).unwrap(), fp);

    let app = AppBuilder::new(CatalogData::from_offers(catalog_a())).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_tls(listener, tls::server_config(&files).unwrap(), async {
        let _ = rx.await;
    }));

    let seen = Arc::new(Mutex::new(Vec::new()));
    let via = relay(port, seen.clone()).await;
    let token = "skycat_0123456789abcdef_token_in_the_header";
    let resp = get(via, &fp, "/healthz", token).await.expect("request over TLS");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"status\":\"ok\""), "{resp}");
    let bytes = seen.lock().unwrap().clone();
    assert!(bytes.len() > 200, "the relay saw the handshake and the request");
    assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "the token crossed in clear");
    assert!(!bytes.windows(8).any(|w| w == b"/healthz"), "the request line crossed in clear");

    // A client pinning another certificate refuses the server.
    let err = get(port, &"0".repeat(64), "/healthz", token).await.unwrap_err();
    assert!(err.contains("not the pinned"), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("\"status\":\"ok\""));

    let _ = tx.send(());
    server.await.unwrap().unwrap();

    // Files that are not a certificate and key: one error naming the file.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let e = tls::server_config(&files).unwrap_err().to_string();
    assert!(e.contains("cert.pem"), "{e}");
}
